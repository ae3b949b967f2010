//! Everything the daemon keeps on disk goes through here, so that the engine (sled today) could
//! change without touching the rest. Every write is flushed before it returns: a reply on the bus
//! means the change survives a crash.
//!
//! A damaged store must neither stop the daemon for good nor silently start it empty:
//! `snapshot` exports the trees to a file of our own (a few generations kept) and records its
//! generation in the store; at open, a store that sled refuses, or that is older than the
//! newest snapshot (truncated, deleted), is moved aside and the snapshot restored.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::model::{Account, AuditEntry, Record, Sealed};

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

/// Snapshot generations kept: the newest can be the damaged one.
const SNAPSHOTS_KEPT: usize = 3;
const SNAPSHOT_FORMAT: &str = "postecole-store-snapshot";
const SNAPSHOT_VERSION: u32 = 1;
/// Meta keys: the generation of the last snapshot taken of this store, and what sequence
/// numbers start from (above every one handed out before a restore).
const META_SNAPSHOT: &[u8] = b"snapshot";
const META_ID_BASE: &[u8] = b"id-base";
/// Every tree a snapshot carries: the code and creation limits too, or a damaged store would
/// hand an attacker a fresh allowance.
const TREES: [&str; 6] = [
    "accounts", "defaults", "messages", "audit", "limits", "archived",
];

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// sled's log file (`db/db`): sled 0.34's `flush` writes it with sync_file_range, which a
    /// power cut can still take back, so every flush that a reply stands on is followed by an
    /// fdatasync of it.
    log: Arc<std::fs::File>,
    dir: PathBuf,
    meta: sled::Tree,
    id_base: u64,
    /// Writes since the store was opened; a periodic snapshot is skipped when none happened.
    writes: Arc<AtomicU64>,
    snapshotted: Arc<AtomicU64>,
    /// One snapshot at a time: the periodic one may run into the one taken at stop.
    snapshotting: Arc<std::sync::Mutex<()>>,
    accounts: sled::Tree,
    /// Unix uid (big-endian) → default account id.
    defaults: sled::Tree,
    /// Message id → status record (never the message itself: that is in the spool).
    messages: sled::Tree,
    /// Sequence number (big-endian) → audit entry, oldest first.
    audit: sled::Tree,
    /// `account \0 message id` → `Sealed`: archived messages whose record was pruned.
    archived: sled::Tree,
    /// What `[limits]` counts (codes per address, creations per user) → the times of the
    /// last day's events; kept apart from accounts so that deleting one forgets nothing.
    events: sled::Tree,
}

impl Store {
    /// Opens the store in `state_dir/db`; when it is damaged, moves it aside and restores the
    /// newest snapshot, saying in the log what was lost.
    pub fn open(state_dir: &Path) -> Result<Store> {
        let open_err = |message: String| Error::Open {
            path: state_dir.to_owned(),
            message,
        };
        create_private_dir(state_dir).map_err(|e| open_err(e.to_string()))?;
        let snapshots = Snapshots::new(state_dir);
        let newest = snapshots.newest();
        let damage = match open_db(&state_dir.join("db")) {
            Err(Damage::Busy) => {
                return Err(open_err("another postecoled is already using it".into()));
            }
            Err(Damage::Io(message)) => return Err(open_err(message)),
            Err(Damage::Refused(reason)) => reason,
            Ok(db) => {
                let store = Store::with_db(db, state_dir)?;
                let marker = store.marker()?;
                match &newest {
                    Some(snap) if marker < snap.generation => format!(
                        "it is older than snapshot {} of {} (it says {}): truncated, replaced or deleted",
                        snap.generation,
                        snap.taken,
                        if marker == 0 {
                            "none".to_owned()
                        } else {
                            format!("snapshot {marker}")
                        }
                    ),
                    _ => return Ok(store),
                }
            }
        };
        let aside = move_aside(&state_dir.join("db")).map_err(|e| open_err(e.to_string()))?;
        let db = match open_db(&state_dir.join("db")) {
            Ok(db) => db,
            Err(Damage::Refused(m) | Damage::Io(m)) => return Err(open_err(m)),
            Err(Damage::Busy) => return Err(open_err("another postecoled is using it".into())),
        };
        let mut store = Store::with_db(db, state_dir)?;
        let aside = aside.map_or("nothing was left of it".to_owned(), |p| {
            format!("what was left of it is in {}", p.display())
        });
        match newest {
            Some(snap) => {
                store.restore(&snap)?;
                tracing::error!(
                    store = %state_dir.join("db").display(),
                    snapshot = %snap.path.display(),
                    accounts = snap.count("accounts"),
                    messages = snap.count("messages"),
                    "the store was damaged ({damage}); {aside}. Restored snapshot {} taken at {} \
                     (seconds since the epoch): every change made to accounts, default accounts, \
                     message states and the audit log after it is LOST; messages accepted after \
                     it are read back from the spool",
                    snap.generation,
                    snap.taken
                );
            }
            None => tracing::error!(
                store = %state_dir.join("db").display(),
                "the store was damaged ({damage}); {aside}. No snapshot to restore: every \
                 account, default account, message state and audit entry is LOST; messages \
                 still in the spool are read back from it"
            ),
        }
        Ok(store)
    }

