//! The connections kept to the relay: one task each, at most the relay's connection count.
//!
//! A connection takes messages in the order given. When the relay offers PIPELINING and
//! CHUNKING, a message's whole transaction is one write that no reply has to open, so the
//! next one is written while the replies of those before it are on their way (up to `DEPTH`
//! in flight): across a network the round trip is shared instead of paid by every message.
//! Otherwise one message at a time. A connection the relay ended, or that stayed idle for
//! `MAX_IDLE`, ends its task; the next message opens another.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lettre::Address;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::session::{Failed, Fault, Sent};
use super::{Error, Smtp};

/// Transactions written on one connection before the oldest one's replies are read. Two
/// is enough for the round trip to be shared; more would only hold more messages whose fate
/// hangs on one connection.
pub const DEPTH: usize = 2;

/// Relays drop idle clients after a while; a connection idle this long is closed.
const MAX_IDLE: Duration = Duration::from_secs(30);

/// One message handed to a connection.
pub struct Job {
    pub from: Address,
    pub to: Vec<Address>,
    pub body: Arc<Vec<u8>>,
    pub answer: oneshot::Sender<Answer>,
}

/// What became of a job.
pub enum Answer {
    Sent(Sent),
    /// The transaction failed. `again`: nothing of the message was taken, on a connection
    /// that had carried transactions before it (the relay closed it meanwhile, or said 421 at
    /// its per-connection limit): worth once more on another, with no failure counted.
    Failed {
        fault: Fault,
        again: bool,
    },
    /// Not written at all: the connection ended first.
    Untried,
    /// No session could be opened.
    Setup(Error),
}

struct Lane {
    jobs: mpsc::UnboundedSender<Job>,
    /// Jobs given and not yet answered.
    load: Arc<AtomicUsize>,
}

#[derive(Default)]
pub struct Lanes {
    lanes: std::sync::Mutex<Vec<Lane>>,
}

impl Lanes {
    /// Gives `job` to an idle connection, to a new one while there are fewer than the relay's
    /// connection count, or else to the least loaded.
    pub fn dispatch(&self, smtp: &Arc<Smtp>, mut job: Job) {
        let max = smtp.connections;
        let mut lanes = self.lanes.lock().unwrap();
        loop {
            lanes.retain(|l| !l.jobs.is_closed());
            let idlest = (0..lanes.len()).min_by_key(|&i| lanes[i].load.load(Ordering::Relaxed));
            let at = match idlest {
                Some(i) if lanes[i].load.load(Ordering::Relaxed) == 0 || lanes.len() >= max => i,
                _ => {
                    let (jobs, receiver) = mpsc::unbounded_channel();
                    let load = Arc::new(AtomicUsize::new(0));
                    tokio::spawn(run(smtp.clone(), receiver, load.clone()));
                    lanes.push(Lane { jobs, load });
                    lanes.len() - 1
                }
            };
            let lane = &lanes[at];
            lane.load.fetch_add(1, Ordering::Relaxed);
            match lane.jobs.send(job) {
                Ok(()) => return,
                // Its task ended since the check: another lane.
                Err(mpsc::error::SendError(back)) => {
                    lane.load.fetch_sub(1, Ordering::Relaxed);
                    job = back;
                }
            }
        }
    }
}

/// A job written and waiting for its replies.
struct InFlight {
    job: Job,
    /// Transactions begun on this connection before it.
    position: u32,
    deadline: Instant,
}

/// Answers given back once the connection's state is settled: a connection that ended is
/// closed to new jobs and its socket shut first, so that a job tried again never finds it
/// (nor counts it against the relay's connection limit).
struct Answers {
    load: Arc<AtomicUsize>,
    ready: Vec<(Job, Answer)>,
}

impl Answers {
    fn give(&mut self, job: Job, answer: Answer) {
        self.ready.push((job, answer));
    }

    fn send(&mut self) {
        for (job, answer) in self.ready.drain(..) {
            self.load.fetch_sub(1, Ordering::Relaxed);
            let _ = job.answer.send(answer);
        }
    }
}

fn judged(result: Result<Sent, Failed>, position: u32) -> Answer {
    match result {
        Ok(sent) => Answer::Sent(sent),
        Err(Failed { fault, at_mail }) => Answer::Failed {
            fault,
            again: at_mail && position > 0,
        },
    }
}

