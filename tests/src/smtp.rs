//! A real SMTP server for one test: aiosmtpd.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use base64::Engine;

use crate::{TestCa, free_port, terminate, workspace_root};

/// aiosmtpd on loopback, saving each accepted message as `<n>.eml` in its mail directory.
pub struct Smtp {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    /// The `tls` mode a client uses and the CA file that trusts the server, over TLS.
    tls: Option<(&'static str, PathBuf)>,
}

impl Smtp {
    pub fn start() -> Smtp {
        Smtp::start_with(&[])
    }

    /// Over TLS with a certificate of `ca`: implicit (as on port 465), or STARTTLS.
    pub fn start_tls(ca: &TestCa, implicit: bool, extra: &[&str]) -> Smtp {
        let (cert, key) = (ca.cert(), ca.key());
        let mut args = vec![
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ];
        if implicit {
            args.push("--tls");
        }
        args.extend_from_slice(extra);
        let mut smtp = Smtp::start_with(&args);
        smtp.tls = Some((if implicit { "tls" } else { "starttls" }, ca.ca()));
        smtp
    }

    /// On a free port; another free one if a parallel test took it between the look-up and
    /// the server's bind.
    pub fn start_with(extra: &[&str]) -> Smtp {
        let mut said = Vec::new();
        for _ in 0..5 {
            match Smtp::try_start_on(free_port(), extra) {
                Ok(smtp) => return smtp,
                Err(line) => said.push(line),
            }
        }
        panic!("the SMTP server did not start: {said:?}")
    }

    /// On a given port: to bring a relay "back" where the daemon expects it.
    pub fn start_on(port: u16, extra: &[&str]) -> Smtp {
        Smtp::try_start_on(port, extra).unwrap_or_else(|line| panic!("SMTP server said {line:?}"))
    }

    fn try_start_on(port: u16, extra: &[&str]) -> Result<Smtp, String> {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(crate::python())
            .arg(workspace_root().join("tests/support/smtp_server.py"))
            .args(["--port", &port.to_string()])
            .arg("--maildir")
            .arg(dir.path().join("mail"))
            .arg("--reply-file")
            .arg(dir.path().join("reply"))
            .arg("--rcpt-file")
            .arg(dir.path().join("rcpt"))
            .arg("--reads-file")
            .arg(dir.path().join("reads"))
            .arg("--delay-file")
            .arg(dir.path().join("delay"))
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python with aiosmtpd (tests/run sets it up in target/venv)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if !line.starts_with("READY") {
            terminate(&mut child);
            return Err(line);
        }
        Ok(Smtp {
            child,
            port,
            dir,
            tls: None,
        })
    }

    /// Makes the server answer DATA with this reply (e.g. "451 4.3.0 later"); "" accepts again.
    pub fn set_reply(&self, reply: &str) {
        std::fs::write(self.dir.path().join("reply"), reply).unwrap();
    }

    /// Makes the server wait this long before answering the end of each message (DATA's dot,
    /// `BDAT … LAST`): a relay that stops answering. 0 answers at once again.
    pub fn set_delay(&self, secs: f64) {
        std::fs::write(self.dir.path().join("delay"), secs.to_string()).unwrap();
    }

    /// Makes RCPT TO of these addresses get these replies (e.g. "550 5.1.1 No such user"); the
    /// others are accepted.
    pub fn set_recipient_replies(&self, replies: &[(&str, &str)]) {
        let lines: String = replies
            .iter()
            .map(|(address, reply)| format!("{address} {reply}\n"))
            .collect();
        std::fs::write(self.dir.path().join("rcpt"), lines).unwrap();
    }

    /// Every read the server made from its clients, in order: (connection number, bytes as
    /// they came in that read). Commands that came in one read came in one segment or in
    /// segments sent back to back, not one after another's reply.
    pub fn reads(&self) -> Vec<(u64, String)> {
        self.read_log()
            .into_iter()
            .map(|(conn, _, data)| (conn, data))
            .collect()
    }

    /// The server's read log: (connection number, transactions whose end it had answered on
    /// that connection then, bytes read).
    fn read_log(&self) -> Vec<(u64, u64, String)> {
        let Ok(text) = std::fs::read_to_string(self.dir.path().join("reads")) else {
            return Vec::new();
        };
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["conn"].as_u64().unwrap(),
                    v["answered"].as_u64().unwrap(),
                    v["data"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Reads that brought a MAIL FROM while a transaction before it on the same connection
    /// still waited for the answer to its end (DATA's dot, `BDAT … LAST`): transactions
    /// pipelined behind one another.
    pub fn mail_written_ahead(&self) -> usize {
        let mut mails = std::collections::HashMap::<u64, u64>::new();
        let mut ahead = 0;
        for (conn, answered, data) in self.read_log() {
            let before = mails.entry(conn).or_default();
            if data.contains("MAIL FROM:") && answered < *before {
                ahead += 1;
            }
            *before += data.matches("MAIL FROM:").count() as u64;
        }
        ahead
    }

    /// Where accepted messages are saved, for a client of its own to read them (the desktop's
    /// end-to-end driver reads the codes there).
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// Accepted messages, oldest first.
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir()) else {
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

    /// Stops the server (the port then refuses connections) and returns its port.
    pub fn stop(mut self) -> u16 {
        terminate(&mut self.child);
        self.port
    }

    /// The daemon's `[relay]` table for this server.
    pub fn relay_config(&self) -> String {
        let (mode, ca_file) = match &self.tls {
            Some((mode, ca)) => (*mode, format!("ca_file = \"{}\"\n", ca.display())),
            None => ("none", String::new()),
        };
        format!(
            "[relay]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"{mode}\"\n{ca_file}",
            self.port
        )
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// The attachment `name` of a received mail: its part's headers, and its bytes decoded from
/// base64 (as the daemon sends every attachment) or taken as they are.
pub fn attachment(mail: &str, name: &str) -> (String, Vec<u8>) {
    let at = mail
        .find(&format!("filename=\"{name}\""))
        .unwrap_or_else(|| panic!("{name} is attached: {mail}"));
    // The part's headers: from the boundary line before the file name to the blank line.
    let start = mail[..at].rfind("\r\n--").map_or(0, |b| b + 2);
    let part = &mail[start..];
    let headers_end = part.find("\r\n\r\n").unwrap() + 4;
    let headers = part[..headers_end].to_owned();
    let body = &part[headers_end..];
    let body = &body[..body.find("\r\n--").unwrap()];
    let bytes = if headers.contains("Content-Transfer-Encoding: base64") {
        let compact: String = body.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .unwrap()
    } else {
        body.replace("\r\n", "\n").into_bytes()
    };
    (headers, bytes)
}
