//! The sender accounts: setting an address up, administering it, its archive's keys, and the
//! e-mails postecole writes about them. Plain async Rust; the D-Bus layer in `bus` is a thin
//! skin over it. Who may do what is decided by `authz`; the records are `model::Account`.

mod admin;
mod audit;
mod limits;
pub mod notices;
mod setup;
mod vault;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, broadcast};

use crate::archive::{self, Archive, Unlocked};
use crate::authz::{self, Caller};
use crate::clock::Clock;
use crate::config::Config;
use crate::model::{Account, AuditEntry, KeyRing, Kind, MsgState, PendingCode, Secret, State};
use crate::queue::{self, Queue};
use crate::store::Store;
use crate::{secret, validate};
use notices::CODE_LIFETIME_MINUTES;

pub use vault::Unlock;

pub const CODE_LIFETIME_SECS: u64 = CODE_LIFETIME_MINUTES * 60;
pub use crate::error::{Error, Result};

/// What changed, as carried by the `AccountChanged` signal.
pub mod change {
    pub const CREATED: &str = "created";
    pub const CODE_SENT: &str = "code-sent";
    pub const VERIFIED: &str = "verified";
    pub const ACTIVATED: &str = "activated";
    pub const STAFF: &str = "staff";
    pub const CONVERTED: &str = "converted";
    pub const DELETED: &str = "deleted";
}

/// A change to an account, broadcast once it is stored, whoever made it: the id and what
/// happened (one of `change`), as the `AccountChanged` signal carries it.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub change: &'static str,
    /// For a personal account, its owner's uid: the id is theirs to know, so the change is
    /// told to their connections alone, never broadcast.
    pub private_to: Option<u32>,
}

pub struct Accounts {
    config: Arc<Config>,
    store: Store,
    queue: Arc<Queue>,
    archive: Archive,
    relay_name: String,
    host: String,
    clock: Clock,
    /// Serialises read-modify-write of records, so that two guesses of a code cannot both
    /// read the same count of wrong tries.
    write: Mutex<()>,
    events: broadcast::Sender<Event>,
}

impl Accounts {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        queue: Arc<Queue>,
        archive: Archive,
        relay_name: String,
        host: String,
        clock: Clock,
    ) -> Self {
        Accounts {
            config,
            store,
            queue,
            archive,
            relay_name,
            host,
            clock,
            write: Mutex::new(()),
            events: broadcast::channel(256).0,
        }
    }

    /// The accounts' changes from now on, for the bus to turn into signals.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Tells the listeners; having none is no error.
    fn changed(&self, id: &str, change: &'static str) {
        let private_to = match self.store.account(id) {
            Ok(Some(a)) => audit::private_to(&a),
            _ => None,
        };
        self.tell(id, change, private_to);
    }

    /// As `changed`, for an account no longer in the store.
    fn changed_about(&self, account: &Account, change: &'static str) {
        self.tell(&account.id, change, audit::private_to(account));
    }

    fn tell(&self, id: &str, change: &'static str, private_to: Option<u32>) {
        let _ = self.events.send(Event {
            id: id.to_owned(),
            change,
            private_to,
        });
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    fn visible(&self, caller: &Caller, id: &str) -> Result<Account> {
        match self.store.account(id)? {
            Some(a) if authz::can_see(caller, &a) => Ok(a),
            _ => Err(not_found(id)),
        }
    }

    fn managed(&self, caller: &Caller, id: &str) -> Result<Account> {
        let account = self.visible(caller, id)?;
        if authz::can_manage(caller, &account) {
            Ok(account)
        } else {
            Err(self.admin_only("set up or delete an establishment address"))
        }
    }

    fn admin_only(&self, what: &str) -> Error {
        Error::NotAuthorized(format!(
            "only an administrator (root or a member of the group `{}`) can {what}",
            self.config.admin_group
        ))
    }

    fn audit(&self, caller: &Caller, action: &str, account: &str, outcome: &str) {
        let private_to = match self.store.account(account) {
            Ok(Some(a)) => audit::private_to(&a),
            _ => None,
        };
        audit::record(
            &self.store,
            self.now(),
            caller,
            action,
            account,
            private_to,
            outcome,
        );
    }

    /// As `audit`, for an account at hand (one being created or deleted is not in the store).
    fn audit_about(&self, caller: &Caller, action: &str, account: &Account, outcome: &str) {
        audit::record(
            &self.store,
            self.now(),
            caller,
            action,
            &account.id,
            audit::private_to(account),
            outcome,
        );
    }
}

/// The kind named on the bus, or why it is refused.
fn parse_kind(s: &str) -> Result<Kind> {
    Kind::parse(s).ok_or_else(|| {
        Error::InvalidInput(format!(
            "unknown account kind `{s}`: use `establishment` or `personal`"
        ))
    })
}

fn new_id() -> String {
    crate::secret::random_id(8)
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!(
        "no account `{id}` that you may see (see `mailctl account list`)"
    ))
}

async fn hash_blocking(uid: u32, secret: String) -> Result<String> {
    Ok(crate::blocking::ARGON2
        .run(uid, move || secret::hash(&secret))
        .await?)
}

#[cfg(test)]
mod tests;
