//! sendmail for the scripts, cron jobs and tools that write `sendmail -t -i`: the message on
//! standard input goes out with the caller's default account through postecoled, as
//! `mailctl send` would send it, with the same checks and the same refusals. Exit statuses are
//! sysexits.h's, as sendmail's callers expect.
//!
//! One process per message is how scripts use it, so start-up is most of its cost: one
//! current-thread runtime, one bus connection, proxies that cache nothing, and only the calls
//! the message needs (the default account, its address when `-f` asks for one, `Send`).

// mailctl's failures: the daemon's named errors as sentences that say what to do, and their
// kind. Shared as source rather than copied, as the fuzz targets share mailctl's CSV reader;
// its helpers for mailctl's other commands go unused here.
#[path = "../../ctl/src/fail.rs"]
#[allow(dead_code)]
mod fail;
mod i18n;
mod message;
mod options;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::process::ExitCode;

use crate::fail::{Failure, Status};
use postecole_dbus::{AccountsProxy, OutboxProxy, OutgoingMessage};
use zbus::proxy::CacheProperties;

/// sysexits.h.
mod sysexits {
    pub const USAGE: u8 = 64;
    pub const DATAERR: u8 = 65;
    pub const NOUSER: u8 = 67;
    pub const UNAVAILABLE: u8 = 69;
    pub const SOFTWARE: u8 = 70;
    pub const IOERR: u8 = 74;
    pub const TEMPFAIL: u8 = 75;
    pub const NOPERM: u8 = 77;
}

/// At most this many descriptors travel in one message on the system bus.
const MAX_ATTACHMENTS: usize = 16;

/// What went wrong, kept as it is until the runtime is gone and the caller's language is set.
enum Problem {
    Options(options::Refusal),
    Input(std::io::Error),
    NoRecipient,
    TooManyAttachments(usize),
    Connect(zbus::Error),
    Daemon(postecole_dbus::Error),
    NoDefaultAccount,
    NotTheSender { given: String, address: String },
}

impl From<postecole_dbus::Error> for Problem {
    fn from(e: postecole_dbus::Error) -> Self {
        Problem::Daemon(e)
    }
}

impl From<zbus::Error> for Problem {
    fn from(e: zbus::Error) -> Self {
        Problem::Daemon(postecole_dbus::Error::ZBus(e))
    }
}

/// mailctl's kinds as sysexits.h has them for a sendmail: "no such account" is EX_NOUSER.
fn exit_status(status: Status) -> u8 {
    match status {
        Status::Usage => sysexits::USAGE,
        Status::Data => sysexits::DATAERR,
        Status::NoInput => sysexits::NOUSER,
        Status::Software | Status::Partial => sysexits::SOFTWARE,
        Status::CantCreate => sysexits::IOERR,
        Status::TempFail => sysexits::TEMPFAIL,
        Status::NoPerm => sysexits::NOPERM,
        Status::Unavailable | Status::Other => sysexits::UNAVAILABLE,
    }
}

