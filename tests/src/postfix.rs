//! Postfix's own `smtpd` as a relay for one test: a real SMTP server that offers PIPELINING
//! and CHUNKING (BDAT), which aiosmtpd does not. A throwaway instance (its own configuration
//! and queue) that passes what it accepts on to an aiosmtpd, where the test reads it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{Smtp, free_port, wait_for};

/// A throwaway Postfix: its own configuration, queue and log under a directory, the
/// system's mail untouched; stopped when dropped. Shared by the tests' relay and the bench's
/// peers (a null client, a discarding relay).
pub struct PostfixInstance {
    conf: PathBuf,
    log: PathBuf,
}

impl PostfixInstance {
    /// Configured under `dir` (not started): Debian's services less its public smtpd on port
    /// 25, plus `listeners` (master.cf lines; none for a client with no SMTP server), and the
    /// `main` lines (name, transports, relayhost…) after the ones every instance needs.
    /// Listeners run outside the chroot, so that the queue directory needs nothing copied in.
    pub fn new(dir: &Path, main: &str, listeners: &[String]) -> PostfixInstance {
        let (conf, queue, data) = (dir.join("conf"), dir.join("queue"), dir.join("data"));
        for d in [&conf, &queue, &data] {
            std::fs::create_dir_all(d).unwrap();
        }
        let chown = Command::new("chown").arg("postfix").arg(&data).status();
        assert!(
            chown.is_ok_and(|s| s.success()),
            "chown postfix: the postfix user is missing (package postfix)"
        );
        let master = std::fs::read_to_string("/etc/postfix/master.cf")
            .expect("/etc/postfix/master.cf (package postfix)");
        let mut services: String = master
            .lines()
            .filter(|l| {
                let mut words = l.split_whitespace();
                !(words.next() == Some("smtp") && words.next() == Some("inet"))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        for l in listeners {
            services.push_str(l);
            services.push('\n');
        }
        std::fs::write(conf.join("master.cf"), services).unwrap();
        let log = dir.join("maillog");
        std::fs::write(
            conf.join("main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {q}\ndata_directory = {d}\n\
                 mail_owner = postfix\nsetgid_group = postdrop\ninet_interfaces = loopback-only\n\
                 inet_protocols = ipv4\nmydestination =\nmaillog_file = {log}\n\
                 maillog_file_prefixes = {dir}\nalternate_config_directories = {c}\n{main}",
                q = queue.display(),
                d = data.display(),
                log = log.display(),
                dir = dir.display(),
                c = conf.display(),
            ),
        )
        .unwrap();
        PostfixInstance { conf, log }
    }

    /// `postfix -c <conf> <verb>` (start, stop, flush…), which must succeed.
    pub fn run(&self, verb: &str) {
        let out = Command::new("postfix")
            .arg("-c")
            .arg(&self.conf)
            .arg(verb)
            .stdin(Stdio::null())
            .output()
            .expect("postfix (package postfix)");
        assert!(
            out.status.success(),
            "postfix {verb}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn conf(&self) -> &Path {
        &self.conf
    }

    pub fn maillog(&self) -> &Path {
        &self.log
    }
}

impl Drop for PostfixInstance {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub struct PostfixRelay {
    pub port: u16,
    postfix: PostfixInstance,
    dir: tempfile::TempDir,
    /// Where Postfix delivers: the messages, as it relayed them.
    pub downstream: Smtp,
}

impl PostfixRelay {
    /// Postfix (package `postfix`, as tests/run installs it) listening on a free loopback
    /// port, relaying whatever loopback clients send to a fresh aiosmtpd. Every SMTP command it
    /// receives is logged (`debug_peer_list`), for `commands`.
    pub fn start() -> PostfixRelay {
        let downstream = Smtp::start();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let postfix = PostfixInstance::new(
            dir.path(),
            &format!(
                "myhostname = relais.localdomain\nlocal_transport = error:no local mail\n\
                 mynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions = permit_mynetworks, reject\n\
                 relayhost = [127.0.0.1]:{down}\nsmtp_tls_security_level = none\n\
                 debug_peer_list = 127.0.0.1\n",
                down = downstream.port,
            ),
            &[format!("127.0.0.1:{port} inet n - n - - smtpd")],
        );
        postfix.run("start");
        wait_for("Postfix's smtpd to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        PostfixRelay {
            port,
            postfix,
            dir,
            downstream,
        }
    }

    /// What Postfix's smtpd logged of the commands it received, in order ("BDAT 375 LAST").
    pub fn commands(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.maillog()).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("postfix/smtpd"))
            // "postfix/smtpd[12]: < localhost[127.0.0.1]: BDAT 375 LAST"
            .filter_map(|l| l.split_once(": < ")?.1.split_once("[127.0.0.1]: "))
            .map(|(_, command)| command.to_owned())
            .collect()
    }

    pub fn maillog(&self) -> PathBuf {
        self.postfix.maillog().to_owned()
    }

    pub fn relay_config(&self) -> String {
        format!(
            "[relay]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
            self.port
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
