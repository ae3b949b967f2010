//! "Diffusion aux familles": one message per family from a template and a CSV file, read with
//! the rules of `mailctl merge` (UTF-8 or Windows-1252, `,` or `;`, a column naming each
//! family's file beside the CSV), previewed, then sent with its progress shown.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use adw::prelude::*;
use gtk::{gio, glib};
use postecole_dbus::{self as api, RowAttachment, TemplateInfo};

use crate::i18n::{tr, trf};
use crate::window::AppRc;
use crate::{client, errors, ui};

/// The column holding each family's address(es), as `mailctl merge` names it by default.
pub const ADDRESS_COLUMN: &str = "email";
/// Letters shown in the preview.
pub const PREVIEWED: usize = 3;
/// The system bus carries at most 16 descriptors per message.
const CHUNK: usize = 16;

pub use postecole_table::Table;

/// The CSV file's header and rows, read as `mailctl merge` reads them; a sentence when it
/// cannot be read as CSV.
pub fn parse(bytes: &[u8]) -> Result<Table, String> {
    postecole_table::parse(bytes).map_err(|e| {
        trf(
            "This file cannot be read as a table (CSV): {}. Save it again from the spreadsheet as “CSV”.",
            &[&e.to_string()],
        )
    })
}

/// The column a spreadsheet most likely names each family's file in, if any.
pub fn guess_file_column(header: &[String]) -> Option<usize> {
    const NAMES: &[&str] = &[
        "attachment",
        "fichier",
        "pièce jointe",
        "piece jointe",
        "pdf",
        "bulletin",
        "document",
        "file",
    ];
    header
        .iter()
        .position(|h| NAMES.contains(&h.to_lowercase().as_str()))
}

/// A family left out, with the reason in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The line of the CSV file, counting the header as line 1.
    pub line: usize,
    pub address: String,
    pub reason: String,
}

/// What will be sent: the rows the daemon is given, each row's file, its CSV line and
/// address, and the families already left out here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub rows: Vec<HashMap<String, String>>,
    pub files: Vec<Option<PathBuf>>,
    pub lines: Vec<(usize, String)>,
    pub refused: Vec<Refused>,
}

/// Turns the table into the daemon's rows for `template`: a column per variable of the
/// template, the addresses, and the file named in column `file_at` (relative to `folder`,
/// where the CSV is). A missing column stops everything with a sentence, as `mailctl merge`
/// does; a missing file leaves that family out.
pub fn plan(
    table: &Table,
    template: &TemplateInfo,
    file_at: Option<usize>,
    folder: &Path,
) -> Result<Plan, String> {
    let column = |name: &str| {
        table
            .header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
    };
    let address_at = column(ADDRESS_COLUMN).ok_or_else(|| {
        trf(
            "The file has no “{}” column: name the column of the e-mail addresses so, in its first line.",
            &[ADDRESS_COLUMN],
        )
    })?;
    let mut variables = Vec::new();
    for v in &template.variables {
        let at = column(v).ok_or_else(|| {
            trf(
                "The file has no “{}” column, which this model needs (it uses: {}).",
                &[v, &template.variables.join(", ")],
            )
        })?;
        variables.push((v.clone(), at));
    }
    if template.attachment && file_at.is_none() {
        return Err(tr(
            "This model sends each family its own file: choose the column that names the files.",
        ));
    }
    let cell = |row: &Vec<String>, i: usize| row.get(i).cloned().unwrap_or_default();
    let mut plan = Plan::default();
    for (n, record) in table.rows.iter().enumerate() {
        let line = n + 2;
        let address = cell(record, address_at);
        let mut row: HashMap<String, String> = variables
            .iter()
            .map(|(v, i)| (v.clone(), cell(record, *i)))
            .collect();
        row.insert(ADDRESS_COLUMN.into(), address.clone());
        let mut file = None;
        if let Some(at) = file_at {
            let name = cell(record, at);
            if !name.is_empty() {
                let path = folder.join(&name);
                if !path.is_file() {
                    plan.refused.push(Refused {
                        line,
                        address,
                        reason: trf("The file {} is not beside the CSV file.", &[&name]),
                    });
                    continue;
                }
                row.insert("attachment".into(), name);
                file = Some(path);
            }
        }
        plan.rows.push(row);
        plan.files.push(file);
        plan.lines.push((line, address));
    }
    Ok(plan)
}

