//! Sending: who may send with which account, turning a request into the exact bytes to
//! deliver, and managing one's own queued messages. The queue itself is in `queue`.

mod compose;
pub mod templates;

use std::collections::HashMap;
use std::sync::Arc;

use crate::accounts::Accounts;
use crate::authz::Caller;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{Kind, MsgState, Record};
use crate::queue::relay::Relay;
use crate::queue::{self, Outgoing, Queue};
use crate::validate;

pub use compose::{Request, build};

pub const MAX_BATCH: usize = 10_000;
/// The row key holding a template message's recipients.
pub const ADDRESS_KEY: &str = "email";
/// The row key naming the row's file, so that a dry run can tell which rows will have one.
pub const ATTACHMENT_KEY: &str = "attachment";

pub struct Outbox {
    config: Arc<Config>,
    accounts: Arc<Accounts>,
    queue: Arc<Queue>,
    relay: Arc<Relay>,
    /// Room for messages being built, in units of `BUILD_UNIT` bytes (`limits.max_building_bytes`):
    /// concurrent large sends wait their turn instead of each holding its copies in memory.
    building: Arc<tokio::sync::Semaphore>,
    /// One call building at a time per Unix user, so that one user's many calls cannot take
    /// all the room.
    callers: std::sync::Mutex<HashMap<u32, Arc<tokio::sync::Mutex<()>>>>,
}

/// The cores building may use, read once: the standard library reads the cgroup's quota files
/// at every ask.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The unit of `Outbox::building`.
const BUILD_UNIT: u64 = 4096;

impl Outbox {
    pub fn new(
        config: Arc<Config>,
        accounts: Arc<Accounts>,
        queue: Arc<Queue>,
        relay: Arc<Relay>,
    ) -> Self {
        let units = (config.limits.max_building_bytes / BUILD_UNIT).max(1) as usize;
        Outbox {
            config,
            accounts,
            queue,
            relay,
            building: Arc::new(tokio::sync::Semaphore::new(units)),
            callers: Default::default(),
        }
    }

