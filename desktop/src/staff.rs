//! Ticking the staff allowed to send with an establishment account (administrators).

use adw::prelude::*;
use postecole_dbus::{AccountInfo, Error};

use crate::i18n::tr;
use crate::window::{AppRc, reload_accounts};
use crate::{client, errors, ui, words};

pub struct StaffChooser {
    pub widget: adw::PreferencesGroup,
    checks: Vec<(String, gtk::Switch)>,
}

impl StaffChooser {
    /// The people and groups of this PC, those in `current` ticked.
    pub fn new(current: &[String]) -> StaffChooser {
        let widget = adw::PreferencesGroup::builder()
            .title(tr("Staff allowed to send"))
            .description(tr(
                "Tick the people, or a whole group such as the teachers, who may send e-mail from this address.",
            ))
            .build();
        let mut candidates = words::staff_candidates();
        for name in current {
            if !candidates.iter().any(|(n, _)| n == name) {
                candidates.push((name.clone(), name.clone()));
            }
        }
        let mut checks = Vec::new();
        for (name, shown) in candidates {
            // A switch: GTK 4.8 gives check buttons no accessible action.
            let check = gtk::Switch::builder()
                .active(current.contains(&name))
                .valign(gtk::Align::Center)
                .build();
            // Named by the row it activates.
            let row = adw::ActionRow::builder()
                .title(gtk::glib::markup_escape_text(&shown).as_str())
                .activatable_widget(&check)
                .build();
            row.add_suffix(&check);
            widget.add(&row);
            checks.push((name, check));
        }
        if checks.is_empty() {
            widget.add(&ui::text(&tr("There is no other user on this PC.")));
        }
        StaffChooser { widget, checks }
    }

    pub fn chosen(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|(_, c)| c.is_active())
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// Adds who is newly ticked and removes who is no longer.
pub async fn apply(id: String, before: Vec<String>, after: Vec<String>) -> Result<(), Error> {
    client::call(move |c| async move {
        let proxy = client::accounts(&c).await?;
        for name in after.iter().filter(|n| !before.contains(n)) {
            proxy.add_staff(&id, name).await?;
        }
        for name in before.iter().filter(|n| !after.contains(n)) {
            proxy.remove_staff(&id, name).await?;
        }
        Ok(())
    })
    .await
}

pub fn open(app: &AppRc, account: &AccountInfo) {
    let (clamp, content) = ui::page();
    let window = ui::dialog(
        &app.window,
        &tr("Staff allowed to send"),
        &ui::scrolled(&clamp),
    );
    let chooser = StaffChooser::new(&account.staff);
    content.append(&chooser.widget);
    let error = ui::error_label();
    content.append(&error);
    let validate = ui::suggested(&tr("Validate"));
    validate.set_halign(gtk::Align::End);
    content.append(&validate);
    let (a, w, id, before) = (
        app.clone(),
        window.clone(),
        account.id.clone(),
        account.staff.clone(),
    );
    validate.connect_clicked(move |_| {
        let (a, w, e) = (a.clone(), w.clone(), error.clone());
        let fut = apply(id.clone(), before.clone(), chooser.chosen());
        ui::spawn(async move {
            match fut.await {
                Ok(()) => {
                    w.close();
                    reload_accounts(&a).await;
                }
                Err(err) => ui::show_message(&e, Some(&errors::sentence(&err))),
            }
        });
    });
    window.present();
}
