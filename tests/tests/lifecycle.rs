//! The account lifecycle end to end: mailctl → D-Bus → postecoled → aiosmtpd.

use std::time::Duration;

use postecole_tests::{Bus, Daemon, Smtp, api, code_in, create, mailctl, wait_for};

#[test]
fn establishment_address_set_up_through_a_real_relay() {
    let bus = Bus::start();
    let smtp = Smtp::start();
    let daemon = Daemon::start(&bus, &smtp.relay_config());

    let id = create(
        &bus,
        None,
        "establishment",
        "Secrétariat Jules Ferry",
        "secretariat@ecole.fr",
    )
    .out();
    assert_eq!(id.len(), 8, "id {id:?}");

    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(
        mail.contains("X-Envelope-To: secretariat@ecole.fr"),
        "{mail}"
    );
    assert!(mail.contains("Subject: Code de =?utf-8?"), "{mail}");
    assert!(mail.contains("Message-ID: <"), "{mail}");
    let code = code_in(&mails, &id).expect("code in the mail");
    assert!(code.chars().all(|c| c.is_ascii_digit()), "{code}");
    assert!(
        mail.contains("15 minutes"),
        "says how long the code lasts: {mail}"
    );

    let show = |id: &str| -> serde_json::Value {
        serde_json::from_str(&mailctl(&bus, None, &["account", "show", id, "--json"], None).out())
            .unwrap()
    };
    assert_eq!(show(&id)["state"], "awaiting-code");

    // Wrong code, malformed code, then the right one.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let e = mailctl(&bus, None, &["account", "verify", &id, wrong], None).err("WrongCode");
    assert!(e.contains("4 tries left"), "{e}");
    mailctl(&bus, None, &["account", "verify", &id, "12"], None).err("InvalidInput");
    mailctl(
        &bus,
        None,
        &["account", "secure", &id, "--question", "Q ?"],
        Some("une bonne réponse\n"),
    )
    .err("InvalidState");
    mailctl(&bus, None, &["account", "verify", &id, &code], None).out();
    assert_eq!(show(&id)["state"], "awaiting-secret");
    mailctl(&bus, None, &["account", "verify", &id, &code], None).err("InvalidState");

    // The secret: refused when short or guessable, then accepted from stdin.
    mailctl(
        &bus,
        None,
        &["account", "secure", &id, "--question", "Ville ?"],
        Some("Paris\n"),
    )
    .err("InvalidInput");
    let e = mailctl(
        &bus,
        None,
        &["account", "secure", &id, "--question", "Ville ?"],
        Some("SECRETARIAT@ecole.fr\n"),
    )
    .err("InvalidInput");
    assert!(e.contains("address"), "{e}");
    mailctl(
        &bus,
        None,
        &["account", "secure", &id, "--question", "Ville\nBcc: x@y.fr"],
        Some("Clermont-Ferrand\n"),
    )
    .err("InvalidInput");
    mailctl(
        &bus,
        None,
        &[
            "account",
            "secure",
            &id,
            "--question",
            "Ville de naissance ?",
        ],
        Some("Clermont-Ferrand\n"),
    )
    .out();
    let account = show(&id);
    assert_eq!(account["state"], "active");
    assert_eq!(account["question"], "Ville de naissance ?");
    assert_eq!(account["kind"], "establishment");
    assert_eq!(account["owner"], "root");

    wait_for("the confirmation mail", Duration::from_secs(10), || {
        smtp.messages().len() == 2
    });
    let mails = smtp.messages();
    assert!(
        mails[1].contains("Subject: =?utf-8?") || mails[1].contains("Subject: Adresse"),
        "{}",
        mails[1]
    );
    assert!(!mails[1].contains("Clermont"), "the answer is never mailed");

    // Staff: unknown users refused, real ones listed.
    mailctl(
        &bus,
        None,
        &["account", "staff", &id, "--add", "no-such-user-here"],
        None,
    )
    .err("InvalidInput");
    mailctl(
        &bus,
        None,
        &["account", "staff", &id, "--add", "root"],
        None,
    )
    .out();
    assert_eq!(show(&id)["staff"], serde_json::json!(["root"]));
    let list: serde_json::Value =
        serde_json::from_str(&mailctl(&bus, None, &["account", "list", "--json"], None).out())
            .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    for key in ["id", "kind", "label", "address", "state", "owner", "staff"] {
        assert!(list[0].get(key).is_some(), "{key} missing in {list}");
    }
    let table = mailctl(&bus, None, &["account", "list"], None).out();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[1].starts_with(&id),
        "{table}"
    );
    assert_eq!(
        lines[0].find("KIND"),
        lines[1].find("establishment"),
        "aligned:\n{table}"
    );

    // Nothing secret in the log or the store.
    let log = daemon.log();
    assert!(!log.contains(&code), "the code is in the log");
    assert!(
        !log.to_lowercase().contains("clermont"),
        "the answer is in the log"
    );
    for (path, bytes) in daemon.state_bytes() {
        for needle in [b"Clermont".as_slice(), b"clermont", code.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds a secret",
                path.display()
            );
        }
    }
}

