//! The rules of an attempt's outcome: what a delivered, refused or deferred message's record
//! becomes, and when a deferred one is tried again. Pure, so that they are tested as rules.

use crate::config;
use crate::model::{MsgState, Record};

/// How a delivery attempt ended.
pub enum Outcome {
    Delivered(String),
    Transient(String),
    Permanent(String),
}

/// Postfix's schedule: the delay doubles with each attempt, between the two bounds.
pub fn backoff(policy: &config::Queue, attempts: u32) -> u64 {
    let doublings = attempts.saturating_sub(1).min(32);
    policy
        .min_backoff_secs
        .saturating_mul(1u64 << doublings)
        .min(policy.max_backoff_secs)
}

/// What one attempt's outcome makes of a message's record at `now`: delivered mail keeps only
/// its id, dates and state in clear; a transient failure is retried on Postfix's schedule until
/// the message's lifetime runs out.
pub fn apply(policy: &config::Queue, mut r: Record, outcome: Outcome, now: u64) -> Record {
    r.attempts += 1;
    match outcome {
        Outcome::Delivered(reply) => {
            r.state = MsgState::Delivered;
            r.last_reply = reply;
            r.next_attempt = 0;
            // Only the id, the dates and the state stay in clear.
            r.to.clear();
            r.recipients.clear();
        }
        Outcome::Permanent(reply) => {
            r.state = MsgState::Failed;
            r.last_reply = reply;
            r.next_attempt = 0;
        }
        Outcome::Transient(reply) => {
            let delay = backoff(policy, r.attempts);
            if now + delay >= r.created + policy.max_lifetime_secs {
                r.state = MsgState::Failed;
                r.last_reply = format!(
                    "gave up after {} attempts over {} s; last error: {reply}",
                    r.attempts,
                    now.saturating_sub(r.created)
                );
                r.next_attempt = 0;
            } else {
                r.state = MsgState::Deferred;
                r.last_reply = reply;
                r.next_attempt = now + delay;
            }
        }
    }
    r
}
