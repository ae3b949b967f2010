//! Sending: who may send with which account, turning a request into the exact bytes to
//! deliver, and managing one's own queued messages. The queue itself is in `queue`.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

use crate::accounts::{Account, Accounts};
use crate::authz::Caller;
use crate::config::Config;
use crate::delivery::Relay;
use crate::error::{Error, Result};
use crate::queue::{Outgoing, Queue, Record};
use crate::{notices, validate};

/// More than this many recipients on one message is a mail-merge mistake: one message per
/// family is what `SendBatch` is for.
pub const MAX_RECIPIENTS: usize = 100;
pub const MAX_SUBJECT_CHARS: usize = 250;
pub const MAX_BATCH: usize = 10_000;
/// The row key holding a template message's recipients.
pub const ADDRESS_KEY: &str = "email";
/// The row key naming the row's file, so that a dry run can tell which rows will have one.
pub const ATTACHMENT_KEY: &str = "attachment";

/// A message as a client asks for it.
#[derive(Default)]
pub struct Request {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// File name, content type, and the open file the client passed.
    pub attachments: Vec<(String, String, std::fs::File)>,
}

pub struct Outbox {
    config: Arc<Config>,
    accounts: Arc<Accounts>,
    queue: Arc<Queue>,
    relay: Arc<Relay>,
}

impl Outbox {
    pub fn new(
        config: Arc<Config>,
        accounts: Arc<Accounts>,
        queue: Arc<Queue>,
        relay: Arc<Relay>,
    ) -> Self {
        Outbox {
            config,
            accounts,
            queue,
            relay,
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
        if account.kind == crate::accounts::Kind::Establishment && !caller.send_establishment {
            return Err(Error::NotAuthorized(format!(
                "polkit does not allow you to send with the establishment address (action {})",
                crate::authz::ACTION_SEND_ESTABLISHMENT
            )));
        }
        let submitter = caller.uid;
        let batch = requests.len() > 1;
        // Building (MIME, base64 attachments) is most of a batch's CPU: one share per core.
        let shares = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(requests.len().div_ceil(16));
        let per_share = requests.len().div_ceil(shares);
        let mut requests = requests.into_iter().enumerate().peekable();
        let mut tasks = Vec::with_capacity(shares);
        while requests.peek().is_some() {
            let share: Vec<(usize, Request)> = requests.by_ref().take(per_share).collect();
            let config = self.config.clone();
            let account = account.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                share
                    .into_iter()
                    .map(|(n, r)| {
                        build(&config, &account, r)
                            .map(|(m, bytes)| {
                                let mut out = packaged(&m, bytes, &account.id, submitter, false);
                                out.archive_to = account.keys.as_ref().map(|k| k.recipient.clone());
                                out
                            })
                            .map_err(|e| if batch { in_batch(e, n) } else { e })
                    })
                    .collect::<Result<Vec<Outgoing>>>()
            }));
        }
        let mut outgoing = Vec::new();
        for task in tasks {
            // Shares are in order, so the first error met is the first refused message.
            outgoing.extend(task.await.map_err(|e| Error::Internal(e.to_string()))??);
        }
        let count = outgoing.len();
        let records = self.queue.enqueue(outgoing).await?;
        tracing::info!(uid = caller.uid, count, "messages queued");
        Ok(records.into_iter().map(|r| r.id).collect())
    }

    pub fn get(&self, caller: &Caller, id: &str) -> Result<Record> {
        let r = self.queue.get(id)?;
        if may_see(caller, &r) {
            Ok(shown(r, self.queue.pause().as_ref()))
        } else {
            Err(crate::queue::Error::NotFound(id.to_owned()).into())
        }
    }

    pub fn list(&self, caller: &Caller) -> Result<Vec<Record>> {
        let pause = self.queue.pause();
        Ok(self
            .queue
            .list()?
            .into_iter()
            .filter(|r| may_see(caller, r))
            .map(|r| shown(r, pause.as_ref()))
            .collect())
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

    pub fn templates(&self) -> std::collections::BTreeMap<String, crate::templates::Template> {
        crate::templates::load(&self.config.templates_dir)
    }

    fn template(&self, name: &str) -> Result<crate::templates::Template> {
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
    ) -> Result<crate::templates::Rendered> {
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
        // Somebody checked the relay: waiting mail need not sit out the pause.
        self.queue.relay_reachable();
        Ok(report)
    }
}

/// A message waiting out a relay pause says why, though nothing was tried for it.
fn shown(mut r: Record, pause: Option<&(String, u64)>) -> Record {
    if let Some((reason, seconds)) = pause
        && r.state == crate::queue::MsgState::Queued
        && r.last_reply.is_empty()
    {
        r.last_reply = format!(
            "waiting: the relay is unreachable ({reason}); next try in {} min",
            seconds.div_ceil(60)
        );
    }
    r
}

/// Submitters see their own messages; administrators manage the whole queue.
fn may_see(caller: &Caller, r: &Record) -> bool {
    caller.admin || r.submitter == caller.uid
}

fn in_batch(e: Error, n: usize) -> Error {
    let prefix = |m: String| format!("message {}: {m}", n + 1);
    match e {
        Error::InvalidInput(m) => Error::InvalidInput(prefix(m)),
        Error::TooLarge(m) => Error::TooLarge(prefix(m)),
        other => other,
    }
}

fn addresses(what: &str, list: &[String]) -> Result<Vec<Mailbox>> {
    list.iter()
        .map(|a| {
            let a =
                validate::address(a).map_err(|m| Error::InvalidInput(format!("{what}: {m}")))?;
            Ok(Mailbox::new(
                None,
                a.parse()
                    .map_err(|e| Error::InvalidInput(format!("{what}: {e}")))?,
            ))
        })
        .collect()
}

