//! Reading sealed groups back without opening more than needed.
//!
//! A group's clear stream (since format 2) starts with an index of its messages (id, size,
//! Subject, To) before their bytes, so that a listing decrypts only the first chunk(s) of each
//! group and reading one message decrypts only the chunks holding it: age's stream is sealed in
//! 64 KiB chunks that can be opened one by one. Format 2: `PCA2`, the index's length (u32),
//! the index (per message: id length u32, id, byte length u64, Subject length u32, Subject,
//! To length u32, To), then the messages' bytes in index order; little-endian. A group written
//! before (no `PCA2`: per message id length u32, id, length u64, bytes) is still read, whole.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use super::{Archive, Unlocked, summary};
use crate::model::Slot;

const MAGIC: &[u8; 4] = b"PCA2";
/// An index larger than this is not one the daemon wrote.
const MAX_INDEX_BYTES: u32 = 16 << 20;

/// One message of a group, as its index says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub subject: String,
    pub to: String,
    pub size: u64,
    /// Where its bytes start in the group's clear stream.
    offset: u64,
}

/// The clear stream of a new group: the index, then the bytes.
pub(super) fn write_group(out: &mut impl Write, messages: &[(&str, &[u8])]) -> std::io::Result<()> {
    let mut index = Vec::new();
    for (id, bytes) in messages {
        let (subject, to) = summary(bytes);
        put(&mut index, id.as_bytes());
        index.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        put(&mut index, subject.as_bytes());
        put(&mut index, to.as_bytes());
    }
    out.write_all(MAGIC)?;
    out.write_all(&(index.len() as u32).to_le_bytes())?;
    out.write_all(&index)?;
    for (_, bytes) in messages {
        out.write_all(bytes)?;
    }
    Ok(())
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_le_bytes());
    out.extend_from_slice(field);
}

/// A group's sealed bytes inside its log, as a file of their own (what age's reader seeks in).
struct Window {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Window {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::Current(n) => self.pos as i128 + n as i128,
            SeekFrom::End(n) => self.len as i128 + n as i128,
        };
        if pos < 0 {
            return Err(std::io::Error::other("seek before the start of a group"));
        }
        self.pos = pos as u64;
        Ok(self.pos)
    }
}

/// An opened group: its index, and the means to read one message's bytes.
pub struct Group {
    pub entries: Vec<Entry>,
    body: Body,
}

enum Body {
    Stream(Box<age::stream::StreamReader<Window>>),
    /// A group of format 1, decrypted whole.
    Whole(Vec<Vec<u8>>),
}

impl Group {
    /// The bytes of `entry`, decrypting only the chunks that hold them.
    pub fn bytes(&mut self, entry: &Entry) -> std::io::Result<Vec<u8>> {
        match &mut self.body {
            Body::Stream(reader) => {
                reader.seek(SeekFrom::Start(entry.offset))?;
                let mut out = Vec::with_capacity(entry.size as usize);
                reader.by_ref().take(entry.size).read_to_end(&mut out)?;
                if out.len() as u64 != entry.size {
                    return Err(malformed());
                }
                Ok(out)
            }
            Body::Whole(bodies) => bodies
                .get(entry.offset as usize)
                .cloned()
                .ok_or_else(malformed),
        }
    }

    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }
}

fn malformed() -> std::io::Error {
    std::io::Error::other("malformed archive group")
}

impl Archive {
    /// Opens the group at `slot` and reads its index; None if its log is gone.
    pub fn open_group(
        &self,
        account: &str,
        slot: &Slot,
        key: &Unlocked,
    ) -> std::io::Result<Option<Group>> {
        let file = match File::open(self.dir.join(account).join(&slot.segment)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let window = Window {
            file,
            start: slot.offset,
            len: slot.len,
            pos: 0,
        };
        let decryptor = age::Decryptor::new(window).map_err(std::io::Error::other)?;
        let mut reader = decryptor
            .decrypt(std::iter::once(&key.0 as &dyn age::Identity))
            .map_err(std::io::Error::other)?;
        let mut head = [0u8; 4];
        reader.read_exact(&mut head)?;
        if &head != MAGIC {
            reader.seek(SeekFrom::Start(0))?;
            return whole(reader).map(Some);
        }
        let mut len = [0u8; 4];
        reader.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len);
        if len > MAX_INDEX_BYTES {
            return Err(malformed());
        }
        let mut index = vec![0; len as usize];
        reader.read_exact(&mut index)?;
        let mut offset = 8 + len as u64;
        let mut entries = Vec::new();
        let mut rest = &index[..];
        while !rest.is_empty() {
            let id = field(&mut rest)?;
            let (size, tail) = rest.split_first_chunk::<8>().ok_or_else(malformed)?;
            rest = tail;
            let size = u64::from_le_bytes(*size);
            let subject = field(&mut rest)?;
            let to = field(&mut rest)?;
            entries.push(Entry {
                id,
                subject,
                to,
                size,
                offset,
            });
            offset += size;
        }
        Ok(Some(Group {
            entries,
            body: Body::Stream(Box::new(reader)),
        }))
    }
}

