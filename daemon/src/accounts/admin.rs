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
            let name = user.to_owned();
            // NSS may block (LDAP, SSSD): in the user look-ups' pool, like the caller's own.
            let exists = crate::blocking::USER_LOOKUPS
                .run(caller.uid, move || match authz::staff_group(&name) {
                    Some(group) => authz::group_exists(group),
                    None => authz::uid_of(&name).map(|uid| uid.is_some()),
                })
                .await??;
            if !exists {
                return Err(Error::InvalidInput(match authz::staff_group(user) {
                    Some(group) => format!("there is no Unix group named `{group}` on this PC"),
                    None => format!("there is no Unix user named `{user}` on this PC"),
                }));
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

    /// Deletes the account. Its archive of sent mail is kept (readable with the recovery file,
    /// `mailctl archive open`) unless `with_archive`; says whether an archive was kept.
    pub async fn delete(&self, caller: &Caller, id: &str, with_archive: bool) -> Result<bool> {
        let _guard = self.write.lock().await;
        let account = match self.store.account(id)? {
            // Root may remove a personal account it can neither see nor use, say for a user
            // who left; the audit log keeps who did it.
            Some(a) if caller.uid == 0 && a.kind == Kind::Personal => a,
            _ => self.managed(caller, id)?,
        };
        self.store.remove_account(&account.id)?;
        // Its address's count stays: it is what keeps delete-and-create from mailing it again.
        self.store
            .put_events(&super::setup::account_events_key(&account.id), &[])?;
        let kept = if with_archive {
            if let Err(e) = self.archive.remove_account(&account.id) {
                tracing::error!(account = %id, error = %e, "archive not removed");
            }
            if let Err(e) = self.store.forget_sealed(&account.id) {
                tracing::error!(account = %id, error = %e, "pruned archive entries not forgotten");
            }
            false
        } else {
            self.archive
                .retire(&account.id, &account.address, self.now())
                .unwrap_or_else(|e| {
                    tracing::error!(account = %id, error = %e, "cannot mark the kept archive");
                    true
                })
        };
        let action = if with_archive {
            "delete-with-archive"
        } else {
            "delete"
        };
        self.audit_about(caller, action, &account, "ok");
        self.changed_about(&account, change::DELETED);
        tracing::info!(account = %id, uid = caller.uid, archive_kept = kept, "account deleted");
        Ok(kept)
    }

    pub async fn convert(&self, caller: &Caller, id: &str, to: &str) -> Result<()> {
        let to = parse_kind(to)?;
        let _guard = self.write.lock().await;
        // Only who sees the account learns that it exists: a personal account's owner, an
        // establishment account's administrators and staff.
        let mut account = self.visible(caller, id)?;
        if account.kind == to {
            return Err(Error::InvalidState(format!(
                "account {id} is already {}",
                to.as_str()
            )));
        }
        match to {
            Kind::Personal => {
                if !caller.admin {
                    return Err(self.admin_only("make an establishment address personal"));
                }
                let [member] = account.staff.as_slice() else {
                    return Err(Error::InvalidState(format!(
                        "account {id} has {} staff members; it can become personal only with exactly one, who becomes its owner",
                        account.staff.len()
                    )));
                };
                if let Some(group) = authz::staff_group(member) {
                    return Err(Error::InvalidState(format!(
                        "account {id}'s staff is the group `{group}`; a personal account needs one person as its owner"
                    )));
                }
                account.owner = authz::uid_of(member)?.ok_or_else(|| {
                    Error::InvalidState(format!(
                        "staff member `{member}` no longer exists on this PC"
                    ))
                })?;
                account.staff.clear();
            }
            // A personal account is its owner's alone: only they may hand it to the
            // establishment, and they stay its only staff member until an administrator
            // says otherwise.
            Kind::Establishment => {
                account.staff = vec![caller.name.clone()];
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
        // Entries written before the log knew an account's kind: the account, if it still
        // exists, says whose it is.
        let personal: HashMap<String, u32> = self
            .store
            .accounts()?
            .into_iter()
            .filter(|a| a.kind == Kind::Personal)
            .map(|a| (a.id, a.owner))
            .collect();
        Ok(self
            .store
            .audit(limit)?
            .into_iter()
            .map(|mut e| {
                if e.private_to.is_none() {
                    e.private_to = personal.get(&e.account).copied();
                }
                audit::shown(e, caller)
            })
            .collect())
    }

    /// The personal accounts whose messages an administrator other than root must not see in
    /// the queue: other people's. Empty for anyone else (root sees all; a user sees only what
    /// they submitted).
    pub fn hidden_from(&self, caller: &Caller) -> Result<std::collections::HashSet<String>> {
        if !caller.admin || caller.uid == 0 {
            return Ok(Default::default());
        }
        Ok(self
            .store
            .accounts()?
            .into_iter()
            .filter(|a| a.kind == Kind::Personal && a.owner != caller.uid)
            .map(|a| a.id)
            .collect())
    }

    /// The account, if the caller may send with it now.
    /// The account `id` names, or with "" the caller's default (what `sendmail` and scripts
    /// use: one call instead of two), if it may send now.
    pub fn for_sending(&self, caller: &Caller, id: &str) -> Result<Account> {
        let id = if id.is_empty() {
            &self.default_account(caller)?.ok_or_else(|| {
                Error::NotFound(
                    "you have no default account to send with: choose one with `mailctl account default ID`"
                        .into(),
                )
            })?
        } else {
            id
        };
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