/// The exact message that will be sent, every header checked, and its bytes (formatted once:
/// a 20 KB copy per message is not free in a batch of thousands).
pub fn build(config: &Config, account: &Account, r: Request) -> Result<(Message, Vec<u8>)> {
    let max = config.queue.max_message_bytes;
    let to = addresses("To", &r.to)?;
    let cc = addresses("Cc", &r.cc)?;
    let bcc = addresses("Bcc", &r.bcc)?;
    let count = to.len() + cc.len() + bcc.len();
    if count == 0 {
        return Err(Error::InvalidInput("the message has no recipient".into()));
    }
    if count > MAX_RECIPIENTS {
        return Err(Error::InvalidInput(format!(
            "{count} recipients: at most {MAX_RECIPIENTS} per message (send one message per family)"
        )));
    }
    let subject = validate::one_line("subject", &r.subject, MAX_SUBJECT_CHARS)
        .map_err(Error::InvalidInput)?;
    if r.text.contains('\0') || r.html.as_deref().is_some_and(|h| h.contains('\0')) {
        return Err(Error::InvalidInput(
            "the body contains a NUL character".into(),
        ));
    }
    let mut builder =
        notices::builder(config, account, &subject).map_err(|e| Error::Internal(e.to_string()))?;
    for m in to {
        builder = builder.to(m);
    }
    for m in cc {
        builder = builder.cc(m);
    }
    for m in bcc {
        builder = builder.bcc(m);
    }

    let mut total = r.text.len() as u64 + r.html.as_ref().map_or(0, |h| h.len() as u64);
    let mut attachments = Vec::new();
    for (name, content_type, file) in r.attachments {
        let name =
            validate::one_line("attachment name", &name, 200).map_err(Error::InvalidInput)?;
        if name.contains(['/', '\\']) {
            return Err(Error::InvalidInput(format!(
                "attachment name `{name}` must be a file name, not a path"
            )));
        }
        let content_type = ContentType::parse(content_type.trim()).map_err(|_| {
            Error::InvalidInput(format!(
                "attachment `{name}`: `{content_type}` is not a content type (e.g. application/pdf)"
            ))
        })?;
        let mut bytes = Vec::new();
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::InvalidInput(format!("attachment `{name}` cannot be read: {e}")))?;
        total += bytes.len() as u64;
        if total > max {
            return Err(too_large(max));
        }
        attachments.push(Attachment::new(name).body(bytes, content_type));
    }

    let body = match r.html {
        None if attachments.is_empty() => {
            return check_size(
                builder.singlepart(text_part(ContentType::TEXT_PLAIN, r.text)),
                max,
            );
        }
        None => MultiPart::mixed().singlepart(text_part(ContentType::TEXT_PLAIN, r.text)),
        Some(html) => {
            let alternative = MultiPart::alternative()
                .singlepart(text_part(ContentType::TEXT_PLAIN, r.text))
                .singlepart(text_part(ContentType::TEXT_HTML, html));
            if attachments.is_empty() {
                alternative
            } else {
                MultiPart::mixed().multipart(alternative)
            }
        }
    };
    let body = attachments.into_iter().fold(body, |m, a| m.singlepart(a));
    check_size(builder.multipart(body), max)
}

/// Text as it was typed, in 8 bits, as most mail programs send it: no quoted-printable to
/// inflate every accent to six bytes and to cost more CPU than the rest of a batch. The relay
/// must announce 8BITMIME (RFC 6152; every current one does), or the message fails at once
/// saying so. A line over 998 bytes falls back to quoted-printable.
fn text_part(content_type: ContentType, text: String) -> SinglePart {
    use lettre::message::Body;
    use lettre::message::header::ContentTransferEncoding;
    let body =
        Body::new_with_encoding(text, ContentTransferEncoding::EightBit).unwrap_or_else(Body::new);
    SinglePart::builder().header(content_type).body(body)
}

fn check_size(
    built: std::result::Result<Message, lettre::error::Error>,
    max: u64,
) -> Result<(Message, Vec<u8>)> {
    let message = built.map_err(|e| Error::InvalidInput(e.to_string()))?;
    let bytes = message.formatted();
    if bytes.len() as u64 > max {
        return Err(too_large(max));
    }
    Ok((message, bytes))
}

fn too_large(max: u64) -> Error {
    Error::TooLarge(format!(
        "the message is over the limit of {:.1} MB set by the administrator (max_message_bytes)",
        max as f64 / 1_000_000.0
    ))
}

/// What the queue keeps of a built message: its bytes as sent and its envelope.
pub fn package(message: &Message, account: &str, submitter: u32, notice: bool) -> Outgoing {
    packaged(message, message.formatted(), account, submitter, notice)
}

fn packaged(
    message: &Message,
    bytes: Vec<u8>,
    account: &str,
    submitter: u32,
    notice: bool,
) -> Outgoing {
    let envelope = message.envelope();
    let header = |name: &str| {
        message
            .headers()
            .get_raw(name)
            .map(|v| {
                v.split(',')
                    .map(|a| a.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let mut to = header("To");
    to.extend(header("Cc"));
    Outgoing {
        account: account.to_owned(),
        submitter,
        notice,
        archive_to: None,
        message_id: message
            .headers()
            .get_raw("Message-ID")
            .unwrap_or_default()
            .to_owned(),
        envelope_from: envelope.from().map(|a| a.to_string()).unwrap_or_default(),
        recipients: envelope.to().iter().map(|a| a.to_string()).collect(),
        to,
        bytes,
    }
}
