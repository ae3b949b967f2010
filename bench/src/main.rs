//! Prints `key: value` figures for postecoled: durable enqueue (single `Send` and `SendBatch`,
//! relay down) and delivery to a local SMTP sink. A measurement, not a test: see `bench/run`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use postecole_tests::{Bus, Daemon, active_account};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn message(n: usize) -> postecole_dbus::OutgoingMessage {
    postecole_dbus::OutgoingMessage {
        to: Some(vec![format!("famille{n}@example.org")]),
        subject: Some(format!("Identifiants ENT — famille {n}")),
        text: Some(format!(
            "Bonjour,\n\nVoici vos identifiants : famille{n} / mot de passe provisoire {n:08}.\n"
        )),
        ..Default::default()
    }
}

/// The smallest SMTP server that accepts everything and counts messages; it must not be the
/// bottleneck of what it measures.
async fn sink(count: Arc<AtomicUsize>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            stream.set_nodelay(true).ok();
            let count = count.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 sink ESMTP\r\n").await.ok();
                let mut line = String::new();
                let mut data = false;
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if data {
                        if line == ".\r\n" {
                            data = false;
                            count.fetch_add(1, Ordering::SeqCst);
                            w.write_all(b"250 2.0.0 queued\r\n").await.ok();
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            data = true;
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            w.write_all(b"221 bye\r\n").await.ok();
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    w.write_all(reply).await.ok();
                }
            });
        }
    });
    port
}

/// `n` messages in `SendBatch` calls of 100.
async fn send_batches(outbox: &postecole_dbus::OutboxProxy<'_>, account: &str, n: usize) {
    let mut sent = 0;
    while sent < n {
        let batch: Vec<_> = (sent..(sent + 100).min(n))
            .map(|i| (message(i), vec![]))
            .collect();
        sent += batch.len();
        outbox.send_batch(account, batch).await.unwrap();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// A daemon with one active account, set up through the embedded relay, then restarted on
/// the same state with the relay at `relay_port`.
fn prepared(bus: &Bus, relay_port: u16, backoff: u64) -> (Daemon, String) {
    let mut daemon = Daemon::start(bus, "");
    let account = active_account(bus, &daemon, None, None, "personal", "bench@ecole.fr");
    daemon.stop();
    std::fs::write(
        &daemon.config_path,
        format!(
            "state_dir = \"{}\"\n[relay]\nhost = \"127.0.0.1\"\nport = {relay_port}\ntls = \"none\"\n\
             [queue]\nmin_backoff_secs = {backoff}\nmax_backoff_secs = {backoff}\n",
            daemon.state_dir.display()
        ),
    )
    .unwrap();
    daemon.restart();
    (daemon, account)
}

fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let port = runtime.block_on(sink(count.clone()));

    // Enqueue is measured with the relay down: a port nobody listens on, retries far away.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bus = Bus::start();
    let (daemon, account) = prepared(&bus, closed, 3600);
    let (single, batched) = runtime.block_on(async {
        let conn = bus.connect().await;
        let outbox = postecole_dbus::OutboxProxy::new(&conn).await.unwrap();
        let singles = n.min(500);
        let mut latencies = Vec::with_capacity(singles);
        let start = Instant::now();
        for i in 0..singles {
            let t = Instant::now();
            outbox.send(&account, message(i), vec![]).await.unwrap();
            latencies.push(t.elapsed());
        }
        let single_rate = singles as f64 / start.elapsed().as_secs_f64();
        latencies.sort();
        let start = Instant::now();
        send_batches(&outbox, &account, n).await;
        let batch_rate = n as f64 / start.elapsed().as_secs_f64();
        (
            (
                single_rate,
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.99),
            ),
            batch_rate,
        )
    });
    drop(daemon);

    // Delivery: a fresh state pointed at the sink, first submit to last accepted.
    let bus = Bus::start();
    let (_daemon, account) = prepared(&bus, port, 1);
    let delivery_rate = runtime.block_on(async {
        let base = count.load(Ordering::SeqCst);
        let conn = bus.connect().await;
        let outbox = postecole_dbus::OutboxProxy::new(&conn).await.unwrap();
        let start = Instant::now();
        send_batches(&outbox, &account, n).await;
        while count.load(Ordering::SeqCst) < base + n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        n as f64 / start.elapsed().as_secs_f64()
    });

    // Mail-merge: a CSV of families, each with its own 200 KB PDF, to all delivered.
    let families = n;
    let bus = Bus::start();
    let (_daemon, account) = prepared(&bus, port, 1);
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
    let out = postecole_tests::mailctl(
        &bus,
        None,
        &[
            "merge",
            "--account",
            &account,
            "--template",
            "bilan",
            "--csv",
            csv_path.to_str().unwrap(),
            "--attach-column",
            "fichier",
            "--json",
        ],
        None,
    );
    let merge_secs = start.elapsed().as_secs_f64();
    assert!(out.ok, "merge failed: {}", out.stderr);

    println!("messages: {n}");
    println!("enqueue_single_msgs_per_s: {:.0}", single.0);
    println!("send_p50_ms: {:.2}", single.1);
    println!("send_p99_ms: {:.2}", single.2);
    println!("enqueue_batch_msgs_per_s: {batched:.0}");
    println!("delivery_msgs_per_s: {delivery_rate:.0}");
    println!("merge_families: {families}");
    println!(
        "merge_200k_pdf_msgs_per_s: {:.0}",
        families as f64 / merge_secs
    );
}
