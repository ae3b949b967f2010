//! "Nouveau": the set-up assistant, step by step as the school software's help page shows it:
//! type of account, Libellé and Adresse e-mail, Suivant, the Code received, the Question
//! secrète and its Réponse, then the recovery file reminder and, for an establishment
//! account, the staff allowed to send.

use std::cell::RefCell;
use std::rc::Rc;

use adw::prelude::*;
use postecole_dbus::{self as api, AccountInfo};

use crate::i18n::{tr, trf};
use crate::staff::{self, StaffChooser};
use crate::window::{AppRc, reload_accounts};
use crate::{client, errors, ui};

struct Assistant {
    app: AppRc,
    window: adw::Window,
    stack: gtk::Stack,
    id: RefCell<String>,
    kind: RefCell<String>,
    address: RefCell<String>,
    code_intro: gtk::Label,
    done: gtk::Box,
}

type Rca = Rc<Assistant>;

/// Opens the assistant; with `resume`, at the step that account is waiting for.
pub fn open(app: &AppRc, resume: Option<AccountInfo>) {
    build(app, resume).window.present();
}

fn build(app: &AppRc, resume: Option<AccountInfo>) -> Rca {
    let stack = gtk::Stack::builder()
        .transition_type(gtk::StackTransitionType::SlideLeft)
        .vexpand(true)
        .build();
    let window = ui::dialog(&app.window, &tr("New e-mail account"), &stack);
    let a = Rc::new(Assistant {
        app: app.clone(),
        window: window.clone(),
        stack: stack.clone(),
        id: RefCell::new(String::new()),
        kind: RefCell::new(api::KIND_ESTABLISHMENT.to_owned()),
        address: RefCell::new(String::new()),
        code_intro: ui::text(""),
        done: gtk::Box::new(gtk::Orientation::Vertical, 18),
    });
    stack.add_named(&start_page(&a), Some("start"));
    stack.add_named(&code_page(&a), Some("code"));
    stack.add_named(&secret_page(&a), Some("secret"));
    let (clamp, content) = ui::page();
    content.append(&a.done);
    stack.add_named(&ui::scrolled(&clamp), Some("done"));
    if let Some(account) = resume {
        *a.id.borrow_mut() = account.id.clone();
        *a.kind.borrow_mut() = account.kind.clone();
        a.address.replace(account.address.clone());
        match account.state.as_str() {
            api::STATE_AWAITING_CODE => go_to_code(&a),
            api::STATE_AWAITING_SECRET => a.stack.set_visible_child_name("secret"),
            _ => {}
        }
    }
    a
}

fn start_page(a: &Rca) -> gtk::Widget {
    let (clamp, content) = ui::page();
    content.append(&ui::heading(&tr(
        "Set up the sending of e-mails for this PC",
    )));
    content.append(&ui::text(&tr(
        "Choose the type of account, then give its label and the e-mail address to send from. A code will be sent to that address to prove it is yours.",
    )));
    // Two toggle buttons rather than radio buttons: GTK 4.8 gives check buttons no accessible
    // action, so assistive technologies could not choose.
    content.append(
        &gtk::Label::builder()
            .label(tr("Type of account"))
            .xalign(0.0)
            .css_classes(["heading"])
            .build(),
    );
    let kinds = gtk::Box::builder().homogeneous(true).build();
    kinds.add_css_class("linked");
    let explanation = ui::text("");
    let mut first: Option<gtk::ToggleButton> = None;
    for (kind, title, help) in [
        (
            api::KIND_ESTABLISHMENT,
            tr("Establishment account"),
            tr(
                "The school's shared address (for instance the secretariat's): an administrator chooses the staff who may send with it.",
            ),
        ),
        (
            api::KIND_PERSONAL,
            tr("Personal account"),
            tr("Your own address: only you can see it and send with it from this PC."),
        ),
    ] {
        let toggle = gtk::ToggleButton::builder().label(title.as_str()).build();
        ui::name(&toggle, &title);
        if let Some(f) = &first {
            toggle.set_group(Some(f));
        } else {
            toggle.set_active(true);
            explanation.set_label(&help);
            first = Some(toggle.clone());
        }
        let (a2, e) = (a.clone(), explanation.clone());
        toggle.connect_toggled(move |t| {
            if t.is_active() {
                a2.kind.replace(kind.to_owned());
                e.set_label(&help);
            }
        });
        kinds.append(&toggle);
    }
    content.append(&kinds);
    content.append(&explanation);

    let fields = adw::PreferencesGroup::new();
    let label = ui::entry(&tr("Label"));
    let address = ui::entry(&tr("E-mail address"));
    address.set_input_purpose(gtk::InputPurpose::Email);
    fields.add(&label);
    fields.add(&address);
    content.append(&fields);
    let error = ui::error_label();
    content.append(&error);
    let next = ui::suggested(&tr("Next"));
    next.set_halign(gtk::Align::End);
    content.append(&next);

    let a = a.clone();
    next.connect_clicked(move |button| {
        let (l, addr) = (
            label.text().trim().to_owned(),
            address.text().trim().to_owned(),
        );
        if l.is_empty() || !addr.contains('@') {
            ui::show_message(
                &error,
                Some(&tr(
                    "Give a label and a complete e-mail address, such as secretariat@ecole.fr.",
                )),
            );
            return;
        }
        ui::show_message(&error, None);
        button.set_sensitive(false);
        let kind = a.kind.borrow().clone();
        let (a, e, b) = (a.clone(), error.clone(), button.clone());
        ui::spawn(async move {
            let addr2 = addr.clone();
            let r = client::call(move |c| async move {
                client::accounts(&c)
                    .await?
                    .create_account(&kind, &l, &addr2)
                    .await
            })
            .await;
            b.set_sensitive(true);
            match r {
                Ok(id) => {
                    a.id.replace(id);
                    a.address.replace(addr);
                    go_to_code(&a);
                    reload_accounts(&a.app).await;
                }
                Err(err) => ui::show_message(&e, Some(&errors::sentence(&err))),
            }
        });
    });
    clamp.upcast()
}

