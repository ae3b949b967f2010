//! A local user trying to take the shared daemon's queue, memory or disk: refused by name at
//! the limits of `[limits]`, while everybody else's mail and every delivery's outcome go on.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use postecole_tests::limits::{SmallDisk, peak_rss_mib};
use postecole_tests::{
    Bus, Ctl, Daemon, Smtp, USER_ALICE, USER_BOB, active_account, create, ensure_users, mailctl,
    relayed_account_as, shared_tempdir, wait_state,
};

/// The promise of issue "no local user may grow the daemon's memory without bound".
const RSS_BOUND_MIB: u64 = 256;
const SENDS: usize = 4;

fn send(bus: &Bus, user: &str, account: &str, subject: &str, attach: Option<&Path>) -> Ctl {
    let mut args = vec![
        "send",
        "--account",
        account,
        "--to",
        "famille@ecole.fr",
        "--subject",
        subject,
        "--body",
        "Bonjour",
    ];
    if let Some(path) = attach {
        args.extend(["--attach", path.to_str().unwrap()]);
    }
    mailctl(bus, Some(user), &args, None)
}

/// A file of `bytes` pseudo-random bytes that every test user can read.
fn readable_file(dir: &Path, name: &str, bytes: usize) -> PathBuf {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let data: Vec<u8> = (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

fn archive_ids(bus: &Bus, user: &str, account: &str) -> Vec<String> {
    let out = mailctl(
        bus,
        Some(user),
        &["archive", "list", account, "--json"],
        Some("une réponse solide\n"),
    )
    .out();
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The end of a daemon log, without the routine lines.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("delivery attempt") && !l.contains("archive-list"))
        .collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn report_rss(daemon: &Daemon, what: &str) -> u64 {
    let peak = peak_rss_mib(daemon.pid().expect("daemon running"));
    println!("peak_rss_mib {what}: {peak}");
    peak
}

#[test]
fn a_user_over_the_queue_quota_or_the_recipient_limit_is_refused_by_name_and_others_still_send() {
    ensure_users();
    let smtp = Smtp::start();
    let (bus, daemon, alice) = relayed_account_as(
        &smtp,
        "[limits]\nmax_queued_messages = 3\nmax_recipients_per_call = 10\n",
        Some(USER_ALICE),
        "personal",
        "alice@ecole.fr",
    );
    let bob = active_account(
        &bus,
        &daemon,
        Some(&smtp),
        Some(USER_BOB),
        "personal",
        "bob@ecole.fr",
    );
    // The relay defers everything: what is sent stays in the spool.
    smtp.set_reply("451 4.3.0 try later");
    let ids: Vec<String> = (0..3)
        .map(|n| send(&bus, USER_ALICE, &alice, &format!("n{n}"), None).out())
        .collect();
    let e = send(&bus, USER_ALICE, &alice, "n3", None).err("QuotaExceeded");
    assert!(e.contains("max_queued_messages"), "{e}");
    // Alice's quota is hers alone.
    send(&bus, USER_BOB, &bob, "b0", None).out();
    // Cancelling gives her room back.
    mailctl(&bus, Some(USER_ALICE), &["queue", "cancel", &ids[0]], None).out();
    send(&bus, USER_ALICE, &alice, "n4", None).out();

    // 11 recipients in one call, over max_recipients_per_call, however they are spread.
    mailctl(&bus, Some(USER_ALICE), &["queue", "cancel", &ids[1]], None).out();
    let mut args = vec![
        "send",
        "--account",
        &alice,
        "--subject",
        "tous",
        "--body",
        "x",
    ];
    let addresses: Vec<String> = (0..11).map(|n| format!("f{n}@ecole.fr")).collect();
    for (n, a) in addresses.iter().enumerate() {
        args.extend([if n % 2 == 0 { "--to" } else { "--bcc" }, a.as_str()]);
    }
    let e = mailctl(&bus, Some(USER_ALICE), &args, None).err("QuotaExceeded");
    assert!(e.contains("max_recipients_per_call"), "{e}");
    report_rss(&daemon, "quotas");
}

#[test]
fn concurrent_large_sends_and_their_archive_stay_under_the_memory_bound() {
    ensure_users();
    let smtp = Smtp::start();
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, &smtp.relay_config());
    let alice = active_account(
        &bus,
        &daemon,
        Some(&smtp),
        Some(USER_ALICE),
        "personal",
        "alice@ecole.fr",
    );
    let dir = shared_tempdir();
    let big = readable_file(dir.path(), "bulletin.pdf", 18_000_000);
    let start = Instant::now();
    let ids: Vec<String> = std::thread::scope(|s| {
        // The attack was 30 at once; a few prove the same bound (each waits its turn to be
        // built, so more only take longer: sealing 18 MB takes a minute in a debug build).
        let sends: Vec<_> = (0..SENDS)
            .map(|n| {
                let (bus, alice, big) = (&bus, &alice, &big);
                s.spawn(move || send(bus, USER_ALICE, alice, &format!("gros {n}"), Some(big)))
            })
            .collect();
        sends.into_iter().map(|t| t.join().unwrap().out()).collect()
    });
    println!("{SENDS} sends of 18 MB accepted in {:?}", start.elapsed());
    for id in &ids {
        wait_state(&bus, id, "delivered", Duration::from_secs(600));
    }
    let sends = report_rss(&daemon, "after concurrent 18 MB sends");
    assert!(sends <= RSS_BOUND_MIB, "{sends} MiB");

    // Its archive, listed and exported, one message in memory at a time.
    assert_eq!(archive_ids(&bus, USER_ALICE, &alice).len(), SENDS);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mbox = out.join("export.mbox");
    mailctl(
        &bus,
        Some(USER_ALICE),
        &[
            "archive",
            "export",
            &alice,
            "--output",
            mbox.to_str().unwrap(),
        ],
        Some("une réponse solide\n"),
    )
    .out();
    assert!(std::fs::metadata(&mbox).unwrap().len() > SENDS as u64 * 18_000_000);
    let archive = report_rss(&daemon, "after listing and exporting the archive");
    assert!(archive <= RSS_BOUND_MIB, "{archive} MiB");
}

#[test]
fn a_full_small_disk_refuses_new_mail_and_accounts_by_name_and_loses_no_outcome() {
    ensure_users();
    let smtp = Smtp::start();
    let bus = Bus::start();
    let mut daemon = Daemon::start(
        &bus,
        &format!(
            "{}[queue]\nmin_backoff_secs = 1\nmax_backoff_secs = 2\n\
             [limits]\ndisk_reserve_bytes = 8000000\n",
            smtp.relay_config()
        ),
    );
    daemon.stop();
    let disk = SmallDisk::mount(&daemon.state_dir, 30);
    daemon.restart();
    let alice = active_account(
        &bus,
        &daemon,
        Some(&smtp),
        Some(USER_ALICE),
        "personal",
        "alice@ecole.fr",
    );
    let dir = shared_tempdir();
    let photo = readable_file(dir.path(), "photo.jpg", 1_000_000);
    let small = readable_file(dir.path(), "petit.jpg", 16_000);

    // A hostile user fills the state directory through the daemon while the relay defers:
    // large files, then small ones for the last of the room.
    smtp.set_reply("451 4.3.0 try later");
    let mut ids = Vec::new();
    for file in [&photo, &small] {
        let e = loop {
            let out = send(&bus, USER_ALICE, &alice, "plein", Some(file));
            if !out.ok {
                break out.err("DiskFull");
            }
            ids.push(out.out());
            assert!(ids.len() < 400, "never refused");
        };
        assert!(e.contains("nearly full"), "{e}");
    }
    assert!(ids.len() >= 10, "{} sent before the reserve", ids.len());
    println!("free after the fill: {} bytes", disk.free_bytes());
    // No new account, and no promise of a code that was never queued.
    let e = create(&bus, Some(USER_BOB), "personal", "Bob", "bob@ecole.fr").err("DiskFull");
    assert!(!e.contains("sent again"), "{e}");
    let bobs = mailctl(&bus, Some(USER_BOB), &["account", "list", "--json"], None).out();
    assert_eq!(bobs, "[]", "nothing was created");

    // A waiting message can still be cancelled below the reserve.
    // (The relay defers every second: catch it between two attempts.)
    let cancelled = ids.pop().unwrap();
    let mut tries = 0;
    loop {
        let out = mailctl(
            &bus,
            Some(USER_ALICE),
            &["queue", "cancel", &cancelled],
            None,
        );
        if out.ok || !out.stderr.contains("is sending") || tries == 50 {
            out.out();
            break;
        }
        tries += 1;
        std::thread::sleep(Duration::from_millis(100));
    }

    // The relay comes back: every outcome is recorded in the reserve, none stays `sending`,
    // and the delivered mail is sealed as room frees.
    smtp.set_reply("");
    for id in &ids {
        let start = Instant::now();
        while !mailctl(&bus, None, &["queue", "show", id, "--json"], None)
            .out()
            .contains("\"delivered\"")
        {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{id} not delivered; free {} bytes; log:\n{}",
                disk.free_bytes(),
                tail(&daemon.log())
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let start = Instant::now();
    while archive_ids(&bus, USER_ALICE, &alice).len() < ids.len() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "never sealed; free {} bytes; log:\n{}",
            disk.free_bytes(),
            tail(&daemon.log())
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // Completely full, from outside the daemon: new mail is refused by name, and the daemon
    // starts again and answers.
    let filler = disk.fill();
    assert!(disk.free_bytes() < 100_000);
    send(&bus, USER_ALICE, &alice, "encore", None).err("DiskFull");
    daemon.stop();
    daemon.restart();
    send(&bus, USER_ALICE, &alice, "toujours", None).err("DiskFull");
    let listed = mailctl(&bus, Some(USER_ALICE), &["queue", "list", "--json"], None).out();
    assert!(
        listed.contains(&cancelled) && !listed.contains("\"sending\""),
        "{listed}"
    );
    std::fs::remove_file(filler).unwrap();
    report_rss(&daemon, "full disk");
}

#[test]
fn a_failed_message_is_sealed_after_its_lifetime_and_retry_says_where_it_went() {
    ensure_users();
    let smtp = Smtp::start();
    let bus = Bus::start();
    let daemon = Daemon::start(
        &bus,
        &format!(
            "{}[queue]\nmin_backoff_secs = 1\nmax_backoff_secs = 1\nmax_lifetime_secs = 3\n",
            smtp.relay_config()
        ),
    );
    let alice = active_account(
        &bus,
        &daemon,
        Some(&smtp),
        Some(USER_ALICE),
        "personal",
        "alice@ecole.fr",
    );
    smtp.set_reply("550 5.1.1 no such user");
    let marker = "IDENTIFIANTS-FAMILLE-7731";
    let id = mailctl(
        &bus,
        Some(USER_ALICE),
        &[
            "send",
            "--account",
            &alice,
            "--to",
            "f@ecole.fr",
            "--subject",
            "codes",
            "--body",
            marker,
        ],
        None,
    )
    .out();
    wait_state(&bus, &id, "failed", Duration::from_secs(30));
    let start = Instant::now();
    while !archive_ids(&bus, USER_ALICE, &alice).contains(&id) {
        assert!(start.elapsed() < Duration::from_secs(30), "never sealed");
        std::thread::sleep(Duration::from_millis(500));
    }
    let clear = daemon
        .state_bytes()
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(marker.len()).any(|w| w == marker.as_bytes()))
        .map(|(path, _)| path)
        .collect::<Vec<_>>();
    assert!(clear.is_empty(), "clear text left in {clear:?}");
    let e = mailctl(&bus, Some(USER_ALICE), &["queue", "retry", &id], None).err("InvalidState");
    assert!(e.contains("sealed in the archive"), "{e}");
    let shown = mailctl(
        &bus,
        Some(USER_ALICE),
        &["archive", "show", &alice, &id],
        Some("une réponse solide\n"),
    )
    .out();
    assert!(shown.contains(marker), "{shown}");
}