/// The daemon's reason for refusing a row, in words.
pub fn reason_words(reason: &str) -> String {
    if reason == "no address" {
        tr("No e-mail address.")
    } else if reason == "no attachment" {
        tr("No file for this family.")
    } else if let Some(bad) = reason.strip_prefix("invalid address ") {
        trf(
            "The e-mail address {} is not valid.",
            &[bad.trim_matches('`')],
        )
    } else {
        trf("Refused by the mail service: {}", &[reason])
    }
}

/// The rows the daemon accepts (indexes into the plan), the refusals it gave added to the
/// plan's own, all sorted by line.
pub fn apply_refusals(plan: &mut Plan, refused: &[(u32, String)]) -> Vec<usize> {
    let refused: HashMap<u32, &String> = refused.iter().map(|(i, r)| (*i, r)).collect();
    let mut accepted = Vec::new();
    for (i, (line, address)) in plan.lines.iter().enumerate() {
        match refused.get(&(i as u32)) {
            Some(why) => plan.refused.push(Refused {
                line: *line,
                address: address.clone(),
                reason: reason_words(why),
            }),
            None => accepted.push(i),
        }
    }
    plan.refused.sort_by_key(|r| r.line);
    accepted
}

/// What is left to wait, from the pace so far; none before anything is done.
pub fn time_left(done: usize, total: usize, elapsed: Duration) -> Option<Duration> {
    if done == 0 || done >= total {
        return None;
    }
    Some(elapsed.mul_f64((total - done) as f64 / done as f64))
}

/// "12 of 40 delivered — about 2 min left".
pub fn progress_words(done: usize, total: usize, left: Option<Duration>) -> String {
    let count = trf(
        "{} of {} messages delivered",
        &[&done.to_string(), &total.to_string()],
    );
    match left {
        Some(d) if d.as_secs() < 60 => trf("{} — less than a minute left", &[&count]),
        Some(d) => trf(
            "{} — about {} min left",
            &[&count, &d.as_secs().div_ceil(60).to_string()],
        ),
        None => count,
    }
}

fn final_state(state: &str) -> bool {
    [api::MSG_DELIVERED, api::MSG_FAILED, api::MSG_CANCELLED].contains(&state)
}

fn content_type(path: &Path) -> String {
    let (guess, _) = gio::content_type_guess(Some(path), None);
    gio::content_type_get_mime_type(&guess)
        .map(|m| m.to_string())
        .unwrap_or_else(|| "application/octet-stream".into())
}

/// The page's state between the steps.
#[derive(Default)]
struct State {
    templates: Vec<TemplateInfo>,
    /// The template chosen, by index into `templates`.
    template: Option<usize>,
    accounts: Vec<String>,
    csv: Option<PathBuf>,
    table: Table,
    plan: Plan,
    accepted: Vec<usize>,
}

struct Widgets {
    from: gtk::DropDown,
    /// One toggle button per template: GTK 4.8 gives drop-downs' lists no accessible action.
    templates: gtk::Box,
    template_help: gtk::Label,
    file_column: gtk::DropDown,
    columns: gtk::StringList,
    csv_name: gtk::Label,
    preview: gtk::Box,
    summary: gtk::Label,
    error: gtk::Label,
    send: gtk::Button,
    progress: gtk::ProgressBar,
    progress_text: gtk::Label,
    /// Shown once something was sent.
    follow: gtk::Button,
}

fn clear(b: &gtk::Box) {
    while let Some(c) = b.first_child() {
        b.remove(&c);
    }
}

