//! A damaged state directory: the daemon starts anyway on a store that was scribbled on,
//! truncated or deleted, restores its newest snapshot and says what was lost; no ended
//! message is sent again; and the archive directory with the recovery file alone is enough
//! to read sent mail, with no daemon and no database.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use postecole_tests::recovery::{
    archived_groups_indexed, files_holding, recovery_attachment, scribble_sled_snapshot,
    truncate_sled_file,
};
use postecole_tests::{
    Bus, Daemon, Smtp, active_account, bin, mailctl, send_mail, wait_for, wait_state,
};

const LONG: Duration = Duration::from_secs(30);

struct Setup {
    bus: Bus,
    smtp: Smtp,
    daemon: Daemon,
    account: String,
    key_file: tempfile::NamedTempFile,
}

/// An active account relaying to a real SMTP server, its recovery file saved, and a clean
/// restart behind it (so that a snapshot holds the account).
fn setup() -> Setup {
    let bus = Bus::start();
    let smtp = Smtp::start();
    let mut daemon = Daemon::start(&bus, &smtp.relay_config());
    let account = active_account(
        &bus,
        &daemon,
        Some(&smtp),
        None,
        "establishment",
        "secretariat@ecole.fr",
    );
    wait_for("the confirmation mail", LONG, || smtp.messages().len() == 2);
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        key_file.path(),
        recovery_attachment(&smtp.messages().pop().unwrap()),
    )
    .unwrap();
    assert!(daemon.stop().success());
    daemon.restart();
    Setup {
        bus,
        smtp,
        daemon,
        account,
        key_file,
    }
}

fn send(bus: &Bus, account: &str, to: &str, subject: &str, body: &str) -> String {
    send_mail(bus, account, &[to], subject, body)
}

fn accounts(bus: &Bus) -> Vec<serde_json::Value> {
    let out = mailctl(bus, None, &["account", "list", "--json"], None).out();
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn assert_account_back(s: &Setup) {
    let list = accounts(&s.bus);
    assert!(
        list.iter()
            .any(|a| a["id"] == s.account.as_str() && a["state"] == "active"),
        "the account is back: {list:?}"
    );
}

fn damaged_line(daemon: &Daemon) -> String {
    daemon
        .log()
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("the store was damaged"))
        .unwrap_or_else(|| panic!("no error line about the store: {}", daemon.log()))
        .to_owned()
}

