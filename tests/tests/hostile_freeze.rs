//! A hostile local user tries to freeze the daemon for everyone else: descriptors nobody will
//! ever write or read, passed with `busctl` (a client nobody here wrote), and many wrong
//! answers at once. Each attempt is refused at once and the honest user is served meanwhile.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postecole_tests::{Bus, Daemon, USER_ALICE, USER_BOB, active_account, ensure_users, mailctl};

/// Calls `method` as `user` through `tests/support/pipe_caller.py` (dbus-python, a client
/// nobody here wrote), with pipe ends for the arguments written "@never-written" or
/// "@never-read". Returns (success, stderr, time taken).
fn pipe_call_as(
    bus: &Bus,
    user: &str,
    interface: &str,
    method: &str,
    args: serde_json::Value,
) -> (bool, String, Duration) {
    let script = postecole_tests::workspace_root().join("tests/support/pipe_caller.py");
    let start = Instant::now();
    let out = Command::new("runuser")
        .args(["-u", user, "--", "/usr/bin/python3"])
        .arg(script)
        .args([interface, method, &args.to_string()])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .stdin(Stdio::null())
        .output()
        .expect("runuser python3 pipe_caller.py");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

/// The honest user's `account list` answers, and quickly, while `attack` runs beside it.
fn honest_user_is_served_during(bus: &Bus, attack: impl FnOnce() + Send) {
    std::thread::scope(|s| {
        let attacker = s.spawn(attack);
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        mailctl(bus, Some(USER_ALICE), &["account", "list"], None).out();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "account list took {:?} during the attack",
            start.elapsed()
        );
        attacker.join().unwrap();
    });
}

#[test]
fn pipes_as_key_files_exports_and_attachments_are_refused_at_once_and_block_nobody() {
    ensure_users();
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus, "");
    const ARCHIVE: &str = "org.postecole.Mail1.Archive";
    const OUTBOX: &str = "org.postecole.Mail1.Outbox";
    let calls = [
        (
            ARCHIVE,
            "ListArchive",
            serde_json::json!(["nosuch", "", ["@never-written"]]),
        ),
        (
            ARCHIVE,
            "Recover",
            serde_json::json!(["nosuch", "@never-written", "Q", "une réponse"]),
        ),
        (
            ARCHIVE,
            "ExportMbox",
            serde_json::json!(["nosuch", "une réponse", [], "@never-read"]),
        ),
        (
            OUTBOX,
            "Send",
            serde_json::json!([
                "nosuch",
                {"to": ["a@example.org"], "subject": "S"},
                [["bilan.pdf", "application/pdf", "@never-written"]]
            ]),
        ),
    ];
    honest_user_is_served_during(&bus, || {
        std::thread::scope(|s| {
            // Several at once, more than the daemon has workers.
            for (interface, method, args) in calls.iter().chain(calls.iter()) {
                let bus = &bus;
                s.spawn(move || {
                    let (ok, stderr, took) =
                        pipe_call_as(bus, USER_BOB, interface, method, args.clone());
                    assert!(!ok, "{method} was accepted");
                    assert!(
                        stderr.contains("InvalidInput") && stderr.contains("not a regular file"),
                        "{method}: {stderr}"
                    );
                    assert!(took < Duration::from_secs(5), "{method} took {took:?}");
                });
            }
        });
    });
}

/// Forty wrong answers at once from the owner's own session: five are checked, the rest are
/// refused unchecked; the lock is a minute, not a day; the daemon's memory stays small.
#[test]
fn forty_parallel_wrong_answers_check_five_and_lock_for_a_minute() {
    ensure_users();
    let smtp = postecole_tests::Smtp::start();
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, &smtp.relay_config());
    let account = active_account(
        &bus,
        &daemon,
        Some(&smtp),
        Some(USER_BOB),
        "personal",
        "bob@ecole.fr",
    );
    let results: Vec<String> = std::thread::scope(|s| {
        let tries: Vec<_> = (0..40)
            .map(|_| {
                let (bus, account) = (&bus, &account);
                s.spawn(move || {
                    let out = mailctl(
                        bus,
                        Some(USER_BOB),
                        &["archive", "list", account],
                        Some("pas la bonne réponse\n"),
                    );
                    assert!(!out.ok);
                    out.stderr
                })
            })
            .collect();
        tries.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let wrong = results.iter().filter(|e| e.contains("WrongCode")).count();
    let locked = results
        .iter()
        .filter(|e| e.contains("TooManyAttempts"))
        .count();
    assert_eq!((wrong, locked), (5, 35), "{results:#?}");
    let audit = mailctl(&bus, None, &["audit", "--json"], None).out();
    let audit: serde_json::Value = serde_json::from_str(&audit).unwrap();
    let locks: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "lock")
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(locks, ["60 s"], "{audit}");
    let peak = postecole_tests::limits::peak_rss_mib(daemon.pid().unwrap());
    eprintln!("daemon peak RSS: {peak} MiB");
    assert!(peak <= 256, "{peak} MiB");
}

/// Under polkit, a teacher's everyday calls ask polkit without user interaction (no password
/// dialog for `queue list`); only administrative methods may put one in front of someone.
#[test]
fn polkit_asks_interactively_only_for_administrative_methods() {
    use postecole_tests::{ACTION_ADMINISTER, MOCK_POLKIT_POLICY, MockPolkit, create};
    ensure_users();
    let bus = Bus::start_with_policy(MOCK_POLKIT_POLICY);
    let polkit = MockPolkit::start(&bus);
    let _daemon = Daemon::start(&bus, "authorization = \"polkit\"\n");
    polkit.allow(&bus, &[]);
    mailctl(&bus, Some(USER_ALICE), &["queue", "list"], None).out();
    mailctl(&bus, Some(USER_ALICE), &["account", "list"], None).out();
    let everyday = polkit.checks(&bus);
    assert!(!everyday.is_empty(), "polkit was never asked");
    assert!(
        everyday.iter().all(|(_, flags)| flags & 1 == 0),
        "{everyday:?}"
    );
    // Setting up an establishment account is administration: that call may ask.
    create(&bus, Some(USER_ALICE), "establishment", "S", "s@ecole.fr").err("NotAuthorized");
    let all = polkit.checks(&bus);
    assert!(
        all[everyday.len()..]
            .iter()
            .any(|(action, flags)| action == ACTION_ADMINISTER && flags & 1 == 1),
        "{all:?}"
    );
}
