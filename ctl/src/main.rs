//! mailctl: the command line of postecole. Every command is one or a few D-Bus calls to
//! postecoled; nothing is decided here.

mod changes;
mod fail;
mod i18n;
mod merge;
mod mime;
mod offline;
mod output;
mod relay;
mod send;

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::builder::PossibleValue;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use postecole_dbus::{AccountsProxy, ArchiveProxy, MessageFilter, OutboxProxy};
use serde_json::json;

pub use fail::{Failure, Status};

#[derive(Parser)]
#[command(
    version,
    disable_help_flag = true,
    disable_version_flag = true,
    disable_help_subcommand = true,
    about = "Send the school's e-mail from this PC through postecoled",
    long_about = "Send the school's e-mail from this PC through postecoled.\n\n\
Setting up an address takes four steps, as in the \"e-mail sending\" dialog:\n  \
1. mailctl account create --kind personal --label 'Mme Martin' --address martin@ecole.fr\n     \
(prints the account id and e-mails a code to the address)\n  \
2. mailctl account verify ID CODE      (type back the code from the e-mail)\n  \
3. mailctl account secure ID --question 'Nom de ma première école ?'\n     \
(asks for the answer without showing it; the confirmation e-mail then brings\n     \
the recovery file cleRecuperation.crbee: keep it, it is the only way back in)\n  \
4. for an establishment address, an administrator names the staff:\n     \
mailctl account staff ID --add jdupont\n\n\
Wherever a command takes an account ID, the account's address works too.",
    after_long_help = "Exit status:\n  \
0   done\n  \
3   partly done: some families got the message, others were refused or failed; some messages could not be retried\n  \
64  wrong command line\n  \
65  a value was refused: address, code, answer, size, step\n  \
66  no such account, message or file\n  \
69  postecoled cannot be reached, or the relay refused a message for good\n  \
70  postecoled failed inside\n  \
73  an output file cannot be created or already exists\n  \
75  try again later: relay down, asked too soon, quota, disk full, still waiting at --timeout\n  \
77  not allowed, or too many tries\n\n\
Language: messages follow the locale (LANGUAGE, LC_ALL, LC_MESSAGES, LANG), e.g. LANG=fr_FR.UTF-8; catalogues are read from /usr/share/locale, or from POSTECOLE_LOCALEDIR."
)]
struct Cli {
    /// Talk to a postecoled on the session bus (desktop trial) instead of the system bus.
    #[arg(long, global = true)]
    session: bool,
    /// Print the result as JSON on standard output (errors too, as {"error": …}).
    #[arg(long, global = true)]
    json: bool,
    /// Print help (--help: more).
    #[arg(short = 'h', long, action = ArgAction::Help, global = true)]
    help: Option<bool>,
    /// Print the version.
    #[arg(short = 'V', long, action = ArgAction::Version)]
    version: Option<bool>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set up and manage sender addresses.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Send a message with one of your accounts; prints the message id.
    ///
    /// The message is accepted once it is safely on disk: it will be delivered even if the
    /// relay is down now or the PC restarts. Attachments are opened by mailctl, as you.
    Send(send::SendArgs),
    /// One message per family from a CSV export (address, variables, each family's file).
    ///
    /// Every row is checked first; rows without a usable address or file are listed and left
    /// out. Then the messages are queued in one go and followed until delivered or failed.
    Merge(merge::MergeArgs),
    /// The message templates: built-in (identifiants, absence, bilan) and the school's own.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Follow and manage queued messages (yours; administrators see all).
    #[command(subcommand)]
    Queue(QueueCommand),
    /// The mail relay.
    #[command(subcommand)]
    Relay(RelayCommand),
    /// Read the encrypted archive of mail sent from an account.
    ///
    /// Opened with the answer to the secret question (asked without echo), or with the
    /// recovery file cleRecuperation.crbee (--key).
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// Writes the man pages and shell completions (used when packaging).
    #[command(hide = true)]
    GenerateFiles {
        /// Output folder: man/ and completions/ are created in it.
        dir: PathBuf,
    },
    /// Who did what to which account, and when (administrators).
    Audit {
        /// How many of the newest entries.
        #[arg(long, default_value_t = 200)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum ArchiveCommand {
    /// The messages sent from an account, and what the relay said.
    List {
        id: String,
        /// Use the recovery file instead of the answer.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Only messages to a recipient whose address contains this text (any case).
        #[arg(long, value_name = "TEXT")]
        to: Option<String>,
        /// Only messages whose subject contains this text (any case).
        #[arg(long, value_name = "TEXT")]
        subject: Option<String>,
    },
    /// One sent message: its headers, its text and its attachments by name.
    Show {
        id: String,
        msgid: String,
        /// Use the recovery file instead of the answer.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Save the attachments into this folder (never over an existing file).
        #[arg(long, value_name = "DIR", conflicts_with = "raw")]
        save_attachments: Option<PathBuf>,
        /// Print the message exactly as it was sent (MIME source).
        #[arg(long)]
        raw: bool,
    },
    /// Read an archive directory with its recovery file, without postecoled or its database.
    ///
    /// Lists the messages, or prints one (`show MSGID`). For when the PC's database is lost:
    /// a copy of the account's archive folder and cleRecuperation.crbee are enough.
    Open(offline::OpenArgs),
    /// Every sent message into one new mbox file (readable by Thunderbird and others).
    Export {
        id: String,
        /// The mbox file to create; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        /// Use the recovery file instead of the answer.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Messages and where they stand, newest last: who sent what to whom, and the relay's reply.
    List(QueueFilter),
    /// One message in detail, with the relay's last reply.
    Show { id: String },
    /// Try a deferred or failed message again now (--all: every one, e.g. once the relay is
    /// fixed).
    Retry {
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Every queued, deferred or failed message you may see (with --account: of that
        /// account).
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// With --all: only this account's messages (id or address).
        #[arg(long, requires = "all")]
        account: Option<String>,
    },
    /// Withdraw a message that has not been sent.
    Cancel { id: String },
    /// Keep a waiting message from being sent until released.
    Hold { id: String },
    /// Let a held message go.
    Release { id: String },
}

#[derive(Args)]
struct QueueFilter {
    /// Only messages in these states (queued, sending, deferred, held, delivered, failed,
    /// cancelled, or "waiting" for the first four); comma-separated.
    #[arg(long, value_name = "STATE")]
    state: Option<String>,
    /// Only messages sent with this account (id or address).
    #[arg(long, value_name = "ACCOUNT")]
    account: Option<String>,
    /// Only messages created since: 30min, 2h, 3d, or a date (2026-03-14).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only messages to a recipient containing this text (e.g. martin).
    #[arg(long, value_name = "TEXT")]
    to: Option<String>,
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// Each template with its variables.
    List,
    /// One template: its variables, its subject and its text.
    Show {
        name: String,
        /// Account whose From the text is shown with (default: your default account).
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Subcommand)]
enum RelayCommand {
    /// Connect to the relay (TLS, authentication) as the daemon would and report.
    Test,
    /// Administrators: sign the PC in to the relay's mailbox (OAuth2, Microsoft 365), once.
    /// Shows an address and a code to type there from any device; the daemon then keeps the
    /// tokens and renews them by itself.
    Login,
    /// How the relay authenticates (token expiry, "needs login"), its sending limits, how much
    /// of today's allowance is used, and when the waiting mail should have left.
    Status,
}

#[derive(Clone, Copy)]
enum Kind {
    Establishment,
    Personal,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Establishment => postecole_dbus::KIND_ESTABLISHMENT,
            Kind::Personal => postecole_dbus::KIND_PERSONAL,
        }
    }
}

// By hand rather than derived: the help of each value is translated when it is asked for.
impl ValueEnum for Kind {
    fn value_variants<'a>() -> &'a [Self] {
        &[Kind::Establishment, Kind::Personal]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Kind::Establishment => PossibleValue::new("establishment").help(t!(
                "The school's shared address (secretariat@…), used by the staff an administrator names."
            )),
            Kind::Personal => PossibleValue::new("personal")
                .help(t!("Your own address, seen and used by you alone.")),
        })
    }
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Step 1: add an address; a code is e-mailed to it. Prints the new account id.
    ///
    /// Establishment addresses can only be added by an administrator (root or a member of the
    /// configured admin group). The code is valid for 15 minutes.
    Create {
        #[arg(long, value_enum)]
        kind: Kind,
        /// Name shown to recipients, e.g. "Secrétariat de l'école Jules Ferry".
        #[arg(long)]
        label: String,
        /// The e-mail address to send from.
        #[arg(long)]
        address: String,
    },
    /// Step 2: type back the code the address received (5 tries, 15 minutes).
    Verify { id: String, code: String },
    /// Send a new code (at most once a minute); the previous one stops working.
    Resend { id: String },
    /// Step 3: protect the account with a secret question; the answer is asked without echo.
    ///
    /// On a terminal the answer is prompted twice and not shown; otherwise the first line of
    /// standard input is the answer. Keep it: it unlocks the archive of sent mail.
    Secure {
        id: String,
        #[arg(long)]
        question: String,
    },
    /// Step 4 (establishment, administrators): allow or withdraw a member of staff.
    Staff {
        id: String,
        /// Unix user name allowed to send with this address.
        #[arg(long, conflicts_with = "remove", required_unless_present = "remove")]
        add: Option<String>,
        /// Unix user name to withdraw.
        #[arg(long)]
        remove: Option<String>,
    },
    /// The addresses you may see; * marks your default account.
    List,
    /// One account in detail.
    Show { id: String },
    /// Remove an account from this PC; asks first on a terminal.
    ///
    /// Its archive of sent mail is kept on this PC, readable with its recovery file
    /// (mailctl archive open), unless --with-archive is given.
    Delete {
        id: String,
        /// Also delete the archive of the mail sent from it: that mail is then unreadable
        /// for everyone. Asks first; without a terminal, needs --yes.
        #[arg(long)]
        with_archive: bool,
        /// Do not ask (scripts).
        #[arg(long)]
        yes: bool,
    },
    /// Turn an account into the other kind (administrators).
    ///
    /// establishment → personal needs exactly one staff member, who becomes the owner;
    /// personal → establishment makes the owner its only staff member.
    Convert {
        id: String,
        #[arg(long, value_enum)]
        to: Kind,
    },
    /// Show your default sending account, or set it with ID ("" clears it).
    Default { id: Option<String> },
    /// Change the secret question and answer; the current answer is asked first.
    ///
    /// On a terminal the answers are prompted without echo; otherwise standard input gives
    /// the current answer on its first line and the new one on its second.
    Secret {
        id: String,
        #[arg(long)]
        question: String,
    },
    /// A new recovery file cleRecuperation.crbee, mailed to the account's address; the one
    /// issued before stops working. Asks for the answer to the secret question.
    NewKey { id: String },
    /// Lost the answer? Set a new question and answer with the recovery file
    /// cleRecuperation.crbee received when the account was set up. Mail sent before stays
    /// readable, and the file stays valid.
    Recover {
        id: String,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[arg(long)]
        question: String,
    },
}

