//! The D-Bus skin: resolves who is calling, calls into `accounts`, maps errors to
//! `org.postecole.Mail1.Error.*` and emits signals. No decision is taken here.

use std::sync::Arc;

use std::collections::HashMap;

use postecole_dbus::{
    AccountInfo, ArchivedInfo, Attachment, AuditEntry, Error as BusError, MessageInfo,
    OutgoingMessage, RowAttachment, TemplateInfo,
};
use zbus::OwnedFd;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, interface};

use crate::accounts::{Account, Accounts, Unlock, change};
use crate::authz::{self, Caller};
use crate::error::Error;
use crate::outbox::{Outbox, Request};
use crate::queue::Record;

pub struct AccountsService {
    accounts: Arc<Accounts>,
    policy: Arc<Policy>,
}

impl AccountsService {
    pub fn new(accounts: Arc<Accounts>, policy: Arc<Policy>) -> Self {
        AccountsService { accounts, policy }
    }
}

/// How callers are judged: from `admin_group`, or by asking polkit.
pub struct Policy {
    pub admin_group: String,
    pub polkit: bool,
    /// Unique bus name → uid. The bus never gives a unique name to a second connection, and a
    /// connection's uid cannot change, so asking the bus once per client is enough.
    uids: std::sync::Mutex<HashMap<String, u32>>,
}

impl Policy {
    pub fn new(admin_group: String, polkit: bool) -> Policy {
        Policy {
            admin_group,
            polkit,
            uids: Default::default(),
        }
    }

    async fn uid(&self, conn: &Connection, sender: &str) -> Result<u32, BusError> {
        if let Some(uid) = self.uids.lock().unwrap().get(sender) {
            return Ok(*uid);
        }
        let dbus = zbus::fdo::DBusProxy::builder(conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(internal)?;
        let name = zbus::names::UniqueName::try_from(sender).map_err(internal)?;
        let uid = dbus
            .get_connection_unix_user(name.into())
            .await
            .map_err(internal)?;
        let mut uids = self.uids.lock().unwrap();
        // Gone clients are not tracked; a bound keeps the map small on a long-lived bus.
        if uids.len() >= 1024 {
            uids.clear();
        }
        uids.insert(sender.to_owned(), uid);
        Ok(uid)
    }
}

/// Asks polkit about `action` for the sender of this call (its bus name: polkit then checks
/// the process and session behind it, never the daemon's own).
async fn polkit_allows(
    conn: &Connection,
    hdr: &Header<'_>,
    action: &str,
) -> Result<bool, BusError> {
    use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};
    let subject = Subject::new_for_message_header(hdr).map_err(internal)?;
    let authority = AuthorityProxy::new(conn).await.map_err(|e| {
        tracing::error!(error = %e, "polkit unreachable");
        BusError::NotAuthorized("polkit, which decides who may do this, cannot be reached".into())
    })?;
    let result = authority
        .check_authorization(
            &subject,
            action,
            &std::collections::HashMap::new(),
            CheckAuthorizationFlags::ALLOW_USER_INTERACTION,
            "",
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, action, "polkit check failed");
            BusError::NotAuthorized(format!("polkit did not answer about {action}"))
        })?;
    Ok(result.is_authorized)
}

/// The caller, with what polkit says about sending with an establishment address.
pub async fn caller_for_send(
    conn: &Connection,
    hdr: &Header<'_>,
    policy: &Policy,
) -> Result<Caller, BusError> {
    let mut caller = caller(conn, hdr, policy).await?;
    if policy.polkit && caller.uid != 0 {
        caller.send_establishment =
            polkit_allows(conn, hdr, authz::ACTION_SEND_ESTABLISHMENT).await?;
    }
    Ok(caller)
}