fn go_to_code(a: &Rca) {
    a.code_intro.set_label(&trf(
        "A code has just been sent to {}. Open that mailbox, then type the code below. It can be used once, within 15 minutes.",
        &[&a.address.borrow()],
    ));
    a.stack.set_visible_child_name("code");
}

fn code_page(a: &Rca) -> gtk::Widget {
    let (clamp, content) = ui::page();
    content.append(&ui::heading(&tr("Type the code received")));
    content.append(&a.code_intro);
    let group = adw::PreferencesGroup::new();
    let code = ui::entry(&tr("Code"));
    code.set_input_purpose(gtk::InputPurpose::Digits);
    group.add(&code);
    content.append(&group);
    let error = ui::error_label();
    content.append(&error);
    let info = ui::text("");
    info.set_visible(false);
    content.append(&info);
    let buttons = gtk::Box::new(gtk::Orientation::Horizontal, 12);
    buttons.set_halign(gtk::Align::End);
    let resend = ui::button(&tr("Resend the code"));
    let next = ui::suggested(&tr("Next"));
    buttons.append(&resend);
    buttons.append(&next);
    content.append(&buttons);

    let (a2, e, i) = (a.clone(), error.clone(), info.clone());
    resend.connect_clicked(move |_| {
        let id = a2.id.borrow().clone();
        let (a, e, i) = (a2.clone(), e.clone(), i.clone());
        ui::spawn(async move {
            let r =
                client::call(
                    move |c| async move { client::accounts(&c).await?.resend_code(&id).await },
                )
                .await;
            match r {
                Ok(()) => {
                    ui::show_message(&e, None);
                    i.set_label(&trf(
                        "A new code has been sent to {}. Only the newest code works.",
                        &[&a.address.borrow()],
                    ));
                    i.set_visible(true);
                }
                Err(err) => ui::show_message(&e, Some(&errors::sentence(&err))),
            }
        });
    });

    let a = a.clone();
    next.connect_clicked(move |button| {
        let typed: String = code.text().chars().filter(|c| !c.is_whitespace()).collect();
        if typed.is_empty() {
            ui::show_message(&error, Some(&tr("Type the code written in the e-mail.")));
            return;
        }
        button.set_sensitive(false);
        let id = a.id.borrow().clone();
        let (a, e, i, b, code) = (
            a.clone(),
            error.clone(),
            info.clone(),
            button.clone(),
            code.clone(),
        );
        ui::spawn(async move {
            let r = client::call(move |c| async move {
                client::accounts(&c).await?.confirm_code(&id, &typed).await
            })
            .await;
            b.set_sensitive(true);
            match r {
                Ok(()) => {
                    ui::show_message(&e, None);
                    a.stack.set_visible_child_name("secret");
                    reload_accounts(&a.app).await;
                }
                Err(err) => {
                    i.set_visible(false);
                    code.set_text("");
                    ui::show_message(&e, Some(&errors::sentence(&err)));
                }
            }
        });
    });
    clamp.upcast()
}

