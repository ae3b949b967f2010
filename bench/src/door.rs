//! The sendmail door against Postfix's `sendmail -t`, one process per message as scripts and
//! cron jobs run them: what is timed is each process from start to exit (start-up, reading
//! the message, the bus connection and the durable `Send` for the door; `postdrop` into the
//! maildrop for Postfix), while each mailer delivers to the same sink behind.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postecole_tests::{Bus, bin};

use crate::peers::{self, Receiver};

/// `n` processes of `command`, each given `message` on standard input; messages a second.
fn per_process(n: usize, message: &[u8], mut command: impl FnMut() -> Command) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        let mut child = command()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn a sender");
        child.stdin.take().unwrap().write_all(message).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "a sender failed: {status}");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

pub fn door(work: &Path, sink: &peers::Sink, n: usize, put: &mut impl FnMut(&'static str, String)) {
    let bus = Bus::start();
    let (_daemon, account) = super::prepared(&bus, &super::plain_relay(sink.port), "", 1);
    postecole_tests::mailctl(&bus, None, &["account", "default", &account], None).out();
    let eml = super::eml();
    let base = sink.count();
    let door = bin("postecole-sendmail");
    let rate = per_process(n, &eml, || {
        let mut c = Command::new(&door);
        c.args(["-t", "-i"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address);
        c
    });
    sink.wait_for(base + n, Duration::from_secs(600));

    // What a script had before the door: `mailctl send` per message.
    let body = work.join("door-body.txt");
    std::fs::write(&body, super::body(0)).unwrap();
    let mailctl = bin("mailctl");
    let base = sink.count();
    let ctl = per_process(n, b"", || {
        let mut c = Command::new(&mailctl);
        c.args(["send", "--account", &account, "--to", "famille@example.org"])
            .args(["--subject", "Bilan du trimestre", "--body-file"])
            .arg(&body)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address);
        c
    });
    sink.wait_for(base + n, Duration::from_secs(600));

    let postfix = peers::Postfix::new(&work.join("postfix-door"), sink.port);
    postfix.start();
    let base = sink.count();
    let start = Instant::now();
    postfix.inject(&eml, n);
    let postfix_rate = n as f64 / start.elapsed().as_secs_f64();
    sink.wait_for(base + n, Duration::from_secs(600));
    postfix.stop();

    put("door_messages", n.to_string());
    put("door_msgs_per_s", format!("{rate:.0}"));
    put("mailctl_send_msgs_per_s", format!("{ctl:.0}"));
    put("postfix_sendmail_msgs_per_s", format!("{postfix_rate:.0}"));
    put(
        "ratio_door_vs_postfix_sendmail",
        format!("{:.1}", rate / postfix_rate),
    );
}