fn main() -> ExitCode {
    i18n::init();
    let matches = match i18n::translate(Cli::command()).try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                Status::Usage as u8
            } else {
                0
            });
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(Status::Usage as u8);
        }
    };
    let json = cli.json;
    let result = match cli.command {
        Command::GenerateFiles { ref dir } => {
            generate_files(dir).map_err(|e| Failure::new(Status::CantCreate, e.to_string()))
        }
        // No daemon: what is left when the PC's database is lost.
        Command::Archive(ArchiveCommand::Open(args)) => offline::open(args, json),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::new(Status::Other, e.to_string()))
            .and_then(|runtime| runtime.block_on(run(cli))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json && !e.json_printed {
                outln!("{}", e.json());
            }
            eprint!("{}", e.human());
            ExitCode::from(e.status as u8)
        }
    }
}

/// mailctl(1) and one page per subcommand (mailctl-account(1), …) in the caller's language
/// (`LANGUAGE=fr mailctl generate-files DIR` writes the French ones), plus bash, zsh and fish
/// completions, all from the definition above.
fn generate_files(dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    let mut cmd = i18n::translate(Cli::command());
    cmd.build();
    fn pages(cmd: &clap::Command, dir: &Path, top: bool) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            pages(sub, dir, false)?;
        }
        let page = clap_mangen::Man::new(cmd.clone());
        let mut roff = Vec::new();
        page.render(&mut roff)?;
        let mut roff = String::from_utf8_lossy(&roff).into_owned();
        for (english, heading) in [
            (".SH NAME", t!("NAME")),
            (".SH SYNOPSIS", t!("SYNOPSIS")),
            (".SH DESCRIPTION", t!("DESCRIPTION")),
            (".SH OPTIONS", t!("OPTIONS")),
            (".SH SUBCOMMANDS", t!("SUBCOMMANDS")),
            (".SH EXTRA", t!("EXIT STATUS AND LANGUAGE")),
            (".SH VERSION", t!("VERSION")),
        ] {
            roff = roff.replace(&format!("{english}\n"), &format!(".SH \"{heading}\"\n"));
        }
        roff = roff.replace("Possible values:", &t!("Possible values:"));
        if top {
            roff.push_str(&format!(".SH \"{}\"\n", t!("SEE ALSO")));
            roff.push_str("postecoled(8)\n");
        }
        std::fs::write(dir.join(page.get_filename()), roff)
    }
    pages(&cmd, &man, true)?;
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut Cli::command(), "mailctl", &completions)?;
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let connection = if cli.session {
        zbus::Connection::session().await
    } else {
        zbus::Connection::system().await
    }
    .map_err(|e| {
        Failure::new(
            Status::Unavailable,
            if cli.session {
                t!(
                    "cannot connect to the D-Bus session bus: {error}",
                    error = e
                )
            } else {
                t!("cannot connect to the D-Bus system bus: {error}", error = e)
            },
        )
    })?;
    let json = cli.json;
    match cli.command {
        Command::Account(cmd) => account(&connection, cmd, json).await,
        Command::Send(args) => send::send(&connection, args, json).await,
        Command::Merge(args) => merge::merge(&connection, args, json).await,
        Command::Template(cmd) => template(&connection, cmd, json).await,
        Command::Queue(cmd) => queue(&connection, cmd, json).await,
        Command::GenerateFiles { .. } => unreachable!("handled before connecting"),
        Command::Archive(cmd) => archive(&connection, cmd, json).await,
        Command::Audit { limit } => {
            let entries = AccountsProxy::new(&connection)
                .await?
                .audit_log(limit)
                .await?;
            if json {
                outln!("{}", output::audit_json(&entries));
            } else {
                output::stdout(&output::audit_table(&entries, output::now()));
            }
            Ok(())
        }
        Command::Relay(RelayCommand::Login) => relay::login(&connection, json).await,
        Command::Relay(RelayCommand::Status) => relay::status(&connection, json).await,
        Command::Relay(RelayCommand::Test) => {
            let report = OutboxProxy::new(&connection).await?.test_relay().await?;
            if json {
                outln!("{}", json!({ "report": report }));
            } else {
                outln!("{report}");
            }
            Ok(())
        }
    }
}

