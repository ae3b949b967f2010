//! mailctl for the people who use it: French on a French locale, sentences that say what to
//! do, exit statuses by kind, JSON errors, accounts by address, decoded archive, merge
//! safety, and no panic when the reader of its output goes away.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use postecole_tests::{
    Bus, Daemon, Smtp, USER_ALICE, active_account, bin, code_in, ensure_users, mailctl,
    relayed_account, shared_bin, wait_state, workspace_root,
};

const LONG: Duration = Duration::from_secs(30);
const ANSWER: &str = "une réponse solide\n";

/// The French catalogue compiled from po/fr.po with msgfmt, as `make` does.
fn locale_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = postecole_tests::shared_tempdir().keep();
        let out = dir.join("fr/LC_MESSAGES");
        std::fs::create_dir_all(&out).unwrap();
        let status = Command::new("msgfmt")
            .arg("--check")
            .arg("-o")
            .arg(out.join("postecole.mo"))
            .arg(workspace_root().join("po/fr.po"))
            .status()
            .expect("msgfmt (Debian package gettext) must be installed");
        assert!(status.success(), "po/fr.po does not compile");
        std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        dir
    })
}

/// What one run of mailctl left: its exit status and both outputs.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs mailctl on `bus` with `env` (a locale, …), as `user` when given, feeding `stdin`.
fn run(bus: &Bus, user: Option<&str>, env: &[(&str, &str)], args: &[&str], stdin: &str) -> Run {
    let mut cmd = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(shared_bin("mailctl"));
            c
        }
        None => Command::new(bin("mailctl")),
    };
    let child = cmd
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env_remove("LANGUAGE")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env("LANG", "C.UTF-8")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child, stdin)
}

/// Types `stdin` into a started mailctl and waits for its end.
fn finish(mut child: std::process::Child, stdin: &str) -> Run {
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A daemon delivering into its local-mail directory, and an active account of `kind`.
fn embedded_account(kind: &str, address: &str) -> (Bus, Daemon, String) {
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, "");
    let account = active_account(&bus, &daemon, None, None, kind, address);
    (bus, daemon, account)
}

fn french() -> Vec<(&'static str, &'static str)> {
    vec![
        ("LANG", "fr_FR.UTF-8"),
        ("POSTECOLE_LOCALEDIR", locale_dir().to_str().unwrap()),
    ]
}

fn english() -> Vec<(&'static str, &'static str)> {
    vec![("POSTECOLE_LOCALEDIR", locale_dir().to_str().unwrap())]
}

#[test]
fn french_locale_gives_french_prompts_errors_and_help() {
    let locales = Command::new("locale").arg("-a").output().unwrap();
    let locales = String::from_utf8_lossy(&locales.stdout).to_lowercase();
    assert!(
        locales.contains("fr_fr.utf8"),
        "fr_FR.UTF-8 must be generated (locales, locale-gen): {locales}"
    );
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, "");
    let fr = french();

    let help = run(&bus, None, &fr, &["--help"], "");
    assert_eq!(help.code, 0);
    assert!(
        help.stdout
            .contains("Envoyer les e-mails de l'école depuis ce poste"),
        "{}",
        help.stdout
    );
    assert!(help.stdout.contains("Code de retour"), "{}", help.stdout);

    let created = run(
        &bus,
        None,
        &fr,
        &[
            "account",
            "create",
            "--kind",
            "personal",
            "--label",
            "Mme Martin",
            "--address",
            "martin@ecole.fr",
        ],
        "",
    );
    assert_eq!(created.code, 0, "{created:?}");
    let id = created.stdout.trim().to_owned();
    let code = code_in(&daemon.local_mail(), &id).unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };

    let refused = run(&bus, None, &fr, &["account", "verify", &id, wrong], "");
    assert_eq!(
        refused.code, 65,
        "a refused code is a data error: {refused:?}"
    );
    assert!(
        refused
            .stderr
            .contains("Le code ou la réponse ne correspond pas"),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("[org.postecole.Mail1.Error.WrongCode]"),
        "{}",
        refused.stderr
    );

    let verified = run(&bus, None, &fr, &["account", "verify", &id, &code], "");
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(
        verified.stderr.contains(&format!(
            "Adresse vérifiée. Étape suivante : mailctl account secure {id}"
        )),
        "{}",
        verified.stderr
    );
    let secured = run(
        &bus,
        None,
        &fr,
        &["account", "secure", &id, "--question", "Mon chat ?"],
        ANSWER,
    );
    assert!(
        secured.stderr.contains("Le compte est actif"),
        "{secured:?}"
    );
    let list = run(&bus, None, &fr, &["account", "list"], "");
    assert!(
        list.stdout.starts_with("ID")
            && list.stdout.contains("DÉFAUT")
            && list.stdout.contains("actif"),
        "{}",
        list.stdout
    );

    let sent = run(
        &bus,
        None,
        &fr,
        &[
            "send",
            "--account",
            "martin@ecole.fr",
            "--to",
            "famille.durand@example.org",
            "--subject",
            "Bilan",
            "--body",
            "Bonjour",
            "--wait",
        ],
        "",
    );
    assert_eq!(sent.code, 0, "{sent:?}");
    assert!(sent.stderr.contains("remis"), "{}", sent.stderr);
    let queue = run(&bus, None, &fr, &["queue", "list"], "");
    assert!(
        queue.stdout.contains("DERNIÈRE RÉPONSE") && queue.stdout.contains("remis"),
        "{}",
        queue.stdout
    );

    // LANGUAGE=fr over the C.UTF-8 locale, as on a machine without fr_FR generated.
    let mut language = english();
    language.push(("LANGUAGE", "fr"));
    let show = run(&bus, None, &language, &["account", "show", "nosuch"], "");
    assert!(
        show.stderr.contains("Aucun compte ni message"),
        "{}",
        show.stderr
    );

    // Without a French locale, the same in English.
    let show = run(&bus, None, &english(), &["account", "show", "nosuch"], "");
    assert!(
        show.stderr.contains("No such account or message"),
        "{}",
        show.stderr
    );
}

