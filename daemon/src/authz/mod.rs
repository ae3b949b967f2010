//! Who is calling and what they may do with an account.
//!
//! The caller is always the Unix user the bus reports for the sending connection; nothing a
//! client writes in a message can change it. Each rule is a small pure function so that the
//! policy reads in one place, the way accountsservice decides "own account or administrator".

mod authority;

use nix::unistd::{Group, Uid, User};

pub use authority::Authority;

use crate::model::{Account, Kind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    /// Unix user name; staff lists are written with names, as administrators think of them.
    pub name: String,
    pub admin: bool,
    /// The names of the user's Unix groups, as the user database says at this call: staff
    /// lists may name a whole group (`@enseignants`).
    pub groups: Vec<String>,
    /// May send with establishment accounts at all (polkit mode can say no; the staff
    /// list still applies).
    pub send_establishment: bool,
}

/// polkit actions, as declared in systemd/org.postecole.Mail1.policy.
pub const ACTION_ADMINISTER: &str = "org.postecole.mail1.administer";
pub const ACTION_SEND_ESTABLISHMENT: &str = "org.postecole.mail1.send-establishment";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no Unix user has uid {0}")]
    UnknownUid(u32),
    #[error("cannot read the user database: {0}")]
    Lookup(String),
}

impl Caller {
    /// Resolves a uid reported by the bus against the system's user and group databases.
    pub fn from_uid(uid: u32, admin_group: &str) -> Result<Caller, Error> {
        let user = User::from_uid(Uid::from_raw(uid))
            .map_err(|e| Error::Lookup(e.to_string()))?
            .ok_or(Error::UnknownUid(uid))?;
        let groups = groups_of(&user)?;
        let admin = uid == 0 || groups.iter().any(|g| g == admin_group);
        Ok(Caller {
            uid,
            name: user.name,
            admin,
            groups,
            send_establishment: true,
        })
    }
}

/// The most groups read for one caller; a user in more is not a case this PC meets.
const MAX_GROUPS: usize = 256;

fn groups_of(user: &User) -> Result<Vec<String>, Error> {
    // Supplementary groups may come from NSS sources that do not list members in the group
    // entry (LDAP, SSSD); getgrouplist asks them all, the primary group included.
    let name =
        std::ffi::CString::new(user.name.as_bytes()).map_err(|e| Error::Lookup(e.to_string()))?;
    let gids = nix::unistd::getgrouplist(&name, user.gid).unwrap_or_else(|_| vec![user.gid]);
    let mut names = Vec::new();
    for gid in gids.into_iter().take(MAX_GROUPS) {
        if let Some(group) = Group::from_gid(gid).map_err(|e| Error::Lookup(e.to_string()))? {
            names.push(group.name);
        }
    }
    Ok(names)
}

/// A staff entry naming a whole Unix group: `@name`.
pub fn staff_group(entry: &str) -> Option<&str> {
    entry.strip_prefix('@')
}

/// Whether a Unix group of this name exists on this PC.
pub fn group_exists(name: &str) -> Result<bool, Error> {
    Ok(Group::from_name(name)
        .map_err(|e| Error::Lookup(e.to_string()))?
        .is_some())
}

/// The uid of a Unix user name, if such a user exists on this PC.
pub fn uid_of(name: &str) -> Result<Option<u32>, Error> {
    Ok(User::from_name(name)
        .map_err(|e| Error::Lookup(e.to_string()))?
        .map(|u| u.uid.as_raw()))
}

