//! A provider in a box for the OAuth2 tests: `tests/support/oauth_relay.py`, an OAuth2 server
//! over HTTPS and an SMTP relay (STARTTLS, AUTH XOAUTH2) that accepts only its own tokens,
//! both under the test CA.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use std::time::Duration;

use crate::{
    Bus, Ctl, TestCa, bin, code_in, create, free_port, mailctl, terminate, workspace_root,
};

pub struct OAuthRelay {
    child: Child,
    pub smtp_port: u16,
    pub oauth_port: u16,
    pub ca: TestCa,
    dir: tempfile::TempDir,
}

/// The mailbox the tests log in as.
pub const MAILBOX: &str = "secretariat@ecole.example";

impl OAuthRelay {
    pub fn start() -> OAuthRelay {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let smtp_port = free_port();
        let mut child = Command::new(crate::python())
            .arg(workspace_root().join("tests/support/oauth_relay.py"))
            .args(["--smtp-port", &smtp_port.to_string()])
            .arg("--maildir")
            .arg(dir.path().join("mail"))
            .arg("--control")
            .arg(dir.path().join("control.json"))
            .arg("--events")
            .arg(dir.path().join("events.jsonl"))
            .arg("--issued")
            .arg(dir.path().join("issued.txt"))
            .arg("--cert")
            .arg(ca.cert())
            .arg("--key")
            .arg(ca.key())
            .args(["--client-secret", "s3cret-client"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python with aiosmtpd (tests/run sets it up in target/venv)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports: Vec<u16> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|p| p.parse().ok())
            .collect();
        assert!(
            line.starts_with("READY") && ports.len() == 2,
            "oauth relay said {line:?}"
        );
        // A key for the daemon's token file, as the systemd credential would hold it.
        std::fs::write(dir.path().join("token-key"), [0x5au8; 32]).unwrap();
        OAuthRelay {
            child,
            smtp_port,
            oauth_port: ports[1],
            ca,
            dir,
        }
    }

    /// Replaces the control file (see oauth_relay.py): the provider's behaviour from now on.
    pub fn control(&self, json: serde_json::Value) {
        let tmp = self.dir.path().join("control.tmp");
        std::fs::write(&tmp, json.to_string()).unwrap();
        std::fs::rename(tmp, self.dir.path().join("control.json")).unwrap();
    }

    /// What the provider saw, oldest first.
    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The events named `ev`.
    pub fn events_of(&self, ev: &str) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["ev"] == ev)
            .collect()
    }

    /// Every access and refresh token the provider issued.
    pub fn issued_tokens(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("issued.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Accepted messages, oldest first.
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("mail")) else {
            return Vec::new();
        };
        let mut numbered: Vec<(u64, PathBuf)> = entries
            .filter_map(|e| {
                let p = e.ok()?.path();
                let n = p.file_stem()?.to_str()?.parse().ok()?;
                (p.extension()? == "eml").then_some((n, p))
            })
            .collect();
        numbered.sort();
        numbered
            .into_iter()
            .map(|(_, p)| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// `[relay]` with `auth = "xoauth2"` pointed at this provider; `extra` goes in `[relay]`.
    pub fn relay_config(&self, grant: &str, extra: &str) -> String {
        format!(
            "[relay]\nhost = \"127.0.0.1\"\nport = {smtp}\ntls = \"starttls\"\nca_file = \"{ca}\"\nauth = \"xoauth2\"\n{extra}\n[relay.oauth2]\ntoken_url = \"https://127.0.0.1:{oauth}/token\"\ndevice_url = \"https://127.0.0.1:{oauth}/devicecode\"\nclient_id = \"00000000-test-client\"\nscope = \"https://outlook.office.com/SMTP.Send offline_access\"\nusername = \"{MAILBOX}\"\ngrant = \"{grant}\"\nkey_file = \"{key}\"\nclient_secret_file = \"{secret}\"\n",
            smtp = self.smtp_port,
            oauth = self.oauth_port,
            ca = self.ca.ca().display(),
            key = self.dir.path().join("token-key").display(),
            secret = self.secret_file().display(),
        )
    }

    fn secret_file(&self) -> PathBuf {
        let path = self.dir.path().join("client-secret");
        if !path.exists() {
            std::fs::write(&path, "s3cret-client\n").unwrap();
        }
        path
    }
}

impl Drop for OAuthRelay {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// `mailctl relay status --json`.
pub fn relay_status(bus: &Bus) -> serde_json::Value {
    serde_json::from_str(&mailctl(bus, None, &["--json", "relay", "status"], None).out()).unwrap()
}

/// `mailctl relay login` as root, started in the background (its output piped).
pub fn spawn_login(bus: &Bus) -> Child {
    Command::new(bin("mailctl"))
        .args(["relay", "login"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mailctl")
}

/// A login the provider approves at once: `mailctl relay login` to its end.
pub fn logged_in(bus: &Bus, relay: &OAuthRelay) -> Ctl {
    let mut control = relay.current_control();
    control["approve"] = serde_json::Value::Bool(true);
    relay.control(control);
    let out = mailctl(bus, None, &["relay", "login"], None);
    assert!(out.ok, "relay login: {}", out.stderr);
    out
}

/// An active establishment account set up through the relay (the code read from its mail).
pub fn oauth_account(bus: &Bus, relay: &OAuthRelay, address: &str) -> String {
    let id = create(bus, None, "establishment", "Secrétariat", address).out();
    let code = code_in(&relay.messages(), &id).expect("the verification code reached the relay");
    mailctl(bus, None, &["account", "verify", &id, &code], None).out();
    let before = relay.messages().len();
    mailctl(
        bus,
        None,
        &["account", "secure", &id, "--question", "Question ?"],
        Some("une réponse solide\n"),
    )
    .out();
    let start = std::time::Instant::now();
    while relay.messages().len() <= before {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no confirmation e-mail; the relay saw {:?}",
            relay.events().iter().rev().take(8).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    id
}

impl OAuthRelay {
    /// The control file as it is now.
    pub fn current_control(&self) -> serde_json::Value {
        std::fs::read_to_string(self.dir.path().join("control.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| serde_json::json!({}))
    }

    /// Changes one key of the control file.
    pub fn set(&self, key: &str, value: serde_json::Value) {
        let mut control = self.current_control();
        control[key] = value;
        self.control(control);
    }
}
