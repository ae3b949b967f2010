//! Signal forwarding: the subsystems' broadcasts, turned into D-Bus signals.

use postecole_dbus::OBJECT_PATH;
use zbus::Connection;
use zbus::object_server::SignalEmitter;

use super::OutboxService;

/// Turns the queue's state changes into `MessageChanged` signals.
pub async fn forward_message_events(
    connection: Connection,
    mut events: tokio::sync::broadcast::Receiver<crate::queue::Event>,
) {
    let emitter = match SignalEmitter::new(&connection, OBJECT_PATH) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "no MessageChanged signals");
            return;
        }
    };
    loop {
        match events.recv().await {
            Ok(event) => {
                if let Err(e) =
                    OutboxService::message_changed(&emitter, &event.id, event.state.as_str()).await
                {
                    tracing::warn!(error = %e, "MessageChanged signal not sent");
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "MessageChanged signals dropped under load");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
