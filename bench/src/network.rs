//! Postfix and postecole against a relay a real network path away: a network namespace of the
//! bench's own, where every packet leaving loopback waits in `netdelay` for half the round trip.
//! postecoled, its dbus-daemon, Postfix, smtp-sink and the relays all run inside, so that every
//! SMTP hop pays the delay (D-Bus, over a Unix socket, does not: it is no network hop).

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postecole_tests::{Bus, bin};

use crate::peers::{self, Receiver};

/// Set in the environment of the bench re-run inside the namespace.
const INSIDE: &str = "BENCH_NETNS_INSIDE";

/// The path's round trip in ms (`BENCH_NET_MS`, 20 by default: a relay of the académie or
/// Microsoft 365 from a school) and the connections each mailer may open
/// (`BENCH_NET_CONNECTIONS`, 4 by default: Microsoft allows 3 a mailbox, postecole's default is 4).
pub struct Path {
    pub rtt_ms: u32,
    pub connections: usize,
}

impl Path {
    pub fn from_env() -> Path {
        let var = |name: &str, default| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Path {
            rtt_ms: var("BENCH_NET_MS", 20) as u32,
            connections: var("BENCH_NET_CONNECTIONS", 4),
        }
    }

    /// Messages a second when every message costs `round_trips` and nothing else does.
    fn limit(&self, round_trips: f64) -> f64 {
        self.connections as f64 * 1000.0 / self.rtt_ms as f64 / round_trips
    }

    /// Round trips a message took, from a rate over all the connections.
    fn round_trips(&self, rate: f64) -> f64 {
        self.connections as f64 * 1000.0 / self.rtt_ms as f64 / rate
    }
}

pub fn inside() -> bool {
    std::env::var_os(INSIDE).is_some()
}

/// Runs the network part in a new network namespace (this same program, re-run under
/// `unshare --net`); its figures go straight to standard output.
pub fn run() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "network: skipped, it needs root (a network namespace of its own and an NFQUEUE rule)"
        );
        return;
    }
    let status = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .env(INSIDE, "1")
        .status()
        .expect("unshare (util-linux)");
    assert!(status.success(), "the network part failed: {status}");
}

/// Loopback up, `netdelay` holding every packet that leaves it: the namespace's network path.
struct Delay {
    child: Child,
}

impl Delay {
    fn start(rtt_ms: u32) -> Delay {
        checked(Command::new("ip").args(["link", "set", "lo", "up"]));
        // Real-time priority where it may be had: on two busy cores an ordinary process holds
        // packets for as long as the scheduler keeps it waiting, on top of the delay asked for.
        // The round trip is measured and checked either way.
        let realtime = Command::new("chrt")
            .args(["--fifo", "10", "true"])
            .status()
            .is_ok_and(|s| s.success());
        if !realtime {
            eprintln!("network: netdelay runs without real-time priority (chrt --fifo refused)");
        }
        let mut command = if realtime {
            let mut c = Command::new("chrt");
            c.args(["--fifo", "10"]).arg(bin("netdelay"));
            c
        } else {
            Command::new(bin("netdelay"))
        };
        let mut child = command
            .args(["0", &format!("{}", rtt_ms as f64 / 2.0)])
            .stdout(Stdio::piped())
            .spawn()
            .expect("netdelay");
        let mut ready = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "netdelay did not start");
        // Bound first, queued after: a packet queued to nobody is dropped.
        checked(Command::new("iptables").args([
            "-A",
            "OUTPUT",
            "-o",
            "lo",
            "-j",
            "NFQUEUE",
            "--queue-num",
            "0",
        ]));
        Delay { child }
    }
}

impl Drop for Delay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn checked(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(status.success(), "{command:?}: {status}");
}

