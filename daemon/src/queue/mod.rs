//! The durable outgoing queue. A message is accepted once its first record and its bytes are
//! synced in the spool, which the store is rebuilt from after a crash; its bytes leave the
//! spool when it is delivered or cancelled. Status records stay, without subject or body,
//! and the store never holds a message's recipients (sled keeps old versions of records in
//! its log): they are read from the message's spool entry while it waits, and once it is
//! delivered they are only in its sealed copy in the archive.
//!
//! Bytes in the spool rather than in store values: bodies can be megabytes, freeing them
//! really removes the clear text from the state directory, and the store stays small.
//!
//! Here: the queue's states and their transitions. `spool`: the bytes on disk. `outcome`: the
//! rules of an attempt's result and the retry schedule. `relay`: SMTP or the local directory.
//! `delivery`: the loop that feeds the relay. Delivered mail is sealed into `archive`.
//! `history`: finding past records, and pruning them after `retention_secs`.

pub mod delivery;
mod history;
mod outcome;
mod outgoing;
pub mod pace;
mod quota;
pub mod relay;
pub mod spool;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast};

use crate::archive::Archive;
use crate::clock::Clock;
use crate::config;
use crate::model::{MsgState, Record, Slot};
use crate::store::{self, Store};
use spool::{Mark, Spool};

pub use history::{Filter, MAX_PAGE, Page};
pub use outcome::Outcome;
pub use outgoing::{Outgoing, package, packaged};
pub use quota::{Quota, Usage};

