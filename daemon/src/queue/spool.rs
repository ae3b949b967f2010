//! The clear-text bytes of waiting messages, on disk, and the write-ahead log of the queue.
//! Each accepted call appends one entry per message — its status record as first written, then
//! its bytes — to the current segment file and syncs that one file: that sync is what accepts
//! the call. The store is written after it without waiting for its own flush; after a crash,
//! entries whose record the store lost are read back from here.
//!
//! A message's record and bytes are punched out of the segment (the blocks freed, reads return
//! zeros) as soon as it no longer needs them, and a segment no longer written to is deleted
//! once none of its messages does.
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

use crate::model::Slot;

/// A segment stops taking new messages past this size, so that a long-lived segment whose
/// last message waits for days does not pin a large sparse file.
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const SUFFIX: &str = ".spool";

/// A small call writes into blocks zero-filled ahead of it: overwriting allocated blocks lets
/// fdatasync skip the file system's journal (0.11 ms instead of 0.23 ms here for 20 KB). A
/// batch writes enough to pay for its own allocation, and is not doubled by zeros.
const ZERO_AHEAD: u64 = 4 * 1024 * 1024;
const SMALL_CALL: u64 = 256 * 1024;

/// An entry: magic, record length (u32), bytes length (u64), CRC-32 of the record and bytes
/// (u32), the message's outcome (u32: `Mark`), all little-endian, then the record, then the
/// bytes. The header stays when an entry is punched out, so that a scan can step over it; of
/// the message it tells only the size, a checksum and how it ended.
const MAGIC: &[u8; 4] = b"PCQ1";
const HEADER: u64 = 24;
const MARK_AT: u64 = 20;

/// How a message ended, kept in its entry's header once the store says so: the store is the
/// authority, but when it is lost and restored from an older snapshot, the spool still tells
/// which messages must not be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Waiting = 0,
    Delivered = 1,
    Failed = 2,
    Cancelled = 3,
}

impl Mark {
    fn from_u32(n: u32) -> Mark {
        match n {
            1 => Mark::Delivered,
            2 => Mark::Failed,
            3 => Mark::Cancelled,
            _ => Mark::Waiting,
        }
    }
}

/// What the spool says of a message the store has as waiting.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its entry is whole and unmarked: it is still to be sent.
    Waiting,
    Ended(Mark),
    /// Its entry is gone (punched, or its segment removed) with no mark: it ended, how is
    /// unknown. Only a spool written before marks existed shows this.
    Gone,
}

struct Current {
    name: String,
    file: File,
    len: u64,
    /// Up to here the file's blocks are allocated and written (entries or zeros).
    zeroed: u64,
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

/// An entry found on disk whose record the store did not have, as `lost` read it.
pub struct Recovered<T> {
    pub record: T,
    pub slot: Slot,
    /// The outcome marked in its header.
    pub mark: Mark,
}

impl Spool {
    /// Opens the spool and reads back the entries whose record `lost` returns: those the
    /// store does not know (given each entry's record). Call `retain` next.
    pub fn open<T>(
        dir: &Path,
        mut lost: impl FnMut(&[u8]) -> Option<T>,
    ) -> std::io::Result<(Spool, Vec<Recovered<T>>)> {
        std::fs::create_dir_all(dir)?;
        let mut recovered = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(SUFFIX) {
                continue;
            }
            let file = File::open(entry.path())?;
            let end = file.metadata()?.len();
            let mut offset = 0;
            // A torn tail (a call that never got its answer) ends the scan.
            while let Some((record_len, bytes_len, mark)) = header(&file, offset, end)? {
                let slot = Slot {
                    segment: name.clone(),
                    offset,
                    len: HEADER + record_len + bytes_len,
                };
                let mut record = vec![0; record_len as usize];
                file.read_exact_at(&mut record, offset + HEADER)?;
                let next = offset + slot.len;
                // A punched entry reads as zeros: finished, and its digest no longer matches.
                if let Some(record) = lost(&record)
                    && read_entry(&file, &slot).is_ok()
                {
                    recovered.push(Recovered { record, slot, mark });
                }
                offset = next;
            }
        }
        let spool = Spool {
            dir: dir.to_owned(),
            state: Mutex::new(State {
                current: None,
                live: HashMap::new(),
            }),
        };
        Ok((spool, recovered))
    }

