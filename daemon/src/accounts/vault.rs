//! The account's archive: opening its key with the answer or the recovery file (wrong ones
//! count and lock), replacing the secret, reading the sealed mail back.

use super::setup::check_answer;
use super::*;

/// What opens an account's archive key.
pub enum Unlock {
    Answer(String),
    /// The content of `cleRecuperation.crbee`.
    RecoveryFile(String),
}

pub const MAX_UNLOCK_FAILURES: u32 = 5;

/// What a wrong answer leaves the caller.
enum Tries {
    Left(u32),
    LockedFor(u64),
}

const FIRST_LOCK_SECS: u64 = 60;

const MAX_LOCK_SECS: u64 = 86_400;

/// How long the lock that follows `periods` locks in a row lasts.
fn lock_secs(periods: u32) -> u64 {
    FIRST_LOCK_SECS
        .saturating_mul(1 << periods.min(20))
        .min(MAX_LOCK_SECS)
}

impl Accounts {
    /// Opens the account's archive key with the answer or the recovery file. Each attempt is
    /// counted before it is checked, so that however many arrive at once, at most five are
    /// checked before the lock; the lock lasts a minute, then twice as long each time in a
    /// row (a day at most), across restarts.
    pub async fn unlock(
        &self,
        caller: &Caller,
        id: &str,
        with: Unlock,
        action: &str,
    ) -> Result<(Account, Unlocked)> {
        let (keys, left) = self.count_attempt(caller, id, action).await?;
        let opened = match with {
            Unlock::Answer(answer) => {
                let answer = secret::normalise_answer(&answer);
                crate::blocking::ARGON2
                    .run(caller.uid, move || keys.unlock_with_answer(&answer))
                    .await?
            }
            Unlock::RecoveryFile(text) => {
                let (file_account, key) =
                    archive::parse_recovery_file(&text).map_err(Error::InvalidInput)?;
                if file_account != id {
                    self.audit(caller, action, id, "refused");
                    return Err(Error::WrongCode(format!(
                        "this recovery file belongs to account {file_account}, not {id}"
                    )));
                }
                keys.unlock_with_recovery(&key)
            }
        };
        let Some(key) = opened else {
            self.audit(caller, action, id, "refused");
            return Err(Error::WrongCode(match left {
                Tries::Left(n) => format!(
                    "wrong answer or recovery file: {n} {} left before the archive locks",
                    if n == 1 { "try" } else { "tries" }
                ),
                Tries::LockedFor(secs) => format!(
                    "wrong answer or recovery file: the archive is now locked for {} minutes",
                    secs.div_ceil(60)
                ),
            }));
        };
        let _guard = self.write.lock().await;
        let mut fresh = self.visible(caller, id)?;
        if fresh.unlock_failures != 0 || fresh.locked_until != 0 || fresh.lock_periods != 0 {
            fresh.unlock_failures = 0;
            fresh.locked_until = 0;
            fresh.lock_periods = 0;
            self.store.put_account(&fresh)?;
        }
        self.audit(caller, action, id, "ok");
        Ok((fresh, key))
    }