/// Why and until when (clock seconds) delivery waits for the relay.
#[derive(Debug, Clone)]
struct Pause {
    until: u64,
    reason: String,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub state: MsgState,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no message `{0}`")]
    NotFound(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    DiskFull(String),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("spool: {0}")]
    Spool(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Messages tried and how each attempt ended.
pub type Attempts = Vec<(Record, Outcome)>;

pub struct Queue {
    store: Store,
    spool: Spool,
    archive: Archive,
    policy: config::Queue,
    clock: Clock,
    /// (due time, id) of every message waiting to be sent.
    due: Mutex<BTreeSet<(u64, u64, String)>>,
    /// Serialises state transitions of records, so that a cancel cannot cross a pick-up.
    transitions: Mutex<()>,
    /// Set while the relay is taken for unreachable. Like Postfix's dead host: mail keeps its
    /// place instead of failing one connection after another, each recorded with a sync. A
    /// fresh notice still gets its first attempt, so that whoever waits for a code hears at
    /// once that the relay is down.
    pause: Mutex<Option<Pause>>,
    wake: Notify,
    events: broadcast::Sender<Event>,
    state_dir: PathBuf,
    /// Free bytes of `state_dir` that new mail may not take (`limits.disk_reserve_bytes`).
    reserve: AtomicU64,
    /// Submitter → the messages whose bytes are in the spool, and those bytes.
    usage: Mutex<HashMap<u32, Usage>>,
}

impl Queue {
    /// Opens the queue and repairs what a crash left: messages caught in `sending` go back to
    /// `queued` (at-least-once; the Message-ID stays the same), spool files without a record
    /// are removed.
    pub fn open(
        store: Store,
        state_dir: &Path,
        archive: Archive,
        policy: config::Queue,
        clock: Clock,
    ) -> Result<Queue> {
        let mut records = store.messages()?;
        let known: std::collections::HashSet<String> =
            records.iter().map(|r| r.id.clone()).collect();
        // Accepted messages whose record had not reached the store's disk yet.
        let (spool, recovered) = Spool::open(&state_dir.join("spool"), |record| {
            serde_json::from_slice::<Record>(record)
                .ok()
                .filter(|r| !known.contains(&r.id))
        })?;
        let restored = recovered.len();
        let mut ended = 0;
        for entry in recovered {
            let mut r = entry.record;
            r.slot = Some(entry.slot);
            if entry.mark != Mark::Waiting {
                ended += 1;
                end_as_marked(&mut r, entry.mark);
            }
            store.put_messages(&[&r], false)?;
            records.push(r);
        }
        let mut requeued = 0;
        let mut due = BTreeSet::new();
        let now = clock();
        for r in &mut records {
            let mut waiting = !matches!(
                r.state,
                MsgState::Delivered | MsgState::Cancelled | MsgState::Failed
            );
            // A store restored from an older snapshot has messages as waiting that ended
            // since: the spool's marks say how, so that none is sent again.
            if waiting && let Some(slot) = &r.slot {
                match spool.outcome(slot)? {
                    spool::Outcome::Waiting => {}
                    spool::Outcome::Ended(mark) => {
                        end_as_marked(r, mark);
                        // Kept (a failure, a delivery to seal) only if its bytes still are.
                        if r.slot.as_ref().is_some_and(|s| spool.read(s).is_err()) {
                            r.slot = None;
                        }
                        store.put_messages(&[r], false)?;
                        ended += 1;
                        waiting = false;
                    }
                    spool::Outcome::Gone => {
                        r.slot = None;
                        ended += 1;
                    }
                }
            }
            if r.state == MsgState::Failed && r.slot.is_some() && r.failed_at == 0 {
                // Failed before the failure time was kept (or read back from the spool's
                // marks): its clear text gets a full lifetime.
                r.failed_at = now;
                store.put_messages(&[r], false)?;
            }
            if waiting && r.slot.is_none() {
                r.state = MsgState::Failed;
                r.last_reply = "its content is missing from the spool".into();
                store.put_messages(&[r], false)?;
            } else if r.state == MsgState::Sending {
                r.state = MsgState::Queued;
                r.last_reply = "interrupted while sending; will be sent again".into();
                store.put_messages(&[r], false)?;
                requeued += 1;
            }
            if matches!(r.state, MsgState::Queued | MsgState::Deferred) {
                due.insert(due_key(r));
            }
        }
        store.flush()?;
        spool.retain(records.iter().filter_map(|r| r.slot.as_ref()))?;
        if ended > 0 {
            tracing::warn!(
                ended,
                "messages the store had as waiting or did not know had ended, as the spool says: not sent again"
            );
        }
        let mut usage: HashMap<u32, Usage> = HashMap::new();
        for r in records.iter().filter(|r| r.slot.is_some()) {
            usage.entry(r.submitter).or_default().add(r.size);
        }
        tracing::info!(waiting = due.len(), requeued, restored, "queue opened");
        Ok(Queue {
            store,
            spool,
            archive,
            policy,
            clock,
            due: Mutex::new(due),
            transitions: Mutex::new(()),
            pause: Mutex::new(None),
            wake: Notify::new(),
            events: broadcast::channel(4096).0,
            state_dir: state_dir.to_owned(),
            reserve: AtomicU64::new(0),
            usage: Mutex::new(usage),
        })
    }

    /// New mail is refused while `state_dir` has less than `bytes` free beyond it.
    pub fn set_disk_reserve(&self, bytes: u64) {
        self.reserve.store(bytes, Ordering::Relaxed);
    }

    /// The queue's housekeeping (sealing clear text, pruning old records): `chore` on the
    /// blocking pool every `every`, the messages it handled logged as `done`, a failure as
    /// `failed` (never returns).
    pub async fn now_and_then(
        self: Arc<Self>,
        every: std::time::Duration,
        chore: fn(&Queue) -> Result<usize>,
        done: &'static str,
        failed: &'static str,
    ) {
        loop {
            let q = self.clone();
            match tokio::task::spawn_blocking(move || chore(&q)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(messages = n, "{done}"),
                Ok(Err(e)) => tracing::warn!(error = %e, "{failed}"),
                Err(e) => tracing::error!(error = %e, "{failed}: the task failed"),
            }
            tokio::time::sleep(every).await;
        }
    }

    pub fn max_lifetime_secs(&self) -> u64 {
        self.policy.max_lifetime_secs
    }

    /// What `submitter` has in the spool now.
    pub fn usage(&self, submitter: u32) -> Usage {
        self.usage
            .lock()
            .unwrap()
            .get(&submitter)
            .copied()
            .unwrap_or_default()
    }

    /// Refuses new content that would leave less than the reserve free: what is left is for
    /// recording deliveries and sealing them.
    pub fn check_disk(&self, adding: u64) -> Result<()> {
        let reserve = self.reserve.load(Ordering::Relaxed);
        if reserve == 0 {
            return Ok(());
        }
        let free = quota::free_bytes(&self.state_dir)?
            .saturating_sub(crate::ballast::owed(&self.state_dir));
        quota::admit_disk(free, reserve, adding).map_err(Error::DiskFull)
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn emit(&self, r: &Record) {
        let _ = self.events.send(Event {
            id: r.id.clone(),
            state: r.state,
        });
    }

    /// Accepts messages: every spool file synced, then every record flushed, in one commit.
    pub async fn enqueue(self: &std::sync::Arc<Self>, items: Vec<Outgoing>) -> Result<Vec<Record>> {
        self.enqueue_within(items, None).await
    }

    /// Like `enqueue`, refused whole if a submitter would hold more than `quota` in the spool.
    pub async fn enqueue_within(
        self: &std::sync::Arc<Self>,
        items: Vec<Outgoing>,
        quota: Option<Quota>,
    ) -> Result<Vec<Record>> {
        let queue = self.clone();
        let records = tokio::task::spawn_blocking(move || queue.commit(items, quota))
            .await
            .map_err(|e| Error::Spool(std::io::Error::other(e)))??;
        self.admitted(&records);
        Ok(records)
    }

    /// What follows a commit: the messages become due, their state is told, and the delivery
    /// loop wakes up.
    pub fn admitted(&self, records: &[Record]) {
        {
            let mut due = self.due.lock().unwrap();
            for r in records {
                due.insert(due_key(r));
            }
        }
        for r in records {
            self.emit(r);
        }
        self.wake.notify_one();
    }

    /// One spool append synced: that is the commit. The records then go to the store without
    /// waiting for its flush; the spool has them if the store loses them in a crash.
    ///
    /// It blocks on the disk: called from a blocking thread, and followed by `admitted`.
    pub fn commit(&self, items: Vec<Outgoing>, quota: Option<Quota>) -> Result<Vec<Record>> {
        let now = self.now();
        let mut adding: HashMap<u32, Usage> = HashMap::new();
        for item in &items {
            adding
                .entry(item.submitter)
                .or_default()
                .add(item.bytes.len() as u64);
        }
        self.check_disk(adding.values().map(|u| u.bytes).sum())?;
        {
            let mut usage = self.usage.lock().unwrap();
            if let Some(quota) = quota {
                for (submitter, more) in &adding {
                    let held = usage.get(submitter).copied().unwrap_or_default();
                    quota.admit(held, *more).map_err(Error::QuotaExceeded)?;
                }
            }
            for (submitter, more) in &adding {
                usage.entry(*submitter).or_default().plus(*more);
            }
        }
        let result = self.write_new(items, now);
        if result.is_err() {
            let mut usage = self.usage.lock().unwrap();
            for (submitter, more) in &adding {
                usage.entry(*submitter).or_default().minus(*more);
            }
        }
        result
    }

    fn write_new(&self, items: Vec<Outgoing>, now: u64) -> Result<Vec<Record>> {
        let mut records = Vec::with_capacity(items.len());
        let mut bytes = Vec::with_capacity(items.len());
        for item in items {
            records.push(Record {
                id: new_id(),
                seq: self.store.next_sequence()?,
                account: item.account,
                submitter: item.submitter,
                notice: item.notice,
                archive_to: item.archive_to,
                message_id: item.message_id,
                envelope_from: item.envelope_from,
                recipients: item.recipients,
                to: item.to,
                subject: item.subject,
                size: item.bytes.len() as u64,
                created: now,
                state: MsgState::Queued,
                attempts: 0,
                next_attempt: now,
                last_reply: String::new(),
                slot: None,
                archived: None,
                failed_at: 0,
                owed: None,
                accepted: 0,
            });
            bytes.push(item.bytes);
        }
        let firsts: Vec<Vec<u8>> = records
            .iter()
            .map(|r| serde_json::to_vec(r).expect("records serialise to JSON"))
            .collect();
        let entries: Vec<(&[u8], &[u8])> = firsts
            .iter()
            .zip(&bytes)
            .map(|(r, b)| (r.as_slice(), b.as_slice()))
            .collect();
        let slots = self.spool.append(&entries).map_err(disk_full)?;
        for (r, slot) in records.iter_mut().zip(slots) {
            r.slot = Some(slot);
        }
        let refs: Vec<&Record> = records.iter().collect();
        if let Err(e) = self.store.put_messages(&refs, false) {
            // Not accepted after all: punched out, the entries are not read back either.
            for r in &records {
                self.free(r.slot.as_ref().expect("just set"), Mark::Cancelled);
            }
            return Err(e.into());
        }
        Ok(records)
    }

    /// The message's record, with its recipients while its entry is in the spool.
    pub fn get(&self, id: &str) -> Result<Record> {
        let mut r = self
            .store
            .message(id)?
            .ok_or_else(|| Error::NotFound(id.to_owned()))?;
        self.add_recipients(&mut r);
        Ok(r)
    }

    pub fn list(&self) -> Result<Vec<Record>> {
        let mut all = self.store.messages()?;
        for r in &mut all {
            self.add_recipients(r);
        }
        all.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(all)
    }

    /// Recipients from the record in the message's spool entry; none once it has left.
    fn add_recipients(&self, r: &mut Record) {
        let Some(slot) = &r.slot else {
            return;
        };
        match self
            .spool
            .record(slot)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).map_err(|e| e.to_string()))
        {
            Ok(first) if first.id == r.id => {
                r.recipients = match &r.owed {
                    None => first.recipients,
                    Some(owed) => owed
                        .iter()
                        .filter_map(|&i| first.recipients.get(i as usize).cloned())
                        .collect(),
                };
                r.to = first.to;
                r.subject = first.subject;
            }
            Ok(_) => tracing::warn!(message = %r.id, "its spool entry holds another message"),
            Err(e) => tracing::warn!(message = %r.id, error = %e, "cannot read its recipients"),
        }
    }

    /// Applies a state change if `allowed` accepts the current state.
    fn transition(
        &self,
        id: &str,
        allowed: &[MsgState],
        verb: &str,
        change: impl FnOnce(&mut Record),
    ) -> Result<Record> {
        let _guard = self.transitions.lock().unwrap();
        let mut r = self.get(id)?;
        let before = r.clone();
        if !allowed.contains(&r.state) {
            return Err(Error::InvalidState(format!(
                "message {id} is {}: it cannot be {verb}",
                r.state.as_str()
            )));
        }
        self.due.lock().unwrap().remove(&due_key(&r));
        change(&mut r);
        let freed = if r.state == MsgState::Cancelled {
            r.slot.take()
        } else {
            None
        };
        self.store.put_messages(&[&r], true)?;
        if matches!(r.state, MsgState::Queued | MsgState::Deferred) {
            self.due.lock().unwrap().insert(due_key(&r));
            self.wake.notify_one();
        }
        if let Some(slot) = freed {
            self.free_of(&before, &slot, Mark::Cancelled);
        }
        self.emit(&r);
        Ok(r)
    }

    pub fn cancel(&self, id: &str) -> Result<Record> {
        use MsgState::*;
        self.transition(id, &[Queued, Deferred, Held, Failed], "cancelled", |r| {
            r.state = Cancelled;
            r.next_attempt = 0;
        })
    }

    pub fn retry(&self, id: &str) -> Result<Record> {
        use MsgState::*;
        let now = self.now();
        let r = self.get(id)?;
        if r.slot.is_none() && r.archived.is_some() && r.state == MsgState::Failed {
            return Err(Error::InvalidState(format!(
                "message {id} failed more than {} days ago: its content is no longer kept for sending but sealed in the archive of account {} (`mailctl archive show {} {id}`); send it again from there",
                self.policy.max_lifetime_secs / 86_400,
                r.account,
                r.account
            )));
        }
        if r.slot.is_none() && !r.notice && r.state == MsgState::Failed {
            return Err(Error::InvalidState(format!(
                "message {id} failed more than {} days ago and its content is no longer kept: send it again",
                self.policy.max_lifetime_secs / 86_400
            )));
        }
        match r.state {
            Delivered if r.notice => {
                return Err(Error::InvalidState(format!(
                    "message {id} was delivered; it is one postecole writes itself (a code or a confirmation) and is not kept: ask for a new one if it was lost"
                )));
            }
            Delivered => {
                return Err(Error::InvalidState(format!(
                    "message {id} was delivered to the relay; to send it again, read it from the archive of account {} (`mailctl archive show {} {id}`) and send it anew",
                    r.account, r.account
                )));
            }
            Cancelled => {
                return Err(Error::InvalidState(format!(
                    "message {id} was cancelled and its content is not kept: send it again"
                )));
            }
            _ => {}
        }
        if r.slot.is_none() {
            return Err(Error::InvalidState(format!(
                "message {id} was written by postecole and its content is not kept: ask for it again (e.g. `mailctl account resend`)"
            )));
        }
        self.relay_reachable();
        // Unmarked before the store says queued: a store restored later must not find the
        // message queued and the spool saying it failed for good.
        if let Some(slot) = &self.get(id)?.slot {
            self.mark(slot, Mark::Waiting);
        }
        self.transition(id, &[Queued, Deferred, Failed], "retried", |r| {
            r.state = Queued;
            r.next_attempt = now;
            if r.created + self.policy.max_lifetime_secs <= now {
                // A retry asked by a person gets a fresh lifetime.
                r.created = now;
            }
        })
    }

    pub fn hold(&self, id: &str) -> Result<Record> {
        use MsgState::*;
        self.transition(id, &[Queued, Deferred], "held", |r| {
            r.state = Held;
        })
    }

    pub fn release(&self, id: &str) -> Result<Record> {
        use MsgState::*;
        let now = self.now();
        self.relay_reachable();
        self.transition(id, &[Held], "released", |r| {
            r.state = Queued;
            r.next_attempt = now;
        })
    }

    /// The next message due now, marked `sending`; None when nothing is due.
    pub fn take_due(&self) -> Result<Option<Record>> {
        let now = self.now();
        let _guard = self.transitions.lock().unwrap();
        loop {
            let paused = self.paused(now);
            let next = {
                let mut due = self.due.lock().unwrap();
                match due.first() {
                    Some((at, _, id)) if *at <= now => {
                        if paused && !self.store.message(id)?.is_some_and(|r| fresh_notice(&r)) {
                            return Ok(None);
                        }
                        due.pop_first()
                    }
                    _ => None,
                }
            };
            let Some((_, _, id)) = next else {
                return Ok(None);
            };
            let Some(mut r) = self.store.message(&id)? else {
                continue;
            };
            if !matches!(r.state, MsgState::Queued | MsgState::Deferred) {
                continue;
            }
            r.state = MsgState::Sending;
            // Not flushed: after a crash, `queued` and `sending` both mean "send again".
            self.store.put_messages(&[&r], false)?;
            self.add_recipients(&mut r);
            self.emit(&r);
            return Ok(Some(r));
        }
    }

    /// Messages waiting to be sent (queued or deferred) and, when `count_recipients`, their
    /// recipients (read from the spool: only when a daily recipient limit needs them).
    pub fn waiting(&self, count_recipients: bool) -> Result<(u64, u64)> {
        let ids: Vec<String> = self
            .due
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, id)| id.clone())
            .collect();
        let mut recipients = 0;
        if count_recipients {
            for id in &ids {
                if let Ok(r) = self.get(id) {
                    recipients += r.recipients.len() as u64;
                }
            }
        }
        Ok((ids.len() as u64, recipients))
    }

    /// Seconds until the earliest waiting message is due, if any.
    pub fn next_due_in(&self) -> Option<u64> {
        let now = self.now();
        let pause = self.pause.lock().unwrap().as_ref().map_or(0, |p| p.until);
        self.due
            .lock()
            .unwrap()
            .first()
            .map(|(at, _, _)| (*at).max(pause).saturating_sub(now))
    }

    fn paused(&self, now: u64) -> bool {
        self.pause_at(now).is_some()
    }

    /// Why delivery is paused and for how many more seconds, if it is.
    pub fn pause(&self) -> Option<(String, u64)> {
        let now = self.now();
        self.pause_at(now).map(|p| (p.reason, p.until - now))
    }

    fn pause_at(&self, now: u64) -> Option<Pause> {
        self.pause.lock().unwrap().clone().filter(|p| now < p.until)
    }

    /// The relay could not be reached: new attempts wait for the shortest back-off.
    pub fn relay_unreachable(&self, reason: &str) {
        let seconds = self.policy.min_backoff_secs;
        if self.set_pause(seconds, &format!("the relay is unreachable ({reason})")) {
            tracing::warn!(
                reason,
                seconds,
                "relay unreachable: waiting mail keeps its place until the next try"
            );
        }
    }

    /// No new attempt for `seconds` (the relay throttles, or the day's allowance is used);
    /// waiting mail keeps its place.
    pub fn pause_for(&self, seconds: u64, reason: &str) {
        if self.set_pause(seconds, reason) {
            tracing::warn!(
                reason,
                seconds,
                "delivery paused: waiting mail keeps its place until the next try"
            );
        }
    }

    /// Whether delivery was running until now.
    fn set_pause(&self, seconds: u64, reason: &str) -> bool {
        let until = self.now() + seconds;
        let was = self.pause.lock().unwrap().replace(Pause {
            until,
            reason: reason.to_owned(),
        });
        was.is_none()
    }

    /// Every deferred message due now: a person has just seen the relay answer (`relay
    /// test`), so a code e-mail need not sit out its back-off while the code expires.
    pub fn bring_deferred_forward(&self) -> Result<usize> {
        let now = self.now();
        let deferred: Vec<String> = self
            .list()?
            .into_iter()
            .filter(|r| r.state == MsgState::Deferred && r.next_attempt > now)
            .map(|r| r.id)
            .collect();
        for id in &deferred {
            // One that moved on meanwhile is simply left where it is.
            let _ = self.transition(id, &[MsgState::Deferred], "brought forward", |r| {
                r.next_attempt = now
            });
        }
        Ok(deferred.len())
    }

    /// The relay answered, or somebody asked for mail to be tried now.
    pub fn relay_reachable(&self) {
        if self.pause.lock().unwrap().take().is_some() {
            tracing::info!("relay reachable again");
            self.wake.notify_one();
        }
    }

    /// Wakes when a message is queued, released or retried.
    pub async fn changed(&self) {
        self.wake.notified().await
    }

    pub fn body(&self, r: &Record) -> std::io::Result<Vec<u8>> {
        let slot = r.slot.as_ref().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "its content is not kept")
        })?;
        self.spool.read(slot)
    }

    /// Frees the bytes of `r` (as it was while it held `slot`) and its submitter's share, its
    /// entry marked with how it ended.
    fn free_of(&self, r: &Record, slot: &Slot, mark: Mark) {
        if let Some(u) = self.usage.lock().unwrap().get_mut(&r.submitter) {
            u.minus(Usage {
                messages: 1,
                bytes: r.size,
            });
        }
        self.free(slot, mark);
    }

    /// Frees a finished message's bytes, its entry marked with how it ended. A failure here
    /// loses nothing: the segment is not needed by any record and goes when the queue is next
    /// opened.
    fn free(&self, slot: &Slot, mark: Mark) {
        self.mark(slot, mark);
        if let Err(e) = self.spool.release(slot) {
            tracing::warn!(segment = %slot.segment, error = %e, "cannot free spooled bytes");
        }
    }

    fn mark(&self, slot: &Slot, mark: Mark) {
        if let Err(e) = self.spool.mark(slot, mark) {
            tracing::warn!(segment = %slot.segment, error = %e, "cannot mark a spooled message");
        }
    }

    /// Records how one attempt ended and plans the next one.
    #[cfg(test)]
    pub fn finish(&self, r: Record, outcome: Outcome) -> Result<Record> {
        let mut records = self.finish_batch(vec![(r, outcome)]).map_err(|(e, _)| e)?;
        Ok(records.remove(0))
    }

    /// Records how a group of attempts ended, with one sync for the whole group: delivered mail
    /// is sealed into its account's archive, the records are written, the file system and the
    /// store are synced once, and only then do delivered messages leave the spool. A crash
    /// before the sync leaves them `sending`, to be sent again (at least once).
    ///
    /// Sealing may fail (a full disk): the outcome is recorded all the same, and the message
    /// keeps its bytes in the spool until `seal_pending` manages to seal them.
    ///
    /// On failure the group comes back with what was sealed noted, to be recorded again
    /// without sealing it twice.
    pub fn finish_batch(
        &self,
        items: Vec<(Record, Outcome)>,
    ) -> std::result::Result<Vec<Record>, (Error, Attempts)> {
        let now = self.now();
        let (mut records, outcomes): (Vec<Record>, Vec<Outcome>) = items.into_iter().unzip();
        let delivered: Vec<usize> = (0..records.len())
            .filter(|&i| {
                matches!(outcomes[i], Outcome::Delivered(_))
                    && records[i].archive_to.is_some()
                    && records[i].archived.is_none()
            })
            .collect();
        self.seal(&mut records, &delivered);
        let kept: Vec<(Record, Outcome)> = records.iter().cloned().zip(outcomes.clone()).collect();
        self.record_outcomes(records, outcomes, now)
            .map_err(|e| (e, kept))
    }

    fn record_outcomes(
        &self,
        records: Vec<Record>,
        outcomes: Vec<Outcome>,
        now: u64,
    ) -> Result<Vec<Record>> {
        let mut freed = Vec::new();
        let records: Vec<Record> = {
            let _guard = self.transitions.lock().unwrap();
            let records: Vec<Record> = records
                .into_iter()
                .zip(outcomes)
                .map(|(r, outcome)| {
                    let before = r.clone();
                    let mut r = outcome::apply(&self.policy, r, outcome, now);
                    let done = (r.state == MsgState::Delivered
                        && (r.archive_to.is_none() || r.archived.is_some()))
                        || (r.state == MsgState::Failed && r.notice);
                    if done && let Some(slot) = r.slot.take() {
                        freed.push((before, slot, r.state));
                    }
                    r
                })
                .collect();
            let refs: Vec<&Record> = records.iter().collect();
            self.store.put_messages(&refs, false)?;
            records
        };
        self.store.flush()?;
        for (r, slot, state) in &freed {
            self.free_of(r, slot, ended_mark(*state));
        }
        // Ended but kept a while (a failure, a delivery not sealed yet): marked all the same,
        // so that a store restored from an older snapshot sends none of them again.
        for r in &records {
            if matches!(r.state, MsgState::Failed | MsgState::Delivered)
                && let Some(slot) = &r.slot
            {
                self.mark(slot, ended_mark(r.state));
            }
        }
        for r in &records {
            if matches!(r.state, MsgState::Deferred | MsgState::Queued) {
                self.due.lock().unwrap().insert(due_key(r));
                // The dispatcher may be sleeping past this new due time.
                self.wake.notify_one();
            }
            self.emit(r);
        }
        Ok(records)
    }

    /// Seals `which` of `records` into their accounts' archives, those of one account together,
    /// in chunks of a few MiB of clear text, and syncs the logs. A chunk that cannot be sealed
    /// (or a sync that fails) leaves its messages without `archived`: still in the spool.
    fn seal(&self, records: &mut [Record], which: &[usize]) {
        const CHUNK_BYTES: u64 = 4 * 1024 * 1024;
        let mut groups: std::collections::BTreeMap<(String, String), Vec<usize>> =
            Default::default();
        for &i in which {
            if let Some(recipient) = &records[i].archive_to {
                groups
                    .entry((records[i].account.clone(), recipient.clone()))
                    .or_default()
                    .push(i);
            }
        }
        let mut sealed = Vec::new();
        for ((account, recipient), members) in groups {
            let mut chunks: Vec<Vec<usize>> = vec![Vec::new()];
            let mut size = 0;
            for i in members {
                if size > 0 && size + records[i].size > CHUNK_BYTES {
                    chunks.push(Vec::new());
                    size = 0;
                }
                size += records[i].size;
                chunks.last_mut().expect("never empty").push(i);
            }
            // Short of room, a chunk that could not be sealed is tried message by message: each
            // needs only its own size free.
            let mut todo: Vec<Vec<usize>> = chunks.into_iter().rev().collect();
            while let Some(chunk) = todo.pop() {
                let size: u64 = chunk.iter().map(|&i| records[i].size).sum();
                let stored = self
                    .room_to_seal(size)
                    .and_then(|()| {
                        chunk
                            .iter()
                            .map(|&i| self.body(&records[i]))
                            .collect::<std::io::Result<Vec<_>>>()
                    })
                    .and_then(|bodies| {
                        let messages: Vec<(&str, &[u8])> = chunk
                            .iter()
                            .zip(&bodies)
                            .map(|(&i, b)| (records[i].id.as_str(), b.as_slice()))
                            .collect();
                        self.archive.store(&account, &recipient, &messages)
                    });
                match stored {
                    Ok(slot) => {
                        for &i in &chunk {
                            records[i].archived = Some(slot.clone());
                            sealed.push(i);
                        }
                    }
                    Err(_) if chunk.len() > 1 => todo.extend(chunk.iter().rev().map(|&i| vec![i])),
                    Err(e) => tracing::warn!(
                        %account,
                        message = %records[chunk[0]].id,
                        error = %e,
                        "cannot seal into the archive now; kept in the spool until it can be"
                    ),
                }
            }
        }
        if let Err(e) = self.archive.sync() {
            tracing::warn!(error = %e, "cannot sync the archive; kept in the spool until it can be");
            for i in sealed {
                records[i].archived = None;
            }
        }
    }

    /// Whether `size` bytes can be sealed and still leave the store room to record it: with a
    /// reserve set, a sealed copy never takes the last of it.
    fn room_to_seal(&self, size: u64) -> std::io::Result<()> {
        const STORE_ROOM: u64 = 1 << 20;
        if self.reserve.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let free = quota::free_bytes(&self.state_dir)?;
        if free < size + size / 8 + STORE_ROOM {
            return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
        }
        Ok(())
    }

    /// Seals what must not stay in clear in the spool: delivered mail that could not be sealed
    /// when it was delivered, and failed mail `max_lifetime_secs` after it failed (then
    /// `retry` says where it went). Returns how many messages left the spool.
    pub fn seal_pending(&self) -> Result<usize> {
        // Small groups, each freeing its spool bytes before the next is sealed: this is what
        // runs when the disk is short of room.
        const GROUP_BYTES: u64 = 1 << 20;
        let now = self.now();
        let pending: Vec<Record> = self
            .store
            .messages()?
            .into_iter()
            .filter(|r| {
                r.slot.is_some()
                    && r.archived.is_none()
                    && (r.state == MsgState::Delivered
                        || outcome::clear_text_expired(&self.policy, r, now))
            })
            .collect();
        let mut groups: Vec<Vec<Record>> = Vec::new();
        let mut size = 0;
        for r in pending {
            if groups.is_empty() || size + r.size > GROUP_BYTES {
                groups.push(Vec::new());
                size = 0;
            }
            size += r.size;
            groups.last_mut().expect("just pushed").push(r);
        }
        let mut done = 0;
        for mut records in groups {
            let all: Vec<usize> = (0..records.len()).collect();
            self.seal(&mut records, &all);
            let mut freed = Vec::new();
            let mut changed = Vec::new();
            {
                let _guard = self.transitions.lock().unwrap();
                for mut r in records {
                    // Sealed or not, a failed message with no archive key loses its clear text.
                    if r.archived.is_none() && r.archive_to.is_some() {
                        continue;
                    }
                    let Some(fresh) = self.store.message(&r.id)? else {
                        continue;
                    };
                    // Retried or cancelled meanwhile: its sealed copy is dead weight in the log.
                    if fresh.state != r.state || fresh.slot != r.slot {
                        continue;
                    }
                    let before = r.clone();
                    if let Some(slot) = r.slot.take() {
                        freed.push((before, slot));
                    }
                    changed.push(r);
                }
                let refs: Vec<&Record> = changed.iter().collect();
                self.store.put_messages(&refs, false)?;
            }
            self.store.flush()?;
            for (r, slot) in &freed {
                self.free_of(r, slot, ended_mark(r.state));
            }
            for r in &changed {
                tracing::info!(message = %r.id, state = r.state.as_str(), "clear text sealed into the archive");
                self.emit(r);
            }
            done += changed.len();
        }
        Ok(done)
    }
}

