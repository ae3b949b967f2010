//! `org.postecole.Mail1.Accounts`: setting up and administering sender accounts.

use postecole_dbus::{AccountInfo, AuditEntry};

use std::sync::Arc;

use postecole_dbus::Error as BusError;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, interface};

use crate::accounts::{Accounts, change};
use crate::authz;
use crate::authz::{Policy, caller};
use crate::model::Account;

pub struct AccountsService {
    accounts: Arc<Accounts>,
    policy: Arc<Policy>,
}

impl AccountsService {
    pub fn new(accounts: Arc<Accounts>, policy: Arc<Policy>) -> Self {
        AccountsService { accounts, policy }
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
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        kind: &str,
        label: &str,
        address: &str,
    ) -> Result<String, BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        let account = self.accounts.create(&caller, kind, label, address).await?;
        notify(&emitter, &account.id, change::CREATED).await;
        Ok(account.id)
    }

    async fn resend_code(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        id: &str,
    ) -> Result<(), BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        self.accounts.resend_code(&caller, id).await?;
        notify(&emitter, id, change::CODE_SENT).await;
        Ok(())
    }

    async fn confirm_code(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        id: &str,
        code: &str,
    ) -> Result<(), BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        self.accounts.confirm_code(&caller, id, code).await?;
        notify(&emitter, id, change::VERIFIED).await;
        Ok(())
    }

    async fn set_secret(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        id: &str,
        question: &str,
        answer: &str,
    ) -> Result<(), BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        self.accounts
            .set_secret(&caller, id, question, answer)
            .await?;
        notify(&emitter, id, change::ACTIVATED).await;
        Ok(())
    }

    async fn add_staff(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        id: &str,
        user: &str,
    ) -> Result<(), BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        self.accounts.add_staff(&caller, id, user).await?;
        notify(&emitter, id, change::STAFF).await;
        Ok(())
    }

    async fn remove_staff(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        id: &str,
        user: &str,
    ) -> Result<(), BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        self.accounts.remove_staff(&caller, id, user).await?;
        notify(&emitter, id, change::STAFF).await;
        Ok(())
    }

    #[zbus(out_args("accounts"))]
    async fn list_accounts(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<AccountInfo>, BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
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
        #[zbus(connection)] conn: &Connection,
        id: &str,
    ) -> Result<AccountInfo, BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        Ok(account_info(&self.accounts.get(&caller, id)?))
    }

    async fn delete_account(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        id: &str,
    ) -> Result<(), BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        self.accounts.delete(&caller, id).await?;
        notify(&emitter, id, change::DELETED).await;
        Ok(())
    }

    async fn convert_account(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        id: &str,
        kind: &str,
    ) -> Result<(), BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        self.accounts.convert(&caller, id, kind).await?;
        notify(&emitter, id, change::CONVERTED).await;
        Ok(())
    }

    async fn set_default_account(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        id: &str,
    ) -> Result<(), BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        Ok(self.accounts.set_default(&caller, id)?)
    }

    #[zbus(out_args("id"))]
    async fn get_default_account(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        Ok(self.accounts.default_account(&caller)?.unwrap_or_default())
    }

    #[zbus(out_args("entries"))]
    async fn audit_log(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
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

    /// Carries only the id and what happened: anyone on the bus receives signals, and the
    /// details are for those allowed to call `GetAccount`.
    #[zbus(signal)]
    async fn account_changed(
        emitter: &SignalEmitter<'_>,
        id: &str,
        change: &str,
    ) -> zbus::Result<()>;
}

async fn notify(emitter: &SignalEmitter<'_>, id: &str, what: &str) {
    if let Err(e) = AccountsService::account_changed(emitter, id, what).await {
        tracing::warn!(error = %e, "AccountChanged signal not sent");
    }
}
