//! "Comptes de messagerie de ce poste": the list, and each account's details and actions.

use adw::prelude::*;
use gtk::glib;
use postecole_dbus::{self as api, AccountInfo};

use crate::i18n::{tr, trf};
use crate::window::{AppRc, account_of, reload_accounts};
use crate::{assistant, client, errors, staff, ui, words};

pub fn page(app: &AppRc) -> gtk::Widget {
    let (clamp, content) = ui::page();
    let top = gtk::Box::new(gtk::Orientation::Horizontal, 12);
    let title = ui::heading(&tr("E-mail accounts of this PC"));
    title.set_hexpand(true);
    top.append(&title);
    let new = ui::suggested(&tr("New"));
    let a = app.clone();
    new.connect_clicked(move |_| assistant::open(&a, None));
    top.append(&new);
    content.append(&top);
    content.append(&ui::text(&tr(
        "The addresses this PC may send e-mail from: the school's shared address and your own.",
    )));
    content.append(&app.accounts_error);

    let list = gtk::ListBox::builder()
        .selection_mode(gtk::SelectionMode::None)
        .build();
    list.add_css_class("boxed-list");
    ui::name(&list, &tr("E-mail accounts of this PC"));
    let placeholder = ui::text(&tr("No account yet: click “New” to set one up."));
    placeholder.set_margin_top(18);
    placeholder.set_margin_bottom(18);
    placeholder.set_margin_start(18);
    list.set_placeholder(Some(&placeholder));
    let a = app.clone();
    list.bind_model(Some(&app.accounts), move |object| {
        row(&a, &account_of(object)).upcast()
    });
    content.append(&list);
    ui::scrolled(&clamp).upcast()
}

fn row(app: &AppRc, account: &AccountInfo) -> adw::ActionRow {
    let row = adw::ActionRow::builder()
        .title(glib::markup_escape_text(&account.label).as_str())
        .subtitle(format!(
            "{} · {}",
            glib::markup_escape_text(&account.address),
            words::kind(&account.kind)
        ))
        .activatable(true)
        .build();
    let state = gtk::Label::new(Some(&words::account_state(&account.state)));
    if account.state != api::STATE_ACTIVE {
        state.add_css_class("warning");
    }
    if *app.default_account.borrow() == account.id {
        let default = gtk::Label::new(Some(&tr("Default for me")));
        default.add_css_class("accent");
        row.add_suffix(&default);
    }
    row.add_suffix(&state);
    // A button to open it: GTK 4.8 gives list rows no accessible action.
    let open = gtk::Button::builder()
        .icon_name("go-next-symbolic")
        .valign(gtk::Align::Center)
        .build();
    open.add_css_class("flat");
    ui::name(&open, &trf("Details of {}", &[&account.label]));
    row.add_suffix(&open);
    ui::name(
        &row,
        &format!(
            "{} — {} — {}",
            account.label,
            account.address,
            words::account_state(&account.state)
        ),
    );
    let (a, info) = (app.clone(), account.clone());
    open.connect_clicked(move |_| details(&a, &info));
    let (a, info) = (app.clone(), account.clone());
    row.connect_activated(move |_| details(&a, &info));
    row
}

fn info_row(group: &adw::PreferencesGroup, title: &str, value: &str) {
    let row = adw::ActionRow::builder()
        .title(title)
        .subtitle(glib::markup_escape_text(value).as_str())
        .build();
    row.add_css_class("property");
    ui::name(&row, &format!("{title} : {value}"));
    group.add(&row);
}

