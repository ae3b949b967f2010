//! postecoled as a process: configuration errors, state directory, bus name, signals, restarts.

use std::time::Duration;

use postecole_tests::{Bus, Daemon, code_in, create, mailctl};

fn run_with_config(bus: &Bus, config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postecoled.toml");
    std::fs::write(
        &path,
        config.replace("@STATE@", &dir.path().join("state").display().to_string()),
    )
    .unwrap();
    let out = Daemon::run_to_exit(bus, &path);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_is_refused_naming_the_key() {
    let bus = Bus::start();
    for (config, key) in [
        ("state_dir = \"@STATE@\"\nstat_dir = \"/x\"\n", "stat_dir"),
        (
            "state_dir = \"@STATE@\"\n[relay]\nhost = \"h\"\ntls = \"ssl\"\n",
            "tls",
        ),
        (
            "state_dir = \"@STATE@\"\n[queue]\nconcurrency = 0\n",
            "queue.concurrency",
        ),
        (
            "state_dir = \"@STATE@\"\n[relay]\nhost = \"h\"\nport = 70000\n",
            "port",
        ),
        (
            "state_dir = \"@STATE@\"\n[relay]\nhost = \"h\"\nusername = \"u\"\n",
            "relay.password_file",
        ),
    ] {
        let (ok, stderr) = run_with_config(&bus, config);
        assert!(!ok, "accepted:\n{config}");
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
        assert_eq!(
            stderr.matches("invalid configuration").count(),
            1,
            "said once: {stderr}"
        );
    }
    let out = Daemon::run_to_exit(&bus, std::path::Path::new("/nonexistent/postecoled.toml"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/postecoled.toml"));
}

#[test]
fn a_missing_administrators_group_is_named_at_start() {
    let bus = Bus::start();
    let mut daemon = Daemon::start(&bus, "");
    daemon.stop();
    let config = std::fs::read_to_string(&daemon.config_path).unwrap();
    let config: String = config
        .lines()
        .map(|l| {
            if l.starts_with("admin_group") {
                "admin_group = \"pctest-nosuchgroup\"\n".to_owned()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&daemon.config_path, config).unwrap();
    daemon.restart();
    assert!(
        daemon.log().contains("pctest-nosuchgroup") && daemon.log().contains("only root"),
        "{}",
        daemon.log()
    );
}

#[test]
fn unusable_state_directory_is_refused() {
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let (ok, stderr) = run_with_config(&bus, &format!("state_dir = \"{}\"\n", file.display()));
    assert!(!ok);
    assert!(
        stderr.contains("state directory") && stderr.contains("a-file"),
        "{stderr}"
    );
}

#[test]
fn second_daemon_cannot_take_the_name() {
    let bus = Bus::start();
    let _first = Daemon::start(&bus, "");
    let (ok, stderr) = run_with_config(&bus, "state_dir = \"@STATE@\"\n");
    assert!(!ok);
    assert!(stderr.contains("already owned"), "{stderr}");
}

#[test]
fn second_daemon_on_the_same_state_is_refused_and_takes_nothing() {
    let bus = Bus::start();
    let first = Daemon::start(&bus, "");
    let id = create(&bus, None, "establishment", "S", "s@ecole.fr").out();
    // The same configuration started by hand on another bus, where the name is free: only
    // the store's lock stands in its way, and it must not take the live store for damaged.
    let other_bus = Bus::start();
    let out = Daemon::run_to_exit(&other_bus, &first.config_path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("already using it"), "{stderr}");
    let names: Vec<_> = std::fs::read_dir(&first.state_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("db.damaged")),
        "the live store was moved aside: {names:?}"
    );
    let listed = mailctl(&bus, None, &["account", "list"], None).out();
    assert!(listed.contains(&id), "{listed}");
}

#[test]
fn sigterm_stops_cleanly_and_state_survives_restarts_and_kill9() {
    let bus = Bus::start();
    let mut daemon = Daemon::start(&bus, "");
    let id = create(&bus, None, "establishment", "S", "s@ecole.fr").out();
    let code = code_in(&daemon.local_mail(), &id).unwrap();
    let status = daemon.stop();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(daemon.log().contains("SIGTERM"), "{}", daemon.log());

    daemon.restart();
    mailctl(&bus, None, &["account", "verify", &id, &code], None).out();
    // kill -9 right after the reply: the verified state was flushed before it.
    daemon.kill9();
    daemon.restart();
    let shown: serde_json::Value =
        serde_json::from_str(&mailctl(&bus, None, &["account", "show", &id, "--json"], None).out())
            .unwrap();
    assert_eq!(shown["state"], "awaiting-secret");
}

#[test]
fn mailctl_without_daemon_says_so() {
    let bus = Bus::start();
    let out = mailctl(&bus, None, &["account", "list"], None);
    assert!(!out.ok);
    assert!(out.stderr.contains("mailctl:"), "{}", out.stderr);
    // And with no bus at all.
    let out = std::process::Command::new(postecole_tests::bin("mailctl"))
        .args(["account", "list"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
    let _ = Duration::from_secs(0);
}
