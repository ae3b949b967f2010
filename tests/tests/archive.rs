//! The recovery file and the encrypted archive: what the confirmation mail carries, what is
//! left on disk, who can read sent mail and with what, and the lock on wrong answers.

use std::time::Duration;

use postecole_tests::recovery::recovery_attachment;
use postecole_tests::{
    Bus, Daemon, Smtp, create, mailctl, send_mail, verify, wait_for, wait_state,
};

const ANSWER: &str = "Clermont-Ferrand";
const LONG: Duration = Duration::from_secs(30);

struct Setup {
    bus: Bus,
    smtp: Smtp,
    daemon: Daemon,
    account: String,
    key_file: tempfile::NamedTempFile,
}

fn setup() -> Setup {
    setup_with("")
}

fn setup_with(extra_config: &str) -> Setup {
    let bus = Bus::start();
    let smtp = Smtp::start();
    let daemon = Daemon::start(&bus, &format!("{}\n{extra_config}", smtp.relay_config()));
    let account = create(
        &bus,
        None,
        "establishment",
        "Secrétariat",
        "secretariat@ecole.fr",
    )
    .out();
    verify(&bus, None, &smtp.messages(), &account);
    mailctl(
        &bus,
        None,
        &["account", "secure", &account, "--question", "Ville ?"],
        Some(&format!("{ANSWER}\n")),
    )
    .out();
    wait_for("the confirmation mail", LONG, || smtp.messages().len() == 2);
    let confirmation = smtp.messages().pop().unwrap();
    let file = recovery_attachment(&confirmation);
    assert!(file.contains(&format!("account: {account}")), "{file}");
    assert!(
        file.starts_with("# Clé de récupération postecole"),
        "{file}"
    );
    // Both the file and the mail say what to do with it.
    let recover = format!("mailctl account recover {account} --key cleRecuperation.crbee");
    assert!(file.contains(&recover), "{file}");
    let body = confirmation.replace("=\r\n", "");
    assert!(body.contains(&recover), "{confirmation}");
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), &file).unwrap();
    Setup {
        bus,
        smtp,
        daemon,
        account,
        key_file,
    }
}

fn send(s: &Setup, subject: &str, body: &str) -> String {
    let id = send_mail(&s.bus, &s.account, &["famille@example.org"], subject, body);
    wait_state(&s.bus, &id, "delivered", LONG);
    id
}

fn list_with_key(s: &Setup, key: &std::path::Path) -> postecole_tests::Ctl {
    mailctl(
        &s.bus,
        None,
        &[
            "archive",
            "list",
            &s.account,
            "--key",
            key.to_str().unwrap(),
        ],
        None,
    )
}

fn list_with_answer(s: &Setup, answer: &str) -> postecole_tests::Ctl {
    mailctl(
        &s.bus,
        None,
        &["archive", "list", &s.account, "--json"],
        Some(&format!("{answer}\n")),
    )
}

