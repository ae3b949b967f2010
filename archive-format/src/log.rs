//! An account's logs: `archive/<account>/NNNNNN.log`, numbered from 000001. Each is a series
//! of groups written one after the other with nothing between them; a group is one age file
//! (X25519 recipient: the account's) whose clear text is, per message, the id's length (u32),
//! the id, the message's length (u64), the message as it was sent; little-endian.
//!
//! The daemon's records say where each group starts and ends. Without them (the database
//! lost), groups are found again by their age header line, which cannot occur inside a group:
//! what follows a header is ciphertext, and the header line is 22 bytes.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::Unlocked;

/// A message from the archive: its queue id and its clear bytes.
pub type Sealed = (String, Vec<u8>);

const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

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
    for (id, bytes) in messages {
        writer.write_all(&(id.len() as u32).to_le_bytes())?;
        writer.write_all(id.as_bytes())?;
        writer.write_all(&(bytes.len() as u64).to_le_bytes())?;
        writer.write_all(bytes)?;
    }
    writer.finish()?;
    Ok(sealed)
}

/// The messages of the group at `offset`, `len` bytes long, in clear.
pub fn read_group(
    file: &File,
    offset: u64,
    len: u64,
    key: &Unlocked,
) -> std::io::Result<Vec<Sealed>> {
    let mut sealed = vec![0; len as usize];
    file.read_exact_at(&mut sealed, offset)?;
    let decryptor = age::Decryptor::new(&sealed[..]).map_err(std::io::Error::other)?;
    let mut reader = decryptor
        .decrypt(std::iter::once(&key.0 as &dyn age::Identity))
        .map_err(std::io::Error::other)?;
    let mut clear = Vec::new();
    reader.read_to_end(&mut clear)?;
    let malformed = || std::io::Error::other("malformed archive group");
    let mut rest = &clear[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(malformed)?;
        let (id, tail) = tail
            .split_at_checked(u32::from_le_bytes(*len) as usize)
            .ok_or_else(malformed)?;
        let (len, tail) = tail.split_first_chunk::<8>().ok_or_else(malformed)?;
        let (bytes, tail) = tail
            .split_at_checked(u64::from_le_bytes(*len) as usize)
            .ok_or_else(malformed)?;
        out.push((String::from_utf8_lossy(id).into_owned(), bytes.to_vec()));
        rest = tail;
    }
    Ok(out)
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
}
