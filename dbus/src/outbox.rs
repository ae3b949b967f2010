use zbus::{DeserializeDict, OwnedFd, SerializeDict, Type, proxy};

use crate::Error;

/// A message to send (`a{sv}`). Absent keys are empty.
#[derive(SerializeDict, DeserializeDict, Type, Debug, Clone, Default, PartialEq)]
#[zbus(signature = "a{sv}")]
pub struct OutgoingMessage {
    pub to: Option<Vec<String>>,
    pub cc: Option<Vec<String>>,
    /// Receive the message but never appear in its headers.
    pub bcc: Option<Vec<String>>,
    pub subject: Option<String>,
    /// The plain-text body.
    pub text: Option<String>,
    /// An optional HTML alternative to `text`.
    pub html: Option<String>,
}

/// One attachment: file name, content type, and an open file descriptor the daemon reads it
/// from, so that it never opens a user's files by path.
pub type Attachment = (String, String, OwnedFd);

/// One queued message as the bus shows it (`a{sv}`); keys are the `--json` field names.
#[derive(SerializeDict, DeserializeDict, Type, Debug, Clone, Default, PartialEq)]
#[zbus(signature = "a{sv}")]
pub struct MessageInfo {
    pub id: String,
    pub account: String,
    /// `queued`, `sending`, `deferred`, `held`, `delivered`, `failed` or `cancelled`.
    pub state: String,
    /// Visible recipients (To and Cc).
    pub to: Vec<String>,
    /// The subject, while the message waits or has failed (delivered mail keeps it in the
    /// archive only, as its recipients).
    pub subject: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub attempts: u32,
    /// When the next attempt is due (0 when none is planned).
    pub next_attempt: u64,
    /// The relay's last reply or the last error.
    pub last_reply: String,
    /// The Message-ID header, the same on every attempt.
    pub message_id: String,
    /// Unix user who submitted it.
    pub submitter: String,
    /// Size of the message as sent, in bytes.
    pub size: u64,
}

/// Which messages `FindMessages` returns (`a{sv}`); absent keys match everything.
#[derive(SerializeDict, DeserializeDict, Type, Debug, Clone, Default, PartialEq)]
#[zbus(signature = "a{sv}")]
pub struct MessageFilter {
    /// These messages only (looked up one by one: cheap whatever the history).
    pub ids: Option<Vec<String>>,
    /// Any of these states.
    pub states: Option<Vec<String>>,
    pub account: Option<String>,
    /// Submitted at or after (seconds since the Unix epoch).
    pub since: Option<u64>,
    /// A piece of a visible recipient's address, any case. Delivered mail keeps its recipients
    /// in the archive only (`ListArchive`).
    pub to: Option<String>,
    /// The `next` of the previous page.
    pub after: Option<u64>,
    /// At most this many (and never more than `MAX_PAGE`).
    pub limit: Option<u32>,
}

/// The largest page `FindMessages` returns, and the most ids one call may name.
pub const MAX_PAGE: usize = 1000;

/// A message template (`a{sv}`).
#[derive(SerializeDict, DeserializeDict, Type, Debug, Clone, Default, PartialEq)]
#[zbus(signature = "a{sv}")]
pub struct TemplateInfo {
    pub name: String,
    pub description: String,
    /// What each row must give, besides `email`.
    pub variables: Vec<String>,
    /// Each row needs its own attachment (e.g. the report's PDF).
    pub attachment: bool,
    pub subject: String,
    /// The text as written, variables as `{{ name }}`.
    pub text: String,
}

/// The relay as `mailctl relay status` shows it (`a{sv}`); never a token. Limits are 0 when
/// unset; times are seconds since the Unix epoch, 0 when unknown.
#[derive(SerializeDict, DeserializeDict, Type, Debug, Clone, Default, PartialEq)]
#[zbus(signature = "a{sv}")]
pub struct RelayStatus {
    /// Where mail goes (host, port, TLS) or the local mail directory.
    pub relay: String,
    /// `none`, `password` or `xoauth2`.
    pub auth: String,
    /// OAuth2: `device_code` or `client_credentials`.
    pub grant: String,
    /// OAuth2: the mailbox the tokens are for.
    pub username: String,
    /// OAuth2: when the current access token expires (0: none).
    pub token_expires: u64,
    /// OAuth2: when the tokens were last obtained or renewed.
    pub token_refreshed: u64,
    /// OAuth2: why mail waits for `mailctl relay login` (with the provider's error code), or "".
    pub needs_login: String,
    /// OAuth2: the last failure to reach the token endpoint, or "".
    pub last_error: String,
    /// The last or current device login: `waiting`, `checking`, `done`, `failed`, or "".
    pub login_state: String,
    /// What the login ended with (the relay's check, or why it failed).
    pub login_result: String,
    /// Administrators only: the address to open and the code to type while a login waits.
    pub login_uri: String,
    pub login_code: String,
    pub login_expires: u64,
    pub max_messages_per_minute: u32,
    pub max_recipients_per_day: u32,
    pub max_connections: u32,
    /// Recipients handed to the relay over the last 24 hours.
    pub recipients_today: u64,
    /// Messages waiting to be sent, and about how long until the last of them leaves.
    pub waiting: u64,
    pub eta_secs: u64,
    /// Why delivery is paused (unreachable relay, throttling, the day's allowance), or "".
    pub paused: String,
}