    /// Builds every message, then queues them all in one durable commit; nothing is queued if
    /// any is refused.
    pub async fn send(
        &self,
        caller: &Caller,
        account: &str,
        requests: Vec<Request>,
    ) -> Result<Vec<String>> {
        if requests.is_empty() {
            return Err(Error::InvalidInput("no message to send".into()));
        }
        if requests.len() > MAX_BATCH {
            return Err(Error::InvalidInput(format!(
                "at most {MAX_BATCH} messages in one batch"
            )));
        }
        let account = self.accounts.for_sending(caller, account)?;
        if account.kind == Kind::Establishment && !caller.send_establishment {
            return Err(Error::NotAuthorized(format!(
                "polkit does not allow you to send with the establishment address (action {})",
                crate::authz::ACTION_SEND_ESTABLISHMENT
            )));
        }
        let limits = &self.config.limits;
        let quota = (!caller.admin).then_some(queue::Quota {
            max_messages: limits.max_queued_messages,
            max_bytes: limits.max_queued_bytes,
        });
        let weight = building_weight(&requests);
        if let Some(quota) = quota {
            let recipients: usize = requests
                .iter()
                .map(|r| r.to.len() + r.cc.len() + r.bcc.len())
                .sum();
            check_recipients(recipients as u64, limits.max_recipients_per_call)?;
            let adding = queue::Usage {
                messages: requests.len() as u64,
                bytes: 0,
            };
            quota
                .admit(self.queue.usage(caller.uid), adding)
                .map_err(Error::QuotaExceeded)?;
        }
        if weight > limits.max_building_bytes {
            return Err(Error::QuotaExceeded(format!(
                "this call carries about {:.1} MB of messages; at most {:.1} MB can be built at once (max_building_bytes): send fewer messages or attachments per call",
                weight as f64 / 1e6,
                limits.max_building_bytes as f64 / 1e6
            )));
        }
        self.queue.check_disk(weight)?;
        let mine = self
            .callers
            .lock()
            .unwrap()
            .entry(caller.uid)
            .or_default()
            .clone();
        let _mine = mine.lock().await;
        let _room = self
            .building
            .acquire_many(weight.div_ceil(BUILD_UNIT).max(1) as u32)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let submitter = caller.uid;
        let batch = requests.len() > 1;
        // Building (MIME, base64 attachments) is most of a batch's CPU: one share per core.
        let shares = cores().min(requests.len().div_ceil(16));
        let per_share = requests.len().div_ceil(shares);
        let mut requests = requests.into_iter().enumerate().peekable();
        let mut shares = Vec::with_capacity(shares);
        while requests.peek().is_some() {
            shares.push(requests.by_ref().take(per_share).collect::<Vec<_>>());
        }
        let share = {
            let config = self.config.clone();
            let account = account.clone();
            move |share: Vec<(usize, Request)>| {
                share
                    .into_iter()
                    .map(|(n, r)| {
                        build(&config, &account, r)
                            .map(|(m, bytes)| {
                                let mut out =
                                    queue::packaged(&m, bytes, &account.id, submitter, false);
                                out.archive_to = account.keys.as_ref().map(|k| k.recipient.clone());
                                out
                            })
                            .map_err(|e| if batch { in_batch(e, n) } else { e })
                    })
                    .collect::<Result<Vec<Outgoing>>>()
            }
        };
        let records = if shares.len() == 1 {
            // One share (a single message, a small batch): built and committed on the same
            // blocking thread, a thread hop less before the reply.
            let queue = self.queue.clone();
            let only = shares.pop().expect("one share");
            let records = tokio::task::spawn_blocking(move || {
                Ok::<_, Error>(queue.commit(share(only)?, quota)?)
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
            self.queue.admitted(&records);
            records
        } else {
            let tasks: Vec<_> = shares
                .into_iter()
                .map(|s| {
                    let share = share.clone();
                    tokio::task::spawn_blocking(move || share(s))
                })
                .collect();
            let mut outgoing = Vec::new();
            for task in tasks {
                // Shares are in order, so the first error met is the first refused message.
                outgoing.extend(task.await.map_err(|e| Error::Internal(e.to_string()))??);
            }
            self.queue.enqueue_within(outgoing, quota).await?
        };
        let count = records.len();
        tracing::info!(uid = caller.uid, count, "messages queued");
        Ok(records.into_iter().map(|r| r.id).collect())
    }

    pub fn get(&self, caller: &Caller, id: &str) -> Result<Record> {
        let r = self.queue.get(id)?;
        if may_see(caller, &r, &self.accounts.hidden_from(caller)?) {
            Ok(shown(r, self.waiting_reason().as_ref()))
        } else {
            Err(queue::Error::NotFound(id.to_owned()).into())
        }
    }

    pub fn list(&self, caller: &Caller) -> Result<Vec<Record>> {
        let pause = self.waiting_reason();
        let hidden = self.accounts.hidden_from(caller)?;
        Ok(self
            .queue
            .list()?
            .into_iter()
            .filter(|r| may_see(caller, r, &hidden))
            .map(|r| shown(r, pause.as_ref()))
            .collect())
    }

    /// The caller's page of the records `filter` wants (see `queue::Filter`).
    pub fn find(&self, caller: &Caller, filter: &queue::Filter) -> Result<queue::Page> {
        let pause = self.waiting_reason();
        let hidden = self.accounts.hidden_from(caller)?;
        let mut page = self.queue.find(filter, |r| may_see(caller, r, &hidden))?;
        page.records = page
            .records
            .into_iter()
            .map(|r| shown(r, pause.as_ref()))
            .collect();
        Ok(page)
    }

    pub fn cancel(&self, caller: &Caller, id: &str) -> Result<Record> {
        self.get(caller, id)?;
        Ok(self.queue.cancel(id)?)
    }

    pub fn retry(&self, caller: &Caller, id: &str) -> Result<Record> {
        self.get(caller, id)?;
        Ok(self.queue.retry(id)?)
    }

    pub fn hold(&self, caller: &Caller, id: &str) -> Result<Record> {
        self.get(caller, id)?;
        Ok(self.queue.hold(id)?)
    }

    pub fn release(&self, caller: &Caller, id: &str) -> Result<Record> {
        self.get(caller, id)?;
        Ok(self.queue.release(id)?)
    }

    pub fn templates(&self) -> std::collections::BTreeMap<String, templates::Template> {
        templates::load(&self.config.templates_dir)
    }

    fn template(&self, name: &str) -> Result<templates::Template> {
        self.templates().remove(name).ok_or_else(|| {
            Error::NotFound(format!(
                "no template `{name}` (see `mailctl template list`)"
            ))
        })
    }

    pub fn preview(
        &self,
        caller: &Caller,
        account: &str,
        template: &str,
        row: &HashMap<String, String>,
    ) -> Result<templates::Rendered> {
        self.accounts.for_sending(caller, account)?;
        self.template(template)?
            .render(row, &[ADDRESS_KEY, ATTACHMENT_KEY])
            .map_err(Error::InvalidInput)
    }

    /// One message per row, in one durable commit. Rows that cannot be mailed (no address, a
    /// bad one, no attachment where one is expected) are reported and left out; a missing or
    /// unknown variable refuses everything, since the letter itself would be wrong.
    ///
    /// The system bus carries at most 16 descriptors and 32 MiB per message, so a client checks
    /// all rows in one dry run (naming each row's file under `attachment`), then sends them in
    /// chunks with their descriptors.
    pub async fn send_template(
        &self,
        caller: &Caller,
        account: &str,
        template: &str,
        rows: Vec<HashMap<String, String>>,
        mut attachments: HashMap<usize, Vec<(String, String, std::fs::File)>>,
        dry_run: bool,
    ) -> Result<(Vec<String>, Vec<(u32, String)>)> {
        let template = self.template(template)?;
        let mut requests = Vec::new();
        let mut refused = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let rendered = template
                .render(row, &[ADDRESS_KEY, ATTACHMENT_KEY])
                .map_err(|e| {
                    Error::InvalidInput(format!("row {}: {e}; nothing was sent", i + 1))
                })?;
            let to: Vec<String> = row
                .get(ADDRESS_KEY)
                .map(|a| {
                    a.split([',', ';'])
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if to.is_empty() {
                refused.push((i as u32, "no address".to_owned()));
                continue;
            }
            if let Some(bad) = to.iter().find(|a| validate::address(a).is_err()) {
                refused.push((i as u32, format!("invalid address `{bad}`")));
                continue;
            }
            if let Err(e) =
                compose::checked_text(&rendered.subject, &rendered.text, rendered.html.as_deref())
            {
                refused.push((i as u32, e));
                continue;
            }
            let files = attachments.remove(&i).unwrap_or_default();
            let announced = dry_run && row.get(ATTACHMENT_KEY).is_some_and(|a| !a.is_empty());
            if template.attachment && files.is_empty() && !announced {
                refused.push((i as u32, "no attachment".to_owned()));
                continue;
            }
            requests.push(Request {
                to,
                subject: rendered.subject,
                text: rendered.text,
                html: rendered.html,
                attachments: files,
                ..Request::default()
            });
        }
        if dry_run || requests.is_empty() {
            self.accounts.for_sending(caller, account)?;
            return Ok((Vec::new(), refused));
        }
        let ids = self.send(caller, account, requests).await?;
        Ok((ids, refused))
    }

    pub async fn test_relay(&self, caller: &Caller) -> Result<String> {
        tracing::info!(uid = caller.uid, "relay test");
        let report = self.relay.test().await.map_err(Error::RelayUnavailable)?;
        // Somebody checked the relay: waiting mail need not sit out the pause or its back-off.
        self.queue.relay_reachable();
        let forward = self.queue.bring_deferred_forward()?;
        if forward > 0 {
            tracing::info!(
                messages = forward,
                "deferred mail tried again after a relay test"
            );
        }
        Ok(report)
    }

    /// The relay as configured, for an administrator's eyes: never its password.
    pub fn relay_settings(&self, caller: &Caller) -> Result<postecole_dbus::RelayInfo> {
        if !caller.admin {
            return Err(Error::NotAuthorized(format!(
                "only an administrator (root or a member of the group `{}`) can read the relay's settings",
                self.config.admin_group
            )));
        }
        let paused = self
            .queue
            .pause()
            .map(|(reason, _)| reason)
            .unwrap_or_default();
        let Some(relay) = &self.config.relay else {
            return Ok(postecole_dbus::RelayInfo {
                kind: "local".into(),
                directory: self.config.local_mail_dir().display().to_string(),
                paused,
                ..Default::default()
            });
        };
        Ok(postecole_dbus::RelayInfo {
            kind: "smtp".into(),
            host: relay.host.clone(),
            port: relay.port,
            tls: match relay.tls {
                crate::config::TlsMode::Starttls => "starttls",
                crate::config::TlsMode::Tls => "tls",
                crate::config::TlsMode::None => "none",
            }
            .into(),
            username: relay.username.clone().unwrap_or_default(),
            sender: relay.sender.clone().unwrap_or_default(),
            allowed_sender_domains: relay.allowed_sender_domains.clone().unwrap_or_default(),
            directory: String::new(),
            paused,
        })
    }
}

impl Outbox {
    /// Why waiting mail is not being sent, if it is not: the relay needs a new login, or
    /// delivery is paused.
    fn waiting_reason(&self) -> Option<(String, u64)> {
        if let Some(why) = self.relay.hold() {
            return Some((format!("the relay needs a new login: {why}"), 0));
        }
        self.queue.pause().map(|(why, secs)| {
            (
                format!("{why}; next try in {} min", secs.div_ceil(60)),
                secs,
            )
        })
    }

    /// Administrators only: whoever completes the login decides which mailbox the PC sends as.
    pub async fn relay_login(&self, caller: &Caller) -> Result<crate::oauth::Login> {
        if !caller.admin {
            return Err(Error::NotAuthorized(
                "only an administrator may log the relay in".into(),
            ));
        }
        if self.relay.oauth().is_none() {
            return Err(Error::InvalidState(
                "the relay does not use OAuth2: set relay.auth = \"xoauth2\" and [relay.oauth2] in postecoled.toml".into(),
            ));
        }
        tracing::info!(uid = caller.uid, "relay login requested");
        self.relay.login().await.map_err(Error::RelayUnavailable)
    }

    /// Anyone may read it (mail-merge shows the estimate); the login's code only administrators.
    pub async fn relay_status(&self, caller: &Caller) -> Result<postecole_dbus::RelayStatus> {
        let limits = self.relay.pacer().limits();
        let queue = self.queue.clone();
        let count = limits.recipients_per_day.is_some();
        let (waiting, recipients) = tokio::task::spawn_blocking(move || queue.waiting(count))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let mut status = postecole_dbus::RelayStatus {
            relay: self.relay.describe(),
            auth: self.relay.auth_kind().into(),
            max_messages_per_minute: limits.messages_per_minute.unwrap_or(0),
            max_recipients_per_day: limits.recipients_per_day.unwrap_or(0),
            max_connections: self.relay.connections() as u32,
            recipients_today: self.relay.pacer().used_today(),
            waiting,
            eta_secs: self.relay.pacer().estimate(waiting, recipients),
            paused: self.queue.pause().map(|(r, _)| r).unwrap_or_default(),
            ..Default::default()
        };
        if let Some(oauth) = self.relay.oauth() {
            let o = oauth.status();
            status.grant = o.grant.into();
            status.username = o.username;
            status.token_expires = o.access_expires_at;
            status.token_refreshed = o.refreshed_at;
            status.needs_login = o.needs_login.unwrap_or_default();
            status.last_error = o.last_error.unwrap_or_default();
            if let Some(login) = o.login {
                status.login_state = login.state.as_str().into();
                status.login_result = match &login.state {
                    crate::oauth::LoginState::Done(r) | crate::oauth::LoginState::Failed(r) => {
                        r.clone()
                    }
                    _ => String::new(),
                };
                if caller.admin {
                    status.login_uri = login.verification_uri;
                    status.login_code = login.user_code;
                    status.login_expires = login.expires_at;
                }
            }
        }
        Ok(status)
    }
}

/// A message waiting out a relay pause says why, though nothing was tried for it.
fn shown(mut r: Record, pause: Option<&(String, u64)>) -> Record {
    if let Some((reason, _)) = pause
        && r.state == MsgState::Queued
        && r.last_reply.is_empty()
    {
        r.last_reply = format!("waiting: {reason}");
    }
    r
}

/// Submitters see their own messages; administrators manage the whole queue but for the
/// messages of `hidden`, other people's personal accounts.
fn may_see(caller: &Caller, r: &Record, hidden: &std::collections::HashSet<String>) -> bool {
    r.submitter == caller.uid || (caller.admin && !hidden.contains(&r.account))
}

/// About how many bytes a call's messages take once built (attachments in base64): what it
/// holds in memory until they are in the spool.
fn building_weight(requests: &[Request]) -> u64 {
    requests
        .iter()
        .map(|r| {
            let text = r.text.len() + r.html.as_ref().map_or(0, |h| h.len());
            let files: u64 = r
                .attachments
                .iter()
                .map(|(_, _, f)| f.metadata().map_or(0, |m| m.len()))
                .sum();
            4096 + text as u64 + files / 3 * 4 + files / 57 * 2
        })
        .sum()
}

/// At most `max` recipients over all messages of one call (`limits.max_recipients_per_call`).
fn check_recipients(count: u64, max: u64) -> Result<()> {
    if count > max {
        return Err(Error::QuotaExceeded(format!(
            "{count} recipients in one call: at most {max} (max_recipients_per_call)"
        )));
    }
    Ok(())
}

fn in_batch(e: Error, n: usize) -> Error {
    let prefix = |m: String| format!("message {}: {m}", n + 1);
    match e {
        Error::InvalidInput(m) => Error::InvalidInput(prefix(m)),
        Error::TooLarge(m) => Error::TooLarge(prefix(m)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_per_call_are_counted_over_the_call() {
        assert!(check_recipients(2_000, 2_000).is_ok());
        let e = check_recipients(2_001, 2_000).unwrap_err();
        assert!(
            matches!(&e, Error::QuotaExceeded(m) if m.contains("max_recipients_per_call")),
            "{e}"
        );
    }

    #[test]
    fn building_weight_counts_attachments_encoded() {
        use std::io::Write;
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![7u8; 300_000]).unwrap();
        let requests = vec![
            Request {
                text: "x".repeat(1000),
                attachments: vec![("a.pdf".into(), "application/pdf".into(), file)],
                ..Request::default()
            },
            Request::default(),
        ];
        let w = building_weight(&requests);
        // 300 KB in base64 is 400 KB plus line ends; the texts and headers are small.
        assert!((400_000..420_000).contains(&w), "{w}");
    }
}
