//! End to end, as a person would: the real window under Xvfb, driven through AT-SPI by dogtail
//! (`e2e.py`), against a private system bus, the real `postecoled` and aiosmtpd. Screenshots of
//! every step land in `target/desktop-e2e/` and are read back by OCR for their French text.

use std::process::Command;

use postecole_tests::{Bus, Daemon, Smtp, USER_ALICE, Xvfb, api, ensure_users, workspace_root};

/// A small but real PDF, to attach as a report card.
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n";

#[test]
fn set_up_both_kinds_of_account_then_send_and_follow_a_pdf() {
    ensure_users();
    let mailbox = Smtp::start();
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, &mailbox.relay_config());
    let x = Xvfb::start();
    let shots = workspace_root().join("target/desktop-e2e");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let files = tempfile::tempdir().unwrap();
    let pdf = files.path().join("bulletin.pdf");
    std::fs::write(&pdf, PDF).unwrap();
    let csv = files.path().join("familles.csv");
    // As a French spreadsheet exports it: semicolons, Windows-1252.
    std::fs::write(
        &csv,
        b"email;eleve;periode;bulletin\r\nfamille.petit@example.org;L\xe9a;premier trimestre;bulletin.pdf\r\npas-une-adresse;Tom;premier trimestre;bulletin.pdf\r\n",
    )
    .unwrap();

    let status = Command::new("dbus-run-session")
        .arg("--")
        .arg("/usr/bin/python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e.py"))
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("DISPLAY", &x.display)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env("APP", env!("CARGO_BIN_EXE_postecole-mail"))
        .env("MAILDIR", mailbox.maildir())
        .env("SHOTS", &shots)
        .env("PDF", &pdf)
        .env("CSV", &csv)
        .env("STAFF", USER_ALICE)
        .env("LANG", "fr_FR.UTF-8")
        .env("LANGUAGE", "fr")
        .env("LC_ALL", "fr_FR.UTF-8")
        .env("GDK_DEBUG", "gl-disable")
        .env("GSK_RENDERER", "cairo")
        .env("NO_AT_BRIDGE", "0")
        .status()
        .expect("dbus-run-session (package dbus-bin) must be installed");
    assert!(
        status.success(),
        "the window did not show what a person expects (screenshots in {}); daemon log:\n{}",
        shots.display(),
        daemon.log()
    );

    // What the window did, as the daemon and the SMTP server saw it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let accounts = runtime.block_on(async {
        let conn = bus.connect().await;
        api::AccountsProxy::new(&conn)
            .await
            .unwrap()
            .list_accounts()
            .await
            .unwrap()
    });
    let establishment = accounts
        .iter()
        .find(|a| a.address == "secretariat@ecole.fr")
        .expect("the establishment account");
    assert_eq!(establishment.kind, api::KIND_ESTABLISHMENT);
    assert_eq!(establishment.state, api::STATE_ACTIVE);
    assert_eq!(establishment.staff, [USER_ALICE]);
    let personal = accounts
        .iter()
        .find(|a| a.address == "martin@ecole.fr")
        .expect("the personal account");
    assert_eq!(personal.kind, api::KIND_PERSONAL);
    assert_eq!(personal.state, api::STATE_ACTIVE);

    let mails = mailbox.messages();
    for address in ["secretariat@ecole.fr", "martin@ecole.fr"] {
        assert!(
            mails
                .iter()
                .any(|m| m.contains(&format!("X-Envelope-To: {address}"))
                    && m.contains("cleRecuperation.crbee")),
            "no confirmation with the recovery file to {address}"
        );
    }
    let sent = mails
        .iter()
        .find(|m| m.contains("X-Envelope-To: famille.durand@example.org"))
        .expect("the message sent from the window");
    assert!(
        sent.contains("bulletin.pdf") && sent.contains("application/pdf"),
        "{sent}"
    );
    let merged = mails
        .iter()
        .find(|m| m.contains("X-Envelope-To: famille.petit@example.org"))
        .expect("the merged message");
    assert!(merged.contains("bulletin.pdf"), "{merged}");
    assert!(
        !mails.iter().any(|m| m.contains("pas-une-adresse")),
        "nothing for the refused row"
    );
    let shots_taken = std::fs::read_dir(&shots).unwrap().count();
    assert!(shots_taken >= 10, "only {shots_taken} screenshots");
}
