//! The SMTP exchange with the relay, judged by what the relay saw: commands pipelined when it
//! offers PIPELINING (one read for MAIL, every RCPT and DATA), BDAT with CHUNKING, one command
//! at a time otherwise; each recipient judged on its own; connections the relay ends between
//! messages replaced without a failure.

use std::time::Duration;

use postecole_tests::{
    Bus, Daemon, PostfixRelay, Smtp, TestCa, active_account, code_in, create, mailctl, queue_json,
    relayed_account, send_mail, verify, wait_for, wait_state,
};

const FAST_RETRY: &str = "[queue]\nmin_backoff_secs = 1\nmax_backoff_secs = 2\n";
/// One connection at a time, so that every message after the first reuses it.
const ONE_CONNECTION: &str =
    "[queue]\nconcurrency = 1\nmin_backoff_secs = 1\nmax_backoff_secs = 2\n";
const LONG: Duration = Duration::from_secs(30);

/// `mailctl send` to `to` (repeated --to) with `subject`; its id.
fn send_to(bus: &Bus, account: &str, to: &[&str], subject: &str) -> String {
    send_mail(
        bus,
        account,
        to,
        subject,
        "Bonjour,\n.point en début de ligne\nFin.",
    )
}

/// The delivered copies of the message with `subject`, in order.
fn copies(smtp: &Smtp, subject: &str) -> Vec<String> {
    smtp.messages()
        .into_iter()
        .filter(|m| m.contains(&format!("Subject: {subject}\r\n")))
        .collect()
}

fn envelope_to(message: &str) -> &str {
    message
        .lines()
        .find_map(|l| l.strip_prefix("X-Envelope-To: "))
        .unwrap_or_default()
}

/// The reads in which the relay got a MAIL FROM and a RCPT TO of `to` (the account's own
/// set-up mail, to itself, left aside).
fn mail_reads(smtp: &Smtp, to: &str) -> Vec<(u64, String)> {
    smtp.reads()
        .into_iter()
        .filter(|(_, data)| {
            data.contains("MAIL FROM:") && data.contains(&format!("RCPT TO:<{to}>"))
        })
        .collect()
}