impl Problem {
    /// The exit status and what to print: a sentence, then the daemon's own words.
    fn explain(self) -> (u8, String, Option<String>) {
        let plain = |status, sentence| (status, sentence, None);
        match self {
            Problem::Options(options::Refusal::Mode(mode)) => plain(
                sysexits::USAGE,
                t!(
                    "{mode}: this sendmail only sends the message on standard input; postecoled delivers and retries by itself (follow it with: mailctl queue list)",
                    mode = mode
                ),
            ),
            Problem::Options(options::Refusal::Unknown(option)) => plain(
                sysexits::USAGE,
                t!("unknown option {option}", option = option),
            ),
            Problem::Options(options::Refusal::MissingValue(option)) => plain(
                sysexits::USAGE,
                t!("option -{option} needs a value", option = option),
            ),
            Problem::Input(e) => plain(
                sysexits::IOERR,
                t!("cannot read standard input: {error}", error = e),
            ),
            Problem::NoRecipient => plain(
                sysexits::USAGE,
                t!(
                    "no recipient: give the addresses as arguments, or use -t to take them from the To, Cc and Bcc headers"
                ),
            ),
            Problem::TooManyAttachments(n) => plain(
                sysexits::DATAERR,
                t!(
                    "the message has {n} attachments; at most {max} can be sent in one message",
                    n = n,
                    max = MAX_ATTACHMENTS
                ),
            ),
            Problem::Connect(e) => plain(
                sysexits::UNAVAILABLE,
                t!("cannot connect to the D-Bus system bus: {error}", error = e),
            ),
            Problem::NoDefaultAccount => plain(
                sysexits::NOUSER,
                t!(
                    "you have no default account to send with. Choose one of yours with: mailctl account default ID (mailctl account list shows them)"
                ),
            ),
            Problem::NotTheSender { given, address } => plain(
                sysexits::NOPERM,
                t!(
                    "-f {given}: mail from this PC leaves with the address of your default account, {address}; leave -f out or give that address",
                    given = given,
                    address = address
                ),
            ),
            Problem::Daemon(e) => {
                let failure = Failure::from(e);
                let detail = match (&failure.detail, &failure.name) {
                    (Some(detail), Some(name)) => Some(format!("postecoled: {detail} [{name}]")),
                    (None, Some(name)) => Some(format!("[{name}]")),
                    (detail, None) => detail.clone(),
                };
                (exit_status(failure.status), failure.message, detail)
            }
        }
    }
}

/// The address in `-f`, bare or between angle brackets.
fn sender_address(given: &str) -> &str {
    let given = given.trim();
    match (given.rfind('<'), given.rfind('>')) {
        (Some(open), Some(close)) if open < close => given[open + 1..close].trim(),
        _ => given,
    }
}

/// Each attachment as an unnamed temporary file: the daemon reads regular files only, and
/// never by a path of the caller's.
fn attachment_files(
    attachments: Vec<(String, String, Vec<u8>)>,
) -> std::io::Result<Vec<postecole_dbus::Attachment>> {
    attachments
        .into_iter()
        .map(|(name, content_type, bytes)| {
            let mut file = tempfile::tempfile()?;
            file.write_all(&bytes)?;
            std::io::Seek::rewind(&mut file)?;
            Ok((name, content_type, OwnedFd::from(file).into()))
        })
        .collect()
}

/// The bus connection and the account to send with: the caller's default, which `Send` finds
/// itself from "" unless `-f` asks to check it first (a call less for every script).
async fn account(sender: Option<String>) -> Result<(zbus::Connection, String), Problem> {
    let connection = zbus::Connection::system().await.map_err(Problem::Connect)?;
    let Some(given) = sender else {
        return Ok((connection, String::new()));
    };
    let accounts = AccountsProxy::builder(&connection)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let account = accounts.get_default_account().await?;
    if account.is_empty() {
        return Err(Problem::NoDefaultAccount);
    }
    let address = accounts.get_account(&account).await?.address;
    if !sender_address(&given).eq_ignore_ascii_case(&address) {
        return Err(Problem::NotTheSender { given, address });
    }
    Ok((connection, account))
}

/// The message on standard input, decoded into what `Send` takes.
fn prepare(
    options: &options::Options,
) -> Result<(OutgoingMessage, Vec<postecole_dbus::Attachment>), Problem> {
    let raw =
        message::read(&mut std::io::stdin().lock(), options.dot_ends).map_err(Problem::Input)?;
    let draft = message::draft(&raw, options.from_headers, &options.recipients);
    drop(raw);
    if draft.to.is_empty() && draft.cc.is_empty() && draft.bcc.is_empty() {
        return Err(Problem::NoRecipient);
    }
    if draft.attachments.len() > MAX_ATTACHMENTS {
        return Err(Problem::TooManyAttachments(draft.attachments.len()));
    }
    let attachments = attachment_files(draft.attachments).map_err(Problem::Input)?;
    let message = OutgoingMessage {
        to: Some(draft.to),
        cc: Some(draft.cc),
        bcc: Some(draft.bcc),
        subject: Some(draft.subject),
        text: Some(draft.text),
        html: draft.html,
    };
    Ok((message, attachments))
}

