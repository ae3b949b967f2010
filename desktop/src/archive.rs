//! "Messages envoyés": an account's encrypted archive, opened with the secret answer or with
//! the recovery file `cleRecuperation.crbee`.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use adw::prelude::*;
use gtk::glib;
use postecole_dbus::{ArchivedInfo, Error};

use crate::i18n::{tr, trf};
use crate::window::AppRc;
use crate::{client, errors, ui, words};

/// What unlocks the archive: the answer, or the recovery file.
#[derive(Clone)]
enum Key {
    Answer(String),
    File(PathBuf),
}

impl Key {
    /// The (answer, key_file) pair every Archive call takes.
    fn open(&self) -> Result<(String, Vec<zbus::OwnedFd>), Error> {
        match self {
            Key::Answer(a) => Ok((a.clone(), Vec::new())),
            Key::File(p) => {
                let file =
                    std::fs::File::open(p).map_err(|_| Error::InvalidInput(String::new()))?;
                Ok((
                    String::new(),
                    vec![zbus::OwnedFd::from(std::os::fd::OwnedFd::from(file))],
                ))
            }
        }
    }
}

struct Page {
    app: AppRc,
    accounts: gtk::StringList,
    ids: RefCell<Vec<String>>,
    from: gtk::DropDown,
    answer: adw::PasswordEntryRow,
    list: gtk::ListBox,
    error: gtk::Label,
    key: RefCell<Option<(String, Key)>>,
    chooser: RefCell<Option<gtk::FileChooserNative>>,
}

pub fn page(app: &AppRc) -> gtk::Widget {
    let (clamp, content) = ui::page();
    content.append(&ui::heading(&tr("Sent messages")));
    content.append(&ui::text(&tr(
        "The messages sent with an account are kept encrypted on this PC. Type the answer to its secret question, or choose its recovery file cleRecuperation.crbee, to read them again.",
    )));
    let accounts = gtk::StringList::new(&[]);
    let from = gtk::DropDown::builder()
        .model(&accounts)
        .valign(gtk::Align::Center)
        .build();
    ui::name(&from, &tr("Account"));
    let from_row = adw::ActionRow::builder().title(tr("Account")).build();
    from_row.add_suffix(&from);
    let answer = ui::password(&tr("Answer"));
    let group = adw::PreferencesGroup::new();
    group.add(&from_row);
    group.add(&answer);
    content.append(&group);
    let buttons = gtk::Box::new(gtk::Orientation::Horizontal, 12);
    let open = ui::suggested(&tr("Open"));
    let with_file = ui::button(&tr("Open with the recovery file…"));
    let export = ui::button(&tr("Export as mbox…"));
    buttons.append(&open);
    buttons.append(&with_file);
    buttons.append(&export);
    content.append(&buttons);
    let error = ui::error_label();
    content.append(&error);
    let list = gtk::ListBox::builder()
        .selection_mode(gtk::SelectionMode::None)
        .build();
    list.add_css_class("boxed-list");
    list.set_visible(false);
    ui::name(&list, &tr("Sent messages"));
    content.append(&list);

    let p = Rc::new(Page {
        app: app.clone(),
        accounts,
        ids: RefCell::default(),
        from,
        answer,
        list,
        error,
        key: RefCell::default(),
        chooser: RefCell::default(),
    });
    let p2 = p.clone();
    app.on_accounts_reloaded(move || {
        let before = p2.ids.borrow().clone();
        *p2.ids.borrow_mut() = p2.app.fill_from(&p2.accounts, &p2.from, &before);
    });
    let p2 = p.clone();
    open.connect_clicked(move |_| {
        let key = Key::Answer(p2.answer.text().to_string());
        unlock(&p2, key);
    });
    let p2 = p.clone();
    with_file.connect_clicked(move |_| {
        let p3 = p2.clone();
        choose(
            &p2,
            gtk::FileChooserAction::Open,
            &tr("Choose the recovery file"),
            move |path| {
                unlock(&p3, Key::File(path));
            },
        );
    });
    let p2 = p.clone();
    export.connect_clicked(move |_| {
        let Some((account, key)) = p2.key.borrow().clone() else {
            ui::show_message(&p2.error, Some(&tr("Open the messages first.")));
            return;
        };
        let p3 = p2.clone();
        choose(
            &p2,
            gtk::FileChooserAction::Save,
            &tr("Export as mbox"),
            move |path| {
                let (p, key, account) = (p3.clone(), key.clone(), account.clone());
                ui::spawn(async move {
                    let result = async {
                        let (answer, files) = key.open()?;
                        let out = std::fs::File::create(&path)
                            .map_err(|_| Error::InvalidInput(String::new()))?;
                        let out = zbus::OwnedFd::from(std::os::fd::OwnedFd::from(out));
                        client::call(move |c| async move {
                            client::archive(&c)
                                .await?
                                .export_mbox(&account, &answer, files, out)
                                .await
                        })
                        .await
                    }
                    .await;
                    match result {
                        Ok(n) => ui::show_message(
                            &p.error,
                            Some(&trf(
                                "{} messages written to {}.",
                                &[&n.to_string(), &path.display().to_string()],
                            )),
                        ),
                        Err(e) => ui::show_message(&p.error, Some(&errors::sentence(&e))),
                    }
                });
            },
        );
    });
    ui::scrolled(&clamp).upcast()
}

