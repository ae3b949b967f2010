//! The files a Debian system ships: the unit passes systemd's checks, the package holds what it
//! must, the daemon runs as its service user under the shipped bus policy, and polkit mode asks
//! polkit (a python-dbusmock polkitd on the test bus) instead of the admin group.

use std::process::Command;

use postecole_tests::{
    Bus, Daemon, MOCK_POLKIT_POLICY, MockPolkit, SERVICE_USER, USER_ADMIN, USER_BOB, api, bin,
    create, ensure_users, mailctl, workspace_root,
};

/// The shipped unit with ExecStart pointing at the binary just built.
fn unit_for_tests(dir: &std::path::Path) -> std::path::PathBuf {
    let unit =
        std::fs::read_to_string(workspace_root().join("systemd/postecoled.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/libexec/postecoled\n"));
    let path = dir.join("postecoled.service");
    std::fs::write(
        &path,
        unit.replace(
            "ExecStart=/usr/libexec/postecoled",
            &format!("ExecStart={}", bin("postecoled").display()),
        ),
    )
    .unwrap();
    path
}

#[test]
fn unit_passes_systemd_verify_and_security_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_tests(dir.path());
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (package systemd)");
    // verify only warns on unknown keys: any output is a failure.
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "{out:?}"
    );

    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for postecoled.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    println!("systemd-analyze security: exposure {exposure}");
    assert!(
        out.status.success() && exposure <= 2.0,
        "exposure {exposure}:\n{text}"
    );
}

#[test]
fn activation_file_and_policy_name_the_service() {
    let root = workspace_root().join("systemd");
    let activation = std::fs::read_to_string(root.join("org.postecole.Mail1.service")).unwrap();
    assert!(activation.contains("Name=org.postecole.Mail1\n"));
    assert!(activation.contains("SystemdService=postecoled.service\n"));
    assert!(activation.contains("User=postecole\n"));
    let unit = std::fs::read_to_string(root.join("postecoled.service")).unwrap();
    for line in [
        "Type=dbus",
        "BusName=org.postecole.Mail1",
        "User=postecole",
        "StateDirectory=postecole",
        "StateDirectoryMode=0700",
        "ConfigurationDirectory=postecole",
        "LoadCredential=relay-password:/etc/postecole/relay-password",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "{line} missing from the unit"
        );
    }
    let sysusers = std::fs::read_to_string(root.join("postecole.sysusers")).unwrap();
    assert!(sysusers.lines().any(|l| l.starts_with("u postecole ")));
    let policy = std::fs::read_to_string(root.join("org.postecole.Mail1.policy")).unwrap();
    for action in [
        postecole_tests::ACTION_ADMINISTER,
        postecole_tests::ACTION_SEND_ESTABLISHMENT,
    ] {
        assert!(
            policy.contains(&format!("<action id=\"{action}\">")),
            "{action}"
        );
    }
    assert_eq!(
        policy.matches("unix-user:postecole").count(),
        2,
        "each action owned by the service user"
    );
}

#[test]
fn package_holds_every_file_where_debian_expects_it() {
    let status = Command::new("make")
        .args(["-s", "deb", "PROFILE=debug"])
        .current_dir(workspace_root())
        .status()
        .expect("make");
    assert!(status.success(), "make deb failed");
    let deb = std::fs::read_dir(workspace_root().join("target"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb under target/");
    let list = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for path in [
        "./usr/libexec/postecoled",
        "./usr/bin/mailctl",
        "./usr/lib/systemd/system/postecoled.service",
        "./usr/lib/sysusers.d/postecole.conf",
        "./usr/lib/tmpfiles.d/postecole.conf",
        "./usr/share/dbus-1/system.d/org.postecole.Mail1.conf",
        "./usr/share/dbus-1/system-services/org.postecole.Mail1.service",
        "./usr/share/polkit-1/actions/org.postecole.Mail1.policy",
        "./usr/share/dbus-1/interfaces/org.postecole.Mail1.xml",
        "./usr/share/man/man1/mailctl.1.gz",
        "./usr/share/man/man1/mailctl-send.1.gz",
        "./usr/share/man/man8/postecoled.8.gz",
        "./usr/share/man/fr/man8/postecoled.8.gz",
        "./usr/share/man/fr/man1/mailctl.1.gz",
        "./usr/share/man/fr/man1/mailctl-queue-list.1.gz",
        "./usr/share/locale/fr/LC_MESSAGES/postecole.mo",
        "./usr/share/bash-completion/completions/mailctl",
        "./usr/share/zsh/vendor-completions/_mailctl",
        "./usr/share/fish/vendor_completions.d/mailctl.fish",
        "./usr/share/doc/postecole/examples/postecoled.toml",
    ] {
        assert!(
            list.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} missing from the package:\n{list}"
        );
    }
    assert!(
        list.lines()
            .filter(|l| l.contains("./usr/"))
            .all(|l| l.contains("root/root")),
        "files owned by root"
    );
    let info = Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("Package: postecole") && info.contains("postinst"),
        "{info}"
    );
    // The example configuration is a valid one.
    let example =
        std::fs::read_to_string(workspace_root().join("doc/postecoled.toml.example")).unwrap();
    assert!(example.lines().all(|l| l.is_empty() || l.starts_with('#')));
}

