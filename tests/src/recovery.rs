//! The recovery file and a damaged state directory: what the confirmation mail carries, and
//! the damage a hostile or unlucky hand does to the daemon's files.

use std::path::Path;

/// The attachment `cleRecuperation.crbee` of a confirmation mail, decoded.
pub fn recovery_attachment(mail: &str) -> String {
    let (headers, bytes) = crate::smtp::attachment(mail, "cleRecuperation.crbee");
    assert!(headers.contains("application/octet-stream"), "{headers}");
    String::from_utf8(bytes).unwrap()
}

/// Writes a page-table snapshot full of damaged bytes into sled's folder, named as sled
/// names them, so that sled reads it first: what scribbling on a snapshot amounts to.
pub fn scribble_sled_snapshot(state_dir: &Path) {
    let db = state_dir.join("db");
    let mut scribbled = false;
    for entry in std::fs::read_dir(&db).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("snap.")
        {
            let mut bytes = std::fs::read(&path).unwrap();
            for b in bytes.iter_mut().skip(8) {
                *b ^= 0x5a;
            }
            std::fs::write(&path, bytes).unwrap();
            scribbled = true;
        }
    }
    if !scribbled {
        let mut snap = vec![0x5a; 4096];
        snap[..8].copy_from_slice(&1u64.to_le_bytes());
        std::fs::write(db.join("snap.00000000FFFFFFFF"), snap).unwrap();
    }
}

/// Cuts sled's main file to nothing.
pub fn truncate_sled_file(state_dir: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(state_dir.join("db/db"))
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// Every file under `dir` that holds `needle`.
pub fn files_holding(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if std::fs::read(&path)
            .unwrap_or_default()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            found.push(path);
        }
    }
    found
}

/// For each group in an account's archive directory, whether it carries an index (the format
/// the daemon writes now), read with the recovery file's text as `mailctl archive open` does.
pub fn archived_groups_indexed(account_dir: &Path, recovery: &str) -> Vec<bool> {
    use postecole_archive::{KeyFile, log, parse_recovery_file};
    let (_, key) = parse_recovery_file(recovery).unwrap();
    let key = KeyFile::read(account_dir).unwrap().unlock(&key).unwrap();
    let mut out = Vec::new();
    for name in log::logs(account_dir).unwrap() {
        let file = std::fs::File::open(account_dir.join(name)).unwrap();
        for (offset, len) in log::groups(&file).unwrap() {
            let group = log::open_group(file.try_clone().unwrap(), offset, len, &key).unwrap();
            out.push(group.indexed());
        }
    }
    out
}
