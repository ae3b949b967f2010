//! The outgoing queue against a real SMTP server: delivery, retries, refusals, crashes, TLS.

use std::collections::HashMap;
use std::time::Duration;

use postecole_tests::{
    Bus, Daemon, Smtp, TestCa, USER_ALICE, USER_BOB, active_account, api, create, ensure_users,
    local_account, mailctl, queue_json, relayed_account, send_mail, wait_for, wait_state,
};

const FAST_RETRY: &str = "[queue]\nmin_backoff_secs = 1\nmax_backoff_secs = 2\n";
const LONG: Duration = Duration::from_secs(30);

fn config(smtp: &Smtp, extra: &str) -> String {
    format!("{}{extra}", smtp.relay_config())
}

/// A bus, a daemon relaying to `smtp`, and a personal account ready to send.
fn with_account(smtp: &Smtp, extra: &str) -> (Bus, Daemon, String) {
    relayed_account(smtp, extra, "personal", "moi@ecole.fr")
}

/// `mailctl send` of a one-line message to a@example.org; its id.
fn send(bus: &Bus, account: &str, subject: &str, body: &str) -> String {
    send_mail(bus, account, &["a@example.org"], subject, body)
}

#[test]
fn message_with_pdf_is_delivered_and_bcc_stays_hidden() {
    let smtp = Smtp::start();
    let (bus, daemon, account) =
        relayed_account(&smtp, "", "establishment", "secretariat@ecole.fr");
    let dir = tempfile::tempdir().unwrap();
    let pdf = dir.path().join("bilan-trimestre-1.pdf");
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.extend((0..=255u8).cycle().take(3000));
    std::fs::write(&pdf, &bytes).unwrap();

    let out = mailctl(
        &bus,
        None,
        &[
            "send",
            "--account",
            &account,
            "--to",
            "famille.durand@example.org",
            "--cc",
            "papa.durand@example.org",
            "--bcc",
            "directrice@ecole.fr",
            "--subject",
            "Bilan du 1er trimestre — Léa",
            "--body",
            "Bonjour,\nle bilan est joint.",
            "--attach",
            pdf.to_str().unwrap(),
            "--wait",
        ],
        None,
    );
    let id = out.out();
    assert!(
        out.stderr.contains("delivered"),
        "--wait shows progress: {}",
        out.stderr
    );
    let delivered = smtp.messages().pop().unwrap();
    assert!(
        delivered.contains(
            "X-Envelope-To: famille.durand@example.org,papa.durand@example.org,directrice@ecole.fr"
        ),
        "{delivered}"
    );
    let headers: String = delivered[..delivered.find("\r\n\r\n").unwrap()]
        .lines()
        .filter(|l| !l.starts_with("X-Envelope-"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !headers.to_lowercase().contains("bcc"),
        "Bcc in headers: {headers}"
    );
    assert!(!headers.contains("directrice"), "{headers}");
    assert!(
        headers.contains("From: =?utf-8?b?U2VjcsOpdGFyaWF0?= <secretariat@ecole.fr>"),
        "{headers}"
    );
    assert!(
        delivered.contains("filename=\"bilan-trimestre-1.pdf\""),
        "{delivered}"
    );
    assert!(
        delivered.contains("Content-Type: application/pdf"),
        "{delivered}"
    );

    let shown = wait_state(&bus, &id, "delivered", LONG);
    assert_eq!(shown["attempts"], 1);
    assert!(
        shown["last_reply"].as_str().unwrap().starts_with("250"),
        "{shown}"
    );
    let message_id = shown["message_id"].as_str().unwrap();
    assert!(
        headers.contains(&format!("Message-ID: {message_id}")),
        "{headers}"
    );
    // The clear-text copy left the spool once delivered.
    for (path, bytes) in daemon.state_bytes() {
        if path.starts_with(daemon.state_dir.join("spool")) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("le bilan est joint") && !text.contains("famille.durand"),
                "clear text left in {}",
                path.display()
            );
        }
    }
}

