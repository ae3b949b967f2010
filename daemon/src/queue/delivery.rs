//! The delivery loop: takes due messages from the queue, hands them to the relay a few at a
//! time, and records their outcomes in groups (one sync per group).

use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use tokio::sync::{Semaphore, mpsc, watch};

use super::relay::{Error, Relay};
use super::{Outcome, Queue, outcome};
use crate::model::Record;

/// The worker pool: takes due messages from the queue and sends them, at most
/// `relay.in_flight()` at a time (over `relay.connections()` connections, kept for the
/// next), at the pace of the relay's sending limits.
///
/// When `stop` turns true it takes no more messages, records the outcomes of those being
/// sent as their answers come, and returns once none is left: a message left `sending` (the
/// caller gave up waiting) is sent again after a restart. A `stop` whose sender is gone
/// never stops it.
pub async fn run(queue: Arc<Queue>, relay: Arc<Relay>, mut stop: watch::Receiver<bool>) {
    // Outcomes are recorded by one task, in groups sharing a single sync, so that a slot is
    // free for the next send as soon as the relay has answered.
    let (done, outcomes) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(record_outcomes(queue.clone(), outcomes, stop.clone()));
    tokio::spawn(seal_pending(queue.clone()));
    tokio::spawn(save_usage(relay.clone()));
    tokio::spawn(relay.clone().keep_alive());
    tokio::select! {
        _ = dispatch(&queue, &relay, done) => {}
        _ = stopped(&mut stop) => {}
    }
    let _ = recorder.await;
}

/// Resolves once `stop` is true; never if its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn dispatch(
    queue: &Arc<Queue>,
    relay: &Arc<Relay>,
    done: mpsc::UnboundedSender<(Record, Outcome)>,
) {
    let permits = Arc::new(Semaphore::new(relay.in_flight()));
    // Bodies read for sending, in `ROOM_UNIT`s: a few large messages go one after another
    // rather than all in memory at once.
    let room = Arc::new(Semaphore::new((SENDING_BYTES / ROOM_UNIT) as usize));
    let mut held = false;
    loop {
        // Needs a login: nothing is taken, so nothing is tried, deferred or bounced.
        if let Some(why) = relay.hold() {
            if !held {
                tracing::error!(
                    reason = %why,
                    "relay needs a new login (`mailctl relay login`): mail waits"
                );
                held = true;
            }
            tokio::select! {
                _ = relay.usable() => {}
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            continue;
        }
        if held {
            tracing::info!("relay login done: delivery resumes");
            // A pause for refused credentials is over too: the login was just checked.
            queue.relay_reachable();
            held = false;
        }
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        if queue.next_due_in() == Some(0) {
            relay.pacer().admit_message().await;
        }
        match queue.take_due() {
            Ok(Some(record)) => {
                if let Err(wait) = relay
                    .pacer()
                    .admit_recipients(record.recipients.len() as u64)
                {
                    drop(permit);
                    let reason = format!(
                        "the relay's allowance of {} recipients a day is used; next try in {} min",
                        relay.pacer().limits().recipients_per_day.unwrap_or(0),
                        wait.div_ceil(60)
                    );
                    queue.pause_for(wait, &reason);
                    let at = queue_now() + wait;
                    let _ = done.send((record, Outcome::Wait { reply: reason, at }));
                    continue;
                }
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

/// How long the outcomes following a first one are waited for, to share its sync. Messages
/// that come one by one (a script's, a cron job's) are delivered one by one: recorded alone,
/// each paid an archive sealing and two syncs, a third of the daemon's work for such a message.
/// A message's `delivered` comes this much later at most; the relay has it already.
const GATHER: Duration = Duration::from_millis(25);

/// Takes the outcomes coming within `GATHER` of a first one, records them with one sync, and
/// goes again until every sender is gone; once `stop` is true, without waiting for more.
pub(super) async fn record_outcomes(
    queue: Arc<Queue>,
    mut outcomes: mpsc::UnboundedReceiver<(Record, Outcome)>,
    mut stop: watch::Receiver<bool>,
) {
    while let Some(first) = outcomes.recv().await {
        let mut group = vec![first];
        let until = tokio::time::Instant::now() + GATHER;
        while group.len() < 512 {
            let item = tokio::select! {
                biased;
                item = outcomes.recv() => item,
                _ = stopped(&mut stop) => None,
                _ = tokio::time::sleep_until(until) => None,
            };
            match item {
                Some(item) => group.push(item),
                None => break,
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
            // At a stop, left `sending` as after a crash rather than holding the stop up.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stopped(&mut stop) => return,
            }
        }
    }
}

/// Keeps the day's recipient counts on disk, now and then, so that a restart does not reset
/// the relay's allowance.
async fn save_usage(relay: Arc<Relay>) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let r = relay.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || r.pacer().save()).await {
            tracing::warn!(error = %e, "cannot save the relay's usage counts");
        }
    }
}

fn queue_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Seals, now and then, what must not stay in clear in the spool (see `Queue::seal_pending`).
async fn seal_pending(queue: Arc<Queue>) {
    let every = Duration::from_secs((queue.max_lifetime_secs() / 4).clamp(1, 60));
    queue
        .now_and_then(
            every,
            Queue::seal_pending,
            "spooled clear text sealed",
            "cannot seal spooled clear text now",
        )
        .await
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
    match relay.send(&envelope, &record.message_id, bytes).await {
        Ok(delivery) => {
            queue.relay_reachable();
            outcome::judge(record, delivery.body.as_deref(), &delivery.recipients)
        }
        Err(Error::Permanent(reply)) => Outcome::Permanent(reply),
        Err(Error::Unreachable(reply)) => {
            queue.relay_unreachable(&reply);
            Outcome::Transient(reply)
        }
        Err(Error::Transient(reply)) | Err(Error::Setup(reply)) => Outcome::Transient(reply),
        // Nothing about this message: it keeps its place, no attempt counted.
        Err(Error::NeedsLogin(reply)) => Outcome::Wait {
            reply,
            at: queue_now(),
        },
        Err(Error::AuthRefused(reply)) => {
            queue.relay_unreachable(&reply);
            Outcome::Wait {
                reply,
                at: queue_now(),
            }
        }
        Err(Error::Throttled(reply, wait)) => {
            queue.pause_for(wait, &reply);
            Outcome::Wait {
                reply: format!("waiting: the relay asks to slow down ({reply})"),
                at: queue_now() + wait,
            }
        }
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
