//! An account's logs: `archive/<account>/NNNNNN.log`, numbered from 000001. Each is a series
//! of groups written one after the other with nothing between them; a group is one age file
//! (X25519 recipient: the account's) holding several messages.
//!
//! A group's clear stream (since format 2) starts with an index of its messages (id, size,
//! Subject, To) before their bytes, so that a listing decrypts only the first chunk(s) of each
//! group and reading one message decrypts only the chunks holding it: age's stream is sealed in
//! 64 KiB chunks that can be opened one by one. Format 2: `PCA2`, the index's length (u32),
//! the index (per message: id length u32, id, byte length u64, Subject length u32, Subject,
//! To length u32, To), then the messages' bytes in index order; little-endian. A group written
//! before (no `PCA2`: per message id length u32, id, length u64, bytes) is still read, whole.
//!
//! The daemon's records say where each group starts and ends. Without them (the database
//! lost), groups are found again by their age header line, which cannot occur inside a group:
//! what follows a header is ciphertext, and the header line is 22 bytes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::{Unlocked, summary};

/// A message from the archive: its queue id and its clear bytes.
pub type Sealed = (String, Vec<u8>);

const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";
const MAGIC: &[u8; 4] = b"PCA2";
/// Reserved ahead for one message's bytes, whatever its index entry claims.
const RESERVE_AT_MOST: u64 = 1 << 20;
/// An index larger than this is not one the daemon wrote.
const MAX_INDEX_BYTES: u32 = 16 << 20;

/// Encrypts messages (id, bytes) together to `recipient`, as one group.
pub fn seal_group(recipient: &str, messages: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
    let recipient: age::x25519::Recipient = recipient
        .parse()
        .map_err(|e: &str| std::io::Error::other(format!("bad archive key: {e}")))?;
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(std::io::Error::other)?;
    let total: usize = messages.iter().map(|(id, b)| 12 + id.len() + b.len()).sum();
    let mut sealed = Vec::with_capacity(total + 512);
    let mut writer = encryptor.wrap_output(&mut sealed)?;
    write_group(&mut writer, messages)?;
    writer.finish()?;
    Ok(sealed)
}