/// An account named by its id or by its address (`secretariat@ecole.fr`), among those the
/// caller may see.
pub async fn resolve(connection: &zbus::Connection, given: &str) -> Result<String, Failure> {
    if !given.contains('@') {
        fail::set_account(given);
        return Ok(given.to_owned());
    }
    let accounts = AccountsProxy::new(connection)
        .await?
        .list_accounts()
        .await?;
    let found: Vec<_> = accounts
        .iter()
        .filter(|a| a.address.eq_ignore_ascii_case(given.trim()))
        .collect();
    match found.as_slice() {
        [one] => {
            fail::set_account(&one.id);
            Ok(one.id.clone())
        }
        [] => Err(Failure::new(
            Status::NoInput,
            t!(
                "none of the accounts you may see has the address {address} (mailctl account list)",
                address = given
            ),
        )),
        _ => Err(Failure::new(
            Status::Data,
            t!(
                "several accounts have the address {address}: give the id (mailctl account list)",
                address = given
            ),
        )),
    }
}

/// Asks on the terminal; anything but yes is no.
fn confirm(question: &str) -> Result<bool, Failure> {
    eprint!("{question} {} ", t!("[y/N]"));
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::new(Status::Other, e.to_string()))?;
    let answer = line.trim().to_lowercase();
    Ok(["y", "yes", "o", "oui"].contains(&answer.as_str()) || answer == t!("y"))
}

