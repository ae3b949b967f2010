//! postecoled's figures next to Postfix and msmtp, on loopback, in one run; prints `key value`
//! lines. A measurement, not a test: see `bench/run` and BENCHMARKS.md.

mod attack;
mod door;
mod history;
mod network;
mod peers;

use std::time::{Duration, Instant};

use peers::Receiver;
use postecole_tests::{Bus, Daemon, active_account};

/// postecoled's default `queue.concurrency`: the sessions every peer gets here too.
const CONNECTIONS: usize = 4;

/// About 20 KB, as a report letter with its text and a little markup would be.
fn body(n: usize) -> String {
    let line =
        "Veuillez trouver ci-dessous le bilan détaillé de la période, matière par matière.\n";
    format!(
        "Bonjour famille {n},\n\n{}",
        line.repeat(20 * 1024 / line.len())
    )
}

fn message(n: usize) -> postecole_dbus::OutgoingMessage {
    postecole_dbus::OutgoingMessage {
        to: Some(vec![format!("famille{n}@example.org")]),
        subject: Some(format!("Bilan du trimestre — famille {n}")),
        text: Some(body(n)),
        ..Default::default()
    }
}

/// The same message as a file, for sendmail and msmtp.
fn eml() -> Vec<u8> {
    format!(
        "From: Secretariat <bench@ecole.fr>\nTo: famille@example.org\nSubject: Bilan du trimestre\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{}",
        body(0)
    )
    .into_bytes()
}

/// A daemon with one active account, set up through the embedded relay, then restarted on
/// the same state with `relay` as its `[relay]` section and `queue` in its `[queue]` section.
fn prepared(bus: &Bus, relay: &str, queue: &str, backoff: u64) -> (Daemon, String) {
    let mut daemon = Daemon::start(bus, "");
    let account = active_account(bus, &daemon, None, None, "personal", "bench@ecole.fr");
    daemon.stop();
    configure(&daemon, relay, queue, backoff);
    daemon.restart();
    (daemon, account)
}

/// Rewrites the configuration of a stopped daemon.
fn configure(daemon: &Daemon, relay: &str, queue: &str, backoff: u64) {
    std::fs::write(
        &daemon.config_path,
        format!(
            "state_dir = \"{}\"\n[relay]\n{relay}[queue]\n{queue}min_backoff_secs = {backoff}\nmax_backoff_secs = {backoff}\n",
            daemon.state_dir.display()
        ),
    )
    .unwrap();
}

/// The `[relay]` section of a relay on loopback without TLS.
fn plain_relay(port: u16) -> String {
    format!("host = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n")
}

/// `n` messages, in `SendBatch` calls of 100.
type Batch = Vec<(
    postecole_dbus::OutgoingMessage,
    Vec<postecole_dbus::Attachment>,
)>;

/// The calls' arguments, built before the clock starts: writing the letters is the client's
/// work, not the daemon's.
fn batches(n: usize) -> Vec<Batch> {
    (0..n)
        .step_by(100)
        .map(|first| {
            (first..(first + 100).min(n))
                .map(|i| (message(i), vec![]))
                .collect()
        })
        .collect()
}