#[test]
fn temporary_failure_is_retried_and_permanent_failure_keeps_the_reply() {
    let smtp = Smtp::start();
    let (bus, _daemon, account) = with_account(&smtp, FAST_RETRY);

    smtp.set_reply("451 4.3.0 Mailbox busy, try later");
    let id = send(&bus, &account, "S", "B");
    let deferred = wait_state(&bus, &id, "deferred", LONG);
    assert!(
        deferred["last_reply"].as_str().unwrap().contains("451"),
        "{deferred}"
    );
    assert!(deferred["next_attempt"].as_u64().unwrap() > 0);
    smtp.set_reply("");
    let delivered = wait_state(&bus, &id, "delivered", LONG);
    assert!(delivered["attempts"].as_u64().unwrap() >= 2, "{delivered}");

    smtp.set_reply("550 5.1.1 No such user here");
    let out = mailctl(
        &bus,
        None,
        &[
            "send",
            "--account",
            &account,
            "--to",
            "nobody@example.org",
            "--subject",
            "S",
            "--body",
            "B",
            "--wait",
        ],
        None,
    );
    assert!(!out.ok);
    assert!(
        out.stderr.contains("550") && out.stderr.contains("No such user"),
        "{}",
        out.stderr
    );
    let failed = queue_json(&bus, None)
        .into_iter()
        .find(|m| m["state"] == "failed")
        .expect("a failed message");
    assert_eq!(failed["attempts"], 1, "5xx is not retried: {failed}");
    let reply = failed["last_reply"].as_str().unwrap();
    assert!(
        reply.contains("550") && reply.contains("5.1.1 No such user here"),
        "{failed}"
    );

    // A person may retry a failed message once the cause is fixed.
    smtp.set_reply("");
    mailctl(
        &bus,
        None,
        &["queue", "retry", failed["id"].as_str().unwrap()],
        None,
    )
    .out();
    wait_state(&bus, failed["id"].as_str().unwrap(), "delivered", LONG);
}

#[test]
fn relay_down_at_submit_then_delivered_when_it_returns() {
    let smtp = Smtp::start();
    let (bus, _daemon, account) = with_account(&smtp, FAST_RETRY);
    let port = smtp.stop();

    let id = send(&bus, &account, "S", "B");
    let deferred = wait_state(&bus, &id, "deferred", LONG);
    assert!(!deferred["last_reply"].as_str().unwrap().is_empty());
    mailctl(&bus, None, &["relay", "test"], None).err("RelayUnavailable");

    // A code e-mail while the relay is down: the account is kept, the code retried.
    let out = create(&bus, None, "personal", "L", "l@ecole.fr");
    let e = out.err("RelayUnavailable");
    assert!(e.contains("again automatically"), "{e}");

    let smtp = Smtp::start_on(port, &[]);
    wait_state(&bus, &id, "delivered", LONG);
    wait_for("the code e-mail to arrive", LONG, || {
        smtp.messages()
            .iter()
            .any(|m| m.contains("X-Envelope-To: l@ecole.fr"))
    });
    assert!(
        mailctl(&bus, None, &["relay", "test"], None)
            .out()
            .contains("connected")
    );
}

#[test]
fn accented_text_goes_in_8_bits_and_fails_at_once_where_8bitmime_is_missing() {
    let modern = Smtp::start();
    let (bus, _daemon, account) = with_account(&modern, "");
    let id = send(&bus, &account, "Bilan", "Le bilan de Léa est joint.");
    wait_state(&bus, &id, "delivered", LONG);
    let sent = modern.messages().pop().unwrap();
    assert!(sent.contains("Content-Transfer-Encoding: 8bit"), "{sent}");
    assert!(sent.contains("Le bilan de Léa est joint."), "{sent}");

    // The same on a relay that does not announce 8BITMIME.
    let old = Smtp::start_with(&["--no-8bitmime"]);
    let (bus, _daemon, account) = with_account(&old, "");
    let id = send(&bus, &account, "Bilan", "Le bilan de Léa est joint.");
    let failed = wait_state(&bus, &id, "failed", LONG);
    assert_eq!(failed["attempts"], 1);
    assert!(
        failed["last_reply"].as_str().unwrap().contains("8BITMIME"),
        "{failed}"
    );
    let id = send(&bus, &account, "Bilan", "Plain ASCII goes through.");
    wait_state(&bus, &id, "delivered", LONG);
}

