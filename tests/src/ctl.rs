//! `mailctl` as the tests run it: as root or as a test user, and the scenarios built on it
//! (an account set up, a message waited for, a merge).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Bus, Daemon, Smtp, api, bin, shared_bin};

/// The code of the newest verification mail for account `id` among `mails`.
pub fn code_in(mails: &[String], id: &str) -> Option<String> {
    let needle = format!("mailctl account verify {id} ");
    mails.iter().rev().find_map(|m| {
        let start = m.find(&needle)? + needle.len();
        Some(m[start..start + 6].to_owned())
    })
}

/// Result of one `mailctl` run.
#[derive(Debug)]
pub struct Ctl {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Ctl {
    /// Asserts success and returns stdout without its final newline.
    #[track_caller]
    pub fn out(&self) -> String {
        assert!(self.ok, "mailctl failed: {}", self.stderr);
        self.stdout.trim_end().to_owned()
    }

    /// Asserts failure with this D-Bus error name and returns stderr.
    #[track_caller]
    pub fn err(&self, name: &str) -> String {
        assert!(
            !self.ok,
            "mailctl should have failed; stdout: {}",
            self.stdout
        );
        assert!(
            self.stderr
                .contains(&format!("[{}.{name}]", api::ERROR_PREFIX)),
            "expected {name}, got: {}",
            self.stderr
        );
        self.stderr.clone()
    }
}

/// Runs `mailctl` against the test bus, as `user` (through runuser) or as the test's own user.
pub fn mailctl(bus: &Bus, user: Option<&str>, args: &[&str], stdin: Option<&str>) -> Ctl {
    let cmd = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(shared_mailctl());
            c
        }
        None => Command::new(bin("mailctl")),
    };
    run(bus, cmd, args, stdin)
}

/// Runs `mailctl` as the test's own user, killed after `limit`: for a command that could
/// hang, so that its test fails instead.
fn mailctl_within(bus: &Bus, args: &[&str], limit: std::time::Duration) -> Ctl {
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", &limit.as_secs().to_string()])
        .arg(bin("mailctl"));
    run(bus, cmd, args, None)
}

fn run(bus: &Bus, mut cmd: Command, args: &[&str], stdin: Option<&str>) -> Ctl {
    cmd.args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run mailctl");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    Ctl {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn shared_mailctl() -> PathBuf {
    shared_bin("mailctl")
}

/// `mailctl account create` as `user`.
pub fn create(bus: &Bus, user: Option<&str>, kind: &str, label: &str, address: &str) -> Ctl {
    mailctl(
        bus,
        user,
        &[
            "account",
            "create",
            "--kind",
            kind,
            "--label",
            label,
            "--address",
            address,
        ],
        None,
    )
}

/// The messages of `Daemon` as `mailctl queue list --json` shows them to `user`.
pub fn queue_json(bus: &Bus, user: Option<&str>) -> Vec<serde_json::Value> {
    let out = mailctl(bus, user, &["queue", "list", "--json"], None).out();
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until message `id` is in `state` (as root), returning its JSON.
pub fn wait_state(bus: &Bus, id: &str, state: &str, timeout: Duration) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let start = Instant::now();
    loop {
        let out = mailctl(bus, None, &["queue", "show", id, "--json"], None);
        if out.ok {
            last = serde_json::from_str(&out.stdout).unwrap();
            if last["state"] == state {
                return last;
            }
        }
        assert!(
            start.elapsed() < timeout,
            "message {id} never reached {state}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Types the code found in `mails` for account `id`, as `user`.
pub fn verify(bus: &Bus, user: Option<&str>, mails: &[String], id: &str) {
    let code = code_in(mails, id).expect("verification code");
    mailctl(bus, user, &["account", "verify", id, &code], None).out();
}

/// Sets up an active account as `user` through the embedded relay or `smtp`; returns its id.
pub fn active_account(
    bus: &Bus,
    daemon: &Daemon,
    smtp: Option<&Smtp>,
    user: Option<&str>,
    kind: &str,
    address: &str,
) -> String {
    let id = create(bus, user, kind, "Secrétariat", address).out();
    let mails = match smtp {
        Some(s) => s.messages(),
        None => daemon.local_mail(),
    };
    verify(bus, user, &mails, &id);
    mailctl(
        bus,
        user,
        &["account", "secure", &id, "--question", "Question ?"],
        Some("une réponse solide\n"),
    )
    .out();
    id
}

/// `mailctl send` from `account` to each of `to`, with `subject` and `body`, as the test's
/// own user: the new message's id.
pub fn send_mail(bus: &Bus, account: &str, to: &[&str], subject: &str, body: &str) -> String {
    let mut args = vec!["send", "--account", account];
    for a in to {
        args.extend(["--to", a]);
    }
    args.extend(["--subject", subject, "--body", body]);
    mailctl(bus, None, &args, None).out()
}

/// A private bus, a daemon relaying to `smtp` (with `extra_config` after the relay section),
/// and an active account of `kind` at `address`.
pub fn relayed_account(
    smtp: &Smtp,
    extra_config: &str,
    kind: &str,
    address: &str,
) -> (Bus, Daemon, String) {
    relayed_account_as(smtp, extra_config, None, kind, address)
}

/// A private bus, a daemon without a relay (mail lands in its local files), and an active
/// account of `kind` at `address`.
pub fn local_account(kind: &str, address: &str) -> (Bus, Daemon, String) {
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, "");
    let account = active_account(&bus, &daemon, None, None, kind, address);
    (bus, daemon, account)
}

/// As `relayed_account`, the account set up by `user` (the test's own user when `None`).
pub fn relayed_account_as(
    smtp: &Smtp,
    extra_config: &str,
    user: Option<&str>,
    kind: &str,
    address: &str,
) -> (Bus, Daemon, String) {
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, &format!("{}{extra_config}", smtp.relay_config()));
    let account = active_account(&bus, &daemon, Some(smtp), user, kind, address);
    (bus, daemon, account)
}

/// `mailctl merge` of `csv` into `template` for `account`, then any further arguments.
pub fn merge(bus: &Bus, account: &str, template: &str, csv: &Path, extra: &[&str]) -> Ctl {
    let mut args = vec![
        "merge",
        "--account",
        account,
        "--template",
        template,
        "--csv",
        csv.to_str().expect("a UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    // It follows its messages to the end: a follower held up fails its test, not CI.
    mailctl_within(bus, &args, std::time::Duration::from_secs(300))
}