    /// Keeps the segments holding these slots, counted, and removes every other file: left
    /// over from a call that was never accepted, or from messages already finished.
    pub fn retain<'a>(&self, needed: impl IntoIterator<Item = &'a Slot>) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap();
        for slot in needed {
            *state.live.entry(slot.segment.clone()).or_insert(0) += 1;
        }
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !state.live.contains_key(&name) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Appends one entry per (record, bytes) and syncs them; the slots are valid once this
    /// returns. On error nothing was accepted and the segment is cut back to where it was.
    pub fn append(&self, entries: &[(&[u8], &[u8])]) -> std::io::Result<Vec<Slot>> {
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
        let total: u64 = entries
            .iter()
            .map(|(r, b)| HEADER + (r.len() + b.len()) as u64)
            .sum();
        let mut slots = Vec::with_capacity(entries.len());
        let written = (|| {
            if total <= SMALL_CALL && start + total > current.zeroed {
                let from = current.zeroed.max(start);
                let to = start + ZERO_AHEAD;
                current
                    .file
                    .write_all_at(&vec![0; (to - from) as usize], from)?;
                current.zeroed = to;
            }
            let mut offset = start;
            let mut buf = Vec::new();
            for (record, bytes) in entries {
                buf.clear();
                buf.extend_from_slice(MAGIC);
                buf.extend_from_slice(&(record.len() as u32).to_le_bytes());
                buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                buf.extend_from_slice(&digest(record, bytes).to_le_bytes());
                buf.extend_from_slice(&[0; 4]);
                buf.extend_from_slice(record);
                current.file.write_all_at(&buf, offset)?;
                current
                    .file
                    .write_all_at(bytes, offset + buf.len() as u64)?;
                let len = (buf.len() + bytes.len()) as u64;
                slots.push(Slot {
                    segment: current.name.clone(),
                    offset,
                    len,
                });
                offset += len;
            }
            // fdatasync covers the new length, which is all the metadata a reader needs.
            current.file.sync_data()?;
            Ok(offset)
        })();
        match written {
            Ok(end) => {
                current.len = end;
                current.zeroed = current.zeroed.max(end);
                let name = current.name.clone();
                *state.live.entry(name).or_insert(0) += slots.len();
                Ok(slots)
            }
            Err(e) => {
                let _ = current.file.set_len(start);
                current.zeroed = current.zeroed.min(start);
                Err(e)
            }
        }
    }

    /// The record the message was accepted with, as written in its entry.
    pub fn record(&self, slot: &Slot) -> std::io::Result<Vec<u8>> {
        let file = File::open(self.dir.join(&slot.segment))?;
        let end = file.metadata()?.len();
        let (record_len, _, _) = header(&file, slot.offset, end)?.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "no entry at this place")
        })?;
        let mut record = vec![0; record_len as usize];
        file.read_exact_at(&mut record, slot.offset + HEADER)?;
        Ok(record)
    }

    /// The message's bytes.
    pub fn read(&self, slot: &Slot) -> std::io::Result<Vec<u8>> {
        read_entry(&File::open(self.dir.join(&slot.segment))?, slot)
    }

    /// The message no longer needs its entry: its record and bytes are punched out at once,
    /// and a segment no longer written to goes with its last message.
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
        let current = state
            .current
            .as_ref()
            .is_some_and(|c| c.name == slot.segment);
        // The current segment stays, punched: creating a file costs more than a sync here.
        if remaining == 0 && !current {
            state.live.remove(&slot.segment);
            return std::fs::remove_file(path);
        }
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        fallocate(
            &file,
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            (slot.offset + HEADER) as i64,
            (slot.len - HEADER) as i64,
        )
        .map_err(std::io::Error::from)
    }

    /// Records in the entry's header how its message ended (or that it waits again). Not
    /// synced: it is read only when the store was lost, and the store holds it durably.
    pub fn mark(&self, slot: &Slot, mark: Mark) -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join(&slot.segment))?;
        file.write_all_at(&(mark as u32).to_le_bytes(), slot.offset + MARK_AT)
    }

    /// Whether the message in `slot` still waits, as far as the spool knows.
    pub fn outcome(&self, slot: &Slot) -> std::io::Result<Outcome> {
        let file = match File::open(self.dir.join(&slot.segment)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Gone),
            Err(e) => return Err(e),
        };
        let end = file.metadata()?.len();
        match header(&file, slot.offset, end)? {
            Some((_, _, Mark::Waiting)) if read_entry(&file, slot).is_ok() => Ok(Outcome::Waiting),
            Some((_, _, Mark::Waiting)) | None => Ok(Outcome::Gone),
            Some((_, _, mark)) => Ok(Outcome::Ended(mark)),
        }
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
        Ok(Current {
            name,
            file,
            len: 0,
            zeroed: 0,
        })
    }
}