fn run() -> Result<(), Problem> {
    let mut options = options::parse(std::env::args().skip(1)).map_err(Problem::Options)?;
    let sender = options.sender.take();
    // Reading the message waits on its writer; connecting and asking for the account wait on
    // the bus and the daemon: side by side, each process costs the longer of the two, not both.
    let input = std::thread::spawn(move || prepare(&options));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Problem::Input)?;
    let result = runtime.block_on(async {
        let bus = account(sender).await;
        // A bad message is told before a missing account: it is the caller's to fix first.
        let (message, attachments) = input.join().map_err(|_| {
            Problem::Input(std::io::Error::other("the message could not be read"))
        })??;
        let (connection, account) = bus?;
        OutboxProxy::builder(&connection)
            .cache_properties(CacheProperties::No)
            .build()
            .await?
            .send(&account, message, attachments)
            .await
            .map_err(|e| match e {
                // "" names the default account: not found, it is the one missing.
                postecole_dbus::Error::NotFound(_) if account.is_empty() => {
                    Problem::NoDefaultAccount
                }
                e => Problem::Daemon(e),
            })?;
        Ok(())
    });
    // Its threads gone before the locale is set.
    drop(runtime);
    result
}

fn main() -> ExitCode {
    let Err(problem) = run() else {
        return ExitCode::SUCCESS;
    };
    i18n::init();
    let (status, sentence, detail) = problem.explain();
    let mut out = format!("sendmail: {sentence}\n");
    if let Some(detail) = detail {
        out.push_str(&format!("sendmail: {detail}\n"));
    }
    eprint!("{out}");
    ExitCode::from(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sentence of this file has its French translation in po/fr.po (written one line a
    /// string), and the file is in po/POTFILES.
    #[test]
    fn french_catalogue_has_every_sentence() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let po = std::fs::read_to_string(root.join("po/fr.po")).unwrap();
        let unquote = |l: &str| l.trim().trim_matches('"').replace("\\\"", "\"");
        let lines: Vec<&str> = po.lines().collect();
        let translated: std::collections::HashSet<String> = lines
            .windows(2)
            .filter_map(|w| {
                let id = w[0].strip_prefix("msgid ")?;
                let tr = w[1].strip_prefix("msgstr ")?;
                (!unquote(tr).is_empty()).then(|| unquote(id))
            })
            .collect();
        let source = include_str!("main.rs");
        let code = &source[..source.find("#[cfg(test)]").unwrap()];
        let mut ids = Vec::new();
        for (at, _) in code.match_indices("t!(") {
            // `t!`, not `format!` or `eprint!`.
            if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(rest) = code[at + 3..].trim_start().strip_prefix('"') {
                ids.push(rest[..rest.find('"').unwrap()].to_owned());
            }
        }
        assert!(ids.len() >= 9, "{ids:?}");
        let missing: Vec<&String> = ids.iter().filter(|i| !translated.contains(*i)).collect();
        assert!(missing.is_empty(), "untranslated in po/fr.po: {missing:?}");
        let potfiles = std::fs::read_to_string(root.join("po/POTFILES")).unwrap();
        assert!(potfiles.lines().any(|l| l == "sendmail/src/main.rs"));
    }

    #[test]
    fn sysexits_for_each_kind_of_refusal() {
        assert_eq!(exit_status(Status::Data), 65);
        assert_eq!(exit_status(Status::NoInput), 67);
        assert_eq!(exit_status(Status::TempFail), 75);
        assert_eq!(exit_status(Status::NoPerm), 77);
        assert_eq!(exit_status(Status::Other), 69);
        assert_eq!(sender_address(" Moi <moi@ecole.fr> "), "moi@ecole.fr");
        assert_eq!(sender_address("moi@ecole.fr"), "moi@ecole.fr");
    }
}
