//! The main window: one page per task, switched from the header bar.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use adw::prelude::*;
use gtk::{gio, glib};
use postecole_dbus::AccountInfo;

use crate::i18n::tr;
use crate::{accounts, archive, client, errors, merge, outbox, relay, send, ui};

pub struct App {
    pub window: adw::ApplicationWindow,
    /// Whether the daemon treats this user as an administrator.
    pub admin: Cell<bool>,
    /// The accounts this user may see (`glib::BoxedAnyObject` of `AccountInfo`).
    pub accounts: gio::ListStore,
    pub default_account: RefCell<String>,
    pub accounts_error: gtk::Label,
    stack: gtk::Stack,
    switches: RefCell<Vec<(String, gtk::ToggleButton)>>,
    admin_only: RefCell<Vec<gtk::Widget>>,
    /// Told each time the accounts list has been reloaded.
    account_listeners: RefCell<Vec<Box<dyn Fn()>>>,
    reported_ready: Cell<bool>,
    /// Recipients of the messages seen while queued: the daemon forgets them once delivered.
    pub recipients: RefCell<std::collections::HashMap<String, Vec<String>>>,
}

pub type AppRc = Rc<App>;

pub fn account_of(object: &glib::Object) -> AccountInfo {
    object
        .downcast_ref::<glib::BoxedAnyObject>()
        .expect("a boxed account")
        .borrow::<AccountInfo>()
        .clone()
}

impl App {
    pub fn on_accounts_reloaded(&self, f: impl Fn() + 'static) {
        self.account_listeners.borrow_mut().push(Box::new(f));
    }

    pub fn account_list(&self) -> Vec<AccountInfo> {
        self.accounts
            .iter::<glib::Object>()
            .flatten()
            .map(|o| account_of(&o))
            .collect()
    }

    /// Fills a "From" drop-down with the accounts ready to send ("Label <address>"), the
    /// default account selected, else the one chosen before among `before`; returns their ids.
    pub fn fill_from(
        &self,
        names: &gtk::StringList,
        from: &gtk::DropDown,
        before: &[String],
    ) -> Vec<String> {
        let previous = before.get(from.selected() as usize).cloned();
        let ready: Vec<AccountInfo> = self
            .account_list()
            .into_iter()
            .filter(|x| x.state == postecole_dbus::STATE_ACTIVE)
            .collect();
        let shown: Vec<String> = ready
            .iter()
            .map(|x| format!("{} <{}>", x.label, x.address))
            .collect();
        let shown: Vec<&str> = shown.iter().map(String::as_str).collect();
        names.splice(0, names.n_items(), &shown);
        let ids: Vec<String> = ready.into_iter().map(|x| x.id).collect();
        let default = self.default_account.borrow().clone();
        if let Some(i) = ids
            .iter()
            .position(|id| *id == default)
            .or_else(|| ids.iter().position(|id| Some(id) == previous.as_ref()))
        {
            from.set_selected(i as u32);
        }
        ids
    }

    pub fn show_page(&self, name: &str) {
        for (page, button) in self.switches.borrow().iter() {
            if page == name {
                button.set_active(true);
            }
        }
    }

    fn add_page(
        &self,
        bar: &gtk::Box,
        id: &str,
        title: &str,
        page: &impl IsA<gtk::Widget>,
        admin: bool,
    ) {
        self.stack.add_named(page, Some(id));
        let button = gtk::ToggleButton::builder().label(title).build();
        ui::name(&button, title);
        if let Some((_, first)) = self.switches.borrow().first() {
            button.set_group(Some(first));
        } else {
            button.set_active(true);
        }
        let stack = self.stack.clone();
        let id_owned = id.to_owned();
        button.connect_toggled(move |b| {
            if b.is_active() {
                stack.set_visible_child_name(&id_owned);
            }
        });
        bar.append(&button);
        if admin {
            button.set_visible(false);
            self.admin_only.borrow_mut().push(button.clone().upcast());
        }
        self.switches.borrow_mut().push((id.to_owned(), button));
    }
}

/// Reloads the accounts list from the daemon; errors go to the accounts page.
pub async fn reload_accounts(app: &AppRc) {
    let result = client::call(|c| async move {
        let proxy = client::accounts(&c).await?;
        tokio::try_join!(proxy.list_accounts(), proxy.get_default_account())
    })
    .await;
    match result {
        Ok((list, default)) => {
            ui::show_message(&app.accounts_error, None);
            *app.default_account.borrow_mut() = default;
            let objects: Vec<glib::Object> = list
                .into_iter()
                .map(|a| glib::BoxedAnyObject::new(a).upcast())
                .collect();
            app.accounts.splice(0, app.accounts.n_items(), &objects);
        }
        Err(e) => ui::show_message(&app.accounts_error, Some(&errors::sentence(&e))),
    }
    for listener in app.account_listeners.borrow().iter() {
        listener();
    }
    if !app.reported_ready.replace(true) && std::env::var_os("POSTECOLE_REPORT_READY").is_some() {
        // The benchmark times the launch up to this line: the list is filled and laid out.
        glib::idle_add_local_once(|| println!("accounts-shown"));
    }
}

pub fn build(application: &adw::Application) -> AppRc {
    let window = adw::ApplicationWindow::builder()
        .application(application)
        .title(tr("E-mail of this PC"))
        .default_width(960)
        .default_height(700)
        .build();
    let stack = gtk::Stack::builder()
        .transition_type(gtk::StackTransitionType::Crossfade)
        .vexpand(true)
        .build();
    let app = Rc::new(App {
        window: window.clone(),
        admin: Cell::new(false),
        accounts: gio::ListStore::new::<glib::BoxedAnyObject>(),
        default_account: RefCell::new(String::new()),
        accounts_error: ui::error_label(),
        stack: stack.clone(),
        switches: RefCell::new(Vec::new()),
        admin_only: RefCell::new(Vec::new()),
        account_listeners: RefCell::new(Vec::new()),
        reported_ready: Cell::new(false),
        recipients: RefCell::default(),
    });

    let bar = gtk::Box::new(gtk::Orientation::Horizontal, 0);
    bar.add_css_class("linked");
    app.add_page(
        &bar,
        "accounts",
        &tr("Accounts"),
        &accounts::page(&app),
        false,
    );
    app.add_page(&bar, "send", &tr("Write"), &send::page(&app), false);
    app.add_page(
        &bar,
        "merge",
        &tr("Mailing to families"),
        &merge::page(&app),
        false,
    );
    app.add_page(
        &bar,
        "outbox",
        &tr("Sending follow-up"),
        &outbox::page(&app),
        false,
    );
    app.add_page(
        &bar,
        "archive",
        &tr("Sent messages"),
        &archive::page(&app),
        false,
    );
    app.add_page(&bar, "relay", &tr("Relay"), &relay::page(&app), true);

    let header = adw::HeaderBar::builder().title_widget(&bar).build();
    let body = gtk::Box::new(gtk::Orientation::Vertical, 0);
    body.append(&header);
    body.append(&stack);
    window.set_content(Some(&body));

    let changes = client::account_changes();
    let a = app.clone();
    ui::spawn(async move {
        reload_accounts(&a).await;
        if client::is_admin().await {
            a.admin.set(true);
            for w in a.admin_only.borrow().iter() {
                w.set_visible(true);
            }
        }
        while changes.recv().await.is_ok() {
            reload_accounts(&a).await;
        }
    });
    app
}
