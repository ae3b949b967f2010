//! Human tables and `--json` for what the daemon returns.

use postecole_dbus::AccountInfo;
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