async fn run(smtp: Arc<Smtp>, mut jobs: mpsc::UnboundedReceiver<Job>, load: Arc<AtomicUsize>) {
    let mut answers = Answers {
        load,
        ready: Vec::new(),
    };
    let Some(first) = jobs.recv().await else {
        return;
    };
    let mut session = match tokio::time::timeout(smtp.send_timeout, smtp.connect()).await {
        Ok(Ok(session)) => session,
        failed => {
            let error = match failed {
                Ok(Err(e)) => e,
                _ => Error::Unreachable(format!(
                    "{}: no session within {} s",
                    smtp.description,
                    smtp.send_timeout.as_secs()
                )),
            };
            jobs.close();
            answers.give(first, Answer::Setup(error.clone()));
            while let Ok(job) = jobs.try_recv() {
                answers.give(job, Answer::Setup(error.clone()));
            }
            answers.send();
            return;
        }
    };
    let depth = if session.streams() { DEPTH } else { 1 };
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut position = 0u32;
    let mut next = Some(first);
    loop {
        // Write what waits, while there is room.
        while in_flight.len() < depth && !session.is_broken() {
            let job = match next.take() {
                Some(job) => job,
                None => match jobs.try_recv() {
                    Ok(job) => job,
                    Err(_) => break,
                },
            };
            if job.answer.is_closed() {
                // Its sender gave up waiting: not sent behind its back.
                answers.give(job, Answer::Untried);
                continue;
            }
            if depth == 1 {
                let sent = tokio::time::timeout(
                    smtp.send_timeout,
                    session.send(&job.from, &job.to, &job.body),
                )
                .await;
                let answer = match sent {
                    Ok(result) => judged(result, position),
                    Err(_) => {
                        session.abandon(&before(&smtp));
                        Answer::Failed {
                            fault: timed_out(&smtp),
                            again: false,
                        }
                    }
                };
                answers.give(job, answer);
                if !session.is_broken() {
                    answers.send();
                }
                position += 1;
                continue;
            }
            // A relay that stops reading holds the write: bounded like the replies, and by the
            // oldest transaction's own deadline.
            let deadline = Instant::now() + smtp.send_timeout;
            let bound = in_flight
                .front()
                .map_or(deadline, |f| f.deadline.min(deadline));
            match tokio::time::timeout_at(bound, session.start(&job.from, &job.to, &job.body)).await
            {
                Ok(Ok(())) => {
                    in_flight.push_back(InFlight {
                        job,
                        position,
                        deadline,
                    });
                    position += 1;
                }
                // Unfit: nothing written, the connection as it was.
                Ok(Err(failed)) => answers.give(job, judged(Err(failed), position)),
                Err(_) => {
                    // Cut short, the chunk cannot have been taken: as a write that failed.
                    session.abandon(&before(&smtp));
                    answers.give(
                        job,
                        Answer::Failed {
                            fault: timed_out(&smtp),
                            again: position > 0,
                        },
                    );
                }
            }
        }

        if session.is_broken() {
            break;
        }
        if let Some(oldest) = in_flight.front()
            && session.concluded(oldest.job.to.len())
        {
            let oldest = in_flight.pop_front().expect("just seen");
            let result = session.conclude(oldest.job.to.len()).await;
            answers.give(oldest.job, judged(result, oldest.position));
            if !session.is_broken() {
                answers.send();
            }
            continue;
        }
        answers.send();
        let room = in_flight.len() < depth;
        match in_flight.front().map(|f| f.deadline) {
            None => {
                match tokio::time::timeout(MAX_IDLE, jobs.recv()).await {
                    Ok(Some(job)) => next = Some(job),
                    // Idle too long (or the relay itself dropped).
                    _ => break,
                }
            }
            Some(deadline) => {
                tokio::select! {
                    // An error leaves the session broken: what is in flight is judged below.
                    _ = session.fill() => {}
                    job = jobs.recv(), if room => next = job,
                    _ = tokio::time::sleep_until(deadline) => {
                        session.abandon(&before(&smtp));
                        let oldest = in_flight.pop_front().expect("a deadline is one's");
                        answers.give(oldest.job, Answer::Failed { fault: timed_out(&smtp), again: false });
                    }
                }
            }
        }
    }

    // The connection ends. What is in flight is judged from the replies still on their way
    // (each within its deadline); the socket is shut; only then is the lane closed to new
    // jobs, so that while it is counted its connection still exists, and what waits, never
    // written, goes back to be dispatched again.
    while let Some(f) = in_flight.pop_front() {
        let answer =
            match tokio::time::timeout_at(f.deadline, session.conclude(f.job.to.len())).await {
                Ok(result) => judged(result, f.position),
                Err(_) => {
                    session.abandon(&before(&smtp));
                    Answer::Failed {
                        fault: timed_out(&smtp),
                        again: false,
                    }
                }
            };
        answers.give(f.job, answer);
    }
    if !session.is_broken() {
        tracing::debug!(
            delivered = session.delivered,
            "relay connection idle: closing it"
        );
    }
    // A relay that does not answer QUIT is not waited for long.
    let _ = tokio::time::timeout(Duration::from_secs(5), session.quit()).await;
    drop(session);
    jobs.close();
    if let Some(job) = next.take() {
        answers.give(job, Answer::Untried);
    }
    while let Ok(job) = jobs.try_recv() {
        answers.give(job, Answer::Untried);
    }
    answers.send();
}

/// Why the transactions behind one that timed out fail.
fn before(smtp: &Smtp) -> String {
    format!(
        "the relay did not finish a message sent before it on the connection within {} s",
        smtp.send_timeout.as_secs()
    )
}

fn timed_out(smtp: &Smtp) -> Fault {
    Fault::Link(format!(
        "the relay did not finish within {} s",
        smtp.send_timeout.as_secs()
    ))
}
