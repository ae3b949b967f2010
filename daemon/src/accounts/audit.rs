//! The audit log: who (Unix user) did what to which account, when, and how it ended. Never an
//! answer, a code or a key. Kept in the store, read by administrators with `mailctl audit`.

use crate::authz::Caller;
use crate::model::{Account, AuditEntry, Kind};
use crate::store::Store;

/// Appends an entry; a failure to write is logged, never hidden from the journal.
pub fn record(
    store: &Store,
    now: u64,
    caller: &Caller,
    action: &str,
    account: &str,
    private_to: Option<u32>,
    outcome: &str,
) {
    let entry = AuditEntry {
        time: now,
        uid: caller.uid,
        user: caller.name.clone(),
        action: action.to_owned(),
        account: account.to_owned(),
        outcome: outcome.to_owned(),
        private_to,
    };
    tracing::info!(target: "postecoled::audit", uid = caller.uid, action, account, outcome, "audit");
    if let Err(e) = store.append_audit(&entry) {
        tracing::error!(error = %e, "audit entry not written");
    }
}

/// The owner of a personal account, whose id only they (and root) may read in the log.
pub fn private_to(account: &Account) -> Option<u32> {
    (account.kind == Kind::Personal).then_some(account.owner)
}

/// What the log shows to `caller` (an administrator): a personal account's id is its owner's
/// and root's to read, so other administrators see who did what, not on which account.
pub fn shown(mut entry: AuditEntry, caller: &Caller) -> AuditEntry {
    if let Some(owner) = entry.private_to
        && caller.uid != 0
        && caller.uid != owner
    {
        entry.account = HIDDEN.into();
    }
    entry
}

/// Stands for a personal account's id in the log shown to other administrators.
pub const HIDDEN: &str = "(personal)";
