//! The sender-account lifecycle: create → code e-mailed → code typed back → secret set →
//! staff named. Plain async Rust; the D-Bus layer in `bus` is a thin skin over it.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::archive::{self, KeyRing, Unlocked};
use crate::audit;
use crate::authz::{self, Caller};
use crate::clock::Clock;
use crate::config::Config;
use crate::notices::{self, CODE_LIFETIME_MINUTES};
use crate::queue::{MsgState, Queue};
use crate::spool::Slot;
use crate::store::Store;
use crate::{outbox, secret, validate};

pub const CODE_LIFETIME_SECS: u64 = CODE_LIFETIME_MINUTES * 60;
pub const MAX_WRONG_CODES: u32 = 5;
pub const RESEND_INTERVAL_SECS: u64 = 60;

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

    fn parse(s: &str) -> Result<Kind> {
        match s {
            postecole_dbus::KIND_ESTABLISHMENT => Ok(Kind::Establishment),
            postecole_dbus::KIND_PERSONAL => Ok(Kind::Personal),
            other => Err(Error::InvalidInput(format!(
                "unknown account kind `{other}`: use `establishment` or `personal`"
            ))),
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
    /// Wrong answers or recovery files in a row; survives restarts.
    #[serde(default)]
    pub unlock_failures: u32,
    #[serde(default)]
    pub locked_until: u64,
}

/// One message from the archive, in clear for the length of a call.
pub struct Archived {
    pub id: String,
    pub created: u64,
    pub sender: String,
    pub bytes: Vec<u8>,
}

/// What opens an account's archive key.
pub enum Unlock {
    Answer(String),
    /// The content of `cleRecuperation.crbee`.
    RecoveryFile(String),
}

pub const MAX_UNLOCK_FAILURES: u32 = 5;
const FIRST_LOCK_SECS: u64 = 60;
const MAX_LOCK_SECS: u64 = 86_400;

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

pub struct Accounts {
    config: Arc<Config>,
    store: Store,
    queue: Arc<Queue>,
    relay_name: String,
    host: String,
    clock: Clock,
    /// Serialises read-modify-write of records, so that two guesses of a code cannot both
    /// read the same count of wrong tries.
    write: Mutex<()>,
}

impl Accounts {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        queue: Arc<Queue>,
        relay_name: String,
        host: String,
        clock: Clock,
    ) -> Self {
        Accounts {
            config,
            store,
            queue,
            relay_name,
            host,
            clock,
            write: Mutex::new(()),
        }
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    pub async fn create(
        &self,
        caller: &Caller,
        kind: &str,
        label: &str,
        address: &str,
    ) -> Result<Account> {
        let kind = Kind::parse(kind)?;
        let label = validate::one_line("label", label, validate::MAX_LABEL_CHARS)
            .map_err(Error::InvalidInput)?;
        let address = validate::address(address).map_err(Error::InvalidInput)?;
        if !authz::can_create(caller, kind) {
            return Err(Error::NotAuthorized(format!(
                "only an administrator (root or a member of the group `{}`) can add an establishment address; \
                 ask one, or add it as a personal address",
                self.config.admin_group
            )));
        }
        if let Some(existing) = self.store.accounts()?.into_iter().find(|a| {
            a.kind == kind
                && a.address.eq_ignore_ascii_case(&address)
                && (kind == Kind::Establishment || a.owner == caller.uid)
        }) {
            return Err(Error::InvalidState(format!(
                "{address} is already set up as account {}; use `mailctl account resend {}` if the code was lost",
                existing.id, existing.id
            )));
        }
        let now = self.now();
        let code = secret::new_code();
        let mut account = Account {
            id: new_id(),
            kind,
            label,
            address,
            state: State::AwaitingCode,
            owner: caller.uid,
            staff: Vec::new(),
            created: now,
            keys: None,
            unlock_failures: 0,
            locked_until: 0,
            code: Some(PendingCode {
                hash: hash_blocking(code.clone()).await?,
                sent: now,
                expires: now + CODE_LIFETIME_SECS,
                wrong: 0,
            }),
            secret: None,
        };
        // Stored before the mail leaves, so the code is known by the time anybody can type it.
        while !self.store.insert_new_account(&account)? {
            account.id = new_id();
        }
        match self.send_code(&account, &code, caller.uid).await {
            CodeMail::Sent => {}
            CodeMail::Refused(reply) => {
                self.store.remove_account(&account.id)?;
                return Err(Error::RelayUnavailable(format!(
                    "the relay refused the code e-mail to {}: {reply}. Nothing was created.",
                    account.address
                )));
            }
            CodeMail::Deferred(reply) => {
                return Err(Error::RelayUnavailable(format!(
                    "account {id} was created but the code e-mail to {address} could not be sent yet \
                     through {relay}: {reply}. It will be sent again automatically \
                     (see `mailctl queue list`).",
                    id = account.id,
                    address = account.address,
                    relay = self.relay_name
                )));
            }
        }
        self.audit(caller, "create", &account.id, "ok");
        tracing::info!(account = %account.id, kind = kind.as_str(), uid = caller.uid, "account created, code sent");
        Ok(account)
    }

    pub async fn resend_code(&self, caller: &Caller, id: &str) -> Result<()> {
        let account = self.managed(caller, id)?;
        if account.state != State::AwaitingCode {
            return Err(already_verified(&account));
        }
        let now = self.now();
        if let Some(pending) = &account.code {
            let next = pending.sent + RESEND_INTERVAL_SECS;
            if now < next {
                return Err(Error::RateLimited(format!(
                    "a code was sent less than a minute ago; wait {} s before asking again",
                    next - now
                )));
            }
        }
        let code = secret::new_code();
        let hash = hash_blocking(code.clone()).await?;
        let account = {
            let _guard = self.write.lock().await;
            let mut account = self.managed(caller, id)?;
            if account.state != State::AwaitingCode {
                return Err(already_verified(&account));
            }
            account.code = Some(PendingCode {
                hash,
                sent: now,
                expires: now + CODE_LIFETIME_SECS,
                wrong: 0,
            });
            self.store.put_account(&account)?;
            account
        };
        match self.send_code(&account, &code, caller.uid).await {
            CodeMail::Sent => {}
            CodeMail::Refused(reply) | CodeMail::Deferred(reply) => {
                return Err(Error::RelayUnavailable(format!(
                    "the new code could not be e-mailed to {} through {}: {reply}",
                    account.address, self.relay_name
                )));
            }
        }
        tracing::info!(account = %id, uid = caller.uid, "new code sent");
        Ok(())
    }

    pub async fn confirm_code(&self, caller: &Caller, id: &str, typed: &str) -> Result<()> {
        let _guard = self.write.lock().await;
        let mut account = self.managed(caller, id)?;
        if account.state != State::AwaitingCode {
            return Err(already_verified(&account));
        }
        let typed = secret::normalise_code(typed).ok_or_else(|| {
            Error::InvalidInput(format!(
                "a code is {} digits, as written in the e-mail",
                secret::CODE_DIGITS
            ))
        })?;
        let resend = format!("ask for a new one with `mailctl account resend {id}`");
        let Some(pending) = account.code.clone() else {
            return Err(Error::TooManyAttempts(format!(
                "this code can no longer be used; {resend}"
            )));
        };
        if self.now() >= pending.expires {
            return Err(Error::CodeExpired(format!(
                "the code has expired (it lasts {CODE_LIFETIME_MINUTES} minutes); {resend}"
            )));
        }
        let hash = pending.hash.clone();
        let matches = tokio::task::spawn_blocking(move || secret::verify(&typed, &hash))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        if !matches {
            let wrong = pending.wrong + 1;
            if wrong >= MAX_WRONG_CODES {
                account.code = None;
                self.store.put_account(&account)?;
                tracing::warn!(account = %id, uid = caller.uid, "code voided after too many wrong tries");
                return Err(Error::TooManyAttempts(format!(
                    "{MAX_WRONG_CODES} wrong codes: this code no longer works; {resend}"
                )));
            }
            account.code = Some(PendingCode { wrong, ..pending });
            self.store.put_account(&account)?;
            tracing::info!(account = %id, uid = caller.uid, wrong, "wrong code");
            return Err(Error::WrongCode(format!(
                "wrong code; {} tries left",
                MAX_WRONG_CODES - wrong
            )));
        }
        account.code = None;
        account.state = State::AwaitingSecret;
        self.store.put_account(&account)?;
        self.audit(caller, "verify", id, "ok");
        tracing::info!(account = %id, uid = caller.uid, "address verified");
        Ok(())
    }

    pub async fn set_secret(
        &self,
        caller: &Caller,
        id: &str,
        question: &str,
        answer: &str,
    ) -> Result<()> {
        let question = validate::one_line("question", question, validate::MAX_QUESTION_CHARS)
            .map_err(Error::InvalidInput)?;
        let account = self.managed(caller, id)?;
        match account.state {
            State::AwaitingSecret => {}
            State::AwaitingCode => {
                return Err(Error::InvalidState(format!(
                    "the address is not verified yet: type the code it received with `mailctl account verify {id} CODE`"
                )));
            }
            State::Active => {
                return Err(Error::InvalidState(
                    "this account already has a secret question".into(),
                ));
            }
        }
        let answer = check_answer(&account, &question, answer)?;
        let (hash, (keys, recovery)) =
            tokio::task::spawn_blocking(move || (secret::hash(&answer), KeyRing::create(&answer)))
                .await
                .map_err(|e| Error::Internal(e.to_string()))?;
        let account = {
            let _guard = self.write.lock().await;
            let mut account = self.managed(caller, id)?;
            if account.state != State::AwaitingSecret {
                return Err(Error::InvalidState(
                    "the account changed meanwhile; try again".into(),
                ));
            }
            account.secret = Some(Secret {
                question,
                answer_hash: hash,
            });
            account.keys = Some(keys);
            account.state = State::Active;
            self.store.put_account(&account)?;
            account
        };
        self.audit(caller, "secret-set", id, "ok");
        tracing::info!(account = %id, uid = caller.uid, "secret set, account active");
        // Queued like any mail, with the same retries; nobody waits for it at the keyboard.
        let file = archive::recovery_file(&account.id, &account.address, self.now(), &recovery);
        let message = notices::confirmation(&self.config, &account, &self.host, &file)
            .map_err(|e| Error::Internal(e.to_string()))?;
        self.queue
            .enqueue(vec![outbox::package(
                &message,
                &account.id,
                caller.uid,
                true,
            )])
            .await?;
        Ok(())
    }

    pub async fn add_staff(&self, caller: &Caller, id: &str, user: &str) -> Result<()> {
        self.change_staff(caller, id, user, true).await
    }

    pub async fn remove_staff(&self, caller: &Caller, id: &str, user: &str) -> Result<()> {
        self.change_staff(caller, id, user, false).await
    }

    async fn change_staff(&self, caller: &Caller, id: &str, user: &str, add: bool) -> Result<()> {
        let _guard = self.write.lock().await;
        let mut account = self.visible(caller, id)?;
        if account.kind != Kind::Establishment {
            return Err(Error::InvalidState(
                "a personal account has no staff: only its owner uses it".into(),
            ));
        }
        if !caller.admin {
            return Err(self.admin_only("name the staff of an establishment address"));
        }
        let user = user.trim();
        if add {
            if authz::uid_of(user)?.is_none() {
                return Err(Error::InvalidInput(format!(
                    "there is no Unix user named `{user}` on this PC"
                )));
            }
            if !account.staff.iter().any(|s| s == user) {
                account.staff.push(user.to_owned());
                account.staff.sort();
            }
        } else {
            let before = account.staff.len();
            account.staff.retain(|s| s != user);
            if account.staff.len() == before {
                return Err(Error::InvalidInput(format!(
                    "`{user}` is not on this account's staff"
                )));
            }
        }
        self.store.put_account(&account)?;
        self.audit(
            caller,
            if add { "staff-add" } else { "staff-remove" },
            id,
            user,
        );
        tracing::info!(account = %id, uid = caller.uid, add, "staff changed");
        Ok(())
    }

    pub fn list(&self, caller: &Caller) -> Result<Vec<Account>> {
        let mut accounts: Vec<Account> = self
            .store
            .accounts()?
            .into_iter()
            .filter(|a| authz::can_see(caller, a))
            .collect();
        accounts.sort_by(|a, b| {
            a.label
                .to_lowercase()
                .cmp(&b.label.to_lowercase())
                .then(a.id.cmp(&b.id))
        });
        Ok(accounts)
    }

    pub fn get(&self, caller: &Caller, id: &str) -> Result<Account> {
        self.visible(caller, id)
    }

    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<()> {
        let _guard = self.write.lock().await;
        let account = self.managed(caller, id)?;
        self.store.remove_account(&account.id)?;
        if let Err(e) = self.queue.archive().remove_account(&account.id) {
            tracing::error!(account = %id, error = %e, "archive not removed");
        }
        self.audit(caller, "delete", id, "ok");
        tracing::info!(account = %id, uid = caller.uid, "account deleted");
        Ok(())
    }

    pub async fn convert(&self, caller: &Caller, id: &str, to: &str) -> Result<()> {
        let to = Kind::parse(to)?;
        let _guard = self.write.lock().await;
        if !caller.admin {
            // Do not tell a non-administrator whether someone else's account exists.
            self.visible(caller, id)?;
            return Err(self.admin_only("convert an account"));
        }
        // An administrator converts a personal account at its owner's request without seeing it
        // in listings: the id is what the owner gives them.
        let mut account = self.store.account(id)?.ok_or_else(|| not_found(id))?;
        if account.kind == to {
            return Err(Error::InvalidState(format!(
                "account {id} is already {}",
                to.as_str()
            )));
        }
        match to {
            Kind::Personal => {
                let [member] = account.staff.as_slice() else {
                    return Err(Error::InvalidState(format!(
                        "account {id} has {} staff members; it can become personal only with exactly one, who becomes its owner",
                        account.staff.len()
                    )));
                };
                account.owner = authz::uid_of(member)?.ok_or_else(|| {
                    Error::InvalidState(format!(
                        "staff member `{member}` no longer exists on this PC"
                    ))
                })?;
                account.staff.clear();
            }
            Kind::Establishment => {
                account.staff = vec![authz::name_of(account.owner)];
                account.owner = caller.uid;
            }
        }
        account.kind = to;
        self.store.put_account(&account)?;
        self.audit(caller, "convert", id, to.as_str());
        tracing::info!(account = %id, uid = caller.uid, to = to.as_str(), "account converted");
        Ok(())
    }

    pub fn set_default(&self, caller: &Caller, id: &str) -> Result<()> {
        if id.is_empty() {
            return Ok(self.store.set_default_account(caller.uid, None)?);
        }
        let account = self.visible(caller, id)?;
        self.store
            .set_default_account(caller.uid, Some(&account.id))?;
        Ok(())
    }

    /// The caller's default account, if it still exists and is still theirs to use.
    pub fn default_account(&self, caller: &Caller) -> Result<Option<String>> {
        let Some(id) = self.store.default_account(caller.uid)? else {
            return Ok(None);
        };
        Ok(self.visible(caller, &id).ok().map(|a| a.id))
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
        audit::record(&self.store, self.now(), caller, action, account, outcome);
    }

    /// The audit log, for administrators.
    pub fn audit_log(&self, caller: &Caller, limit: usize) -> Result<Vec<audit::Entry>> {
        if !caller.admin {
            return Err(self.admin_only("read the audit log"));
        }
        Ok(self.store.audit(limit)?)
    }

    /// Opens the account's archive key with the answer or the recovery file. Wrong ones count:
    /// after five in a row, the account's archive and secret are locked, longer each time,
    /// across restarts.
    pub async fn unlock(
        &self,
        caller: &Caller,
        id: &str,
        with: Unlock,
        action: &str,
    ) -> Result<(Account, Unlocked)> {
        let account = self.visible(caller, id)?;
        let Some(keys) = account.keys.clone() else {
            return Err(Error::InvalidState(format!(
                "account {id} has no archive yet: its secret question is not set"
            )));
        };
        let now = self.now();
        if account.locked_until > now {
            self.audit(caller, action, id, "locked");
            return Err(Error::TooManyAttempts(format!(
                "too many wrong answers or recovery files: locked for {} more minutes",
                (account.locked_until - now).div_ceil(60)
            )));
        }
        let opened = match with {
            Unlock::Answer(answer) => {
                let answer = secret::normalise_answer(&answer);
                tokio::task::spawn_blocking(move || keys.unlock_with_answer(&answer))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))?
            }
            Unlock::RecoveryFile(text) => {
                let (file_account, key) =
                    archive::parse_recovery_file(&text).map_err(Error::InvalidInput)?;
                if file_account != id {
                    self.note_failure(caller, id, action).await?;
                    return Err(Error::WrongCode(format!(
                        "this recovery file belongs to account {file_account}, not {id}"
                    )));
                }
                keys.unlock_with_recovery(&key)
            }
        };
        match opened {
            Some(key) => {
                let _guard = self.write.lock().await;
                let mut fresh = self.visible(caller, id)?;
                if fresh.unlock_failures != 0 || fresh.locked_until != 0 {
                    fresh.unlock_failures = 0;
                    fresh.locked_until = 0;
                    self.store.put_account(&fresh)?;
                }
                self.audit(caller, action, id, "ok");
                Ok((fresh, key))
            }
            None => {
                self.note_failure(caller, id, action).await?;
                Err(Error::WrongCode("wrong answer or recovery file".into()))
            }
        }
    }

    async fn note_failure(&self, caller: &Caller, id: &str, action: &str) -> Result<()> {
        let _guard = self.write.lock().await;
        let mut account = self.visible(caller, id)?;
        account.unlock_failures += 1;
        let over = account.unlock_failures.saturating_sub(MAX_UNLOCK_FAILURES);
        if account.unlock_failures >= MAX_UNLOCK_FAILURES {
            let delay = FIRST_LOCK_SECS
                .saturating_mul(1 << over.min(20))
                .min(MAX_LOCK_SECS);
            account.locked_until = self.now() + delay;
            self.audit(caller, "lock", id, &format!("{delay} s"));
        }
        self.store.put_account(&account)?;
        self.audit(caller, action, id, "refused");
        Ok(())
    }

    /// A new question and answer, proven by the old answer; the archive stays as it is.
    pub async fn change_secret(
        &self,
        caller: &Caller,
        id: &str,
        old: &str,
        question: &str,
        answer: &str,
    ) -> Result<()> {
        self.replace_secret(
            caller,
            id,
            Unlock::Answer(old.to_owned()),
            question,
            answer,
            "secret-change",
        )
        .await
    }

    /// A new question and answer, proven by `cleRecuperation.crbee`; everything archived
    /// before stays readable and the file stays valid.
    pub async fn recover(
        &self,
        caller: &Caller,
        id: &str,
        file: &str,
        question: &str,
        answer: &str,
    ) -> Result<()> {
        self.replace_secret(
            caller,
            id,
            Unlock::RecoveryFile(file.to_owned()),
            question,
            answer,
            "recover",
        )
        .await
    }

    async fn replace_secret(
        &self,
        caller: &Caller,
        id: &str,
        proof: Unlock,
        question: &str,
        answer: &str,
        action: &str,
    ) -> Result<()> {
        let question = validate::one_line("question", question, validate::MAX_QUESTION_CHARS)
            .map_err(Error::InvalidInput)?;
        let account = self.managed(caller, id)?;
        let answer = check_answer(&account, &question, answer)?;
        let (_, key) = self.unlock(caller, id, proof, action).await?;
        let (hash, keys) = {
            let mut keys = account.keys.clone().expect("unlocked accounts have keys");
            tokio::task::spawn_blocking(move || {
                keys.wrap_answer(&key, &answer);
                (secret::hash(&answer), keys)
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
        };
        let _guard = self.write.lock().await;
        let mut account = self.managed(caller, id)?;
        account.secret = Some(Secret {
            question,
            answer_hash: hash,
        });
        account.keys = Some(keys);
        self.store.put_account(&account)?;
        tracing::info!(account = %id, uid = caller.uid, action, "secret replaced");
        Ok(())
    }

    /// The account's sent mail, newest last, opened with `with`.
    pub async fn archived(
        &self,
        caller: &Caller,
        id: &str,
        with: Unlock,
        action: &str,
    ) -> Result<Vec<Archived>> {
        let (account, key) = self.unlock(caller, id, with, action).await?;
        let records: Vec<_> = self
            .queue
            .list()?
            .into_iter()
            .filter(|r| r.account == account.id && r.state == MsgState::Delivered)
            .filter_map(|r| Some((r.archived.clone()?, r)))
            .collect();
        let archive = self.queue.archive().clone();
        tokio::task::spawn_blocking(move || {
            // Messages delivered together are sealed together: each group is opened once.
            let mut groups: HashMap<Slot, HashMap<String, Vec<u8>>> = HashMap::new();
            let mut out = Vec::new();
            for (slot, r) in records {
                if !groups.contains_key(&slot) {
                    let group = match archive.read(&account.id, &slot, &key) {
                        Ok(group) => group.unwrap_or_default().into_iter().collect(),
                        Err(e) => {
                            tracing::error!(message = %r.id, error = %e, "archived message unreadable");
                            HashMap::new()
                        }
                    };
                    groups.insert(slot.clone(), group);
                }
                if let Some(bytes) = groups.get_mut(&slot).and_then(|g| g.remove(&r.id)) {
                    out.push(Archived {
                        id: r.id,
                        created: r.created,
                        sender: r.envelope_from,
                        bytes,
                    });
                }
            }
            out
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))
    }

    /// The account, if the caller may send with it now.
    pub fn for_sending(&self, caller: &Caller, id: &str) -> Result<Account> {
        let account = self.visible(caller, id)?;
        if account.state != State::Active {
            return Err(Error::InvalidState(format!(
                "account {id} is not ready to send ({}): finish setting it up first",
                account.state.as_str()
            )));
        }
        Ok(account)
    }

    /// Queues the code e-mail and waits for its first attempt, so that the person at the
    /// keyboard learns at once if the relay refuses it.
    async fn send_code(&self, account: &Account, code: &str, uid: u32) -> CodeMail {
        let message = match notices::verification(&self.config, account, code, &self.host) {
            Ok(m) => m,
            Err(e) => return CodeMail::Refused(e.to_string()),
        };
        let mut events = self.queue.subscribe();
        let record = match self
            .queue
            .enqueue(vec![outbox::package(&message, &account.id, uid, true)])
            .await
        {
            Ok(mut records) => records.remove(0),
            Err(e) => return CodeMail::Deferred(e.to_string()),
        };
        // Below the 25 s a D-Bus client waits for a reply by default.
        let deadline = tokio::time::Instant::now() + FIRST_ATTEMPT_WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, events.recv()).await;
            let state = match event {
                Ok(Ok(e)) if e.id == record.id => e.state,
                Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    match self.queue.get(&record.id) {
                        Ok(r) => r.state,
                        Err(_) => continue,
                    }
                }
                // Still queued behind other mail: it will go out in turn.
                Ok(Err(_)) | Err(_) => return CodeMail::Sent,
            };
            let reply = || {
                self.queue
                    .get(&record.id)
                    .map(|r| r.last_reply)
                    .unwrap_or_default()
            };
            match state {
                MsgState::Delivered => return CodeMail::Sent,
                MsgState::Failed => {
                    tracing::warn!(account = %account.id, "verification e-mail refused");
                    return CodeMail::Refused(reply());
                }
                MsgState::Deferred => {
                    tracing::warn!(account = %account.id, "verification e-mail deferred");
                    return CodeMail::Deferred(reply());
                }
                _ => {}
            }
        }
    }
}

