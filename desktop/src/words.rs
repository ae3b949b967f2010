//! The words the window uses for what the daemon spells in English on the bus.

use postecole_dbus as api;

use crate::i18n::tr;

pub fn kind(kind: &str) -> String {
    match kind {
        api::KIND_ESTABLISHMENT => tr("Establishment account"),
        api::KIND_PERSONAL => tr("Personal account"),
        other => other.to_owned(),
    }
}

pub fn account_state(state: &str) -> String {
    match state {
        api::STATE_AWAITING_CODE => tr("Waiting for the code"),
        api::STATE_AWAITING_SECRET => tr("Waiting for the secret question"),
        api::STATE_ACTIVE => tr("Ready to send"),
        other => other.to_owned(),
    }
}

pub fn message_state(state: &str) -> String {
    match state {
        api::MSG_QUEUED => tr("Waiting to be sent"),
        api::MSG_SENDING => tr("Being sent"),
        api::MSG_DEFERRED => tr("Will be tried again"),
        api::MSG_HELD => tr("Held"),
        api::MSG_DELIVERED => tr("Delivered"),
        api::MSG_FAILED => tr("Failed"),
        api::MSG_CANCELLED => tr("Cancelled"),
        other => other.to_owned(),
    }
}

/// "25/11/2026 14:05" in local time, from seconds since the epoch.
pub fn time(secs: u64) -> String {
    gtk::glib::DateTime::from_unix_local(secs as i64)
        .and_then(|t| t.format("%d/%m/%Y %H:%M"))
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// People and groups of this PC that may be named as staff: `(name on the bus, shown name)`.
/// Accounts of people (uid 1000 and up) and groups that are not someone's private group.
pub fn staff_candidates() -> Vec<(String, String)> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    candidates_from(&passwd, &group)
}

fn candidates_from(passwd: &str, group: &str) -> Vec<(String, String)> {
    let mut users = Vec::new();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let (Some(name), Some(uid), Some(gecos)) = (f.first(), f.get(2), f.get(4)) else {
            continue;
        };
        let Ok(uid) = uid.parse::<u32>() else {
            continue;
        };
        if !(1000..65534).contains(&uid) {
            continue;
        }
        let full = gecos.split(',').next().unwrap_or_default().trim();
        let shown = if full.is_empty() {
            (*name).to_owned()
        } else {
            format!("{full} ({name})")
        };
        users.push(((*name).to_owned(), shown));
    }
    let mut groups = Vec::new();
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let (Some(name), Some(gid)) = (f.first(), f.get(2)) else {
            continue;
        };
        let Ok(gid) = gid.parse::<u32>() else {
            continue;
        };
        if !(1000..65534).contains(&gid) || users.iter().any(|(u, _)| u == name) {
            continue;
        }
        groups.push((
            format!("@{name}"),
            crate::i18n::trf("Group {} (all its members)", &[name]),
        ));
    }
    users.sort();
    groups.sort();
    users.extend(groups);
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_and_shared_groups_only() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      marie:x:1000:1000:Marie Curie,,,:/home/marie:/bin/bash\n\
                      paul:x:1001:1001::/home/paul:/bin/bash\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
        let group = "root:x:0:\nmarie:x:1000:\npaul:x:1001:\nenseignants:x:1002:marie,paul\n";
        let c = candidates_from(passwd, group);
        let names: Vec<&str> = c.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["marie", "paul", "@enseignants"]);
        assert_eq!(c[0].1, "Marie Curie (marie)");
        assert!(c[2].1.contains("enseignants"));
    }
}
