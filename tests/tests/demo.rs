//! The README's first command, as a French-speaking newcomer runs it: `LANG=fr_FR.UTF-8
//! ./demo/try.sh` walks through both set-ups and a send, and mailctl answers in French.

use std::process::Command;

use postecole_tests::workspace_root;

#[test]
fn the_demo_walks_through_in_french_on_a_french_locale() {
    let out = Command::new(workspace_root().join("demo/try.sh"))
        .env("LANG", "fr_FR.UTF-8")
        .env_remove("LANGUAGE")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
        .output()
        .expect("demo/try.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The demo leaves its bus and daemon running for the reader: stop them, whatever happened.
    if let Some(line) = stdout.lines().find(|l| l.trim_start().starts_with("kill ")) {
        // The daemon writes its last snapshot as it stops: remove its folder after that.
        let line = line.trim().replace("; rm", "; sleep 1; rm");
        let _ = Command::new("sh").arg("-c").arg(line).status();
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for french in [
        "Adresse vérifiée. Étape suivante : mailctl account secure",
        "Le compte est actif.",
        "Le code ou la réponse ne correspond pas.",
        "LIBELLÉ",
        "établissement",
        "remis",
    ] {
        assert!(
            stdout.contains(french) || stderr.contains(french),
            "no `{french}` in:\n{stdout}\n{stderr}"
        );
    }
    for english in ["Address verified", "The account is active", "delivered ("] {
        assert!(
            !stdout.contains(english) && !stderr.contains(english),
            "`{english}` left in English:\n{stdout}\n{stderr}"
        );
    }
}