const FIRST_ATTEMPT_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// How the first attempt at a code e-mail went.
enum CodeMail {
    Sent,
    Refused(String),
    Deferred(String),
}

fn new_id() -> String {
    crate::secret::random_id(8)
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!(
        "no account `{id}` that you may see (see `mailctl account list`)"
    ))
}

fn already_verified(account: &Account) -> Error {
    Error::InvalidState(format!(
        "account {} is already verified (state: {})",
        account.id,
        account.state.as_str()
    ))
}

/// The normalised answer, or why it is refused.
fn check_answer(account: &Account, question: &str, answer: &str) -> Result<String> {
    let normalised = secret::normalise_answer(answer);
    let chars = normalised.chars().count();
    if chars < secret::MIN_ANSWER_CHARS {
        return Err(Error::InvalidInput(format!(
            "the answer is too short: at least {} characters",
            secret::MIN_ANSWER_CHARS
        )));
    }
    if chars > secret::MAX_ANSWER_CHARS {
        return Err(Error::InvalidInput(format!(
            "the answer is longer than {} characters",
            secret::MAX_ANSWER_CHARS
        )));
    }
    let local_part = account.address.split('@').next().unwrap_or_default();
    let guessable = [
        account.label.as_str(),
        account.address.as_str(),
        local_part,
        question,
    ];
    if guessable
        .iter()
        .any(|g| secret::normalise_answer(g) == normalised)
    {
        return Err(Error::InvalidInput(
            "the answer must not be the label, the address or the question itself".into(),
        ));
    }
    Ok(normalised)
}