fn secret_page(a: &Rca) -> gtk::Widget {
    let (clamp, content) = ui::page();
    content.append(&ui::heading(&tr("Choose a secret question")));
    content.append(&ui::text(&tr(
        "The e-mails sent with this account are kept encrypted on this PC. Its answer is what opens them again: choose a question whose answer only you (or the school's management) know, and type the answer twice.",
    )));
    let group = adw::PreferencesGroup::new();
    let question = ui::entry(&tr("Secret question"));
    let answer = ui::password(&tr("Answer"));
    let again = ui::password(&tr("Answer again"));
    group.add(&question);
    group.add(&answer);
    group.add(&again);
    content.append(&group);
    let error = ui::error_label();
    content.append(&error);
    let next = ui::suggested(&tr("Next"));
    next.set_halign(gtk::Align::End);
    content.append(&next);

    let a = a.clone();
    next.connect_clicked(move |button| {
        let q = question.text().trim().to_owned();
        if q.is_empty() {
            ui::show_message(&error, Some(&tr("Type a secret question.")));
            return;
        }
        if let Err(m) = errors::check_answers(&answer.text(), &again.text()) {
            ui::show_message(&error, Some(&m));
            return;
        }
        button.set_sensitive(false);
        let (id, ans) = (a.id.borrow().clone(), answer.text().to_string());
        let (a, e, b) = (a.clone(), error.clone(), button.clone());
        ui::spawn(async move {
            let r = client::call(move |c| async move {
                client::accounts(&c).await?.set_secret(&id, &q, &ans).await
            })
            .await;
            b.set_sensitive(true);
            match r {
                Ok(()) => {
                    ui::show_message(&e, None);
                    show_done(&a);
                    reload_accounts(&a.app).await;
                }
                Err(err) => ui::show_message(&e, Some(&errors::sentence(&err))),
            }
        });
    });
    clamp.upcast()
}