fn field(rest: &mut &[u8]) -> std::io::Result<String> {
    let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(malformed)?;
    let (value, tail) = tail
        .split_at_checked(u32::from_le_bytes(*len) as usize)
        .ok_or_else(malformed)?;
    *rest = tail;
    Ok(String::from_utf8_lossy(value).into_owned())
}

/// A format-1 group: decrypted whole, since nothing says where each message starts.
fn whole(mut reader: impl Read) -> std::io::Result<Group> {
    let mut clear = Vec::new();
    reader.read_to_end(&mut clear)?;
    let mut rest = &clear[..];
    let mut entries = Vec::new();
    let mut bodies = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(malformed)?;
        let (id, tail) = tail
            .split_at_checked(u32::from_le_bytes(*len) as usize)
            .ok_or_else(malformed)?;
        let (len, tail) = tail.split_first_chunk::<8>().ok_or_else(malformed)?;
        let (bytes, tail) = tail
            .split_at_checked(u64::from_le_bytes(*len) as usize)
            .ok_or_else(malformed)?;
        let (subject, to) = summary(bytes);
        entries.push(Entry {
            id: String::from_utf8_lossy(id).into_owned(),
            subject,
            to,
            size: bytes.len() as u64,
            offset: bodies.len() as u64,
        });
        bodies.push(bytes.to_vec());
        rest = tail;
    }
    Ok(Group {
        entries,
        body: Body::Whole(bodies),
    })
}

/// An account's archive opened for one call: which messages it holds and where.
pub struct View {
    pub archive: Archive,
    pub account: String,
    pub key: Unlocked,
    /// Oldest first.
    pub messages: Vec<Held>,
}

/// A message the queue's records say is in the archive.
pub struct Held {
    pub id: String,
    pub created: u64,
    pub sender: String,
    pub slot: Slot,
}

/// A listing line: nothing but the group's index was decrypted for it.
pub struct Listed {
    pub id: String,
    pub created: u64,
    pub subject: String,
    pub to: String,
    pub size: u64,
}

impl View {
    /// Walks the messages in order, opening each group once while its messages follow one
    /// another (they were sealed together), and hands each to `each` with its group.
    fn walk(
        &self,
        mut each: impl FnMut(&Held, &mut Group, &Entry) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut open: Option<(Slot, Option<Group>)> = None;
        for held in &self.messages {
            if open.as_ref().is_none_or(|(slot, _)| *slot != held.slot) {
                let group = self
                    .archive
                    .open_group(&self.account, &held.slot, &self.key)
                    .unwrap_or_else(|e| {
                        tracing::error!(message = %held.id, error = %e, "archived message unreadable");
                        None
                    });
                open = Some((held.slot.clone(), group));
            }
            if let Some((_, Some(group))) = open.as_mut()
                && let Some(entry) = group.entry(&held.id).cloned()
            {
                each(held, group, &entry)?;
            }
        }
        Ok(())
    }

    /// Every message's summary, from the groups' indexes alone.
    pub fn list(&self) -> Vec<Listed> {
        let mut out = Vec::new();
        let _ = self.walk(|held, _, entry| {
            out.push(Listed {
                id: held.id.clone(),
                created: held.created,
                subject: entry.subject.clone(),
                to: entry.to.clone(),
                size: entry.size,
            });
            Ok(())
        });
        out
    }

    /// One message's bytes, decrypting only its group's index and the chunks holding it.
    pub fn read(&self, id: &str) -> std::io::Result<Option<Vec<u8>>> {
        let Some(held) = self.messages.iter().find(|m| m.id == id) else {
            return Ok(None);
        };
        let Some(mut group) = self
            .archive
            .open_group(&self.account, &held.slot, &self.key)?
        else {
            return Ok(None);
        };
        let Some(entry) = group.entry(id).cloned() else {
            return Ok(None);
        };
        group.bytes(&entry).map(Some)
    }

    /// Writes every message as an mbox to `out`, one message in memory at a time; returns how
    /// many were written.
    pub fn export(&self, out: &mut impl Write) -> std::io::Result<u32> {
        let mut count = 0;
        self.walk(|held, group, entry| {
            let bytes = group.bytes(entry)?;
            let mut mbox = Vec::with_capacity(bytes.len() + 256);
            super::mbox_entry(&mut mbox, &held.sender, held.created, &bytes);
            drop(bytes);
            out.write_all(&mbox)?;
            count += 1;
            Ok(())
        })?;
        out.flush()?;
        Ok(count)
    }
}
