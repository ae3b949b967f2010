//! Test helpers shared by every integration test: a private D-Bus system bus that denies by
//! default and includes the shipped policy (`bus`), a real SMTP server, aiosmtpd (`smtp`), the
//! real `postecoled` (`daemon`), `mailctl` (`ctl`) and sendmail door (`sendmail`) binaries,
//! Unix users to run them as (`users`), a throwaway certificate authority (`ca`), a mocked
//! polkitd (`polkit`), Postfix's smtpd as a relay that offers CHUNKING (`postfix`) and an X
//! server for the desktop application (`xvfb`).

mod accounts;
mod bus;
mod ca;
mod ctl;
mod daemon;
pub mod limits;
mod oauth;
mod polkit;
mod postfix;
pub mod recovery;
mod sendmail;
mod smtp;
mod users;
mod xvfb;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

pub use postecole_dbus as api;

pub use accounts::{account_ids, audit_json, wrong_code};
pub use bus::Bus;
pub use ca::TestCa;
pub use ctl::{
    Ctl, active_account, code_in, create, local_account, mailctl, merge, queue_json,
    relayed_account, relayed_account_as, send_mail, verify, wait_state,
};
pub use daemon::Daemon;
pub use oauth::{MAILBOX, OAuthRelay, logged_in, oauth_account, relay_status, spawn_login};
pub use polkit::{MOCK_POLKIT_POLICY, MockPolkit};
pub use postfix::{PostfixInstance, PostfixRelay};
pub use sendmail::{Door, sendmail};
pub use smtp::{Smtp, attachment};
pub use users::{
    ACTION_ADMINISTER, ACTION_SEND_ESTABLISHMENT, ADMIN_GROUP, GROUP_TEACHERS, SERVICE_USER,
    USER_ADMIN, USER_ALICE, USER_BOB, ensure_users,
};
pub use xvfb::Xvfb;

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

/// A workspace binary that any user can execute, whatever the permissions of the checkout.
/// The directory outlives the test process (statics are never dropped), so the binary is
/// hard-linked there rather than copied: a copy left some 100 MB in /tmp per test binary.
pub fn shared_bin(name: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = DIR.get_or_init(|| shared_tempdir().keep());
    let _guard = LOCK.lock().unwrap();
    let path = dir.join(name);
    if !path.exists() {
        let built = bin(name);
        if std::fs::hard_link(&built, &path).is_err() {
            // Another file system than the checkout's.
            std::fs::copy(&built, &path).unwrap();
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}