/// `mailctl archive open` with no bus to talk to.
fn archive_open(args: &[&str]) -> std::process::Output {
    Command::new(bin("mailctl"))
        .args(["archive", "open"])
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_scribbled_sled_snapshot_is_set_aside_and_the_daemon_starts_with_its_accounts() {
    let mut s = setup();
    s.daemon.kill9();
    scribble_sled_snapshot(&s.daemon.state_dir);
    s.daemon.restart();
    assert_account_back(&s);
    let line = damaged_line(&s.daemon);
    assert!(line.contains("sled refused it"), "{line}");
    assert!(line.contains("LOST"), "{line}");
    assert!(
        s.daemon.state_dir.join("db.damaged-1").is_dir(),
        "kept aside"
    );
    // Restored for good: the next start has nothing to say.
    assert!(s.daemon.stop().success());
    s.daemon.restart();
    assert_eq!(s.daemon.log().matches("the store was damaged").count(), 1);
    assert_account_back(&s);
}

#[test]
fn a_truncated_store_is_detected_not_started_empty() {
    let mut s = setup();
    s.daemon.kill9();
    truncate_sled_file(&s.daemon.state_dir);
    s.daemon.restart();
    assert_account_back(&s);
    // sled either refuses what is left or opens it older than the snapshot: both are seen.
    let line = damaged_line(&s.daemon);
    assert!(
        line.contains("sled refused it") || line.contains("older than snapshot"),
        "{line}"
    );
    assert!(
        line.contains("accounts=1"),
        "the log says what came back: {line}"
    );
    assert!(line.contains("LOST"), "{line}");
}

#[test]
fn a_deleted_store_comes_back_and_no_failed_or_delivered_message_is_sent_again() {
    let mut s = setup();
    s.smtp.set_reply("550 5.1.1 no such user");
    let failed: Vec<String> = (0..20)
        .map(|i| {
            send(
                &s.bus,
                &s.account,
                "absent@example.org",
                &format!("Refusé {i}"),
                "x",
            )
        })
        .collect();
    for id in &failed {
        wait_state(&s.bus, id, "failed", LONG);
    }
    s.smtp.set_reply("");
    let delivered = send(&s.bus, &s.account, "a@example.org", "Parti", "une fois");
    wait_state(&s.bus, &delivered, "delivered", LONG);
    let mails = s.smtp.messages().len();
    s.daemon.kill9();
    std::fs::remove_dir_all(s.daemon.state_dir.join("db")).unwrap();
    s.daemon.restart();
    assert_account_back(&s);
    damaged_line(&s.daemon);

    let queue = postecole_tests::queue_json(&s.bus, None);
    for id in &failed {
        let m = queue
            .iter()
            .find(|m| m["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} is listed: {queue:?}"));
        assert_eq!(m["state"], "failed", "{m}");
    }
    assert!(
        queue
            .iter()
            .all(|m| !["queued", "sending", "deferred"].contains(&m["state"].as_str().unwrap())),
        "nothing waits again: {queue:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(s.smtp.messages().len(), mails, "nothing was sent again");
    // Failed mail kept its content: a person can still ask for it to be sent.
    mailctl(&s.bus, None, &["queue", "retry", &failed[0]], None).out();
    wait_state(&s.bus, &failed[0], "delivered", LONG);
    assert_eq!(s.smtp.messages().len(), mails + 1);
}

#[test]
fn the_archive_folder_and_the_recovery_file_alone_read_sent_mail_after_db_is_deleted() {
    let mut s = setup();
    let id = send(
        &s.bus,
        &s.account,
        "famille@example.org",
        "Bulletin du trimestre",
        "MARQUEUR-ARCHIVE-77",
    );
    wait_state(&s.bus, &id, "delivered", LONG);
    s.daemon.kill9();
    std::fs::remove_dir_all(s.daemon.state_dir.join("db")).unwrap();
    std::fs::remove_dir_all(s.daemon.state_dir.join("snapshots")).unwrap();
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(s.daemon.state_dir.join("archive"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let key = s.key_file.path().to_str().unwrap();
    let dir = copy.path().join("archive");
    let account_dir = dir.join(&s.account);
    // What the daemon writes now: groups with an index, which mailctl lists from alone.
    let indexed = archived_groups_indexed(&account_dir, &std::fs::read_to_string(key).unwrap());
    assert!(
        !indexed.is_empty() && indexed.iter().all(|&i| i),
        "{indexed:?}"
    );

    for dir in [&dir, &account_dir] {
        let out = archive_open(&["--dir", dir.to_str().unwrap(), "--key", key, "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let m = list
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} is listed: {list}"));
        assert_eq!(m["subject"], "Bulletin du trimestre");
        assert_eq!(m["to"], "famille@example.org");
    }
    let out = archive_open(&[
        "--dir",
        account_dir.to_str().unwrap(),
        "--key",
        key,
        "show",
        &id,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("MARQUEUR-ARCHIVE-77"));

    // Another account's file, or a damaged one, opens nothing, and says why.
    let text = std::fs::read_to_string(key).unwrap();
    let other = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other.path(), text.replace("key: ", "key: 0")).unwrap();
    let out = archive_open(&[
        "--dir",
        account_dir.to_str().unwrap(),
        "--key",
        other.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cleRecuperation.crbee"));
    assert!(out.stdout.is_empty());

    // And the daemon, started on what is left, names the account it lost and how to read it.
    s.daemon.restart();
    let log = s.daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("account LOST from the store")
                && l.contains(&s.account)
                && l.contains("mailctl archive open")),
        "{log}"
    );
}

#[test]
fn recipients_of_delivered_mail_are_kept_out_of_the_store() {
    let mut s = setup();
    let id = send(
        &s.bus,
        &s.account,
        "famille-martin-unique@example.org",
        "Convocation",
        "x",
    );
    let shown = wait_state(&s.bus, &id, "delivered", LONG);
    assert_eq!(shown["to"], serde_json::json!([]), "{shown}");
    assert!(s.daemon.stop().success());
    let state = &s.daemon.state_dir;
    for dir in ["db", "snapshots", "spool"] {
        assert_eq!(
            files_holding(&state.join(dir), b"famille-martin-unique"),
            Vec::<std::path::PathBuf>::new(),
            "in {dir}"
        );
    }
    assert!(
        !files_holding(Path::new(state), b"age-encryption.org").is_empty(),
        "sealed in the archive"
    );
}

#[test]
fn deleting_an_account_keeps_its_sent_mail_readable_unless_asked() {
    let mut s = setup();
    let id = send(
        &s.bus,
        &s.account,
        "famille@example.org",
        "Compte rendu du conseil",
        "MARQUEUR-GARDE-12",
    );
    wait_state(&s.bus, &id, "delivered", LONG);
    let said = mailctl(
        &s.bus,
        None,
        &["account", "delete", &s.account, "--yes"],
        None,
    );
    assert!(said.ok && said.stderr.contains("is kept"), "{said:?}");
    assert!(accounts(&s.bus).is_empty());

    let dir = s.daemon.state_dir.join("archive").join(&s.account);
    let key = s.key_file.path().to_str().unwrap();
    let out = archive_open(&["--dir", dir.to_str().unwrap(), "--key", key, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == id.as_str()),
        "{list}"
    );
    // A kept archive is not an account lost with a damaged store.
    assert!(s.daemon.stop().success());
    s.daemon.restart();
    assert!(
        !s.daemon.log().contains("account LOST"),
        "{}",
        s.daemon.log()
    );

    // Removing the archive is asked for by name, and confirmed.
    let other = active_account(
        &s.bus,
        &s.daemon,
        Some(&s.smtp),
        None,
        "personal",
        "moi@ecole.fr",
    );
    let refused = mailctl(
        &s.bus,
        None,
        &["account", "delete", &other, "--with-archive"],
        None,
    );
    assert!(
        !refused.ok && refused.stderr.contains("--yes"),
        "needs --yes without a terminal: {refused:?}"
    );
    let other_dir = s.daemon.state_dir.join("archive").join(&other);
    assert!(other_dir.exists());
    mailctl(
        &s.bus,
        None,
        &["account", "delete", &other, "--with-archive", "--yes"],
        None,
    )
    .out();
    assert!(!other_dir.exists(), "removed when asked");
}
