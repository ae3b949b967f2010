//! The daemon's `MessageChanged` signals, read by a task of their own.
//!
//! zbus keeps at most 64 messages for a signal stream; while nobody reads it, the connection's
//! reader waits, and the reply to a call waits behind it. A command following its messages
//! makes calls between reads, and one batch (another user's as well as its own) announces
//! hundreds of changes at once: read apart from the calls, they never hold one up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use postecole_dbus::OutboxProxy;
use tokio::sync::Notify;

pub struct Changes {
    shared: Arc<Shared>,
    reader: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<Announced>,
    ready: Notify,
}

#[derive(Default)]
struct Announced {
    /// Id → the last state announced for it, since the last `next`.
    latest: HashMap<String, String>,
    /// The daemon is gone (the stream ended).
    ended: bool,
}

impl Changes {
    /// Listens from now on; keeps the changes of the ids `wanted` accepts, the others are
    /// dropped as they come (memory stays bounded by what `wanted` accepts).
    pub async fn listen(
        outbox: &OutboxProxy<'_>,
        wanted: impl Fn(&str) -> bool + Send + 'static,
    ) -> zbus::Result<Changes> {
        let mut stream = outbox.receive_message_changed().await?;
        let shared = Arc::new(Shared::default());
        let writer = shared.clone();
        let reader = tokio::spawn(async move {
            while let Some(signal) = stream.next().await {
                let Ok(args) = signal.args() else { continue };
                if wanted(args.id()) {
                    writer
                        .state
                        .lock()
                        .unwrap()
                        .latest
                        .insert(args.id().to_string(), args.state().to_string());
                    writer.ready.notify_one();
                }
            }
            writer.state.lock().unwrap().ended = true;
            writer.ready.notify_one();
        });
        Ok(Changes { shared, reader })
    }

    /// The (id, state) changes announced since the last call, waiting up to `within` for one:
    /// empty when none came in time, `None` once the daemon is gone.
    pub async fn next(&self, within: Duration) -> Option<Vec<(String, String)>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            {
                let mut state = self.shared.state.lock().unwrap();
                if !state.latest.is_empty() {
                    return Some(state.latest.drain().collect());
                }
                if state.ended {
                    return None;
                }
            }
            // A change between the look above and this wait leaves a permit: no wake-up lost.
            if tokio::time::timeout_at(deadline, self.shared.ready.notified())
                .await
                .is_err()
            {
                return Some(Vec::new());
            }
        }
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
