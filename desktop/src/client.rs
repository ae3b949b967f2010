//! The bridge between the GTK main loop and the daemon: every D-Bus call runs on one tokio
//! runtime and its result comes back to the awaiting UI future; GTK objects never leave the
//! main thread.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use postecole_dbus::{AccountsProxy, Error, OutboxProxy};
use tokio::sync::OnceCell;

static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
static CONNECTION: OnceCell<zbus::Connection> = OnceCell::const_new();
static SESSION_BUS: AtomicBool = AtomicBool::new(false);

/// Talk to a daemon on the session bus instead of the system bus (`--session`).
pub fn use_session_bus() {
    SESSION_BUS.store(true, Ordering::Relaxed);
}

fn runtime() -> &'static tokio::runtime::Runtime {
    RT.get_or_init(|| {
        // One worker: the window waits on few calls at a time and the PC is small.
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

async fn connection() -> Result<zbus::Connection, Error> {
    CONNECTION
        .get_or_try_init(|| async {
            if SESSION_BUS.load(Ordering::Relaxed) {
                zbus::Connection::session().await
            } else {
                zbus::Connection::system().await
            }
        })
        .await
        .cloned()
        .map_err(Error::from)
}

/// Starts connecting to the bus while GTK starts up: the first list then waits for neither.
pub fn connect_early() {
    runtime().spawn(async {
        let _ = connection().await;
    });
}

/// Runs `f` with the bus connection on the runtime; awaited from the GTK main loop.
pub async fn call<T, F, Fut>(f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(zbus::Connection) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, Error>> + Send,
{
    runtime()
        .spawn(async move { f(connection().await?).await })
        .await
        .unwrap_or_else(|e| Err(Error::Internal(e.to_string())))
}

pub async fn accounts(c: &zbus::Connection) -> Result<AccountsProxy<'static>, Error> {
    Ok(AccountsProxy::builder(c)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?)
}

pub async fn outbox(c: &zbus::Connection) -> Result<OutboxProxy<'static>, Error> {
    Ok(OutboxProxy::builder(c)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?)
}

pub async fn archive(c: &zbus::Connection) -> Result<postecole_dbus::ArchiveProxy<'static>, Error> {
    Ok(postecole_dbus::ArchiveProxy::builder(c)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?)
}

/// A channel that receives `()` each time the daemon says an account changed.
pub fn account_changes() -> async_channel::Receiver<()> {
    let (tx, rx) = async_channel::bounded(16);
    runtime().spawn(async move {
        let Ok(c) = connection().await else { return };
        let Ok(proxy) = accounts(&c).await else {
            return;
        };
        let Ok(mut stream) = proxy.receive_account_changed().await else {
            return;
        };
        while stream.next().await.is_some() {
            // A full channel already holds a pending reload: dropping this one loses nothing.
            if let Err(async_channel::TrySendError::Closed(_)) = tx.try_send(()) {
                return;
            }
        }
    });
    rx
}

/// A channel that receives the id and new state of each message whose state changed.
///
/// Unbounded: a page may read it only after its own calls (a merge sends all its chunks
/// first), and a forwarder waiting for room would leave the signal stream unread; zbus then
/// stops reading the connection after 64 signals, and every call's reply waits behind them.
pub fn message_changes() -> async_channel::Receiver<(String, String)> {
    let (tx, rx) = async_channel::unbounded();
    runtime().spawn(async move {
        let Ok(c) = connection().await else { return };
        let Ok(proxy) = outbox(&c).await else { return };
        let Ok(mut stream) = proxy.receive_message_changed().await else {
            return;
        };
        while let Some(signal) = stream.next().await {
            let Ok(args) = signal.args() else { continue };
            let change = (args.id().to_string(), args.state().to_string());
            if tx.send(change).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Whether the daemon treats this user as an administrator, as it says without prompting.
pub async fn is_admin() -> bool {
    call(|c| async move { accounts(&c).await?.who_am_i().await })
        .await
        .is_ok_and(|me| me.admin)
}