async fn hash_blocking(secret: String) -> Result<String> {
    // Argon2 takes tens of milliseconds of CPU: keep it off the bus-serving threads.
    tokio::task::spawn_blocking(move || secret::hash(&secret))
        .await
        .map_err(|e| Error::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    struct Fixture {
        accounts: Accounts,
        now: Arc<AtomicU64>,
        dir: tempfile::TempDir,
    }

    fn fixture_with(relay: Option<crate::config::Relay>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let config = Arc::new(Config {
            state_dir: dir.path().to_owned(),
            relay,
            ..Config::default()
        });
        let store = Store::open(&config.state_dir).unwrap();
        let relay = Arc::new(crate::delivery::Relay::from_config(&config).unwrap());
        let now = Arc::new(AtomicU64::new(1_800_000_000));
        let clock_now = now.clone();
        let clock: Clock = Arc::new(move || clock_now.load(Ordering::SeqCst));
        let queue = Arc::new(
            Queue::open(
                store.clone(),
                &config.state_dir,
                config.queue.clone(),
                crate::clock::system(),
            )
            .unwrap(),
        );
        tokio::spawn(crate::delivery::run(queue.clone(), relay.clone(), 2));
        Fixture {
            accounts: Accounts::new(
                config,
                store,
                queue,
                relay.describe(),
                "poste-test".into(),
                clock,
            ),
            now,
            dir,
        }
    }

    fn fixture() -> Fixture {
        fixture_with(None)
    }

    impl Fixture {
        fn advance(&self, secs: u64) {
            self.now.fetch_add(secs, Ordering::SeqCst);
        }

        /// A personal account of `caller`'s just created, and the code mailed for it.
        async fn awaiting_code(&self, caller: &Caller) -> (Account, String) {
            let a = self
                .accounts
                .create(caller, "personal", "M", "m@ecole.fr")
                .await
                .unwrap();
            let code = self.last_code(&a.id);
            (a, code)
        }

        /// The code of the newest verification mail for this account, read from local-mail.
        fn last_code(&self, id: &str) -> String {
            let needle = format!("mailctl account verify {id} ");
            let mut mails: Vec<_> = std::fs::read_dir(self.dir.path().join("local-mail"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            mails.sort();
            mails
                .iter()
                .rev()
                .filter_map(|p| {
                    let text = std::fs::read_to_string(p).unwrap();
                    let start = text.find(&needle)? + needle.len();
                    Some(text[start..start + 6].to_owned())
                })
                .next()
                .expect("a verification mail")
        }

        fn mail_count(&self) -> usize {
            std::fs::read_dir(self.dir.path().join("local-mail"))
                .map(|d| d.count())
                .unwrap_or(0)
        }

        /// Mail queued without waiting (the confirmation) arrives shortly after.
        async fn wait_mail_count(&self, n: usize) {
            for _ in 0..500 {
                if self.mail_count() >= n {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert_eq!(self.mail_count(), n);
        }
    }

    fn user(uid: u32, name: &str) -> Caller {
        Caller {
            uid,
            name: name.into(),
            admin: false,
            send_establishment: true,
        }
    }

    fn admin() -> Caller {
        Caller {
            uid: 0,
            name: "root".into(),
            admin: true,
            send_establishment: true,
        }
    }

    async fn active(f: &Fixture, caller: &Caller, kind: &str) -> Account {
        let a = f
            .accounts
            .create(
                caller,
                kind,
                "Secrétariat Jules Ferry",
                "secretariat@ecole.fr",
            )
            .await
            .unwrap();
        f.accounts
            .confirm_code(caller, &a.id, &f.last_code(&a.id))
            .await
            .unwrap();
        f.accounts
            .set_secret(caller, &a.id, "Ville de naissance ?", "Clermont-Ferrand")
            .await
            .unwrap();
        f.accounts.get(caller, &a.id).unwrap()
    }

    #[tokio::test]
    async fn lifecycle_reaches_active_and_keeps_no_clear_secret() {
        let f = fixture();
        let alice = user(1001, "alice");
        let a = f
            .accounts
            .create(&alice, "personal", "Mme Martin", "martin@ecole.fr")
            .await
            .unwrap();
        assert_eq!(a.state, State::AwaitingCode);
        assert_eq!(f.mail_count(), 1);
        let code = f.last_code(&a.id);
        let err = f
            .accounts
            .set_secret(&alice, &a.id, "Q ?", "une réponse")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidState(_)), "{err:?}");
        let wrong = if code == "000000" { "111111" } else { "000000" };
        let err = f
            .accounts
            .confirm_code(&alice, &a.id, wrong)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::WrongCode(m) if m.contains("4 tries left")),
            "{err:?}"
        );
        let err = f
            .accounts
            .confirm_code(&alice, &a.id, "12ab")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
        f.accounts.confirm_code(&alice, &a.id, &code).await.unwrap();
        assert_eq!(
            f.accounts.get(&alice, &a.id).unwrap().state,
            State::AwaitingSecret
        );
        let err = f
            .accounts
            .confirm_code(&alice, &a.id, &code)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidState(_)),
            "a code is single use: {err:?}"
        );

        for refused in [
            "court",
            "Mme Martin",
            "martin@ecole.fr",
            "MARTIN",
            " ma question ? ",
        ] {
            let err = f
                .accounts
                .set_secret(&alice, &a.id, "Ma question ?", refused)
                .await
                .unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{refused}: {err:?}");
        }
        let err = f
            .accounts
            .set_secret(&alice, &a.id, "Q\r\nBcc: x", "Clermont")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
        f.accounts
            .set_secret(&alice, &a.id, "Ville de naissance ?", "  ZÜRICH-Oerlikon ")
            .await
            .unwrap();
        let a = f.accounts.get(&alice, &a.id).unwrap();
        assert_eq!(a.state, State::Active);
        let secret = a.secret.unwrap();
        assert!(secret::verify("zürich-oerlikon", &secret.answer_hash));
        f.wait_mail_count(2).await;

        // Neither the answer nor any code is anywhere in the store's files.
        f.accounts.store.flush().unwrap();
        for entry in walk(f.dir.path().join("db").as_path()) {
            let bytes = std::fs::read(&entry).unwrap();
            for needle in ["rich-oerlikon", "RICH-Oerlikon", code.as_str()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{needle} found in {}",
                    entry.display()
                );
            }
        }
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[tokio::test]
    async fn codes_expire_after_fifteen_minutes() {
        let f = fixture();
        let alice = user(1001, "alice");
        let (a, code) = f.awaiting_code(&alice).await;
        f.advance(CODE_LIFETIME_SECS);
        let err = f
            .accounts
            .confirm_code(&alice, &a.id, &code)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::CodeExpired(_)), "{err:?}");
    }

    #[tokio::test]
    async fn five_wrong_codes_void_the_code_until_resent() {
        let f = fixture();
        let alice = user(1001, "alice");
        let (a, code) = f.awaiting_code(&alice).await;
        let wrong = if code == "000000" { "111111" } else { "000000" };
        for _ in 0..4 {
            let err = f
                .accounts
                .confirm_code(&alice, &a.id, wrong)
                .await
                .unwrap_err();
            assert!(matches!(err, Error::WrongCode(_)), "{err:?}");
        }
        let err = f
            .accounts
            .confirm_code(&alice, &a.id, wrong)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::TooManyAttempts(_)), "{err:?}");
        let err = f
            .accounts
            .confirm_code(&alice, &a.id, &code)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::TooManyAttempts(_)),
            "the right code is void too: {err:?}"
        );

        f.advance(RESEND_INTERVAL_SECS);
        f.accounts.resend_code(&alice, &a.id).await.unwrap();
        let fresh = f.last_code(&a.id);
        f.accounts
            .confirm_code(&alice, &a.id, &fresh)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn resend_is_rate_limited_and_replaces_the_code() {
        let f = fixture();
        let alice = user(1001, "alice");
        let (a, first) = f.awaiting_code(&alice).await;
        let err = f.accounts.resend_code(&alice, &a.id).await.unwrap_err();
        assert!(
            matches!(&err, Error::RateLimited(m) if m.contains("60 s")),
            "{err:?}"
        );
        f.advance(RESEND_INTERVAL_SECS);
        f.accounts.resend_code(&alice, &a.id).await.unwrap();
        let second = f.last_code(&a.id);
        assert_eq!(f.mail_count(), 2);
        if first != second {
            let err = f
                .accounts
                .confirm_code(&alice, &a.id, &first)
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::WrongCode(_)),
                "old code must stop working: {err:?}"
            );
        }
        f.accounts
            .confirm_code(&alice, &a.id, &second)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn bad_input_is_refused_before_anything_is_stored() {
        let f = fixture();
        let alice = user(1001, "alice");
        for (kind, label, address) in [
            ("shared", "L", "a@ecole.fr"),
            ("personal", "", "a@ecole.fr"),
            ("personal", "L\nBcc: x@y.fr", "a@ecole.fr"),
            ("personal", "L", "pas-une-adresse"),
            ("personal", "L", "a@ecole.fr\r\nBcc: x@y.fr"),
        ] {
            let err = f
                .accounts
                .create(&alice, kind, label, address)
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::InvalidInput(_)),
                "{kind} {label:?} {address:?}: {err:?}"
            );
        }
        assert!(f.accounts.list(&alice).unwrap().is_empty());
        assert_eq!(f.mail_count(), 0);
    }

    #[tokio::test]
    async fn relay_down_keeps_the_account_and_retries_the_code() {
        // A port nobody listens on: connection refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let f = fixture_with(Some(crate::config::Relay {
            host: "127.0.0.1".into(),
            port,
            tls: crate::config::TlsMode::None,
            username: None,
            password_file: None,
            ca_file: None,
            allowed_sender_domains: None,
            sender: None,
        }));
        let alice = user(1001, "alice");
        let err = f
            .accounts
            .create(&alice, "personal", "M", "m@ecole.fr")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::RelayUnavailable(m) if m.contains("m@ecole.fr") && m.contains("again automatically")),
            "{err:?}"
        );
        let kept = f.accounts.list(&alice).unwrap();
        assert_eq!(kept.len(), 1);
        let waiting = f.accounts.queue.list().unwrap();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].state, MsgState::Deferred);
        assert_eq!(waiting[0].account, kept[0].id);
        assert!(waiting[0].notice);
    }

    #[tokio::test]
    async fn who_sees_and_manages_what() {
        let f = fixture();
        let root = admin();
        let alice = user(1001, "alice");
        let bob = user(1002, "bob");

        let err = f
            .accounts
            .create(&alice, "establishment", "S", "s@ecole.fr")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotAuthorized(_)), "{err:?}");

        let shared = active(&f, &root, "establishment").await;
        let err = f.accounts.get(&alice, &shared.id).unwrap_err();
        assert!(
            matches!(err, Error::NotFound(_)),
            "not on staff yet: {err:?}"
        );
        f.accounts
            .add_staff(&root, &shared.id, "root")
            .await
            .unwrap();
        let err = f
            .accounts
            .add_staff(&root, &shared.id, "no-such-user-x")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");

        let mine = f
            .accounts
            .create(&alice, "personal", "Alice", "alice@ecole.fr")
            .await
            .unwrap();
        assert_eq!(f.accounts.list(&alice).unwrap().len(), 1);
        assert!(
            f.accounts.list(&bob).unwrap().is_empty(),
            "bob sees nothing"
        );
        let root_sees: Vec<String> = f
            .accounts
            .list(&root)
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(
            root_sees,
            vec![shared.id.clone()],
            "administrators do not see personal accounts"
        );
        for err in [
            f.accounts.get(&bob, &mine.id).unwrap_err(),
            f.accounts.delete(&bob, &mine.id).await.unwrap_err(),
            f.accounts.resend_code(&bob, &mine.id).await.unwrap_err(),
            f.accounts.set_default(&bob, &mine.id).unwrap_err(),
        ] {
            assert!(matches!(err, Error::NotFound(_)), "{err:?}");
        }
        let err = f
            .accounts
            .add_staff(&root, &mine.id, "root")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
        let err = f
            .accounts
            .convert(&alice, &shared.id, "personal")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");

        f.accounts.set_default(&alice, &mine.id).unwrap();
        assert_eq!(
            f.accounts.default_account(&alice).unwrap(),
            Some(mine.id.clone())
        );
        assert_eq!(f.accounts.default_account(&bob).unwrap(), None);
        f.accounts.delete(&alice, &mine.id).await.unwrap();
        assert_eq!(f.accounts.default_account(&alice).unwrap(), None);
    }

    #[tokio::test]
    async fn staff_member_uses_but_does_not_administer() {
        let f = fixture();
        let root = admin();
        let shared = active(&f, &root, "establishment").await;
        // A real user name is needed; "root" exists everywhere, so a non-admin caller named
        // root stands in for a member of staff.
        let staff = Caller {
            uid: 4242,
            name: "root".into(),
            admin: false,
            send_establishment: true,
        };
        f.accounts
            .add_staff(&root, &shared.id, "root")
            .await
            .unwrap();
        assert_eq!(f.accounts.get(&staff, &shared.id).unwrap().id, shared.id);
        let err = f.accounts.delete(&staff, &shared.id).await.unwrap_err();
        assert!(matches!(err, Error::NotAuthorized(_)), "{err:?}");
        let err = f
            .accounts
            .add_staff(&staff, &shared.id, "root")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotAuthorized(_)), "{err:?}");
        f.accounts
            .remove_staff(&root, &shared.id, "root")
            .await
            .unwrap();
        assert!(f.accounts.get(&staff, &shared.id).is_err());
        let err = f
            .accounts
            .remove_staff(&root, &shared.id, "root")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    }

    #[tokio::test]
    async fn conversion_both_ways() {
        let f = fixture();
        let root = admin();
        let shared = active(&f, &root, "establishment").await;
        let err = f
            .accounts
            .convert(&root, &shared.id, "personal")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidState(m) if m.contains("0 staff")),
            "{err:?}"
        );
        f.accounts
            .add_staff(&root, &shared.id, "root")
            .await
            .unwrap();
        f.accounts
            .convert(&root, &shared.id, "personal")
            .await
            .unwrap();
        let a = f.accounts.get(&root, &shared.id).unwrap();
        assert_eq!((a.kind, a.owner, a.staff.len()), (Kind::Personal, 0, 0));
        let err = f
            .accounts
            .convert(&root, &shared.id, "personal")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidState(_)), "{err:?}");

        let alice = user(1001, "alice");
        let mine = active(&f, &alice, "personal").await;
        f.accounts
            .convert(&root, &mine.id, "establishment")
            .await
            .unwrap();
        let a = f.accounts.store.account(&mine.id).unwrap().unwrap();
        assert_eq!(a.kind, Kind::Establishment);
        assert_eq!(a.staff, vec![authz::name_of(1001)]);
    }
}
