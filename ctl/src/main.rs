//! mailctl: the command line of postecole. Every command is one or a few D-Bus calls to
//! postecoled; nothing is decided here.

mod merge;
mod output;
mod send;

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use postecole_dbus::{AccountsProxy, ArchiveProxy, Error, OutboxProxy};

#[derive(Parser)]
#[command(
    version,
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
mailctl account staff ID --add jdupont"
)]
struct Cli {
    /// Talk to a postecoled on the session bus (desktop trial) instead of the system bus.
    #[arg(long, global = true)]
    session: bool,
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
        #[command(flatten)]
        json: Json,
    },
}

#[derive(Subcommand)]
enum ArchiveCommand {
    /// The messages sent from an account.
    List {
        id: String,
        /// Use the recovery file instead of the answer.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        #[command(flatten)]
        json: Json,
    },
    /// One sent message, exactly as it left.
    Show {
        id: String,
        msgid: String,
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Every sent message into one mbox file (readable by Thunderbird and others).
    Export {
        id: String,
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Messages and where they stand: queued, sending, deferred, held, delivered, failed, cancelled.
    List(Json),
    /// One message in detail, with the relay's last reply.
    Show {
        id: String,
        #[command(flatten)]
        json: Json,
    },
    /// Try a deferred or failed message again now.
    Retry { id: String },
    /// Withdraw a message that has not been sent.
    Cancel { id: String },
    /// Keep a waiting message from being sent until released.
    Hold { id: String },
    /// Let a held message go.
    Release { id: String },
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// Each template with its variables.
    List(Json),
    /// One template's variables and text.
    Show { name: String },
}

#[derive(Subcommand)]
enum RelayCommand {
    /// Connect to the relay (TLS, authentication) as the daemon would and report.
    Test,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// The school's shared address (secretariat@…), used by the staff an administrator names.
    Establishment,
    /// Your own address, seen and used by you alone.
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

#[derive(Args)]
struct Json {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
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
    /// The addresses you may see: your personal ones and the establishment ones you may use.
    List(Json),
    /// One account in detail.
    Show {
        id: String,
        #[command(flatten)]
        json: Json,
    },
    /// Remove an account from this PC.
    Delete { id: String },
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
    let cli = Cli::parse();
    if let Command::GenerateFiles { dir } = &cli.command {
        return match generate_files(dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mailctl: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// mailctl(1) and one page per subcommand (mailctl-account(1), …), plus bash, zsh and fish
/// completions, all from the clap definition above.
fn generate_files(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(Cli::command(), &man)?;
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

/// What mailctl prints on failure: the daemon's sentence, then its error name for scripts.
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::ZBus(zbus::Error::MethodError(name, msg, _)) => {
                Failure(format!("{} [{}]", msg.unwrap_or_default(), name.as_str()))
            }
            Error::ZBus(other) => Failure(format!("cannot reach postecoled: {other}")),
            other => Failure(format!(
                "{} [{}.{}]",
                other.message(),
                postecole_dbus::ERROR_PREFIX,
                other.short_name()
            )),
        }
    }
}

impl From<zbus::Error> for Failure {
    fn from(e: zbus::Error) -> Self {
        Failure::from(Error::ZBus(e))
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let connection = if cli.session {
        zbus::Connection::session().await
    } else {
        zbus::Connection::system().await
    }
    .map_err(|e| {
        Failure(format!(
            "cannot connect to the D-Bus {} bus: {e}",
            if cli.session { "session" } else { "system" }
        ))
    })?;
    match cli.command {
        Command::Account(cmd) => account(&AccountsProxy::new(&connection).await?, cmd).await,
        Command::Send(args) => send::send(&connection, args).await,
        Command::Merge(args) => merge::merge(&connection, args).await,
        Command::Template(cmd) => template(&OutboxProxy::new(&connection).await?, cmd).await,
        Command::Queue(cmd) => queue(&OutboxProxy::new(&connection).await?, cmd).await,
        Command::GenerateFiles { .. } => unreachable!("handled before connecting"),
        Command::Archive(cmd) => archive(&ArchiveProxy::new(&connection).await?, cmd).await,
        Command::Audit { limit, json } => {
            let entries = AccountsProxy::new(&connection)
                .await?
                .audit_log(limit)
                .await?;
            if json.json {
                println!("{}", output::audit_json(&entries));
            } else {
                print!("{}", output::audit_table(&entries, output::now()));
            }
            Ok(())
        }
        Command::Relay(RelayCommand::Test) => {
            println!(
                "{}",
                OutboxProxy::new(&connection).await?.test_relay().await?
            );
            Ok(())
        }
    }
}

async fn template(proxy: &OutboxProxy<'_>, cmd: TemplateCommand) -> Result<(), Failure> {
    let templates = proxy.list_templates().await?;
    match cmd {
        TemplateCommand::List(Json { json: true }) => {
            let list: Vec<_> = templates
                .iter()
                .map(|t| {
                    serde_json::json!({"name": t.name, "description": t.description,
                                       "variables": t.variables, "attachment": t.attachment})
                })
                .collect();
            println!("{}", serde_json::Value::Array(list));
        }
        TemplateCommand::List(_) => {
            let rows: Vec<Vec<String>> = templates
                .iter()
                .map(|t| {
                    let mut vars = t.variables.join(", ");
                    if t.attachment {
                        vars.push_str(" + file");
                    }
                    vec![t.name.clone(), t.description.clone(), vars]
                })
                .collect();
            print!(
                "{}",
                output::table(&["NAME", "DESCRIPTION", "VARIABLES"], &rows)
            );
        }
        TemplateCommand::Show { name } => {
            let t = templates
                .into_iter()
                .find(|t| t.name == name)
                .ok_or_else(|| Failure(format!("no template `{name}`")))?;
            println!(
                "name        {}
description {}
variables   {}
attachment  {}
subject     {}",
                t.name,
                t.description,
                t.variables.join(", "),
                if t.attachment { "one per family" } else { "-" },
                t.subject
            );
        }
    }
    Ok(())
}

async fn queue(proxy: &OutboxProxy<'_>, cmd: QueueCommand) -> Result<(), Failure> {
    match cmd {
        QueueCommand::List(Json { json }) => {
            let messages = proxy.list_messages().await?;
            if json {
                println!("{}", output::messages_json(&messages));
            } else {
                print!("{}", output::messages_table(&messages, output::now()));
            }
        }
        QueueCommand::Show { id, json } => {
            let message = proxy.get_message(&id).await?;
            if json.json {
                println!("{}", output::message_json(&message));
            } else {
                print!("{}", output::message_details(&message, output::now()));
            }
        }
        QueueCommand::Retry { id } => proxy.retry(&id).await?,
        QueueCommand::Cancel { id } => proxy.cancel(&id).await?,
        QueueCommand::Hold { id } => proxy.hold(&id).await?,
        QueueCommand::Release { id } => proxy.release(&id).await?,
    }
    Ok(())
}

async fn account(proxy: &AccountsProxy<'_>, cmd: AccountCommand) -> Result<(), Failure> {
    match cmd {
        AccountCommand::Create {
            kind,
            label,
            address,
        } => {
            let id = proxy
                .create_account(kind.as_str(), &label, &address)
                .await?;
            println!("{id}");
            if std::io::stderr().is_terminal() {
                eprintln!(
                    "A code was e-mailed to {address}. Type it back with: mailctl account verify {id} CODE"
                );
            }
        }
        AccountCommand::Verify { id, code } => {
            proxy.confirm_code(&id, &code).await?;
            eprintln!("Address verified. Next: mailctl account secure {id} --question '…'");
        }
        AccountCommand::Resend { id } => {
            proxy.resend_code(&id).await?;
            eprintln!("A new code was sent; the previous one no longer works.");
        }
        AccountCommand::Secure { id, question } => {
            let answer = read_answer("Answer to the secret question: ", true)?;
            proxy.set_secret(&id, &question, &answer).await?;
            eprintln!("The account is active. A confirmation e-mail was sent to the address.");
        }
        AccountCommand::Staff { id, add, remove } => match (add, remove) {
            (Some(user), _) => proxy.add_staff(&id, &user).await?,
            (None, Some(user)) => proxy.remove_staff(&id, &user).await?,
            (None, None) => unreachable!("clap requires --add or --remove"),
        },
        AccountCommand::List(Json { json }) => {
            let accounts = proxy.list_accounts().await?;
            if json {
                println!("{}", output::accounts_json(&accounts));
            } else {
                print!("{}", output::accounts_table(&accounts));
            }
        }
        AccountCommand::Show { id, json } => {
            let account = proxy.get_account(&id).await?;
            if json.json {
                println!("{}", output::account_json(&account));
            } else {
                print!("{}", output::account_details(&account));
            }
        }
        AccountCommand::Delete { id } => proxy.delete_account(&id).await?,
        AccountCommand::Convert { id, to } => proxy.convert_account(&id, to.as_str()).await?,
        AccountCommand::Default { id: Some(id) } => proxy.set_default_account(&id).await?,
        AccountCommand::Secret { id, question } => {
            let old = read_answer("Current answer: ", false)?;
            let new = read_answer("New answer: ", true)?;
            ArchiveProxy::new(proxy.inner().connection())
                .await?
                .change_secret(&id, &old, &question, &new)
                .await?;
            eprintln!("The secret question and answer were changed.");
        }
        AccountCommand::Recover { id, key, question } => {
            let file = open_key(&key)?;
            let new = read_answer("New answer to the secret question: ", true)?;
            ArchiveProxy::new(proxy.inner().connection())
                .await?
                .recover(&id, file, &question, &new)
                .await?;
            eprintln!("New secret set. Mail sent before stays readable; keep the recovery file.");
        }
        AccountCommand::Default { id: None } => {
            let id = proxy.get_default_account().await?;
            if id.is_empty() {
                return Err(Failure(
                    "no default account is set (mailctl account default ID)".into(),
                ));
            }
            println!("{id}");
        }
    }
    Ok(())
}

fn open_key(path: &PathBuf) -> Result<zbus::OwnedFd, Failure> {
    let file = std::fs::File::open(path).map_err(|e| {
        Failure(format!(
            "cannot open the recovery file {}: {e}",
            path.display()
        ))
    })?;
    Ok(std::os::fd::OwnedFd::from(file).into())
}

/// The answer (prompted) or the recovery file, as the Archive calls take them.
fn unlock(key: &Option<PathBuf>) -> Result<(String, Vec<zbus::OwnedFd>), Failure> {
    match key {
        Some(path) => Ok((String::new(), vec![open_key(path)?])),
        None => Ok((
            read_answer("Answer to the secret question: ", false)?,
            Vec::new(),
        )),
    }
}

async fn archive(proxy: &ArchiveProxy<'_>, cmd: ArchiveCommand) -> Result<(), Failure> {
    match cmd {
        ArchiveCommand::List { id, key, json } => {
            let (answer, files) = unlock(&key)?;
            let messages = proxy.list_archive(&id, &answer, files).await?;
            if json.json {
                println!("{}", output::archived_json(&messages));
            } else {
                print!("{}", output::archived_table(&messages, output::now()));
            }
        }
        ArchiveCommand::Show { id, msgid, key } => {
            use std::io::Write;
            let (answer, files) = unlock(&key)?;
            let content = proxy.read_archived(&id, &msgid, &answer, files).await?;
            std::io::stdout()
                .write_all(&content)
                .map_err(|e| Failure(e.to_string()))?;
        }
        ArchiveCommand::Export { id, output, key } => {
            use std::os::unix::fs::OpenOptionsExt;
            let (answer, files) = unlock(&key)?;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&output)
                .map_err(|e| Failure(format!("cannot create {}: {e}", output.display())))?;
            let fd: zbus::OwnedFd = std::os::fd::OwnedFd::from(file).into();
            let count = proxy.export_mbox(&id, &answer, files, fd).await?;
            eprintln!("{count} messages written to {}", output.display());
        }
    }
    Ok(())
}

/// The answer, without echo on a terminal (typed twice), else the first line of stdin.
fn read_answer(prompt: &str, confirm: bool) -> Result<String, Failure> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(prompt).map_err(|e| Failure(e.to_string()))?;
        if confirm {
            let second =
                rpassword::prompt_password("Once more: ").map_err(|e| Failure(e.to_string()))?;
            if first != second {
                return Err(Failure(
                    "the two answers differ; nothing was changed".into(),
                ));
            }
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure(format!("cannot read the answer from standard input: {e}")))?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}
