//! "Relais" (administrators): the mail server this PC sends through, as the daemon reports its
//! settings, a check that it answers, and — for a Microsoft 365 mailbox (OAuth2) — the sign-in
//! the daemon's tokens come from, with the sending limits it keeps to.

use std::time::Duration;

use adw::prelude::*;
use postecole_dbus::{RelayInfo, RelayStatus};

use crate::i18n::{tr, trf};
use crate::window::AppRc;
use crate::{client, errors, ui, words};

/// The OAuth2 sign-in and the sending limits as (title, value) rows, in words; empty when the
/// relay signs in with a password or not at all and has no limits. Never a token.
pub fn status_rows(s: &RelayStatus) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    if s.auth == "xoauth2" {
        rows.push((tr("Mailbox"), s.username.clone()));
        rows.push((
            tr("Sign-in"),
            if !s.needs_login.is_empty() {
                trf(
                    "Needed: e-mails wait until an administrator signs in again ({})",
                    &[&s.needs_login],
                )
            } else if s.token_expires == 0 {
                tr("Not done yet")
            } else {
                trf(
                    "Valid (renewed automatically; current access until {})",
                    &[&words::time(s.token_expires)],
                )
            },
        ));
        if !s.last_error.is_empty() {
            rows.push((tr("Last renewal problem"), s.last_error.clone()));
        }
    }
    if s.max_messages_per_minute > 0 {
        rows.push((
            tr("At most, per minute"),
            trf("{} e-mails", &[&s.max_messages_per_minute.to_string()]),
        ));
    }
    if s.max_recipients_per_day > 0 {
        rows.push((
            tr("Recipients today"),
            trf(
                "{} of {}",
                &[
                    &s.recipients_today.to_string(),
                    &s.max_recipients_per_day.to_string(),
                ],
            ),
        ));
    }
    if s.waiting > 0 {
        rows.push((
            tr("Waiting to leave"),
            if s.eta_secs > 60 {
                trf(
                    "{} e-mails; the last one in about {} min",
                    &[&s.waiting.to_string(), &s.eta_secs.div_ceil(60).to_string()],
                )
            } else {
                trf("{} e-mails", &[&s.waiting.to_string()])
            },
        ));
    }
    rows
}

