//! "Suivi des envois": the caller's messages (everyone's for an administrator), kept current by
//! the daemon's MessageChanged signal.

use adw::prelude::*;
use gtk::{gio, glib};
use postecole_dbus::{self as api, MessageInfo};

use crate::i18n::{tr, trf};
use crate::window::AppRc;
use crate::{client, errors, ui, words};

fn message_of(object: &glib::Object) -> MessageInfo {
    object
        .downcast_ref::<glib::BoxedAnyObject>()
        .expect("a boxed message")
        .borrow::<MessageInfo>()
        .clone()
}

/// Puts `m` in place of the message with the same id, or first (the newest) if it is new.
fn upsert(store: &gio::ListStore, m: MessageInfo) {
    let position =
        (0..store.n_items()).find(|&i| store.item(i).is_some_and(|o| message_of(&o).id == m.id));
    let object = glib::BoxedAnyObject::new(m);
    match position {
        Some(i) => store.splice(i, 1, &[object]),
        None => store.insert(0, &object),
    }
}

/// How far back the page goes.
const SHOWN_DAYS: u64 = 30;

pub fn page(app: &AppRc) -> gtk::Widget {
    let (clamp, content) = ui::page();
    content.append(&ui::heading(&tr("Sending follow-up")));
    content.append(&ui::text(&tr(
        "Each message sent from this PC in the last 30 days, newest first, and where it stands. Messages that could not be delivered yet are tried again on their own.",
    )));
    let error = ui::error_label();
    content.append(&error);
    let store = gio::ListStore::new::<glib::BoxedAnyObject>();
    let list = gtk::ListBox::builder()
        .selection_mode(gtk::SelectionMode::None)
        .build();
    list.add_css_class("boxed-list");
    ui::name(&list, &tr("Sending follow-up"));
    let placeholder = ui::text(&tr("No message sent in the last 30 days."));
    placeholder.set_margin_top(18);
    placeholder.set_margin_bottom(18);
    placeholder.set_margin_start(18);
    list.set_placeholder(Some(&placeholder));
    let (s, e, a) = (store.clone(), error.clone(), app.clone());
    list.bind_model(Some(&store), move |o| {
        row(&a, &s, &e, &message_of(o)).upcast()
    });
    content.append(&list);

    let changes = client::message_changes();
    let (s, e) = (store.clone(), error.clone());
    ui::spawn(async move {
        // The page shows recent mail: the history the daemon keeps (90 days by default) can
        // be far longer, and each change is looked up here.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let recent = api::MessageFilter {
            since: Some(now.saturating_sub(SHOWN_DAYS * 86_400)),
            ..Default::default()
        };
        match client::call(move |c| async move { client::outbox(&c).await?.find_all(recent).await })
            .await
        {
            Ok(mut list) => {
                list.sort_by_key(|m| std::cmp::Reverse(m.created));
                let objects: Vec<glib::Object> = list
                    .into_iter()
                    .map(|m| glib::BoxedAnyObject::new(m).upcast())
                    .collect();
                s.splice(0, s.n_items(), &objects);
            }
            Err(err) => ui::show_message(&e, Some(&errors::sentence(&err))),
        }
        while let Ok((id, _)) = changes.recv().await {
            refresh(&s, &e, id).await;
        }
    });
    ui::scrolled(&clamp).upcast()
}

async fn refresh(store: &gio::ListStore, error: &gtk::Label, id: String) {
    match client::call(move |c| async move { client::outbox(&c).await?.get_message(&id).await })
        .await
    {
        Ok(m) => upsert(store, m),
        // Another user's message (the signal goes to every listener): not ours to show.
        Err(api::Error::NotFound(_)) => {}
        Err(err) => ui::show_message(error, Some(&errors::sentence(&err))),
    }
}

fn row(app: &AppRc, store: &gio::ListStore, error: &gtk::Label, m: &MessageInfo) -> adw::ActionRow {
    if !m.to.is_empty() {
        app.recipients
            .borrow_mut()
            .insert(m.id.clone(), m.to.clone());
    }
    let to = app
        .recipients
        .borrow()
        .get(&m.id)
        .map(|t| t.join(", "))
        .unwrap_or_default();
    let title = if to.is_empty() {
        trf("Message of {}", &[&words::time(m.created)])
    } else {
        trf("To: {}", &[&to])
    };
    let mut details = vec![words::time(m.created)];
    if m.attempts > 0 {
        details.push(trf("attempts: {}", &[&m.attempts.to_string()]));
    }
    if m.state == api::MSG_DEFERRED && m.next_attempt > 0 {
        details.push(trf("next try: {}", &[&words::time(m.next_attempt)]));
    }
    if !m.last_reply.is_empty() {
        details.push(trf("server's reply: {}", &[&m.last_reply]));
    }
    let row = adw::ActionRow::builder()
        .title(glib::markup_escape_text(&title).as_str())
        .subtitle(glib::markup_escape_text(&details.join(" · ")).as_str())
        .subtitle_lines(3)
        .build();
    let state = gtk::Label::new(Some(&words::message_state(&m.state)));
    match m.state.as_str() {
        api::MSG_DELIVERED => state.add_css_class("success"),
        api::MSG_FAILED | api::MSG_CANCELLED => state.add_css_class("error"),
        _ => state.add_css_class("warning"),
    }
    ui::name(
        &row,
        &format!("{title} — {}", words::message_state(&m.state)),
    );
    let waiting = matches!(m.state.as_str(), api::MSG_QUEUED | api::MSG_DEFERRED);
    let mut actions: Vec<(String, &'static str)> = Vec::new();
    if matches!(m.state.as_str(), api::MSG_DEFERRED | api::MSG_FAILED) {
        actions.push((tr("Retry"), "retry"));
    }
    if waiting {
        actions.push((tr("Hold"), "hold"));
    }
    if m.state == api::MSG_HELD {
        actions.push((tr("Release"), "release"));
    }
    if waiting || m.state == api::MSG_HELD {
        actions.push((tr("Cancel"), "cancel"));
    }
    for (label, action) in actions {
        let b = gtk::Button::builder()
            .label(&label)
            .valign(gtk::Align::Center)
            .build();
        b.add_css_class("flat");
        ui::name(&b, &format!("{label} — {title}"));
        let (s, e, id) = (store.clone(), error.clone(), m.id.clone());
        b.connect_clicked(move |_| {
            let (s, e, id) = (s.clone(), e.clone(), id.clone());
            ui::spawn(async move {
                let id2 = id.clone();
                let r = client::call(move |c| async move {
                    let o = client::outbox(&c).await?;
                    match action {
                        "retry" => o.retry(&id2).await,
                        "hold" => o.hold(&id2).await,
                        "release" => o.release(&id2).await,
                        _ => o.cancel(&id2).await,
                    }
                })
                .await;
                match r {
                    Ok(()) => refresh(&s, &e, id).await,
                    Err(err) => ui::show_message(&e, Some(&errors::sentence(&err))),
                }
            });
        });
        row.add_suffix(&b);
    }
    row.add_suffix(&state);
    row
}
