//! The D-Bus contract of postecole, shared by the daemon, `mailctl` and any Rust client.
//!
//! The checked-in `org.postecole.Mail1.xml` is the same contract in the form other languages
//! read; the integration tests fail when the running daemon drifts from it.
#![forbid(unsafe_code)]

mod accounts;
mod archive;
mod error;
mod outbox;

pub use accounts::{AccountInfo, AccountsProxy, AuditEntry, CallerInfo};
pub use archive::{ArchiveProxy, ArchivedInfo};
pub use error::Error;
pub use outbox::{
    Attachment, MAX_PAGE, MessageChanged, MessageFilter, MessageInfo, OutboxProxy, OutgoingMessage,
    RelayInfo, RelayStatus, RowAttachment, TemplateInfo,
};

/// Well-known bus name the daemon owns.
pub const BUS_NAME: &str = "org.postecole.Mail1";
/// The one object the daemon serves.
pub const OBJECT_PATH: &str = "/org/postecole/Mail1";
pub const ACCOUNTS_INTERFACE: &str = "org.postecole.Mail1.Accounts";
pub const OUTBOX_INTERFACE: &str = "org.postecole.Mail1.Outbox";
pub const ARCHIVE_INTERFACE: &str = "org.postecole.Mail1.Archive";

/// Prefix of every error the daemon returns.
pub const ERROR_PREFIX: &str = "org.postecole.Mail1.Error";

/// Account kinds, as spelled on the bus and in `--json` output.
pub const KIND_ESTABLISHMENT: &str = "establishment";
pub const KIND_PERSONAL: &str = "personal";

/// Account states, as spelled on the bus and in `--json` output.
pub const STATE_AWAITING_CODE: &str = "awaiting-code";
pub const STATE_AWAITING_SECRET: &str = "awaiting-secret";
pub const STATE_ACTIVE: &str = "active";

/// Message states, as spelled on the bus and in `--json` output.
pub const MSG_QUEUED: &str = "queued";
pub const MSG_SENDING: &str = "sending";
pub const MSG_DEFERRED: &str = "deferred";
pub const MSG_HELD: &str = "held";
pub const MSG_DELIVERED: &str = "delivered";
pub const MSG_FAILED: &str = "failed";
pub const MSG_CANCELLED: &str = "cancelled";
