//! The plain data the daemon keeps: accounts, message records, audit entries. No behaviour
//! beyond naming states; every other module may use these, and these use no other module.
//! The key ring's cryptography is in `archive::keys`; the rules on who may see what, in `authz`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Establishment,
    Personal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    AwaitingCode,
    AwaitingSecret,
    Active,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Establishment => postecole_dbus::KIND_ESTABLISHMENT,
            Kind::Personal => postecole_dbus::KIND_PERSONAL,
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            postecole_dbus::KIND_ESTABLISHMENT => Some(Kind::Establishment),
            postecole_dbus::KIND_PERSONAL => Some(Kind::Personal),
            _ => None,
        }
    }
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::AwaitingCode => postecole_dbus::STATE_AWAITING_CODE,
            State::AwaitingSecret => postecole_dbus::STATE_AWAITING_SECRET,
            State::Active => postecole_dbus::STATE_ACTIVE,
        }
    }
}

/// The code waiting to be typed back; only its hash is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingCode {
    pub hash: String,
    pub sent: u64,
    pub expires: u64,
    pub wrong: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Secret {
    /// Kept in clear: it is shown to whoever must answer it.
    pub question: String,
    /// Argon2id PHC string of the normalised answer.
    pub answer_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub kind: Kind,
    pub label: String,
    pub address: String,
    pub state: State,
    /// uid of the owner (personal) or of the administrator who set it up (establishment).
    pub owner: u32,
    /// Unix user names allowed to send with an establishment account.
    pub staff: Vec<String>,
    pub created: u64,
    pub code: Option<PendingCode>,
    pub secret: Option<Secret>,
    /// The archive keys, once the secret is set.
    #[serde(default)]
    pub keys: Option<KeyRing>,
    /// Answers or recovery files tried since the last right one or the last lock, counted
    /// before each is checked; survives restarts.
    #[serde(default)]
    pub unlock_failures: u32,
    #[serde(default)]
    pub locked_until: u64,
    /// Locks in a row: each one lasts twice the one before.
    #[serde(default)]
    pub lock_periods: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MsgState {
    Queued,
    Sending,
    Deferred,
    Held,
    Delivered,
    Failed,
    Cancelled,
}

impl MsgState {
    pub fn parse(name: &str) -> Option<MsgState> {
        use MsgState::*;
        [
            Queued, Sending, Deferred, Held, Delivered, Failed, Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        use postecole_dbus as api;
        match self {
            MsgState::Queued => api::MSG_QUEUED,
            MsgState::Sending => api::MSG_SENDING,
            MsgState::Deferred => api::MSG_DEFERRED,
            MsgState::Held => api::MSG_HELD,
            MsgState::Delivered => api::MSG_DELIVERED,
            MsgState::Failed => api::MSG_FAILED,
            MsgState::Cancelled => api::MSG_CANCELLED,
        }
    }
}

/// The status of one message; never its subject or body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// Submission order: messages due at the same time leave first in, first out.
    pub seq: u64,
    pub account: String,
    /// uid of the Unix user who submitted it (or whose action triggered a notice).
    pub submitter: u32,
    /// A mail postecole wrote itself (code, confirmation): never archived, and its content
    /// (a code, a recovery key) is not kept once it has been delivered or has failed.
    pub notice: bool,
    /// The account's archive key; the message is sealed to it once delivered.
    #[serde(default)]
    pub archive_to: Option<String>,
    pub message_id: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    /// Visible recipients (To and Cc), for listings.
    pub to: Vec<String>,
    /// The subject, for listings: like the recipients, only in the spool while the message
    /// may still be sent, never in the store.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    pub size: u64,
    pub created: u64,
    pub state: MsgState,
    pub attempts: u32,
    pub next_attempt: u64,
    pub last_reply: String,
    /// Where its bytes are, while it may still be sent; None once delivered or cancelled, and
    /// for a failed notice (its code or key is not kept).
    #[serde(default)]
    pub slot: Option<Slot>,
    /// Where its sealed copy is in the account's archive, once delivered (or once its clear
    /// text has outlived `max_lifetime_secs` after failing).
    #[serde(default)]
    pub archived: Option<Slot>,
    /// When it failed (clock seconds), 0 while it has not: its clear text is kept for `retry`
    /// until `max_lifetime_secs` after this, then sealed like delivered mail.
    #[serde(default)]
    pub failed_at: u64,
    /// The recipients still owed the message, as positions in its spool entry's list, once
    /// the relay accepted or refused some for good; `None`: all of them. Positions, so that
    /// the store holds no address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owed: Option<Vec<u32>>,
    /// Recipients the relay accepted in earlier attempts: the message is delivered, not
    /// failed, when the others are refused for good.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub accepted: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What stays of a message in the archive once its record is pruned (`queue.retention_secs`
/// after it was sent): where its sealed copy is, and what the relay said. Never its recipients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sealed {
    pub id: String,
    pub account: String,
    pub created: u64,
    pub sender: String,
    pub state: MsgState,
    pub last_reply: String,
    pub slot: Slot,
}

/// Where something is in a segment or log file: for the spool, a whole entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Slot {
    pub segment: String,
    pub offset: u64,
    pub len: u64,
}

/// The account's archive keys as stored: public key in clear, private key wrapped twice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRing {
    /// age recipient (`age1…`).
    pub recipient: String,
    pub(crate) answer_salt: String,
    pub(crate) answer_nonce: String,
    pub(crate) answer_wrapped: String,
    pub(crate) recovery_nonce: String,
    pub(crate) recovery_wrapped: String,
}

/// One line of the audit log: who (Unix user) did what to which account, when, and how it
/// ended. Never an answer, a code or a key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub time: u64,
    pub uid: u32,
    pub user: String,
    pub action: String,
    pub account: String,
    /// `ok`, `refused`, `locked`, …
    pub outcome: String,
    /// For an entry about a personal account, its owner's uid: the entry's account id is theirs
    /// (and root's) to read, not other administrators'.
    #[serde(default)]
    pub private_to: Option<u32>,
}