#[test]
fn daemon_runs_as_its_service_user_and_nobody_else_can_take_the_name() {
    ensure_users();
    let bus = Bus::start();
    // Another user cannot own the name: the shipped policy allows only postecole (and root).
    let dir = postecole_tests::shared_tempdir();
    let config = dir.path().join("postecoled.toml");
    std::fs::write(
        &config,
        format!("state_dir = \"{}/state\"\n", dir.path().display()),
    )
    .unwrap();
    Command::new("chown")
        .args(["-R", USER_BOB])
        .arg(dir.path())
        .status()
        .unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            USER_BOB,
            "--regid",
            USER_BOB,
            "--init-groups",
            "--",
        ])
        .arg(postecole_tests::shared_bin("postecoled"))
        .arg("--config")
        .arg(&config)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{USER_BOB} took the name");
    assert!(
        stderr.contains("not allowed to own") || stderr.contains("AccessDenied"),
        "{stderr}"
    );
}

#[test]
fn service_user_serves_requests_under_the_shipped_policy() {
    ensure_users();
    let bus = Bus::start();
    let daemon = Daemon::start_as(&bus, "", Some(SERVICE_USER));
    let id = create(&bus, Some(USER_BOB), "personal", "Bob", "bob@ecole.fr").out();
    // The daemon, running as postecole, wrote the code.
    postecole_tests::verify(&bus, Some(USER_BOB), &daemon.local_mail(), &id);
    let meta = std::fs::metadata(&daemon.state_dir).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(
        meta.uid(),
        nix::unistd::User::from_name(SERVICE_USER)
            .unwrap()
            .unwrap()
            .uid
            .as_raw()
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
}

#[test]
fn polkit_mode_asks_polkit_instead_of_the_group() {
    ensure_users();
    let bus = Bus::start_with_policy(MOCK_POLKIT_POLICY);
    let polkit = MockPolkit::start(&bus);
    let daemon = Daemon::start(&bus, "authorization = \"polkit\"\n");
    let create =
        |user: &str, address: &str| create(&bus, Some(user), "establishment", "S", address);
    // Nothing allowed: membership of the admin group no longer counts.
    polkit.allow(&bus, &[]);
    create(USER_ADMIN, "s1@ecole.fr").err("NotAuthorized");
    create(USER_BOB, "s1@ecole.fr").err("NotAuthorized");
    // polkit says yes to administering: bob may.
    polkit.allow(&bus, &[api_action_admin()]);
    let id = create(USER_BOB, "s2@ecole.fr").out();
    postecole_tests::verify(&bus, Some(USER_BOB), &daemon.local_mail(), &id);
    mailctl(
        &bus,
        Some(USER_BOB),
        &["account", "secure", &id, "--question", "Q ?"],
        Some("une réponse solide\n"),
    )
    .out();
    mailctl(
        &bus,
        Some(USER_BOB),
        &["account", "staff", &id, "--add", USER_BOB],
        None,
    )
    .out();
    // Sending with the establishment address is its own action.
    let send = || {
        mailctl(
            &bus,
            Some(USER_BOB),
            &[
                "send",
                "--account",
                &id,
                "--to",
                "f@example.org",
                "--subject",
                "S",
                "--body",
                "B",
            ],
            None,
        )
    };
    send().err("NotAuthorized");
    polkit.allow(
        &bus,
        &[
            api_action_admin(),
            postecole_tests::ACTION_SEND_ESTABLISHMENT,
        ],
    );
    send().out();
    let _ = api::BUS_NAME;
}

fn api_action_admin() -> &'static str {
    postecole_tests::ACTION_ADMINISTER
}