#[test]
fn a_refused_recipient_among_good_ones_loses_none_and_the_deferred_one_is_retried_alone() {
    let smtp = Smtp::start_with(&["--pipelining"]);
    let (bus, _daemon, account) = relayed_account(&smtp, FAST_RETRY, "personal", "moi@ecole.fr");
    smtp.set_recipient_replies(&[
        (
            "inconnu@example.org",
            "550 5.1.1 <inconnu@example.org>: no such user",
        ),
        (
            "lente@example.org",
            "451 4.2.0 lente@example.org: greylisted, try later",
        ),
    ]);
    let to = [
        "famille@example.org",
        "inconnu@example.org",
        "lente@example.org",
        "papa@example.org",
    ];
    let id = send_to(&bus, &account, &to, "Reunion");
    let deferred = wait_state(&bus, &id, "deferred", LONG);
    let reply = deferred["last_reply"].as_str().unwrap();
    assert!(
        reply.starts_with("250")
            && reply.contains("recipient 3 (451 4.2.0 recipient 3: greylisted")
            && reply.contains("refused: recipient 2 (550 5.1.1 <recipient 2>: no such user)"),
        "{reply}"
    );
    assert!(
        !reply.contains("example.org"),
        "an address in the store: {reply}"
    );
    let first = copies(&smtp, "Reunion");
    assert_eq!(first.len(), 1);
    assert_eq!(
        envelope_to(&first[0]),
        "famille@example.org,papa@example.org"
    );
    // Dot-stuffed on the way, the body arrives as written.
    assert!(
        first[0].contains("\r\n.point en début de ligne\r\n"),
        "{}",
        first[0]
    );

    // MAIL, the four RCPTs and DATA came in one read: one round trip for all of them.
    let reads = mail_reads(&smtp, "inconnu@example.org");
    let (_, pipelined) = reads.last().unwrap();
    for a in to {
        assert!(
            pipelined.contains(&format!("RCPT TO:<{a}>")),
            "{pipelined:?}"
        );
    }
    assert!(pipelined.ends_with("DATA\r\n"), "{pipelined:?}");

    // The greylisting is over: the next attempt goes to the deferred recipient alone.
    smtp.set_recipient_replies(&[(
        "inconnu@example.org",
        "550 5.1.1 <inconnu@example.org>: no such user",
    )]);
    let delivered = wait_state(&bus, &id, "delivered", LONG);
    assert_eq!(delivered["attempts"], 2, "{delivered}");
    let copies = copies(&smtp, "Reunion");
    assert_eq!(copies.len(), 2);
    assert_eq!(envelope_to(&copies[1]), "lente@example.org");
    assert_eq!(
        copies[0][copies[0].find("\r\n\r\n").unwrap()..],
        copies[1][copies[1].find("\r\n\r\n").unwrap()..]
    );
    let retried = mail_reads(&smtp, "lente@example.org").pop().unwrap().1;
    assert_eq!(retried.matches("RCPT TO:").count(), 1, "{retried:?}");
    let reply = delivered["last_reply"].as_str().unwrap();
    assert!(reply.starts_with("250"), "{reply}");
    assert!(
        delivered["to"].as_array().is_none_or(|a| a.is_empty()),
        "{delivered}"
    );

    // Everybody refused for good: failed, with no body sent, each named by place.
    smtp.set_recipient_replies(&[
        ("inconnu@example.org", "550 5.1.1 no such user"),
        ("parti@example.org", "553 5.1.2 gone"),
    ]);
    let id = send_to(
        &bus,
        &account,
        &["inconnu@example.org", "parti@example.org"],
        "Personne",
    );
    let failed = wait_state(&bus, &id, "failed", LONG);
    assert_eq!(failed["attempts"], 1);
    assert_eq!(
        failed["last_reply"],
        "refused: recipient 1 (550 5.1.1 no such user), recipient 2 (553 5.1.2 gone)"
    );
    assert!(copies_none(&smtp, "Personne"));
    // The connection stayed usable: the next message goes through on it.
    let id = send_to(&bus, &account, &["famille@example.org"], "Après");
    wait_state(&bus, &id, "delivered", LONG);
}

fn copies_none(smtp: &Smtp, subject: &str) -> bool {
    copies(smtp, subject).is_empty()
}

#[test]
fn without_pipelining_one_command_at_a_time_and_refusals_judged_the_same() {
    let smtp = Smtp::start();
    let (bus, _daemon, account) = relayed_account(&smtp, FAST_RETRY, "personal", "moi@ecole.fr");
    smtp.set_recipient_replies(&[("inconnu@example.org", "550 5.1.1 no such user")]);
    let id = send_to(
        &bus,
        &account,
        &["famille@example.org", "inconnu@example.org"],
        "Un a un",
    );
    let delivered = wait_state(&bus, &id, "delivered", LONG);
    assert_eq!(delivered["attempts"], 1);
    assert!(
        delivered["last_reply"]
            .as_str()
            .unwrap()
            .ends_with("refused: recipient 2 (550 5.1.1 no such user)"),
        "{delivered}"
    );
    let copies = copies(&smtp, "Un a un");
    assert_eq!(copies.len(), 1);
    assert_eq!(envelope_to(&copies[0]), "famille@example.org");
    // Each command waited for the previous reply: no read holds two.
    for (_, data) in smtp.reads() {
        let commands = ["MAIL FROM:", "RCPT TO:", "DATA\r\n"]
            .iter()
            .map(|c| data.matches(c).count())
            .sum::<usize>();
        assert!(
            commands <= 1,
            "pipelined to a relay that does not offer it: {data:?}"
        );
    }
}