/// A write that failed for want of space says so by name.
fn disk_full(e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT => Error::DiskFull(
            "the disk holding postecole's state is full: no new mail for now (ask an administrator to free space)"
                .into(),
        ),
        _ => Error::Spool(e),
    }
}

/// What a message's spool mark says it became; its bytes stay only for a failed message
/// that is not a notice, for `retry`.
/// The spool's mark for a message that ended in `state`.
fn ended_mark(state: MsgState) -> Mark {
    match state {
        MsgState::Delivered => Mark::Delivered,
        MsgState::Cancelled => Mark::Cancelled,
        _ => Mark::Failed,
    }
}

fn end_as_marked(r: &mut Record, mark: Mark) {
    r.next_attempt = 0;
    match mark {
        Mark::Waiting => return,
        Mark::Delivered => r.state = MsgState::Delivered,
        Mark::Failed => r.state = MsgState::Failed,
        Mark::Cancelled => r.state = MsgState::Cancelled,
    }
    // A failure keeps its clear text for a retry; a delivery not sealed yet, to be sealed.
    let unsealed = r.state == MsgState::Delivered && r.archive_to.is_some() && r.archived.is_none();
    if (r.state != MsgState::Failed || r.notice) && !unsealed {
        r.slot = None;
    }
    if r.last_reply.is_empty() || r.state != MsgState::Failed {
        r.last_reply = format!(
            "{} (read back from the spool after the store was restored)",
            r.state.as_str()
        );
    }
}

fn fresh_notice(r: &Record) -> bool {
    r.notice && r.attempts == 0
}

/// Where a message sits in the dispatch order. A fresh notice (a verification code somebody
/// is waiting for at the keyboard) goes ahead of a bulk send already in the queue.
fn due_key(r: &Record) -> (u64, u64, String) {
    const NOTICE_HEAD_START: u64 = 86_400;
    let at = if fresh_notice(r) {
        r.next_attempt.saturating_sub(NOTICE_HEAD_START)
    } else {
        r.next_attempt
    };
    (at, r.seq, r.id.clone())
}

fn new_id() -> String {
    crate::secret::random_id(12)
}

#[cfg(test)]
mod tests;