/// The lengths and mark in the entry header at `offset`, or None at the end of what was
/// written.
fn header(file: &File, offset: u64, end: u64) -> std::io::Result<Option<(u64, u64, Mark)>> {
    if offset + HEADER > end {
        return Ok(None);
    }
    let mut head = [0; HEADER as usize];
    file.read_exact_at(&mut head, offset)?;
    if &head[..4] != MAGIC {
        return Ok(None);
    }
    let record = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as u64;
    let bytes = u64::from_le_bytes(head[8..16].try_into().expect("8 bytes"));
    match (offset + HEADER)
        .checked_add(record)
        .and_then(|n| n.checked_add(bytes))
    {
        Some(entry_end) if entry_end <= end => {
            let mark = u32::from_le_bytes(head[20..24].try_into().expect("4 bytes"));
            Ok(Some((record, bytes, Mark::from_u32(mark))))
        }
        _ => Ok(None),
    }
}

/// The bytes of the entry in `slot`, checked against its digest.
fn read_entry(file: &File, slot: &Slot) -> std::io::Result<Vec<u8>> {
    let lost = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "its content was lost in a crash before it was accepted",
        )
    };
    let mut entry = vec![0; slot.len as usize];
    file.read_exact_at(&mut entry, slot.offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            lost()
        } else {
            e
        }
    })?;
    if slot.len < HEADER || &entry[..4] != MAGIC {
        return Err(lost());
    }
    let record_len = u32::from_le_bytes(entry[4..8].try_into().expect("4 bytes")) as usize;
    let stored = u32::from_le_bytes(entry[16..20].try_into().expect("4 bytes"));
    let body = HEADER as usize + record_len;
    if body > entry.len() || digest(&entry[HEADER as usize..body], &entry[body..]) != stored {
        return Err(lost());
    }
    entry.drain(..body);
    Ok(entry)
}

