//! Test helpers shared by every integration test: a private D-Bus system bus that denies by
//! default and includes the shipped policy, a real SMTP server (aiosmtpd), the real
//! `postecoled` and `mailctl` binaries, and Unix users to run them as.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use postecole_dbus as api;

/// Unix users the multi-user tests run `mailctl` as; created on first use (needs root).
pub const ADMIN_GROUP: &str = "postecole-test-admin";
pub const USER_ALICE: &str = "pctest-alice";
pub const USER_BOB: &str = "pctest-bob";
pub const USER_ADMIN: &str = "pctest-admin";
/// polkit actions of systemd/org.postecole.Mail1.policy.
pub const ACTION_ADMINISTER: &str = "org.postecole.mail1.administer";
pub const ACTION_SEND_ESTABLISHMENT: &str = "org.postecole.mail1.send-establishment";
/// The service user of the shipped unit and bus policy.
pub const SERVICE_USER: &str = "postecole";

/// Where cargo put the workspace's binaries: beside this executable (the bench) or beside
/// the `deps/` folder it lives in (tests).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let here = exe.parent().expect("executable dir");
    let path = if here.join(name).exists() {
        here.join(name)
    } else {
        here.parent().expect("target profile dir").join(name)
    };
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The Python that runs the test servers: the virtual environment tests/run sets up.
pub fn python() -> String {
    std::env::var("POSTECOLE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A world-traversable temporary directory: other Unix users must reach the bus socket.
pub fn shared_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("postecole-test")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Polls `ready` every 20 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn terminate(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A private `dbus-daemon` configured like the system bus: everything denied except what the
/// project's own policy file (`systemd/org.postecole.Mail1.conf`) opens.
pub struct Bus {
    child: Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

impl Bus {
    pub fn start() -> Bus {
        Bus::start_with_policy("")
    }

    /// With extra `<policy>` elements, e.g. to let a mock polkit own its name.
    pub fn start_with_policy(extra: &str) -> Bus {
        let dir = shared_tempdir();
        let socket = dir.path().join("system_bus_socket");
        let policy = workspace_root().join("systemd/org.postecole.Mail1.conf");
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>{policy}</include>
  {extra}
</busconfig>
"#,
            socket = socket.display(),
            policy = policy.display()
        );
        let config_path = dir.path().join("bus.conf");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .args(["--nofork", "--print-address"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (package dbus-daemon) must be installed");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line.trim().to_owned();
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon printed {address:?}"
        );
        Bus {
            child,
            address,
            _dir: dir,
        }
    }

    /// A client connection to this bus, as the test's own user.
    pub async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .build()
            .await
            .expect("connect to the test bus")
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// aiosmtpd on loopback, saving each accepted message as `<n>.eml` in its mail directory.
pub struct Smtp {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Smtp {
    pub fn start() -> Smtp {
        Smtp::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Smtp {
        Smtp::start_on(free_port(), extra)
    }

    /// On a given port: to bring a relay "back" where the daemon expects it.
    pub fn start_on(port: u16, extra: &[&str]) -> Smtp {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(python())
            .arg(workspace_root().join("tests/support/smtp_server.py"))
            .args(["--port", &port.to_string()])
            .arg("--maildir")
            .arg(dir.path().join("mail"))
            .arg("--reply-file")
            .arg(dir.path().join("reply"))
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python with aiosmtpd: run the tests with tests/run");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("READY"), "SMTP server said {line:?}");
        Smtp { child, port, dir }
    }

    /// Makes the server answer DATA with this reply (e.g. "451 4.3.0 later"); "" accepts again.
    pub fn set_reply(&self, reply: &str) {
        std::fs::write(self.dir.path().join("reply"), reply).unwrap();
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

    /// Stops the server (the port then refuses connections) and returns its port.
    pub fn stop(mut self) -> u16 {
        terminate(&mut self.child);
        self.port
    }

    pub fn relay_config(&self) -> String {
        format!(
            "[relay]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
            self.port
        )
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// The real `postecoled`, on the test bus, with its own state directory and log file.
pub struct Daemon {
    child: Option<Child>,
    /// Unix user the daemon runs as (through setpriv), or the test's own.
    user: Option<String>,
    pub state_dir: PathBuf,
    pub config_path: PathBuf,
    log_path: PathBuf,
    bus_address: String,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts the daemon with `extra_config` appended to a config naming its state directory
    /// and the test admin group, and waits until it owns its bus name.
    pub fn start(bus: &Bus, extra_config: &str) -> Daemon {
        Daemon::start_as(bus, extra_config, None)
    }

    /// As `start`, running as `user` (its state owned by that user), as systemd would.
    pub fn start_as(bus: &Bus, extra_config: &str, user: Option<&str>) -> Daemon {
        let dir = shared_tempdir();
        let state_dir = dir.path().join("state");
        let config_path = dir.path().join("postecoled.toml");
        std::fs::write(
            &config_path,
            format!(
                "state_dir = \"{}\"\nadmin_group = \"{ADMIN_GROUP}\"\n{extra_config}",
                state_dir.display()
            ),
        )
        .unwrap();
        if let Some(user) = user {
            let status = Command::new("chown")
                .args(["-R", user])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown to {user}");
        }
        let mut daemon = Daemon {
            child: None,
            user: user.map(str::to_owned),
            state_dir,
            log_path: dir.path().join("postecoled.log"),
            config_path,
            bus_address: bus.address.clone(),
            _dir: dir,
        };
        daemon.restart();
        daemon
    }

    /// Runs the daemon binary once to completion with this config (for start-up failures).
    pub fn run_to_exit(bus: &Bus, config_path: &Path) -> Output {
        let mut child = Command::new(bin("postecoled"))
            .arg("--config")
            .arg(config_path)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!(
                    "postecoled did not exit: {:?}",
                    child.wait_with_output().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// (Re)starts the process on the same state and waits for its bus name.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let mut command = match &self.user {
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
                    .arg(shared_bin("postecoled"));
                c
            }
            None => Command::new(bin("postecoled")),
        };
        let child = command
            .arg("--config")
            .arg(&self.config_path)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address)
            // Everything the daemon can log, so that tests see what a debugging admin would.
            .env("POSTECOLED_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let address = self.bus_address.clone();
        let log_path = self.log_path.clone();
        let child = self.child.as_mut().unwrap();
        // A thread of its own, so that async tests may call this from inside their runtime.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    wait_for(
                        "postecoled to own its bus name",
                        Duration::from_secs(20),
                        || {
                            if let Ok(Some(status)) = child.try_wait() {
                                panic!(
                                    "postecoled exited with {status}: {}",
                                    std::fs::read_to_string(&log_path).unwrap_or_default()
                                );
                            }
                            runtime.block_on(name_has_owner(&address))
                        },
                    );
                })
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
        });
    }

    /// SIGTERM, then the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "postecoled ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The daemon's process id (for memory figures).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Every byte under the state directory except the embedded relay's delivered mail.
    pub fn state_bytes(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, skip: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p == skip {
                    continue;
                }
                if p.is_dir() {
                    walk(&p, skip, out);
                } else if let Ok(bytes) = std::fs::read(&p) {
                    out.push((p, bytes));
                }
            }
        }
        let mut out = Vec::new();
        walk(
            &self.state_dir,
            &self.state_dir.join("local-mail"),
            &mut out,
        );
        out
    }

    /// Mail the embedded default relay wrote (`state_dir/local-mail/*.eml`), oldest first.
    pub fn local_mail(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.state_dir.join("local-mail")) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }
}

async fn name_has_owner(address: &str) -> bool {
    let Ok(conn) = zbus::connection::Builder::address(address).build().await else {
        return false;
    };
    let Ok(dbus) = zbus::fdo::DBusProxy::new(&conn).await else {
        return false;
    };
    dbus.name_has_owner(api::BUS_NAME.try_into().unwrap())
        .await
        .unwrap_or(false)
}

/// The code of the newest verification mail for account `id` among `mails`.
pub fn code_in(mails: &[String], id: &str) -> Option<String> {
    let needle = format!("mailctl account verify {id} ");
    mails.iter().rev().find_map(|m| {
        let start = m.find(&needle)? + needle.len();
        Some(m[start..start + 6].to_owned())
    })
}

/// Result of one `mailctl` run.
#[derive(Debug)]
pub struct Ctl {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Ctl {
    /// Asserts success and returns stdout without its final newline.
    #[track_caller]
    pub fn out(&self) -> String {
        assert!(self.ok, "mailctl failed: {}", self.stderr);
        self.stdout.trim_end().to_owned()
    }

    /// Asserts failure with this D-Bus error name and returns stderr.
    #[track_caller]
    pub fn err(&self, name: &str) -> String {
        assert!(
            !self.ok,
            "mailctl should have failed; stdout: {}",
            self.stdout
        );
        assert!(
            self.stderr
                .contains(&format!("[{}.{name}]", api::ERROR_PREFIX)),
            "expected {name}, got: {}",
            self.stderr
        );
        self.stderr.clone()
    }
}

/// Runs `mailctl` against the test bus, as `user` (through runuser) or as the test's own user.
pub fn mailctl(bus: &Bus, user: Option<&str>, args: &[&str], stdin: Option<&str>) -> Ctl {
    let mut cmd = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(shared_mailctl());
            c
        }
        None => Command::new(bin("mailctl")),
    };
    cmd.args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run mailctl");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    Ctl {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A copy of a workspace binary that any user can execute, whatever the permissions of the
/// checkout.
pub fn shared_bin(name: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = DIR.get_or_init(|| shared_tempdir().keep());
    let _guard = LOCK.lock().unwrap();
    let path = dir.join(name);
    if !path.exists() {
        std::fs::copy(bin(name), &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

fn shared_mailctl() -> PathBuf {
    shared_bin("mailctl")
}

/// `mailctl account create` as `user`.
pub fn create(bus: &Bus, user: Option<&str>, kind: &str, label: &str, address: &str) -> Ctl {
    mailctl(
        bus,
        user,
        &[
            "account",
            "create",
            "--kind",
            kind,
            "--label",
            label,
            "--address",
            address,
        ],
        None,
    )
}

/// Creates the test users and admin group once. Needs root (CI runs as root).
pub fn ensure_users() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "the multi-user tests create Unix users and must run as root"
        );
        let run = |args: &[&str]| {
            let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
            assert!(status.success(), "{args:?} failed");
        };
        if nix::unistd::Group::from_name(ADMIN_GROUP)
            .unwrap()
            .is_none()
        {
            run(&["groupadd", "--system", ADMIN_GROUP]);
        }
        for user in [USER_ALICE, USER_BOB, USER_ADMIN] {
            if nix::unistd::User::from_name(user).unwrap().is_none() {
                run(&[
                    "useradd",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    user,
                ]);
            }
        }
        run(&["usermod", "-a", "-G", ADMIN_GROUP, USER_ADMIN]);
        if nix::unistd::User::from_name(SERVICE_USER)
            .unwrap()
            .is_none()
        {
            run(&[
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ]);
        }
    });
}

