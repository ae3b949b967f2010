//! Small widget helpers shared by the pages.

use adw::prelude::*;
use gtk::glib;
use gtk::glib::translate::ToGlibPtr;

/// Gives `widget` the accessible name a screen reader (and AT-SPI clients) announce.
#[allow(unsafe_code)]
pub fn name<W: IsA<gtk::Widget>>(widget: &W, name: &str) {
    // GTK has had this call since 4.0, but the bindings only expose it from 4.10 on; Debian 12
    // ships 4.8.
    unsafe extern "C" {
        fn gtk_accessible_update_property_value(
            accessible: *mut std::ffi::c_void,
            n_properties: std::ffi::c_int,
            properties: *const gtk::ffi::GtkAccessibleProperty,
            values: *const glib::gobject_ffi::GValue,
        );
    }
    let value = name.to_value();
    let property = gtk::ffi::GTK_ACCESSIBLE_PROPERTY_LABEL;
    // SAFETY: every widget implements GtkAccessible, and LABEL takes one string value.
    unsafe {
        gtk_accessible_update_property_value(
            widget.as_ref().as_ptr().cast(),
            1,
            &property,
            value.to_glib_none().0,
        );
    }
}

pub fn button(label: &str) -> gtk::Button {
    let b = gtk::Button::builder()
        .label(label)
        .use_underline(false)
        .build();
    name(&b, label);
    b
}

pub fn suggested(label: &str) -> gtk::Button {
    let b = button(label);
    b.add_css_class("suggested-action");
    b.add_css_class("pill");
    b
}

/// libadwaita names the text field after the row's title.
pub fn entry(title: &str) -> adw::EntryRow {
    adw::EntryRow::builder().title(title).build()
}

pub fn password(title: &str) -> adw::PasswordEntryRow {
    adw::PasswordEntryRow::builder().title(title).build()
}

/// A wrapping label of running text.
pub fn text(s: &str) -> gtk::Label {
    gtk::Label::builder()
        .label(s)
        .wrap(true)
        .xalign(0.0)
        .selectable(false)
        .build()
}

pub fn heading(s: &str) -> gtk::Label {
    let l = text(s);
    l.add_css_class("title-2");
    l
}

/// Where a page says what went wrong; announced as an alert, empty and hidden otherwise.
pub fn error_label() -> gtk::Label {
    let l = gtk::Label::builder()
        .wrap(true)
        .xalign(0.0)
        .visible(false)
        .accessible_role(gtk::AccessibleRole::Alert)
        .build();
    l.add_css_class("error");
    l
}

pub fn show_message(label: &gtk::Label, message: Option<&str>) {
    match message {
        Some(m) => {
            label.set_label(m);
            // An alert is not named after its text by GTK 4.8's accessibility bridge.
            name(label, m);
            label.set_visible(true);
        }
        None => {
            label.set_label("");
            label.set_visible(false);
        }
    }
}

/// A vertical page with the usual margins, clamped to a readable width.
pub fn page() -> (adw::Clamp, gtk::Box) {
    let content = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .spacing(18)
        .margin_top(24)
        .margin_bottom(24)
        .margin_start(12)
        .margin_end(12)
        .build();
    let clamp = adw::Clamp::builder()
        .maximum_size(720)
        .child(&content)
        .build();
    (clamp, content)
}

pub fn scrolled(child: &impl IsA<gtk::Widget>) -> gtk::ScrolledWindow {
    gtk::ScrolledWindow::builder()
        .hscrollbar_policy(gtk::PolicyType::Never)
        .vexpand(true)
        .child(child)
        .build()
}

/// A modal window over `parent` with a header bar and `content`.
pub fn dialog(
    parent: &impl IsA<gtk::Window>,
    title: &str,
    content: &impl IsA<gtk::Widget>,
) -> adw::Window {
    let body = gtk::Box::new(gtk::Orientation::Vertical, 0);
    body.append(&adw::HeaderBar::new());
    body.append(content);
    let w = adw::Window::builder()
        .title(title)
        .modal(true)
        .transient_for(parent)
        .default_width(560)
        .default_height(640)
        .content(&body)
        .build();
    name(&w, title);
    w
}

/// Runs `fut` on the GTK main loop.
pub fn spawn<F: std::future::Future<Output = ()> + 'static>(fut: F) {
    glib::spawn_future_local(fut);
}

/// Asks a yes/no question; `on_yes` runs if the person confirms.
pub fn confirm(
    parent: &impl IsA<gtk::Window>,
    heading: &str,
    body: &str,
    yes: &str,
    on_yes: impl Fn() + 'static,
) {
    let d = adw::MessageDialog::new(Some(parent), Some(heading), Some(body));
    d.add_response("cancel", &crate::i18n::tr("Cancel"));
    d.add_response("yes", yes);
    d.set_response_appearance("yes", adw::ResponseAppearance::Destructive);
    d.set_default_response(Some("cancel"));
    d.set_close_response("cancel");
    d.connect_response(None, move |_, response| {
        if response == "yes" {
            on_yes();
        }
    });
    d.present();
}

/// What the widget tests share: they run on GTK's one test thread, under a display.
#[cfg(test)]
pub mod testing {
    use adw::prelude::*;

    /// Runs `f` on GTK's test thread (as `#[gtk::test]` does), once a display is known to be
    /// there: without one, GTK's initialisation kills the whole test binary.
    pub fn gtk_test(f: impl FnOnce() + Send + std::panic::UnwindSafe + 'static) {
        assert!(
            std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some(),
            "the widget tests need a display: run them under `xvfb-run -a` (tests/run does)"
        );
        gtk::test_synced(move || {
            adw::init().expect("libadwaita");
            f()
        });
    }

    thread_local! {
        /// One application for every test: registering exports it on the session bus, once.
        static APPLICATION: adw::Application = {
            let application = adw::Application::builder()
                .application_id(crate::APP_ID)
                .flags(gtk::gio::ApplicationFlags::NON_UNIQUE)
                .build();
            application
                .register(None::<&gtk::gio::Cancellable>)
                .expect("register the application");
            application
        };
    }

    /// The application's window, its pages built, with no daemon behind it.
    pub fn test_app() -> crate::window::AppRc {
        APPLICATION.with(crate::window::build)
    }

    /// `root` and every widget under it.
    pub fn descendants(root: &impl IsA<gtk::Widget>) -> Vec<gtk::Widget> {
        let mut out = vec![root.clone().upcast::<gtk::Widget>()];
        let mut i = 0;
        while i < out.len() {
            let mut child = out[i].first_child();
            while let Some(c) = child {
                child = c.next_sibling();
                out.push(c);
            }
            i += 1;
        }
        out
    }

    #[track_caller]
    pub fn find_button(root: &impl IsA<gtk::Widget>, label: &str) -> gtk::Button {
        descendants(root)
            .into_iter()
            .filter_map(|w| w.downcast::<gtk::Button>().ok())
            .find(|b| b.label().as_deref() == Some(label))
            .unwrap_or_else(|| panic!("no button {label:?}"))
    }

    pub fn click(button: &gtk::Button) {
        button.emit_clicked();
    }

    /// The error messages shown under `root`.
    pub fn shown_errors(root: &impl IsA<gtk::Widget>) -> Vec<String> {
        descendants(root)
            .into_iter()
            .filter_map(|w| w.downcast::<gtk::Label>().ok())
            .filter(|l| l.has_css_class("error") && l.get_visible())
            .map(|l| l.label().to_string())
            .collect()
    }
}