/// Checks the rows with the daemon (a dry run), then shows the first letters as they will be
/// sent and every family left out.
async fn refresh_preview(state: Rc<RefCell<State>>, w: Rc<Widgets>) {
    clear(&w.preview);
    w.summary.set_label("");
    w.send.set_sensitive(false);
    ui::show_message(&w.error, None);
    let (template, account, folder) = {
        let s = state.borrow();
        let Some(path) = s.csv.clone() else { return };
        let Some(template) = s.template.and_then(|i| s.templates.get(i)).cloned() else {
            return;
        };
        let Some(account) = s.accounts.get(w.from.selected() as usize).cloned() else {
            ui::show_message(
                &w.error,
                Some(&tr("Set up an account first, in “Accounts”.")),
            );
            return;
        };
        (
            template,
            account,
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
        )
    };
    let file_at = match w.file_column.selected() {
        0 | gtk::INVALID_LIST_POSITION => None,
        n => Some(n as usize - 1),
    };
    let planned = plan(&state.borrow().table, &template, file_at, &folder);
    let mut planned = match planned {
        Ok(p) => p,
        Err(sentence) => {
            ui::show_message(&w.error, Some(&sentence));
            return;
        }
    };
    let rows = planned.rows.clone();
    let (name, acc) = (template.name.clone(), account.clone());
    let checked = client::call(move |c| async move {
        let outbox = client::outbox(&c).await?;
        let borrowed: Vec<HashMap<&str, &str>> = rows
            .iter()
            .map(|r| r.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
            .collect();
        let (_, refused) = outbox
            .send_template(&acc, &name, borrowed, Vec::new(), true)
            .await?;
        let mut letters = Vec::new();
        for row in rows.iter().take(PREVIEWED) {
            let vars: HashMap<&str, &str> =
                row.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (subject, text, _) = outbox.preview(&acc, &name, vars).await?;
            letters.push((
                row.get(ADDRESS_COLUMN).cloned().unwrap_or_default(),
                subject,
                text,
            ));
        }
        Ok((refused, letters))
    })
    .await;
    let (refused, letters) = match checked {
        Ok(r) => r,
        Err(e) => {
            ui::show_message(&w.error, Some(&errors::sentence(&e)));
            return;
        }
    };
    let accepted = apply_refusals(&mut planned, &refused);
    render_preview(&w, &planned, &accepted, &letters);
    let mut s = state.borrow_mut();
    s.plan = planned;
    s.accepted = accepted;
}

/// The first letters as they will be sent (address, subject, text), the families left out
/// with their reasons, and how many will receive the message.
fn render_preview(
    w: &Widgets,
    plan: &Plan,
    accepted: &[usize],
    letters: &[(String, String, String)],
) {
    clear(&w.preview);
    if !plan.refused.is_empty() {
        let list = gtk::ListBox::builder()
            .selection_mode(gtk::SelectionMode::None)
            .build();
        list.add_css_class("boxed-list");
        ui::name(&list, &tr("Families left out"));
        for r in &plan.refused {
            let title = trf(
                "Line {}: {}",
                &[
                    &r.line.to_string(),
                    &if r.address.is_empty() {
                        tr("(no address)")
                    } else {
                        r.address.clone()
                    },
                ],
            );
            let row = adw::ActionRow::builder()
                .title(glib::markup_escape_text(&title).as_str())
                .subtitle(glib::markup_escape_text(&r.reason).as_str())
                .build();
            ui::name(&row, &format!("{title} {}", r.reason));
            list.append(&row);
        }
        let heading = ui::text(&tr("Families left out"));
        heading.add_css_class("heading");
        w.preview.append(&heading);
        w.preview.append(&list);
    }
    for (i, (to, subject, text)) in letters.iter().enumerate() {
        let file = plan.files.get(i).cloned().flatten();
        let mut shown = format!(
            "{}\n{}\n",
            trf("To: {}", &[to]),
            trf("Subject: {}", &[subject])
        );
        if let Some(f) = file {
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            shown.push_str(&trf("Attached file: {}", &[&name]));
            shown.push('\n');
        }
        shown.push('\n');
        shown.push_str(text);
        let letter = ui::text(&shown);
        letter.set_selectable(true);
        letter.add_css_class("card");
        letter.set_margin_bottom(6);
        let title = trf("Letter {}", &[&(i + 1).to_string()]);
        ui::name(&letter, &format!("{title}\n{shown}"));
        w.preview.append(&ui::text(&title));
        w.preview.append(&letter);
    }
    w.summary.set_label(&trf(
        "Families who will receive the message: {}. Left out: {}.",
        &[&accepted.len().to_string(), &plan.refused.len().to_string()],
    ));
    w.send.set_sensitive(!accepted.is_empty());
}

/// Queues the accepted families' messages, then follows them to delivery.
async fn send_all(app: AppRc, state: Rc<RefCell<State>>, w: Rc<Widgets>) {
    let (rows, files, account, template) = {
        let s = state.borrow();
        let pick = |i: &usize| (s.plan.rows[*i].clone(), s.plan.files[*i].clone());
        let (rows, files): (Vec<_>, Vec<_>) = s.accepted.iter().map(pick).unzip();
        let account = s.accounts.get(w.from.selected() as usize).cloned();
        let template = s.template.and_then(|i| s.templates.get(i)).cloned();
        (rows, files, account, template)
    };
    let (Some(account), Some(template)) = (account, template) else {
        return;
    };
    w.send.set_sensitive(false);
    ui::show_message(&w.error, None);
    // Listening before queuing: a message may be delivered before its id is back.
    let changes = client::message_changes();
    let total = rows.len();
    w.progress.set_fraction(0.0);
    w.progress.set_visible(true);
    w.progress_text.set_label(&progress_words(0, total, None));
    let mut ids: Vec<String> = Vec::new();
    for (chunk_rows, chunk_files) in rows.chunks(CHUNK).zip(files.chunks(CHUNK)) {
        let mut attachments: Vec<RowAttachment> = Vec::new();
        for (k, file) in chunk_files.iter().enumerate() {
            let Some(path) = file else { continue };
            match std::fs::File::open(path) {
                Ok(f) => attachments.push((
                    k as u32,
                    path.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    content_type(path),
                    zbus::OwnedFd::from(std::os::fd::OwnedFd::from(f)),
                )),
                Err(_) => {
                    ui::show_message(
                        &w.error,
                        Some(&trf(
                            "The file {} cannot be read.",
                            &[&path.display().to_string()],
                        )),
                    );
                    w.send.set_sensitive(true);
                    return;
                }
            }
        }
        let addresses: Vec<String> = chunk_rows
            .iter()
            .map(|r| r.get(ADDRESS_COLUMN).cloned().unwrap_or_default())
            .collect();
        let (chunk_rows, acc, name) = (chunk_rows.to_vec(), account.clone(), template.name.clone());
        let queued = client::call(move |c| async move {
            let borrowed: Vec<HashMap<&str, &str>> = chunk_rows
                .iter()
                .map(|r| r.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
                .collect();
            client::outbox(&c)
                .await?
                .send_template(&acc, &name, borrowed, attachments, false)
                .await
        })
        .await;
        match queued {
            Ok((chunk_ids, refused)) => {
                // Who each family's message went to, for "Suivi des envois": the daemon keeps
                // no recipient once delivered, which may be before the page ever sees it.
                if refused.is_empty() && chunk_ids.len() == addresses.len() {
                    let mut known = app.recipients.borrow_mut();
                    for (id, address) in chunk_ids.iter().zip(addresses) {
                        known.insert(id.clone(), vec![address]);
                    }
                }
                ids.extend(chunk_ids)
            }
            Err(e) => {
                ui::show_message(&w.error, Some(&errors::sentence(&e)));
                break;
            }
        }
    }
    if ids.is_empty() {
        w.send.set_sensitive(true);
        return;
    }
    w.follow.set_visible(true);
    let total = ids.len();
    let mut finished: HashMap<String, String> = HashMap::new();
    // Some may be delivered already: their signal came before their id.
    let look = ids.clone();
    if let Ok(list) =
        client::call(move |c| async move { client::outbox(&c).await?.find_ids(&look).await }).await
    {
        // Only these ids come back: no other message to leave out.
        for m in list {
            if final_state(&m.state) {
                finished.insert(m.id, m.state);
            }
        }
    }
    let started = Instant::now();
    loop {
        let done = finished.len();
        w.progress.set_fraction(done as f64 / total as f64);
        w.progress_text.set_label(&progress_words(
            done,
            total,
            time_left(done, total, started.elapsed()),
        ));
        if done >= total {
            break;
        }
        match changes.recv().await {
            Ok((id, state)) if ids.contains(&id) && final_state(&state) => {
                finished.insert(id, state);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let delivered = finished
        .values()
        .filter(|s| s.as_str() == api::MSG_DELIVERED)
        .count();
    w.progress_text.set_label(&trf(
        "Done: {} of {} messages delivered. Each one is in “Sending follow-up”.",
        &[&delivered.to_string(), &total.to_string()],
    ));
    w.send.set_sensitive(true);
}

pub fn page(app: &AppRc) -> gtk::Widget {
    build(app).0
}

fn build(app: &AppRc) -> (gtk::Widget, Rc<RefCell<State>>, Rc<Widgets>) {
    let (clamp, content) = ui::page();
    content.append(&ui::heading(&tr("Mailing to families")));
    content.append(&ui::text(&tr(
        "One message to each family from a model and a table (CSV) with one line per family and a column “email”. Check the preview, then send.",
    )));
    let state: Rc<RefCell<State>> = Rc::default();

    let accounts = gtk::StringList::new(&[]);
    let from = gtk::DropDown::builder()
        .model(&accounts)
        .valign(gtk::Align::Center)
        .build();
    ui::name(&from, &tr("From"));
    let from_row = adw::ActionRow::builder().title(tr("From")).build();
    from_row.add_suffix(&from);
    let columns = gtk::StringList::new(&[&tr("(none)")]);
    let file_column = gtk::DropDown::builder()
        .model(&columns)
        .valign(gtk::Align::Center)
        .build();
    ui::name(&file_column, &tr("Column of the files"));
    let file_row = adw::ActionRow::builder()
        .title(tr("Column of the files"))
        .build();
    file_row.add_suffix(&file_column);
    let group = adw::PreferencesGroup::new();
    group.add(&from_row);
    group.add(&file_row);
    content.append(&group);
    content.append(
        &gtk::Label::builder()
            .label(tr("Model"))
            .xalign(0.0)
            .css_classes(["heading"])
            .build(),
    );
    let templates = gtk::Box::new(gtk::Orientation::Vertical, 0);
    templates.add_css_class("linked");
    content.append(&templates);
    let template_help = ui::text("");
    content.append(&template_help);

    let open = ui::button(&tr("Open the CSV file…"));
    let csv_name = ui::text("");
    let open_row = gtk::Box::new(gtk::Orientation::Horizontal, 12);
    open_row.append(&open);
    open_row.append(&csv_name);
    content.append(&open_row);
    let error = ui::error_label();
    content.append(&error);
    let summary = gtk::Label::builder()
        .wrap(true)
        .xalign(0.0)
        .hexpand(true)
        .accessible_role(gtk::AccessibleRole::Status)
        .build();
    let send = ui::suggested(&tr("Send to the families"));
    send.set_sensitive(false);
    let send_row = gtk::Box::new(gtk::Orientation::Horizontal, 12);
    send_row.append(&summary);
    send_row.append(&send);
    content.append(&send_row);
    let progress = gtk::ProgressBar::builder().visible(false).build();
    ui::name(&progress, &tr("Sending progress"));
    content.append(&progress);
    let progress_text = gtk::Label::builder()
        .wrap(true)
        .xalign(0.0)
        .accessible_role(gtk::AccessibleRole::Status)
        .build();
    content.append(&progress_text);
    let follow = ui::button(&tr("See them in “Sending follow-up”"));
    follow.set_halign(gtk::Align::Start);
    follow.set_visible(false);
    content.append(&follow);
    // Below the count and the button: the families left out first, then the first letters.
    let preview = gtk::Box::new(gtk::Orientation::Vertical, 6);
    content.append(&preview);

    let w = Rc::new(Widgets {
        from,
        templates,
        template_help,
        file_column,
        columns,
        csv_name,
        preview,
        summary,
        error,
        send,
        progress,
        progress_text,
        follow,
    });

    let refresh = {
        let (state, w) = (state.clone(), w.clone());
        move || ui::spawn(refresh_preview(state.clone(), w.clone()))
    };
    {
        let (a, state, w, accounts) = (app.clone(), state.clone(), w.clone(), accounts.clone());
        app.on_accounts_reloaded(move || {
            let before = state.borrow().accounts.clone();
            let ids = a.fill_from(&accounts, &w.from, &before);
            state.borrow_mut().accounts = ids;
        });
    }
    {
        let (state, w, r) = (state.clone(), w.clone(), refresh.clone());
        ui::spawn(async move {
            let list =
                client::call(|c| async move { client::outbox(&c).await?.list_templates().await })
                    .await;
            match list {
                Ok(list) => show_templates(&state, &w, list, Rc::new(r)),
                Err(e) => ui::show_message(&w.error, Some(&errors::sentence(&e))),
            }
        });
    }
    {
        let r = refresh.clone();
        w.from.connect_selected_notify(move |_| r());
        let r = refresh.clone();
        w.file_column.connect_selected_notify(move |_| r());
    }

    // A native chooser is no widget: something must hold it while it is open.
    let open_chooser: Rc<RefCell<Option<gtk::FileChooserNative>>> = Rc::default();
    {
        let (a, state, w, r) = (app.clone(), state.clone(), w.clone(), refresh.clone());
        open.connect_clicked(move |_| {
            let chooser = gtk::FileChooserNative::new(
                Some(&tr("Open the CSV file")),
                Some(&a.window),
                gtk::FileChooserAction::Open,
                Some(&tr("Open")),
                Some(&tr("Cancel")),
            );
            chooser.set_modal(true);
            let (state, w, r) = (state.clone(), w.clone(), r.clone());
            chooser.connect_response(move |c, response| {
                if response != gtk::ResponseType::Accept {
                    return;
                }
                let Some(file) = c.file() else { return };
                let (state, w, r) = (state.clone(), w.clone(), r.clone());
                ui::spawn(async move {
                    let loaded = file.load_contents_future().await;
                    let table = match loaded {
                        Ok((bytes, _)) => parse(&bytes),
                        Err(_) => Err(tr("This file cannot be read.")),
                    };
                    match table {
                        Ok(table) => open_table(&state, &w, file.path(), table),
                        Err(sentence) => ui::show_message(&w.error, Some(&sentence)),
                    }
                    r();
                });
            });
            chooser.show();
            open_chooser.replace(Some(chooser));
        });
    }
    {
        let (a, state, w) = (app.clone(), state.clone(), w.clone());
        w.clone().send.connect_clicked(move |_| {
            ui::spawn(send_all(a.clone(), state.clone(), w.clone()));
        });
    }
    {
        let a = app.clone();
        w.follow.connect_clicked(move |_| a.show_page("outbox"));
    }
    (ui::scrolled(&clamp).upcast(), state, w)
}

/// What a template needs from the table, in words.
fn template_help(t: &TemplateInfo) -> String {
    let mut columns = vec![ADDRESS_COLUMN.to_owned()];
    columns.extend(t.variables.iter().cloned());
    let mut help = trf("Columns this model uses: {}", &[&columns.join(", ")]);
    if t.attachment {
        help.push_str(". ");
        help.push_str(&tr("Each family receives its own file."));
    }
    help
}

fn show_templates(
    state: &Rc<RefCell<State>>,
    w: &Rc<Widgets>,
    list: Vec<TemplateInfo>,
    refresh: Rc<dyn Fn()>,
) {
    clear(&w.templates);
    let mut first: Option<gtk::ToggleButton> = None;
    for (i, t) in list.iter().enumerate() {
        let title = if t.description.is_empty() {
            t.name.clone()
        } else {
            t.description.clone()
        };
        let toggle = gtk::ToggleButton::builder().label(title.as_str()).build();
        ui::name(&toggle, &title);
        match &first {
            Some(f) => toggle.set_group(Some(f)),
            None => first = Some(toggle.clone()),
        }
        let (s, w2, refresh, help) = (state.clone(), w.clone(), refresh.clone(), template_help(t));
        toggle.connect_toggled(move |b| {
            if b.is_active() {
                s.borrow_mut().template = Some(i);
                w2.template_help.set_label(&help);
                refresh();
            }
        });
        w.templates.append(&toggle);
    }
    state.borrow_mut().templates = list;
}

fn open_table(state: &Rc<RefCell<State>>, w: &Widgets, path: Option<PathBuf>, table: Table) {
    let shown = path
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    w.csv_name.set_label(&trf(
        "File: {} ({} lines)",
        &[&shown, &table.rows.len().to_string()],
    ));
    let mut names = vec![tr("(none)")];
    names.extend(table.header.iter().cloned());
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let guess = guess_file_column(&table.header);
    {
        let mut s = state.borrow_mut();
        s.csv = path;
        s.table = table;
    }
    w.columns.splice(0, w.columns.n_items(), &names);
    w.file_column
        .set_selected(guess.map(|g| g as u32 + 1).unwrap_or(0));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(variables: &[&str], attachment: bool) -> TemplateInfo {
        TemplateInfo {
            name: "bulletin".into(),
            variables: variables.iter().map(|v| v.to_string()).collect(),
            attachment,
            ..Default::default()
        }
    }

    #[test]
    fn windows_1252_and_semicolons_as_spreadsheets_export_them() {
        let bytes = b"nom;email\r\nL\xe9a;lea@example.org\r\n";
        let t = parse(bytes).unwrap();
        assert_eq!(t.header, ["nom", "email"]);
        assert_eq!(t.rows, [["Léa", "lea@example.org"]]);
        let bom = parse("\u{feff}email,nom\na@x.fr,Zoé\n".as_bytes()).unwrap();
        assert_eq!(bom.header, ["email", "nom"]);
        assert_eq!(bom.rows[0][1], "Zoé");
    }

    #[test]
    fn missing_files_are_left_out_and_missing_columns_stop_everything() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.pdf"), b"%PDF").unwrap();
        let t =
            parse("email;eleve;fichier\na@x.fr;Léa;a.pdf\nb@x.fr;Tom;b.pdf\n".as_bytes()).unwrap();
        let at = guess_file_column(&t.header);
        assert_eq!(at, Some(2));
        let p = plan(&t, &template(&["eleve"], true), at, dir.path()).unwrap();
        assert_eq!(p.rows.len(), 1);
        assert_eq!(p.rows[0]["attachment"], "a.pdf");
        assert_eq!(p.rows[0]["eleve"], "Léa");
        assert_eq!(p.refused.len(), 1);
        assert_eq!(
            (p.refused[0].line, p.refused[0].address.as_str()),
            (3, "b@x.fr")
        );
        assert!(p.refused[0].reason.contains("b.pdf"));
        assert!(plan(&t, &template(&["classe"], false), None, dir.path()).is_err());
        assert!(plan(&t, &template(&["eleve"], true), None, dir.path()).is_err());
        let no_email = parse(b"mail;eleve\na@x.fr;L\n").unwrap();
        assert!(plan(&no_email, &template(&[], false), None, dir.path()).is_err());
    }

    #[test]
    fn the_daemons_refusals_join_the_plans_in_line_order() {
        let t = parse(b"email\na@x.fr\n\nnot-an-address\n").unwrap();
        let mut p = plan(&t, &template(&[], false), None, Path::new("/")).unwrap();
        let accepted = apply_refusals(
            &mut p,
            &[
                (1, "invalid address `not-an-address`".into()),
                (0, "something new".into()),
            ],
        );
        assert!(accepted.is_empty());
        assert_eq!(p.refused.len(), 2);
        assert_eq!(p.refused[0].line, 2);
        assert!(p.refused[1].reason.contains("not-an-address"));
        assert!(!p.refused[1].reason.contains('`'));
        assert!(p.refused[0].reason.contains("something new"));
    }

    #[test]
    fn the_preview_shows_the_first_letters_and_every_family_left_out() {
        crate::ui::testing::gtk_test(|| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("lea.pdf"), b"%PDF").unwrap();
            let csv = dir.path().join("familles.csv");
            std::fs::write(
                &csv,
                "email;eleve;bulletin\nlea@example.org;Léa;lea.pdf\ntom@example.org;Tom;tom.pdf\n;Zoé;\n",
            )
            .unwrap();
            let app = crate::ui::testing::test_app();
            let (root, state, w) = build(&app);
            show_templates(
                &state,
                &w,
                vec![template(&[], false), template(&["eleve", "periode"], true)],
                Rc::new(|| {}),
            );
            let toggles: Vec<gtk::ToggleButton> = crate::ui::testing::descendants(&w.templates)
                .into_iter()
                .filter_map(|x| x.downcast::<gtk::ToggleButton>().ok())
                .collect();
            assert_eq!(toggles.len(), 2);
            assert_eq!(
                state.borrow().template,
                None,
                "nothing chosen for the person"
            );
            toggles[1].set_active(true);
            assert_eq!(state.borrow().template, Some(1));
            assert!(w.template_help.label().contains("email, eleve, periode"));
            toggles[0].set_active(true);
            assert!(!toggles[1].is_active(), "one model at a time");
            assert_eq!(state.borrow().template, Some(0));

            let table = parse(&std::fs::read(&csv).unwrap()).unwrap();
            open_table(&state, &w, Some(csv.clone()), table);
            assert!(w.csv_name.label().contains("familles.csv"));
            assert_eq!(w.columns.n_items(), 4, "(none) and the three columns");
            assert_eq!(w.file_column.selected(), 3, "the file column guessed");

            let mut p = plan(
                &state.borrow().table,
                &template(&["eleve"], true),
                Some(2),
                dir.path(),
            )
            .unwrap();
            let accepted = apply_refusals(&mut p, &[(1, "no address".into())]);
            let letters = vec![(
                "lea@example.org".to_owned(),
                "Bulletin de Léa".to_owned(),
                "Bonjour, voici le bulletin de Léa.".to_owned(),
            )];
            render_preview(&w, &p, &accepted, &letters);
            let shown: Vec<String> = crate::ui::testing::descendants(&root)
                .into_iter()
                .filter_map(|x| x.downcast::<gtk::Label>().ok())
                .map(|l| l.label().to_string())
                .collect();
            let all = shown.join("\n");
            assert!(
                all.contains("Bulletin de Léa") && all.contains("lea.pdf"),
                "{all}"
            );
            assert!(all.contains(&reason_words("no address")), "{all}");
            assert!(all.contains("tom.pdf"), "tom's missing file: {all}");
            assert_eq!(
                w.summary.label().as_str(),
                trf(
                    "Families who will receive the message: {}. Left out: {}.",
                    &["1", "2"]
                )
            );
            assert!(w.send.is_sensitive());
            render_preview(&w, &Plan::default(), &[], &[]);
            assert!(!w.send.is_sensitive(), "nothing to send");
        });
    }

    #[test]
    fn time_left_follows_the_pace_so_far() {
        assert_eq!(time_left(0, 10, Duration::from_secs(5)), None);
        assert_eq!(
            time_left(5, 20, Duration::from_secs(30)),
            Some(Duration::from_secs(90))
        );
        assert_eq!(time_left(20, 20, Duration::from_secs(30)), None);
        assert!(progress_words(5, 20, Some(Duration::from_secs(90))).contains('2'));
    }
}