/// The clear stream of a new group: the index, then the bytes.
fn write_group(out: &mut impl Write, messages: &[(&str, &[u8])]) -> std::io::Result<()> {
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

/// One message of a group, as its index says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub subject: String,
    pub to: String,
    pub size: u64,
    /// Where its bytes start in the group's clear stream (format 1: its place in the group).
    offset: u64,
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

/// What a group's clear stream is read from: age's decrypting reader, or bytes already clear.
pub trait Clear: Read + Seek + Send {}
impl<T: Read + Seek + Send> Clear for T {}

enum Body {
    Stream(Box<dyn Clear>),
    /// A group of format 1, decrypted whole.
    Whole(Vec<Vec<u8>>),
}

impl Group {
    /// The bytes of `entry`, decrypting only the chunks that hold them.
    pub fn bytes(&mut self, entry: &Entry) -> std::io::Result<Vec<u8>> {
        match &mut self.body {
            Body::Stream(reader) => {
                reader.seek(SeekFrom::Start(entry.offset))?;
                // The index says the size; only the stream proves it, so that a forged index
                // cannot make us reserve more than the group holds.
                let mut out = Vec::with_capacity(entry.size.min(RESERVE_AT_MOST) as usize);
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

    /// Whether the group carries an index (format 2), so that it opens chunk by chunk.
    pub fn indexed(&self) -> bool {
        matches!(self.body, Body::Stream(_))
    }

    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }
}

fn malformed() -> std::io::Error {
    std::io::Error::other("malformed archive group")
}

/// Opens the group at `offset`, `len` bytes long, in `file` and reads its index: of a group of
/// format 2 only the chunks holding the index are decrypted.
pub fn open_group(file: File, offset: u64, len: u64, key: &Unlocked) -> std::io::Result<Group> {
    let window = Window {
        file,
        start: offset,
        len,
        pos: 0,
    };
    let decryptor = age::Decryptor::new(window).map_err(std::io::Error::other)?;
    let reader = decryptor
        .decrypt(std::iter::once(&key.0 as &dyn age::Identity))
        .map_err(std::io::Error::other)?;
    read_index(Box::new(reader))
}

/// Reads a group's index from its clear stream (decrypted, or any bytes: what a damaged or
/// forged group may hold), keeping the stream to read the messages from.
pub fn read_index(mut reader: Box<dyn Clear>) -> std::io::Result<Group> {
    let mut head = [0u8; 4];
    if reader.read_exact(&mut head).is_err() || &head != MAGIC {
        reader.seek(SeekFrom::Start(0))?;
        return whole(reader);
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
        offset = offset.checked_add(size).ok_or_else(malformed)?;
    }
    Ok(Group {
        entries,
        body: Body::Stream(reader),
    })
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

/// Every message of the group at `offset`, `len` bytes long, in clear.
pub fn read_group(
    file: &File,
    offset: u64,
    len: u64,
    key: &Unlocked,
) -> std::io::Result<Vec<Sealed>> {
    let mut group = open_group(file.try_clone()?, offset, len, key)?;
    let entries = group.entries.clone();
    entries
        .iter()
        .map(|e| Ok((e.id.clone(), group.bytes(e)?)))
        .collect()
}

/// The log files of an account's directory, oldest first.
pub fn logs(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".log")?.parse::<u32>().ok()?;
            Some(name)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Where each group of a log starts and how long it is, found by reading the log once.
pub fn groups(file: &File) -> std::io::Result<Vec<(u64, u64)>> {
    let end = file.metadata()?.len();
    let mut starts = Vec::new();
    let mut buf = vec![0; 1 << 20];
    let mut offset = 0;
    while offset < end {
        let n = file.read_at(&mut buf, offset)?;
        if n == 0 {
            break;
        }
        let window = &buf[..n];
        for i in window
            .windows(AGE_MAGIC.len())
            .enumerate()
            .filter(|(_, w)| *w == AGE_MAGIC)
            .map(|(i, _)| i)
        {
            starts.push(offset + i as u64);
        }
        if offset + n as u64 >= end {
            break;
        }
        // Overlap so that a header cut by the buffer's end is seen whole in the next read.
        offset += (n - (AGE_MAGIC.len() - 1)) as u64;
    }
    starts.dedup();
    Ok(starts
        .iter()
        .enumerate()
        .map(|(i, &s)| (s, starts.get(i + 1).copied().unwrap_or(end) - s))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_found_again_without_their_slots() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public().to_string();
        let big = vec![b'x'; 3 << 20];
        let mut log = Vec::new();
        log.extend(seal_group(&recipient, &[("m1", b"one"), ("m2", b"two")]).unwrap());
        log.extend(seal_group(&recipient, &[("m3", &big)]).unwrap());
        log.extend(seal_group(&recipient, &[("m4", b"four")]).unwrap());
        let path = dir.path().join("000001.log");
        std::fs::write(&path, &log).unwrap();
        let file = File::open(&path).unwrap();
        let found = groups(&file).unwrap();
        assert_eq!(found.len(), 3);
        let key = Unlocked(identity);
        let ids: Vec<Vec<String>> = found
            .iter()
            .map(|&(o, l)| {
                read_group(&file, o, l, &key)
                    .unwrap()
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect()
            })
            .collect();
        assert_eq!(ids, vec![vec!["m1", "m2"], vec!["m3"], vec!["m4"]]);
        assert_eq!(
            read_group(&file, found[1].0, found[1].1, &key).unwrap()[0].1,
            big
        );
        assert_eq!(logs(dir.path()).unwrap(), vec!["000001.log"]);
    }

    #[test]
    fn a_group_lists_from_its_index_even_when_its_bodies_are_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public().to_string();
        let mut big = b"Subject: =?utf-8?q?r=C3=A9sultats?=\r\nTo: a@b.fr\r\n\r\n".to_vec();
        big.resize(400_000, b'z');
        let mut log =
            seal_group(&recipient, &[("m1", &big), ("m2", b"To: c@d.fr\r\n\r\n2")]).unwrap();
        let at = log.len() - 2000;
        log[at..at + 4].copy_from_slice(b"XXXX");
        let path = dir.path().join("000001.log");
        std::fs::write(&path, &log).unwrap();
        let file = File::open(&path).unwrap();
        let mut group = open_group(file, 0, log.len() as u64, &Unlocked(identity)).unwrap();
        assert!(group.indexed());
        let m1 = group.entry("m1").unwrap().clone();
        assert_eq!(
            (m1.subject.as_str(), m1.to.as_str(), m1.size),
            ("résultats", "a@b.fr", 400_000)
        );
        assert_eq!(group.entries[1].to, "c@d.fr");
        assert!(group.bytes(&m1).is_err(), "the damaged chunk is refused");
    }

    /// A clear stream whose index claims `sizes` for two messages of a few bytes.
    fn forged(sizes: [u64; 2]) -> Vec<u8> {
        let mut index = Vec::new();
        for (id, size) in ["m1", "m2"].iter().zip(sizes) {
            put(&mut index, id.as_bytes());
            index.extend_from_slice(&size.to_le_bytes());
            put(&mut index, b"x");
            put(&mut index, b"c@d.fr");
        }
        let mut clear = MAGIC.to_vec();
        clear.extend_from_slice(&(index.len() as u32).to_le_bytes());
        clear.extend_from_slice(&index);
        clear.extend_from_slice(b"From: a@b.fr\r\n\r\nbonjour\r\n");
        clear
    }

    #[test]
    fn an_index_claiming_more_than_the_group_holds_is_refused_not_reserved() {
        let mut group = read_index(Box::new(std::io::Cursor::new(forged([u64::MAX / 2, 1]))))
            .expect("the index itself reads");
        let m1 = group.entries[0].clone();
        assert!(group.bytes(&m1).is_err());
    }

    #[test]
    fn sizes_that_overflow_the_stream_are_refused() {
        let clear = forged([u64::MAX, 2]);
        assert!(read_index(Box::new(std::io::Cursor::new(clear))).is_err());
    }
}
