//! An honest user's call latency, and the daemon's peak memory, while a hostile local user
//! runs the attacks a shared PC must withstand: descriptors nobody writes (pipes as key files),
//! wrong answers in parallel, and large sends in parallel.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use postecole_tests::{Bus, Daemon, USER_BOB, active_account, ensure_users, mailctl};

/// `(honest p99 in ms, peak RSS in MiB)` over `length` of attack.
pub fn under_attack(runtime: &tokio::runtime::Runtime, length: Duration) -> (f64, f64) {
    ensure_users();
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, "");
    let hostile = active_account(
        &bus,
        &daemon,
        None,
        Some(USER_BOB),
        "personal",
        "b@ecole.fr",
    );
    let work = postecole_tests::shared_tempdir();
    let big = work.path().join("gros.pdf");
    std::fs::write(&big, vec![b'%'; 18 * 1024 * 1024]).unwrap();
    let big = big.to_str().unwrap().to_owned();
    let pipe_caller = postecole_tests::workspace_root().join("tests/support/pipe_caller.py");

    let stop = AtomicBool::new(false);
    let latencies = std::thread::scope(|s| {
        let looping = |attack| repeat(s, &stop, attack);
        // 1. Pipes passed as the recovery file, two callers at a time.
        for _ in 0..2 {
            let (bus, pipe_caller) = (&bus, &pipe_caller);
            looping(Box::new(move || {
                let _ = Command::new("runuser")
                    .args(["-u", USER_BOB, "--", "/usr/bin/python3"])
                    .arg(pipe_caller)
                    .args([
                        "org.postecole.Mail1.Archive",
                        "ListArchive",
                        r#"["x", "", ["@never-written"]]"#,
                    ])
                    .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
                    .stderr(Stdio::null())
                    .status();
            }));
        }
        // 4. Wrong answers, four at a time.
        for _ in 0..4 {
            let (bus, hostile) = (&bus, &hostile);
            looping(Box::new(move || {
                mailctl(
                    bus,
                    Some(USER_BOB),
                    &["archive", "list", hostile],
                    Some("pas la bonne réponse\n"),
                );
            }));
        }
        // 5. 18 MB sends, four at a time, until the quota refuses them.
        for _ in 0..4 {
            let (bus, hostile, big) = (&bus, &hostile, &big);
            looping(Box::new(move || {
                mailctl(
                    bus,
                    Some(USER_BOB),
                    &[
                        "send",
                        "--account",
                        hostile,
                        "--to",
                        "victime@example.org",
                        "--subject",
                        "Gros",
                        "--body",
                        "x",
                        "--attach",
                        big,
                    ],
                    None,
                );
            }));
        }
        // The honest user, meanwhile: one call every 20 ms.
        let latencies = runtime.block_on(async {
            let conn = bus.connect().await;
            let accounts = postecole_dbus::AccountsProxy::new(&conn).await.unwrap();
            let mut latencies = Vec::new();
            let end = Instant::now() + length;
            while Instant::now() < end {
                let t = Instant::now();
                accounts.list_accounts().await.unwrap();
                latencies.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            latencies
        });
        stop.store(true, Ordering::Relaxed);
        latencies
    });
    let mut latencies = latencies;
    latencies.sort();
    let p99 = super::percentile(&latencies, 0.99);
    (p99, peak_rss_mib(daemon.pid().unwrap()))
}

type Attack<'a> = Box<dyn Fn() + Send + 'a>;

/// Runs `attack` again and again on its own thread until `stop`.
fn repeat<'scope, 'env>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    stop: &'env AtomicBool,
    attack: Attack<'env>,
) {
    s.spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            attack();
        }
    });
}

/// VmHWM: the most the process ever held resident.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .expect("VmHWM in /proc/PID/status")
}