#[test]
fn sent_mail_is_sealed_and_opens_with_answer_or_key_file() {
    let s = setup();
    let marker = "MARQUEUR-7f3a9c";
    let id = send(
        &s,
        &format!("Identifiants {marker}"),
        &format!("Mot de passe provisoire {marker}-corps"),
    );
    assert!(
        s.smtp
            .messages()
            .iter()
            .any(|m| m.contains(&format!("{marker}-corps"))),
        "really sent"
    );

    // Nothing of the subject or body anywhere under the state directory. `delivered` shows in
    // the store a moment before the bytes are punched out of the spool (after the syncs).
    let has_marker = |bytes: &[u8]| bytes.windows(marker.len()).any(|w| w == marker.as_bytes());
    wait_for("the spool to free the delivered message", LONG, || {
        s.daemon.state_bytes().iter().all(|(_, b)| !has_marker(b))
    });
    for (path, bytes) in s.daemon.state_bytes() {
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "marker found in {}",
            path.display()
        );
    }
    assert!(!s.daemon.state_dir.join("local-mail").exists());
    // And no copy of the recovery key.
    let key_line = std::fs::read_to_string(s.key_file.path()).unwrap();
    let key_hex = key_line
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .unwrap()
        .to_owned();
    for (path, bytes) in s.daemon.state_bytes() {
        assert!(
            !bytes
                .windows(key_hex.len())
                .any(|w| w == key_hex.as_bytes()),
            "recovery key in {}",
            path.display()
        );
    }

    let list: serde_json::Value =
        serde_json::from_str(&list_with_answer(&s, ANSWER).out()).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["subject"], format!("Identifiants {marker}"));
    // The answer is normalised: case and blanks do not matter.
    list_with_answer(&s, "  clermont-FERRAND ").out();
    list_with_answer(&s, "Paris, France").err("WrongCode");

    let key = s.key_file.path().to_str().unwrap();
    let shown = mailctl(
        &s.bus,
        None,
        &["archive", "show", &s.account, &id, "--key", key],
        None,
    )
    .out();
    assert!(shown.contains(&format!("{marker}-corps")), "{shown}");
    let out = tempfile::tempdir().unwrap();
    let mbox = out.path().join("envois.mbox");
    mailctl(
        &s.bus,
        None,
        &[
            "archive",
            "export",
            &s.account,
            "--output",
            mbox.to_str().unwrap(),
            "--key",
            key,
        ],
        None,
    )
    .out();
    let exported = std::fs::read_to_string(&mbox).unwrap();
    assert!(
        exported.starts_with("From secretariat@ecole.fr "),
        "{exported}"
    );
    assert!(exported.contains(&format!("{marker}-corps")));

    // A truncated or mistyped file is refused with a clear message.
    let text = std::fs::read_to_string(s.key_file.path()).unwrap();
    let truncated = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(truncated.path(), &text[..text.len() / 2]).unwrap();
    let e = list_with_key(&s, truncated.path()).err("InvalidInput");
    assert!(e.contains("truncated") || e.contains("checksum"), "{e}");
    let typo = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        typo.path(),
        // The key's first byte changed, on its own line (the comments name the account).
        text.replacen(
            &format!("key: {}", &key_hex[..2]),
            if &key_hex[..2] == "00" {
                "key: 11"
            } else {
                "key: 00"
            },
            1,
        ),
    )
    .unwrap();
    let e = list_with_key(&s, typo.path()).err("InvalidInput");
    assert!(e.contains("checksum"), "{e}");
}

#[test]
fn recovery_sets_a_new_secret_and_keeps_old_mail_readable() {
    let s = setup();
    let id = send(&s, "Bilan avant", "corps avant");
    let key = s.key_file.path().to_str().unwrap();
    mailctl(
        &s.bus,
        None,
        &[
            "account",
            "recover",
            &s.account,
            "--key",
            key,
            "--question",
            "Nouvelle ?",
        ],
        Some("Vercingétorix 52\n"),
    )
    .out();
    list_with_answer(&s, ANSWER).err("WrongCode");
    let list: serde_json::Value =
        serde_json::from_str(&list_with_answer(&s, "vercingétorix 52").out()).unwrap();
    assert_eq!(
        list[0]["id"],
        id.as_str(),
        "mail from before the recovery is readable"
    );
    send(&s, "Bilan après", "corps après");
    let list: serde_json::Value =
        serde_json::from_str(&list_with_answer(&s, "Vercingétorix 52").out()).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    // The file stays valid; changing the secret needs the current answer.
    list_with_key(&s, s.key_file.path()).out();
    mailctl(
        &s.bus,
        None,
        &["account", "secret", &s.account, "--question", "Q ?"],
        Some("mauvaise réponse\nautre réponse\n"),
    )
    .err("WrongCode");
    mailctl(
        &s.bus,
        None,
        &["account", "secret", &s.account, "--question", "Q ?"],
        Some("Vercingétorix 52\nune autre réponse\n"),
    )
    .out();
    list_with_answer(&s, "une autre réponse").out();
    let shown: serde_json::Value = serde_json::from_str(
        &mailctl(
            &s.bus,
            None,
            &["account", "show", &s.account, "--json"],
            None,
        )
        .out(),
    )
    .unwrap();
    assert_eq!(shown["question"], "Q ?");
}

