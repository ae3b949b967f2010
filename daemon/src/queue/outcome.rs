//! The rules of an attempt's outcome: what a delivered, refused or deferred message's record
//! becomes, and when a deferred one is tried again. Pure, so that they are tested as rules.
//!
//! The relay answers for each recipient (`judge`):
//! - an accepted recipient is never sent the message again;
//! - one refused for good (5xx) is not tried again, and is named in `last_reply`;
//! - while some got a 4xx, the message stays `deferred` and owes only those (its bytes are
//!   unchanged): `Record::owed` narrows its recipients;
//! - it is `delivered` once no recipient is owed and at least one accepted it, over all its
//!   attempts, and `failed` when every one was refused for good.
//!
//! Recipients are named by their position in the message's envelope (To, Cc then Bcc, as
//! given), and an address the relay's reply repeats is replaced the same way: `last_reply` is
//! kept in the store, which holds no recipient (issue 11), delivered mail's least of all.

use crate::config;
use crate::model::{MsgState, Record};

/// How a delivery attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered(String),
    Transient(String),
    Permanent(String),
    /// Some recipients are still owed the message: `owed`, positions in the record's
    /// `recipients`, are tried again later; `accepted` took it in this attempt.
    Partly {
        reply: String,
        owed: Vec<usize>,
        accepted: u32,
    },
    /// Not tried, for a reason that is not the message's (the relay needs a login, throttles,
    /// or the day's allowance is used): queued again for `at`, no attempt counted, no bounce.
    Wait {
        reply: String,
        at: u64,
    },
}

/// The relay's answer to one recipient's RCPT, in the order of the record's `recipients`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    /// 5xx: its reply.
    Refused(String),
    /// 4xx: its reply.
    Later(String),
}

/// The outcome of a transaction the relay answered per recipient; `body` is its reply to
/// the message itself, `None` when no recipient was accepted and no body was sent.
pub fn judge(record: &Record, body: Option<&str>, answers: &[Answer]) -> Outcome {
    let position = |i: usize| match &record.owed {
        Some(owed) => owed.get(i).map_or(i + 1, |&p| p as usize + 1),
        None => i + 1,
    };
    let named = |i: usize, reply: &str| {
        let who = format!("recipient {}", position(i));
        let reply = match record.recipients.get(i) {
            Some(address) => replace_ignoring_case(reply, address, &who),
            None => reply.to_owned(),
        };
        format!("{who} ({reply})")
    };
    let mut refused = Vec::new();
    let mut later = Vec::new();
    let mut owed = Vec::new();
    let mut accepted = 0u32;
    for (i, answer) in answers.iter().enumerate() {
        match answer {
            Answer::Accepted => accepted += 1,
            Answer::Refused(reply) => refused.push(named(i, reply)),
            Answer::Later(reply) => {
                later.push(named(i, reply));
                owed.push(i);
            }
        }
    }
    let body = body.filter(|_| accepted > 0);
    let mut reply = body.map(str::to_owned).unwrap_or_default();
    let mut add = |part: String| {
        if !reply.is_empty() {
            reply.push_str("; ");
        }
        reply.push_str(&part);
    };
    if !later.is_empty() {
        add(format!(
            "to try again: {} of {}: {}",
            later.len(),
            answers.len(),
            later.join(", ")
        ));
    }
    if !refused.is_empty() {
        add(format!("refused: {}", refused.join(", ")));
    }
    if !owed.is_empty() {
        Outcome::Partly {
            reply,
            owed,
            accepted,
        }
    } else if accepted > 0 || record.accepted > 0 {
        Outcome::Delivered(reply)
    } else {
        Outcome::Permanent(reply)
    }
}