/// What a command that only acts prints under `--json`.
fn done(json: bool, id: &str, what: &str) {
    if json {
        outln!("{}", json!({ "id": id, "done": what }));
    }
}

async fn template(
    connection: &zbus::Connection,
    cmd: TemplateCommand,
    json: bool,
) -> Result<(), Failure> {
    let proxy = OutboxProxy::new(connection).await?;
    let templates = proxy.list_templates().await?;
    match cmd {
        TemplateCommand::List if json => {
            let list: Vec<_> = templates
                .iter()
                .map(|t| {
                    json!({"name": t.name, "description": t.description,
                           "variables": t.variables, "attachment": t.attachment})
                })
                .collect();
            outln!("{}", serde_json::Value::Array(list));
        }
        TemplateCommand::List => {
            let rows: Vec<Vec<String>> = templates
                .iter()
                .map(|tpl| {
                    let mut vars = tpl.variables.join(", ");
                    if tpl.attachment {
                        vars.push_str(&t!(" + file"));
                    }
                    vec![tpl.name.clone(), tpl.description.clone(), vars]
                })
                .collect();
            output::stdout(&output::table(
                &[t!("NAME"), t!("DESCRIPTION"), t!("VARIABLES")],
                &rows,
            ));
        }
        TemplateCommand::Show { name, account } => {
            let tpl = templates
                .into_iter()
                .find(|tpl| tpl.name == name)
                .ok_or_else(|| {
                    Failure::new(
                        Status::NoInput,
                        t!(
                            "no template `{name}` (see mailctl template list)",
                            name = name
                        ),
                    )
                })?;
            // The text as the daemon renders it, each variable standing for itself.
            let account = match account {
                Some(a) => Some(resolve(connection, &a).await?),
                None => send::default_account(connection).await?,
            };
            let text = match &account {
                Some(account) => {
                    let placeholders: Vec<(String, String)> = tpl
                        .variables
                        .iter()
                        .map(|v| (v.clone(), format!("{{{{ {v} }}}}")))
                        .collect();
                    let vars: HashMap<&str, &str> = placeholders
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    proxy.preview(account, &tpl.name, vars).await?.1
                }
                // No account to render with: the text as written.
                None => tpl.text.clone(),
            };
            if json {
                outln!(
                    "{}",
                    json!({"name": tpl.name, "description": tpl.description,
                           "variables": tpl.variables, "attachment": tpl.attachment,
                           "subject": tpl.subject, "text": text})
                );
                return Ok(());
            }
            output::stdout(&output::details(&[
                (t!("name"), tpl.name.clone()),
                (t!("description"), tpl.description.clone()),
                (t!("variables"), tpl.variables.join(", ")),
                (
                    t!("attachment"),
                    if tpl.attachment {
                        t!("one per family")
                    } else {
                        "-".into()
                    },
                ),
                (t!("subject"), tpl.subject.clone()),
            ]));
            outln!("\n{text}");
        }
    }
    Ok(())
}

/// `2h`, `30min`, `3d`, `45s` ago, or a day `2026-03-14` (UTC midnight), as seconds since
/// the epoch.
fn since(text: &str, now: u64) -> Option<u64> {
    let text = text.trim();
    if let Some((y, rest)) = text.split_once('-') {
        let (m, d) = rest.split_once('-')?;
        let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return None;
        }
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        return u64::try_from(days * 86_400).ok();
    }
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().ok()?;
    let unit = match text[digits.len()..].trim() {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" | "j" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    Some(now.saturating_sub(n.checked_mul(unit)?))
}

const STATES: [&str; 7] = [
    "queued",
    "sending",
    "deferred",
    "held",
    "delivered",
    "failed",
    "cancelled",
];

