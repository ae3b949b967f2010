//! A spool segment as a crash, a full disk or a damaged disk may leave it, read back at
//! start: every entry the reader hands out reads back whole or is refused, never a panic
//! and never an allocation the file's size does not justify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postecoled::queue::spool::Spool;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir_in(tmp()).unwrap();
    std::fs::write(dir.path().join("000001.spool"), data).unwrap();
    let Ok((spool, recovered)) = Spool::open(dir.path(), |record| Some(record.to_vec())) else {
        return;
    };
    for entry in &recovered {
        assert!(entry.slot.len <= data.len() as u64);
        let _ = spool.record(&entry.slot);
        let _ = spool.read(&entry.slot);
        let _ = spool.outcome(&entry.slot);
    }
});

/// Memory, not the disk: a segment per run.
fn tmp() -> &'static std::path::Path {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::path::Path::new("/tmp")
    }
}