/// Where a device sign-in stands, in words; None once nothing is under way or to report.
pub fn login_sentence(s: &RelayStatus) -> Option<String> {
    match s.login_state.as_str() {
        "waiting" => Some(trf(
            "Open {} in a web browser (on this PC or a phone), sign in with the mailbox {} and type the code {}. This page follows the sign-in by itself.",
            &[&s.login_uri, &s.username, &s.login_code],
        )),
        "checking" => Some(tr("Signed in: checking with the mail server…")),
        "done" => Some(trf(
            "Signed in. The mail server accepts the mailbox. ({})",
            &[&s.login_result],
        )),
        "failed" => Some(trf("The sign-in did not succeed: {}", &[&s.login_result])),
        _ => None,
    }
}

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
    // Microsoft 365: the sign-in and the limits, shown only when the daemon has any.
    let oauth = adw::PreferencesGroup::builder()
        .title(tr("Sign-in and sending limits"))
        .visible(false)
        .build();
    content.append(&oauth);
    let oauth_rows: std::rc::Rc<std::cell::RefCell<Vec<adw::ActionRow>>> = Default::default();
    let login = ui::button(&tr("Sign in to the mailbox"));
    login.set_halign(gtk::Align::Start);
    login.set_visible(false);
    content.append(&login);
    let login_text = gtk::Label::builder()
        .wrap(true)
        .xalign(0.0)
        .selectable(true)
        .accessible_role(gtk::AccessibleRole::Status)
        .build();
    content.append(&login_text);
    let refresh_status = {
        let (oauth, oauth_rows, login, login_text) = (
            oauth.clone(),
            oauth_rows.clone(),
            login.clone(),
            login_text.clone(),
        );
        move |status: &RelayStatus| {
            for row in oauth_rows.borrow_mut().drain(..) {
                oauth.remove(&row);
            }
            let rows = status_rows(status);
            oauth.set_visible(!rows.is_empty());
            for (title, value) in rows {
                let row = adw::ActionRow::builder()
                    .title(gtk::glib::markup_escape_text(&title).as_str())
                    .subtitle(gtk::glib::markup_escape_text(&value).as_str())
                    .build();
                oauth.add(&row);
                oauth_rows.borrow_mut().push(row);
            }
            login.set_visible(status.auth == "xoauth2" && status.grant != "client_credentials");
            login.set_sensitive(!matches!(
                status.login_state.as_str(),
                "waiting" | "checking"
            ));
            login_text.set_label(&login_sentence(status).unwrap_or_default());
        }
    };
    let refresh_status = std::rc::Rc::new(refresh_status);
    // Read again each time the page is shown: a pause begins and ends while the window is open.
    let on_map = refresh_status.clone();
    let login_error = error.clone();
    clamp.connect_map(move |_| {
        let (settings, shown, error) = (settings.clone(), shown.clone(), error.clone());
        let on_map = on_map.clone();
        ui::spawn(async move {
            if let Ok(status) =
                client::call(|c| async move { client::outbox(&c).await?.relay_status().await })
                    .await
            {
                on_map(&status);
            }
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
    // The daemon polls the provider itself; the page only follows it until the sign-in ends.
    let on_login = refresh_status.clone();
    login.connect_clicked(move |button| {
        button.set_sensitive(false);
        let (b, follow, error) = (button.clone(), on_login.clone(), login_error.clone());
        ui::spawn(async move {
            let started =
                client::call(|c| async move { client::outbox(&c).await?.relay_login().await })
                    .await;
            if let Err(e) = started {
                b.set_sensitive(true);
                ui::show_message(&error, Some(&errors::sentence(&e)));
                return;
            }
            ui::show_message(&error, None);
            loop {
                match client::call(
                    |c| async move { client::outbox(&c).await?.relay_status().await },
                )
                .await
                {
                    Ok(status) => {
                        follow(&status);
                        if !matches!(status.login_state.as_str(), "waiting" | "checking") {
                            break;
                        }
                    }
                    Err(e) => {
                        ui::show_message(&error, Some(&errors::sentence(&e)));
                        b.set_sensitive(true);
                        break;
                    }
                }
                gtk::glib::timeout_future(Duration::from_secs(2)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_microsoft_mailbox_shows_its_sign_in_and_limits_in_words() {
        let waiting = RelayStatus {
            auth: "xoauth2".into(),
            grant: "device_code".into(),
            username: "secretariat@ecole.fr".into(),
            needs_login: "invalid_grant (AADSTS700082)".into(),
            max_messages_per_minute: 30,
            max_recipients_per_day: 10_000,
            recipients_today: 120,
            waiting: 400,
            eta_secs: 800,
            login_state: "waiting".into(),
            login_uri: "https://microsoft.com/devicelogin".into(),
            login_code: "ABCD-1234".into(),
            ..Default::default()
        };
        let rows = status_rows(&waiting);
        let text = format!("{rows:?}");
        assert!(text.contains("secretariat@ecole.fr"), "{text}");
        assert!(text.contains("AADSTS700082"), "{text}");
        assert!(text.contains("120") && text.contains("10000"), "{text}");
        assert!(text.contains("400") && text.contains("14"), "{text}");
        let sentence = login_sentence(&waiting).unwrap();
        assert!(
            sentence.contains("https://microsoft.com/devicelogin")
                && sentence.contains("ABCD-1234"),
            "{sentence}"
        );
        let plain = RelayStatus {
            auth: "password".into(),
            ..Default::default()
        };
        assert!(status_rows(&plain).is_empty());
        assert_eq!(login_sentence(&plain), None);
        let failed = RelayStatus {
            login_state: "failed".into(),
            login_result: "expired_token".into(),
            ..waiting
        };
        assert!(login_sentence(&failed).unwrap().contains("expired_token"));
    }
}
