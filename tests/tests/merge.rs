//! Templates and mail-merge: one message per family, each with its own PDF, from a CSV export.

use std::path::{Path, PathBuf};
use std::time::Duration;

use postecole_tests::{
    Bus, Daemon, Smtp, local_account, mailctl, merge, queue_json, relayed_account,
};

fn setup() -> (Bus, Smtp, Daemon, String) {
    let smtp = Smtp::start();
    let (bus, daemon, account) =
        relayed_account(&smtp, "", "establishment", "secretariat@ecole.fr");
    (bus, smtp, daemon, account)
}

/// A school software's export of `n` families in `dir`, each with its own small PDF beside it;
/// `row(n)` gives a family's address and the file its line names. The CSV's path.
fn export(dir: &Path, n: usize, row: impl Fn(usize) -> (String, String)) -> PathBuf {
    let mut csv = String::from("eleve;periode;email;fichier\n");
    for n in 0..n {
        let (email, file) = row(n);
        csv.push_str(&format!("Élève {n};du 1er trimestre;{email};{file}\n"));
        std::fs::write(
            dir.join(format!("bilan-{n}.pdf")),
            format!("%PDF-1.4\n% BILAN-FAMILLE-{n}-FIN\n%%EOF\n"),
        )
        .unwrap();
    }
    let path = dir.join("familles.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

#[test]
fn two_hundred_families_each_get_their_own_report() {
    let (bus, smtp, _daemon, account) = setup();
    let dir = tempfile::tempdir().unwrap();
    let path = export(dir.path(), 200, |n| {
        let email = match n {
            3 => String::new(),
            7 => "pas-une-adresse".to_owned(),
            _ => format!("famille{n}@example.org"),
        };
        let file = if n == 11 {
            "absent.pdf".to_owned()
        } else {
            format!("bilan-{n}.pdf")
        };
        (email, file)
    });
    let args = ["--attach-column", "fichier", "--json"];

    // Dry run: the report, nothing queued.
    let dry = [&args[..], &["--dry-run"]].concat();
    let report: serde_json::Value =
        serde_json::from_str(&merge(&bus, &account, "bilan", &path, &dry).out()).unwrap();
    assert_eq!(report["refused"], 3, "{report}");
    assert_eq!(report["queued"], 197, "{report}");
    let before = queue_json(&bus, None).len();

    // Rows are refused: a script sends to the others with --yes, and learns it was partly sent.
    let yes = [&args[..], &["--yes"]].concat();
    let out = merge(&bus, &account, "bilan", &path, &yes);
    assert!(!out.ok, "partly sent is not success: {}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (report["delivered"].as_u64(), report["refused"].as_u64()),
        (Some(197), Some(3)),
        "{report}"
    );
    let why: Vec<(u64, String)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "refused")
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(why[0], (5, "no address".to_owned()), "{why:?}");
    assert!(
        why[1].0 == 9 && why[1].1.contains("pas-une-adresse"),
        "{why:?}"
    );
    assert!(why[2].0 == 13 && why[2].1.contains("absent.pdf"), "{why:?}");
    assert_eq!(queue_json(&bus, None).len(), before + 197);

    // The right file to the right family, and no family sees another's address.
    let mails = smtp.messages();
    let mut seen = 0;
    for mail in &mails {
        let Some(to) = mail
            .lines()
            .find_map(|l| l.strip_prefix("X-Envelope-To: famille"))
        else {
            continue;
        };
        let n: usize = to.trim_end_matches("@example.org").parse().unwrap();
        let (_, file) = postecole_tests::attachment(mail, &format!("bilan-{n}.pdf"));
        assert!(
            String::from_utf8_lossy(&file).contains(&format!("BILAN-FAMILLE-{n}-FIN")),
            "family {n} got another file"
        );
        assert_eq!(
            mail.matches("@example.org").count(),
            2,
            "only its own address (envelope and To)"
        );
        seen += 1;
    }
    assert_eq!(seen, 197);
}

/// Delivered as fast as the daemon can (into local files), a thousand families' changes are
/// announced hundreds at a time while `mailctl merge` makes its calls: zbus keeps 64 signals
/// for a stream nobody reads and then stops reading the connection, replies included, so
/// signals read only between calls held the merge up for ever.
#[test]
fn a_thousand_families_are_followed_to_the_end() {
    let (bus, _daemon, account) = local_account("establishment", "secretariat@ecole.fr");
    let dir = tempfile::tempdir().unwrap();
    let path = export(dir.path(), 1000, |n| {
        (format!("famille{n}@example.org"), format!("bilan-{n}.pdf"))
    });
    let out = merge(
        &bus,
        &account,
        "bilan",
        &path,
        &["--attach-column", "fichier", "--json"],
    );
    assert!(out.ok, "{}{}", out.stdout, out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["delivered"], 1000, "{report}");
}

#[test]
fn windows_1252_export_and_preview() {
    let (bus, _smtp, _daemon, account) = setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absences.csv");
    // "Léa" and "Zoé" in Windows-1252, as a spreadsheet export writes them.
    let mut bytes = b"eleve;classe;dates;contact;email\n".to_vec();
    bytes.extend_from_slice(b"L\xe9a;CM2;12 mars;vie.scolaire@ecole.fr;parents.lea@example.org\n");
    bytes.extend_from_slice(b"Zo\xe9;CM1;13 mars;vie.scolaire@ecole.fr;parents.zoe@example.org\n");
    std::fs::write(&path, bytes).unwrap();
    let out = merge(
        &bus,
        &account,
        "absence",
        &path,
        &["--dry-run", "--preview", "2"],
    )
    .out();
    assert!(
        out.contains("Subject: Absence de Léa (CM2) : justificatif demandé"),
        "{out}"
    );
    assert!(out.contains("Zoé") && out.contains("13 mars"), "{out}");
    assert!(out.contains("To: parents.lea@example.org"), "{out}");
}

#[test]
fn a_missing_variable_refuses_the_whole_batch() {
    let (bus, smtp, _daemon, account) = setup();
    postecole_tests::wait_for("the confirmation mail", Duration::from_secs(10), || {
        smtp.messages().len() == 2
    });
    let before = smtp.messages().len();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identifiants.csv");
    std::fs::write(
        &path,
        "eleve,url,identifiant,mot_de_passe,email\n\
         Léa,https://ent.example.fr,lmartin,Xy7!pq,lea@example.org\n\
         Tom,https://ent.example.fr,tdurand,,tom@example.org\n",
    )
    .unwrap();
    let e = merge(&bus, &account, "identifiants", &path, &[]).err("InvalidInput");
    assert!(
        e.contains("row 2") && e.contains("mot_de_passe") && e.contains("nothing was sent"),
        "{e}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(smtp.messages().len(), before, "nothing sent");
    // A column the template needs is missing altogether: said before anything is asked.
    std::fs::write(&path, "eleve,email\nLéa,lea@example.org\n").unwrap();
    let out = merge(&bus, &account, "identifiants", &path, &[]);
    assert!(
        !out.ok && out.stderr.contains("no column `url`"),
        "{}",
        out.stderr
    );
}

#[test]
fn templates_are_listed_with_their_variables() {
    let (bus, _smtp, _daemon, _account) = setup();
    let list: serde_json::Value =
        serde_json::from_str(&mailctl(&bus, None, &["template", "list", "--json"], None).out())
            .unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["absence", "bilan", "identifiants"]);
    assert_eq!(
        list[2]["variables"],
        serde_json::json!(["eleve", "url", "identifiant", "mot_de_passe"])
    );
    let shown = mailctl(&bus, None, &["template", "show", "bilan"], None).out();
    assert!(shown.contains("one per family"), "{shown}");
    // Its text too, variables as written, with no account to render it with.
    assert!(shown.contains("{{ eleve }}"), "{shown}");
}

/// A line break inside a CSV field would make a header of two lines: that row is refused, and
/// named, by the dry run and by the real run alike, and the other families still get theirs.
#[test]
fn a_line_break_in_a_field_refuses_that_row_by_name_in_the_dry_run_too() {
    let (bus, smtp, _daemon, account) = setup();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identifiants.csv");
    std::fs::write(
        &path,
        "eleve,url,identifiant,mot_de_passe,email\n\
         Léa,https://ent.example.fr,lmartin,Xy7!pq,lea@example.org\n\
         \"Tom\nBcc: tous@example.org\",https://ent.example.fr,tdurand,Ab3?rt,tom@example.org\n\
         Zoé,https://ent.example.fr,zpetit,Cd5%uv,zoe@example.org\n",
    )
    .unwrap();
    let refused_rows = |stdout: &str| -> Vec<(u64, String)> {
        let report: serde_json::Value = serde_json::from_str(stdout).unwrap();
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "refused")
            .map(|r| (r["line"].as_u64().unwrap(), r["detail"].to_string()))
            .collect()
    };
    let dry = merge(
        &bus,
        &account,
        "identifiants",
        &path,
        &["--json", "--dry-run"],
    );
    let refused = refused_rows(&dry.stdout);
    assert_eq!(refused.len(), 1, "{}", dry.stdout);
    assert!(refused[0].1.contains("line break"), "{refused:?}");

    let real = merge(&bus, &account, "identifiants", &path, &["--json", "--yes"]);
    assert_eq!(refused_rows(&real.stdout), refused, "{}", real.stderr);
    postecole_tests::wait_for("two families' mail", Duration::from_secs(20), || {
        let mails = smtp.messages();
        mails.iter().any(|m| m.contains("lea@example.org"))
            && mails.iter().any(|m| m.contains("zoe@example.org"))
    });
    assert!(
        !smtp
            .messages()
            .iter()
            .any(|m| m.contains("tous@example.org"))
    );
}
