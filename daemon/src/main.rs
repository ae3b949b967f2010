//! postecoled: the e-mail service of a shared school PC, on the D-Bus system bus.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

use postecoled::config::{self, Config};
use postecoled::{accounts, archive, authz, ballast, bus, clock, outbox, queue, store};

/// The postecole daemon: owns the sender accounts and the outgoing mail of this PC.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Configuration file.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Serve on the user's session bus instead of the system bus (desktop trial).
    #[arg(long)]
    session: bool,
}

fn main() -> ExitCode {
    bound_allocator();
    let args = Args::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        // Once: the log goes to stderr, or to the journal that stderr also leads to.
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// To the journal, with priorities and fields, when systemd started us (it sets
/// JOURNAL_STREAM); plain stderr otherwise.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTECOLED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journal) = tracing_journald::layer()
    {
        registry
            .with(journal.with_syslog_identifier("postecoled".into()))
            .init();
        return;
    }
    registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false),
        )
        .init();
}

/// glibc's allocator tuned for a daemon that handles message bodies of megabytes on many threads.
/// By default it raises its mmap threshold to 32 MiB after the first large free and keeps such
/// buffers in one arena per thread, never returning them: resident memory would grow with every
/// thread that once held a large message. A fixed threshold hands them back at once.
const MALLOC_TUNABLES: &str = "glibc.malloc.mmap_threshold=262144:glibc.malloc.arena_max=2";

/// glibc reads its tunables only at start: without them, the daemon starts itself again with
/// them (same process id, same arguments). Set by hand (or by the unit), they are left alone.
fn bound_allocator() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let e = std::process::Command::new("/proc/self/exe")
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", MALLOC_TUNABLES)
        .exec();
    // Only a failed exec comes back: run on with the allocator's defaults.
    eprintln!("postecoled: cannot restart with the allocator's tunables ({e}); running without");
}

async fn run(args: Args) -> Result<(), String> {
    let (path, explicit) = match args.config {
        Some(p) => (p, true),
        None => (PathBuf::from(config::DEFAULT_PATH), false),
    };
    let config = Arc::new(Config::load(&path, explicit).map_err(|e| e.to_string())?);
    if nix::unistd::Group::from_name(&config.admin_group)
        .ok()
        .flatten()
        .is_none()
    {
        tracing::warn!(
            admin_group = %config.admin_group,
            "no such group on this PC: until it exists, only root administers postecole \
             (create it, or set admin_group in the configuration)"
        );
    }
    ballast::release_if_full(&config.state_dir);
    let store = store::Store::open(&config.state_dir).map_err(|e| e.to_string())?;
    let relay = Arc::new(
        queue::relay::Relay::from_config(&config, clock::system()).map_err(|e| e.to_string())?,
    );
    let archive = archive::Archive::new(&config.state_dir);
    check_archive_keys(&store, &archive);
    take_snapshot(store.clone(), false).await;
    let queue = Arc::new(
        queue::Queue::open(
            store.clone(),
            &config.state_dir,
            archive.clone(),
            config.queue.clone(),
            clock::system(),
        )
        .map_err(|e| format!("cannot open the outgoing queue: {e}"))?,
    );
    queue.set_disk_reserve(config.limits.disk_reserve_bytes);
    let accounts = Arc::new(accounts::Accounts::new(
        config.clone(),
        store.clone(),
        queue.clone(),
        archive,
        relay.describe(),
        accounts::notices::host_name(),
        clock::system(),
    ));
    let outbox = Arc::new(outbox::Outbox::new(
        config.clone(),
        accounts.clone(),
        queue.clone(),
        relay.clone(),
    ));
    let message_events = queue.subscribe();
    let account_events = accounts.subscribe();

    let bus_kind = if args.session { "session" } else { "system" };
    let builder = if args.session {
        zbus::connection::Builder::session()
    } else {
        zbus::connection::Builder::system()
    };
    let connection = builder
        .build()
        .await
        .map_err(|e| format!("cannot connect to the {bus_kind} bus: {e}"))?;
    let authority = Arc::new(authz::Authority::new(
        connection.clone(),
        config.admin_group.clone(),
        config.authorization == config::Authorization::Polkit,
    ));
    let serve_err = |e: zbus::Error| format!("cannot serve on the {bus_kind} bus: {e}");
    let server = connection.object_server();
    server
        .at(
            postecole_dbus::OBJECT_PATH,
            bus::AccountsService::new(accounts.clone(), authority.clone()),
        )
        .await
        .map_err(serve_err)?;
    server
        .at(
            postecole_dbus::OBJECT_PATH,
            bus::ArchiveService::new(accounts, authority.clone()),
        )
        .await
        .map_err(serve_err)?;
    server
        .at(
            postecole_dbus::OBJECT_PATH,
            bus::OutboxService::new(outbox, authority.clone()),
        )
        .await
        .map_err(serve_err)?;
    // The name last, once every interface is served, so that no call finds one missing. Without
    // ALLOW_REPLACEMENT and REPLACE_EXISTING: a second daemon on other state must not take it.
    connection
        .request_name_with_flags(
            postecole_dbus::BUS_NAME,
            zbus::fdo::RequestNameFlags::DO_NOT_QUEUE,
        )
        .await
        .map_err(|e| match e {
            zbus::Error::NameTaken => format!(
                "the bus name {} is already owned: is another postecoled running?",
                postecole_dbus::BUS_NAME
            ),
            other => format!(
                "cannot own {} on the {bus_kind} bus: {other}",
                postecole_dbus::BUS_NAME
            ),
        })?;
    tracing::info!(
        state_dir = %config.state_dir.display(),
        relay = %relay.describe(),
        "serving {} on the {bus_kind} bus",
        postecole_dbus::BUS_NAME,
    );

    tokio::spawn(bus::forward_account_events(
        connection.clone(),
        account_events,
        authority.clone(),
    ));
    tokio::spawn(bus::forward_message_events(
        connection.clone(),
        message_events,
    ));
    // Delivery starts once the bus is up, so that the first signals reach their listeners.
    let (stop_delivery, stop) = tokio::sync::watch::channel(false);
    let delivery = tokio::spawn(queue::delivery::run(queue.clone(), relay.clone(), stop));
    tokio::spawn(queue.clone().prune_now_and_then());

    tokio::spawn(snapshot_periodically(store.clone()));
    let state_dir = config.state_dir.clone();
    tokio::task::spawn_blocking(move || ballast::keep(&state_dir));

    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
        _ = int.recv() => tracing::info!("SIGINT received, stopping"),
    }
    // What the relay accepts of the messages being sent is recorded, not sent again after the
    // restart; an answer that does not come in time is, as after a crash (and one coming later
    // still is recorded in the store alone, after the snapshot).
    stop_delivery.send_replace(true);
    if tokio::time::timeout(STOP_DELIVERY_WITHIN, delivery)
        .await
        .is_err()
    {
        tracing::warn!("delivery outcomes not all recorded in time: those messages go again");
    }
    // The name is released only now, so that followers, who listen to signals from it, hear
    // those outcomes; a call in the meantime is answered (a message sent waits for the restart).
    // The signal forwarders keep the connection itself open until the process ends.
    if let Err(e) = connection.release_name(postecole_dbus::BUS_NAME).await {
        tracing::warn!(error = %e, "cannot release the bus name");
    }
    drop(connection);
    store.flush().map_err(|e| e.to_string())?;
    take_snapshot(store, false).await;
    Ok(())
}