/// The round trip as TCP sees it: the median time of a connect (SYN out, SYN-ACK back).
fn measured_rtt_ms() -> f64 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut times: Vec<f64> = (0..11)
        .map(|_| {
            let start = Instant::now();
            let stream = std::net::TcpStream::connect(address).unwrap();
            let elapsed = start.elapsed().as_secs_f64() * 1000.0;
            drop(stream);
            drop(listener.accept().unwrap());
            elapsed
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Postfix's drain to `port`: the queue filled while Postfix is stopped, then Postfix started,
/// to the last message accepted. Returns (msgs/s, connections opened).
fn postfix_drain(
    dir: &std::path::Path,
    path: &Path,
    port: u16,
    receiver: &dyn Receiver,
    n: usize,
) -> (f64, usize) {
    let c = path.connections;
    // As many connections as postecole has, each kept in Postfix's connection cache from one
    // message to the next.
    let postfix = peers::Postfix::with(
        dir,
        port,
        &format!(
            "default_destination_concurrency_limit = {c}\ninitial_destination_concurrency = {c}\n\
             smtp_connection_cache_destinations = [127.0.0.1]:{port}\n"
        ),
    );
    // Started once, so that its queue directory is complete before mail is dropped into it.
    postfix.start();
    postfix.stop();
    postfix.inject(&crate::eml(), n);
    let base = receiver.count();
    let start = Instant::now();
    postfix.start();
    receiver.wait_for(base + n, timeout(n));
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let (_, opened) = postfix.deliveries();
    (rate, opened)
}

fn timeout(n: usize) -> Duration {
    Duration::from_secs(120 + n as u64)
}

/// postecole's drain to `relay`: the queue filled while the relay cannot be reached, the
/// daemon restarted with the relay there, to the last message accepted.
pub fn postecole_drain(
    runtime: &tokio::runtime::Runtime,
    relay: &str,
    connections: usize,
    receiver: &dyn Receiver,
    n: usize,
) -> f64 {
    let bus = Bus::start();
    let queue = format!("concurrency = {connections}\n");
    let down = format!(
        "host = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        crate::closed_port()
    );
    let (mut daemon, account) = crate::prepared(&bus, &down, &queue, 3600);
    let deferred = runtime.block_on(async {
        let conn = bus.connect().await;
        let outbox = postecole_dbus::OutboxProxy::new(&conn).await.unwrap();
        let mut ids = Vec::new();
        for batch in crate::batches(n) {
            ids.extend(outbox.send_batch(&account, batch).await.unwrap());
        }
        // The first attempts found the relay down: those messages wait out a back-off, the
        // rest keep their place. The deferred ones are retried once the relay is there.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut deferred = Vec::new();
        for id in ids {
            if outbox.get_message(&id).await.unwrap().state == "deferred" {
                deferred.push(id);
            }
        }
        deferred
    });
    daemon.stop();
    crate::configure(&daemon, relay, &queue, 3600);
    let base = receiver.count();
    let start = Instant::now();
    daemon.restart();
    runtime.block_on(async {
        let conn = bus.connect().await;
        let outbox = postecole_dbus::OutboxProxy::new(&conn).await.unwrap();
        for id in deferred {
            outbox.retry(&id).await.unwrap();
        }
    });
    receiver.wait_for(base + n, timeout(n));
    n as f64 / start.elapsed().as_secs_f64()
}

/// The network part, inside the namespace.
pub fn measure(runtime: &tokio::runtime::Runtime, n: usize, put: &mut impl FnMut(&str, String)) {
    let path = Path::from_env();
    let work = tempfile::tempdir().unwrap();
    let _delay = Delay::start(path.rtt_ms);
    let net = format!("net{}", path.rtt_ms);
    let rtt = measured_rtt_ms();
    put(&format!("{net}_rtt_ms"), format!("{rtt:.1}"));
    assert!(
        rtt >= path.rtt_ms as f64 * 0.95 && rtt <= path.rtt_ms as f64 * 1.5,
        "the namespace's round trip is {rtt:.1} ms, not {} ms",
        path.rtt_ms
    );
    put(&format!("{net}_connections"), path.connections.to_string());
    put(&format!("{net}_messages"), n.to_string());
    put(
        &format!("{net}_rt_limit_pipelining_msgs_per_s"),
        format!("{:.0}", path.limit(2.0)),
    );
    put(
        &format!("{net}_rt_limit_chunking_msgs_per_s"),
        format!("{:.0}", path.limit(1.0)),
    );
    let sink = peers::Sink::start(work.path());
    let relay = peers::Relay::start(&work.path().join("relay"), None);
    // smtp-sink offers PIPELINING only: two round trips a message at best. The Postfix relay
    // offers CHUNKING too: one.
    for (suffix, port, receiver, best) in [
        ("", sink.port, &sink as &dyn Receiver, 2.0),
        ("_chunking", relay.port, &relay as &dyn Receiver, 1.0),
    ] {
        let mut put = |key: &str, value: String| put(&format!("{net}_{key}{suffix}"), value);
        let (postfix, opened) = postfix_drain(
            &work.path().join(format!("postfix{suffix}")),
            &path,
            port,
            receiver,
            n,
        );
        put("postfix_drain_msgs_per_s", format!("{postfix:.0}"));
        put("postfix_connections_opened", opened.to_string());
        put(
            "postfix_round_trips_per_msg",
            format!("{:.2}", path.round_trips(postfix)),
        );
        let relay = format!("host = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n");
        let ours = postecole_drain(runtime, &relay, path.connections, receiver, n);
        put("postecole_drain_msgs_per_s", format!("{ours:.0}"));
        put(
            "postecole_round_trips_per_msg",
            format!("{:.2}", path.round_trips(ours)),
        );
        put("ratio", format!("{:.2}", ours / postfix));
        put(
            "fraction_of_rt_limit",
            format!("{:.2}", ours / path.limit(best)),
        );
    }
}
