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

pub mod delivery;
mod outcome;
mod outgoing;
pub mod relay;
mod spool;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use tokio::sync::{Notify, broadcast};

use crate::archive::Archive;
use crate::clock::Clock;
use crate::config;
use crate::model::{MsgState, Record, Slot};
use crate::store::{self, Store};
use spool::{Mark, Spool};

pub use outcome::Outcome;
pub use outgoing::{Outgoing, package, packaged};

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
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("spool: {0}")]
    Spool(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

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
        })
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
        let queue = self.clone();
        let records = tokio::task::spawn_blocking(move || queue.commit(items))
            .await
            .map_err(|e| Error::Spool(std::io::Error::other(e)))??;
        {
            let mut due = self.due.lock().unwrap();
            for r in &records {
                due.insert(due_key(r));
            }
        }
        for r in &records {
            self.emit(r);
        }
        self.wake.notify_one();
        Ok(records)
    }

    /// One spool append synced: that is the commit. The records then go to the store without
    /// waiting for its flush; the spool has them if the store loses them in a crash.
    fn commit(&self, items: Vec<Outgoing>) -> Result<Vec<Record>> {
        let now = self.now();
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
                size: item.bytes.len() as u64,
                created: now,
                state: MsgState::Queued,
                attempts: 0,
                next_attempt: now,
                last_reply: String::new(),
                slot: None,
                archived: None,
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
        let slots = self.spool.append(&entries)?;
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
                r.recipients = first.recipients;
                r.to = first.to;
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
            self.free(&slot, Mark::Cancelled);
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
        if self.get(id)?.slot.is_none() {
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
        let until = self.now() + self.policy.min_backoff_secs;
        let was = self.pause.lock().unwrap().replace(Pause {
            until,
            reason: reason.to_owned(),
        });
        if was.is_none() {
            tracing::warn!(
                reason,
                seconds = self.policy.min_backoff_secs,
                "relay unreachable: waiting mail keeps its place until the next try"
            );
        }
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
        Ok(self.finish_batch(vec![(r, outcome)])?.remove(0))
    }

    /// Records how a group of attempts ended, with one sync for the whole group: delivered mail
    /// is sealed into its account's archive, the records are written, the file system and the
    /// store are synced once, and only then do delivered messages leave the spool. A crash
    /// before the sync leaves them `sending`, to be sent again (at least once).
    pub fn finish_batch(&self, mut items: Vec<(Record, Outcome)>) -> Result<Vec<Record>> {
        self.seal_delivered(&mut items)?;
        let now = self.now();
        let mut freed = Vec::new();
        let records: Vec<Record> = {
            let _guard = self.transitions.lock().unwrap();
            let records: Vec<Record> = items
                .into_iter()
                .map(|(r, outcome)| {
                    let mut r = outcome::apply(&self.policy, r, outcome, now);
                    let done =
                        r.state == MsgState::Delivered || (r.state == MsgState::Failed && r.notice);
                    if done {
                        freed.extend(r.slot.take().map(|s| (s, r.state)));
                    }
                    r
                })
                .collect();
            let refs: Vec<&Record> = records.iter().collect();
            self.store.put_messages(&refs, false)?;
            records
        };
        // The archive's new files, then the records that say they are there.
        self.archive.sync()?;
        self.store.flush()?;
        for (slot, state) in &freed {
            let mark = if *state == MsgState::Delivered {
                Mark::Delivered
            } else {
                Mark::Failed
            };
            self.free(slot, mark);
        }
        for r in &records {
            if r.state == MsgState::Failed
                && let Some(slot) = &r.slot
            {
                self.mark(slot, Mark::Failed);
            }
        }
        for r in &records {
            if r.state == MsgState::Deferred {
                self.due.lock().unwrap().insert(due_key(r));
                // The dispatcher may be sleeping past this new due time.
                self.wake.notify_one();
            }
            self.emit(r);
        }
        Ok(records)
    }

    /// Seals the delivered messages of a group into their accounts' archives, those of one
    /// account together, in chunks of a few MiB of clear text.
    fn seal_delivered(&self, items: &mut [(Record, Outcome)]) -> Result<()> {
        const CHUNK_BYTES: u64 = 4 * 1024 * 1024;
        let mut groups: std::collections::BTreeMap<(String, String), Vec<usize>> =
            Default::default();
        for (i, (r, outcome)) in items.iter().enumerate() {
            if let (Outcome::Delivered(_), Some(recipient)) = (outcome, &r.archive_to) {
                groups
                    .entry((r.account.clone(), recipient.clone()))
                    .or_default()
                    .push(i);
            }
        }
        for ((account, recipient), members) in groups {
            let mut chunks: Vec<Vec<usize>> = vec![Vec::new()];
            let mut size = 0;
            for i in members {
                if size > 0 && size + items[i].0.size > CHUNK_BYTES {
                    chunks.push(Vec::new());
                    size = 0;
                }
                size += items[i].0.size;
                chunks.last_mut().expect("never empty").push(i);
            }
            for chunk in chunks {
                let bodies = chunk
                    .iter()
                    .map(|&i| self.body(&items[i].0))
                    .collect::<std::io::Result<Vec<_>>>()?;
                let messages: Vec<(&str, &[u8])> = chunk
                    .iter()
                    .zip(&bodies)
                    .map(|(&i, b)| (items[i].0.id.as_str(), b.as_slice()))
                    .collect();
                let slot = self.archive.store(&account, &recipient, &messages)?;
                for &i in &chunk {
                    items[i].0.archived = Some(slot.clone());
                }
            }
        }
        Ok(())
    }
}

/// What a message's spool mark says it became; its bytes stay only for a failed message
/// that is not a notice, for `retry`.
fn end_as_marked(r: &mut Record, mark: Mark) {
    r.next_attempt = 0;
    match mark {
        Mark::Waiting => return,
        Mark::Delivered => r.state = MsgState::Delivered,
        Mark::Failed => r.state = MsgState::Failed,
        Mark::Cancelled => r.state = MsgState::Cancelled,
    }
    if r.state != MsgState::Failed || r.notice {
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