async fn queue(
    connection: &zbus::Connection,
    cmd: QueueCommand,
    json: bool,
) -> Result<(), Failure> {
    let proxy = OutboxProxy::new(connection).await?;
    match cmd {
        QueueCommand::List(filter) => {
            let now = output::now();
            let mut states: Vec<String> = Vec::new();
            for s in filter.state.iter().flat_map(|s| s.split(',')) {
                let s = s.trim().to_lowercase();
                let s = STATES
                    .iter()
                    .find(|name| output::state(name).to_lowercase() == s)
                    .map(|name| name.to_string())
                    .unwrap_or(s);
                if s == "waiting" || s == t!("waiting") {
                    states.extend(["queued", "sending", "deferred", "held"].map(String::from));
                } else if STATES.contains(&s.as_str()) {
                    states.push(s);
                } else {
                    return Err(Failure::new(
                        Status::Usage,
                        t!(
                            "unknown state `{state}`: give queued, sending, deferred, held, delivered, failed, cancelled or waiting",
                            state = s
                        ),
                    ));
                }
            }
            let since = match &filter.since {
                Some(text) => Some(since(text, now).ok_or_else(|| {
                    Failure::new(
                        Status::Usage,
                        t!(
                            "--since takes 30min, 2h, 3d or a date like 2026-03-14, not `{given}`",
                            given = text
                        ),
                    )
                })?),
                None => None,
            };
            let account = match &filter.account {
                Some(a) => Some(resolve(connection, a).await?),
                None => None,
            };
            let mut messages = proxy
                .find_all(MessageFilter {
                    states: (!states.is_empty()).then_some(states),
                    account,
                    since,
                    to: filter.to.clone(),
                    ..Default::default()
                })
                .await?;
            messages.sort_by_key(|m| m.created);
            if json {
                outln!("{}", output::messages_json(&messages));
                return Ok(());
            }
            // Accounts by address, as far as the caller may see them.
            let addresses: HashMap<String, String> = AccountsProxy::new(connection)
                .await?
                .list_accounts()
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|a| (a.id, a.address))
                .collect();
            output::stdout(&output::messages_table(&messages, &addresses, now));
            if let Some(eta) = relay::eta_line(&proxy).await {
                outln!("{eta}");
            }
            if std::io::stderr().is_terminal() {
                let count = messages.len();
                eprintln!("{}", tn!("{n} message", "{n} messages", count));
            }
            if let Some(to) = &filter.to {
                // The queue forgets the recipients of delivered mail; its sealed copy keeps them.
                eprintln!(
                    "{}",
                    t!(
                        "Delivered messages are found by recipient in the archive, with what the relay said: mailctl archive list ACCOUNT --to {to}",
                        to = to
                    )
                );
            }
        }
        QueueCommand::Show { id } => {
            let message = proxy.get_message(&id).await?;
            if json {
                outln!("{}", output::message_json(&message));
            } else {
                output::stdout(&output::message_details(&message, output::now()));
            }
        }
        QueueCommand::Retry {
            id: None, account, ..
        } => retry_all(connection, &proxy, account, json).await?,
        QueueCommand::Retry { id: Some(id), .. } => {
            proxy.retry(&id).await?;
            done(json, &id, "retry");
            if !json {
                eprintln!(
                    "{}",
                    t!(
                        "Message {id} is queued again; follow it with: mailctl queue show {id}",
                        id = id
                    )
                );
            }
        }
        QueueCommand::Cancel { id } => {
            proxy.cancel(&id).await?;
            done(json, &id, "cancel");
        }
        QueueCommand::Hold { id } => {
            proxy.hold(&id).await?;
            done(json, &id, "hold");
        }
        QueueCommand::Release { id } => {
            proxy.release(&id).await?;
            done(json, &id, "release");
        }
    }
    Ok(())
}

/// `queue retry --all`: one Retry per waiting or failed message (the first also ends a relay
/// pause); says which could not be.
async fn retry_all(
    connection: &zbus::Connection,
    proxy: &OutboxProxy<'_>,
    account: Option<String>,
    json: bool,
) -> Result<(), Failure> {
    let account = match account {
        Some(a) => Some(resolve(connection, &a).await?),
        None => None,
    };
    let mut retried = Vec::new();
    let mut refused = Vec::new();
    let waiting = MessageFilter {
        states: Some(["queued", "deferred", "failed"].map(String::from).to_vec()),
        account,
        ..Default::default()
    };
    for m in proxy.find_all(waiting).await? {
        match proxy.retry(&m.id).await {
            Ok(()) => retried.push(m.id),
            // The first retry ends a relay pause: the others may be on their way already.
            Err(_)
                if proxy
                    .get_message(&m.id)
                    .await
                    .is_ok_and(|now| matches!(now.state.as_str(), "sending" | "delivered")) =>
            {
                retried.push(m.id)
            }
            Err(e) => {
                let e = Failure::from(e);
                eprintln!(
                    "{}: {}",
                    m.id,
                    e.detail.clone().unwrap_or_else(|| e.message.clone())
                );
                refused.push(json!({"id": m.id, "error": e.json()["error"]}));
            }
        }
    }
    if json {
        outln!("{}", json!({"retried": retried, "refused": refused}));
    } else {
        eprintln!(
            "{}",
            tn!(
                "{n} message queued again.",
                "{n} messages queued again.",
                retried.len()
            )
        );
    }
    if refused.is_empty() {
        return Ok(());
    }
    let mut failure = Failure::new(
        if retried.is_empty() {
            Status::Data
        } else {
            Status::Partial
        },
        tn!(
            "{n} message could not be retried (above).",
            "{n} messages could not be retried (above).",
            refused.len()
        ),
    );
    failure.json_printed = json;
    Err(failure)
}

