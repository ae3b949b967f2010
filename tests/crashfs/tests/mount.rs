//! The binary over a real FUSE mount (needs root, /dev/fuse and fusermount3): what reaches the
//! backing directory after a cut is what was synced, and a clean unmount keeps everything.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crashfs::Mount;

fn mount(root: &Path, journal: bool) -> Mount {
    std::fs::create_dir_all(root.join("backing")).unwrap();
    std::fs::create_dir_all(root.join("mnt")).unwrap();
    Mount::start(
        Path::new(env!("CARGO_BIN_EXE_crashfs")),
        &root.join("backing"),
        &root.join("mnt"),
        journal,
        None,
    )
}

fn sync_dir(dir: &Path) {
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
}

#[test]
fn the_cut_keeps_what_was_synced_and_nothing_else() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("backing")).unwrap();
    std::fs::write(root.path().join("backing/log"), "synced|").unwrap();
    let mut m = mount(root.path(), false);
    let mnt = root.path().join("mnt");

    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(mnt.join("log"))
        .unwrap();
    log.write_all(b"acknowledged|").unwrap();
    log.sync_data().unwrap();
    log.write_all(b"in the page cache").unwrap();

    std::fs::create_dir(mnt.join("spool")).unwrap();
    sync_dir(&mnt);
    let tmp = mnt.join("snap.tmp");
    std::fs::write(&tmp, "snapshot").unwrap();
    std::fs::File::open(&tmp).unwrap().sync_all().unwrap();
    std::fs::rename(&tmp, mnt.join("snap")).unwrap();
    // The rename is not synced: neither name survives, as the file's creation was not either.

    let seg = std::fs::File::create(mnt.join("spool/seg")).unwrap();
    seg.write_all_at(b"entry", 0).unwrap();
    seg.sync_data().unwrap();
    sync_dir(&mnt.join("spool"));
    seg.write_all_at(b"ENTRY", 0).unwrap();

    assert_eq!(
        std::fs::read_to_string(mnt.join("log")).unwrap(),
        "synced|acknowledged|in the page cache",
        "reads see every write before the cut"
    );
    m.cut();
    assert_eq!(
        std::fs::read(mnt.join("log")).unwrap_err().raw_os_error(),
        Some(libc::EIO),
        "nothing answers after the cut"
    );
    drop(log);
    drop(seg);
    let said = m.unmount();
    assert!(said.starts_with("rolled back:"), "{said}");

    let backing = root.path().join("backing");
    assert_eq!(
        std::fs::read_to_string(backing.join("log")).unwrap(),
        "synced|acknowledged|"
    );
    assert!(!backing.join("snap").exists() && !backing.join("snap.tmp").exists());
    assert_eq!(
        std::fs::read_to_string(backing.join("spool/seg")).unwrap(),
        "entry"
    );
    let mut names: Vec<_> = std::fs::read_dir(&backing)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["log", "spool"], "and no attic left behind");
}

#[test]
fn a_clean_unmount_keeps_everything_and_journal_mode_keeps_names() {
    let root = tempfile::tempdir().unwrap();
    let m = mount(root.path(), false);
    let mnt = root.path().join("mnt");
    std::fs::write(mnt.join("a"), "never synced").unwrap();
    std::fs::write(mnt.join("b"), "gone").unwrap();
    std::fs::remove_file(mnt.join("b")).unwrap();
    assert!(m.unmount().contains("cleanly"));
    let backing = root.path().join("backing");
    assert_eq!(
        std::fs::read_to_string(backing.join("a")).unwrap(),
        "never synced"
    );
    assert!(!backing.join("b").exists());
    assert!(!backing.join(crashfs::core::ATTIC).exists());

    // With --journal, any fsync commits the names made before it, as ext4 does.
    let mut m = mount(root.path(), true);
    std::fs::write(mnt.join("c"), "not synced").unwrap();
    std::fs::rename(mnt.join("a"), mnt.join("d")).unwrap();
    let e = std::fs::File::create(mnt.join("e")).unwrap();
    e.write_all_at(b"synced", 0).unwrap();
    e.sync_all().unwrap();
    drop(e);
    m.cut();
    m.unmount();
    let mut names: Vec<_> = std::fs::read_dir(&backing)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["c", "d", "e"]);
    assert_eq!(std::fs::read_to_string(backing.join("c")).unwrap(), "");
    assert_eq!(
        std::fs::read_to_string(backing.join("d")).unwrap(),
        "never synced"
    );
    assert_eq!(
        std::fs::read_to_string(backing.join("e")).unwrap(),
        "synced"
    );
}