#[test]
fn unreachable_relay_pauses_bulk_mail_but_not_a_code() {
    let smtp = Smtp::start();
    // A long back-off, so that nothing but the pause itself can explain what waits.
    let (bus, daemon, account) = with_account(&smtp, "[queue]\nmin_backoff_secs = 3600\n");
    // The confirmation e-mail must be out first: failing, it would pause the queue itself.
    wait_for("the set-up mail to be delivered", LONG, || {
        queue_json(&bus, None)
            .iter()
            .all(|m| m["state"] == "delivered")
    });
    let port = smtp.stop();
    let first = send(&bus, &account, "Premier", "B");
    let deferred = wait_state(&bus, &first, "deferred", LONG);
    assert!(
        deferred["last_reply"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{deferred}"
    );
    let waiting = [
        send(&bus, &account, "Deuxième", "B"),
        send(&bus, &account, "Troisième", "B"),
    ];
    std::thread::sleep(Duration::from_millis(1500));
    for id in &waiting {
        let m = wait_state(&bus, id, "queued", LONG);
        assert_eq!(
            m["attempts"], 0,
            "tried while the relay was known down: {m}"
        );
        // Nothing was tried, but the listing says why it waits.
        let why = m["last_reply"].as_str().unwrap();
        assert!(
            why.contains("relay is unreachable") && why.contains("next try in 60 min"),
            "{why}"
        );
    }
    assert!(daemon.log().contains("relay unreachable"));

    // The code e-mail still gets its first attempt: the person hears at once.
    let started = std::time::Instant::now();
    let e = create(&bus, None, "personal", "L", "l@ecole.fr").err("RelayUnavailable");
    assert!(e.contains("again automatically"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Back up, and somebody checks it: the waiting mail goes without waiting out the pause,
    // and what was deferred by its own attempt without waiting out its back-off — the code
    // e-mail among them, while its code still lives.
    let smtp = Smtp::start_on(port, &[]);
    assert!(
        mailctl(&bus, None, &["relay", "test"], None)
            .out()
            .contains("connected")
    );
    for id in waiting.iter().chain([&first]) {
        wait_state(&bus, id, "delivered", LONG);
    }
    assert_eq!(wait_state(&bus, &first, "delivered", LONG)["attempts"], 2);
    wait_for("the code e-mail", LONG, || {
        smtp.messages().iter().any(|m| m.contains("l@ecole.fr"))
    });
    assert_eq!(smtp.messages().len(), 4);
}

#[test]
fn hold_release_cancel() {
    let smtp = Smtp::start();
    let (bus, _daemon, account) = with_account(&smtp, FAST_RETRY);
    smtp.set_reply("421 4.7.0 Too busy");
    let queue_one = || send(&bus, &account, "S", "B");
    let (a, b) = (queue_one(), queue_one());
    wait_state(&bus, &a, "deferred", LONG);
    wait_state(&bus, &b, "deferred", LONG);
    mailctl(&bus, None, &["queue", "hold", &a], None).out();
    // Who, what and what the relay said, while it waits.
    let listed = mailctl(&bus, None, &["queue", "list", "--state", "held"], None).out();
    let line = listed.lines().find(|l| l.starts_with(&a)).expect(&listed);
    assert!(
        line.contains(" S ") && line.contains("Too busy"),
        "{listed}"
    );
    mailctl(&bus, None, &["queue", "cancel", &b], None).out();
    mailctl(&bus, None, &["queue", "release", &b], None).err("InvalidState");
    smtp.set_reply("");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        wait_state(&bus, &a, "held", LONG)["state"],
        "held",
        "held messages wait"
    );
    mailctl(&bus, None, &["queue", "release", &a], None).out();
    wait_state(&bus, &a, "delivered", LONG);
    assert_eq!(
        wait_state(&bus, &b, "cancelled", LONG)["state"],
        "cancelled"
    );
    mailctl(&bus, None, &["queue", "cancel", &a], None).err("InvalidState");
    mailctl(&bus, None, &["queue", "show", "nosuchmessage"], None).err("NotFound");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_nothing_is_queued() {
    let smtp = Smtp::start();
    let (bus, daemon, account) = with_account(&smtp, "[queue]\nmax_message_bytes = 4096\n");
    let conn = bus.connect().await;
    let outbox = api::OutboxProxy::new(&conn).await.unwrap();
    let message = |to: &[&str], subject: &str| api::OutgoingMessage {
        to: Some(to.iter().map(|s| s.to_string()).collect()),
        subject: Some(subject.into()),
        text: Some("Bonjour".into()),
        ..Default::default()
    };
    let many: Vec<String> = (0..101).map(|n| format!("p{n}@example.org")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let long = format!("{}@example.org", "x".repeat(250));
    for (m, what) in [
        (message(&[], "S"), "no recipient"),
        (message(&["pas-une-adresse"], "S"), "invalid address"),
        (message(&[&long], "S"), "over-long address"),
        (
            message(&["a@example.org\r\nBcc: evil@example.org"], "S"),
            "CR/LF in address",
        ),
        (
            message(&["a@example.org"], "Objet\r\nBcc: evil@example.org"),
            "CR/LF in subject",
        ),
        (message(&many, "S"), "too many recipients"),
    ] {
        match outbox.send(&account, m, vec![]).await {
            Err(api::Error::InvalidInput(_)) => {}
            other => panic!("{what}: expected InvalidInput, got {other:?}"),
        }
    }
    // One message to a@example.org with this file attached under this name.
    let attaching = |name: &str, file: std::fs::File| {
        outbox.send(
            &account,
            message(&["a@example.org"], "S"),
            vec![(
                name.into(),
                "application/pdf".into(),
                std::os::fd::OwnedFd::from(file).into(),
            )],
        )
    };
    let big = tempfile::tempfile().unwrap();
    big.set_len(8192).unwrap();
    match attaching("gros.pdf", big).await {
        Err(api::Error::TooLarge(m)) => assert!(m.contains("max_message_bytes"), "{m}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let dir = std::fs::File::open("/").unwrap();
    match attaching("x.pdf", dir).await {
        Err(api::Error::InvalidInput(m)) => assert!(m.contains("not a regular file"), "{m}"),
        other => panic!("expected InvalidInput for a directory, got {other:?}"),
    }
    match attaching("../etc/passwd", tempfile::tempfile().unwrap()).await {
        Err(api::Error::InvalidInput(_)) => {}
        other => panic!("expected InvalidInput for a path as name, got {other:?}"),
    }
    // One bad message in a batch refuses the whole batch.
    match outbox
        .send_batch(
            &account,
            vec![
                (message(&["a@example.org"], "ok"), vec![]),
                (message(&["bad"], "S"), vec![]),
            ],
        )
        .await
    {
        Err(api::Error::InvalidInput(m)) => assert!(m.starts_with("message 2:"), "{m}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let queued = queue_json(&bus, None);
    assert_eq!(
        queued.len(),
        2,
        "only the account's code and confirmation: {queued:?}"
    );
    // Only the account's code and confirmation mail went through the spool, and they have
    // left it: what stays of an entry is its header.
    wait_for("an empty spool", LONG, || {
        daemon.state_bytes().iter().all(|(path, bytes)| {
            !path.starts_with(daemon.state_dir.join("spool"))
                || !String::from_utf8_lossy(bytes).contains("@ecole.fr")
        })
    });
}

#[test]
fn who_may_send_and_see_messages() {
    ensure_users();
    let (bus, daemon, shared) = local_account("establishment", "secretariat@ecole.fr");
    mailctl(
        &bus,
        None,
        &["account", "staff", &shared, "--add", USER_ALICE],
        None,
    )
    .out();
    let mine = active_account(
        &bus,
        &daemon,
        None,
        Some(USER_ALICE),
        "personal",
        "alice@ecole.fr",
    );
    let pending = create(&bus, Some(USER_BOB), "personal", "B", "bob@ecole.fr").out();

    let send = |user: Option<&str>, account: &str| {
        mailctl(
            &bus,
            user,
            &[
                "send",
                "--account",
                account,
                "--to",
                "famille@example.org",
                "--subject",
                "S",
                "--body",
                "B",
            ],
            None,
        )
    };
    let by_alice = send(Some(USER_ALICE), &shared).out();
    send(Some(USER_ALICE), &mine).out();
    send(Some(USER_BOB), &shared).err("NotFound");
    send(Some(USER_BOB), &mine).err("NotFound");
    send(None, &mine).err("NotFound");
    send(Some(USER_BOB), &pending).err("InvalidState");
    // The default account is used when --account is left out.
    mailctl(&bus, Some(USER_ALICE), &["account", "default", &mine], None).out();
    mailctl(
        &bus,
        Some(USER_ALICE),
        &[
            "send",
            "--to",
            "x@example.org",
            "--subject",
            "S",
            "--body",
            "B",
        ],
        None,
    )
    .out();

    let alice_sees: Vec<String> = queue_json(&bus, Some(USER_ALICE))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        alice_sees.len(),
        5,
        "her three messages, and the code and confirmation of her account: {alice_sees:?}"
    );
    assert!(
        queue_json(&bus, Some(USER_BOB))
            .iter()
            .all(|m| m["submitter"] == USER_BOB)
    );
    mailctl(&bus, Some(USER_BOB), &["queue", "show", &by_alice], None).err("NotFound");
    mailctl(&bus, Some(USER_BOB), &["queue", "cancel", &by_alice], None).err("NotFound");
    assert!(
        queue_json(&bus, None).len() > alice_sees.len(),
        "administrators see every message"
    );
}

#[test]
fn kill9_during_bulk_delivery_loses_nothing() {
    let duplicates = bulk_delivery_interrupted("kill -9", Daemon::kill9);
    // Sent again: those in flight and those sent but not yet recorded by the last group sync.
    assert!(
        duplicates <= 50,
        "only messages caught between send and record are sent twice: {duplicates}"
    );
}

#[test]
fn a_stop_during_bulk_delivery_sends_nothing_twice() {
    let duplicates = bulk_delivery_interrupted("SIGTERM", |daemon| {
        assert!(daemon.stop().success());
    });
    // The outcomes of the messages being sent are recorded before the daemon exits.
    assert_eq!(duplicates, 0, "sent twice after a clean stop");
}

/// 300 messages in one `SendBatch`, the daemon interrupted by `interrupt` in the middle of
/// their delivery and restarted: every one is delivered, in the end `delivered`; how many
/// went twice.
fn bulk_delivery_interrupted(what: &str, interrupt: impl FnOnce(&mut Daemon)) -> usize {
    let bus = Bus::start();
    let smtp = Smtp::start();
    let mut daemon = Daemon::start(
        &bus,
        &config(
            &smtp,
            "[queue]\nconcurrency = 2\nmin_backoff_secs = 1\nmax_backoff_secs = 1\n",
        ),
    );
    let account = active_account(&bus, &daemon, Some(&smtp), None, "personal", "moi@ecole.fr");
    let before = smtp.messages().len();
    const N: usize = 300;
    let ids: Vec<String> = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let conn = bus.connect().await;
        let outbox = api::OutboxProxy::new(&conn).await.unwrap();
        let batch = (0..N)
            .map(|n| {
                (
                    api::OutgoingMessage {
                        to: Some(vec![format!("famille{n}@example.org")]),
                        subject: Some(format!("Identifiants {n}")),
                        text: Some(format!("Bonjour famille {n}")),
                        ..Default::default()
                    },
                    vec![],
                )
            })
            .collect();
        outbox.send_batch(&account, batch).await.unwrap()
    });
    assert_eq!(ids.len(), N);
    wait_for("some deliveries", LONG, || {
        smtp.messages().len() > before + 20
    });
    interrupt(&mut daemon);
    let at_interrupt = smtp.messages().len() - before;
    assert!(
        at_interrupt < N,
        "all {N} delivered before the {what}; nothing was tested"
    );
    daemon.restart();
    wait_for(
        "every accepted message delivered",
        Duration::from_secs(120),
        || {
            let mut seen = std::collections::HashSet::new();
            for m in smtp.messages() {
                if let Some(to) = m
                    .lines()
                    .find_map(|l| l.strip_prefix("X-Envelope-To: famille"))
                {
                    seen.insert(to.to_owned());
                }
            }
            seen.len() == N
        },
    );
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for m in smtp
        .messages()
        .iter()
        .filter(|m| m.contains("X-Envelope-To: famille"))
    {
        let id = m
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .unwrap()
            .to_owned();
        *by_id.entry(id).or_default() += 1;
    }
    let duplicates: usize = by_id.values().map(|n| n - 1).sum();
    println!(
        "{what} after {at_interrupt} of {N} deliveries: {} distinct Message-IDs, {duplicates} duplicates",
        by_id.len()
    );
    assert_eq!(by_id.len(), N);
    wait_for("states to settle", LONG, || {
        queue_json(&bus, None)
            .iter()
            .filter(|m| ids.contains(&m["id"].as_str().unwrap().to_owned()))
            .filter(|m| m["state"] == "delivered")
            .count()
            == N
    });
    duplicates
}

fn tls_case(implicit: bool) {
    let ca = TestCa::new();
    let pw_dir = tempfile::tempdir().unwrap();
    let password_file = pw_dir.path().join("relay-password");
    std::fs::write(&password_file, "s3cret-relais\n").unwrap();
    let smtp = Smtp::start_tls(&ca, implicit, &["--auth", "ce.0123456x:s3cret-relais"]);
    let relay = format!(
        "[queue]\nsend_timeout_secs = 15\n{}username = \"ce.0123456x\"\npassword_file = \"{}\"\n",
        smtp.relay_config(),
        password_file.display(),
    );
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, &relay);
    assert!(
        mailctl(&bus, None, &["relay", "test"], None)
            .out()
            .contains("connected")
    );
    let account = active_account(&bus, &daemon, Some(&smtp), None, "personal", "moi@ecole.fr");
    let id = mailctl(
        &bus,
        None,
        &[
            "send",
            "--account",
            &account,
            "--to",
            "a@example.org",
            "--subject",
            "TLS",
            "--body",
            "B",
            "--wait",
        ],
        None,
    )
    .out();
    wait_state(&bus, &id, "delivered", LONG);
    assert!(
        !daemon.log().contains("s3cret-relais"),
        "the relay password is in the log"
    );

    // A wrong password is refused.
    std::fs::write(&password_file, "wrong").unwrap();
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus, &relay);
    let e = mailctl(&bus, None, &["relay", "test"], None).err("RelayUnavailable");
    assert!(
        e.contains("535") || e.to_lowercase().contains("auth"),
        "{e}"
    );

    // Without the school's CA the certificate is not trusted: nothing is sent in clear.
    // (Last: aiosmtpd stalls a while after a failed handshake.)
    let bus = Bus::start();
    let untrusted: String = relay
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    let _daemon = Daemon::start(&bus, &untrusted);
    let e = mailctl(&bus, None, &["relay", "test"], None).err("RelayUnavailable");
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("tls"),
        "{e}"
    );
}

#[test]
fn starttls_with_auth_and_a_school_ca() {
    tls_case(false);
}

#[test]
fn implicit_tls_with_auth_and_a_school_ca() {
    tls_case(true);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_state_change_is_signalled() {
    use futures_util::StreamExt;
    let smtp = Smtp::start();
    let (bus, _daemon, account) = with_account(&smtp, FAST_RETRY);
    let conn = bus.connect().await;
    let outbox = api::OutboxProxy::new(&conn).await.unwrap();
    let mut changes = outbox.receive_message_changed().await.unwrap();
    smtp.set_reply("451 4.3.0 later");
    let id = outbox
        .send(
            &account,
            api::OutgoingMessage {
                to: Some(vec!["a@example.org".into()]),
                subject: Some("S".into()),
                text: Some("B".into()),
                ..Default::default()
            },
            vec![],
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("delivered") {
        let signal = tokio::time::timeout(LONG, changes.next())
            .await
            .expect("a signal")
            .unwrap();
        let args = signal.args().unwrap();
        if *args.id() == id {
            if args.state() == &"deferred" {
                smtp.set_reply("");
            }
            seen.push(args.state().to_string());
        }
    }
    assert_eq!(
        seen,
        ["queued", "sending", "deferred", "sending", "delivered"]
    );
}

#[test]
fn kill9_right_after_the_reply_loses_nothing() {
    let smtp = Smtp::start();
    let (bus, mut daemon, account) = with_account(&smtp, "");
    // Relay refusing for now, so that only the store can remember the message.
    smtp.set_reply("421 4.3.2 Shutting down");
    let id = send(&bus, &account, "Gardé", "B");
    daemon.kill9();
    smtp.set_reply("");
    daemon.restart();
    // The first attempt may have been made before the kill (then deferred for min_backoff):
    // ask for it now rather than wait five minutes.
    let _ = mailctl(&bus, None, &["queue", "retry", &id], None);
    wait_state(&bus, &id, "delivered", LONG);
    assert!(
        smtp.messages()
            .iter()
            .any(|m| m.contains("Subject: =?utf-8?") || m.contains("Subject: Gard"))
    );
}

/// A relay refuses header lines over 998 characters; 100 addresses on one To line are 3,000.
#[test]
fn a_hundred_recipients_on_folded_lines_are_delivered() {
    let smtp = Smtp::start();
    let (bus, _daemon, account) = with_account(&smtp, "");
    let to: Vec<String> = (0..100)
        .map(|i| format!("famille.numero{i}@example.org"))
        .collect();
    let mut args = vec!["send", "--account", &account, "--subject", "Réunion"];
    for a in &to {
        args.extend(["--to", a.as_str()]);
    }
    args.extend(["--body", "Bonjour"]);
    let id = mailctl(&bus, None, &args, None).out();
    wait_state(&bus, &id, "delivered", LONG);
    let mails = smtp.messages();
    let mail = mails.last().expect("the relay received the message");
    let head = &mail[..mail.find("\r\n\r\n").or(mail.find("\n\n")).unwrap()];
    // The test server's own X-Envelope-* lines are not the message's.
    let long = head
        .lines()
        .find(|l| l.len() > 78 && !l.starts_with("X-Envelope-"));
    assert_eq!(long, None);
    let unfolded = head.replace("\r\n ", " ").replace("\n ", " ");
    for a in &to {
        assert!(
            unfolded.contains(a.as_str()),
            "{a} missing from the To header"
        );
    }
}