async fn account(
    connection: &zbus::Connection,
    cmd: AccountCommand,
    json: bool,
) -> Result<(), Failure> {
    let proxy = AccountsProxy::new(connection).await?;
    match cmd {
        AccountCommand::Create {
            kind,
            label,
            address,
        } => {
            let id = match proxy.create_account(kind.as_str(), &label, &address).await {
                Ok(id) => id,
                Err(e) => return Err(created_anyway(&proxy, &address, e.into(), json).await),
            };
            fail::set_account(&id);
            if json {
                outln!("{}", json!({ "id": id, "address": address }));
            } else {
                outln!("{id}");
            }
            if std::io::stderr().is_terminal() {
                eprintln!(
                    "{}",
                    t!(
                        "A code was e-mailed to {address}. Type it back with: mailctl account verify {id} CODE",
                        address = address,
                        id = id
                    )
                );
            }
        }
        AccountCommand::Verify { id, code } => {
            let id = resolve(connection, &id).await?;
            proxy.confirm_code(&id, &code).await?;
            done(json, &id, "verify");
            eprintln!(
                "{}",
                t!(
                    "Address verified. Next: mailctl account secure {id} --question '…'",
                    id = id
                )
            );
        }
        AccountCommand::Resend { id } => {
            let id = resolve(connection, &id).await?;
            proxy.resend_code(&id).await?;
            done(json, &id, "resend");
            eprintln!(
                "{}",
                t!("A new code is on its way; the previous one no longer works.")
            );
        }
        AccountCommand::Secure { id, question } => {
            let id = resolve(connection, &id).await?;
            let answer = read_answer(&t!("Answer to the secret question: "), true)?;
            proxy.set_secret(&id, &question, &answer).await?;
            done(json, &id, "secure");
            eprintln!(
                "{}",
                t!(
                    "The account is active. A confirmation e-mail carrying the recovery file cleRecuperation.crbee is queued for the address (mailctl queue list shows when it leaves): keep that file off this PC."
                )
            );
        }
        AccountCommand::Staff { id, add, remove } => {
            let id = resolve(connection, &id).await?;
            match (add, remove) {
                (Some(user), _) => proxy.add_staff(&id, &user).await?,
                (None, Some(user)) => proxy.remove_staff(&id, &user).await?,
                (None, None) => unreachable!("clap requires --add or --remove"),
            }
            done(json, &id, "staff");
        }
        AccountCommand::List => {
            let accounts = proxy.list_accounts().await?;
            let default = proxy.get_default_account().await.unwrap_or_default();
            if json {
                outln!("{}", output::accounts_json(&accounts, &default));
            } else {
                output::stdout(&output::accounts_table(&accounts, &default));
            }
        }
        AccountCommand::Show { id } => {
            let id = resolve(connection, &id).await?;
            let account = proxy.get_account(&id).await?;
            let default = proxy.get_default_account().await.unwrap_or_default();
            if json {
                outln!("{}", output::account_json(&account, &default));
            } else {
                output::stdout(&output::account_details(&account, &default));
            }
        }
        AccountCommand::Delete {
            id,
            with_archive,
            yes,
        } => {
            let id = resolve(connection, &id).await?;
            // Root may delete a personal account it may not see: the delete call decides, and
            // answers NotFound to anyone else.
            let account = match proxy.get_account(&id).await {
                Ok(account) => Some(account),
                Err(postecole_dbus::Error::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            };
            let address = account
                .as_ref()
                .map_or(id.clone(), |a| format!("{} ({})", a.address, a.label));
            let terminal = std::io::stdin().is_terminal();
            if with_archive && !yes && !terminal {
                return Err(Failure::new(
                    Status::Usage,
                    t!("deleting an archive of sent mail needs a confirmation: add --yes"),
                ));
            }
            if !yes && terminal {
                let (warning, question) = if with_archive {
                    (
                        t!(
                            "Deleting {address} with its archive: the mail sent from it becomes unreadable for everyone, even with the recovery file. To keep a copy first: mailctl archive export {id} --output FILE",
                            address = address,
                            id = id
                        ),
                        t!("Delete this account and its archive?"),
                    )
                } else {
                    (
                        t!(
                            "Deleting {address}: its archive of sent mail stays on this PC, readable with its recovery file.",
                            address = address
                        ),
                        t!("Delete this account?"),
                    )
                };
                eprintln!("{warning}");
                if !confirm(&question)? {
                    return Err(Failure::new(Status::Data, t!("nothing was deleted")));
                }
            }
            if with_archive {
                proxy.delete_account_and_archive(&id).await?;
            } else {
                proxy.delete_account(&id).await?;
            }
            done(json, &id, "delete");
            let said = if with_archive {
                t!(
                    "Account {id} ({address}) was deleted from this PC, with its archive of sent mail.",
                    id = id,
                    address = address
                )
            } else {
                t!(
                    "Account {id} ({address}) was deleted from this PC. Its archive of sent mail is kept in /var/lib/postecole/archive/{id}: an administrator reads it with its recovery file (mailctl archive open --dir /var/lib/postecole/archive/{id} --key cleRecuperation.crbee), or removes that folder.",
                    id = id,
                    address = address
                )
            };
            eprintln!("{said}");
        }
        AccountCommand::Convert { id, to } => {
            let id = resolve(connection, &id).await?;
            proxy.convert_account(&id, to.as_str()).await?;
            done(json, &id, "convert");
        }
        AccountCommand::Default { id: Some(id) } => {
            let id = if id.is_empty() {
                id
            } else {
                resolve(connection, &id).await?
            };
            proxy.set_default_account(&id).await?;
            done(json, &id, "default");
        }
        AccountCommand::Secret { id, question } => {
            let id = resolve(connection, &id).await?;
            let old = read_answer(&t!("Current answer: "), false)?;
            let new = read_answer(&t!("New answer: "), true)?;
            ArchiveProxy::new(connection)
                .await?
                .change_secret(&id, &old, &question, &new)
                .await?;
            done(json, &id, "secret");
            eprintln!("{}", t!("The secret question and answer were changed."));
        }
        AccountCommand::NewKey { id } => {
            let id = resolve(connection, &id).await?;
            let answer = read_answer(&t!("Answer to the secret question: "), false)?;
            ArchiveProxy::new(connection)
                .await?
                .new_recovery_key(&id, &answer)
                .await?;
            done(json, &id, "new-key");
            eprintln!(
                "{}",
                t!(
                    "A new recovery file is on its way to the account's address; the one before no longer works. Keep the new one somewhere safe, off this PC."
                )
            );
        }
        AccountCommand::Recover { id, key, question } => {
            let id = resolve(connection, &id).await?;
            let file = open_key(&key)?;
            let new = read_answer(&t!("New answer to the secret question: "), true)?;
            ArchiveProxy::new(connection)
                .await?
                .recover(&id, file, &question, &new)
                .await?;
            done(json, &id, "recover");
            eprintln!(
                "{}",
                t!("New secret set. Mail sent before stays readable; keep the recovery file.")
            );
        }
        AccountCommand::Default { id: None } => {
            let id = proxy.get_default_account().await?;
            if id.is_empty() {
                return Err(Failure::new(
                    Status::NoInput,
                    t!("no default account is set (mailctl account default ID)"),
                ));
            }
            if json {
                outln!("{}", json!({ "id": id }));
            } else {
                outln!("{id}");
            }
        }
    }
    Ok(())
}

/// A relay that is down when the code e-mail leaves still leaves the account created, its
/// code waiting in the queue: say so, and print its id as a success would.
async fn created_anyway(
    proxy: &AccountsProxy<'_>,
    address: &str,
    failure: Failure,
    json: bool,
) -> Failure {
    if failure.short_name() != Some("RelayUnavailable") {
        return failure;
    }
    let Ok(accounts) = proxy.list_accounts().await else {
        return failure;
    };
    let Some(account) = accounts
        .iter()
        .filter(|a| a.address.eq_ignore_ascii_case(address) && a.state == "awaiting-code")
        .max_by_key(|a| a.created)
    else {
        return failure;
    };
    fail::set_account(&account.id);
    if !json {
        outln!("{}", account.id);
    }
    Failure {
        message: t!(
            "Account {id} was created, but the code e-mail could not leave yet: the relay is unreachable. It is retried automatically; once it arrives: mailctl account verify {id} CODE",
            id = account.id
        ),
        ..failure
    }
    .with_partial(json!({ "id": account.id, "address": account.address }))
}

fn open_key(path: &Path) -> Result<zbus::OwnedFd, Failure> {
    Ok(std::os::fd::OwnedFd::from(fail::open_input(path)?).into())
}

/// The answer (prompted) or the recovery file, as the Archive calls take them.
fn unlock(key: &Option<PathBuf>) -> Result<(String, Vec<zbus::OwnedFd>), Failure> {
    match key {
        Some(path) => Ok((String::new(), vec![open_key(path)?])),
        None => Ok((
            read_answer(&t!("Answer to the secret question: "), false)?,
            Vec::new(),
        )),
    }
}

/// A new file, never one that exists already (mail must not be lost by a typo).
fn create_new(path: &Path) -> Result<std::fs::File, Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Failure::new(
                    Status::CantCreate,
                    t!(
                        "{path} already exists; nothing was written. Give a new file name.",
                        path = path.display()
                    ),
                )
            } else {
                fail::cannot_create(path, e)
            }
        })
}