/// `text` with every occurrence of `what` (ASCII case ignored) replaced by `with`.
fn replace_ignoring_case(text: &str, what: &str, with: &str) -> String {
    if what.is_empty() {
        return text.to_owned();
    }
    let lower = text.to_ascii_lowercase();
    let what = what.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in lower.match_indices(&what) {
        out.push_str(&text[last..at]);
        out.push_str(with);
        last = at + what.len();
    }
    out.push_str(&text[last..]);
    out
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
    let outcome = match outcome {
        Outcome::Partly {
            reply,
            owed,
            accepted,
        } => {
            let before = r
                .owed
                .take()
                .unwrap_or_else(|| (0..r.recipients.len() as u32).collect());
            r.owed = Some(
                owed.iter()
                    .filter_map(|&i| before.get(i).copied())
                    .collect(),
            );
            r.recipients = owed
                .iter()
                .filter_map(|&i| r.recipients.get(i).cloned())
                .collect();
            r.accepted += accepted;
            Outcome::Transient(reply)
        }
        other => other,
    };
    match outcome {
        Outcome::Wait { .. } | Outcome::Partly { .. } => unreachable!("handled above"),
        Outcome::Delivered(reply) => {
            r.state = MsgState::Delivered;
            r.last_reply = reply;
            r.next_attempt = 0;
            // Only the id, the dates and the state stay in clear.
            r.to.clear();
            r.recipients.clear();
            r.subject.clear();
            r.owed = None;
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
    // Failed with nobody served: `queue retry` sends it to all its recipients again, those
    // refused for good included (the cause may have been fixed meanwhile).
    if r.state == MsgState::Failed && r.accepted == 0 {
        r.owed = None;
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
            owed: None,
            accepted: 0,
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

    fn to_three() -> Record {
        Record {
            recipients: vec![
                "famille@example.org".into(),
                "Inconnu@Example.org".into(),
                "lente@example.org".into(),
            ],
            ..sending(0, 1000)
        }
    }

    #[test]
    fn each_recipient_is_judged_and_only_the_deferred_ones_are_owed() {
        let p = policy();
        let answers = [
            Answer::Accepted,
            Answer::Refused("550 5.1.1 <inconnu@example.org>: unknown".into()),
            Answer::Later("451 4.2.0 lente@example.org greylisted".into()),
        ];
        let outcome = judge(&to_three(), Some("250 2.0.0 Ok"), &answers);
        let Outcome::Partly {
            reply,
            owed,
            accepted,
        } = &outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!((owed.as_slice(), *accepted), (&[2][..], 1));
        assert_eq!(
            reply,
            "250 2.0.0 Ok; to try again: 1 of 3: recipient 3 (451 4.2.0 recipient 3 greylisted); \
             refused: recipient 2 (550 5.1.1 <recipient 2>: unknown)"
        );
        assert!(
            !reply.to_lowercase().contains("example.org"),
            "no address: {reply}"
        );

        let r = apply(&p, to_three(), outcome, 1010);
        assert_eq!(r.state, MsgState::Deferred);
        assert_eq!(r.recipients, ["lente@example.org"]);
        assert_eq!((r.owed.clone(), r.accepted), (Some(vec![2]), 1));

        // The next attempt owes only the third; its refusal for good still delivers the
        // message, since the first accepted it, and is named by its place in the envelope.
        let outcome = judge(&r, None, &[Answer::Refused("550 5.7.1 no".into())]);
        let Outcome::Delivered(reply) = &outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(reply, "refused: recipient 3 (550 5.7.1 no)");
        let r = apply(
            &p,
            Record {
                state: MsgState::Sending,
                ..r
            },
            outcome,
            1400,
        );
        assert_eq!((r.state, r.attempts), (MsgState::Delivered, 2));
        assert!(r.recipients.is_empty() && r.to.is_empty() && r.owed.is_none());
    }

    #[test]
    fn all_refused_fails_and_a_retry_goes_to_everyone_again() {
        let p = policy();
        let answers = [
            Answer::Refused("550 a".into()),
            Answer::Refused("550 b".into()),
            Answer::Refused("554 c".into()),
        ];
        let outcome = judge(&to_three(), None, &answers);
        assert!(matches!(outcome, Outcome::Permanent(_)), "{outcome:?}");
        let r = apply(&p, to_three(), outcome, 1010);
        assert_eq!((r.state, r.owed.clone()), (MsgState::Failed, None));

        // All accepted: delivered with the body's reply alone.
        let all = [Answer::Accepted, Answer::Accepted, Answer::Accepted];
        let outcome = judge(&to_three(), Some("250 ok"), &all);
        assert!(
            matches!(&outcome, Outcome::Delivered(r) if r == "250 ok"),
            "{outcome:?}"
        );

        // Only deferrals: nothing delivered, everything owed, the usual back-off.
        let later = [
            Answer::Later("451 a".into()),
            Answer::Later("451 b".into()),
            Answer::Later("451 c".into()),
        ];
        let r = apply(&p, to_three(), judge(&to_three(), None, &later), 1010);
        assert_eq!(
            (r.state, r.next_attempt),
            (MsgState::Deferred, 1010 + p.min_backoff_secs)
        );
        assert_eq!(r.recipients.len(), 3);
        assert_eq!(r.accepted, 0);
    }

    #[test]
    fn giving_up_after_some_were_served_keeps_only_the_owed_for_a_retry() {
        let p = policy();
        let late = 1000 + p.max_lifetime_secs - 1;
        let answers = [
            Answer::Accepted,
            Answer::Accepted,
            Answer::Later("452 4.2.2 full".into()),
        ];
        let r = apply(
            &p,
            sending_to_three(40),
            judge(&to_three(), Some("250 ok"), &answers),
            late,
        );
        assert_eq!(r.state, MsgState::Failed);
        assert_eq!((r.owed.clone(), r.accepted), (Some(vec![2]), 2));
    }

    fn sending_to_three(attempts: u32) -> Record {
        Record {
            attempts,
            ..to_three()
        }
    }
}
