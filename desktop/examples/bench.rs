//! The desktop application's figures: time from launch to the accounts list shown, and the
//! window's resident memory once idle. Against the real daemon on a private bus, under Xvfb
//! with the software renderer a PC without GPU drivers uses.
//!
//!     cargo build --release -p postecoled -p mailctl -p postecole-desktop
//!     cargo run --release -p postecole-desktop --example bench
//!
//! A figure, not a test: it depends on the machine and its load.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postecole_tests::{Bus, Daemon, Xvfb, active_account, bin};

const LAUNCHES: usize = 7;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

fn main() {
    // Before anything is started that a missing binary would leave running.
    let app = bin("postecole-mail");
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, "");
    for (kind, address) in [
        ("establishment", "secretariat@ecole.fr"),
        ("personal", "martin@ecole.fr"),
    ] {
        active_account(&bus, &daemon, None, None, kind, address);
    }
    let x = Xvfb::start();
    // One session bus for every launch: GApplication registers its id there.
    let mut session = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("dbus-daemon");
    let mut session_address = String::new();
    BufReader::new(session.stdout.take().unwrap())
        .read_line(&mut session_address)
        .unwrap();

    let mut launches = Vec::new();
    let mut rss = Vec::new();
    for i in 0..LAUNCHES {
        let start = Instant::now();
        let mut child = Command::new(&app)
            .env("DISPLAY", &x.display)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .env("DBUS_SESSION_BUS_ADDRESS", session_address.trim())
            .env("GDK_DEBUG", "gl-disable")
            .env("LANG", "fr_FR.UTF-8")
            .env("POSTECOLE_REPORT_READY", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the desktop binary");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "accounts-shown",
            "the window never showed its list"
        );
        launches.push(start.elapsed());
        if i == LAUNCHES - 1 {
            // Idle: the list shown, nothing moving but the cursor's blink.
            std::thread::sleep(Duration::from_secs(5));
            rss.push(rss_kib(child.id()));
        }
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let _ = child.wait();
    }
    let _ = session.kill();
    let _ = session.wait();
    launches.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "launch to accounts list shown: median {:.0} ms (min {:.0}, max {:.0}) over {LAUNCHES} launches; the first, cold, included",
        ms(launches[LAUNCHES / 2]),
        ms(launches[0]),
        ms(launches[LAUNCHES - 1])
    );
    println!("idle window RSS: {:.1} MiB", rss[0] as f64 / 1024.0);
}
