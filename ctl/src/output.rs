//! Human tables and `--json` for what the daemon returns.

use postecole_dbus::{AccountInfo, ArchivedInfo, AuditEntry, MessageInfo};
use serde_json::{Value, json};

pub fn account_json(a: &AccountInfo) -> Value {
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
    })
}

pub fn accounts_json(accounts: &[AccountInfo]) -> Value {
    Value::Array(accounts.iter().map(account_json).collect())
}

pub fn accounts_table(accounts: &[AccountInfo]) -> String {
    let rows: Vec<Vec<String>> = accounts
        .iter()
        .map(|a| {
            vec![
                a.id.clone(),
                a.kind.clone(),
                a.state.clone(),
                a.label.clone(),
                a.address.clone(),
                if a.kind == postecole_dbus::KIND_PERSONAL {
                    a.owner.clone()
                } else {
                    a.staff.join(",")
                },
            ]
        })
        .collect();
    table(&["ID", "KIND", "STATE", "LABEL", "ADDRESS", "USERS"], &rows)
}

pub fn account_details(a: &AccountInfo) -> String {
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
    let rows = [
        ("id", a.id.as_str()),
        ("kind", a.kind.as_str()),
        ("label", a.label.as_str()),
        ("address", a.address.as_str()),
        ("state", a.state.as_str()),
        ("owner", a.owner.as_str()),
        ("staff", staff.as_str()),
        ("question", question),
    ];
    rows.iter().map(|(k, v)| format!("{k:<9} {v}\n")).collect()
}

pub fn message_json(m: &MessageInfo) -> Value {
    json!({
        "id": m.id,
        "account": m.account,
        "state": m.state,
        "to": m.to,
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
        0..=59 => format!("{delta} s"),
        60..=3599 => format!("{} min", delta / 60),
        3600..=172_799 => format!("{} h", delta / 3600),
        _ => format!("{} days", delta / 86_400),
    };
    if past {
        format!("{span} ago")
    } else {
        format!("in {span}")
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

pub fn messages_table(messages: &[MessageInfo], now: u64) -> String {
    let rows: Vec<Vec<String>> = messages
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                m.account.clone(),
                m.state.clone(),
                m.attempts.to_string(),
                relative(m.created, now),
                shorten(&m.to.join(","), 40),
                shorten(&m.last_reply, 60),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "ACCOUNT",
            "STATE",
            "TRIES",
            "CREATED",
            "TO",
            "LAST REPLY",
        ],
        &rows,
    )
}

pub fn message_details(m: &MessageInfo, now: u64) -> String {
    let next = if m.next_attempt == 0 {
        "-".to_owned()
    } else {
        relative(m.next_attempt, now)
    };
    let rows = [
        ("id", m.id.clone()),
        ("account", m.account.clone()),
        ("state", m.state.clone()),
        ("to", m.to.join(", ")),
        ("created", relative(m.created, now)),
        ("attempts", m.attempts.to_string()),
        ("next try", next),
        (
            "reply",
            if m.last_reply.is_empty() {
                "-".into()
            } else {
                m.last_reply.clone()
            },
        ),
        ("msg-id", m.message_id.clone()),
        ("sender", m.submitter.clone()),
        ("size", format!("{} bytes", m.size)),
    ];
    rows.iter().map(|(k, v)| format!("{k:<9} {v}\n")).collect()
}

pub fn archived_json(messages: &[ArchivedInfo]) -> Value {
    Value::Array(
        messages
            .iter()
            .map(|m| json!({"id": m.id, "created": m.created, "subject": m.subject, "to": m.to, "size": m.size}))
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
            ]
        })
        .collect();
    table(&["ID", "SENT", "TO", "SUBJECT"], &rows)
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
    table(&["WHEN", "USER", "ACTION", "ACCOUNT", "OUTCOME"], &rows)
}

/// Columns padded to their widest cell, counted in characters so that accents align.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
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
    let mut out = line(header.to_vec());
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
            &["ID", "LABEL"],
            &[
                vec!["a".into(), "Écolé".into()],
                vec!["bbbb".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID    LABEL\na     Écolé\nbbbb  x\n");
    }
}