#[test]
fn exit_statuses_say_what_kind_of_failure() {
    ensure_users();
    let bus = Bus::start();
    let en = english();

    // No daemon on the bus: unavailable.
    let down = run(&bus, None, &en, &["account", "list"], "");
    assert_eq!(down.code, 69, "{down:?}");

    let daemon = Daemon::start(&bus, "");
    let usage = run(&bus, None, &en, &["account", "nosuchcommand"], "");
    assert_eq!(usage.code, 64, "{usage:?}");
    let usage = run(&bus, None, &en, &["queue", "list", "--state", "lost"], "");
    assert_eq!(usage.code, 64, "{usage:?}");

    let missing = run(&bus, None, &en, &["account", "show", "nosuch"], "");
    assert_eq!(missing.code, 66, "{missing:?}");

    let not_admin = run(
        &bus,
        Some(USER_ALICE),
        &en,
        &[
            "account",
            "create",
            "--kind",
            "establishment",
            "--label",
            "École",
            "--address",
            "ecole@ecole.fr",
        ],
        "",
    );
    assert_eq!(not_admin.code, 77, "{not_admin:?}");
    assert!(
        not_admin.stderr.contains("mailctl account staff"),
        "{}",
        not_admin.stderr
    );

    let id = mailctl(
        &bus,
        None,
        &[
            "account",
            "create",
            "--kind",
            "personal",
            "--label",
            "L",
            "--address",
            "l@ecole.fr",
        ],
        None,
    )
    .out();
    let too_soon = run(&bus, None, &en, &["account", "resend", &id], "");
    assert_eq!(too_soon.code, 75, "asked again too soon: {too_soon:?}");
    let wrong_step = run(
        &bus,
        None,
        &en,
        &["account", "secure", &id, "--question", "Q ?"],
        ANSWER,
    );
    assert_eq!(wrong_step.code, 65, "{wrong_step:?}");
    assert!(
        wrong_step
            .stderr
            .contains(&format!("mailctl account show {id}")),
        "the hint names the account: {}",
        wrong_step.stderr
    );

    // Errors as JSON on standard output, with the same status.
    let json = run(
        &bus,
        None,
        &en,
        &["account", "show", "nosuch", "--json"],
        "",
    );
    assert_eq!(json.code, 66);
    let error: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(error["error"]["name"], "org.postecole.Mail1.Error.NotFound");
    assert_eq!(error["error"]["status"], 66);
    assert!(error["error"]["message"].as_str().unwrap().len() > 20);
    drop(daemon);
}

