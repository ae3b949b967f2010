//! "Écrire": one message from an account the user may send with, with attachments.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use adw::prelude::*;
use gtk::{gio, glib};
use postecole_dbus::OutgoingMessage;

use crate::i18n::{tr, trf};
use crate::window::AppRc;
use crate::{client, errors, ui};

/// Addresses typed with commas, semicolons or spaces between them.
pub fn split_addresses(s: &str) -> Vec<String> {
    s.split([',', ';', ' ', '\n'])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

fn content_type(path: &std::path::Path) -> String {
    let (guess, _) = gio::content_type_guess(Some(path), None);
    gio::content_type_get_mime_type(&guess)
        .map(|m| m.to_string())
        .unwrap_or_else(|| "application/octet-stream".into())
}

pub fn page(app: &AppRc) -> gtk::Widget {
    let (clamp, content) = ui::page();
    content.append(&ui::heading(&tr("Write a message")));

    let ids: Rc<RefCell<Vec<String>>> = Rc::default();
    let names = gtk::StringList::new(&[]);
    let from = gtk::DropDown::builder()
        .model(&names)
        .valign(gtk::Align::Center)
        .build();
    ui::name(&from, &tr("From"));
    let from_row = adw::ActionRow::builder().title(tr("From")).build();
    from_row.add_suffix(&from);
    let refill = {
        let (a, ids, names, from) = (app.clone(), ids.clone(), names.clone(), from.clone());
        move || {
            let before = ids.borrow().clone();
            *ids.borrow_mut() = a.fill_from(&names, &from, &before);
        }
    };
    app.on_accounts_reloaded(refill);

    let group = adw::PreferencesGroup::new();
    let to = ui::entry(&tr("To"));
    let cc = ui::entry(&tr("Copy to"));
    let subject = ui::entry(&tr("Subject"));
    group.add(&from_row);
    group.add(&to);
    group.add(&cc);
    group.add(&subject);
    content.append(&group);

    let body = gtk::TextView::builder()
        .wrap_mode(gtk::WrapMode::WordChar)
        .top_margin(8)
        .bottom_margin(8)
        .left_margin(8)
        .right_margin(8)
        .build();
    ui::name(&body, &tr("Message"));
    let frame = gtk::Frame::builder()
        .child(
            &gtk::ScrolledWindow::builder()
                .min_content_height(200)
                .child(&body)
                .build(),
        )
        .build();
    content.append(&frame);

    let files: Rc<RefCell<Vec<PathBuf>>> = Rc::default();
    let attach_group = adw::PreferencesGroup::builder()
        .title(tr("Attachments"))
        .build();
    let file_list = gtk::ListBox::builder()
        .selection_mode(gtk::SelectionMode::None)
        .build();
    file_list.add_css_class("boxed-list");
    ui::name(&file_list, &tr("Attachments"));
    attach_group.add(&file_list);
    let attach = ui::button(&tr("Attach a file…"));
    attach.set_halign(gtk::Align::Start);
    attach_group.add(&attach);
    content.append(&attach_group);

    let redraw: Rc<dyn Fn()> = {
        let (files, file_list) = (files.clone(), file_list.clone());
        Rc::new(move || {
            while let Some(c) = file_list.first_child() {
                file_list.remove(&c);
            }
            for path in files.borrow().iter() {
                let shown = path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let row = adw::ActionRow::builder()
                    .title(glib::markup_escape_text(&shown).as_str())
                    .build();
                ui::name(&row, &shown);
                file_list.append(&row);
            }
            file_list.set_visible(!files.borrow().is_empty());
        })
    };
    redraw();
    // A native chooser is no widget: something must hold it while it is open.
    let open_chooser: Rc<RefCell<Option<gtk::FileChooserNative>>> = Rc::default();
    let (a, f, r) = (app.clone(), files.clone(), redraw.clone());
    attach.connect_clicked(move |_| {
        let chooser = gtk::FileChooserNative::new(
            Some(&tr("Attach a file")),
            Some(&a.window),
            gtk::FileChooserAction::Open,
            Some(&tr("Attach")),
            Some(&tr("Cancel")),
        );
        chooser.set_modal(true);
        let (f, r) = (f.clone(), r.clone());
        chooser.connect_response(move |c, response| {
            if response == gtk::ResponseType::Accept
                && let Some(path) = c.file().and_then(|file| file.path())
            {
                f.borrow_mut().push(path);
                r();
            }
        });
        chooser.show();
        open_chooser.replace(Some(chooser));
    });

    let error = ui::error_label();
    content.append(&error);
    let info = gtk::Label::builder()
        .wrap(true)
        .xalign(0.0)
        .accessible_role(gtk::AccessibleRole::Status)
        .build();
    content.append(&info);
    let send = ui::suggested(&tr("Send"));
    send.set_halign(gtk::Align::End);
    content.append(&send);

    let a = app.clone();
    send.connect_clicked(move |button| {
        ui::show_message(&error, None);
        info.set_label("");
        let Some(account) = ids.borrow().get(from.selected() as usize).cloned() else {
            ui::show_message(&error, Some(&tr("Set up an account first, in “Accounts”.")));
            return;
        };
        let recipients = split_addresses(&to.text());
        if recipients.is_empty() {
            ui::show_message(&error, Some(&tr("Give at least one recipient.")));
            return;
        }
        let mut opened = Vec::new();
        for path in files.borrow().iter() {
            match std::fs::File::open(path) {
                Ok(file) => opened.push((
                    path.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    content_type(path),
                    zbus::OwnedFd::from(std::os::fd::OwnedFd::from(file)),
                )),
                Err(_) => {
                    ui::show_message(
                        &error,
                        Some(&trf(
                            "The file {} cannot be read.",
                            &[&path.display().to_string()],
                        )),
                    );
                    return;
                }
            }
        }
        let buffer = body.buffer();
        let message = OutgoingMessage {
            to: Some(recipients),
            cc: Some(split_addresses(&cc.text())),
            subject: Some(subject.text().to_string()),
            text: Some(
                buffer
                    .text(&buffer.start_iter(), &buffer.end_iter(), false)
                    .to_string(),
            ),
            ..Default::default()
        };
        button.set_sensitive(false);
        let (a, b, e, i) = (a.clone(), button.clone(), error.clone(), info.clone());
        let (to, cc, subject, buffer, files, redraw) = (
            to.clone(),
            cc.clone(),
            subject.clone(),
            buffer.clone(),
            files.clone(),
            redraw.clone(),
        );
        ui::spawn(async move {
            let recipients = message.to.clone().unwrap_or_default();
            let r = client::call(move |c| async move {
                client::outbox(&c)
                    .await?
                    .send(&account, message, opened)
                    .await
            })
            .await;
            b.set_sensitive(true);
            match r {
                Ok(id) => {
                    a.recipients.borrow_mut().insert(id, recipients);
                    i.set_label(&tr(
                        "The message is on its way. Follow it in “Sending follow-up”.",
                    ));
                    for entry in [&to, &cc, &subject] {
                        entry.set_text("");
                    }
                    buffer.set_text("");
                    files.borrow_mut().clear();
                    redraw();
                    a.show_page("outbox");
                }
                Err(err) => ui::show_message(&e, Some(&errors::sentence(&err))),
            }
        });
    });
    ui::scrolled(&clamp).upcast()
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_split_on_commas_semicolons_and_spaces() {
        assert_eq!(
            super::split_addresses(" a@x.fr, b@x.fr;c@x.fr  d@x.fr ,"),
            ["a@x.fr", "b@x.fr", "c@x.fr", "d@x.fr"]
        );
    }
}
