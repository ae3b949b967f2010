//! The mailers postecole is compared with, run here on loopback: Postfix's smtp-sink and
//! smtp-source, a throwaway Postfix null client, a throwaway Postfix relay that discards what it
//! accepts, and msmtp. Started and stopped by the bench.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postecole_tests::PostfixInstance;

/// A server that counts the messages it has accepted.
pub trait Receiver {
    fn count(&self) -> usize;

    fn wait_for(&self, target: usize, timeout: Duration) {
        let start = Instant::now();
        while self.count() < target {
            assert!(
                start.elapsed() < timeout,
                "the receiver got {} of {target}",
                self.count()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Postfix's smtp-sink, counting what it accepts.
pub struct Sink {
    child: Child,
    pub port: u16,
    out: PathBuf,
}

impl Sink {
    pub fn start(dir: &Path) -> Sink {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = dir.join("sink.out");
        let child = Command::new("smtp-sink")
            .args(["-c", "-u", "postfix", &format!("127.0.0.1:{port}"), "1024"])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink (package postfix)");
        let sink = Sink { child, port, out };
        wait("smtp-sink", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        sink
    }
}

impl Receiver for Sink {
    /// Messages accepted so far (smtp-sink -c prints `... mesg=N` as it goes).
    fn count(&self) -> usize {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.rsplit("mesg=")
            .next()
            .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// smtp-source straight into the sink over `sessions` connections, each reused for message
/// after message (`-d`): the ceiling here.
pub fn smtp_source(port: u16, n: usize, size: usize, sessions: usize) -> f64 {
    let start = Instant::now();
    let status = Command::new("smtp-source")
        .args([
            "-d",
            "-s",
            &sessions.to_string(),
            "-l",
            &size.to_string(),
            "-m",
            &n.to_string(),
            "-f",
            "bench@ecole.fr",
            "-t",
            "famille@example.org",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .status()
        .expect("smtp-source (package postfix)");
    assert!(status.success());
    n as f64 / start.elapsed().as_secs_f64()
}

/// A Postfix null client with its own configuration and queue under `dir`, relaying to `port`.
pub struct Postfix {
    instance: PostfixInstance,
    queue: PathBuf,
}

impl Postfix {
    pub fn new(dir: &Path, port: u16) -> Postfix {
        Postfix::with(dir, port, "")
    }

    /// With `extra` lines appended to its main.cf.
    pub fn with(dir: &Path, port: u16, extra: &str) -> Postfix {
        let instance = PostfixInstance::new(
            dir,
            &format!(
                "myhostname = bench.localdomain\nlocal_transport = error:no local mail\n\
                 relayhost = [127.0.0.1]:{port}\nsmtp_tls_security_level = none\n{extra}"
            ),
            &[],
        );
        Postfix {
            instance,
            queue: dir.join("queue"),
        }
    }

    pub fn start(&self) {
        self.instance.run("start");
    }

    pub fn stop(&self) {
        self.instance.run("stop");
    }

    /// One `sendmail` process per message, as a script or a web application would.
    pub fn inject(&self, message: &[u8], n: usize) {
        for _ in 0..n {
            let mut child = Command::new("sendmail")
                .arg("-C")
                .arg(self.instance.conf())
                .arg("-t")
                .stdin(Stdio::piped())
                .spawn()
                .expect("sendmail");
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), message).unwrap();
            drop(child.stdin.take());
            assert!(child.wait().unwrap().success());
        }
    }

    pub fn queue_dir(&self) -> &Path {
        &self.queue
    }

    /// (messages delivered, connections they took): a delivery over a cached connection is
    /// logged with `conn_use=N`, one over a new connection without it.
    pub fn deliveries(&self) -> (usize, usize) {
        let log = std::fs::read_to_string(self.instance.maillog()).unwrap_or_default();
        let sent: Vec<&str> = log.lines().filter(|l| l.contains("status=sent")).collect();
        let opened = sent.iter().filter(|l| !l.contains("conn_use=")).count();
        (sent.len(), opened)
    }
}

/// One msmtp process per message.
pub fn msmtp(port: u16, message: &[u8], n: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        let mut child = Command::new("msmtp")
            .args([
                "--host=127.0.0.1",
                &format!("--port={port}"),
                "--from=bench@ecole.fr",
                "--",
                "famille@example.org",
            ])
            .stdin(Stdio::piped())
            .spawn()
            .expect("msmtp");
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), message).unwrap();
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Resident memory of a process, MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// A throwaway Postfix that accepts mail over SMTP on loopback and discards it: a relay that
/// offers CHUNKING as well as PIPELINING (smtp-sink offers no CHUNKING), and TLS when given a
/// certificate: STARTTLS on `port`, implicit TLS (as on port 465) on `tls_port`.
pub struct Relay {
    instance: PostfixInstance,
    pub port: u16,
    pub tls_port: Option<u16>,
    /// How far the log has been read, and the messages it showed accepted.
    read: Mutex<(usize, usize)>,
}

impl Relay {
    pub fn start(dir: &Path, tls: Option<(&Path, &Path)>) -> Relay {
        let port = free_port();
        let tls_port = tls.map(|_| free_port());
        let mut listeners = vec![format!("127.0.0.1:{port} inet n - n - - smtpd")];
        if let Some(p) = tls_port {
            listeners.push(format!(
                "127.0.0.1:{p} inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes\n  -o smtpd_tls_security_level=encrypt"
            ));
        }
        let tls_conf = match tls {
            Some((cert, key)) => format!(
                "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\n",
                cert.display(),
                key.display()
            ),
            None => "smtpd_tls_security_level = none\n".into(),
        };
        let instance = PostfixInstance::new(
            dir,
            &format!(
                "myhostname = relay.localdomain\nmynetworks = 127.0.0.0/8\n\
                 smtpd_relay_restrictions = permit_mynetworks, reject\nsmtpd_peername_lookup = no\n\
                 default_transport = discard:bench\nlocal_transport = discard:bench\n{tls_conf}"
            ),
            &listeners,
        );
        instance.run("start");
        wait("the Postfix relay", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Relay {
            instance,
            port,
            tls_port,
            read: Mutex::new((0, 0)),
        }
    }
}

impl Receiver for Relay {
    /// Messages accepted so far: the queue manager logs each one as it takes it in.
    fn count(&self) -> usize {
        use std::io::{Read, Seek};
        let mut read = self.read.lock().unwrap();
        let Ok(mut log) = std::fs::File::open(self.instance.maillog()) else {
            return 0;
        };
        let mut new = Vec::new();
        log.seek(std::io::SeekFrom::Start(read.0 as u64)).unwrap();
        log.read_to_end(&mut new).unwrap();
        // Whole lines only: postlogd may be half-way through one.
        let end = new.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        read.1 += String::from_utf8_lossy(&new[..end])
            .lines()
            .filter(|l| l.contains("(queue active)"))
            .count();
        read.0 += end;
        read.1
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
