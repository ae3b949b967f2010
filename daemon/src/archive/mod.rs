//! The encrypted archive of sent mail: sealed logs per account (here), the keys that open them
//! and the recovery file (`keys`), reading mail back out (`mbox`). Sealing needs only the
//! account's public key; opening needs the key unwrapped by `keys` for the length of a call.

mod keys;
mod mbox;
mod read;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::model::Slot;

pub use mbox::mbox_entry;
#[cfg(test)]
pub use postecole_archive::log::Sealed;
pub use postecole_archive::{RECOVERY_FILE_NAME, Unlocked, parse_recovery_file, recovery_file};
pub use read::{Held, View};

/// Sealed copies of delivered messages, appended to per-account logs under
/// `state_dir/archive/<account>/NNNNNN.log`; the queue record of each message says where its
/// copy is. One log file takes a whole term of mail: no inode to create per message, one sync
/// per group of deliveries. A copy written but never recorded (a crash in between) is dead
/// weight in the log, sealed like the rest.
#[derive(Clone)]
pub struct Archive {
    dir: PathBuf,
    logs: Arc<Mutex<Logs>>,
}

#[derive(Default)]
struct Logs {
    /// Account → the log it appends to now.
    open: HashMap<String, Log>,
    /// Accounts written to since the last sync.
    unsynced: HashSet<String>,
}

struct Log {
    name: String,
    number: u32,
    file: File,
    len: u64,
}

/// In an account's archive directory once the account is deleted and its archive kept.
pub const RETIRED: &str = "deleted";

/// A log stops growing past this size and the next one is started.
const LOG_BYTES: u64 = 256 * 1024 * 1024;

impl Archive {
    pub fn new(state_dir: &Path) -> Archive {
        Archive {
            dir: state_dir.join("archive"),
            logs: Arc::default(),
        }
    }

    /// Encrypts a group of delivered messages (id, bytes) of one account to `recipient`,
    /// together, and appends them to the account's log. One age header per group rather than
    /// per message: its X25519 agreement was a twentieth of the CPU spent delivering. Not
    /// synced: the queue syncs once per group (`sync`) before the records say they are archived.
    pub fn store(
        &self,
        account: &str,
        recipient: &str,
        messages: &[(&str, &[u8])],
    ) -> std::io::Result<Slot> {
        let sealed = postecole_archive::log::seal_group(recipient, messages)?;
        let mut logs = self.logs.lock().unwrap();
        let full = logs.open.get(account).is_none_or(|l| l.len >= LOG_BYTES);
        if full {
            let log = self.next_log(account, logs.open.get(account).map(|l| l.number))?;
            logs.open.insert(account.to_owned(), log);
        }
        let log = logs.open.get_mut(account).expect("just opened");
        if let Err(e) = log.file.write_all_at(&sealed, log.len) {
            // A partial write (a full disk) must not keep the blocks it took.
            let _ = log.file.set_len(log.len);
            return Err(e);
        }
        let slot = Slot {
            segment: log.name.clone(),
            offset: log.len,
            len: sealed.len() as u64,
        };
        log.len += sealed.len() as u64;
        logs.unsynced.insert(account.to_owned());
        Ok(slot)
    }

    /// Syncs every log written to since the last call.
    pub fn sync(&self) -> std::io::Result<()> {
        let mut logs = self.logs.lock().unwrap();
        let unsynced = std::mem::take(&mut logs.unsynced);
        for account in &unsynced {
            if let Some(log) = logs.open.get(account) {
                log.file.sync_data()?;
            }
        }
        Ok(())
    }

    /// The account's log after `after` (or its newest one when the daemon has not written
    /// to it yet), created if needed with its directory entries synced.
    fn next_log(&self, account: &str, after: Option<u32>) -> std::io::Result<Log> {
        let dir = self.dir.join(account);
        let number = match after {
            Some(n) => n + 1,
            None => {
                create_synced_dir(&self.dir)?;
                create_synced_dir(&dir)?;
                std::fs::read_dir(&dir)?
                    .filter_map(|e| {
                        let name = e.ok()?.file_name().into_string().ok()?;
                        name.strip_suffix(".log")?.parse::<u32>().ok()
                    })
                    .max()
                    .unwrap_or(1)
            }
        };
        let name = format!("{number:06}.log");
        let path = dir.join(&name);
        let existed = path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        if !existed {
            File::open(&dir)?.sync_all()?;
        }
        let len = file.metadata()?.len();
        Ok(Log {
            name,
            number,
            file,
            len,
        })
    }

