//! Setting an address up: created → code e-mailed → code typed back → secret set. The code
//! e-mail waits for its first attempt so that the person at the keyboard hears of a refusal.

use super::*;

pub const MAX_WRONG_CODES: u32 = 5;

impl Accounts {
    pub async fn create(
        &self,
        caller: &Caller,
        kind: &str,
        label: &str,
        address: &str,
    ) -> Result<Account> {
        let kind = parse_kind(kind)?;
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
        // Checked before the hash too, so that a refused caller costs no Argon2 run.
        self.admit_creation(caller, kind, &address, self.now())?;
        // Below the disk's reserve nothing new starts, though deliveries still get recorded;
        // the room asked for is the account's record, its code e-mail and their records.
        self.queue.check_disk(64 * 1024)?;
        let code = secret::new_code();
        let hash = hash_blocking(caller.uid, code.clone()).await?;
        let account = {
            // Checking and recording under one lock: two creations for one address, or by one
            // user, cannot both pass the same count.
            let _guard = self.write.lock().await;
            let now = self.now();
            self.admit_creation(caller, kind, &address, now)?;
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
                lock_periods: 0,
                code: Some(PendingCode {
                    hash,
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
            self.record_code(&account, now)?;
            if !caller.admin {
                let key = creations_key(caller.uid);
                let events = self.store.events(&key)?;
                self.store.put_events(&key, &limits::with(&events, now))?;
            }
            account
        };
        match self.send_code(&account, &code, caller.uid).await {
            CodeMail::Sent => {}
            CodeMail::NotQueued(e) => {
                self.store.remove_account(&account.id)?;
                // Nothing reached the address: that code does not count against it.
                self.forget_code(&account)?;
                return Err(e);
            }
            CodeMail::Refused(reply) => {
                self.store.remove_account(&account.id)?;
                // Nothing reached the address: that code does not count against it.
                self.forget_code(&account)?;
                return Err(Error::RelayUnavailable(format!(
                    "the relay refused the code e-mail to {}: {reply}. Nothing was created.",
                    account.address
                )));
            }
            CodeMail::Deferred(reply) => {
                // The account stays: its listeners hear of it like of any other.
                self.changed(&account.id, change::CREATED);
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
        self.audit_about(caller, "create", &account, "ok");
        self.changed(&account.id, change::CREATED);
        tracing::info!(account = %account.id, kind = kind.as_str(), uid = caller.uid, "account created, code sent");
        Ok(account)
    }

    /// Why this caller may not create an account for `address` now, if they may not.
    fn admit_creation(&self, caller: &Caller, kind: Kind, address: &str, now: u64) -> Result<()> {
        let accounts = self.store.accounts()?;
        if let Some(existing) = accounts.iter().find(|a| {
            a.kind == kind
                && a.address.eq_ignore_ascii_case(address)
                && (kind == Kind::Establishment || a.owner == caller.uid)
        }) {
            return Err(Error::InvalidState(format!(
                "{address} is already set up as account {}; use `mailctl account resend {}` if the code was lost",
                existing.id, existing.id
            )));
        }
        if !caller.admin {
            if accounts.iter().any(|a| limits::holds(a, address)) {
                tracing::warn!(
                    uid = caller.uid,
                    "creation refused: address held by another account"
                );
                return Err(address_in_use(address));
            }
            let l = &self.config.limits;
            let pending = accounts
                .iter()
                .filter(|a| a.owner == caller.uid && a.state == State::AwaitingCode)
                .count();
            if pending >= l.max_pending_accounts as usize {
                tracing::warn!(
                    uid = caller.uid,
                    "creation refused: too many accounts awaiting a code"
                );
                return Err(Error::QuotaExceeded(format!(
                    "you already have {pending} accounts awaiting their code (at most {}); \
                     type their codes or delete them first",
                    l.max_pending_accounts
                )));
            }
            let created = self.store.events(&creations_key(caller.uid))?;
            if let Err(refusal) = limits::check(&created, now, 0, l.max_creations_per_day) {
                tracing::warn!(
                    uid = caller.uid,
                    "creation refused: too many creations today"
                );
                let (limits::Refusal::TooSoon(wait) | limits::Refusal::DailyCap(wait)) = refusal;
                return Err(Error::QuotaExceeded(format!(
                    "you have created {} accounts in the last 24 hours (at most {}); try again in {}",
                    limits::recent(&created, now).len(),
                    l.max_creations_per_day,
                    limits::wait_words(wait)
                )));
            }
        }
        self.admit_code(address, None, now)
    }

    /// Refuses a new code to `address` (and for `account`) too soon after the previous one or
    /// beyond the day's allowance, whoever asks.
    fn admit_code(&self, address: &str, account: Option<&str>, now: u64) -> Result<()> {
        let l = &self.config.limits;
        let mut keys = vec![address_events_key(address)];
        keys.extend(account.map(account_events_key));
        for key in keys {
            let events = self.store.events(&key)?;
            match limits::check(&events, now, l.code_interval_secs, l.max_codes_per_day) {
                Ok(()) => {}
                Err(limits::Refusal::TooSoon(wait)) => {
                    return Err(Error::RateLimited(format!(
                        "a code was sent to {address} less than {} ago; wait {} before asking again",
                        limits::wait_words(l.code_interval_secs),
                        limits::wait_words(wait)
                    )));
                }
                Err(limits::Refusal::DailyCap(wait)) => {
                    return Err(Error::RateLimited(format!(
                        "{address} has already been sent {} codes in the last 24 hours; \
                         the next one can be asked for in {}",
                        l.max_codes_per_day,
                        limits::wait_words(wait)
                    )));
                }
            }
        }
        Ok(())
    }

    fn record_code(&self, account: &Account, now: u64) -> Result<()> {
        for key in [
            address_events_key(&account.address),
            account_events_key(&account.id),
        ] {
            let events = self.store.events(&key)?;
            self.store.put_events(&key, &limits::with(&events, now))?;
        }
        Ok(())
    }

    fn forget_code(&self, account: &Account) -> Result<()> {
        let Some(sent) = account.code.as_ref().map(|c| c.sent) else {
            return Ok(());
        };
        for key in [
            address_events_key(&account.address),
            account_events_key(&account.id),
        ] {
            let events = self.store.events(&key)?;
            self.store
                .put_events(&key, &limits::without(&events, sent))?;
        }
        Ok(())
    }

    pub async fn resend_code(&self, caller: &Caller, id: &str) -> Result<()> {
        let account = self.managed(caller, id)?;
        if account.state != State::AwaitingCode {
            return Err(already_verified(&account));
        }
        self.admit_code(&account.address, Some(id), self.now())?;
        let code = secret::new_code();
        let hash = hash_blocking(caller.uid, code.clone()).await?;
        let account = {
            let _guard = self.write.lock().await;
            let mut account = self.managed(caller, id)?;
            if account.state != State::AwaitingCode {
                return Err(already_verified(&account));
            }
            let now = self.now();
            self.admit_code(&account.address, Some(id), now)?;
            account.code = Some(PendingCode {
                hash,
                sent: now,
                expires: now + CODE_LIFETIME_SECS,
                wrong: 0,
            });
            self.store.put_account(&account)?;
            self.record_code(&account, now)?;
            account
        };
        match self.send_code(&account, &code, caller.uid).await {
            CodeMail::Sent => {}
            CodeMail::NotQueued(e) => {
                // Nothing reached the address: that code does not count against it.
                self.forget_code(&account)?;
                return Err(e);
            }
            CodeMail::Refused(reply) | CodeMail::Deferred(reply) => {
                return Err(Error::RelayUnavailable(format!(
                    "the new code could not be e-mailed to {} through {}: {reply}",
                    account.address, self.relay_name
                )));
            }
        }
        self.changed(id, change::CODE_SENT);
        tracing::info!(account = %id, uid = caller.uid, "new code sent");
        Ok(())
    }

    pub async fn confirm_code(&self, caller: &Caller, id: &str, typed: &str) -> Result<()> {
        let typed = secret::normalise_code(typed).ok_or_else(|| {
            Error::InvalidInput(format!(
                "a code is {} digits, as written in the e-mail",
                secret::CODE_DIGITS
            ))
        })?;
        let resend = format!("ask for a new one with `mailctl account resend {id}`");
        // The try is counted before the code is checked, and the check runs without the
        // lock: however many guesses arrive at once, at most MAX_WRONG_CODES are checked, and
        // nobody else's account waits behind them.
        let (pending, wrong) = {
            let _guard = self.write.lock().await;
            let mut account = self.managed(caller, id)?;
            if account.state != State::AwaitingCode {
                return Err(already_verified(&account));
            }
            let pending = match account.code.clone() {
                Some(p) if p.wrong < MAX_WRONG_CODES => p,
                _ => {
                    return Err(Error::TooManyAttempts(format!(
                        "this code can no longer be used; {resend}"
                    )));
                }
            };
            if self.now() >= pending.expires {
                return Err(Error::CodeExpired(format!(
                    "the code has expired (it lasts {CODE_LIFETIME_MINUTES} minutes); {resend}"
                )));
            }
            let wrong = pending.wrong + 1;
            account.code = Some(PendingCode {
                wrong,
                ..pending.clone()
            });
            self.store.put_account(&account)?;
            (pending, wrong)
        };
        let hash = pending.hash.clone();
        let matches = crate::blocking::ARGON2
            .run(caller.uid, move || secret::verify(&typed, &hash))
            .await?;
        let _guard = self.write.lock().await;
        let mut account = self.managed(caller, id)?;
        // The same code still pending: not replaced by a resend, not voided, not used.
        let current = account.state == State::AwaitingCode
            && account
                .code
                .as_ref()
                .is_some_and(|c| c.hash == pending.hash);
        if !matches {
            self.audit_about(caller, "verify", &account, "wrong-code");
            tracing::info!(account = %id, uid = caller.uid, wrong, "wrong code");
            if wrong >= MAX_WRONG_CODES {
                if current {
                    account.code = None;
                    self.store.put_account(&account)?;
                }
                tracing::warn!(account = %id, uid = caller.uid, "code voided after too many wrong tries");
                return Err(Error::TooManyAttempts(format!(
                    "{MAX_WRONG_CODES} wrong codes: this code no longer works; {resend}"
                )));
            }
            return Err(Error::WrongCode(format!(
                "wrong code; {} tries left",
                MAX_WRONG_CODES - wrong
            )));
        }
        if !current {
            return Err(match account.state {
                State::AwaitingCode => {
                    Error::TooManyAttempts(format!("this code can no longer be used; {resend}"))
                }
                _ => already_verified(&account),
            });
        }
        if !caller.admin
            && self
                .store
                .accounts()?
                .iter()
                .any(|a| a.id != account.id && limits::holds(a, &account.address))
        {
            // Someone else took the address since this account was created.
            account.code = None;
            self.store.put_account(&account)?;
            self.audit_about(caller, "verify", &account, "address-in-use");
            return Err(address_in_use(&account.address));
        }
        account.code = None;
        account.state = State::AwaitingSecret;
        self.store.put_account(&account)?;
        self.audit_about(caller, "verify", &account, "ok");
        self.changed(id, change::VERIFIED);
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
        let (hash, (keys, recovery)) = crate::blocking::ARGON2
            .run(caller.uid, move || {
                (secret::hash(&answer), KeyRing::create(&answer))
            })
            .await?;
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
            self.set_keys(&mut account, keys)?;
            account.state = State::Active;
            self.store.put_account(&account)?;
            account
        };
        self.audit(caller, "secret-set", id, "ok");
        self.changed(id, change::ACTIVATED);
        tracing::info!(account = %id, uid = caller.uid, "secret set, account active");
        self.mail_recovery_file(&account, &recovery, caller.uid, notices::confirmation)
            .await
    }

    /// Mails the recovery file for `recovery` in the letter `letter` writes around it. Queued
    /// like any mail, with the same retries; nobody waits for it at the keyboard.
    pub(super) async fn mail_recovery_file(
        &self,
        account: &Account,
        recovery: &[u8; 32],
        uid: u32,
        letter: fn(
            &Config,
            &Account,
            &str,
            &str,
        ) -> std::result::Result<lettre::Message, notices::Error>,
    ) -> Result<()> {
        let file = archive::recovery_file(&account.id, &account.address, self.now(), recovery);
        let message = letter(&self.config, account, &self.host, &file)
            .map_err(|e| Error::Internal(e.to_string()))?;
        self.queue
            .enqueue(vec![queue::package(&message, &account.id, uid, true)])
            .await?;
        Ok(())
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
            .enqueue(vec![queue::package(&message, &account.id, uid, true)])
            .await
        {
            Ok(mut records) => records.remove(0),
            Err(e) => return CodeMail::NotQueued(e.into()),
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
    /// Not even queued (a full disk): nothing will be sent unless asked again.
    NotQueued(Error),
    Refused(String),
    Deferred(String),
}

fn address_in_use(address: &str) -> Error {
    Error::AddressInUse(format!(
        "{address} is already used by another account on this PC; only an administrator can set it up again"
    ))
}

fn address_events_key(address: &str) -> String {
    format!("codes-to:{}", limits::address_key(address))
}

pub(super) fn account_events_key(id: &str) -> String {
    format!("codes-for:{id}")
}

fn creations_key(uid: u32) -> String {
    format!("creations-by:{uid}")
}

fn already_verified(account: &Account) -> Error {
    Error::InvalidState(format!(
        "account {} is already verified (state: {})",
        account.id,
        account.state.as_str()
    ))
}

/// The normalised answer, or why it is refused.
pub(super) fn check_answer(account: &Account, question: &str, answer: &str) -> Result<String> {
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
