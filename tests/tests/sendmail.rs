//! The sendmail door over the real daemon and a real SMTP server: what cron and scripts write
//! on standard input reaches the relay as `mailctl send` would have sent it, and every refusal
//! has its sentence and its sysexits.h status.

use std::time::Duration;

use base64::Engine;
use postecole_tests::{
    Bus, Daemon, Smtp, USER_ALICE, USER_BOB, api, attachment, ensure_users, mailctl,
    relayed_account, relayed_account_as, sendmail, wait_for,
};

const LONG: Duration = Duration::from_secs(30);
const ADDRESS: &str = "moi@ecole.fr";

/// A daemon relaying to `smtp` (`extra` after the relay section) and root's default account.
fn door(smtp: &Smtp, extra: &str) -> (Bus, Daemon, String) {
    let (bus, daemon, account) = relayed_account(smtp, extra, "personal", ADDRESS);
    mailctl(&bus, None, &["account", "default", &account], None).out();
    (bus, daemon, account)
}

/// The messages the relay accepted for exactly these envelope recipients (the account's own
/// code and recovery mails go to its address, never to these).
fn mails_to(smtp: &Smtp, envelope_to: &str) -> Vec<String> {
    smtp.messages()
        .into_iter()
        .filter(|m| header(m, "X-Envelope-To") == Some(envelope_to))
        .collect()
}

/// The `n`th message for these envelope recipients, once the relay has it.
fn delivered(smtp: &Smtp, envelope_to: &str, n: usize) -> String {
    wait_for("the relay to get the message", LONG, || {
        mails_to(smtp, envelope_to).len() >= n
    });
    mails_to(smtp, envelope_to).remove(n - 1)
}

fn headers(mail: &str) -> &str {
    &mail[..mail.find("\r\n\r\n").expect("a header block")]
}

fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    headers(mail)
        .split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

/// The Subject as a reader shows it: the daemon writes non-ASCII ones as UTF-8 encoded words.
fn subject(mail: &str) -> String {
    let raw = headers(mail)
        .replace("\r\n ", " ")
        .lines()
        .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
        .expect("a Subject");
    raw.split(' ')
        .map(|word| {
            match word
                .strip_prefix("=?utf-8?b?")
                .and_then(|w| w.strip_suffix("?="))
            {
                Some(b64) => String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap(),
                )
                .unwrap(),
                None => format!("{word} "),
            }
        })
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// What cron writes: a plain message, its recipients in its headers, a lone dot in the output
/// of the job (kept with -i).
const CRON: &str = "From: root (Cron Daemon)\nTo: admin@example.org\n\
    Subject: =?UTF-8?Q?Sauvegarde_termin=C3=A9e?=\nContent-Type: text/plain; charset=UTF-8\n\
    Content-Transfer-Encoding: 8bit\nX-Cron-Env: <SHELL=/bin/sh>\n\n\
    Sauvegarde de /home terminée.\n.\n3 fichiers copiés.\n";