/// A throwaway certificate authority and a server certificate for 127.0.0.1, made with openssl.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl must be installed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=postecole test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            dir.path().join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ]);
        TestCa { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// The messages of `Daemon` as `mailctl queue list --json` shows them to `user`.
pub fn queue_json(bus: &Bus, user: Option<&str>) -> Vec<serde_json::Value> {
    let out = mailctl(bus, user, &["queue", "list", "--json"], None).out();
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until message `id` is in `state` (as root), returning its JSON.
pub fn wait_state(bus: &Bus, id: &str, state: &str, timeout: Duration) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let start = Instant::now();
    loop {
        let out = mailctl(bus, None, &["queue", "show", id, "--json"], None);
        if out.ok {
            last = serde_json::from_str(&out.stdout).unwrap();
            if last["state"] == state {
                return last;
            }
        }
        assert!(
            start.elapsed() < timeout,
            "message {id} never reached {state}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Types the code found in `mails` for account `id`, as `user`.
pub fn verify(bus: &Bus, user: Option<&str>, mails: &[String], id: &str) {
    let code = code_in(mails, id).expect("verification code");
    mailctl(bus, user, &["account", "verify", id, &code], None).out();
}

/// Sets up an active account as `user` through the embedded relay or `smtp`; returns its id.
pub fn active_account(
    bus: &Bus,
    daemon: &Daemon,
    smtp: Option<&Smtp>,
    user: Option<&str>,
    kind: &str,
    address: &str,
) -> String {
    let id = create(bus, user, kind, "Secrétariat", address).out();
    let mails = match smtp {
        Some(s) => s.messages(),
        None => daemon.local_mail(),
    };
    verify(bus, user, &mails, &id);
    mailctl(
        bus,
        user,
        &["account", "secure", &id, "--question", "Question ?"],
        Some("une réponse solide\n"),
    )
    .out();
    id
}

/// A private bus, a daemon relaying to `smtp` (with `extra_config` after the relay section),
/// and an active account of `kind` at `address`.
pub fn relayed_account(
    smtp: &Smtp,
    extra_config: &str,
    kind: &str,
    address: &str,
) -> (Bus, Daemon, String) {
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, &format!("{}{extra_config}", smtp.relay_config()));
    let account = active_account(&bus, &daemon, Some(smtp), None, kind, address);
    (bus, daemon, account)
}

/// `mailctl merge` of `csv` into `template` for `account`, then any further arguments.
pub fn merge(bus: &Bus, account: &str, template: &str, csv: &Path, extra: &[&str]) -> Ctl {
    let mut args = vec![
        "merge",
        "--account",
        account,
        "--template",
        template,
        "--csv",
        csv.to_str().expect("a UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    mailctl(bus, None, &args, None)
}