#[test]
fn personal_address_through_the_embedded_default() {
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, "");
    let id = create(&bus, None, "personal", "Mme Martin", "martin@ecole.fr").out();
    let code = code_in(&daemon.local_mail(), &id).expect("code in local-mail");
    mailctl(
        &bus,
        None,
        &[
            "account",
            "verify",
            &id,
            &format!("{} {}", &code[..3], &code[3..]),
        ],
        None,
    )
    .out();
    mailctl(
        &bus,
        None,
        &["account", "secure", &id, "--question", "Mon premier chat ?"],
        Some("Minouche la grise\n"),
    )
    .out();
    wait_for("the confirmation mail", Duration::from_secs(10), || {
        daemon.local_mail().len() == 2
    });

    // Personal accounts have no staff.
    mailctl(
        &bus,
        None,
        &["account", "staff", &id, "--add", "root"],
        None,
    )
    .err("InvalidState");
    mailctl(&bus, None, &["account", "default", &id], None).out();
    assert_eq!(mailctl(&bus, None, &["account", "default"], None).out(), id);
    mailctl(&bus, None, &["account", "delete", &id], None).out();
    mailctl(&bus, None, &["account", "show", &id], None).err("NotFound");
    mailctl(&bus, None, &["account", "default"], None);
    assert!(!mailctl(&bus, None, &["account", "default"], None).ok);
}

#[test]
fn bad_input_is_named_and_creates_nothing() {
    let bus = Bus::start();
    let smtp = Smtp::start();
    let _daemon = Daemon::start(&bus, &smtp.relay_config());
    for (kind, label, address) in [
        ("personal", "L", "not-an-address"),
        ("personal", "L", "a@ecole.fr\r\nBcc: evil@example.org"),
        ("personal", "", "a@ecole.fr"),
        ("personal", "L\nX-Evil: 1", "a@ecole.fr"),
    ] {
        create(&bus, None, kind, label, address).err("InvalidInput");
    }
    let long = format!("{}@ecole.fr", "a".repeat(260));
    create(&bus, None, "personal", "L", &long).err("InvalidInput");
    assert!(smtp.messages().is_empty());
    assert_eq!(
        mailctl(&bus, None, &["account", "list", "--json"], None).out(),
        "[]"
    );
    mailctl(
        &bus,
        None,
        &["account", "verify", "nosuchid", "123456"],
        None,
    )
    .err("NotFound");
    mailctl(
        &bus,
        None,
        &["account", "convert", "nosuchid", "--to", "personal"],
        None,
    )
    .err("NotFound");
}

#[test]
fn resend_is_rate_limited_and_relay_failures_are_named() {
    let bus = Bus::start();
    let smtp = Smtp::start();
    let _daemon = Daemon::start(&bus, &smtp.relay_config());
    let id = create(&bus, None, "personal", "L", "l@ecole.fr").out();
    let e = mailctl(&bus, None, &["account", "resend", &id], None).err("RateLimited");
    assert!(e.contains("wait"), "{e}");
    assert_eq!(smtp.messages().len(), 1);

    // The relay refuses: the account is not created and the reason is shown.
    smtp.set_reply("550 5.7.1 Relaying denied");
    let e = create(&bus, None, "personal", "M", "m@ecole.fr").err("RelayUnavailable");
    assert!(e.contains("m@ecole.fr") && e.contains("550"), "{e}");
    smtp.set_reply("451 4.3.0 Try again later");
    create(&bus, None, "personal", "M", "m@ecole.fr").err("RelayUnavailable");
    // The refused one (550) was not kept; the deferred one (451) is, its code to be retried.
    let list: serde_json::Value =
        serde_json::from_str(&mailctl(&bus, None, &["account", "list", "--json"], None).out())
            .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

#[test]
fn five_wrong_codes_void_the_code() {
    let bus = Bus::start();
    let smtp = Smtp::start();
    let _daemon = Daemon::start(&bus, &smtp.relay_config());
    let id = create(&bus, None, "personal", "L", "l@ecole.fr").out();
    let code = code_in(&smtp.messages(), &id).unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..4 {
        mailctl(&bus, None, &["account", "verify", &id, wrong], None).err("WrongCode");
    }
    mailctl(&bus, None, &["account", "verify", &id, wrong], None).err("TooManyAttempts");
    mailctl(&bus, None, &["account", "verify", &id, &code], None).err("TooManyAttempts");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_and_signals_on_the_bus() {
    use futures_util::StreamExt;

    let bus = Bus::start();
    let smtp = Smtp::start();
    let _daemon = Daemon::start(&bus, &smtp.relay_config());
    let conn = bus.connect().await;
    let proxy = api::AccountsProxy::new(&conn).await.unwrap();
    let mut changes = proxy.receive_account_changed().await.unwrap();

    let id = proxy
        .create_account("personal", "Mme Martin", "martin@ecole.fr")
        .await
        .unwrap();
    let signal = tokio::time::timeout(std::time::Duration::from_secs(10), changes.next())
        .await
        .expect("AccountChanged within 10 s")
        .unwrap();
    let args = signal.args().unwrap();
    assert_eq!((args.id(), args.change()), (&id.as_str(), &"created"));

    match proxy.confirm_code(&id, "abc").await {
        Err(api::Error::InvalidInput(m)) => assert!(m.contains("6 digits"), "{m}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    match proxy.create_account("shared", "L", "l@ecole.fr").await {
        Err(api::Error::InvalidInput(m)) => assert!(m.contains("establishment"), "{m}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let info = proxy.get_account(&id).await.unwrap();
    assert_eq!(info.label, "Mme Martin");
    assert_eq!(info.state, api::STATE_AWAITING_CODE);
}