#[test]
fn with_chunking_each_message_is_one_write_and_no_rset_between_messages() {
    let smtp = Smtp::start_with(&["--pipelining", "--chunking"]);
    let (bus, _daemon, account) =
        relayed_account(&smtp, ONE_CONNECTION, "personal", "moi@ecole.fr");
    smtp.set_recipient_replies(&[("inconnu@example.org", "550 5.1.1 no such user")]);
    let ids: Vec<String> = (1..=3)
        .map(|n| {
            send_to(
                &bus,
                &account,
                &["famille@example.org", "inconnu@example.org"],
                &format!("Bloc {n}"),
            )
        })
        .collect();
    for id in &ids {
        let m = wait_state(&bus, id, "delivered", LONG);
        assert_eq!(m["attempts"], 1, "{m}");
    }
    for n in 1..=3 {
        let copies = copies(&smtp, &format!("Bloc {n}"));
        assert_eq!(copies.len(), 1);
        assert_eq!(envelope_to(&copies[0]), "famille@example.org");
        // Sent as stored: BDAT carries the bytes, no dot-stuffing.
        assert!(copies[0].contains("\r\n.point en début de ligne\r\n"));
    }
    let reads = smtp.reads();
    let messages = mail_reads(&smtp, "famille@example.org");
    assert_eq!(messages.len(), 3, "{reads:?}");
    for (_, data) in &messages {
        // MAIL, both RCPTs, BDAT and the whole body in one read: one round trip a message.
        assert!(
            data.contains("RCPT TO:<inconnu@example.org>")
                && data.contains(" LAST\r\n")
                && data.contains("Fin."),
            "{data:?}"
        );
        assert!(!data.contains("DATA\r\n"), "{data:?}");
    }
    assert!(
        reads.iter().all(|(_, d)| !d.contains("RSET")),
        "RSET between healthy messages: {reads:?}"
    );
    let connections: std::collections::BTreeSet<u64> =
        messages.iter().map(|(conn, _)| *conn).collect();
    assert_eq!(connections.len(), 1, "not kept across messages: {reads:?}");

    // A body too large to be copied behind the commands goes right after them, whole.
    let dir = tempfile::tempdir().unwrap();
    let attachment = dir.path().join("gros.bin");
    std::fs::write(&attachment, vec![0x5au8; 300_000]).unwrap();
    let id = mailctl(
        &bus,
        None,
        &[
            "send",
            "--account",
            &account,
            "--to",
            "famille@example.org",
            "--subject",
            "Gros",
            "--body",
            "Ci-joint.",
            "--attach",
            attachment.to_str().unwrap(),
        ],
        None,
    )
    .out();
    wait_state(&bus, &id, "delivered", LONG);
    let copy = &copies(&smtp, "Gros")[0];
    assert!(copy.len() > 300_000, "{}", copy.len());
    assert!(
        copy.trim_end().ends_with("--"),
        "cut short: {}",
        &copy[copy.len() - 200..]
    );
}

#[test]
fn with_chunking_the_next_message_is_written_before_the_last_one_is_answered() {
    // A relay that takes a second to answer the end of each message: what a round trip across
    // a network is, drawn out.
    let smtp = Smtp::start_with(&["--pipelining", "--chunking", "--delay", "1"]);
    let (bus, _daemon, account) =
        relayed_account(&smtp, ONE_CONNECTION, "personal", "moi@ecole.fr");
    smtp.set_recipient_replies(&[("inconnu@example.org", "550 5.1.1 no such user")]);
    // The second is refused whole: the ones behind it on the connection must not suffer.
    let to: [&[&str]; 4] = [
        &["famille@example.org"],
        &["inconnu@example.org"],
        &["famille@example.org", "inconnu@example.org"],
        &["papa@example.org"],
    ];
    let ids: Vec<String> = to
        .iter()
        .enumerate()
        .map(|(n, to)| send_to(&bus, &account, to, &format!("Train {}", n + 1)))
        .collect();
    let failed = wait_state(&bus, &ids[1], "failed", LONG);
    assert_eq!(
        failed["last_reply"], "refused: recipient 1 (550 5.1.1 no such user)",
        "{failed}"
    );
    for n in [0, 2, 3] {
        let m = wait_state(&bus, &ids[n], "delivered", LONG);
        assert_eq!(m["attempts"], 1, "{m}");
        let copies = copies(&smtp, &format!("Train {}", n + 1));
        assert_eq!(copies.len(), 1, "Train {}", n + 1);
        assert!(!envelope_to(&copies[0]).contains("inconnu"));
    }
    assert!(copies_none(&smtp, "Train 2"));
    assert!(
        smtp.mail_written_ahead() >= 1,
        "no message written before the previous one was answered: {:?}",
        smtp.reads()
    );
    let connections: std::collections::BTreeSet<u64> = mail_reads(&smtp, "famille@example.org")
        .iter()
        .chain(&mail_reads(&smtp, "papa@example.org"))
        .map(|(conn, _)| *conn)
        .collect();
    assert_eq!(connections.len(), 1, "{:?}", smtp.reads());
}

