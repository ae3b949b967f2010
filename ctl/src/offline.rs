//! `mailctl archive open`: reads an account's archive directory with its recovery file, with
//! no daemon and no database — what is left when the PC's database is lost. The format is
//! `postecole_archive`'s, shared with postecoled.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use postecole_archive::{KEY_FILE_NAME, KeyFile, RECOVERY_FILE_NAME, log};

use crate::fail::{Failure, Status};

#[derive(Args)]
pub struct OpenArgs {
    /// The account's archive directory (`archive/ID` in the state directory), or the archive
    /// directory holding it.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The account's recovery file, cleRecuperation.crbee.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    #[command(subcommand)]
    command: Option<OpenCommand>,
}

#[derive(Subcommand)]
enum OpenCommand {
    /// One sent message, exactly as it left.
    Show { msgid: String },
}

/// A message as listed: id, To, Subject, size.
type Listed = (String, String, String, u64);

pub fn open(args: OpenArgs, json: bool) -> Result<(), Failure> {
    let text = read_recovery(&args.key)?;
    let (account, recovery) = postecole_archive::parse_recovery_file(&text)
        .map_err(|e| Failure::new(Status::Data, format!("{}: {e}", args.key.display())))?;
    let dir = account_dir(&args.dir, &account)?;
    let key_file = KeyFile::read(&dir).map_err(|e| Failure::new(Status::Data, e))?;
    if key_file.account != account {
        return Err(Failure::new(
            Status::Data,
            format!(
                "this {RECOVERY_FILE_NAME} belongs to account {account}; {} holds account {}",
                dir.display(),
                key_file.account
            ),
        ));
    }
    let key = key_file.unlock(&recovery).ok_or_else(|| {
        Failure::new(Status::NoPerm, format!(
            "this {RECOVERY_FILE_NAME} does not open the archive in {} (another key of the same account?)",
            dir.display()
        ))
    })?;
    let wanted = args
        .command
        .as_ref()
        .map(|OpenCommand::Show { msgid }| msgid.as_str());
    // Only summaries are kept while reading, and for `show` only the message asked for: an
    // archive can hold a whole school year.
    let mut listed: BTreeMap<String, (usize, Listed)> = BTreeMap::new();
    let mut shown: Option<Vec<u8>> = None;
    let mut order = 0;
    let logs = log::logs(&dir).map_err(|e| {
        Failure::new(
            Status::NoInput,
            format!("cannot list {}: {e}", dir.display()),
        )
    })?;
    for name in logs {
        let path = dir.join(&name);
        let file = File::open(&path).map_err(|e| {
            Failure::new(
                Status::NoInput,
                format!("cannot open {}: {e}", path.display()),
            )
        })?;
        let groups = log::groups(&file).map_err(|e| {
            Failure::new(
                Status::Other,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        for (offset, len) in groups {
            // The group's index alone is decrypted for a listing, and for `show` only the
            // chunks of the message asked for (groups before the index are decrypted whole).
            let opened = file
                .try_clone()
                .and_then(|f| log::open_group(f, offset, len, &key));
            let mut group = match opened {
                Ok(group) => group,
                Err(e) => {
                    eprintln!(
                        "mailctl: {}: the group at byte {offset} cannot be read ({e}); skipped",
                        path.display()
                    );
                    continue;
                }
            };
            let entries = std::mem::take(&mut group.entries);
            for entry in entries {
                // Sent again after a crash: the later copy is the one kept.
                match wanted {
                    Some(w) if w == entry.id => match group.bytes(&entry) {
                        Ok(bytes) => shown = Some(bytes),
                        Err(e) => eprintln!(
                            "mailctl: {}: message {} in the group at byte {offset} cannot be read ({e})",
                            path.display(),
                            entry.id
                        ),
                    },
                    Some(_) => {}
                    None => {
                        order += 1;
                        let row = (entry.id.clone(), entry.to, entry.subject, entry.size);
                        listed.insert(entry.id, (order, row));
                    }
                }
            }
        }
    }
    if let Some(msgid) = wanted {
        let bytes = shown.ok_or_else(|| {
            Failure::new(
                Status::NoInput,
                format!("no message `{msgid}` in this archive"),
            )
        })?;
        return std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| Failure::new(Status::Other, e.to_string()));
    }
    let mut rows: Vec<(usize, Listed)> = listed.into_values().collect();
    rows.sort_by_key(|(order, _)| *order);
    let rows: Vec<Listed> = rows.into_iter().map(|(_, row)| row).collect();
    if json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(id, to, subject, size)| {
                serde_json::json!({"id": id, "to": to, "subject": subject, "size": size})
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        println!("{:<14} {:<40} SUBJECT", "ID", "TO");
        for (id, to, subject, _) in rows {
            let to: String = if to.chars().count() > 40 {
                to.chars().take(39).chain(['…']).collect()
            } else {
                to
            };
            println!("{id:<14} {to:<40} {subject}");
        }
    }
    Ok(())
}

fn read_recovery(path: &Path) -> Result<String, Failure> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Failure::new(
            Status::NoInput,
            format!("cannot open the recovery file {}: {e}", path.display()),
        )
    })?;
    // A recovery file is a few hundred bytes; anything else is not one.
    if !meta.is_file() || meta.len() > 64 * 1024 {
        return Err(Failure::new(
            Status::Data,
            format!("{} is not a {RECOVERY_FILE_NAME} file", path.display()),
        ));
    }
    std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            Status::NoInput,
            format!("cannot read the recovery file {}: {e}", path.display()),
        )
    })
}

/// `dir` itself when it holds a key file, else its subdirectory named after the account.
fn account_dir(dir: &Path, account: &str) -> Result<PathBuf, Failure> {
    if dir.join(KEY_FILE_NAME).exists() {
        return Ok(dir.to_owned());
    }
    let sub = dir.join(account);
    if sub.join(KEY_FILE_NAME).exists() {
        return Ok(sub);
    }
    Err(Failure::new(
        Status::NoInput,
        format!(
            "{} holds no archive of account {account} (no `{KEY_FILE_NAME}` file in it or in {})",
            dir.display(),
            sub.display()
        ),
    ))
}