/// The relay as the daemon is configured to use it (`a{sv}`); never its password.
#[derive(SerializeDict, DeserializeDict, Type, Debug, Clone, Default, PartialEq)]
#[zbus(signature = "a{sv}")]
pub struct RelayInfo {
    /// `smtp`, or `local` when no relay is configured and mail is written as `.eml` files.
    pub kind: String,
    pub host: String,
    pub port: u16,
    /// `starttls`, `tls` or `none`.
    pub tls: String,
    /// The user name the daemon authenticates as; empty when it does not.
    pub username: String,
    /// The envelope sender used for every message, when set; empty otherwise.
    pub sender: String,
    /// The only sender domains the relay accepts, when set.
    pub allowed_sender_domains: Vec<String>,
    /// Where `.eml` files are written (`local`).
    pub directory: String,
    /// Why delivery is paused (the relay could not be reached), or empty.
    pub paused: String,
}

/// A row's attachment for `SendTemplate`: row index (from 0), file name, content type, fd.
pub type RowAttachment = (u32, String, String, OwnedFd);

/// `org.postecole.Mail1.Outbox`: the durable outgoing queue.
#[proxy(
    interface = "org.postecole.Mail1.Outbox",
    default_service = "org.postecole.Mail1",
    default_path = "/org/postecole/Mail1"
)]
pub trait Outbox {
    /// Queues one message once it is safely on disk; returns its id. `account` "" is the
    /// caller's default account.
    fn send(
        &self,
        account: &str,
        message: OutgoingMessage,
        attachments: Vec<Attachment>,
    ) -> Result<String, Error>;
    /// Queues many messages in one durable commit; all or none. Returns their ids in order.
    fn send_batch(
        &self,
        account: &str,
        messages: Vec<(OutgoingMessage, Vec<Attachment>)>,
    ) -> Result<Vec<String>, Error>;
    fn get_message(&self, id: &str) -> Result<MessageInfo, Error>;
    /// The caller's messages; administrators see all.
    fn list_messages(&self) -> Result<Vec<MessageInfo>, Error>;
    /// The messages `filter` wants, oldest first, a page at a time: `next` is 0 on the last
    /// page, else the `after` of the next call.
    fn find_messages(&self, filter: MessageFilter) -> Result<(Vec<MessageInfo>, u64), Error>;
    /// Withdraws a message that has not been sent.
    fn cancel(&self, id: &str) -> Result<(), Error>;
    /// Tries a deferred or failed message again now.
    fn retry(&self, id: &str) -> Result<(), Error>;
    /// Keeps a waiting message from being sent until released.
    fn hold(&self, id: &str) -> Result<(), Error>;
    fn release(&self, id: &str) -> Result<(), Error>;
    /// The built-in templates and the school's own.
    fn list_templates(&self) -> Result<Vec<TemplateInfo>, Error>;
    /// One message rendered with `variables`: (subject, text, html).
    fn preview(
        &self,
        account: &str,
        template: &str,
        variables: std::collections::HashMap<&str, &str>,
    ) -> Result<(String, String, String), Error>;
    /// One message per row (addresses under `email`, `,` or `;` between several), queued in one
    /// durable commit. Rows without a usable address or attachment are left out and reported as
    /// (row index, reason); a missing or unknown variable refuses the whole batch. With
    /// `dry_run`, nothing is queued.
    fn send_template(
        &self,
        account: &str,
        template: &str,
        rows: Vec<std::collections::HashMap<&str, &str>>,
        attachments: Vec<RowAttachment>,
        dry_run: bool,
    ) -> Result<(Vec<String>, Vec<(u32, String)>), Error>;
    /// Connects to the relay (TLS, AUTH as configured) and reports what happened.
    fn test_relay(&self) -> Result<String, Error>;
    /// Administrators: starts the OAuth2 device login of the relay (RFC 8628). Returns the
    /// address to open, the code to type there and when the code expires. The daemon polls the
    /// provider itself; `RelayStatus` tells how it ends.
    fn relay_login(&self) -> Result<(String, String, u64), Error>;
    /// The relay's authentication, sending limits and waiting mail.
    fn relay_status(&self) -> Result<RelayStatus, Error>;
    /// The relay's settings and whether delivery is paused (administrators).
    fn get_relay(&self) -> Result<RelayInfo, Error>;

    /// A message changed state.
    #[zbus(signal)]
    fn message_changed(&self, id: &str, state: &str) -> zbus::Result<()>;
}

impl OutboxProxy<'_> {
    /// Every record `filter` wants, page after page, oldest first.
    pub async fn find_all(&self, mut filter: MessageFilter) -> Result<Vec<MessageInfo>, Error> {
        let mut out = Vec::new();
        loop {
            let (page, next) = self.find_messages(filter.clone()).await?;
            out.extend(page);
            if next == 0 {
                return Ok(out);
            }
            filter.after = Some(next);
        }
    }

    /// The records of these messages, as far as the caller may see them, in calls of
    /// `MAX_PAGE` ids: as cheap as as many `GetMessage`, whatever the history.
    pub async fn find_ids(&self, ids: &[String]) -> Result<Vec<MessageInfo>, Error> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_PAGE) {
            let filter = MessageFilter {
                ids: Some(chunk.to_vec()),
                ..Default::default()
            };
            out.extend(self.find_messages(filter).await?.0);
        }
        Ok(out)
    }
}