#[test]
fn messages_pipelined_behind_a_connection_at_its_limit_go_on_another_uncounted() {
    let smtp = Smtp::start_with(&["--pipelining", "--chunking", "--max-per-connection", "2"]);
    let (bus, _daemon, account) =
        relayed_account(&smtp, ONE_CONNECTION, "personal", "moi@ecole.fr");
    let ids: Vec<String> = (1..=6)
        .map(|n| {
            send_to(
                &bus,
                &account,
                &["famille@example.org"],
                &format!("Lot {n}"),
            )
        })
        .collect();
    for (n, id) in ids.iter().enumerate() {
        let m = wait_state(&bus, id, "delivered", LONG);
        assert_eq!(
            m["attempts"], 1,
            "a connection ended by the relay counted as a failure: {m}"
        );
        assert_eq!(copies(&smtp, &format!("Lot {}", n + 1)).len(), 1);
    }
    let mut per_connection = std::collections::BTreeMap::<u64, usize>::new();
    for (conn, _) in mail_reads(&smtp, "famille@example.org") {
        *per_connection.entry(conn).or_default() += 1;
    }
    assert!(per_connection.len() >= 3, "{per_connection:?}");
}

#[test]
fn a_relay_gone_silent_mid_message_holds_nothing_and_loses_nothing() {
    let smtp = Smtp::start_with(&["--pipelining", "--chunking"]);
    let (bus, daemon, account) = relayed_account(
        &smtp,
        &format!("{ONE_CONNECTION}send_timeout_secs = 2\n"),
        "personal",
        "moi@ecole.fr",
    );
    smtp.set_delay(30.0);
    let ids: Vec<String> = (1..=2)
        .map(|n| {
            send_to(
                &bus,
                &account,
                &["famille@example.org"],
                &format!("Muet {n}"),
            )
        })
        .collect();
    // Each waited two seconds at most, the one pipelined behind the first included (which
    // is counted: its chunk went out whole, so the relay may hold it).
    for id in &ids {
        let m = wait_state(&bus, id, "deferred", LONG);
        assert!(
            m["last_reply"].as_str().unwrap().contains("within 2 s"),
            "{m}\n{}",
            daemon.log()
        );
    }
    // The daemon still answers, and the relay back to normal takes both.
    assert!(mailctl(&bus, None, &["queue", "list"], None).ok);
    smtp.set_delay(0.0);
    for (n, id) in ids.iter().enumerate() {
        wait_state(&bus, id, "delivered", LONG);
        assert!(!copies(&smtp, &format!("Muet {}", n + 1)).is_empty());
    }
}

/// Three messages one after another on one connection slot, against a relay that ends
/// connections as `relay_args` says: all delivered at the first attempt.
fn delivered_across_ended_connections(relay_args: &[&str]) -> Vec<(u64, String)> {
    let mut args = vec!["--pipelining"];
    args.extend_from_slice(relay_args);
    let smtp = Smtp::start_with(&args);
    let (bus, _daemon, account) =
        relayed_account(&smtp, ONE_CONNECTION, "personal", "moi@ecole.fr");
    for n in 1..=4 {
        let id = send_to(
            &bus,
            &account,
            &["famille@example.org"],
            &format!("Suite {n}"),
        );
        let m = wait_state(&bus, &id, "delivered", LONG);
        assert_eq!(
            m["attempts"], 1,
            "a connection ended by the relay counted as a failure: {m}"
        );
        assert_eq!(copies(&smtp, &format!("Suite {n}")).len(), 1);
    }
    mail_reads(&smtp, "famille@example.org")
}