/// The Unix user behind the connection that sent this call, as the bus daemon knows it.
pub async fn caller(
    conn: &Connection,
    hdr: &Header<'_>,
    policy: &Policy,
) -> Result<Caller, BusError> {
    let sender = hdr
        .sender()
        .ok_or_else(|| BusError::NotAuthorized("the call has no sender".into()))?;
    let uid = policy.uid(conn, sender.as_str()).await?;
    let group = policy.admin_group.to_owned();
    // NSS look-ups may block (LDAP, SSSD).
    let mut caller = tokio::task::spawn_blocking(move || Caller::from_uid(uid, &group))
        .await
        .map_err(internal)?
        .map_err(|e| BusError::NotAuthorized(format!("unknown caller: {e}")))?;
    if policy.polkit && uid != 0 {
        caller.admin = polkit_allows(conn, hdr, authz::ACTION_ADMINISTER).await?;
    }
    Ok(caller)
}

fn internal(e: impl std::fmt::Display) -> BusError {
    tracing::error!(error = %e, "bus failure");
    BusError::Internal("the daemon could not process the call; see its log".into())
}

impl From<Error> for BusError {
    fn from(e: Error) -> Self {
        use Error as E;
        match e {
            E::NotAuthorized(m) => BusError::NotAuthorized(m),
            E::NotFound(m) => BusError::NotFound(m),
            E::InvalidInput(m) => BusError::InvalidInput(m),
            E::WrongCode(m) => BusError::WrongCode(m),
            E::CodeExpired(m) => BusError::CodeExpired(m),
            E::TooManyAttempts(m) => BusError::TooManyAttempts(m),
            E::RateLimited(m) => BusError::RateLimited(m),
            E::InvalidState(m) => BusError::InvalidState(m),
            E::TooLarge(m) => BusError::TooLarge(m),
            E::RelayUnavailable(m) => BusError::RelayUnavailable(m),
            E::Internal(m) => BusError::Internal(m),
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

pub struct OutboxService {
    outbox: Arc<Outbox>,
    policy: Arc<Policy>,
}

impl OutboxService {
    pub fn new(outbox: Arc<Outbox>, policy: Arc<Policy>) -> Self {
        OutboxService { outbox, policy }
    }
}

pub fn message_info(r: &Record) -> MessageInfo {
    MessageInfo {
        id: r.id.clone(),
        account: r.account.clone(),
        state: r.state.as_str().into(),
        to: r.to.clone(),
        created: r.created,
        attempts: r.attempts,
        next_attempt: r.next_attempt,
        last_reply: r.last_reply.clone(),
        message_id: r.message_id.clone(),
        submitter: authz::name_of(r.submitter),
        size: r.size,
    }
}

fn request(message: OutgoingMessage, attachments: Vec<Attachment>) -> Request {
    Request {
        to: message.to.unwrap_or_default(),
        cc: message.cc.unwrap_or_default(),
        bcc: message.bcc.unwrap_or_default(),
        subject: message.subject.unwrap_or_default(),
        text: message.text.unwrap_or_default(),
        html: message.html.filter(|h| !h.is_empty()),
        attachments: attachments
            .into_iter()
            .map(|(name, content_type, fd)| {
                (
                    name,
                    content_type,
                    std::fs::File::from(std::os::fd::OwnedFd::from(fd)),
                )
            })
            .collect(),
    }
}

#[interface(name = "org.postecole.Mail1.Outbox")]
impl OutboxService {
    #[zbus(out_args("id"))]
    async fn send(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        account: &str,
        message: OutgoingMessage,
        attachments: Vec<Attachment>,
    ) -> Result<String, BusError> {
        let caller = caller_for_send(conn, &hdr, &self.policy).await?;
        let mut ids = self
            .outbox
            .send(&caller, account, vec![request(message, attachments)])
            .await?;
        Ok(ids.remove(0))
    }

    #[zbus(out_args("ids"))]
    async fn send_batch(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        account: &str,
        messages: Vec<(OutgoingMessage, Vec<Attachment>)>,
    ) -> Result<Vec<String>, BusError> {
        let caller = caller_for_send(conn, &hdr, &self.policy).await?;
        let requests = messages.into_iter().map(|(m, a)| request(m, a)).collect();
        Ok(self.outbox.send(&caller, account, requests).await?)
    }

    #[zbus(out_args("message"))]
    async fn get_message(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        id: &str,
    ) -> Result<MessageInfo, BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        Ok(message_info(&self.outbox.get(&caller, id)?))
    }

    #[zbus(out_args("messages"))]
    async fn list_messages(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<MessageInfo>, BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        Ok(self
            .outbox
            .list(&caller)?
            .iter()
            .map(message_info)
            .collect())
    }

    async fn cancel(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        id: &str,
    ) -> Result<(), BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        self.outbox.cancel(&caller, id)?;
        Ok(())
    }

    async fn retry(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        id: &str,
    ) -> Result<(), BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        self.outbox.retry(&caller, id)?;
        Ok(())
    }

