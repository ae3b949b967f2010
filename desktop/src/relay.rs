//! "Relais" (administrators): the mail server this PC sends through, as the daemon reports its
//! settings, and a check that it answers.

use adw::prelude::*;
use postecole_dbus::RelayInfo;

use crate::i18n::{tr, trf};
use crate::window::AppRc;
use crate::{client, errors, ui};

/// The settings as (title, value) rows, in words; never a password (the daemon has none to give).
pub fn settings_rows(relay: &RelayInfo) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    if relay.kind == "local" {
        rows.push((
            tr("Mail server"),
            tr("None: e-mails are written as files on this PC and leave nowhere"),
        ));
        rows.push((tr("Folder"), relay.directory.clone()));
    } else {
        rows.push((tr("Mail server"), relay.host.clone()));
        rows.push((tr("Port"), relay.port.to_string()));
        rows.push((
            tr("Security"),
            match relay.tls.as_str() {
                "starttls" => tr("Encrypted (STARTTLS)"),
                "tls" => tr("Encrypted from the start (TLS)"),
                "none" => tr("Not encrypted"),
                other => other.to_owned(),
            },
        ));
        rows.push((
            tr("Sign-in"),
            if relay.username.is_empty() {
                tr("None")
            } else {
                relay.username.clone()
            },
        ));
        if !relay.sender.is_empty() {
            rows.push((tr("Sender on every e-mail"), relay.sender.clone()));
        }
        if !relay.allowed_sender_domains.is_empty() {
            rows.push((
                tr("Addresses it accepts as sender"),
                relay.allowed_sender_domains.join(", "),
            ));
        }
    }
    rows.push((
        tr("Sending"),
        if relay.paused.is_empty() {
            tr("Running")
        } else {
            trf(
                "Paused: the mail server could not be reached ({})",
                &[&relay.paused],
            )
        },
    ));
    rows
}

pub fn page(_app: &AppRc) -> gtk::Widget {
    let (clamp, content) = ui::page();
    content.append(&ui::heading(&tr("Relay")));
    content.append(&ui::text(&tr(
        "E-mails leave this PC through the mail server set in /etc/postecole/postecoled.toml. “Test” connects to it as a real sending would, without sending anything.",
    )));
    let settings = adw::PreferencesGroup::builder()
        .title(tr("Settings"))
        .build();
    content.append(&settings);
    let shown: std::rc::Rc<std::cell::RefCell<Vec<adw::ActionRow>>> = Default::default();
    let error = ui::error_label();
    content.append(&error);
    let test = ui::suggested(&tr("Test"));
    test.set_halign(gtk::Align::Start);
    content.append(&test);
    let result = gtk::Label::builder()
        .wrap(true)
        .xalign(0.0)
        .selectable(true)
        .accessible_role(gtk::AccessibleRole::Status)
        .build();
    content.append(&result);
    // Read again each time the page is shown: a pause begins and ends while the window is open.
    clamp.connect_map(move |_| {
        let (settings, shown, error) = (settings.clone(), shown.clone(), error.clone());
        ui::spawn(async move {
            let info =
                client::call(|c| async move { client::outbox(&c).await?.get_relay().await }).await;
            for row in shown.borrow_mut().drain(..) {
                settings.remove(&row);
            }
            match info {
                Ok(info) => {
                    ui::show_message(&error, None);
                    for (title, value) in settings_rows(&info) {
                        let row = adw::ActionRow::builder()
                            .title(gtk::glib::markup_escape_text(&title).as_str())
                            .subtitle(gtk::glib::markup_escape_text(&value).as_str())
                            .build();
                        settings.add(&row);
                        shown.borrow_mut().push(row);
                    }
                }
                Err(e) => ui::show_message(&error, Some(&errors::sentence(&e))),
            }
        });
    });
    test.connect_clicked(move |button| {
        button.set_sensitive(false);
        result.set_label(&tr("Connecting to the mail server…"));
        let (b, r) = (button.clone(), result.clone());
        ui::spawn(async move {
            let outcome =
                client::call(|c| async move { client::outbox(&c).await?.test_relay().await }).await;
            b.set_sensitive(true);
            match outcome {
                Ok(report) => r.set_label(&trf(
                    "The mail server answered: it is ready to send. ({})",
                    &[&report],
                )),
                Err(e) => r.set_label(&errors::sentence(&e)),
            }
        });
    });
    clamp.upcast()
}
