//! Administration of set-up accounts: staff, listing, deletion, conversion between kinds,
//! each user's default account, the audit log.

use super::*;

impl Accounts {
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
        self.changed(id, change::STAFF);
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
        if let Err(e) = self.archive.remove_account(&account.id) {
            tracing::error!(account = %id, error = %e, "archive not removed");
        }
        self.audit(caller, "delete", id, "ok");
        self.changed(id, change::DELETED);
        tracing::info!(account = %id, uid = caller.uid, "account deleted");
        Ok(())
    }

    pub async fn convert(&self, caller: &Caller, id: &str, to: &str) -> Result<()> {
        let to = parse_kind(to)?;
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
        self.changed(id, change::CONVERTED);
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

    /// The audit log, for administrators.
    pub fn audit_log(&self, caller: &Caller, limit: usize) -> Result<Vec<AuditEntry>> {
        if !caller.admin {
            return Err(self.admin_only("read the audit log"));
        }
        Ok(self.store.audit(limit)?)
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
}