    fn with_db(db: sled::Db, state_dir: &Path) -> Result<Store> {
        let meta = db.open_tree("meta")?;
        let id_base = meta
            .get(META_ID_BASE)?
            .and_then(|v| v.as_ref().try_into().ok())
            .map_or(0, u64::from_be_bytes);
        let log = std::fs::File::open(state_dir.join("db").join("db"))
            .map_err(|e| Error::Db(sled::Error::Io(e)))?;
        Ok(Store {
            log: Arc::new(log),
            accounts: db.open_tree("accounts")?,
            defaults: db.open_tree("defaults")?,
            messages: db.open_tree("messages")?,
            audit: db.open_tree("audit")?,
            archived: db.open_tree("archived")?,
            meta,
            id_base,
            dir: state_dir.to_owned(),
            writes: Arc::default(),
            snapshotted: Arc::default(),
            snapshotting: Arc::default(),
            events: db.open_tree("limits")?,
            db,
        })
    }

    /// The generation of the last snapshot taken of this store, 0 if none.
    fn marker(&self) -> Result<u64> {
        Ok(self
            .meta
            .get(META_SNAPSHOT)?
            .and_then(|v| v.as_ref().try_into().ok())
            .map_or(0, u64::from_be_bytes))
    }

    fn tree(&self, name: &str) -> &sled::Tree {
        match name {
            "accounts" => &self.accounts,
            "defaults" => &self.defaults,
            "messages" => &self.messages,
            "limits" => &self.events,
            "archived" => &self.archived,
            _ => &self.audit,
        }
    }

    /// Fills this (new, empty) store from a snapshot. Sequence numbers restart above every
    /// one handed out before, including those of messages accepted after the snapshot and
    /// read back from the spool: a term of mail is far below 2^32 of them.
    fn restore(&mut self, snap: &Snapshot) -> Result<()> {
        for name in TREES {
            let mut batch = sled::Batch::default();
            for (k, v) in snap.trees.get(name).into_iter().flatten() {
                let key = postecole_archive::unhex(k).ok_or_else(|| Error::Corrupt {
                    tree: "snapshot",
                    key: k.clone(),
                    message: "key is not hex".into(),
                })?;
                batch.insert(key, v.as_bytes());
            }
            self.tree(name).apply_batch(batch)?;
        }
        self.id_base = snap.next_sequence + (1 << 32);
        self.meta
            .insert(META_ID_BASE, &self.id_base.to_be_bytes())?;
        self.meta
            .insert(META_SNAPSHOT, &snap.generation.to_be_bytes())?;
        self.sync(&self.db)?;
        Ok(())
    }

