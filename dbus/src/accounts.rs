use zbus::{DeserializeDict, SerializeDict, Type, proxy};

use crate::Error;

/// One sender account as the bus shows it (`a{sv}`); keys are the `--json` field names.
#[derive(SerializeDict, DeserializeDict, Type, Debug, Clone, Default, PartialEq)]
#[zbus(signature = "a{sv}")]
pub struct AccountInfo {
    pub id: String,
    /// `establishment` or `personal`.
    pub kind: String,
    pub label: String,
    pub address: String,
    /// `awaiting-code`, `awaiting-secret` or `active`.
    pub state: String,
    /// Unix user name of the owner (personal) or of the administrator who created it.
    pub owner: String,
    /// Who may send with an establishment account: Unix user names, and `@group` for every
    /// member of a Unix group (as the user database says when they send).
    pub staff: Vec<String>,
    /// The secret question, once set (the answer never leaves the daemon).
    pub question: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
}

/// One line of the audit log (`a{sv}`).
#[derive(SerializeDict, DeserializeDict, Type, Debug, Clone, Default, PartialEq)]
#[zbus(signature = "a{sv}")]
pub struct AuditEntry {
    /// Seconds since the Unix epoch.
    pub time: u64,
    pub uid: u32,
    pub user: String,
    /// create, verify, secret-set, staff-add, staff-remove, convert, delete, recover,
    /// secret-change, archive-list, archive-read, archive-export, lock.
    pub action: String,
    pub account: String,
    /// ok, refused, locked, or a detail of the action.
    pub outcome: String,
}

/// Who the daemon takes the caller to be (`a{sv}`), so that a client offers only what they
/// may do.
#[derive(SerializeDict, DeserializeDict, Type, Debug, Clone, Default, PartialEq)]
#[zbus(signature = "a{sv}")]
pub struct CallerInfo {
    /// The Unix user name behind the calling connection.
    pub user: String,
    /// An administrator without having to authenticate again (root, `admin_group`, or polkit's
    /// `administer` action granted without a prompt).
    pub admin: bool,
}

/// `org.postecole.Mail1.Accounts`: setting up and administering sender addresses.
#[proxy(
    interface = "org.postecole.Mail1.Accounts",
    default_service = "org.postecole.Mail1",
    default_path = "/org/postecole/Mail1"
)]
pub trait Accounts {
    /// Starts setting up an address; e-mails a code to it and returns the new account id.
    fn create_account(&self, kind: &str, label: &str, address: &str) -> Result<String, Error>;
    /// Sends a fresh code (at most once a minute); the previous one stops working.
    fn resend_code(&self, id: &str) -> Result<(), Error>;
    /// Proves the address is ours with the code it received.
    fn confirm_code(&self, id: &str, code: &str) -> Result<(), Error>;
    /// Protects the account with a secret question and answer; the account becomes active.
    fn set_secret(&self, id: &str, question: &str, answer: &str) -> Result<(), Error>;
    /// Allows a Unix user, or every member of a Unix group written `@group`, to send with an
    /// establishment account.
    fn add_staff(&self, id: &str, user: &str) -> Result<(), Error>;
    /// Withdraws a Unix user or `@group` from an establishment account's staff.
    fn remove_staff(&self, id: &str, user: &str) -> Result<(), Error>;
    /// The accounts the caller may see.
    fn list_accounts(&self) -> Result<Vec<AccountInfo>, Error>;
    fn get_account(&self, id: &str) -> Result<AccountInfo, Error>;
    /// Deletes the account; its archive of sent mail stays, readable with the recovery file.
    fn delete_account(&self, id: &str) -> Result<(), Error>;
    /// Deletes the account and its archive of sent mail: what was sent is then unreadable.
    fn delete_account_and_archive(&self, id: &str) -> Result<(), Error>;
    /// Turns an account into the other kind (`establishment` or `personal`).
    fn convert_account(&self, id: &str, kind: &str) -> Result<(), Error>;
    /// Sets the caller's default sending account; an empty id clears it.
    fn set_default_account(&self, id: &str) -> Result<(), Error>;
    /// The caller's default sending account, or an empty string.
    fn get_default_account(&self) -> Result<String, Error>;
    /// The newest `limit` audit entries, oldest first (administrators).
    fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, Error>;

    /// Who the caller is and whether they administer this PC's mail.
    fn who_am_i(&self) -> Result<CallerInfo, Error>;

    /// An account was created, changed step, changed staff or kind, or was deleted.
    #[zbus(signal)]
    fn account_changed(&self, id: &str, change: &str) -> zbus::Result<()>;
}
