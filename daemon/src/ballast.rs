//! A few megabytes kept aside in the state directory, so that the daemon can start on a disk
//! that somebody filled: the database needs room to open before any `DiskFull` can be said.

use std::io::Write;
use std::path::Path;

const FILE: &str = "reserve";
const BYTES: usize = 8 * 1024 * 1024;

/// Before the store opens: if the disk is full, gives the reserve back to the file system.
pub fn release_if_full(state_dir: &Path) {
    let path = state_dir.join(FILE);
    if !path.exists() {
        return;
    }
    match free_bytes(state_dir) {
        Ok(free) if free >= BYTES as u64 => {}
        _ => match std::fs::remove_file(&path) {
            Ok(()) => tracing::warn!(
                state_dir = %state_dir.display(),
                "the disk is full: released the {} MiB reserve so that the daemon can start; \
                 new mail is refused until space is freed",
                BYTES >> 20
            ),
            Err(e) => tracing::error!(error = %e, "cannot release the disk reserve"),
        },
    }
}

/// Once the daemon is up: puts the reserve back if it is missing and there is room for it
/// with as much again to spare.
pub fn keep(state_dir: &Path) {
    let path = state_dir.join(FILE);
    if path.exists() || free_bytes(state_dir).is_ok_and(|f| f < 2 * BYTES as u64) {
        return;
    }
    let tmp = state_dir.join(format!("{FILE}.new"));
    // Zeros really written and synced, so that the blocks are the reserve's, not a sparse
    // promise.
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..BYTES / zeros.len() {
            f.write_all(&zeros)?;
        }
        f.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, &path)) {
        Ok(()) => tracing::info!("disk reserve of {} MiB in place", BYTES >> 20),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(error = %e, "cannot put the disk reserve in place");
        }
    }
}

/// Room the reserve should hold but does not (released on a full disk, or not yet made):
/// new mail must leave that much free on top of the configured reserve, or a full disk would
/// be refilled with the very room kept to start on it.
pub fn owed(state_dir: &Path) -> u64 {
    if state_dir.join(FILE).exists() {
        0
    } else {
        BYTES as u64
    }
}

fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_made_once_and_kept_while_there_is_room() {
        let dir = tempfile::tempdir().unwrap();
        keep(dir.path());
        let path = dir.path().join(FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), BYTES as u64);
        // A disk with room keeps it.
        release_if_full(dir.path());
        assert!(path.exists());
    }
}
