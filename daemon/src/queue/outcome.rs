//! The rules of an attempt's outcome: what a delivered, refused or deferred message's record
//! becomes, and when a deferred one is tried again. Pure, so that they are tested as rules.

use crate::config;
use crate::model::{MsgState, Record};

/// How a delivery attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered(String),
    Transient(String),
    Permanent(String),
    /// Not tried, for a reason that is not the message's (the relay needs a login, throttles,
    /// or the day's allowance is used): queued again for `at`, no attempt counted, no bounce.
    Wait {
        reply: String,
        at: u64,
    },
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
    if let Outcome::Wait { reply, at } = outcome {
        r.state = MsgState::Queued;
        r.last_reply = reply;
        r.next_attempt = at.max(now);
        return r;
    }
    r.attempts += 1;
    match outcome {
        Outcome::Wait { .. } => unreachable!("handled above"),
        Outcome::Delivered(reply) => {
            r.state = MsgState::Delivered;
            r.last_reply = reply;
            r.next_attempt = 0;
            // Only the id, the dates and the state stay in clear.
            r.to.clear();
            r.recipients.clear();
            r.subject.clear();
        }
        Outcome::Permanent(reply) => {
            r.state = MsgState::Failed;
            r.last_reply = reply;
            r.next_attempt = 0;
            r.failed_at = now;
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
                r.failed_at = now;
            } else {
                r.state = MsgState::Deferred;
                r.last_reply = reply;
                r.next_attempt = now + delay;
            }
        }
    }
    r
}

/// Whether a failed message's clear text has been kept as long as it may be at `now`.
pub fn clear_text_expired(policy: &config::Queue, r: &Record, now: u64) -> bool {
    r.state == MsgState::Failed && r.failed_at != 0 && r.failed_at + policy.max_lifetime_secs <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> config::Queue {
        config::Queue::default()
    }

    fn sending(attempts: u32, created: u64) -> Record {
        Record {
            id: "m1".into(),
            seq: 1,
            account: "acct".into(),
            submitter: 1000,
            notice: false,
            archive_to: None,
            message_id: "<m1@test>".into(),
            envelope_from: "a@ecole.fr".into(),
            recipients: vec!["famille@example.org".into()],
            to: vec!["famille@example.org".into()],
            subject: "Convocation".into(),
            size: 100,
            created,
            state: MsgState::Sending,
            attempts,
            next_attempt: created,
            last_reply: String::new(),
            slot: None,
            archived: None,
            failed_at: 0,
        }
    }

    #[test]
    fn backoff_follows_postfix() {
        let p = policy();
        assert_eq!(backoff(&p, 1), 300);
        assert_eq!(backoff(&p, 2), 600);
        assert_eq!(backoff(&p, 4), 2400);
        assert_eq!(backoff(&p, 5), 4000);
        assert_eq!(backoff(&p, 100), 4000);
    }

    #[test]
    fn delivered_keeps_no_recipient_and_failed_keeps_the_reply() {
        let r = apply(
            &policy(),
            sending(0, 1000),
            Outcome::Delivered("250 ok".into()),
            1010,
        );
        assert_eq!(
            (r.state, r.attempts, r.next_attempt),
            (MsgState::Delivered, 1, 0)
        );
        assert!(
            r.recipients.is_empty() && r.to.is_empty() && r.subject.is_empty(),
            "{r:?}"
        );
        assert_eq!(r.last_reply, "250 ok");

        let r = apply(
            &policy(),
            sending(2, 1000),
            Outcome::Permanent("550 no".into()),
            1010,
        );
        assert_eq!(
            (r.state, r.attempts, r.next_attempt),
            (MsgState::Failed, 3, 0)
        );
        assert_eq!(r.last_reply, "550 no");
        assert_eq!(r.recipients, ["famille@example.org"], "kept for a retry");
    }

    #[test]
    fn waiting_counts_no_attempt_and_never_fails() {
        let p = policy();
        let late = 1000 + p.max_lifetime_secs * 2;
        let r = apply(
            &p,
            sending(3, 1000),
            Outcome::Wait {
                reply: "the relay needs a new login".into(),
                at: late + 60,
            },
            late,
        );
        assert_eq!(
            (r.state, r.attempts, r.next_attempt),
            (MsgState::Queued, 3, late + 60)
        );
        assert_eq!(r.recipients, ["famille@example.org"]);
    }

    #[test]
    fn transient_defers_on_the_schedule_until_the_lifetime_runs_out() {
        let p = policy();
        let r = apply(
            &p,
            sending(0, 1000),
            Outcome::Transient("451 later".into()),
            1010,
        );
        assert_eq!(r.state, MsgState::Deferred);
        assert_eq!(r.next_attempt, 1010 + p.min_backoff_secs);
        assert_eq!(r.last_reply, "451 later");

        let r = apply(
            &p,
            sending(3, 1000),
            Outcome::Transient("451 later".into()),
            1010,
        );
        assert_eq!(r.next_attempt, 1010 + backoff(&p, 4));

        // The next attempt would fall past the lifetime: give up now, saying why.
        let late = 1000 + p.max_lifetime_secs - 1;
        let r = apply(
            &p,
            sending(40, 1000),
            Outcome::Transient("451 later".into()),
            late,
        );
        assert_eq!((r.state, r.next_attempt), (MsgState::Failed, 0));
        assert!(
            r.last_reply.starts_with("gave up after 41 attempts")
                && r.last_reply.ends_with("451 later"),
            "{}",
            r.last_reply
        );
    }
}
