//! The records of past messages: found without reading them all when the caller names them,
//! paged, and pruned `retention_secs` after submission so that a year of a school's mail does
//! not make every listing slower. A pruned message that was sealed keeps its place in the
//! archive (`Store::prune_messages`).

use std::sync::Arc;
use std::time::Duration;

use super::{Queue, Result};
use crate::model::{MsgState, Record};

/// Which records a listing wants; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// These messages only: looked up one by one, never by a scan.
    pub ids: Option<Vec<String>>,
    pub states: Vec<MsgState>,
    pub account: Option<String>,
    /// Submitted at or after (seconds since the epoch).
    pub since: u64,
    /// A piece of a visible recipient's address, any case. Recipients are known while the
    /// message waits or has failed; the archive keeps those of delivered mail.
    pub to: Option<String>,
    /// Only records from this place in submission order on (the `next` of the previous page).
    pub after: u64,
    /// At most this many (capped at `MAX_PAGE`).
    pub limit: usize,
}

/// A page's most records: the reply of one call stays small whatever the history.
pub use postecole_dbus::MAX_PAGE;

/// One page, oldest first, and where the next one starts (0: this was the last; sequence
/// numbers start at 0, so a page's `next` is one past its last record's).
pub struct Page {
    pub records: Vec<Record>,
    pub next: u64,
}

impl Filter {
    fn matches(&self, r: &Record) -> bool {
        (self.states.is_empty() || self.states.contains(&r.state))
            && self.account.as_ref().is_none_or(|a| &r.account == a)
            && r.created >= self.since
            && r.seq >= self.after
    }

    fn matches_recipients(&self, r: &Record) -> bool {
        self.to.as_ref().is_none_or(|piece| {
            let piece = piece.to_lowercase();
            r.to.iter().any(|a| a.to_lowercase().contains(&piece))
        })
    }
}

impl Queue {
    /// The records `filter` wants among those `visible` lets the caller see, oldest first.
    pub fn find(&self, filter: &Filter, visible: impl Fn(&Record) -> bool) -> Result<Page> {
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let mut found: Vec<Record> = match &filter.ids {
            Some(ids) => {
                let mut out = Vec::with_capacity(ids.len().min(MAX_PAGE));
                for id in ids.iter().take(MAX_PAGE) {
                    if let Some(r) = self.store.message(id)? {
                        out.push(r);
                    }
                }
                out
            }
            None => self.store.messages()?,
        };
        found.retain(|r| filter.matches(r) && visible(r));
        found.sort_by_key(|r| r.seq);
        found.dedup_by_key(|r| r.seq);
        // Recipients come from the spool, one read per waiting message: only for what may
        // be shown, and page by page.
        let mut records = Vec::with_capacity(limit.min(found.len()));
        let mut last = 0;
        let mut more = false;
        for mut r in found {
            if records.len() == limit {
                more = true;
                break;
            }
            last = r.seq;
            self.add_recipients(&mut r);
            if filter.matches_recipients(&r) {
                records.push(r);
            }
        }
        Ok(Page {
            records,
            next: if more { last + 1 } else { 0 },
        })
    }

    /// Removes the records of delivered, failed and cancelled messages submitted more than
    /// `retention_secs` ago whose content has left the spool; returns how many.
    pub fn prune(&self) -> Result<usize> {
        let horizon = self.now().saturating_sub(self.policy.retention_secs);
        let prunable = |r: &Record| {
            matches!(
                r.state,
                MsgState::Delivered | MsgState::Failed | MsgState::Cancelled
            ) && r.slot.is_none()
                && r.created < horizon
        };
        // The scan reads the whole history: not under the lock that `take_due` and every
        // transition wait for, which the delivery loop takes on an async worker.
        let old: Vec<String> = self
            .store
            .messages()?
            .into_iter()
            .filter(prunable)
            .map(|r| r.id)
            .collect();
        let mut pruned = 0;
        for ids in old.chunks(1000) {
            let _guard = self.transitions.lock().unwrap();
            // Read again under the lock: a failed message may have been cancelled meanwhile.
            let mut records = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(r) = self.store.message(id)?.filter(prunable) {
                    records.push(r);
                }
            }
            self.store.prune_messages(&records)?;
            pruned += records.len();
        }
        Ok(pruned)
    }

    /// Prunes now and then (never returns).
    pub async fn prune_now_and_then(self: Arc<Self>) {
        let every = Duration::from_secs((self.policy.retention_secs / 4).clamp(1, 3600));
        self.now_and_then(
            every,
            Queue::prune,
            "old message records pruned",
            "cannot prune old message records now",
        )
        .await
    }
}