#[test]
fn a_new_recovery_file_is_mailed_and_the_old_one_stops_working() {
    let s = setup();
    let id = send(&s, "Bilan", "corps");
    mailctl(
        &s.bus,
        None,
        &["account", "new-key", &s.account],
        Some("mauvaise réponse\n"),
    )
    .err("WrongCode");
    mailctl(
        &s.bus,
        None,
        &["account", "new-key", &s.account],
        Some(&format!("{ANSWER}\n")),
    )
    .out();
    let carrying = || -> Vec<String> {
        s.smtp
            .messages()
            .into_iter()
            .filter(|m| m.contains("filename=\"cleRecuperation.crbee\""))
            .collect()
    };
    wait_for("the new recovery file", LONG, || carrying().len() == 2);
    let mail = carrying().pop().unwrap();
    let file = recovery_attachment(&mail);
    assert_ne!(file, std::fs::read_to_string(s.key_file.path()).unwrap());
    list_with_key(&s, s.key_file.path()).err("WrongCode");
    let new_key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(new_key.path(), &file).unwrap();
    let listed = list_with_key(&s, new_key.path()).out();
    assert!(
        listed.contains(&id),
        "the archive opens with the new file: {listed}"
    );
    list_with_answer(&s, ANSWER).out();
}

#[test]
fn wrong_answers_lock_the_archive_across_restarts_and_are_audited() {
    let mut s = setup();
    send(&s, "Un message", "corps");
    for _ in 0..5 {
        list_with_answer(&s, "mauvaise réponse").err("WrongCode");
    }
    let e = list_with_answer(&s, ANSWER).err("TooManyAttempts");
    assert!(e.contains("locked"), "{e}");
    list_with_key(&s, s.key_file.path()).err("TooManyAttempts");
    s.daemon.stop();
    s.daemon.restart();
    list_with_answer(&s, ANSWER).err("TooManyAttempts");

    let audit: serde_json::Value =
        serde_json::from_str(&mailctl(&s.bus, None, &["audit", "--json"], None).out()).unwrap();
    let actions: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("create", "ok"),
        ("verify", "ok"),
        ("secret-set", "ok"),
        ("archive-list", "refused"),
        ("archive-list", "locked"),
    ] {
        assert!(
            actions.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} missing in {actions:?}"
        );
    }
    assert!(actions.iter().any(|(a, _)| a == "lock"), "{actions:?}");
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["user"] == "root")
    );
    let text = audit.to_string().to_lowercase();
    assert!(
        !text.contains("clermont") && !text.contains("mauvaise"),
        "an answer is in the audit log"
    );
    assert!(!s.daemon.log().to_lowercase().contains("clermont"));
}

/// "Was my message to the Martin family sent, and what did the relay say?": one command, even
/// once the queue has pruned the message's record (the archive keeps its place and the reply).
#[test]
fn one_command_answers_where_a_message_to_a_family_went_even_after_pruning() {
    let s =
        setup_with("[queue]\nmin_backoff_secs = 1\nmax_lifetime_secs = 2\nretention_secs = 2\n");
    let id = send_mail(
        &s.bus,
        &s.account,
        &["famille.martin@example.org"],
        "Sortie au musée",
        "Bonjour",
    );
    wait_state(&s.bus, &id, "delivered", LONG);
    send(&s, "Autre famille", "x");
    let listed = mailctl(&s.bus, None, &["queue", "list", "--to", "martin"], None);
    assert!(
        listed
            .stderr
            .contains("mailctl archive list ACCOUNT --to martin"),
        "{listed:?}"
    );
    // The record goes before the pruning's log line is written: both are waited for.
    wait_for("the record pruned", LONG, || {
        !mailctl(&s.bus, None, &["queue", "show", &id], None).ok
            && s.daemon.log().contains("old message records pruned")
    });

    let answer = mailctl(
        &s.bus,
        None,
        &["archive", "list", &s.account, "--to", "MARTIN", "--json"],
        Some(&format!("{ANSWER}\n")),
    );
    let found: Vec<serde_json::Value> = serde_json::from_str(&answer.out()).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["id"], id.as_str());
    assert_eq!(
        found[0]["to"],
        serde_json::json!(["famille.martin@example.org"])
    );
    assert_eq!(found[0]["state"], "delivered");
    assert!(
        found[0]["reply"].as_str().unwrap().starts_with("250"),
        "{found:?}"
    );
    let table = mailctl(
        &s.bus,
        None,
        &["archive", "list", &s.account, "--to", "martin"],
        Some(&format!("{ANSWER}\n")),
    )
    .out();
    assert!(
        table.contains("Sortie au musée") && table.contains("250"),
        "{table}"
    );
    assert!(!table.contains("Autre famille"), "{table}");
}