async fn archive(
    connection: &zbus::Connection,
    cmd: ArchiveCommand,
    json: bool,
) -> Result<(), Failure> {
    let proxy = ArchiveProxy::new(connection).await?;
    match cmd {
        ArchiveCommand::List {
            id,
            key,
            to,
            subject,
        } => {
            let id = resolve(connection, &id).await?;
            let (answer, files) = unlock(&key)?;
            let mut messages = proxy.list_archive(&id, &answer, files).await?;
            let has = |text: &str, piece: &Option<String>| {
                piece
                    .as_ref()
                    .is_none_or(|p| text.to_lowercase().contains(&p.to_lowercase()))
            };
            messages.retain(|m| has(&m.to, &to) && has(&m.subject, &subject));
            if json {
                outln!("{}", output::archived_json(&messages));
            } else {
                output::stdout(&output::archived_table(&messages, output::now()));
            }
        }
        ArchiveCommand::Show {
            id,
            msgid,
            key,
            save_attachments,
            raw,
        } => {
            let id = resolve(connection, &id).await?;
            let (answer, files) = unlock(&key)?;
            let content = proxy.read_archived(&id, &msgid, &answer, files).await?;
            if raw {
                output::stdout(&String::from_utf8_lossy(&content));
                return Ok(());
            }
            show_archived(&content, save_attachments.as_deref(), json)?;
        }
        ArchiveCommand::Export { id, output, key } => {
            let id = resolve(connection, &id).await?;
            let (answer, files) = unlock(&key)?;
            let file = create_new(&output)?;
            let fd: zbus::OwnedFd = std::os::fd::OwnedFd::from(file).into();
            let count = match proxy.export_mbox(&id, &answer, files, fd).await {
                Ok(count) => count,
                Err(e) => {
                    // Only what this command created: it was new and is incomplete.
                    let _ = std::fs::remove_file(&output);
                    return Err(e.into());
                }
            };
            if json {
                outln!(
                    "{}",
                    json!({ "id": id, "messages": count, "output": output.display().to_string() })
                );
            } else {
                eprintln!(
                    "{}",
                    tn!(
                        "{n} message written to {path}",
                        "{n} messages written to {path}",
                        count,
                        path = output.display()
                    )
                );
            }
        }
        ArchiveCommand::Open(_) => unreachable!("handled before connecting"),
    }
    Ok(())
}