/// The last step: the recovery file reminder, then the staff for an establishment account.
fn show_done(a: &Rca) {
    let done = &a.done;
    while let Some(child) = done.first_child() {
        done.remove(&child);
    }
    done.append(&ui::heading(&tr("The account is ready")));

    let reminder = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .spacing(12)
        .accessible_role(gtk::AccessibleRole::Alert)
        .build();
    reminder.add_css_class("card");
    let icon = gtk::Image::from_icon_name("dialog-warning-symbolic");
    icon.set_pixel_size(48);
    icon.set_margin_top(18);
    icon.add_css_class("warning");
    reminder.append(&icon);
    let title = gtk::Label::new(Some(&tr("Keep the file cleRecuperation.crbee")));
    title.add_css_class("title-3");
    title.add_css_class("warning");
    title.set_wrap(true);
    reminder.append(&title);
    let body = ui::text(&trf(
        "A confirmation e-mail has just been sent to {}. It carries the file cleRecuperation.crbee. Save that file somewhere safe, away from this PC (a USB key kept in a drawer, the school's files): if the answer to the secret question is forgotten, it is the only way to read again the e-mails sent with this account. Nobody can make another copy.",
        &[&a.address.borrow()],
    ));
    body.set_margin_start(18);
    body.set_margin_end(18);
    body.set_margin_bottom(18);
    reminder.append(&body);
    done.append(&reminder);

    let noted =
        gtk::CheckButton::with_label(&tr("I will keep the file cleRecuperation.crbee safe"));
    ui::name(
        &noted,
        &tr("I will keep the file cleRecuperation.crbee safe"),
    );
    done.append(&noted);
    let error = ui::error_label();

    let establishment = *a.kind.borrow() == api::KIND_ESTABLISHMENT;
    let chooser = if establishment && a.app.admin.get() {
        let c = StaffChooser::new(&[]);
        done.append(&c.widget);
        Some(c)
    } else {
        if establishment {
            done.append(&ui::text(&tr(
                "An administrator of this PC now chooses the staff allowed to send with this address.",
            )));
        }
        None
    };
    done.append(&error);
    let validate = ui::suggested(&tr("Validate"));
    validate.set_halign(gtk::Align::End);
    validate.set_sensitive(false);
    let v = validate.clone();
    noted.connect_active_notify(move |s| v.set_sensitive(s.is_active()));
    done.append(&validate);

    let a2 = a.clone();
    validate.connect_clicked(move |_| {
        let a = a2.clone();
        let e = error.clone();
        let fut = chooser
            .as_ref()
            .map(|c| staff::apply(a.id.borrow().clone(), Vec::new(), c.chosen()));
        ui::spawn(async move {
            if let Some(fut) = fut
                && let Err(err) = fut.await
            {
                ui::show_message(&e, Some(&errors::sentence(&err)));
                return;
            }
            a.window.close();
            reload_accounts(&a.app).await;
        });
    });
    a.stack.set_visible_child_name("done");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::testing::{click, find_button, gtk_test, shown_errors, test_app};

    fn page(a: &Rca) -> gtk::Widget {
        a.stack.visible_child().expect("a step is shown")
    }

    fn rows<T: IsA<gtk::Widget>>(root: &gtk::Widget) -> Vec<T> {
        crate::ui::testing::descendants(root)
            .into_iter()
            .filter_map(|w| w.downcast::<T>().ok())
            .collect()
    }

    #[test]
    fn each_step_checks_what_is_typed_before_asking_the_daemon() {
        gtk_test(|| {
            let app = test_app();
            let a = build(&app, None);
            assert_eq!(a.stack.visible_child_name().as_deref(), Some("start"));
            click(&find_button(&page(&a), &tr("Next")));
            assert_eq!(
                shown_errors(&page(&a)),
                [tr(
                    "Give a label and a complete e-mail address, such as secretariat@ecole.fr."
                )]
            );
            assert_eq!(a.stack.visible_child_name().as_deref(), Some("start"));

            // Resumed where the account waits: its code, then its secret.
            let waiting = AccountInfo {
                id: "abcd2345".into(),
                kind: api::KIND_PERSONAL.into(),
                address: "lea@ecole.fr".into(),
                state: api::STATE_AWAITING_CODE.into(),
                ..Default::default()
            };
            let a = build(&app, Some(waiting.clone()));
            assert_eq!(a.stack.visible_child_name().as_deref(), Some("code"));
            assert!(a.code_intro.label().contains("lea@ecole.fr"));
            click(&find_button(&page(&a), &tr("Next")));
            assert_eq!(
                shown_errors(&page(&a)),
                [tr("Type the code written in the e-mail.")]
            );

            let a = build(
                &app,
                Some(AccountInfo {
                    state: api::STATE_AWAITING_SECRET.into(),
                    ..waiting
                }),
            );
            assert_eq!(a.stack.visible_child_name().as_deref(), Some("secret"));
            let secret = page(&a);
            let entries: Vec<adw::EntryRow> = rows(&secret);
            entries[0].set_text("Le nom de mon premier chat ?");
            let answers: Vec<adw::PasswordEntryRow> = rows(&secret);
            answers[0].set_text("Médor");
            answers[1].set_text("médor");
            click(&find_button(&secret, &tr("Next")));
            assert_eq!(
                shown_errors(&secret),
                [tr(
                    "The two answers are not the same. Type the answer again, twice."
                )]
            );
            assert_eq!(a.stack.visible_child_name().as_deref(), Some("secret"));
        });
    }

    #[test]
    fn the_last_step_waits_for_the_recovery_file_to_be_acknowledged() {
        gtk_test(|| {
            let app = test_app();
            app.admin.set(true);
            let a = build(&app, None);
            a.address.replace("secretariat@ecole.fr".into());
            show_done(&a);
            let done = page(&a);
            let text: String = crate::ui::testing::descendants(&done)
                .into_iter()
                .filter_map(|w| w.downcast::<gtk::Label>().ok())
                .map(|l| l.label().to_string())
                .collect();
            assert!(text.contains("cleRecuperation.crbee"), "{text}");
            assert!(text.contains("secretariat@ecole.fr"), "{text}");
            // An administrator ticks the staff here, an establishment account being the default.
            assert!(!rows::<adw::PreferencesGroup>(&done).is_empty());
            let validate = find_button(&done, &tr("Validate"));
            assert!(
                !validate.is_sensitive(),
                "not before the reminder is ticked"
            );
            let noted: Vec<gtk::CheckButton> = rows(&done);
            noted[0].set_active(true);
            assert!(validate.is_sensitive());
        });
    }
}
