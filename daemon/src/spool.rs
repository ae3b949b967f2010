//! The clear-text bytes of waiting messages, on disk. Each accepted call appends its messages
//! to the current segment file and syncs that one file; a message's bytes are punched out of
//! the segment (the blocks freed, reads return zeros) as soon as it no longer needs them, and a
//! segment is deleted once none of its messages does.
//!
//! Segments rather than a file per message: creating an inode costs about 1 ms on a busy ext4
//! directory — more than syncing the data — so a batch of a hundred paid a tenth of a second
//! just in file creation. Punching the hole keeps the promise a per-message file gave: a
//! delivered or cancelled message's text does not stay readable in the state directory.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::{FallocateFlags, fallocate};
use serde::{Deserialize, Serialize};

/// A segment stops taking new messages past this size, so that a long-lived segment whose
/// last message waits for days does not pin a large sparse file.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const SUFFIX: &str = ".spool";

/// Where a message's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub segment: String,
    pub offset: u64,
    pub len: u64,
}

struct Current {
    name: String,
    file: File,
    len: u64,
}

struct State {
    current: Option<Current>,
    /// Segment name → messages whose bytes it still holds.
    live: HashMap<String, usize>,
}

pub struct Spool {
    dir: PathBuf,
    state: Mutex<State>,
}

impl Spool {
    /// Opens the spool knowing which slots are still needed; every other file in it is left
    /// over from a submission that was never accepted, or from messages already finished, and
    /// is removed.
    pub fn open<'a>(
        dir: &Path,
        needed: impl IntoIterator<Item = &'a Slot>,
    ) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let mut live = HashMap::new();
        for slot in needed {
            *live.entry(slot.segment.clone()).or_insert(0) += 1;
        }
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.contains_key(&name) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(Spool {
            dir: dir.to_owned(),
            state: Mutex::new(State {
                current: None,
                live,
            }),
        })
    }

    /// Appends messages and syncs them; the slots are valid once this returns. On error
    /// nothing was accepted and the segment is cut back to where it was.
    pub fn append(&self, messages: &[&[u8]]) -> std::io::Result<Vec<Slot>> {
        let mut state = self.state.lock().unwrap();
        if state
            .current
            .as_ref()
            .is_none_or(|c| c.len >= SEGMENT_BYTES)
        {
            let old = state.current.take();
            if let Some(old) = old {
                self.forget_if_unused(&mut state, &old.name);
            }
            state.current = Some(self.create_segment()?);
        }
        let current = state.current.as_mut().expect("just created");
        let start = current.len;
        let mut slots = Vec::with_capacity(messages.len());
        let written = (|| {
            let mut offset = start;
            for bytes in messages {
                current.file.write_all_at(bytes, offset)?;
                slots.push(Slot {
                    segment: current.name.clone(),
                    offset,
                    len: bytes.len() as u64,
                });
                offset += bytes.len() as u64;
            }
            // fdatasync covers the new length, which is all the metadata a reader needs.
            current.file.sync_data()?;
            Ok(offset)
        })();
        match written {
            Ok(end) => {
                current.len = end;
                let name = current.name.clone();
                *state.live.entry(name).or_insert(0) += slots.len();
                Ok(slots)
            }
            Err(e) => {
                let _ = current.file.set_len(start);
                Err(e)
            }
        }
    }

    pub fn read(&self, slot: &Slot) -> std::io::Result<Vec<u8>> {
        let file = File::open(self.dir.join(&slot.segment))?;
        let mut bytes = vec![0; slot.len as usize];
        file.read_exact_at(&mut bytes, slot.offset)?;
        Ok(bytes)
    }

    /// The message no longer needs its bytes: they are punched out at once, and the segment
    /// goes when its last message does.
    pub fn release(&self, slot: &Slot) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap();
        let path = self.dir.join(&slot.segment);
        let remaining = match state.live.get_mut(&slot.segment) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => return Ok(()),
        };
        if remaining == 0 {
            if state
                .current
                .as_ref()
                .is_some_and(|c| c.name == slot.segment)
            {
                state.current = None;
            }
            state.live.remove(&slot.segment);
            return std::fs::remove_file(path);
        }
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        fallocate(
            &file,
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            slot.offset as i64,
            slot.len as i64,
        )
        .map_err(std::io::Error::from)
    }

    fn forget_if_unused(&self, state: &mut State, name: &str) {
        if state.live.get(name).is_none_or(|n| *n == 0) {
            state.live.remove(name);
            let _ = std::fs::remove_file(self.dir.join(name));
        }
    }

    /// A new segment, its directory entry synced so that the file survives a crash.
    fn create_segment(&self) -> std::io::Result<Current> {
        let name = format!("{}{SUFFIX}", crate::secret::random_id(12));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.dir.join(&name))?;
        File::open(&self.dir)?.sync_all()?;
        Ok(Current { name, file, len: 0 })
    }

    /// Segment files on disk, for tests.
    #[cfg(test)]
    pub fn files(&self) -> usize {
        std::fs::read_dir(&self.dir).unwrap().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_read_release() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), []).unwrap();
        let slots = spool.append(&[b"first secret", b"second"]).unwrap();
        let more = spool.append(&[b"third"]).unwrap();
        assert_eq!(spool.files(), 1, "one segment for both calls");
        assert_eq!(spool.read(&slots[1]).unwrap(), b"second");
        assert_eq!(spool.read(&more[0]).unwrap(), b"third");

        spool.release(&slots[0]).unwrap();
        let on_disk = std::fs::read(dir.path().join(&slots[0].segment)).unwrap();
        assert!(
            !on_disk.windows(6).any(|w| w == b"secret"),
            "a released message's bytes are gone from the segment"
        );
        assert_eq!(spool.read(&slots[1]).unwrap(), b"second");
        spool.release(&slots[1]).unwrap();
        spool.release(&more[0]).unwrap();
        assert_eq!(spool.files(), 0, "the last release removes the segment");

        let again = spool.append(&[b"fourth"]).unwrap();
        assert_ne!(again[0].segment, slots[0].segment);
        assert_eq!(spool.read(&again[0]).unwrap(), b"fourth");
    }

    #[test]
    fn reopening_keeps_needed_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), []).unwrap();
        let kept = spool.append(&[b"kept"]).unwrap();
        drop(spool);
        std::fs::write(dir.path().join("orphan.spool"), "never accepted").unwrap();
        let spool = Spool::open(dir.path(), &kept).unwrap();
        assert_eq!(spool.files(), 1);
        assert_eq!(spool.read(&kept[0]).unwrap(), b"kept");
        // New messages go to a new segment; the old one goes with its last message.
        let new = spool.append(&[b"new"]).unwrap();
        spool.release(&kept[0]).unwrap();
        assert_eq!(spool.files(), 1);
        assert_eq!(spool.read(&new[0]).unwrap(), b"new");
    }
}