/// The window of one account: what it is, and what can be done with it.
pub fn details(app: &AppRc, account: &AccountInfo) {
    let (clamp, content) = ui::page();
    let window = ui::dialog(&app.window, &account.label, &ui::scrolled(&clamp));
    let group = adw::PreferencesGroup::builder()
        .title(glib::markup_escape_text(&account.label).as_str())
        .build();
    info_row(&group, &tr("E-mail address"), &account.address);
    info_row(&group, &tr("Type of account"), &words::kind(&account.kind));
    info_row(&group, &tr("State"), &words::account_state(&account.state));
    info_row(&group, &tr("Set up by"), &account.owner);
    if account.kind == api::KIND_ESTABLISHMENT {
        let staff = if account.staff.is_empty() {
            tr("Nobody yet")
        } else {
            account.staff.join(", ")
        };
        info_row(&group, &tr("Staff allowed to send"), &staff);
    }
    if !account.question.is_empty() {
        info_row(&group, &tr("Secret question"), &account.question);
    }
    content.append(&group);
    let error = ui::error_label();
    content.append(&error);

    let actions = gtk::Box::new(gtk::Orientation::Vertical, 8);
    let id = account.id.clone();

    if account.state != api::STATE_ACTIVE {
        let resume = ui::suggested(&tr("Continue the set-up"));
        let (a, w, info) = (app.clone(), window.clone(), account.clone());
        resume.connect_clicked(move |_| {
            w.close();
            assistant::open(&a, Some(info.clone()));
        });
        actions.append(&resume);
    } else if *app.default_account.borrow() != account.id {
        let default = ui::button(&tr("Use by default for me"));
        let (a, w, e, id) = (app.clone(), window.clone(), error.clone(), id.clone());
        default.connect_clicked(move |_| {
            let (a, w, e, id) = (a.clone(), w.clone(), e.clone(), id.clone());
            ui::spawn(async move {
                let r = client::call(move |c| async move {
                    client::accounts(&c).await?.set_default_account(&id).await
                })
                .await;
                finish(&a, &w, &e, r).await;
            });
        });
        actions.append(&default);
    }

    if account.kind == api::KIND_ESTABLISHMENT
        && app.admin.get()
        && account.state == api::STATE_ACTIVE
    {
        let staff_button = ui::button(&tr("Choose the staff allowed to send…"));
        let (a, w, info) = (app.clone(), window.clone(), account.clone());
        staff_button.connect_clicked(move |_| {
            w.close();
            staff::open(&a, &info);
        });
        actions.append(&staff_button);
    }

    if account.state == api::STATE_ACTIVE {
        let change = ui::button(&tr("Change the secret question…"));
        let (a, w, info) = (app.clone(), window.clone(), account.clone());
        change.connect_clicked(move |_| {
            w.close();
            change_secret(&a, &info);
        });
        actions.append(&change);
    }

    let (target, label) = if account.kind == api::KIND_ESTABLISHMENT {
        (api::KIND_PERSONAL, tr("Make it a personal account"))
    } else {
        (
            api::KIND_ESTABLISHMENT,
            tr("Make it an establishment account"),
        )
    };
    let convert = ui::button(&label);
    let (a, w, e, id2) = (app.clone(), window.clone(), error.clone(), id.clone());
    convert.connect_clicked(move |_| {
        let (a, w, e, id) = (a.clone(), w.clone(), e.clone(), id2.clone());
        ui::spawn(async move {
            let r = client::call(move |c| async move {
                client::accounts(&c)
                    .await?
                    .convert_account(&id, target)
                    .await
            })
            .await;
            finish(&a, &w, &e, r).await;
        });
    });
    actions.append(&convert);

    let delete = ui::button(&tr("Delete this account"));
    delete.add_css_class("destructive-action");
    let (a, w, e, label) = (
        app.clone(),
        window.clone(),
        error.clone(),
        account.label.clone(),
    );
    delete.connect_clicked(move |_| {
        let (a, w2, e, id) = (a.clone(), w.clone(), e.clone(), id.clone());
        ui::confirm(
            &w,
            &trf("Delete “{}”?", &[&label]),
            &tr("This PC will no longer send e-mail from this address, and the e-mails sent with it can no longer be read here."),
            &tr("Delete"),
            move || {
                let (a, w, e, id) = (a.clone(), w2.clone(), e.clone(), id.clone());
                ui::spawn(async move {
                    let r = client::call(move |c| async move {
                        client::accounts(&c).await?.delete_account(&id).await
                    })
                    .await;
                    finish(&a, &w, &e, r).await;
                });
            },
        );
    });
    actions.append(&delete);
    content.append(&actions);
    window.present();
}

/// After an action: close and reload on success, or say what went wrong.
async fn finish(app: &AppRc, window: &adw::Window, error: &gtk::Label, r: Result<(), api::Error>) {
    match r {
        Ok(()) => {
            window.close();
            reload_accounts(app).await;
        }
        Err(e) => ui::show_message(error, Some(&errors::sentence(&e))),
    }
}

/// A new secret question and answer, proven by the current answer.
fn change_secret(app: &AppRc, account: &AccountInfo) {
    let (clamp, content) = ui::page();
    let window = ui::dialog(&app.window, &tr("Change the secret question"), &clamp);
    content.append(&ui::text(&tr(
        "Type the current answer, then the new question and its answer twice. The e-mails already sent stay readable.",
    )));
    let group = adw::PreferencesGroup::new();
    let old = ui::password(&tr("Current answer"));
    let question = ui::entry(&tr("Secret question"));
    question.set_text(&account.question);
    let answer = ui::password(&tr("Answer"));
    let again = ui::password(&tr("Answer again"));
    for w in [
        old.upcast_ref::<gtk::Widget>(),
        question.upcast_ref(),
        answer.upcast_ref(),
        again.upcast_ref(),
    ] {
        group.add(w);
    }
    content.append(&group);
    let error = ui::error_label();
    content.append(&error);
    let validate = ui::suggested(&tr("Validate"));
    validate.set_halign(gtk::Align::End);
    content.append(&validate);
    let (a, w, id) = (app.clone(), window.clone(), account.id.clone());
    validate.connect_clicked(move |_| {
        if let Err(m) = errors::check_answers(&answer.text(), &again.text()) {
            ui::show_message(&error, Some(&m));
            return;
        }
        let (old, q, ans) = (
            old.text().to_string(),
            question.text().to_string(),
            answer.text().to_string(),
        );
        let (a, w, e, id) = (a.clone(), w.clone(), error.clone(), id.clone());
        ui::spawn(async move {
            let r = client::call(move |c| async move {
                client::archive(&c)
                    .await?
                    .change_secret(&id, &old, &q, &ans)
                    .await
            })
            .await;
            finish(&a, &w, &e, r).await;
        });
    });
    window.present();
}