    /// The messages sealed together in `slot`, in clear, or None if its log is gone.
    #[cfg(test)]
    pub fn read(
        &self,
        account: &str,
        slot: &Slot,
        key: &Unlocked,
    ) -> std::io::Result<Option<Vec<Sealed>>> {
        let Some(mut group) = self.open_group(account, slot, key)? else {
            return Ok(None);
        };
        let entries = group.entries.clone();
        entries
            .iter()
            .map(|e| Ok((e.id.clone(), group.bytes(e)?)))
            .collect::<std::io::Result<Vec<_>>>()
            .map(Some)
    }

    /// Keeps what the recovery file unwraps in the account's directory, replacing what was
    /// there: with it, the directory and the recovery file are enough to read the account's
    /// mail after the database is lost.
    pub fn write_key(&self, key: &postecole_archive::KeyFile) -> std::io::Result<()> {
        let dir = self.dir.join(&key.account);
        create_synced_dir(&self.dir)?;
        create_synced_dir(&dir)?;
        key.write(&dir)
    }

    /// The key files of every account directory, for recovery after the database is lost.
    pub fn key_files(&self) -> Vec<postecole_archive::KeyFile> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| postecole_archive::KeyFile::read(&e.ok()?.path()).ok())
            .collect()
    }

    pub fn has_key(&self, account: &str) -> bool {
        self.dir
            .join(account)
            .join(postecole_archive::KEY_FILE_NAME)
            .exists()
    }

    /// Marks an account's archive as that of a deleted account: kept, readable offline with
    /// the recovery file, and not reported as lost at start. Nothing to do without an archive.
    pub fn retire(&self, account: &str, address: &str, when: u64) -> std::io::Result<bool> {
        let dir = self.dir.join(account);
        if !dir.join(postecole_archive::KEY_FILE_NAME).exists() {
            return Ok(false);
        }
        let text =
            format!("account {account} ({address}) deleted at {when} (seconds since the epoch)\n");
        let partial = dir.join(format!("{RETIRED}.partial"));
        let mut file = File::create(&partial)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&partial, dir.join(RETIRED))?;
        File::open(&dir)?.sync_all()?;
        Ok(true)
    }

    /// Whether the account's archive is kept from a deleted account.
    pub fn is_retired(&self, account: &str) -> bool {
        self.dir.join(account).join(RETIRED).exists()
    }

    /// Removes an account's archive (when the account is deleted with it).
    pub fn remove_account(&self, account: &str) -> std::io::Result<()> {
        let mut logs = self.logs.lock().unwrap();
        logs.open.remove(account);
        logs.unsynced.remove(account);
        match std::fs::remove_dir_all(self.dir.join(account)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn create_synced_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => File::open(dir.parent().unwrap_or(dir))?.sync_all(),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyRing;
    #[test]
    fn archive_round_trip_and_nothing_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let (ring, recovery) = KeyRing::create("le chat noir");
        let archive = Archive::new(dir.path());
        let message = b"Subject: MARQUEUR-UNIQUE-42\r\n\r\nIdentifiants: famille / secret\r\n";
        let first = archive
            .store(
                "acct",
                &ring.recipient,
                &[("m1", message), ("m2", b"second")],
            )
            .unwrap();
        let third = archive
            .store("acct", &ring.recipient, &[("m3", b"third")])
            .unwrap();
        archive.sync().unwrap();
        assert_eq!(first.segment, third.segment, "one log per account");
        let on_disk = std::fs::read(dir.path().join("archive/acct/000001.log")).unwrap();
        assert!(!on_disk.windows(8).any(|w| w == b"MARQUEUR"));
        let key = ring.unlock_with_recovery(&recovery).unwrap();
        let group = archive.read("acct", &first, &key).unwrap().unwrap();
        assert_eq!(
            group,
            vec![
                ("m1".to_owned(), message.to_vec()),
                ("m2".to_owned(), b"second".to_vec())
            ]
        );
        // A daemon started later appends to the same log.
        let later = Archive::new(dir.path());
        let fourth = later
            .store("acct", &ring.recipient, &[("m4", b"fourth")])
            .unwrap();
        assert_eq!(
            (fourth.segment.as_str(), fourth.offset),
            ("000001.log", third.offset + third.len)
        );
        assert_eq!(
            later.read("acct", &fourth, &key).unwrap().unwrap(),
            vec![("m4".to_owned(), b"fourth".to_vec())]
        );
        let (other, _) = KeyRing::create("autre réponse");
        let other_key = other.unlock_with_answer("autre réponse").unwrap();
        assert!(archive.read("acct", &first, &other_key).is_err());
        archive.remove_account("acct").unwrap();
        assert!(archive.read("acct", &first, &key).unwrap().is_none());
    }

    #[test]
    fn a_listing_decrypts_only_the_index_and_old_groups_stay_readable() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let (ring, recovery) = KeyRing::create("le chat noir");
        let key = ring.unlock_with_recovery(&recovery).unwrap();
        let archive = Archive::new(dir.path());
        let big: Vec<Vec<u8>> = (0..3)
            .map(|n| {
                let mut m =
                    format!("Subject: lettre {n}\r\nTo: f{n}@ecole.fr\r\n\r\n").into_bytes();
                m.resize(300_000, b'a' + n as u8);
                m
            })
            .collect();
        let slot = archive
            .store(
                "acct",
                &ring.recipient,
                &[("m0", &big[0]), ("m1", &big[1]), ("m2", &big[2])],
            )
            .unwrap();
        // Damage the last message's chunks: the index and the other messages still open.
        let log = dir.path().join("archive/acct/000001.log");
        let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
        file.write_all_at(b"XXXX", slot.offset + slot.len - 1000)
            .unwrap();
        let mut group = archive.open_group("acct", &slot, &key).unwrap().unwrap();
        let summary: Vec<(String, String, String, u64)> = group
            .entries
            .iter()
            .map(|e| (e.id.clone(), e.subject.clone(), e.to.clone(), e.size))
            .collect();
        assert_eq!(
            summary[1],
            (
                "m1".into(),
                "lettre 1".into(),
                "f1@ecole.fr".into(),
                300_000
            )
        );
        let m1 = group.entry("m1").unwrap().clone();
        assert_eq!(group.bytes(&m1).unwrap(), big[1]);
        let m2 = group.entry("m2").unwrap().clone();
        assert!(group.bytes(&m2).is_err(), "the damaged chunk is refused");

        // A group in the first format (no index) appended by an older daemon.
        let encryptor = age::Encryptor::with_recipients(std::iter::once(
            &ring.recipient.parse::<age::x25519::Recipient>().unwrap() as &dyn age::Recipient,
        ))
        .unwrap();
        let mut sealed = Vec::new();
        let mut w = encryptor.wrap_output(&mut sealed).unwrap();
        for (id, bytes) in [("o1", &b"Subject: vieux\r\n\r\nun"[..]), ("o2", b"deux")] {
            w.write_all(&(id.len() as u32).to_le_bytes()).unwrap();
            w.write_all(id.as_bytes()).unwrap();
            w.write_all(&(bytes.len() as u64).to_le_bytes()).unwrap();
            w.write_all(bytes).unwrap();
        }
        w.finish().unwrap();
        let at = std::fs::metadata(&log).unwrap().len();
        file.write_all_at(&sealed, at).unwrap();
        let old = Slot {
            segment: "000001.log".into(),
            offset: at,
            len: sealed.len() as u64,
        };
        let group = archive.read("acct", &old, &key).unwrap().unwrap();
        assert_eq!(group[1], ("o2".to_owned(), b"deux".to_vec()));
        let group = archive.open_group("acct", &old, &key).unwrap().unwrap();
        assert_eq!(group.entries[0].subject, "vieux");
    }
}
