//! `mailctl send`: builds the request, opens attachments as the calling user and passes them
//! as file descriptors, and with `--wait` follows the message until it is delivered or failed.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use futures_util::StreamExt;
use postecole_dbus::{AccountsProxy, OutboxProxy, OutgoingMessage};

use crate::Failure;

#[derive(Args)]
pub struct SendArgs {
    /// Account to send with (default: `mailctl account default`).
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
}

fn read(path: &PathBuf, what: &str) -> Result<String, Failure> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| Failure(format!("cannot read the {what} from standard input: {e}")))?;
        return Ok(s);
    }
    std::fs::read_to_string(path)
        .map_err(|e| Failure(format!("cannot read {what} {}: {e}", path.display())))
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

/// `--account`, or the caller's default account.
pub async fn account_or_default(
    connection: &zbus::Connection,
    account: Option<String>,
) -> Result<String, Failure> {
    if let Some(a) = account {
        return Ok(a);
    }
    let id = AccountsProxy::new(connection)
        .await?
        .get_default_account()
        .await?;
    if id.is_empty() {
        return Err(Failure(
            "no --account given and no default account set (mailctl account default ID)".into(),
        ));
    }
    Ok(id)
}

pub async fn send(connection: &zbus::Connection, args: SendArgs) -> Result<(), Failure> {
    let account = account_or_default(connection, args.account).await?;
    let text = match (&args.body, &args.body_file) {
        (Some(body), _) => body.clone(),
        (None, Some(path)) => read(path, "body")?,
        (None, None) => unreachable!("clap requires --body or --body-file"),
    };
    let html = args
        .html_file
        .as_ref()
        .map(|p| read(p, "HTML file"))
        .transpose()?;
    let mut attachments = Vec::new();
    for path in &args.attach {
        let file = std::fs::File::open(path)
            .map_err(|e| Failure(format!("cannot open attachment {}: {e}", path.display())))?;
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
    // Listen before sending, so that no state change is missed.
    let mut changes = if args.wait {
        Some(outbox.receive_message_changed().await?)
    } else {
        None
    };
    let id = outbox.send(&account, message, attachments).await?;
    println!("{id}");
    let Some(changes) = changes.as_mut() else {
        return Ok(());
    };
    // Each state as the daemon announces it; a periodic look covers a missed signal.
    let mut last = String::new();
    loop {
        let announced = match tokio::time::timeout(Duration::from_secs(5), changes.next()).await {
            Ok(Some(signal)) => match signal.args() {
                Ok(args) if *args.id() == id => Some(args.state().to_string()),
                _ => continue,
            },
            _ => None,
        };
        let info = outbox.get_message(&id).await?;
        let state = announced.unwrap_or_else(|| info.state.clone());
        if state == last {
            continue;
        }
        let detail = match state.as_str() {
            "deferred" => format!(
                " ({}; next try {})",
                info.last_reply,
                crate::output::relative(info.next_attempt, crate::output::now())
            ),
            "delivered" | "failed" if !info.last_reply.is_empty() => {
                format!(" ({})", info.last_reply)
            }
            _ => String::new(),
        };
        eprintln!("{state}{detail}");
        match state.as_str() {
            "delivered" => return Ok(()),
            "failed" => return Err(Failure(format!("message {id} failed: {}", info.last_reply))),
            "cancelled" => return Err(Failure(format!("message {id} was cancelled"))),
            _ => {}
        }
        last = state;
    }
}