    /// Exports every tree to a new snapshot generation, unless nothing was written since the
    /// last one (`only_if_changed`). The store records the generation first: a store that
    /// says less than the newest snapshot lost what it had.
    pub fn snapshot(&self, now: u64, only_if_changed: bool) -> Result<Option<PathBuf>> {
        let _one = self.snapshotting.lock().unwrap();
        let writes = self.writes.load(Ordering::SeqCst);
        if only_if_changed && writes == self.snapshotted.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let snapshots = Snapshots::new(&self.dir);
        let generation = self.marker()?.max(snapshots.newest_generation()) + 1;
        self.meta.insert(META_SNAPSHOT, &generation.to_be_bytes())?;
        self.sync(&self.db)?;
        let mut trees = std::collections::BTreeMap::new();
        for name in TREES {
            let entries = self
                .tree(name)
                .iter()
                .map(|kv| {
                    let (k, v) = kv?;
                    Ok((
                        postecole_archive::hex(&k),
                        String::from_utf8_lossy(&v).into_owned(),
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            trees.insert(name.to_owned(), entries);
        }
        let snap = Snapshot {
            format: SNAPSHOT_FORMAT.into(),
            version: SNAPSHOT_VERSION,
            generation,
            taken: now,
            next_sequence: self.next_sequence()?,
            trees,
            path: PathBuf::new(),
        };
        let path = snapshots.write(&snap).map_err(|e| Error::Open {
            path: snapshots.dir.clone(),
            message: format!("cannot write a snapshot: {e}"),
        })?;
        self.snapshotted.store(writes, Ordering::SeqCst);
        Ok(Some(path))
    }

    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
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
        self.wrote();
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
        self.wrote();
        Ok(swapped.is_ok())
    }

    pub fn remove_account(&self, id: &str) -> Result<()> {
        self.accounts.remove(id.as_bytes())?;
        self.sync(&self.accounts)?;
        self.wrote();
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
        self.wrote();
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
    /// Never their recipients: sled keeps a record's old versions in its log, so recipients
    /// written once would outlive the message's delivery (they are in the spool meanwhile).
    pub fn put_messages(&self, records: &[&Record], durable: bool) -> Result<()> {
        let stored = |r: &Record| {
            encode(&Record {
                recipients: Vec::new(),
                to: Vec::new(),
                subject: String::new(),
                ..r.clone()
            })
        };
        if let [one] = records {
            // A single record is atomic on its own. sled's batch rolls its log buffer twice
            // and waits for both writes (two pwrite + sync_file_range), under a lock that
            // stops every other writer: every single Send and one-message outcome paid it.
            self.messages.insert(one.id.as_bytes(), stored(one))?;
        } else {
            let mut batch = sled::Batch::default();
            for r in records {
                batch.insert(r.id.as_bytes(), stored(r));
            }
            self.messages.apply_batch(batch)?;
        }
        self.wrote();
        if durable {
            self.sync(&self.messages)?;
        }
        Ok(())
    }

    /// Removes records for good, in one atomic, flushed change; the place of those whose
    /// sealed copy is in the archive is kept (`sealed`), so that the archive still lists them.
    pub fn prune_messages(&self, records: &[Record]) -> Result<()> {
        use sled::Transactional;
        (&self.messages, &self.archived)
            .transaction(|(messages, archived)| {
                for r in records {
                    if let Some(slot) = &r.archived {
                        let kept = Sealed {
                            id: r.id.clone(),
                            account: r.account.clone(),
                            created: r.created,
                            sender: r.envelope_from.clone(),
                            state: r.state,
                            last_reply: r.last_reply.clone(),
                            slot: slot.clone(),
                        };
                        archived.insert(sealed_key(&r.account, &r.id), encode(&kept))?;
                    }
                    messages.remove(r.id.as_bytes())?;
                }
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| match e {
                sled::transaction::TransactionError::Storage(e) => Error::Db(e),
                sled::transaction::TransactionError::Abort(()) => {
                    Error::Db(sled::Error::Unsupported("pruning aborted".into()))
                }
            })?;
        self.wrote();
        self.sync(&self.db)
    }

    /// The account's archived messages whose record was pruned.
    pub fn sealed(&self, account: &str) -> Result<Vec<Sealed>> {
        self.archived
            .scan_prefix(sealed_key(account, ""))
            .map(|kv| {
                let (k, v) = kv?;
                decode("archived", &String::from_utf8_lossy(&k), &v)
            })
            .collect()
    }

    /// Forgets the pruned messages of an account whose archive was removed.
    pub fn forget_sealed(&self, account: &str) -> Result<()> {
        let mut batch = sled::Batch::default();
        for kv in self.archived.scan_prefix(sealed_key(account, "")) {
            batch.remove(kv?.0);
        }
        self.archived.apply_batch(batch)?;
        self.wrote();
        self.sync(&self.archived)
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
        let key = self.next_sequence()?.to_be_bytes();
        self.audit.insert(key, encode(entry))?;
        self.sync(&self.audit)?;
        self.wrote();
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
        self.wrote();
        Ok(())
    }

    /// A number larger than any handed out before, across restarts.
    pub fn next_sequence(&self) -> Result<u64> {
        Ok(self.id_base + self.db.generate_id()?)
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

enum Damage {
    Busy,
    Io(String),
    /// sled refused it, with its reason.
    Refused(String),
}

/// sled, when another instance holds its lock: it says so in an `Other` error of its own
/// words, the `WouldBlock` of `flock` inside.
const SLED_LOCKED: &str = "could not acquire lock";

/// How long a store held by another instance is waited for: a daemon being stopped lets it go
/// within this, a running one never does.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens the sled database, waiting `BUSY_WAIT` at most while another instance holds it.
fn open_db(path: &Path) -> std::result::Result<sled::Db, Damage> {
    let until = std::time::Instant::now() + BUSY_WAIT;
    loop {
        match try_open_db(path) {
            Err(Damage::Busy) if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            other => return other,
        }
    }
}

/// Opens sled, telling a store it refuses (corrupt) from one it cannot reach (permissions,
/// another daemon). sled panics on some damage rather than returning an error.
fn try_open_db(path: &Path) -> std::result::Result<sled::Db, Damage> {
    let opened = std::panic::catch_unwind(|| {
        sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .open()
    });
    match opened {
        Ok(Ok(db)) => Ok(db),
        // Held by another instance is not damage: the store is never moved aside for it.
        Ok(Err(sled::Error::Io(io)))
            if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains(SLED_LOCKED) =>
        {
            Err(Damage::Busy)
        }
        Ok(Err(sled::Error::Io(io)))
            if matches!(
                io.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::StorageFull
            ) =>
        {
            Err(Damage::Io(io.to_string()))
        }
        Ok(Err(e)) => Err(Damage::Refused(format!("sled refused it: {e}"))),
        Err(_) => Err(Damage::Refused("sled failed reading it".into())),
    }
}

/// Renames a damaged store to `db.damaged-N`, kept for whoever wants to look into it; None
/// when there was nothing to move.
fn move_aside(db: &Path) -> std::io::Result<Option<PathBuf>> {
    if !db.exists() {
        return Ok(None);
    }
    let parent = db.parent().unwrap_or(Path::new("."));
    let mut n = 1;
    let aside = loop {
        let candidate = parent.join(format!("db.damaged-{n}"));
        if !candidate.exists() {
            break candidate;
        }
        n += 1;
    };
    std::fs::rename(db, &aside)?;
    std::fs::File::open(parent)?.sync_all()?;
    Ok(Some(aside))
}

/// One exported store: every tree as (hex key, value) pairs; values are JSON text.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: String,
    version: u32,
    generation: u64,
    /// Seconds since the epoch.
    taken: u64,
    next_sequence: u64,
    trees: std::collections::BTreeMap<String, Vec<(String, String)>>,
    #[serde(skip)]
    path: PathBuf,
}

impl Snapshot {
    fn count(&self, tree: &str) -> usize {
        self.trees.get(tree).map_or(0, Vec::len)
    }
}

/// `state_dir/snapshots/store-NNNNNNNNNN.json`, newest generation last.
struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    fn new(state_dir: &Path) -> Snapshots {
        Snapshots {
            dir: state_dir.join("snapshots"),
        }
    }

    /// Generation → file name, oldest first.
    fn list(&self) -> Vec<(u64, PathBuf)> {
        let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().into_string().ok()?;
                let generation = name
                    .strip_prefix("store-")?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()?;
                Some((generation, e.path()))
            })
            .collect();
        found.sort();
        found
    }

    fn newest_generation(&self) -> u64 {
        self.list().last().map_or(0, |(g, _)| *g)
    }

    /// The newest snapshot that reads whole; a damaged one is named in the log and skipped.
    fn newest(&self) -> Option<Snapshot> {
        for (generation, path) in self.list().into_iter().rev() {
            let read = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<Snapshot>(&bytes).map_err(|e| e.to_string())
                })
                .and_then(|snap| {
                    if snap.format != SNAPSHOT_FORMAT || snap.version != SNAPSHOT_VERSION {
                        Err(format!(
                            "not a {SNAPSHOT_FORMAT} version {SNAPSHOT_VERSION}"
                        ))
                    } else if snap.generation != generation {
                        Err("its generation does not match its name".into())
                    } else {
                        Ok(snap)
                    }
                });
            match read {
                Ok(mut snap) => {
                    snap.path = path;
                    return Some(snap);
                }
                Err(e) => tracing::error!(
                    snapshot = %path.display(),
                    error = %e,
                    "store snapshot unreadable, trying an older one"
                ),
            }
        }
        None
    }

    /// Writes atomically (beside, synced, renamed, directory synced), then drops the oldest
    /// generations beyond those kept.
    fn write(&self, snap: &Snapshot) -> std::io::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        create_private_dir(&self.dir)?;
        let path = self.dir.join(format!("store-{:010}.json", snap.generation));
        let tmp = self.dir.join("store.tmp");
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            let mut out = std::io::BufWriter::new(&mut file);
            serde_json::to_writer(&mut out, snap)?;
            out.flush()?;
            drop(out);
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            // A partial snapshot (a full disk) must not keep the blocks the store needs to open.
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::File::open(&self.dir)?.sync_all()?;
        let list = self.list();
        for (_, old) in &list[..list.len().saturating_sub(SNAPSHOTS_KEPT)] {
            std::fs::remove_file(old)?;
        }
        Ok(path)
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialise to JSON")
}

fn sealed_key(account: &str, id: &str) -> Vec<u8> {
    format!("{account}\0{id}").into_bytes()
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

    fn ids(store: &Store) -> Vec<String> {
        store
            .accounts()
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect()
    }

    /// A store with two accounts, snapshotted, then a third account the snapshot lacks.
    fn fixture(dir: &Path) -> u64 {
        let store = Store::open(dir).unwrap();
        store.put_account(&account("a1")).unwrap();
        store.put_account(&account("a2")).unwrap();
        store.set_default_account(1000, Some("a1")).unwrap();
        store.put_events("code:x@ecole.fr", &[50, 60]).unwrap();
        let seq = store.next_sequence().unwrap();
        store.snapshot(100, false).unwrap().unwrap();
        store.put_account(&account("a3")).unwrap();
        store.flush().unwrap();
        seq
    }

    fn reopened_from_snapshot(dir: &Path, seq: u64) {
        let store = Store::open(dir).unwrap();
        assert_eq!(ids(&store), ["a1", "a2"], "the snapshot's accounts, not a3");
        assert_eq!(store.default_account(1000).unwrap().as_deref(), Some("a1"));
        assert_eq!(
            store.events("code:x@ecole.fr").unwrap(),
            [50, 60],
            "the code limits come back too"
        );
        assert!(
            store.next_sequence().unwrap() > seq,
            "sequence numbers keep growing"
        );
        assert!(dir.join("db.damaged-1").exists() || !dir.join("db.damaged-2").exists());
        drop(store);
        // Restored once: the next start finds nothing wrong and moves nothing more aside.
        let store = Store::open(dir).unwrap();
        assert_eq!(ids(&store), ["a1", "a2"]);
        assert!(!dir.join("db.damaged-2").exists());
    }

    #[test]
    fn an_intact_store_is_opened_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(ids(&store), ["a1", "a2", "a3"]);
        assert!(!dir.path().join("db.damaged-1").exists());
    }