/// The user name for a uid, or the number itself when the user has gone.
pub fn name_of(uid: u32) -> String {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

/// Sees the account in listings and may ask for it by id. A personal account is its owner's
/// alone; an establishment account is seen by administrators and by its staff.
pub fn can_see(caller: &Caller, account: &Account) -> bool {
    match account.kind {
        Kind::Personal => caller.uid == account.owner,
        Kind::Establishment => caller.admin || is_staff(caller, account),
    }
}

/// Named on the account's staff, by name or through one of their groups.
fn is_staff(caller: &Caller, account: &Account) -> bool {
    account.staff.iter().any(|s| match staff_group(s) {
        Some(group) => caller.groups.iter().any(|g| g == group),
        None => s == &caller.name,
    })
}

/// Walks the account through its set-up steps, deletes it.
pub fn can_manage(caller: &Caller, account: &Account) -> bool {
    match account.kind {
        Kind::Personal => caller.uid == account.owner,
        Kind::Establishment => caller.admin,
    }
}

/// Creates an account of this kind: establishment addresses are the administrators' to add.
pub fn can_create(caller: &Caller, kind: Kind) -> bool {
    match kind {
        Kind::Personal => true,
        Kind::Establishment => caller.admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::State;

    fn caller(uid: u32, name: &str, admin: bool) -> Caller {
        Caller {
            uid,
            name: name.into(),
            admin,
            groups: vec!["enseignants".into()],
            send_establishment: true,
        }
    }

    fn account(kind: Kind, owner: u32, staff: &[&str]) -> Account {
        Account {
            id: "abcd2345".into(),
            kind,
            label: "Secrétariat".into(),
            address: "secretariat@ecole.fr".into(),
            state: State::Active,
            owner,
            staff: staff.iter().map(|s| s.to_string()).collect(),
            created: 0,
            code: None,
            secret: None,
            keys: None,
            unlock_failures: 0,
            locked_until: 0,
            lock_periods: 0,
        }
    }

    #[test]
    fn personal_accounts_belong_to_their_owner_alone() {
        let a = account(Kind::Personal, 1001, &[]);
        let owner = caller(1001, "alice", false);
        let other = caller(1002, "bob", false);
        let root = caller(0, "root", true);
        assert!(can_see(&owner, &a) && can_manage(&owner, &a));
        assert!(!can_see(&other, &a) && !can_manage(&other, &a));
        assert!(!can_see(&root, &a), "administrators do not see it");
    }

    #[test]
    fn establishment_accounts_are_administered_and_used_by_staff() {
        let a = account(Kind::Establishment, 0, &["alice"]);
        let staff = caller(1001, "alice", false);
        let other = caller(1002, "bob", false);
        let admin = caller(1003, "carol", true);
        assert!(can_see(&staff, &a) && !can_manage(&staff, &a));
        assert!(!can_see(&other, &a) && !can_manage(&other, &a));
        assert!(can_see(&admin, &a) && can_manage(&admin, &a));
        assert!(
            !can_create(&staff, Kind::Establishment) && can_create(&admin, Kind::Establishment)
        );
        assert!(can_create(&other, Kind::Personal));
    }

    #[test]
    fn a_group_on_the_staff_names_each_of_its_members() {
        let a = account(Kind::Establishment, 0, &["@enseignants"]);
        let teacher = caller(1001, "alice", false);
        let mut other = caller(1002, "bob", false);
        other.groups = vec!["parents".into()];
        assert!(can_see(&teacher, &a) && !can_manage(&teacher, &a));
        assert!(!can_see(&other, &a));
        // A user named like the group is not its members.
        let named = account(Kind::Establishment, 0, &["enseignants"]);
        assert!(!can_see(&teacher, &named));
    }

    #[test]
    fn root_is_admin_and_names_resolve() {
        let root = Caller::from_uid(0, "no-such-group-here").unwrap();
        assert!(root.admin);
        assert_eq!(root.name, "root");
        assert!(root.groups.iter().any(|g| g == "root"), "{:?}", root.groups);
        assert!(Caller::from_uid(0, "root").unwrap().admin);
        assert!(group_exists("root").unwrap() && !group_exists("no-such-group-here").unwrap());
        assert_eq!(uid_of("root").unwrap(), Some(0));
        assert_eq!(uid_of("no-such-user-here").unwrap(), None);
        assert!(matches!(
            Caller::from_uid(4_000_000_000, "x"),
            Err(Error::UnknownUid(_))
        ));
    }
}