#[test]
fn a_cron_message_with_t_i_is_delivered_with_its_from_to_subject_and_body() {
    let smtp = Smtp::start();
    let (bus, _daemon, _) = door(&smtp, "");
    let out = sendmail(&bus, None, &["-t", "-i", "-f", ADDRESS], CRON.as_bytes());
    assert_eq!(out.status, 0, "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    let mail = delivered(&smtp, "admin@example.org", 1);
    assert_eq!(header(&mail, "X-Envelope-From"), Some(ADDRESS));
    assert!(
        header(&mail, "From").is_some_and(|f| f.ends_with(&format!("<{ADDRESS}>"))),
        "the account's From, never the script's: {mail}"
    );
    assert_eq!(header(&mail, "To"), Some("admin@example.org"));
    assert_eq!(subject(&mail), "Sauvegarde terminée");
    assert!(
        mail.contains("Sauvegarde de /home terminée.\r\n.\r\n3 fichiers copiés."),
        "the whole body, its lone dot kept: {mail}"
    );
}

#[test]
fn recipients_from_arguments_and_a_lone_dot_ending_the_message_without_i() {
    let smtp = Smtp::start();
    let (bus, _daemon, _) = door(&smtp, "");
    let input = "Subject: Rapport\n\npremière partie\n.\nseconde partie\n";
    let out = sendmail(&bus, None, &["famille@example.org"], input.as_bytes());
    assert_eq!(out.status, 0, "{out:?}");
    let mail = delivered(&smtp, "famille@example.org", 1);
    assert_eq!(header(&mail, "To"), Some("famille@example.org"));
    assert!(mail.contains("première partie"), "{mail}");
    assert!(!mail.contains("seconde partie"), "the dot ended it: {mail}");

    // The same input with -i: the dot is a line like any other.
    let out = sendmail(&bus, None, &["-i", "famille@example.org"], input.as_bytes());
    assert_eq!(out.status, 0, "{out:?}");
    let mail = delivered(&smtp, "famille@example.org", 2);
    assert!(
        mail.contains("première partie\r\n.\r\nseconde partie"),
        "{mail}"
    );

    // -t adds the headers' recipients to the arguments'; one named nowhere is not shown.
    let input = "To: a@example.org\nSubject: Rapport\n\ntexte\n";
    let out = sendmail(&bus, None, &["-t", "b@example.org"], input.as_bytes());
    assert_eq!(out.status, 0, "{out:?}");
    let mail = delivered(&smtp, "a@example.org,b@example.org", 1);
    assert_eq!(header(&mail, "To"), Some("a@example.org"));
    assert!(!headers(&mail).contains("b@example.org,") && !mail.contains("Bcc"));
}

#[test]
fn bcc_gets_the_message_and_appears_in_no_header() {
    let smtp = Smtp::start();
    let (bus, _daemon, _) = door(&smtp, "");
    let input = "To: famille@example.org\nCc: papa@example.org\nBcc: directrice@ecole.fr\n\
                 Subject: Absence\n\nLéa est absente ce matin.\n";
    let out = sendmail(&bus, None, &["-t", "-i"], input.as_bytes());
    assert_eq!(out.status, 0, "{out:?}");
    let mail = delivered(
        &smtp,
        "famille@example.org,papa@example.org,directrice@ecole.fr",
        1,
    );
    let shown: String = headers(&mail)
        .lines()
        .filter(|l| !l.starts_with("X-Envelope-"))
        .collect();
    assert!(!shown.contains("directrice"), "{shown}");
    assert!(!shown.to_lowercase().contains("bcc"), "{shown}");
    assert_eq!(header(&mail, "Cc"), Some("papa@example.org"));
}

#[test]
fn a_multipart_message_keeps_its_pdf_and_its_html() {
    let smtp = Smtp::start();
    let (bus, _daemon, _) = door(&smtp, "");
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.extend((0..=255u8).cycle().take(5000));
    let b64 = base64::engine::general_purpose::STANDARD.encode(&pdf);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let input = format!(
        "To: famille@example.org\nSubject: Bilan du trimestre\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"MIX\"\n\n\
         --MIX\nContent-Type: multipart/alternative; boundary=\"ALT\"\n\n\
         --ALT\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n\
         Le bilan de L=E9a est joint.\n\
         --ALT\nContent-Type: text/html; charset=utf-8\n\n<p>Le bilan de <b>Léa</b> est joint.</p>\n\
         --ALT--\n\
         --MIX\nContent-Type: application/pdf; name=\"bilan-lea.pdf\"\n\
         Content-Disposition: attachment; filename=\"bilan-lea.pdf\"\n\
         Content-Transfer-Encoding: base64\n\n{}\n--MIX--\n",
        lines.join("\n")
    );
    let out = sendmail(&bus, None, &["-t", "-i"], input.as_bytes());
    assert_eq!(out.status, 0, "{out:?}");
    let mail = delivered(&smtp, "famille@example.org", 1);
    assert!(mail.contains("Le bilan de Léa est joint."), "{mail}");
    assert!(mail.contains("Content-Type: text/html"), "{mail}");
    assert!(mail.contains("<b>Léa</b>"), "{mail}");
    assert!(mail.contains("filename=\"bilan-lea.pdf\""), "{mail}");
    assert!(mail.contains("Content-Type: application/pdf"), "{mail}");
    // The attachment's bytes, whatever the line length the daemon encodes them with.
    assert_eq!(attachment(&mail, "bilan-lea.pdf").1, pdf);
}

#[test]
fn refusals_have_their_sentence_and_sysexits_status() {
    ensure_users();
    let smtp = Smtp::start();
    let (bus, _daemon, _) = door(&smtp, "");
    let plain = b"To: a@example.org\nSubject: s\n\nb\n";

    // A user without a default account.
    let out = sendmail(&bus, Some(USER_BOB), &["-t"], plain);
    assert_eq!(out.status, 67, "EX_NOUSER: {out:?}");
    assert!(
        out.stderr.contains("no default account") && out.stderr.contains("mailctl account default"),
        "{}",
        out.stderr
    );

    // A sender the account is not.
    let out = sendmail(&bus, None, &["-t", "-f", "autre@ecole.fr"], plain);
    assert_eq!(out.status, 77, "EX_NOPERM: {out:?}");
    assert!(out.stderr.contains(ADDRESS), "{}", out.stderr);

    // Modes that are not "send this message".
    for mode in [&["-bs"][..], &["-bd"], &["-q"], &["-q1h"]] {
        let out = sendmail(&bus, None, mode, b"");
        assert_eq!(out.status, 64, "EX_USAGE: {out:?}");
        assert!(out.stderr.contains("standard input"), "{}", out.stderr);
    }
    let out = sendmail(&bus, None, &["-t"], b"Subject: s\n\nb\n");
    assert_eq!(out.status, 64, "no recipient: {out:?}");
    let out = sendmail(&bus, None, &["-t", "a@example.org"], b"Subject: s\n\nb\n");
    assert_eq!(out.status, 0, "{out:?}");
    delivered(&smtp, "a@example.org", 1);

    // A line break smuggled into the Subject through an encoded word: refused as mailctl's.
    let smuggled = "x\r\nBcc: espion@example.org";
    let input = format!(
        "To: a@example.org\nSubject: =?utf-8?b?{}?=\n\nb\n",
        base64::engine::general_purpose::STANDARD.encode(smuggled)
    );
    let out = sendmail(&bus, None, &["-t"], input.as_bytes());
    assert_eq!(out.status, 65, "EX_DATAERR: {out:?}");
    let ctl = mailctl(
        &bus,
        None,
        &[
            "send",
            "--to",
            "a@example.org",
            "--subject",
            smuggled,
            "--body",
            "b",
        ],
        None,
    );
    let name = format!("[{}.InvalidInput]", api::ERROR_PREFIX);
    ctl.err("InvalidInput");
    let detail = |stderr: &str| {
        stderr
            .lines()
            .find(|l| l.contains(&name))
            .and_then(|l| l.split_once("postecoled: "))
            .map(|(_, d)| d.to_owned())
    };
    assert!(out.stderr.contains("postecoled refused a value"), "{out:?}");
    assert_eq!(detail(&out.stderr), detail(&ctl.stderr), "{out:?} {ctl:?}");
    assert!(
        detail(&out.stderr).is_some_and(|d| d.contains("subject")),
        "{out:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        mails_to(&smtp, "a@example.org").len(),
        1,
        "nothing more left"
    );
    assert!(smtp.messages().iter().all(|m| !m.contains("espion")));
}

/// A bus without postecoled, and no bus at all, are told apart, each as "unavailable"
/// (EX_UNAVAILABLE), the message left with its writer.
#[test]
fn without_the_daemon_or_the_bus_the_door_says_so() {
    let bus = Bus::start();
    let message = b"To: a@example.org\nSubject: s\n\nb\n";
    let out = sendmail(&bus, None, &["-t"], message);
    assert_eq!(out.status, 69, "EX_UNAVAILABLE: {out:?}");
    assert!(
        out.stderr
            .contains("org.freedesktop.DBus.Error.ServiceUnknown"),
        "{}",
        out.stderr
    );
    let gone = tempfile::tempdir().unwrap();
    let mut door = std::process::Command::new(postecole_tests::bin("postecole-sendmail"))
        .arg("-t")
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            format!("unix:path={}/no_bus_here", gone.path().display()),
        )
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut door.stdin.take().unwrap(), message).unwrap();
    let out = door.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(69), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot connect to the D-Bus system bus"),
        "{stderr}"
    );
}