    async fn hold(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        id: &str,
    ) -> Result<(), BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        self.outbox.hold(&caller, id)?;
        Ok(())
    }

    async fn release(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        id: &str,
    ) -> Result<(), BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        self.outbox.release(&caller, id)?;
        Ok(())
    }

    #[zbus(out_args("templates"))]
    async fn list_templates(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<Vec<TemplateInfo>, BusError> {
        caller(conn, &hdr, &self.policy).await?;
        Ok(self
            .outbox
            .templates()
            .into_values()
            .map(|t| TemplateInfo {
                name: t.name,
                description: t.description,
                variables: t.variables,
                attachment: t.attachment,
                subject: t.subject,
            })
            .collect())
    }

    #[zbus(out_args("subject", "text", "html"))]
    async fn preview(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        account: &str,
        template: &str,
        variables: HashMap<String, String>,
    ) -> Result<(String, String, String), BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        let r = self
            .outbox
            .preview(&caller, account, template, &variables)?;
        Ok((r.subject, r.text, r.html.unwrap_or_default()))
    }

    // The D-Bus signature fixes the arguments.
    #[allow(clippy::too_many_arguments)]
    #[zbus(out_args("ids", "refused"))]
    async fn send_template(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        account: &str,
        template: &str,
        rows: Vec<HashMap<String, String>>,
        attachments: Vec<RowAttachment>,
        dry_run: bool,
    ) -> Result<(Vec<String>, Vec<(u32, String)>), BusError> {
        let caller = caller_for_send(conn, &hdr, &self.policy).await?;
        let mut by_row: HashMap<usize, Vec<(String, String, std::fs::File)>> = HashMap::new();
        for (row, name, content_type, fd) in attachments {
            by_row.entry(row as usize).or_default().push((
                name,
                content_type,
                std::fs::File::from(std::os::fd::OwnedFd::from(fd)),
            ));
        }
        Ok(self
            .outbox
            .send_template(&caller, account, template, rows, by_row, dry_run)
            .await?)
    }

    #[zbus(out_args("report"))]
    async fn test_relay(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String, BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        Ok(self.outbox.test_relay(&caller).await?)
    }

    /// Carries only the id and the new state; details need `GetMessage`.
    #[zbus(signal)]
    async fn message_changed(
        emitter: &SignalEmitter<'_>,
        id: &str,
        state: &str,
    ) -> zbus::Result<()>;
}

