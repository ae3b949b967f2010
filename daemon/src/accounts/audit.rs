//! The audit log: who (Unix user) did what to which account, when, and how it ended. Never an
//! answer, a code or a key. Kept in the store, read by administrators with `mailctl audit`.

use crate::authz::Caller;
use crate::model::AuditEntry;
use crate::store::Store;

/// Appends an entry; a failure to write is logged, never hidden from the journal.
pub fn record(
    store: &Store,
    now: u64,
    caller: &Caller,
    action: &str,
    account: &str,
    outcome: &str,
) {
    let entry = AuditEntry {
        time: now,
        uid: caller.uid,
        user: caller.name.clone(),
        action: action.to_owned(),
        account: account.to_owned(),
        outcome: outcome.to_owned(),
    };
    tracing::info!(target: "postecoled::audit", uid = caller.uid, action, account, outcome, "audit");
    if let Err(e) = store.append_audit(&entry) {
        tracing::error!(error = %e, "audit entry not written");
    }
}
