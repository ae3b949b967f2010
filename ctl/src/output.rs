//! Human tables and `--json` for what the daemon returns, and the one way to stdout.

use std::io::Write;

use postecole_dbus::{AccountInfo, ArchivedInfo, AuditEntry, MessageInfo};
use serde_json::{Value, json};

use crate::{t, tn};

/// Writes to standard output. A reader that stopped reading (`mailctl queue list | head`)
/// ends mailctl quietly, as it does `cat`, instead of a panic.
pub fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("mailctl: {e}");
        std::process::exit(74);
    }
}

/// A message's or an account's state in the caller's language (JSON keeps the English name).
pub fn state(name: &str) -> String {
    match name {
        "queued" => t!("queued"),
        "sending" => t!("sending"),
        "deferred" => t!("deferred"),
        "held" => t!("held"),
        "delivered" => t!("delivered"),
        "failed" => t!("failed"),
        "cancelled" => t!("cancelled"),
        "refused" => t!("refused"),
        "awaiting-code" => t!("awaiting-code"),
        "awaiting-secret" => t!("awaiting-secret"),
        "active" => t!("active"),
        "establishment" => t!("establishment"),
        "personal" => t!("personal"),
        other => other.to_owned(),
    }
}

/// `println!` through [`stdout`].
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}

pub fn account_json(a: &AccountInfo, default: &str) -> Value {
    json!({
        "id": a.id,
        "kind": a.kind,
        "label": a.label,
        "address": a.address,
        "state": a.state,
        "owner": a.owner,
        "staff": a.staff,
        "question": a.question,
        "created": a.created,
        "default": !default.is_empty() && a.id == default,
    })
}

pub fn accounts_json(accounts: &[AccountInfo], default: &str) -> Value {
    Value::Array(accounts.iter().map(|a| account_json(a, default)).collect())
}

/// The caller's default account is marked `*` in the last column.
pub fn accounts_table(accounts: &[AccountInfo], default: &str) -> String {
    let rows: Vec<Vec<String>> = accounts
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                state(&a.kind),
                state(&a.state),
                a.label.clone(),
                a.address.clone(),
                if a.kind == postecole_dbus::KIND_PERSONAL {
                    a.owner.clone()
                } else {
                    a.staff.join(",")
                },
                if a.id == default { "*" } else { "" }.to_owned(),
            ]
        })
        .collect();
    table(
        &[
            t!("ID"),
            t!("KIND"),
            t!("STATE"),
            t!("LABEL"),
            t!("ADDRESS"),
            t!("USERS"),
            t!("DEFAULT"),
        ],
        &rows,
    )
}

pub fn account_details(a: &AccountInfo, default: &str) -> String {
    let staff = if a.staff.is_empty() {
        "-".to_owned()
    } else {
        a.staff.join(", ")
    };
    let question = if a.question.is_empty() {
        "-"
    } else {
        &a.question
    };
    let is_default = if a.id == default { t!("yes") } else { t!("no") };
    details(&[
        (t!("id"), a.id.clone()),
        (t!("kind"), state(&a.kind)),
        (t!("label"), a.label.clone()),
        (t!("address"), a.address.clone()),
        (t!("state"), state(&a.state)),
        (t!("owner"), a.owner.clone()),
        (t!("staff"), staff),
        (t!("question"), question.to_owned()),
        (t!("default"), is_default),
    ])
}

