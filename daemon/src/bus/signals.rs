//! Signal forwarding: each subsystem broadcasts its own changes (`accounts::Event`,
//! `queue::Event`) whoever caused them; here they become `AccountChanged` and
//! `MessageChanged` on the bus.

use postecole_dbus::OBJECT_PATH;
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError};

use zbus::Connection;
use zbus::names::UniqueName;
use zbus::object_server::SignalEmitter;

use super::{AccountsService, OutboxService};
use crate::authz::Authority;
use crate::{accounts, queue};

/// Turns the accounts' changes into `AccountChanged` signals: broadcast, but for a personal
/// account's, which go to its owner's connections alone (anyone may listen to a broadcast,
/// administrators included, and its id is the owner's).
pub async fn forward_account_events(
    connection: Connection,
    mut events: broadcast::Receiver<accounts::Event>,
    authority: Arc<Authority>,
) {
    let Some(emitter) = emitter(&connection, "AccountChanged") else {
        return;
    };
    while let Some(event) = next(&mut events, "AccountChanged").await {
        let emitters = match event.private_to {
            None => vec![emitter.clone()],
            Some(uid) => authority
                .names_of(uid)
                .into_iter()
                .filter_map(|name| UniqueName::try_from(name).ok())
                .map(|name| emitter.clone().set_destination(name.into()))
                .collect(),
        };
        for emitter in &emitters {
            if let Err(e) = AccountsService::account_changed(emitter, &event.id, event.change).await
            {
                tracing::warn!(error = %e, "AccountChanged signal not sent");
            }
        }
    }
}

/// Turns the queue's state changes into `MessageChanged` signals.
pub async fn forward_message_events(
    connection: Connection,
    mut events: broadcast::Receiver<queue::Event>,
) {
    let Some(emitter) = emitter(&connection, "MessageChanged") else {
        return;
    };
    while let Some(event) = next(&mut events, "MessageChanged").await {
        if let Err(e) =
            OutboxService::message_changed(&emitter, &event.id, event.state.as_str()).await
        {
            tracing::warn!(error = %e, "MessageChanged signal not sent");
        }
    }
}

fn emitter<'a>(connection: &'a Connection, signal: &str) -> Option<SignalEmitter<'a>> {
    match SignalEmitter::new(connection, OBJECT_PATH) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::error!(error = %e, signal, "no signals of this kind");
            None
        }
    }
}

/// The next event; a listener that fell behind loses signals, never the daemon's work.
async fn next<T: Clone>(events: &mut broadcast::Receiver<T>, signal: &str) -> Option<T> {
    loop {
        match events.recv().await {
            Ok(event) => return Some(event),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, signal, "signals dropped under load");
            }
            Err(RecvError::Closed) => return None,
        }
    }
}