/// Headers and text in clear, attachments by name and size (saved with `--save-attachments`).
fn show_archived(raw: &[u8], save: Option<&Path>, json: bool) -> Result<(), Failure> {
    let message = mime::parse(raw);
    let wanted = [
        "From",
        "Reply-To",
        "To",
        "Cc",
        "Subject",
        "Date",
        "Message-ID",
    ];
    let mut saved = Vec::new();
    if let Some(dir) = save {
        std::fs::create_dir_all(dir).map_err(|e| fail::cannot_create(dir, e))?;
        for (i, part) in message.attachments.iter().enumerate() {
            let path = dir.join(mime::safe_name(part.filename.as_deref(), i));
            let mut file = create_new(&path)?;
            file.write_all(&part.body)
                .map_err(|e| fail::cannot_create(&path, e))?;
            saved.push(path);
        }
    }
    if json {
        let headers: serde_json::Map<String, serde_json::Value> = message
            .headers
            .iter()
            .filter(|(k, _)| wanted.iter().any(|w| w.eq_ignore_ascii_case(k)))
            .map(|(k, v)| (k.to_lowercase(), json!(v)))
            .collect();
        let attachments: Vec<_> = message
            .attachments
            .iter()
            .enumerate()
            .map(|(i, p)| {
                json!({"name": p.filename, "content_type": p.content_type, "size": p.body.len(),
                       "saved": saved.get(i).map(|s| s.display().to_string())})
            })
            .collect();
        outln!(
            "{}",
            json!({"headers": headers, "text": message.text, "attachments": attachments})
        );
        return Ok(());
    }
    let mut out = String::new();
    for name in wanted {
        for (k, v) in &message.headers {
            if k.eq_ignore_ascii_case(name) {
                out.push_str(&format!("{name}: {v}\n"));
            }
        }
    }
    out.push('\n');
    out.push_str(message.text.trim_end());
    out.push('\n');
    if !message.attachments.is_empty() {
        out.push_str(&format!("\n{}\n", t!("Attachments:")));
        for (i, part) in message.attachments.iter().enumerate() {
            let name = mime::safe_name(part.filename.as_deref(), i);
            let size = tn!("{n} byte", "{n} bytes", part.body.len());
            match saved.get(i) {
                Some(path) => out.push_str(&format!(
                    "  {name}  {}  {size}  → {}\n",
                    part.content_type,
                    path.display()
                )),
                None => out.push_str(&format!("  {name}  {}  {size}\n", part.content_type)),
            }
        }
        if save.is_none() {
            out.push_str(&format!(
                "{}\n",
                t!("(to save them: --save-attachments DIR; the exact message: --raw)")
            ));
        }
    }
    output::stdout(&out);
    Ok(())
}

/// The answer, without echo on a terminal (typed twice), else the first line of stdin.
fn read_answer(prompt: &str, confirm: bool) -> Result<String, Failure> {
    let io = |e: std::io::Error| Failure::new(Status::Other, e.to_string());
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt).map_err(io)?;
        if confirm {
            let second = rpassword::prompt_password(t!("Once more: ")).map_err(io)?;
            if first != second {
                return Err(Failure::new(
                    Status::Data,
                    t!("the two answers differ; nothing was changed"),
                ));
            }
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| {
            Failure::new(
                Status::Other,
                t!(
                    "cannot read the answer from standard input: {error}",
                    error = e
                ),
            )
        })?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_parses_spans_and_days() {
        assert_eq!(since("2h", 10_000), Some(10_000 - 7200));
        assert_eq!(since("30min", 10_000), Some(10_000 - 1800));
        assert_eq!(since("1970-01-02", 0), Some(86_400));
        assert_eq!(since("2026-03-14", 0), Some(1_773_446_400));
        assert_eq!(since("yesterday", 0), None);
    }

    /// Every text mailctl shows has its French translation in po/fr.po.
    #[test]
    fn french_catalogue_is_complete() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let po = std::fs::read_to_string(root.join("po/fr.po")).unwrap();
        let entries = i18n::po_entries(&po);
        let fuzzy =
            i18n::po_entries("#, fuzzy\nmsgid \"a\"\nmsgstr \"b\"\nmsgid \"c\"\nmsgstr \"d\"\n");
        assert_eq!(
            fuzzy,
            vec![
                ("a".to_owned(), vec![]),
                ("c".to_owned(), vec!["d".to_owned()])
            ]
        );
        let translated: std::collections::HashSet<&str> = entries
            .iter()
            .filter(|(_, strs)| !strs.is_empty() && strs.iter().all(|s| !s.is_empty()))
            .map(|(id, _)| id.as_str())
            .collect();
        let mut wanted = Vec::new();
        i18n::texts(&Cli::command(), &mut wanted);
        for sub in Cli::command().get_subcommands() {
            for arg in sub.get_arguments() {
                for value in arg.get_possible_values() {
                    if let Some(help) = value.get_help() {
                        wanted.push(help.to_string());
                    }
                }
            }
        }
        let potfiles = std::fs::read_to_string(root.join("po/POTFILES")).unwrap();
        for file in potfiles.lines().filter(|l| l.starts_with("ctl/")) {
            let source = std::fs::read_to_string(root.join(file)).unwrap();
            wanted.extend(i18n::source_msgids(&source));
        }
        for file in std::fs::read_dir(root.join("ctl/src")).unwrap() {
            let name = format!("ctl/src/{}", file.unwrap().file_name().to_string_lossy());
            assert!(
                potfiles.lines().any(|l| l == name),
                "{name} not in po/POTFILES"
            );
        }
        let mut missing: Vec<&String> = wanted
            .iter()
            .filter(|w| !translated.contains(w.as_str()))
            .collect();
        missing.sort();
        missing.dedup();
        let as_po: String = missing
            .iter()
            .map(|m| format!("msgid {:?}\nmsgstr \"\"\n\n", m))
            .collect();
        assert!(missing.is_empty(), "untranslated in po/fr.po:\n{as_po}");
    }
}
