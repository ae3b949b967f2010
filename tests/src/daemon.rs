//! The real daemon for one test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::users::ADMIN_GROUP;
use crate::{Bus, api, bin, shared_bin, shared_tempdir, terminate, wait_for};

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
