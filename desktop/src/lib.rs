//! The desktop application of postecole: a client of the daemon's public D-Bus API only.

mod accounts;
mod archive;
mod assistant;
pub mod client;
pub mod errors;
pub mod i18n;
pub mod merge;
mod outbox;
mod relay;
mod send;
mod staff;
mod ui;
mod window;
pub mod words;

use adw::prelude::*;

pub const APP_ID: &str = "org.postecole.Mail";

/// Runs the application with these command-line arguments; returns the exit code.
pub fn run(args: Vec<String>) -> gtk::glib::ExitCode {
    i18n::init();
    let mut rest = Vec::new();
    for arg in args {
        if arg == "--session" {
            client::use_session_bus();
        } else {
            rest.push(arg);
        }
    }
    client::connect_early();
    let application = adw::Application::builder().application_id(APP_ID).build();
    application.connect_activate(|application| {
        if let Some(window) = application.active_window() {
            window.present();
            return;
        }
        let app = window::build(application);
        app.window.present();
    });
    application.run_with_args(&rest)
}
