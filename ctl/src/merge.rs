//! `mailctl merge`: one message per family from a CSV export, with each family's own file.
//! Reads the CSV as schools' software writes it (UTF-8 or Windows-1252, `;` or `,`), checks
//! every row with the daemon before anything is queued, then follows delivery.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use postecole_dbus::{OutboxProxy, RowAttachment};
use serde_json::json;

use crate::changes::Changes;
use crate::{Failure, Status, t, tn};
use postecole_table::{self as table, Table};

#[derive(Args)]
pub struct MergeArgs {
    /// Account to send with, by id or address (default: `mailctl account default`).
    #[arg(long)]
    account: Option<String>,
    /// Template name (see `mailctl template list`).
    #[arg(long)]
    template: String,
    /// The families: one row each, a header row naming the columns.
    #[arg(long, value_name = "FILE")]
    csv: PathBuf,
    /// Column holding the e-mail address(es); several separated by `,` or `;`.
    #[arg(long, default_value = "email", value_name = "COLUMN")]
    address_column: String,
    /// Column holding each family's file (relative to the CSV's folder).
    #[arg(long, value_name = "COLUMN")]
    attach_column: Option<String>,
    /// Check every row and report, without sending.
    #[arg(long)]
    dry_run: bool,
    /// Show the first N messages as they will be sent, each with its family's file.
    #[arg(long, value_name = "N")]
    preview: Option<usize>,
    /// When some rows are refused, send to the others without asking (scripts).
    #[arg(long)]
    yes: bool,
}

pub fn read_csv(path: &Path) -> Result<Table, Failure> {
    let bytes = std::fs::read(path).map_err(|e| crate::fail::cannot_read(path, e))?;
    table::parse(&bytes).map_err(|e| Failure::new(Status::Data, format!("{}: {e}", path.display())))
}

/// A family's outcome, for the summary.
struct Outcome {
    line: usize,
    address: String,
    state: String,
    detail: String,
}