async fn send_batches(
    outbox: &postecole_dbus::OutboxProxy<'_>,
    account: &str,
    batches: Vec<Batch>,
) {
    for batch in batches {
        outbox.send_batch(account, batch).await.unwrap();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// SendBatch over D-Bus to a daemon relaying as `relay` says, first submit to last message
/// accepted by `receiver`.
fn delivery(
    runtime: &tokio::runtime::Runtime,
    relay: &str,
    receiver: &dyn Receiver,
    n: usize,
) -> f64 {
    let bus = Bus::start();
    let (_daemon, account) = prepared(&bus, relay, "", 1);
    let base = receiver.count();
    runtime.block_on(async {
        let conn = bus.connect().await;
        let outbox = postecole_dbus::OutboxProxy::new(&conn).await.unwrap();
        let batches = batches(n);
        let start = Instant::now();
        send_batches(&outbox, &account, batches).await;
        while receiver.count() < base + n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        n as f64 / start.elapsed().as_secs_f64()
    })
}

/// The same delivery over implicit TLS (as on port 465) and over STARTTLS, to one Postfix relay
/// on loopback with a certificate of a throwaway CA.
fn tls(
    runtime: &tokio::runtime::Runtime,
    work: &std::path::Path,
    n: usize,
    put: &mut impl FnMut(&str, String),
) {
    let ca = postecole_tests::TestCa::new();
    let relay = peers::Relay::start(&work.join("tls-relay"), Some((&ca.cert(), &ca.key())));
    let section = |port: u16, mode: &str| {
        format!(
            "host = \"127.0.0.1\"\nport = {port}\ntls = \"{mode}\"\nca_file = \"{}\"\n",
            ca.ca().display()
        )
    };
    let starttls = delivery(runtime, &section(relay.port, "starttls"), &relay, n);
    put("starttls_msgs_per_s", format!("{starttls:.0}"));
    let implicit = delivery(runtime, &section(relay.tls_port.unwrap(), "tls"), &relay, n);
    put("tls465_msgs_per_s", format!("{implicit:.0}"));
    put("tls465_vs_starttls", format!("{:.2}", implicit / starttls));
}

/// Postfix null client: sendmail per message while it delivers, then a filled queue drained.
fn postfix(work: &std::path::Path, sink: &peers::Sink, eml: &[u8], n: usize) -> (f64, f64) {
    let postfix = peers::Postfix::new(&work.join("postfix"), sink.port);
    postfix.start();
    let base = sink.count();
    let start = Instant::now();
    postfix.inject(eml, n);
    sink.wait_for(base + n, Duration::from_secs(1800));
    let rate = n as f64 / start.elapsed().as_secs_f64();
    postfix.stop();
    postfix.inject(eml, n);
    let base = sink.count();
    let start = Instant::now();
    postfix.start();
    sink.wait_for(base + n, Duration::from_secs(1800));
    let drain = n as f64 / start.elapsed().as_secs_f64();
    let _ = postfix.queue_dir();
    (rate, drain)
}

/// Enqueue with the relay down, and memory.
fn enqueue(runtime: &tokio::runtime::Runtime, n: usize, put: &mut impl FnMut(&str, String)) {
    let bus = Bus::start();
    let (daemon, account) = prepared(&bus, &plain_relay(closed_port()), "", 3600);
    std::thread::sleep(Duration::from_millis(500));
    put(
        "idle_rss_mib",
        format!("{:.1}", peers::rss_mib(daemon.pid().unwrap())),
    );
    let (single, p50, p99, batched, call_p50) = runtime.block_on(async {
        let conn = bus.connect().await;
        let outbox = postecole_dbus::OutboxProxy::new(&conn).await.unwrap();
        // A call that only resolves the caller and reads the store: the floor under Send.
        let accounts = postecole_dbus::AccountsProxy::new(&conn).await.unwrap();
        let mut calls = Vec::with_capacity(200);
        for _ in 0..200 {
            let t = Instant::now();
            accounts.get_default_account().await.unwrap();
            calls.push(t.elapsed());
        }
        calls.sort();
        let call_p50 = percentile(&calls, 0.5);
        let singles = n.min(500);
        let mut latencies = Vec::with_capacity(singles);
        let start = Instant::now();
        for i in 0..singles {
            let m = message(i);
            let t = Instant::now();
            outbox.send(&account, m, vec![]).await.unwrap();
            latencies.push(t.elapsed());
        }
        let single = singles as f64 / start.elapsed().as_secs_f64();
        latencies.sort();
        let batches = batches(n);
        let start = Instant::now();
        send_batches(&outbox, &account, batches).await;
        let batched = n as f64 / start.elapsed().as_secs_f64();
        // Top up to 10,000 waiting messages for the memory figure.
        let queued = singles + n;
        if queued < 10_000 {
            send_batches(&outbox, &account, self::batches(10_000 - queued)).await;
        }
        (
            single,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            batched,
            call_p50,
        )
    });
    put("enqueue_single_msgs_per_s", format!("{single:.0}"));
    put("enqueue_batch_msgs_per_s", format!("{batched:.0}"));
    put("send_p50_ms", format!("{p50:.2}"));
    put("send_p99_ms", format!("{p99:.2}"));
    put("call_p50_ms", format!("{call_p50:.2}"));
    put(
        "rss_10k_queued_mib",
        format!("{:.1}", peers::rss_mib(daemon.pid().unwrap())),
    );
    std::fs::write("/tmp/daemon.log", daemon.log()).unwrap();
}

/// Mail-merge: a CSV of families, each with its own 200 KB PDF, to all delivered.
fn merge(sink: &peers::Sink, families: usize, put: &mut impl FnMut(&str, String)) {
    let bus = Bus::start();
    let (_daemon, account) = prepared(&bus, &plain_relay(sink.port), "", 1);
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("eleve;periode;email;fichier\n");
    let pdf: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    for f in 0..families {
        csv.push_str(&format!(
            "Élève {f};du 1er trimestre;famille{f}@example.org;bilan-{f}.pdf\n"
        ));
        std::fs::write(dir.path().join(format!("bilan-{f}.pdf")), &pdf).unwrap();
    }
    let csv_path = dir.path().join("familles.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let start = Instant::now();
    let out = postecole_tests::merge(
        &bus,
        &account,
        "bilan",
        &csv_path,
        &["--attach-column", "fichier", "--json"],
    );
    assert!(out.ok, "merge failed: {}", out.stderr);
    put("merge_families", families.to_string());
    put(
        "merge_200k_pdf_msgs_per_s",
        format!("{:.0}", families as f64 / start.elapsed().as_secs_f64()),
    );
}

fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    // BENCH_ONLY=delivery (or peers, enqueue, history, merge, attack, network, tls, door;
    // comma-separated) runs only those parts, e.g. under a profiler.
    let only = std::env::var("BENCH_ONLY").ok();
    let part = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|p| p == name))
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut put = |key: &str, value: String| println!("{key} {value}");
    if network::inside() {
        // The network part, re-run in its own namespace by `network::run`.
        network::measure(&runtime, n.min(1000), &mut put);
        return;
    }
    let work = tempfile::tempdir().unwrap();
    put("messages", n.to_string());

    let sink = peers::Sink::start(work.path());
    let postecole = part("delivery").then(|| delivery(&runtime, &plain_relay(sink.port), &sink, n));
    if let Some(rate) = postecole {
        put("postecole_msgs_per_s", format!("{rate:.0}"));
    }
    if part("peers") {
        let ceiling = peers::smtp_source(sink.port, n, 20 * 1024, CONNECTIONS);
        put("sink_ceiling_msgs_per_s", format!("{ceiling:.0}"));
        let eml = eml();
        let (rate, drain) = postfix(work.path(), &sink, &eml, n);
        put("postfix_msgs_per_s", format!("{rate:.0}"));
        put("postfix_drain_msgs_per_s", format!("{drain:.0}"));
        // One process per message: ~20 a second, so fewer of them.
        let msmtp = peers::msmtp(sink.port, &eml, n.min(300));
        put("msmtp_msgs_per_s", format!("{msmtp:.0}"));
        if let Some(ours) = postecole {
            put("ratio_vs_postfix", format!("{:.1}", ours / rate));
            put("ratio_vs_postfix_drain", format!("{:.1}", ours / drain));
            put("ratio_vs_msmtp", format!("{:.1}", ours / msmtp));
            put("fraction_of_ceiling", format!("{:.2}", ours / ceiling));
        }
    }
    if part("network") {
        network::run();
    }
    if part("tls") {
        tls(&runtime, work.path(), n.min(1000), &mut put);
    }
    if part("enqueue") {
        enqueue(&runtime, n, &mut put);
    }
    if part("history") {
        // A year of a school's mail is well under 100,000 records.
        history::run(&runtime, (n * 20).clamp(1000, 100_000), &mut put);
    }
    if part("merge") {
        merge(&sink, (n / 5).max(10), &mut put);
    }
    if part("door") {
        door::door(work.path(), &sink, n.min(1000), &mut put);
    }
    if part("attack") {
        // Twenty seconds of attack for a real run; a smoke run only checks that it works.
        let length = Duration::from_secs(if n >= 1000 { 20 } else { 3 });
        let (p99, peak) = attack::under_attack(&runtime, length);
        put("honest_p99_ms_under_attack", format!("{p99:.1}"));
        put("peak_rss_mib_under_attack", format!("{peak:.1}"));
    }
}
