//! "Relais" (administrators): check that the mail server this PC sends through answers.

use adw::prelude::*;

use crate::i18n::{tr, trf};
use crate::window::AppRc;
use crate::{client, errors, ui};

pub fn page(_app: &AppRc) -> gtk::Widget {
    let (clamp, content) = ui::page();
    content.append(&ui::heading(&tr("Relay")));
    content.append(&ui::text(&tr(
        "E-mails leave this PC through the mail server set in /etc/postecole/postecoled.toml. “Test” connects to it as a real sending would, without sending anything.",
    )));
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
