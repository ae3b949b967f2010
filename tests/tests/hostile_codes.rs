//! Hostile local users against the e-mailed codes, the addresses and personal accounts: each
//! test is one attack, run as plain Unix users over the real daemon, the shipped bus policy and
//! a real SMTP server.

use std::time::Duration;

use postecole_tests::{
    Bus, Daemon, Smtp, USER_ADMIN, USER_ALICE, USER_BOB, account_ids, active_account, api,
    audit_json, code_in, create, ensure_users, mailctl, queue_json, wait_state, wrong_code,
};

const ALICE: Option<&str> = Some(USER_ALICE);
const BOB: Option<&str> = Some(USER_BOB);
const ADMIN: Option<&str> = Some(USER_ADMIN);

/// Codes may follow each other after a second, so that a day's allowance is used up quickly.
const FAST_CODES: &str = "[limits]\ncode_interval_secs = 1\n";

fn codes_to(smtp: &Smtp, address: &str) -> usize {
    smtp.messages()
        .iter()
        .filter(|m| m.contains(&format!("To: {address}")))
        .count()
}

fn code_mails(smtp: &Smtp) -> usize {
    smtp.messages()
        .iter()
        .filter(|m| m.contains("mailctl account verify"))
        .count()
}

#[test]
fn five_wrong_codes_void_the_code_and_a_new_one_waits_a_minute_whoever_asks() {
    ensure_users();
    let bus = Bus::start();
    let smtp = Smtp::start();
    let _daemon = Daemon::start(&bus, &smtp.relay_config());
    let id = create(&bus, ALICE, "personal", "L", "victim@ecole.fr").out();
    let code = code_in(&smtp.messages(), &id).unwrap();
    for _ in 0..4 {
        mailctl(
            &bus,
            ALICE,
            &["account", "verify", &id, wrong_code(&code)],
            None,
        )
        .err("WrongCode");
    }
    mailctl(
        &bus,
        ALICE,
        &["account", "verify", &id, wrong_code(&code)],
        None,
    )
    .err("TooManyAttempts");
    mailctl(&bus, ALICE, &["account", "verify", &id, &code], None).err("TooManyAttempts");

    // The voided code is not replaced at once, nor by starting over, nor by someone else.
    let e = mailctl(&bus, ALICE, &["account", "resend", &id], None).err("RateLimited");
    assert!(e.contains("wait"), "{e}");
    mailctl(&bus, ALICE, &["account", "delete", &id], None).out();
    create(&bus, ALICE, "personal", "L", "victim@ecole.fr").err("RateLimited");
    create(&bus, BOB, "personal", "L", "Victim@ECOLE.fr").err("RateLimited");
    create(&bus, None, "establishment", "L", "victim@ecole.fr").err("RateLimited");
    assert_eq!(codes_to(&smtp, "victim@ecole.fr"), 1);

    // Every wrong code is in the audit log, with who typed it.
    let wrong: Vec<_> = audit_json(&bus, None)
        .into_iter()
        .filter(|e| e["action"] == "verify" && e["user"] == USER_ALICE)
        .map(|e| e["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(wrong.len(), 5, "{wrong:?}");
    assert!(
        wrong.iter().all(|o| o.starts_with("wrong-code")),
        "{wrong:?}"
    );
}

#[test]
fn an_address_gets_five_codes_a_day_through_deletes_and_restarts() {
    ensure_users();
    let bus = Bus::start();
    let smtp = Smtp::start();
    let mut daemon = Daemon::start(&bus, &format!("{}{FAST_CODES}", smtp.relay_config()));
    let victim = "victim@ecole.fr";
    let mut refused = None;
    for round in 0..12 {
        let who = if round % 2 == 0 { ALICE } else { BOB };
        let out = create(&bus, who, "personal", "L", victim);
        if !out.ok {
            refused = Some(out.err("RateLimited"));
            break;
        }
        mailctl(&bus, who, &["account", "delete", &out.out()], None).out();
        if round == 2 {
            // What the daemon counted is in its store, not in its memory.
            daemon.stop();
            daemon.restart();
        }
        std::thread::sleep(Duration::from_millis(1100));
    }
    let refused = refused.expect("the sixth code is refused");
    assert!(refused.contains("24 hours"), "{refused}");
    assert_eq!(codes_to(&smtp, victim), 5);
    daemon.stop();
    daemon.restart();
    create(&bus, ADMIN, "personal", "L", victim).err("RateLimited");
    assert_eq!(codes_to(&smtp, victim), 5);
}

#[test]
fn an_address_another_account_holds_is_refused_to_everyone_but_administrators() {
    ensure_users();
    let bus = Bus::start();
    let smtp = Smtp::start();
    let daemon = Daemon::start(&bus, &format!("{}{FAST_CODES}", smtp.relay_config()));
    let shared = active_account(
        &bus,
        &daemon,
        Some(&smtp),
        None,
        "establishment",
        "secretariat@ecole.fr",
    );
    let before = code_mails(&smtp);
    std::thread::sleep(Duration::from_millis(1100));
    let e = create(&bus, ALICE, "personal", "Moi", "Secretariat@ecole.fr").err("AddressInUse");
    assert!(
        !e.contains(&shared),
        "the holder's id is not given away: {e}"
    );
    assert_eq!(code_mails(&smtp), before, "no code went out");
    // An administrator may claim it again.
    let again = active_account(
        &bus,
        &daemon,
        Some(&smtp),
        ADMIN,
        "personal",
        "secretariat@ecole.fr",
    );
    assert_ne!(again, shared);
}

#[test]
fn of_two_users_verifying_one_address_at_once_only_one_gets_it() {
    ensure_users();
    let bus = Bus::start();
    let smtp = Smtp::start();
    let _daemon = Daemon::start(&bus, &format!("{}{FAST_CODES}", smtp.relay_config()));
    let a = create(&bus, ALICE, "personal", "A", "shared@ecole.fr").out();
    std::thread::sleep(Duration::from_millis(1100));
    let b = create(&bus, BOB, "personal", "B", "shared@ecole.fr").out();
    let mails = smtp.messages();
    let (code_a, code_b) = (code_in(&mails, &a).unwrap(), code_in(&mails, &b).unwrap());
    let (ra, rb) = std::thread::scope(|s| {
        let ra = s.spawn(|| mailctl(&bus, ALICE, &["account", "verify", &a, &code_a], None));
        let rb = s.spawn(|| mailctl(&bus, BOB, &["account", "verify", &b, &code_b], None));
        (ra.join().unwrap(), rb.join().unwrap())
    });
    assert!(ra.ok != rb.ok, "exactly one wins: {ra:?} {rb:?}");
    let (loser, loser_id, user) = if ra.ok { (rb, b, BOB) } else { (ra, a, ALICE) };
    loser.err("AddressInUse");
    let state: serde_json::Value = serde_json::from_str(
        &mailctl(&bus, user, &["account", "show", &loser_id, "--json"], None).out(),
    )
    .unwrap();
    assert_eq!(state["state"], "awaiting-code");
}

#[test]
fn creating_and_deleting_in_a_loop_cannot_mail_bomb_anyone() {
    ensure_users();
    let bus = Bus::start();
    let smtp = Smtp::start();
    let _daemon = Daemon::start(&bus, &smtp.relay_config());
    // One address: one code, however fast the loop.
    let mut answers = Vec::new();
    for _ in 0..20 {
        let out = create(&bus, ALICE, "personal", "Pirate", "victim@ecole.fr");
        if out.ok {
            mailctl(&bus, ALICE, &["account", "delete", &out.out()], None).out();
        }
        answers.push(out);
    }
    assert_eq!(codes_to(&smtp, "victim@ecole.fr"), 1);
    for refused in &answers[1..] {
        refused.err("RateLimited");
    }
    // Many addresses: a few awaiting at once, a few creations a day.
    let mut pending = Vec::new();
    for i in 0..3 {
        pending.push(create(&bus, BOB, "personal", "P", &format!("v{i}@ecole.fr")).out());
    }
    let e = create(&bus, BOB, "personal", "P", "v3@ecole.fr").err("QuotaExceeded");
    assert!(e.contains("awaiting"), "{e}");
    let mut created = 3;
    for i in 3..30 {
        mailctl(&bus, BOB, &["account", "delete", &pending.remove(0)], None).out();
        let out = create(&bus, BOB, "personal", "P", &format!("v{i}@ecole.fr"));
        if !out.ok {
            let e = out.err("QuotaExceeded");
            assert!(e.contains("24 hours"), "{e}");
            break;
        }
        created += 1;
        pending.push(out.out());
    }
    assert_eq!(created, 10, "the default max_creations_per_day");
    assert_eq!(smtp.messages().len(), 11);
}

#[test]
fn the_code_mail_shows_the_askers_label_only_in_its_body() {
    ensure_users();
    let bus = Bus::start();
    let smtp = Smtp::start();
    let _daemon = Daemon::start(&bus, &smtp.relay_config());
    create(
        &bus,
        ALICE,
        "personal",
        "URGENT Votre banque",
        "victim@ecole.fr",
    )
    .out();
    let mail = smtp.messages().remove(0);
    let (headers, body) = mail
        .split_once("\r\n\r\n")
        .or_else(|| mail.split_once("\n\n"))
        .unwrap();
    let from = headers.lines().find(|l| l.starts_with("From:")).unwrap();
    assert_eq!(from.trim_end(), "From: postecole <victim@ecole.fr>");
    let subject = headers.lines().find(|l| l.starts_with("Subject:")).unwrap();
    // "Code de vérification postecole", RFC 2047-encoded for its accent.
    assert_eq!(
        subject.trim_end(),
        "Subject: Code de =?utf-8?b?dsOpcmlmaWNhdGlvbg==?= postecole"
    );
    assert!(!headers.contains("banque") && !headers.contains("URGENT"));
    assert!(
        body.contains("URGENT Votre banque"),
        "the label is in the body"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_personal_account_is_its_owners_alone_even_against_administrators() {
    use futures_util::StreamExt;

    ensure_users();
    let bus = Bus::start();
    let smtp = Smtp::start();
    let daemon = Daemon::start(&bus, &smtp.relay_config());
    // Root listens to the bus, as any administrator could.
    let conn = bus.connect().await;
    let proxy = api::AccountsProxy::new(&conn).await.unwrap();
    let mut changes = proxy.receive_account_changed().await.unwrap();

    let mine = active_account(
        &bus,
        &daemon,
        Some(&smtp),
        ALICE,
        "personal",
        "alice@ecole.fr",
    );
    let sent = mailctl(
        &bus,
        ALICE,
        &[
            "send",
            "--account",
            &mine,
            "--to",
            "x@ecole.fr",
            "--subject",
            "S",
            "--body",
            "B",
        ],
        None,
    )
    .out();
    wait_state(&bus, &sent, "delivered", Duration::from_secs(20));

    // An administrator does not see its id: not listed, not in the queue, not in the log.
    assert!(!account_ids(&bus, ADMIN).contains(&mine));
    let queue = queue_json(&bus, ADMIN);
    assert!(
        queue.iter().all(|m| m["account"] != mine.as_str()),
        "{queue:?}"
    );
    assert!(queue.iter().all(|m| m["id"] != sent.as_str()), "{queue:?}");
    let log = audit_json(&bus, ADMIN);
    assert!(log.iter().all(|e| e["account"] != mine.as_str()), "{log:?}");
    assert!(
        log.iter()
            .any(|e| e["user"] == USER_ALICE && e["action"] == "create"),
        "who did what is still logged: {log:?}"
    );
    // Nor does a signal give it away.
    let early = tokio::time::timeout(Duration::from_millis(500), changes.next()).await;
    if let Ok(Some(signal)) = &early {
        let args = signal.args().unwrap();
        panic!(
            "a personal account's change was broadcast: {} {}",
            args.id(),
            args.change()
        );
    }
    assert!(early.is_err(), "the signal stream ended");

    // Given the id, an administrator can neither convert, use nor manage it, nor its mail.
    for args in [
        vec!["account", "convert", &mine, "--to", "establishment"],
        vec!["account", "show", &mine],
        vec!["account", "delete", &mine],
        vec!["account", "default", &mine],
        vec![
            "send",
            "--account",
            &mine,
            "--to",
            "x@ecole.fr",
            "--subject",
            "S",
            "--body",
            "B",
        ],
        vec!["queue", "show", &sent],
        vec!["queue", "retry", &sent],
    ] {
        mailctl(&bus, ADMIN, &args, None).err("NotFound");
    }

    // Root sees the log's ids and may delete it, which the log records.
    let root_log = audit_json(&bus, None);
    assert!(root_log.iter().any(|e| e["account"] == mine.as_str()));
    let theirs = active_account(&bus, &daemon, Some(&smtp), BOB, "personal", "bob@ecole.fr");
    mailctl(&bus, None, &["account", "delete", &theirs], None).out();
    mailctl(&bus, BOB, &["account", "show", &theirs], None).err("NotFound");
    let last = audit_json(&bus, None).pop().unwrap();
    assert_eq!(
        (&last["action"], &last["account"], &last["user"]),
        (&"delete".into(), &theirs.as_str().into(), &"root".into())
    );

    // The owner alone hands it to the establishment; then administrators see it.
    mailctl(
        &bus,
        ALICE,
        &["account", "convert", &mine, "--to", "establishment"],
        None,
    )
    .out();
    assert!(account_ids(&bus, ADMIN).contains(&mine));
}