/// Well within systemd's stop time-out (90 s), and long enough for one group's syncs.
const STOP_DELIVERY_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the store is exported when it changed: what a damaged store can lose.
const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_secs(10 * 60);

async fn snapshot_periodically(store: store::Store) {
    let mut tick = tokio::time::interval(SNAPSHOT_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        take_snapshot(store.clone(), true).await;
    }
}

/// A failed snapshot is logged, not fatal: the store itself is intact.
async fn take_snapshot(store: store::Store, only_if_changed: bool) {
    let now = clock::system()();
    match tokio::task::spawn_blocking(move || store.snapshot(now, only_if_changed)).await {
        Ok(Ok(Some(path))) => tracing::info!(snapshot = %path.display(), "store snapshot taken"),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot take a snapshot of the store"),
        Err(e) => tracing::error!(error = %e, "cannot take a snapshot of the store"),
    }
}

/// Every account's archive directory keeps what its recovery file unwraps (written when its
/// secret is set; here for archives made before that). An archive whose account the store
/// does not know (lost with a damaged store) is named, with how it can still be read.
fn check_archive_keys(store: &store::Store, archive: &archive::Archive) {
    let accounts = match store.accounts() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the accounts");
            return;
        }
    };
    for account in &accounts {
        if let Some(keys) = &account.keys
            && !archive.has_key(&account.id)
            && let Err(e) = archive.write_key(&keys.key_file(&account.id, &account.address))
        {
            tracing::error!(account = %account.id, error = %e, "cannot write the archive key");
        }
    }
    for key in archive.key_files() {
        if !accounts.iter().any(|a| a.id == key.account) && !archive.is_retired(&key.account) {
            tracing::error!(
                account = %key.account,
                address = %key.address,
                "account LOST from the store: its archive of sent mail stays readable with its \
                 recovery file: mailctl archive open --dir <state>/archive/{} --key cleRecuperation.crbee",
                key.account
            );
        }
    }
}