/// `key   value` lines, keys padded to the longest (they are translated).
pub fn details(rows: &[(String, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k}{}  {v}\n", " ".repeat(width - k.chars().count())))
        .collect()
}

pub fn message_json(m: &MessageInfo) -> Value {
    // One shape per field across commands: `to` is an array wherever it appears.
    json!({
        "id": m.id,
        "account": m.account,
        "state": m.state,
        "to": m.to,
        "subject": m.subject,
        "created": m.created,
        "attempts": m.attempts,
        "next_attempt": m.next_attempt,
        "last_reply": m.last_reply,
        "message_id": m.message_id,
        "submitter": m.submitter,
        "size": m.size,
    })
}

pub fn messages_json(messages: &[MessageInfo]) -> Value {
    Value::Array(messages.iter().map(message_json).collect())
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// "3 min ago", "in 5 min": what a person reading a queue wants to know.
pub fn relative(at: u64, now: u64) -> String {
    let (delta, past) = if at <= now {
        (now - at, true)
    } else {
        (at - now, false)
    };
    let span = match delta {
        0..=59 => t!("{n} s", n = delta),
        60..=3599 => t!("{n} min", n = delta / 60),
        3600..=172_799 => t!("{n} h", n = delta / 3600),
        _ => tn!("{n} day", "{n} days", delta / 86_400),
    };
    if past {
        t!("{span} ago", span = span)
    } else {
        t!("in {span}", span = span)
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Who (account, by address when known), when, to whom, where it stands and what the relay
/// said last, whole: the last column is never cut.
pub fn messages_table(
    messages: &[MessageInfo],
    addresses: &std::collections::HashMap<String, String>,
    now: u64,
) -> String {
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                relative(m.created, now),
                addresses
                    .get(&m.account)
                    .cloned()
                    .unwrap_or_else(|| m.account.clone()),
                m.submitter.clone(),
                state(&m.state),
                m.attempts.to_string(),
                if m.to.is_empty() {
                    "-".to_owned()
                } else {
                    shorten(&m.to.join(","), 40)
                },
                if m.subject.is_empty() {
                    "-".to_owned()
                } else {
                    shorten(&m.subject, 30)
                },
                if m.last_reply.is_empty() {
                    "-".to_owned()
                } else {
                    m.last_reply.clone()
                },
            ]
        })
        .collect();
    table(
        &[
            t!("ID"),
            t!("CREATED"),
            t!("ACCOUNT"),
            t!("USER"),
            t!("STATE"),
            t!("TRIES"),
            t!("TO"),
            t!("SUBJECT"),
            t!("LAST REPLY"),
        ],
        &rows,
    )
}

pub fn message_details(m: &MessageInfo, now: u64) -> String {
    details(&[
        (t!("id"), m.id.clone()),
        (t!("account"), m.account.clone()),
        (t!("state"), state(&m.state)),
        (t!("to"), m.to.join(", ")),
        (t!("subject"), m.subject.clone()),
        (t!("created"), relative(m.created, now)),
        (t!("attempts"), m.attempts.to_string()),
        (t!("next try"), next_try(m, now)),
        (
            t!("reply"),
            if m.last_reply.is_empty() {
                "-".into()
            } else {
                m.last_reply.clone()
            },
        ),
        (t!("msg-id"), m.message_id.clone()),
        (t!("sender"), m.submitter.clone()),
        (t!("size"), tn!("{n} byte", "{n} bytes", m.size)),
    ])
}

/// A try that is due is "now", never "1 s ago"; a message that is not waiting has none.
pub fn next_try(m: &MessageInfo, now: u64) -> String {
    let waiting = matches!(m.state.as_str(), "queued" | "deferred");
    if m.next_attempt == 0 || !waiting {
        "-".to_owned()
    } else if m.next_attempt <= now {
        t!("now")
    } else {
        relative(m.next_attempt, now)
    }
}

pub fn archived_json(messages: &[ArchivedInfo]) -> Value {
    Value::Array(
        messages
            .iter()
            .map(|m| {
                let to: Vec<&str> = m
                    .to
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .collect();
                json!({"id": m.id, "created": m.created, "subject": m.subject, "to": to, "size": m.size,
                       "state": m.state, "reply": m.reply})
            })
            .collect(),
    )
}

pub fn archived_table(messages: &[ArchivedInfo], now: u64) -> String {
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                relative(m.created, now),
                shorten(&m.to, 40),
                m.subject.clone(),
                if m.state.is_empty() {
                    String::new()
                } else {
                    state(&m.state)
                },
                m.reply.clone(),
            ]
        })
        .collect();
    table(
        &[
            t!("ID"),
            t!("SENT"),
            t!("TO"),
            t!("SUBJECT"),
            t!("STATE"),
            t!("RELAY'S REPLY"),
        ],
        &rows,
    )
}

pub fn audit_json(entries: &[AuditEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                json!({"time": e.time, "uid": e.uid, "user": e.user, "action": e.action,
                       "account": e.account, "outcome": e.outcome})
            })
            .collect(),
    )
}

pub fn audit_table(entries: &[AuditEntry], now: u64) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                relative(e.time, now),
                e.user.clone(),
                e.action.clone(),
                e.account.clone(),
                e.outcome.clone(),
            ]
        })
        .collect();
    table(
        &[
            t!("WHEN"),
            t!("USER"),
            t!("ACTION"),
            t!("ACCOUNT"),
            t!("OUTCOME"),
        ],
        &rows,
    )
}

/// Columns padded to their widest cell, counted in characters so that accents align.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header.iter().map(|h| h.as_str()).collect());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        assert_eq!(relative(100, 100), "0 s ago");
        assert_eq!(relative(100, 220), "2 min ago");
        assert_eq!(relative(400, 100), "in 5 min");
        assert_eq!(relative(0, 3 * 86_400), "3 days ago");
        assert_eq!(shorten("abcdef", 4), "abc…");
    }

    #[test]
    fn table_aligns_on_characters() {
        let t = table(
            &["ID".to_owned(), "LABEL".to_owned()],
            &[
                vec!["a".into(), "Écolé".into()],
                vec!["bbbb".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID    LABEL\na     Écolé\nbbbb  x\n");
    }
}
