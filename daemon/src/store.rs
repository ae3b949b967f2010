//! Everything the daemon keeps on disk goes through here, so that the engine (sled today) could
//! change without touching the rest. Every write is flushed before it returns: a reply on the bus
//! means the change survives a crash.

use std::path::{Path, PathBuf};

use serde::{Serialize, de::DeserializeOwned};

use crate::model::{Account, AuditEntry, Record};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot use state directory {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("database error: {0}")]
    Db(#[from] sled::Error),
    #[error("corrupt record {key} in {tree}: {message}")]
    Corrupt {
        tree: &'static str,
        key: String,
        message: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// sled's page cache; small on purpose, the working set is a few hundred accounts.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// sled's log file (`db/db`): sled 0.34's `flush` writes it with sync_file_range, which a
    /// power cut can still take back, so every flush that a reply stands on is followed by an
    /// fdatasync of it.
    log: std::sync::Arc<std::fs::File>,
    accounts: sled::Tree,
    /// Unix uid (big-endian) → default account id.
    defaults: sled::Tree,
    /// Message id → status record (never the message itself: that is in the spool).
    messages: sled::Tree,
    /// Sequence number (big-endian) → audit entry, oldest first.
    audit: sled::Tree,
    /// What `[limits]` counts (codes per address, creations per user) → the times of the
    /// last day's events; kept apart from accounts so that deleting one forgets nothing.
    events: sled::Tree,
}

impl Store {
    pub fn open(state_dir: &Path) -> Result<Store> {
        let open_err = |message: String| Error::Open {
            path: state_dir.to_owned(),
            message,
        };
        create_private_dir(state_dir).map_err(|e| open_err(e.to_string()))?;
        let db = sled::Config::new()
            .path(state_dir.join("db"))
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    open_err("another postecoled is already using it".into())
                }
                other => open_err(other.to_string()),
            })?;
        let log = std::fs::File::open(state_dir.join("db").join("db"))
            .map_err(|e| open_err(format!("cannot open the store's log: {e}")))?;
        Ok(Store {
            log: std::sync::Arc::new(log),
            accounts: db.open_tree("accounts")?,
            defaults: db.open_tree("defaults")?,
            messages: db.open_tree("messages")?,
            audit: db.open_tree("audit")?,
            events: db.open_tree("limits")?,
            db,
        })
    }

    pub fn account(&self, id: &str) -> Result<Option<Account>> {
        get(&self.accounts, "accounts", id.as_bytes())
    }

    pub fn accounts(&self) -> Result<Vec<Account>> {
        self.accounts
            .iter()
            .values()
            .map(|v| decode("accounts", "?", &v?))
            .collect()
    }

    pub fn put_account(&self, account: &Account) -> Result<()> {
        self.accounts
            .insert(account.id.as_bytes(), encode(account))?;
        self.sync(&self.accounts)?;
        Ok(())
    }

    /// Inserts only if no account has this id yet; false when the id is taken.
    pub fn insert_new_account(&self, account: &Account) -> Result<bool> {
        let swapped = self.accounts.compare_and_swap(
            account.id.as_bytes(),
            None as Option<&[u8]>,
            Some(encode(account)),
        )?;
        self.sync(&self.accounts)?;
        Ok(swapped.is_ok())
    }

    pub fn remove_account(&self, id: &str) -> Result<()> {
        self.accounts.remove(id.as_bytes())?;
        self.sync(&self.accounts)?;
        Ok(())
    }

    pub fn default_account(&self, uid: u32) -> Result<Option<String>> {
        Ok(self
            .defaults
            .get(uid.to_be_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_default_account(&self, uid: u32, id: Option<&str>) -> Result<()> {
        match id {
            Some(id) => self.defaults.insert(uid.to_be_bytes(), id.as_bytes())?,
            None => self.defaults.remove(uid.to_be_bytes())?,
        };
        self.sync(&self.defaults)?;
        Ok(())
    }

    pub fn message(&self, id: &str) -> Result<Option<Record>> {
        get(&self.messages, "messages", id.as_bytes())
    }

    pub fn messages(&self) -> Result<Vec<Record>> {
        self.messages
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode("messages", &String::from_utf8_lossy(&k), &v)
            })
            .collect()
    }

    /// Writes status records in one atomic batch; with `durable`, flushed before returning.
    pub fn put_messages(&self, records: &[&Record], durable: bool) -> Result<()> {
        let mut batch = sled::Batch::default();
        for r in records {
            batch.insert(r.id.as_bytes(), encode(r));
        }
        self.messages.apply_batch(batch)?;
        if durable {
            self.sync(&self.messages)?;
        }
        Ok(())
    }

    /// What a crash before the store's flush looks like, for tests.
    #[cfg(test)]
    pub fn remove_messages(&self, records: &[&Record]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for r in records {
            batch.remove(r.id.as_bytes());
        }
        self.messages.apply_batch(batch)?;
        Ok(())
    }

    pub fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
        let key = self.db.generate_id()?.to_be_bytes();
        self.audit.insert(key, encode(entry))?;
        self.sync(&self.audit)?;
        Ok(())
    }

    /// The newest `limit` entries, oldest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let mut entries = self
            .audit
            .iter()
            .rev()
            .take(limit)
            .map(|kv| decode("audit", "?", &kv?.1))
            .collect::<Result<Vec<AuditEntry>>>()?;
        entries.reverse();
        Ok(entries)
    }

    /// The times recorded under `key` (seconds since the epoch), in no particular order.
    pub fn events(&self, key: &str) -> Result<Vec<u64>> {
        Ok(get(&self.events, "limits", key.as_bytes())?.unwrap_or_default())
    }

    /// Replaces the times recorded under `key`; none removes the key.
    pub fn put_events(&self, key: &str, times: &[u64]) -> Result<()> {
        if times.is_empty() {
            self.events.remove(key.as_bytes())?;
        } else {
            self.events.insert(key.as_bytes(), encode(&times))?;
        }
        self.sync(&self.events)?;
        Ok(())
    }

    /// A number larger than any handed out before, across restarts.
    pub fn next_sequence(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }

    /// Flushes `tree` and makes the log durable: what a reply promises survives a power cut.
    fn sync(&self, tree: &sled::Tree) -> Result<()> {
        tree.flush()?;
        self.log
            .sync_data()
            .map_err(|e| Error::Db(sled::Error::Io(e)))?;
        Ok(())
    }

    /// Last flush on shutdown; sled also flushes on drop, but errors would be lost there.
    pub fn flush(&self) -> Result<()> {
        self.sync(&self.db)?;
        Ok(())
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialise to JSON")
}