    #[test]
    fn a_truncated_store_is_replaced_by_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let seq = fixture(dir.path());
        let main = dir.path().join("db/db");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&main)
            .unwrap()
            .set_len(0)
            .unwrap();
        reopened_from_snapshot(dir.path(), seq);
        assert!(dir.path().join("db.damaged-1/db").exists(), "kept aside");
    }

    #[test]
    fn a_store_in_use_is_refused_by_name_and_never_taken_for_damaged() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let running = Store::open(dir.path()).unwrap();
        let second = Store::open(dir.path());
        match second {
            Err(Error::Open { message, .. }) => {
                assert!(message.contains("already using it"), "{message}")
            }
            other => panic!("a second store over the live one: {:?}", other.map(|_| ())),
        }
        assert!(
            !dir.path().join("db.damaged-1").exists(),
            "the live store was moved aside"
        );
        assert_eq!(ids(&running), ["a1", "a2", "a3"]);
        // Once the first is closed, the store opens whole.
        drop(running);
        assert_eq!(ids(&Store::open(dir.path()).unwrap()), ["a1", "a2", "a3"]);
    }

    #[test]
    fn a_deleted_store_is_replaced_by_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let seq = fixture(dir.path());
        std::fs::remove_dir_all(dir.path().join("db")).unwrap();
        reopened_from_snapshot(dir.path(), seq);
    }

    #[test]
    fn a_store_sled_refuses_is_replaced_by_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let seq = fixture(dir.path());
        // sled reads its newest page-table snapshot first; one with damaged bytes (as sled
        // names them) is what a scribbled snapshot looks like to it.
        let mut snap = vec![0x5a; 4096];
        snap[..8].copy_from_slice(&1u64.to_le_bytes());
        std::fs::write(dir.path().join("db/snap.00000000FFFFFFFF"), snap).unwrap();
        assert!(matches!(
            open_db(&dir.path().join("db")),
            Err(Damage::Refused(_))
        ));
        reopened_from_snapshot(dir.path(), seq);
    }

    #[test]
    fn a_damaged_newest_snapshot_falls_back_to_the_one_before_and_few_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (i, id) in ["a1", "a2", "a3", "a4", "a5"].into_iter().enumerate() {
            store.put_account(&account(id)).unwrap();
            store.snapshot(i as u64, false).unwrap().unwrap();
        }
        assert_eq!(
            store.snapshot(9, true).unwrap(),
            None,
            "nothing written since the last one"
        );
        let snaps = Snapshots::new(dir.path()).list();
        assert_eq!(
            snaps.iter().map(|(g, _)| *g).collect::<Vec<_>>(),
            [3, 4, 5],
            "three generations kept"
        );
        drop(store);
        std::fs::write(&snaps[2].1, b"{\"format\": scribbled").unwrap();
        std::fs::remove_dir_all(dir.path().join("db")).unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(ids(&store), ["a1", "a2", "a3", "a4"], "snapshot 4");
    }

    #[test]
    fn with_no_snapshot_a_new_store_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(ids(&store).is_empty());
        assert!(!dir.path().join("db.damaged-1").exists());
    }
}