    /// Takes one attempt from the account's allowance, durably, and returns the keys to try it
    /// on and what a wrong try leaves; the fifth attempt of a period starts the lock, which a
    /// right answer lifts.
    async fn count_attempt(
        &self,
        caller: &Caller,
        id: &str,
        action: &str,
    ) -> Result<(KeyRing, Tries)> {
        let _guard = self.write.lock().await;
        let mut account = self.visible(caller, id)?;
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
        if account.locked_until != 0 {
            // The last lock is over: a new allowance.
            account.locked_until = 0;
            account.unlock_failures = 0;
        }
        account.unlock_failures += 1;
        let left = if account.unlock_failures >= MAX_UNLOCK_FAILURES {
            let delay = lock_secs(account.lock_periods);
            account.lock_periods = account.lock_periods.saturating_add(1);
            account.locked_until = now + delay;
            self.audit(caller, "lock", id, &format!("{delay} s"));
            Tries::LockedFor(delay)
        } else {
            Tries::Left(MAX_UNLOCK_FAILURES - account.unlock_failures)
        };
        self.store.put_account(&account)?;
        Ok((keys, left))
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
        // The account as the unlock found it: a secret set meanwhile cannot leave it keyless.
        let (unlocked, key) = self.unlock(caller, id, proof, action).await?;
        let Some(mut keys) = unlocked.keys else {
            return Err(Error::InvalidState(
                "the account changed meanwhile; try again".into(),
            ));
        };
        let (hash, keys) = crate::blocking::ARGON2
            .run(caller.uid, move || {
                keys.wrap_answer(&key, &answer);
                (secret::hash(&answer), keys)
            })
            .await?;
        let _guard = self.write.lock().await;
        let mut account = self.managed(caller, id)?;
        account.secret = Some(Secret {
            question,
            answer_hash: hash,
        });
        self.set_keys(&mut account, keys)?;
        self.store.put_account(&account)?;
        tracing::info!(account = %id, uid = caller.uid, action, "secret replaced");
        Ok(())
    }

    /// Gives the account `keys`, with the `key` file that lets its archive outlive the store.
    pub(super) fn set_keys(&self, account: &mut Account, keys: KeyRing) -> Result<()> {
        self.archive
            .write_key(&keys.key_file(&account.id, &account.address))
            .map_err(|e| Error::Internal(format!("cannot write the archive key: {e}")))?;
        account.keys = Some(keys);
        Ok(())
    }

    /// A new recovery file, proven by the answer, mailed to the account's address like the
    /// first one; the file issued before stops opening the archive. For a file lost, or
    /// used where others could copy it.
    pub async fn new_recovery_key(&self, caller: &Caller, id: &str, answer: &str) -> Result<()> {
        self.managed(caller, id)?;
        let (unlocked, key) = self
            .unlock(
                caller,
                id,
                Unlock::Answer(answer.to_owned()),
                "new-recovery-key",
            )
            .await?;
        let Some(mut keys) = unlocked.keys else {
            return Err(Error::InvalidState(
                "the account changed meanwhile; try again".into(),
            ));
        };
        let recovery = keys.wrap_recovery(&key);
        let account = {
            let _guard = self.write.lock().await;
            let mut account = self.managed(caller, id)?;
            self.set_keys(&mut account, keys)?;
            self.store.put_account(&account)?;
            account
        };
        self.audit(caller, "new-recovery-key", id, "ok");
        tracing::info!(account = %id, uid = caller.uid, "new recovery key issued");
        self.mail_recovery_file(&account, &recovery, caller.uid, notices::new_recovery_key)
            .await
    }

    /// The account's sealed mail, oldest first, opened with `with`: what is read from it is
    /// decrypted by the caller of `View`'s methods, a group at a time.
    pub async fn archive_view(
        &self,
        caller: &Caller,
        id: &str,
        with: Unlock,
        action: &str,
    ) -> Result<archive::View> {
        let (account, key) = self.unlock(caller, id, with, action).await?;
        // The store's records as they are: what the archive holds needs no recipients, which
        // `Queue::list` would read back from the spool for every waiting message.
        let mut messages: Vec<archive::Held> = self
            .store
            .messages()?
            .into_iter()
            .filter(|r| r.account == account.id)
            .filter_map(|r| {
                Some(archive::Held {
                    slot: r.archived?,
                    id: r.id,
                    created: r.created,
                    sender: r.envelope_from,
                    state: r.state.as_str(),
                    reply: r.last_reply,
                })
            })
            .collect();
        messages.extend(
            self.store
                .sealed(&account.id)?
                .into_iter()
                .map(|s| archive::Held {
                    slot: s.slot,
                    id: s.id,
                    created: s.created,
                    sender: s.sender,
                    state: s.state.as_str(),
                    reply: s.last_reply,
                }),
        );
        // A record and its pruned trace cannot both exist (one transaction); listed once anyway.
        messages.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        messages.dedup_by(|a, b| a.id == b.id);
        Ok(archive::View {
            archive: self.archive.clone(),
            account: account.id,
            key,
            messages,
        })
    }
}
