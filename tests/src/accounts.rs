//! Reading accounts and the audit log as a given Unix user sees them, for tests about who may
//! see what.

use crate::{Bus, mailctl};

/// The ids `mailctl account list` shows to `user`, sorted.
pub fn account_ids(bus: &Bus, user: Option<&str>) -> Vec<String> {
    let list: serde_json::Value =
        serde_json::from_str(&mailctl(bus, user, &["account", "list", "--json"], None).out())
            .unwrap();
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// The audit log as `user` (an administrator) reads it with `mailctl audit --json`.
pub fn audit_json(bus: &Bus, user: Option<&str>) -> Vec<serde_json::Value> {
    let out = mailctl(bus, user, &["audit", "--limit", "1000", "--json"], None).out();
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A code of the right shape that is not `code`.
pub fn wrong_code(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}