fn decode<T: DeserializeOwned>(tree: &'static str, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        tree,
        key: key.to_owned(),
        message: e.to_string(),
    })
}

fn get<T: DeserializeOwned>(
    tree: &sled::Tree,
    name: &'static str,
    key: &[u8],
) -> Result<Option<T>> {
    tree.get(key)?
        .map(|v| decode(name, &String::from_utf8_lossy(key), &v))
        .transpose()
}

/// The state holds hashes and, later, mail: nobody but the daemon's user reads it.
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other("not a directory"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, State};

    fn account(id: &str) -> Account {
        Account {
            id: id.into(),
            kind: Kind::Personal,
            label: "M".into(),
            address: "m@ecole.fr".into(),
            state: State::AwaitingCode,
            owner: 1001,
            staff: Vec::new(),
            created: 1,
            code: None,
            secret: None,
            keys: None,
            unlock_failures: 0,
            locked_until: 0,
            lock_periods: 0,
        }
    }

    fn entry(n: u64) -> AuditEntry {
        AuditEntry {
            time: n,
            uid: 0,
            user: "root".into(),
            action: "create".into(),
            account: format!("a{n}"),
            outcome: "ok".into(),
            private_to: None,
        }
    }

    #[test]
    fn records_survive_reopening_and_ids_are_never_taken_twice() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(store.insert_new_account(&account("a1")).unwrap());
            let mut taken = account("a1");
            taken.label = "Autre".into();
            assert!(!store.insert_new_account(&taken).unwrap(), "id taken");
            store.set_default_account(1001, Some("a1")).unwrap();
            for n in 1..=5 {
                store.append_audit(&entry(n)).unwrap();
            }
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.account("a1").unwrap().unwrap().label, "M");
        assert_eq!(store.default_account(1001).unwrap().as_deref(), Some("a1"));
        let times: Vec<u64> = store.audit(3).unwrap().iter().map(|e| e.time).collect();
        assert_eq!(times, [3, 4, 5], "the newest, oldest first");
        store.remove_account("a1").unwrap();
        assert!(store.account("a1").unwrap().is_none());
        assert!(store.accounts().unwrap().is_empty());
        let a = store.next_sequence().unwrap();
        assert!(store.next_sequence().unwrap() > a);
    }

    #[test]
    fn counted_events_survive_reopening_and_an_empty_list_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(store.events("codes-to:x@ecole.fr").unwrap().is_empty());
            store.put_events("codes-to:x@ecole.fr", &[5, 7]).unwrap();
            store.put_events("creations-by:1001", &[9]).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.events("codes-to:x@ecole.fr").unwrap(), [5, 7]);
        store.put_events("creations-by:1001", &[]).unwrap();
        assert!(store.events("creations-by:1001").unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_record_is_named_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .messages
            .insert("m1", b"{not json".as_slice())
            .unwrap();
        match store.message("m1") {
            Err(Error::Corrupt { tree, key, .. }) => {
                assert_eq!((tree, key.as_str()), ("messages", "m1"))
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(matches!(store.messages(), Err(Error::Corrupt { .. })));
    }
}
