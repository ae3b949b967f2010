//! `org.postecole.Mail1.Accounts`: setting up and administering sender accounts.

use postecole_dbus::{AccountInfo, AuditEntry, CallerInfo};

use std::sync::Arc;

use postecole_dbus::Error as BusError;
use zbus::interface;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;

use crate::accounts::Accounts;
use crate::authz;
use crate::authz::Authority;
use crate::model::Account;

pub struct AccountsService {
    accounts: Arc<Accounts>,
    authority: Arc<Authority>,
}

impl AccountsService {
    pub fn new(accounts: Arc<Accounts>, authority: Arc<Authority>) -> Self {
        AccountsService {
            accounts,
            authority,
        }
    }
}

pub fn account_info(account: &Account) -> AccountInfo {
    AccountInfo {
        id: account.id.clone(),
        kind: account.kind.as_str().into(),
        label: account.label.clone(),
        address: account.address.clone(),
        state: account.state.as_str().into(),
        owner: authz::name_of(account.owner),
        staff: account.staff.clone(),
        question: account
            .secret
            .as_ref()
            .map(|s| s.question.clone())
            .unwrap_or_default(),
        created: account.created,
    }
}

#[interface(name = "org.postecole.Mail1.Accounts")]
impl AccountsService {
    #[zbus(out_args("id"))]
    async fn create_account(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        kind: &str,
        label: &str,
        address: &str,
    ) -> Result<String, BusError> {
        // Only administrators set up establishment accounts: that one may prompt them.
        let caller = if kind == "establishment" {
            self.authority.administrator(&hdr).await?
        } else {
            self.authority.caller(&hdr).await?
        };
        let account = self.accounts.create(&caller, kind, label, address).await?;
        Ok(account.id)
    }

    async fn resend_code(&self, #[zbus(header)] hdr: Header<'_>, id: &str) -> Result<(), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.accounts.resend_code(&caller, id).await?;
        Ok(())
    }

    async fn confirm_code(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        id: &str,
        code: &str,
    ) -> Result<(), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.accounts.confirm_code(&caller, id, code).await?;
        Ok(())
    }

    async fn set_secret(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        id: &str,
        question: &str,
        answer: &str,
    ) -> Result<(), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.accounts
            .set_secret(&caller, id, question, answer)
            .await?;
        Ok(())
    }

    async fn add_staff(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        id: &str,
        user: &str,
    ) -> Result<(), BusError> {
        let caller = self.authority.administrator(&hdr).await?;
        self.accounts.add_staff(&caller, id, user).await?;
        Ok(())
    }

    async fn remove_staff(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        id: &str,
        user: &str,
    ) -> Result<(), BusError> {
        let caller = self.authority.administrator(&hdr).await?;
        self.accounts.remove_staff(&caller, id, user).await?;
        Ok(())
    }

    #[zbus(out_args("accounts"))]
    async fn list_accounts(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<Vec<AccountInfo>, BusError> {
        let caller = self.authority.caller(&hdr).await?;
        Ok(self
            .accounts
            .list(&caller)?
            .iter()
            .map(account_info)
            .collect())
    }

    #[zbus(out_args("account"))]
    async fn get_account(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        id: &str,
    ) -> Result<AccountInfo, BusError> {
        let caller = self.authority.caller(&hdr).await?;
        Ok(account_info(&self.accounts.get(&caller, id)?))
    }

    async fn delete_account(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        id: &str,
    ) -> Result<(), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.accounts.delete(&caller, id, false).await?;
        Ok(())
    }

    async fn delete_account_and_archive(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        id: &str,
    ) -> Result<(), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.accounts.delete(&caller, id, true).await?;
        Ok(())
    }

    async fn convert_account(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        id: &str,
        kind: &str,
    ) -> Result<(), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.accounts.convert(&caller, id, kind).await?;
        Ok(())
    }

    async fn set_default_account(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        id: &str,
    ) -> Result<(), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.accounts.set_default(&caller, id)
    }

    #[zbus(out_args("id"))]
    async fn get_default_account(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<String, BusError> {
        let caller = self.authority.caller(&hdr).await?;
        Ok(self.accounts.default_account(&caller)?.unwrap_or_default())
    }

    #[zbus(out_args("entries"))]
    async fn audit_log(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, BusError> {
        let caller = self.authority.administrator(&hdr).await?;
        Ok(self
            .accounts
            .audit_log(&caller, limit as usize)?
            .into_iter()
            .map(|e| AuditEntry {
                time: e.time,
                uid: e.uid,
                user: e.user,
                action: e.action,
                account: e.account,
                outcome: e.outcome,
            })
            .collect())
    }

    /// Never prompts: a client asks it to decide what to show, not to do anything.
    #[zbus(out_args("caller"))]
    async fn who_am_i(&self, #[zbus(header)] hdr: Header<'_>) -> Result<CallerInfo, BusError> {
        let caller = self.authority.caller(&hdr).await?;
        Ok(CallerInfo {
            user: caller.name,
            admin: caller.admin,
        })
    }

    /// Carries only the id and what happened: anyone on the bus receives signals, and the
    /// details are for those allowed to call `GetAccount`.
    #[zbus(signal)]
    pub(crate) async fn account_changed(
        emitter: &SignalEmitter<'_>,
        id: &str,
        change: &str,
    ) -> zbus::Result<()>;
}