#[test]
fn queue_list_into_a_closed_pipe_ends_quietly() {
    let (bus, _daemon, account) = embedded_account("personal", "moi@ecole.fr");
    mailctl(
        &bus,
        None,
        &[
            "send",
            "--account",
            &account,
            "--to",
            "a@example.org",
            "--subject",
            "S",
            "--body",
            "B",
        ],
        None,
    )
    .out();
    // The reader is gone before mailctl writes a byte, as `| head -0` would leave it.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = Command::new(bin("mailctl"))
        .args(["queue", "list"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[test]
fn accounts_by_address_default_marked_and_queue_filters() {
    let (bus, _daemon, account) = embedded_account("establishment", "secretariat@ecole.fr");
    let en = english();
    let set = run(
        &bus,
        None,
        &en,
        &["account", "default", "Secretariat@ecole.fr"],
        "",
    );
    assert_eq!(set.code, 0, "{set:?}");
    let list: serde_json::Value =
        serde_json::from_str(&mailctl(&bus, None, &["account", "list", "--json"], None).out())
            .unwrap();
    assert_eq!(list[0]["id"], account.as_str());
    assert_eq!(list[0]["default"], true, "{list}");
    let table = run(&bus, None, &en, &["account", "list"], "");
    assert!(
        table.stdout.lines().nth(1).unwrap().ends_with('*'),
        "{}",
        table.stdout
    );

    let sent = run(
        &bus,
        None,
        &en,
        &[
            "send",
            "--account",
            "secretariat@ecole.fr",
            "--to",
            "famille.martin@example.org",
            "--subject",
            "Sortie",
            "--body",
            "Bonjour",
            "--json",
        ],
        "",
    );
    assert_eq!(sent.code, 0, "{sent:?}");
    let id = serde_json::from_str::<serde_json::Value>(&sent.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_state(&bus, &id, "delivered", LONG);
    mailctl(
        &bus,
        None,
        &[
            "send",
            "--to",
            "famille.durand@example.org",
            "--subject",
            "Autre",
            "--body",
            "B",
        ],
        None,
    )
    .out();

    let filtered = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["queue", "list", "--json"];
        all.extend_from_slice(args);
        let out = mailctl(&bus, None, &all, None).out();
        serde_json::from_str::<Vec<serde_json::Value>>(&out)
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let mine = filtered(&["--account", "secretariat@ecole.fr", "--since", "1h"]);
    assert!(mine.contains(&id), "{mine:?}");
    assert!(filtered(&["--since", "2999-01-01"]).is_empty());
    assert!(filtered(&["--state", "failed,cancelled"]).is_empty());
    assert!(filtered(&["--state", "delivered"]).contains(&id));

    let nobody = run(
        &bus,
        None,
        &en,
        &["queue", "list", "--account", "nobody@ecole.fr"],
        "",
    );
    assert_eq!(nobody.code, 66, "{nobody:?}");

    let shown = run(&bus, None, &en, &["queue", "show", &id], "");
    assert!(
        shown
            .stdout
            .lines()
            .any(|l| l.starts_with("next try") && l.ends_with(" -")),
        "a delivered message has no next try: {}",
        shown.stdout
    );
}

#[test]
fn archive_show_decodes_saves_attachments_and_export_never_overwrites() {
    let (bus, _daemon, account) = embedded_account("personal", "moi@ecole.fr");
    let dir = tempfile::tempdir().unwrap();
    let pdf = dir.path().join("bilan-léa.pdf");
    let pdf_bytes: Vec<u8> = (0..120_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&pdf, &pdf_bytes).unwrap();
    let id = mailctl(
        &bus,
        None,
        &[
            "send",
            "--account",
            "moi@ecole.fr",
            "--to",
            "famille@example.org",
            "--subject",
            "Bilan de Léa — 1er trimestre",
            "--body",
            "Bonjour, voici le bilan de Léa.",
            "--attach",
            pdf.to_str().unwrap(),
        ],
        None,
    )
    .out();
    wait_state(&bus, &id, "delivered", LONG);
    let en = english();
    let list = run(
        &bus,
        None,
        &en,
        &["archive", "list", &account, "--json"],
        ANSWER,
    );
    let archived: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let entry = archived
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["subject"] == "Bilan de Léa — 1er trimestre")
        .unwrap_or_else(|| panic!("{archived}"));
    assert!(entry["to"].is_array(), "`to` is an array: {entry}");
    let msgid = entry["id"].as_str().unwrap();

    let shown = run(
        &bus,
        None,
        &en,
        &["archive", "show", &account, msgid],
        ANSWER,
    );
    assert_eq!(shown.code, 0, "{shown:?}");
    assert!(
        shown
            .stdout
            .contains("Subject: Bilan de Léa — 1er trimestre"),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("Bonjour, voici le bilan de Léa."),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains("bilan-léa.pdf"), "{}", shown.stdout);
    assert!(
        shown.stdout.len() < 2000,
        "no base64 dump: {} bytes",
        shown.stdout.len()
    );

    let saved = dir.path().join("saved");
    let args = [
        "archive",
        "show",
        &account,
        msgid,
        "--save-attachments",
        saved.to_str().unwrap(),
    ];
    assert_eq!(run(&bus, None, &en, &args, ANSWER).code, 0);
    assert_eq!(
        std::fs::read(saved.join("bilan-léa.pdf")).unwrap(),
        pdf_bytes
    );
    let again = run(&bus, None, &en, &args, ANSWER);
    assert_eq!(again.code, 73, "never over an existing file: {again:?}");

    let mbox = dir.path().join("envois.mbox");
    std::fs::write(&mbox, "précieux").unwrap();
    let export = [
        "archive",
        "export",
        &account,
        "--output",
        mbox.to_str().unwrap(),
    ];
    let refused = run(&bus, None, &en, &export, ANSWER);
    assert_eq!(refused.code, 73, "{refused:?}");
    assert_eq!(std::fs::read_to_string(&mbox).unwrap(), "précieux");
    std::fs::remove_file(&mbox).unwrap();
    let written = run(&bus, None, &french(), &export, ANSWER);
    assert_eq!(written.code, 0, "{written:?}");
    let count = archived.as_array().unwrap().len();
    // Plural forms: "1 message écrit", "3 messages écrits".
    let expected = if count == 1 {
        "1 message écrit dans".to_owned()
    } else {
        format!("{count} messages écrits dans")
    };
    assert!(written.stderr.contains(&expected), "{}", written.stderr);
}

#[test]
fn send_wait_gives_up_at_its_timeout_and_a_dead_relay_still_gives_the_account_id() {
    let smtp = Smtp::start();
    let (bus, _daemon, account) = relayed_account(
        &smtp,
        "[queue]\nmin_backoff_secs = 60\n",
        "personal",
        "moi@ecole.fr",
    );
    let port = smtp.stop();
    let en = english();
    let start = Instant::now();
    let waited = run(
        &bus,
        None,
        &en,
        &[
            "send",
            "--account",
            &account,
            "--to",
            "a@example.org",
            "--subject",
            "S",
            "--body",
            "B",
            "--wait",
            "--timeout",
            "3",
            "--json",
        ],
        "",
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_eq!(waited.code, 75, "{waited:?}");
    let error: serde_json::Value = serde_json::from_str(&waited.stdout).unwrap();
    assert_eq!(error["error"]["status"], 75, "{error}");
    let id = error["error"]["done"]["id"].as_str().unwrap();
    assert!(waited.stderr.contains("stays queued"), "{}", waited.stderr);
    let waiting = mailctl(
        &bus,
        None,
        &[
            "queue",
            "list",
            "--to",
            "A@EXAMPLE.ORG",
            "--state",
            "waiting",
            "--json",
        ],
        None,
    )
    .out();
    assert!(waiting.contains(id), "{waiting}");

    let created = run(
        &bus,
        None,
        &en,
        &[
            "account",
            "create",
            "--kind",
            "personal",
            "--label",
            "L",
            "--address",
            "l@ecole.fr",
        ],
        "",
    );
    assert_eq!(created.code, 75, "{created:?}");
    let new = created.stdout.trim();
    assert!(
        !new.is_empty(),
        "the id of the created account: {created:?}"
    );
    assert!(
        created
            .stderr
            .contains(&format!("mailctl account verify {new} CODE")),
        "{}",
        created.stderr
    );
    mailctl(&bus, None, &["account", "show", new], None).out();

    // The relay is back: one command sends what waits, without the minute of pause.
    let _smtp = Smtp::start_on(port, &[]);
    let retried = run(
        &bus,
        None,
        &en,
        &["queue", "retry", "--all", "--account", "moi@ecole.fr"],
        "",
    );
    assert_eq!(retried.code, 0, "{retried:?}");
    assert!(retried.stderr.contains("queued again"), "{retried:?}");
    wait_state(&bus, id, "delivered", Duration::from_secs(20));
}

#[test]
fn merge_asks_before_leaving_families_out_and_says_partly_sent() {
    let smtp = Smtp::start();
    let (bus, _daemon, account) =
        relayed_account(&smtp, "", "establishment", "secretariat@ecole.fr");
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("eleve;periode;email;fichier\n");
    for n in 0..3 {
        let email = if n == 1 {
            "pas-une-adresse".to_owned()
        } else {
            format!("famille{n}@example.org")
        };
        csv.push_str(&format!("Élève {n};T1;{email};bilan-{n}.pdf\n"));
        std::fs::write(dir.path().join(format!("bilan-{n}.pdf")), "%PDF-1.4\n").unwrap();
    }
    let path = dir.path().join("familles.csv");
    std::fs::write(&path, csv).unwrap();
    let csv_path = path.to_str().unwrap();
    let en = english();
    let base = [
        "merge",
        "--account",
        &account,
        "--template",
        "bilan",
        "--csv",
        csv_path,
        "--attach-column",
        "fichier",
    ];

    let shown = run(
        &bus,
        None,
        &en,
        &[
            "template",
            "show",
            "bilan",
            "--account",
            "secretariat@ecole.fr",
        ],
        "",
    );
    assert!(
        shown.stdout.contains("subject") && shown.stdout.contains("{{ eleve }}"),
        "the text, each variable standing for itself: {}",
        shown.stdout
    );

    let preview = run(
        &bus,
        None,
        &en,
        &[&base[..], &["--dry-run", "--preview", "3"]].concat(),
        "",
    );
    assert_eq!(preview.code, 0, "{preview:?}");
    assert!(
        preview.stdout.contains("Attachment: ") && preview.stdout.contains("bilan-2.pdf"),
        "{}",
        preview.stdout
    );

    // Not on a terminal and no --yes: nothing is sent.
    let before = smtp.messages().len();
    let held = run(&bus, None, &en, &base, "");
    assert_eq!(held.code, 65, "{held:?}");
    assert!(held.stderr.contains("--yes"), "{}", held.stderr);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(smtp.messages().len(), before, "nothing was sent");

    let partly = run(&bus, None, &french(), &[&base[..], &["--yes"]].concat(), "");
    assert_eq!(partly.code, 3, "partly sent: {partly:?}");
    assert!(
        partly
            .stderr
            .contains("envoi partiel : 2 familles ont reçu le message"),
        "{}",
        partly.stderr
    );
}

#[test]
fn delete_says_what_went_with_the_account() {
    let (bus, _daemon, account) = embedded_account("personal", "moi@ecole.fr");
    let deleted = run(
        &bus,
        None,
        &french(),
        &["account", "delete", "moi@ecole.fr", "--yes"],
        "",
    );
    assert_eq!(deleted.code, 0, "{deleted:?}");
    assert!(
        deleted.stderr.contains(&format!(
            "Le compte {account} (moi@ecole.fr (Secrétariat)) a été supprimé de ce poste. Son archive des e-mails envoyés est gardée"
        )),
        "{}",
        deleted.stderr
    );
}

/// `mailctl ARGS` on a terminal (util-linux `script` gives it one), typing `typed`.
fn on_terminal(bus: &Bus, args: &str, typed: &str) -> Run {
    let child = Command::new("script")
        .args([
            "-qec",
            &format!("{} {args}", bin("mailctl").display()),
            "/dev/null",
        ])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    finish(child, typed)
}

#[test]
fn delete_on_a_terminal_asks_first() {
    let (bus, _daemon, account) = embedded_account("personal", "moi@ecole.fr");
    let kept = on_terminal(&bus, &format!("account delete {account}"), "n\n");
    assert_eq!(kept.code, 65, "{kept:?}");
    assert!(
        kept.stdout
            .contains("its archive of sent mail stays on this PC")
            && kept.stdout.contains("nothing was deleted"),
        "{}",
        kept.stdout
    );
    mailctl(&bus, None, &["account", "show", &account], None).out();
    let gone = on_terminal(&bus, "account delete moi@ecole.fr", "y\n");
    assert_eq!(gone.code, 0, "{gone:?}");
    mailctl(&bus, None, &["account", "show", &account], None).err("NotFound");
}