fn choose(
    p: &Rc<Page>,
    action: gtk::FileChooserAction,
    title: &str,
    then: impl Fn(PathBuf) + 'static,
) {
    let accept = if action == gtk::FileChooserAction::Save {
        tr("Save")
    } else {
        tr("Open")
    };
    let chooser = gtk::FileChooserNative::new(
        Some(title),
        Some(&p.app.window),
        action,
        Some(&accept),
        Some(&tr("Cancel")),
    );
    chooser.set_modal(true);
    chooser.connect_response(move |c, response| {
        if response == gtk::ResponseType::Accept
            && let Some(path) = c.file().and_then(|f| f.path())
        {
            then(path);
        }
    });
    chooser.show();
    p.chooser.replace(Some(chooser));
}

fn unlock(p: &Rc<Page>, key: Key) {
    ui::show_message(&p.error, None);
    let Some(account) = p.ids.borrow().get(p.from.selected() as usize).cloned() else {
        ui::show_message(
            &p.error,
            Some(&tr("Set up an account first, in “Accounts”.")),
        );
        return;
    };
    let p = p.clone();
    ui::spawn(async move {
        let (k, a) = (key.clone(), account.clone());
        let result = async {
            let (answer, files) = k.open()?;
            client::call(move |c| async move {
                client::archive(&c)
                    .await?
                    .list_archive(&a, &answer, files)
                    .await
            })
            .await
        }
        .await;
        while let Some(child) = p.list.first_child() {
            p.list.remove(&child);
        }
        match result {
            Ok(mut messages) => {
                p.key.replace(Some((account.clone(), key)));
                messages.sort_by_key(|m| std::cmp::Reverse(m.created));
                if messages.is_empty() {
                    p.list.append(&ui::text(&tr(
                        "No message has been sent with this account yet.",
                    )));
                }
                for m in messages {
                    p.list.append(&row(&p, &account, &m));
                }
                p.list.set_visible(true);
            }
            Err(e) => ui::show_message(&p.error, Some(&errors::sentence(&e))),
        }
    });
}

fn row(p: &Rc<Page>, account: &str, m: &ArchivedInfo) -> adw::ActionRow {
    let title = if m.subject.is_empty() {
        tr("(no subject)")
    } else {
        m.subject.clone()
    };
    let row = adw::ActionRow::builder()
        .title(glib::markup_escape_text(&title).as_str())
        .subtitle(
            glib::markup_escape_text(&format!(
                "{} · {}",
                trf("To: {}", &[&m.to]),
                words::time(m.created)
            ))
            .as_str(),
        )
        .build();
    ui::name(&row, &format!("{title} — {}", trf("To: {}", &[&m.to])));
    let read = gtk::Button::builder()
        .label(tr("Read"))
        .valign(gtk::Align::Center)
        .build();
    read.add_css_class("flat");
    ui::name(&read, &format!("{} — {title}", tr("Read")));
    row.add_suffix(&read);
    let (p, account, id, title) = (p.clone(), account.to_owned(), m.id.clone(), title.clone());
    read.connect_clicked(move |_| {
        let Some((_, key)) = p.key.borrow().clone() else {
            return;
        };
        let (p, account, id, title) = (p.clone(), account.clone(), id.clone(), title.clone());
        ui::spawn(async move {
            let result = async {
                let (answer, files) = key.open()?;
                client::call(move |c| async move {
                    client::archive(&c)
                        .await?
                        .read_archived(&account, &id, &answer, files)
                        .await
                })
                .await
            }
            .await;
            match result {
                Ok(bytes) => show_message(&p, &title, &String::from_utf8_lossy(&bytes)),
                Err(e) => ui::show_message(&p.error, Some(&errors::sentence(&e))),
            }
        });
    });
    row
}

/// The message exactly as it was sent, headers included.
fn show_message(p: &Rc<Page>, title: &str, text: &str) {
    let view = gtk::TextView::builder()
        .editable(false)
        .monospace(true)
        .wrap_mode(gtk::WrapMode::WordChar)
        .top_margin(12)
        .left_margin(12)
        .right_margin(12)
        .build();
    view.buffer().set_text(text);
    ui::name(&view, title);
    let window = ui::dialog(&p.app.window, title, &ui::scrolled(&view));
    window.present();
}