/// Tells a torn or punched entry from a whole one, as sled's own log does: a check against
/// accidents, not against anybody (the spool is the daemon's alone).
fn digest(record: &[u8], bytes: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(record);
    crc.update(bytes);
    crc.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn append_read_release() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), |r| Some(r.to_vec())).unwrap();
        let slots = spool
            .append(&[(b"r1", b"first secret"), (b"r2", b"second")])
            .unwrap();
        let more = spool.append(&[(b"r3", b"third")]).unwrap();
        assert_eq!(files(dir.path()), 1, "one segment for both calls");
        assert_eq!(spool.read(&slots[1]).unwrap(), b"second");
        assert_eq!(spool.read(&more[0]).unwrap(), b"third");

        spool.release(&slots[0]).unwrap();
        let on_disk = std::fs::read(dir.path().join(&slots[0].segment)).unwrap();
        assert!(
            !on_disk.windows(6).any(|w| w == b"secret"),
            "a released message's bytes are gone from the segment"
        );
        assert_eq!(spool.read(&slots[1]).unwrap(), b"second");
        assert_eq!(spool.record(&slots[1]).unwrap(), b"r2");
        spool.release(&slots[1]).unwrap();
        spool.release(&more[0]).unwrap();
        assert_eq!(files(dir.path()), 1, "the segment written to stays");
        let on_disk = std::fs::read(dir.path().join(&slots[0].segment)).unwrap();
        assert!(!on_disk.windows(5).any(|w| w == b"third" || w == b"secon"));

        let again = spool.append(&[(b"r4", b"fourth")]).unwrap();
        assert_eq!(again[0].segment, slots[0].segment);
        assert_eq!(spool.read(&again[0]).unwrap(), b"fourth");
    }

    #[test]
    fn reopening_recovers_what_the_store_lost_and_keeps_needed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), |r| Some(r.to_vec())).unwrap();
        let slots = spool
            .append(&[(b"known", b"a"), (b"lost", b"b"), (b"done", b"c")])
            .unwrap();
        spool.release(&slots[2]).unwrap();
        drop(spool);
        std::fs::write(dir.path().join("orphan.spool"), "never accepted").unwrap();

        let (spool, recovered) =
            Spool::open(dir.path(), |r| (r != b"known").then(|| r.to_vec())).unwrap();
        assert_eq!(recovered.len(), 1, "the punched entry is not read back");
        assert_eq!(recovered[0].record, b"lost");
        assert_eq!(recovered[0].slot, slots[1]);
        spool.retain([&slots[0], &slots[1]]).unwrap();
        assert_eq!(files(dir.path()), 1, "the orphan is removed");
        assert_eq!(spool.read(&slots[1]).unwrap(), b"b");
        // New messages go to a new segment; the old one goes with its last message.
        let new = spool.append(&[(b"new", b"d")]).unwrap();
        spool.release(&slots[0]).unwrap();
        spool.release(&slots[1]).unwrap();
        assert_eq!(files(dir.path()), 1);
        assert_eq!(spool.read(&new[0]).unwrap(), b"d");
    }

    #[test]
    fn marks_tell_how_a_message_ended_after_the_store_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), |r| Some(r.to_vec())).unwrap();
        let slots = spool
            .append(&[
                (b"sent", b"a"),
                (b"failed", b"b"),
                (b"waits", b"c"),
                (b"retried", b"d"),
            ])
            .unwrap();
        spool.mark(&slots[0], Mark::Delivered).unwrap();
        spool.release(&slots[0]).unwrap();
        spool.mark(&slots[1], Mark::Failed).unwrap();
        spool.mark(&slots[3], Mark::Failed).unwrap();
        spool.mark(&slots[3], Mark::Waiting).unwrap();
        assert_eq!(
            spool.outcome(&slots[0]).unwrap(),
            Outcome::Ended(Mark::Delivered)
        );
        assert_eq!(
            spool.outcome(&slots[1]).unwrap(),
            Outcome::Ended(Mark::Failed)
        );
        assert_eq!(spool.outcome(&slots[2]).unwrap(), Outcome::Waiting);
        assert_eq!(spool.outcome(&slots[3]).unwrap(), Outcome::Waiting);
        assert_eq!(
            spool.read(&slots[1]).unwrap(),
            b"b",
            "a failed message can be retried"
        );
        drop(spool);
        let (_, recovered) = Spool::open(dir.path(), |r| Some(r.to_vec())).unwrap();
        let marks: Vec<(&[u8], Mark)> = recovered
            .iter()
            .map(|r| (r.record.as_slice(), r.mark))
            .collect();
        assert_eq!(
            marks,
            [
                (&b"failed"[..], Mark::Failed),
                (b"waits", Mark::Waiting),
                (b"retried", Mark::Waiting)
            ]
        );
        let gone = Slot {
            segment: "removed.spool".into(),
            offset: 0,
            len: 30,
        };
        assert_eq!(spool_outcome(dir.path(), &gone), Outcome::Gone);
    }

    fn spool_outcome(dir: &Path, slot: &Slot) -> Outcome {
        Spool::open(dir, |_| None::<()>)
            .unwrap()
            .0
            .outcome(slot)
            .unwrap()
    }

    #[test]
    fn a_torn_entry_is_named_lost_and_ends_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), |r| Some(r.to_vec())).unwrap();
        let slots = spool.append(&[(b"r1", b"kept"), (b"r2", b"torn")]).unwrap();
        let path = dir.path().join(&slots[1].segment);
        // As after a crash: the header reached the disk, the end of the entry did not.
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(slots[1].offset + slots[1].len - 2).unwrap();
        let err = spool.read(&slots[1]).unwrap_err();
        assert!(err.to_string().contains("lost in a crash"), "{err}");
        file.set_len(slots[1].offset + slots[1].len).unwrap();
        let err = spool.read(&slots[1]).unwrap_err();
        assert!(err.to_string().contains("lost in a crash"), "{err}");
        assert_eq!(spool.read(&slots[0]).unwrap(), b"kept");
        drop(spool);
        let (_, recovered) = Spool::open(dir.path(), |r| Some(r.to_vec())).unwrap();
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].record, b"r1");
    }
}