pub async fn merge(
    connection: &zbus::Connection,
    args: MergeArgs,
    json: bool,
) -> Result<(), Failure> {
    let account = crate::send::account_or_default(connection, args.account).await?;
    let outbox = OutboxProxy::new(connection).await?;
    let template = outbox
        .list_templates()
        .await?
        .into_iter()
        .find(|t| t.name == args.template)
        .ok_or_else(|| {
            Failure::new(
                Status::NoInput,
                t!(
                    "no template `{name}` (see mailctl template list)",
                    name = args.template
                ),
            )
        })?;
    let table = read_csv(&args.csv)?;
    let column = |name: &str| {
        table
            .header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
    };
    let no_column = |name: &str| {
        Failure::new(
            Status::Data,
            t!("the CSV has no column `{name}`", name = name),
        )
    };
    let address_at = column(&args.address_column).ok_or_else(|| no_column(&args.address_column))?;
    let attach_at = match &args.attach_column {
        Some(name) => Some(column(name).ok_or_else(|| no_column(name))?),
        None => None,
    };
    let variable_at: Vec<(String, usize)> = template
        .variables
        .iter()
        .map(|v| {
            column(v).map(|i| (v.clone(), i)).ok_or_else(|| {
                Failure::new(
                    Status::Data,
                    t!(
                        "the CSV has no column `{name}`, which template {template} needs ({variables})",
                        name = v,
                        template = template.name,
                        variables = template.variables.join(", ")
                    ),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let folder = args.csv.parent().map(Path::to_path_buf).unwrap_or_default();

    let cell = |row: &Vec<String>, i: usize| row.get(i).cloned().unwrap_or_default();
    // What the daemon sees: one row per family whose file (if any) exists, with its CSV line.
    let mut rows: Vec<HashMap<String, String>> = Vec::new();
    let mut files: Vec<Option<PathBuf>> = Vec::new();
    let mut lines = Vec::new();
    let mut outcomes = Vec::new();
    for (n, record) in table.rows.iter().enumerate() {
        let line = n + 2;
        let mut row: HashMap<String, String> = variable_at
            .iter()
            .map(|(v, i)| (v.clone(), cell(record, *i)))
            .collect();
        row.insert("email".into(), cell(record, address_at));
        let mut file = None;
        if let Some(at) = attach_at {
            let name = cell(record, at);
            if !name.is_empty() {
                let path = folder.join(&name);
                if let Err(e) = std::fs::metadata(&path) {
                    outcomes.push(Outcome {
                        line,
                        address: cell(record, address_at),
                        state: "refused".into(),
                        detail: t!("file {path}: {error}", path = path.display(), error = e),
                    });
                    continue;
                }
                row.insert("attachment".into(), name);
                file = Some(path);
            }
        }
        rows.push(row);
        files.push(file);
        lines.push((line, cell(record, address_at)));
    }

    if let Some(n) = args.preview {
        for (row, file) in rows.iter().zip(&files).take(n) {
            let vars: HashMap<&str, &str> =
                row.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (subject, text, _) = outbox.preview(&account, &template.name, vars).await?;
            let attached = match file {
                Some(path) => path.display().to_string(),
                None => t!("(none)"),
            };
            crate::outln!(
                "To: {}\nSubject: {subject}\n{}: {attached}\n\n{text}\n----",
                row["email"],
                t!("Attachment")
            );
        }
    }

    // Every row checked at once: a wrong variable anywhere stops everything before sending.
    let (_, refused) = outbox
        .send_template(
            &account,
            &template.name,
            borrowed_rows(&rows),
            Vec::new(),
            true,
        )
        .await?;
    let refused: HashMap<u32, String> = refused.into_iter().collect();
    let mut accepted = Vec::new();
    for (i, (line, address)) in lines.iter().enumerate() {
        match refused.get(&(i as u32)) {
            Some(why) => outcomes.push(Outcome {
                line: *line,
                address: address.clone(),
                state: "refused".into(),
                detail: why.clone(),
            }),
            None => accepted.push(i),
        }
    }
    outcomes.sort_by_key(|o| o.line);
    if args.dry_run {
        if !json {
            eprintln!(
                "{} {}",
                tn!(
                    "{n} family can receive the message,",
                    "{n} families can receive the message,",
                    accepted.len()
                ),
                tn!("{n} cannot:", "{n} cannot:", outcomes.len())
            );
        }
        return report(&outcomes, accepted.len(), json, true);
    }
    if !outcomes.is_empty() && !args.yes {
        // The refused rows first, so that the question is asked knowing who is left out.
        if !json {
            crate::output::stdout(&refused_table(&outcomes));
        }
        let question = tn!(
            "{n} family cannot receive the message (above).",
            "{n} families cannot receive the message (above).",
            outcomes.len()
        );
        let send_rest = tn!(
            "Send it to the {n} other family?",
            "Send it to the {n} other families?",
            accepted.len()
        );
        let go = std::io::stdin().is_terminal()
            && !json
            && crate::confirm(&format!("{question} {send_rest}"))?;
        if !go {
            return Err(Failure::new(
                Status::Data,
                t!(
                    "nothing was sent: some rows are refused. Correct the CSV, or send to the others with --yes."
                ),
            )
            .with_partial(report_json(&outcomes, 0, false)));
        }
    }
    if accepted.is_empty() {
        return report(&outcomes, 0, json, false);
    }

    // The system bus carries at most 16 descriptors per message.
    let mut ids = Vec::new();
    for chunk in accepted.chunks(16) {
        let chunk_rows: Vec<HashMap<String, String>> =
            chunk.iter().map(|&i| rows[i].clone()).collect();
        let mut attachments: Vec<RowAttachment> = Vec::new();
        for (k, &i) in chunk.iter().enumerate() {
            if let Some(path) = &files[i] {
                let file = crate::fail::open_input(path)?;
                let fd: std::os::fd::OwnedFd = file.into();
                let name = path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                attachments.push((
                    k as u32,
                    name,
                    crate::send::content_type(path).into(),
                    fd.into(),
                ));
            }
        }
        let (chunk_ids, chunk_refused) = outbox
            .send_template(
                &account,
                &template.name,
                borrowed_rows(&chunk_rows),
                attachments,
                false,
            )
            .await?;
        let chunk_refused: HashMap<u32, String> = chunk_refused.into_iter().collect();
        let mut chunk_ids = chunk_ids.into_iter();
        for (k, &i) in chunk.iter().enumerate() {
            let (line, address) = lines[i].clone();
            match chunk_refused.get(&(k as u32)) {
                Some(why) => outcomes.push(Outcome {
                    line,
                    address,
                    state: "refused".into(),
                    detail: why.clone(),
                }),
                None => ids.push((line, address, chunk_ids.next().unwrap_or_default())),
            }
        }
    }
    if !json {
        eprintln!(
            "{} {} {}",
            tn!("{n} message queued;", "{n} messages queued;", ids.len()),
            tn!(
                "{n} family left out.",
                "{n} families left out.",
                outcomes.len()
            ),
            t!("Following delivery (interrupting is safe: the queue keeps going).")
        );
    }
    let message_ids: Vec<String> = ids.iter().map(|(_, _, id)| id.clone()).collect();
    let finals = follow(&outbox, &message_ids, json).await?;
    for (line, address, id) in ids {
        let (state, detail) = finals.get(&id).cloned().unwrap_or_default();
        outcomes.push(Outcome {
            line,
            address,
            state,
            detail,
        });
    }
    outcomes.sort_by_key(|o| o.line);
    report(&outcomes, message_ids.len(), json, false)
}

fn borrowed_rows(rows: &[HashMap<String, String>]) -> Vec<HashMap<&str, &str>> {
    rows.iter()
        .map(|r| r.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
        .collect()
}

/// Waits until every message is delivered, failed or cancelled, with a progress bar.
async fn follow(
    outbox: &OutboxProxy<'_>,
    ids: &[String],
    quiet: bool,
) -> Result<HashMap<String, (String, String)>, Failure> {
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(ids.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                .map_err(|e| Failure::new(Status::Other, e.to_string()))?,
        );
        bar
    };
    let wanted: std::collections::HashSet<String> = ids.iter().cloned().collect();
    // Listen first, then look once: a change between the two is seen either way.
    let changes = Changes::listen(outbox, move |id| wanted.contains(id)).await?;
    let mut finals = HashMap::new();
    let mut deferred = std::collections::HashSet::new();
    let mut look: Vec<String> = ids.to_vec();
    let mut eta = None;
    let mut eta_asked = tokio::time::Instant::now() - Duration::from_secs(60);
    loop {
        for m in outbox.find_ids(&look).await? {
            match m.state.as_str() {
                "delivered" | "failed" | "cancelled" => {
                    deferred.remove(&m.id);
                    finals.insert(m.id.clone(), (m.state.clone(), m.last_reply.clone()));
                }
                "deferred" => {
                    deferred.insert(m.id.clone());
                }
                _ => {
                    deferred.remove(&m.id);
                }
            }
        }
        // The relay's limits pace the merge: say when the last message should leave.
        if eta_asked.elapsed() >= Duration::from_secs(3) {
            eta = crate::relay::eta_line(outbox).await;
            eta_asked = tokio::time::Instant::now();
        }
        bar.set_position(finals.len() as u64);
        let mut message = if deferred.is_empty() {
            String::new()
        } else {
            tn!(
                "({n} deferred, will be retried)",
                "({n} deferred, will be retried)",
                deferred.len()
            )
        };
        if let Some(eta) = &eta {
            message = format!("{message} {eta}").trim().to_owned();
        }
        bar.set_message(message);
        if finals.len() == ids.len() {
            bar.finish_and_clear();
            return Ok(finals);
        }
        // What the daemon announced since the last look; after 5 s without any, a look at
        // every unfinished message covers a signal lost on the way.
        match changes.next(Duration::from_secs(5)).await {
            Some(announced) if !announced.is_empty() => {
                look = announced.into_iter().map(|(id, _)| id).collect();
            }
            None => return Err(Failure::new(Status::TempFail, t!("the daemon went away"))),
            Some(_) => {
                look = ids
                    .iter()
                    .filter(|id| !finals.contains_key(*id))
                    .cloned()
                    .collect();
            }
        }
    }
}

fn report_json(outcomes: &[Outcome], queued: usize, dry_run: bool) -> serde_json::Value {
    let count = |s: &str| outcomes.iter().filter(|o| o.state == s).count();
    let rows: Vec<_> = outcomes
        .iter()
        .map(
            |o| json!({"line": o.line, "address": o.address, "state": o.state, "detail": o.detail}),
        )
        .collect();
    json!({"dry_run": dry_run, "queued": queued, "delivered": count("delivered"),
           "failed": count("failed"), "refused": count("refused"), "rows": rows})
}

fn refused_table<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> String {
    let rows: Vec<Vec<String>> = outcomes
        .into_iter()
        .map(|o| {
            vec![
                o.line.to_string(),
                o.address.clone(),
                crate::output::state(&o.state),
                o.detail.clone(),
            ]
        })
        .collect();
    crate::output::table(
        &[t!("LINE"), t!("ADDRESS"), t!("OUTCOME"), t!("WHY")],
        &rows,
    )
}

/// The outcome, and an exit status that tells "all sent" from "partly sent" from "none".
fn report(outcomes: &[Outcome], queued: usize, json: bool, dry_run: bool) -> Result<(), Failure> {
    let count = |s: &str| outcomes.iter().filter(|o| o.state == s).count();
    let failure = if dry_run { None } else { outcome(outcomes) };
    if json {
        // One JSON document: the report, with the error in it when not all was sent.
        let mut doc = report_json(outcomes, queued, dry_run);
        if let Some(f) = &failure {
            doc["error"] = f.json()["error"].clone();
        }
        crate::outln!("{doc}");
    } else {
        let shown: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| dry_run || o.state != "delivered")
            .collect();
        if !shown.is_empty() {
            crate::output::stdout(&refused_table(shown));
        }
        if !dry_run {
            crate::outln!(
                "{}",
                t!(
                    "delivered: {delivered}  failed: {failed}  refused: {refused}",
                    delivered = count("delivered"),
                    failed = count("failed"),
                    refused = count("refused")
                )
            );
        }
    }
    match failure {
        Some(mut f) => {
            f.json_printed = json;
            Err(f)
        }
        None => Ok(()),
    }
}

/// "All sent", or a failure that tells "partly sent" from "none".
fn outcome(outcomes: &[Outcome]) -> Option<Failure> {
    let count = |s: &str| outcomes.iter().filter(|o| o.state == s).count();
    let (delivered, failed, refused) = (count("delivered"), count("failed"), count("refused"));
    if failed + refused == 0 {
        return None;
    }
    let why = t!(
        "{failed} failed, {refused} refused",
        failed = failed,
        refused = refused
    );
    Some(if delivered > 0 {
        Failure::new(
            Status::Partial,
            tn!(
                "partly sent: {n} family received the message; {why}",
                "partly sent: {n} families received the message; {why}",
                delivered,
                why = why
            ),
        )
    } else if failed > 0 {
        Failure::new(
            Status::Unavailable,
            t!("nothing was delivered: {why}", why = why),
        )
    } else {
        Failure::new(Status::Data, t!("nothing was sent: {why}", why = why))
    })
}
