//! `mailctl send`: builds the request, opens attachments as the calling user and passes them
//! as file descriptors, and with `--wait` follows the message until it is delivered or failed.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::Args;
use postecole_dbus::{AccountsProxy, OutboxProxy, OutgoingMessage};

use crate::changes::Changes;
use crate::{Failure, Status, t};

#[derive(Args)]
pub struct SendArgs {
    /// Account to send with, by id or address (default: `mailctl account default`).
    #[arg(long)]
    account: Option<String>,
    /// Recipient; repeat for several.
    #[arg(long, required = true)]
    to: Vec<String>,
    #[arg(long)]
    cc: Vec<String>,
    /// Hidden recipient: receives the message, appears in no header.
    #[arg(long)]
    bcc: Vec<String>,
    #[arg(long)]
    subject: String,
    /// The text of the message.
    #[arg(
        long,
        conflicts_with = "body_file",
        required_unless_present = "body_file"
    )]
    body: Option<String>,
    /// Read the text of the message from this file ("-" for standard input).
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// An HTML version of the message, shown by mail readers that can.
    #[arg(long)]
    html_file: Option<PathBuf>,
    /// Attach a file (PDF, picture…); repeat for several.
    #[arg(long)]
    attach: Vec<PathBuf>,
    /// Follow the message until it is delivered or has failed.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this many seconds (exit status 75); the message
    /// stays queued.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, requires = "wait")]
    timeout: u64,
}

fn read(path: &PathBuf) -> Result<String, Failure> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| {
            Failure::new(
                Status::NoInput,
                t!("cannot read standard input: {error}", error = e),
            )
        })?;
        return Ok(s);
    }
    std::fs::read_to_string(path).map_err(|e| crate::fail::cannot_read(path, e))
}

/// The content type a mail reader needs to open the file, from its extension.
pub fn content_type(path: &std::path::Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "odt" => "application/vnd.oasis.opendocument.text",
        "ods" => "application/vnd.oasis.opendocument.spreadsheet",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// The caller's default account, if one is set.
pub async fn default_account(connection: &zbus::Connection) -> Result<Option<String>, Failure> {
    let id = AccountsProxy::new(connection)
        .await?
        .get_default_account()
        .await?;
    Ok(Some(id).filter(|id| !id.is_empty()))
}

/// `--account` (id or address), or the caller's default account.
pub async fn account_or_default(
    connection: &zbus::Connection,
    account: Option<String>,
) -> Result<String, Failure> {
    if let Some(a) = account {
        return crate::resolve(connection, &a).await;
    }
    match default_account(connection).await? {
        Some(id) => {
            crate::fail::set_account(&id);
            Ok(id)
        }
        None => Err(Failure::new(
            Status::Usage,
            t!("no --account given and no default account set (mailctl account default ID)"),
        )),
    }
}

pub async fn send(
    connection: &zbus::Connection,
    args: SendArgs,
    json: bool,
) -> Result<(), Failure> {
    let account = account_or_default(connection, args.account).await?;
    let text = match (&args.body, &args.body_file) {
        (Some(body), _) => body.clone(),
        (None, Some(path)) => read(path)?,
        (None, None) => unreachable!("clap requires --body or --body-file"),
    };
    let html = args.html_file.as_ref().map(read).transpose()?;
    let mut attachments = Vec::new();
    for path in &args.attach {
        let file = crate::fail::open_input(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "attachment".into());
        let fd: std::os::fd::OwnedFd = file.into();
        attachments.push((name, content_type(path).to_owned(), fd.into()));
    }
    let message = OutgoingMessage {
        to: Some(args.to),
        cc: Some(args.cc),
        bcc: Some(args.bcc),
        subject: Some(args.subject),
        text: Some(text),
        html,
    };
    let outbox = OutboxProxy::new(connection).await?;
    // Listen before sending, so that no state change is missed; until the id is known, every
    // change is kept.
    let ours = Arc::new(OnceLock::new());
    let changes = if args.wait {
        let ours = ours.clone();
        Some(
            Changes::listen(&outbox, move |id| {
                ours.get().is_none_or(|o: &String| o == id)
            })
            .await?,
        )
    } else {
        None
    };
    let id = outbox.send(&account, message, attachments).await?;
    let _ = ours.set(id.clone());
    let Some(changes) = changes else {
        if json {
            crate::outln!("{}", serde_json::json!({ "id": id }));
        } else {
            crate::outln!("{id}");
        }
        return Ok(());
    };
    if !json {
        crate::outln!("{id}");
        if let Some(eta) = crate::relay::eta_line(&outbox).await {
            eprintln!("{eta}");
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    // Each state as the daemon announces it; a periodic look covers a missed signal.
    let mut last = String::new();
    loop {
        let wait = Duration::from_secs(5).min(
            deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_millis(1)),
        );
        let announced = changes
            .next(wait)
            .await
            .and_then(|c| c.into_iter().find(|(i, _)| *i == id))
            .map(|(_, state)| state);
        let info = outbox.get_message(&id).await?;
        let state = announced.unwrap_or_else(|| info.state.clone());
        let now = crate::output::now();
        if tokio::time::Instant::now() >= deadline
            && !matches!(state.as_str(), "delivered" | "failed" | "cancelled")
        {
            let next = crate::output::next_try(&info, now);
            return Err(Failure::new(
                Status::TempFail,
                t!(
                    "message {id} is still {state} after {seconds} s (next try: {next}); it stays queued and is retried automatically. Follow it with: mailctl queue show {id}",
                    id = id,
                    state = info.state,
                    seconds = args.timeout,
                    next = next
                ),
            )
            .with_partial(crate::output::message_json(&info)));
        }
        if state == last {
            continue;
        }
        let detail = match state.as_str() {
            "deferred" => format!(
                " ({}; {})",
                info.last_reply,
                t!(
                    "next try {when}",
                    when = crate::output::next_try(&info, now)
                )
            ),
            "delivered" | "failed" if !info.last_reply.is_empty() => {
                format!(" ({})", info.last_reply)
            }
            _ => String::new(),
        };
        eprintln!("{}{detail}", crate::output::state(&state));
        match state.as_str() {
            "delivered" => {
                if json {
                    crate::outln!("{}", crate::output::message_json(&info));
                }
                return Ok(());
            }
            "failed" => {
                return Err(Failure::new(
                    Status::Unavailable,
                    t!(
                        "message {id} failed: {reply}",
                        id = id,
                        reply = info.last_reply
                    ),
                )
                .with_partial(crate::output::message_json(&info)));
            }
            "cancelled" => {
                return Err(Failure::new(
                    Status::Data,
                    t!("message {id} was cancelled", id = id),
                ));
            }
            _ => {}
        }
        last = state;
    }
}