#[test]
fn a_connection_the_relay_closed_between_messages_is_replaced() {
    let reads = delivered_across_ended_connections(&["--close-after", "1"]);
    let connections: std::collections::BTreeSet<u64> = reads.iter().map(|(c, _)| *c).collect();
    // One connection a message, and the stale one was tried before each new one.
    assert_eq!(connections.len(), 4, "{reads:?}");
}

#[test]
fn too_many_messages_on_one_connection_means_reconnect() {
    let reads = delivered_across_ended_connections(&["--max-per-connection", "2"]);
    let mut per_connection = std::collections::BTreeMap::<u64, usize>::new();
    for (conn, _) in &reads {
        *per_connection.entry(*conn).or_default() += 1;
    }
    // Four messages, at most two a connection: at least once the relay said 421 to a MAIL on
    // a used connection, and the message went on a new one.
    assert!(per_connection.len() >= 2, "{per_connection:?}");
    assert!(
        reads.len() > 4,
        "no MAIL refused with 421 then sent again on another connection: {per_connection:?}"
    );
}

#[test]
fn implicit_tls_is_pipelined_over_our_own_socket() {
    let ca = TestCa::new();
    let smtp = Smtp::start_tls(&ca, true, &["--pipelining"]);
    let config = smtp.relay_config();
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, &config);
    assert!(
        mailctl(&bus, None, &["relay", "test"], None)
            .out()
            .contains("TLS certificate verified")
    );
    let account = active_account(&bus, &daemon, Some(&smtp), None, "personal", "moi@ecole.fr");
    let id = send_to(
        &bus,
        &account,
        &["famille@example.org", "papa@example.org"],
        "Chiffré",
    );
    wait_state(&bus, &id, "delivered", LONG);
    let (_, data) = mail_reads(&smtp, "papa@example.org").pop().unwrap();
    assert!(
        data.contains("RCPT TO:<papa@example.org>") && data.ends_with("DATA\r\n"),
        "{data:?}"
    );
    wait_for("the delivered listing", LONG, || {
        queue_json(&bus, None)
            .iter()
            .all(|m| m["state"] == "delivered")
    });
}

#[test]
fn postfix_smtpd_takes_bdat_pipelined_behind_mail_and_rcpt() {
    let relay = PostfixRelay::start();
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus, &format!("{}{ONE_CONNECTION}", relay.relay_config()));
    // Postfix passes mail on through its queue: the code arrives a moment after it took it.
    let id = create(&bus, None, "personal", "Secretariat", "moi@ecole.fr").out();
    wait_for("the code through Postfix", LONG, || {
        code_in(&relay.downstream.messages(), &id).is_some()
    });
    verify(&bus, None, &relay.downstream.messages(), &id);
    mailctl(
        &bus,
        None,
        &["account", "secure", &id, "--question", "Question ?"],
        Some("une réponse solide\n"),
    )
    .out();
    let ids: Vec<String> = (1..=3)
        .map(|n| {
            send_to(
                &bus,
                &id,
                &["famille@example.org", "papa@example.org"],
                &format!("Postfix {n}"),
            )
        })
        .collect();
    for m in &ids {
        assert_eq!(wait_state(&bus, m, "delivered", LONG)["attempts"], 1);
    }
    wait_for("the messages through Postfix", LONG, || {
        (1..=3).all(|n| copies(&relay.downstream, &format!("Postfix {n}")).len() == 1)
    });
    let copy = &copies(&relay.downstream, "Postfix 2")[0];
    assert!(copy.contains("\r\n.point en début de ligne\r\n"), "{copy}");
    assert_eq!(envelope_to(copy), "famille@example.org,papa@example.org");
    let commands = relay.commands();
    let bdat = commands.iter().filter(|c| c.starts_with("BDAT ")).count();
    assert!(
        bdat >= 4,
        "code mail and three messages by BDAT: {commands:?}"
    );
    assert!(
        commands.iter().all(|c| c != "DATA" && c != "RSET"),
        "{commands:?}"
    );
    let log = std::fs::read_to_string(relay.maillog()).unwrap();
    assert!(!log.contains("improper command pipelining"), "{log}");
}