/// Turns the queue's state changes into `MessageChanged` signals.
pub async fn forward_message_events(
    connection: Connection,
    mut events: tokio::sync::broadcast::Receiver<crate::queue::Event>,
) {
    let emitter = match SignalEmitter::new(&connection, postecole_dbus::OBJECT_PATH) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "no MessageChanged signals");
            return;
        }
    };
    loop {
        match events.recv().await {
            Ok(event) => {
                if let Err(e) =
                    OutboxService::message_changed(&emitter, &event.id, event.state.as_str()).await
                {
                    tracing::warn!(error = %e, "MessageChanged signal not sent");
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "MessageChanged signals dropped under load");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

pub struct ArchiveService {
    accounts: Arc<Accounts>,
    policy: Arc<Policy>,
}

impl ArchiveService {
    pub fn new(accounts: Arc<Accounts>, policy: Arc<Policy>) -> Self {
        ArchiveService { accounts, policy }
    }
}

/// A small text file read from a descriptor the client opened (the recovery file).
fn read_key_file(fd: OwnedFd) -> Result<String, BusError> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::from(std::os::fd::OwnedFd::from(fd))
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| BusError::InvalidInput(format!("the recovery file cannot be read: {e}")))?;
    Ok(text)
}

fn unlock_with(answer: &str, key_file: Vec<OwnedFd>) -> Result<Unlock, BusError> {
    let mut files = key_file.into_iter();
    match (files.next(), files.next(), answer.is_empty()) {
        (Some(fd), None, true) => Ok(Unlock::RecoveryFile(read_key_file(fd)?)),
        (None, _, false) => Ok(Unlock::Answer(answer.to_owned())),
        _ => Err(BusError::InvalidInput(
            "give either the answer or one recovery file".into(),
        )),
    }
}

#[interface(name = "org.postecole.Mail1.Archive")]
impl ArchiveService {
    #[zbus(out_args("messages"))]
    async fn list_archive(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        account: &str,
        answer: &str,
        key_file: Vec<OwnedFd>,
    ) -> Result<Vec<ArchivedInfo>, BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        let with = unlock_with(answer, key_file)?;
        Ok(self
            .accounts
            .archived(&caller, account, with, "archive-list")
            .await?
            .into_iter()
            .map(|m| {
                let (subject, to) = crate::archive::summary(&m.bytes);
                ArchivedInfo {
                    id: m.id,
                    created: m.created,
                    subject,
                    to,
                    size: m.bytes.len() as u64,
                }
            })
            .collect())
    }

    #[zbus(out_args("content"))]
    async fn read_archived(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        account: &str,
        message: &str,
        answer: &str,
        key_file: Vec<OwnedFd>,
    ) -> Result<Vec<u8>, BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        let with = unlock_with(answer, key_file)?;
        self.accounts
            .archived(&caller, account, with, "archive-read")
            .await?
            .into_iter()
            .find(|m| m.id == message)
            .map(|m| m.bytes)
            .ok_or_else(|| {
                BusError::NotFound(format!(
                    "no message `{message}` in the archive of {account}"
                ))
            })
    }

    #[zbus(out_args("count"))]
    async fn export_mbox(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        account: &str,
        answer: &str,
        key_file: Vec<OwnedFd>,
        output: OwnedFd,
    ) -> Result<u32, BusError> {
        use std::io::Write;
        let caller = caller(conn, &hdr, &self.policy).await?;
        let with = unlock_with(answer, key_file)?;
        let messages = self
            .accounts
            .archived(&caller, account, with, "archive-export")
            .await?;
        let mut mbox = Vec::new();
        for m in &messages {
            crate::archive::mbox_entry(&mut mbox, &m.sender, m.created, &m.bytes);
        }
        let mut file = std::fs::File::from(std::os::fd::OwnedFd::from(output));
        file.write_all(&mbox)
            .map_err(|e| BusError::InvalidInput(format!("cannot write the export: {e}")))?;
        Ok(messages.len() as u32)
    }

    async fn change_secret(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        account: &str,
        old_answer: &str,
        question: &str,
        answer: &str,
    ) -> Result<(), BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        Ok(self
            .accounts
            .change_secret(&caller, account, old_answer, question, answer)
            .await?)
    }

    async fn recover(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        account: &str,
        key_file: OwnedFd,
        question: &str,
        answer: &str,
    ) -> Result<(), BusError> {
        let caller = caller(conn, &hdr, &self.policy).await?;
        let file = read_key_file(key_file)?;
        Ok(self
            .accounts
            .recover(&caller, account, &file, question, answer)
            .await?)
    }
}