#[test]
fn an_oversized_message_is_refused_for_good_and_a_full_queue_for_now() {
    ensure_users();
    let smtp = Smtp::start();
    let (bus, _daemon, account) = relayed_account_as(
        &smtp,
        "[queue]\nmax_message_bytes = 4096\n[limits]\nmax_queued_messages = 1\n",
        Some(USER_ALICE),
        "personal",
        "alice@ecole.fr",
    );
    mailctl(
        &bus,
        Some(USER_ALICE),
        &["account", "default", &account],
        None,
    )
    .out();
    let code_mails = smtp.messages().len();
    // From here on the relay is gone: alice's messages wait in the queue.
    smtp.stop();

    let big = format!(
        "To: a@example.org\nSubject: Gros\n\n{}\n",
        "0123456789\n".repeat(1000)
    );
    let out = sendmail(&bus, Some(USER_ALICE), &["-t", "-i"], big.as_bytes());
    assert_eq!(out.status, 65, "EX_DATAERR, too large for good: {out:?}");
    assert!(
        out.stderr
            .contains(&format!("[{}.TooLarge]", api::ERROR_PREFIX)),
        "{}",
        out.stderr
    );

    let small = b"To: a@example.org\nSubject: Petit\n\nb\n";
    let out = sendmail(&bus, Some(USER_ALICE), &["-t"], small);
    assert_eq!(out.status, 0, "{out:?}");
    let out = sendmail(&bus, Some(USER_ALICE), &["-t"], small);
    assert_eq!(
        out.status, 75,
        "EX_TEMPFAIL, the queue is full for now: {out:?}"
    );
    assert!(
        out.stderr
            .contains(&format!("[{}.QuotaExceeded]", api::ERROR_PREFIX)),
        "{}",
        out.stderr
    );
    assert!(code_mails >= 1);
}
