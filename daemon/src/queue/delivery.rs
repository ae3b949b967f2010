//! The delivery loop: takes due messages from the queue, hands them to the relay a few at a
//! time, and records their outcomes in groups (one sync per group).

use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use tokio::sync::Semaphore;

use super::relay::{Error, Relay};
use super::{Outcome, Queue};
use crate::model::Record;

/// The worker pool: takes due messages from the queue and sends them, at most `concurrency`
/// at a time (lettre's pool size bounds idle connections, not concurrent sends).
pub async fn run(queue: Arc<Queue>, relay: Arc<Relay>, concurrency: usize) {
    let permits = Arc::new(Semaphore::new(concurrency));
    // Bodies read for sending, in `ROOM_UNIT`s: a few large messages go one after another
    // rather than all in memory at once.
    let room = Arc::new(Semaphore::new((SENDING_BYTES / ROOM_UNIT) as usize));
    // Outcomes are recorded by one task, in groups sharing a single sync, so that a slot is
    // free for the next send as soon as the relay has answered.
    let (done, outcomes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(record_outcomes(queue.clone(), outcomes));
    tokio::spawn(seal_pending(queue.clone()));
    loop {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        match queue.take_due() {
            Ok(Some(record)) => {
                let units = record
                    .size
                    .div_ceil(ROOM_UNIT)
                    .clamp(1, SENDING_BYTES / ROOM_UNIT) as u32;
                let bytes = room
                    .clone()
                    .acquire_many_owned(units)
                    .await
                    .expect("semaphore never closed");
                let queue = queue.clone();
                let relay = relay.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    let outcome = attempt(&queue, &relay, &record).await;
                    drop(bytes);
                    drop(permit);
                    let _ = done.send((record, outcome));
                });
            }
            Ok(None) => {
                drop(permit);
                let wait = queue.next_due_in().unwrap_or(3600).max(1);
                tokio::select! {
                    _ = queue.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
                }
            }
            Err(e) => {
                drop(permit);
                tracing::error!(error = %e, "cannot read the queue; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// The bytes of messages being sent at once (more when one message alone is larger).
const SENDING_BYTES: u64 = 48 << 20;
const ROOM_UNIT: u64 = 4096;

/// Takes every outcome waiting, records them with one sync, and goes again.
async fn record_outcomes(
    queue: Arc<Queue>,
    mut outcomes: tokio::sync::mpsc::UnboundedReceiver<(Record, Outcome)>,
) {
    while let Some(first) = outcomes.recv().await {
        let mut group = vec![first];
        while group.len() < 512 {
            match outcomes.try_recv() {
                Ok(item) => group.push(item),
                Err(_) => break,
            }
        }
        let ids: Vec<String> = group.iter().map(|(r, _)| r.id.clone()).collect();
        // A message the relay has answered for must not stay `sending` (nor be sent again
        // while the daemon runs): the outcome is kept and written again until it is recorded.
        loop {
            let queue = queue.clone();
            match tokio::task::spawn_blocking(move || queue.finish_batch(group)).await {
                Ok(Ok(records)) => {
                    for r in records {
                        tracing::info!(
                            message = %r.id,
                            state = r.state.as_str(),
                            attempts = r.attempts,
                            reply = %r.last_reply,
                            "delivery attempt"
                        );
                    }
                    break;
                }
                Ok(Err((e, back))) => {
                    tracing::error!(
                        messages = ?ids,
                        error = %e,
                        "cannot record delivery outcomes; trying again in 5 s"
                    );
                    group = back;
                }
                Err(e) => {
                    // Left `sending`: sent again after a restart, as after a crash.
                    tracing::error!(messages = ?ids, error = %e, "recording task failed");
                    break;
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

/// Seals, now and then, what must not stay in clear in the spool (see `Queue::seal_pending`).
async fn seal_pending(queue: Arc<Queue>) {
    let every = Duration::from_secs((queue.max_lifetime_secs() / 4).clamp(1, 60));
    loop {
        let q = queue.clone();
        match tokio::task::spawn_blocking(move || q.seal_pending()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(messages = n, "spooled clear text sealed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot seal spooled clear text now"),
            Err(e) => tracing::error!(error = %e, "sealing task failed"),
        }
        tokio::time::sleep(every).await;
    }
}

async fn attempt(queue: &Queue, relay: &Relay, record: &Record) -> Outcome {
    let bytes = match queue.body(record) {
        Ok(b) => b,
        Err(e) => {
            return Outcome::Permanent(format!("cannot read the message from the spool: {e}"));
        }
    };
    let envelope = match envelope(record) {
        Ok(e) => e,
        Err(e) => return Outcome::Permanent(e),
    };
    match relay.send(&envelope, &record.message_id, &bytes).await {
        Ok(reply) => {
            queue.relay_reachable();
            Outcome::Delivered(reply)
        }
        Err(Error::Permanent(reply)) => Outcome::Permanent(reply),
        Err(Error::Unreachable(reply)) => {
            queue.relay_unreachable(&reply);
            Outcome::Transient(reply)
        }
        Err(Error::Transient(reply)) | Err(Error::Setup(reply)) => Outcome::Transient(reply),
    }
}

fn envelope(record: &Record) -> Result<Envelope, String> {
    let parse = |a: &str| {
        a.parse::<lettre::Address>()
            .map_err(|e| format!("bad address {a}: {e}"))
    };
    let to = record
        .recipients
        .iter()
        .map(|a| parse(a))
        .collect::<Result<Vec<_>, _>>()?;
    Envelope::new(Some(parse(&record.envelope_from)?), to).map_err(|e| e.to_string())
}
