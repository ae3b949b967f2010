//! A private system bus for one test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::{shared_tempdir, terminate, workspace_root};

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

    /// Calls a method without arguments of the daemon as `user` (through runuser) with
    /// `busctl`, a client nobody here wrote: its JSON answer, or busctl's error text.
    pub fn busctl_as(
        &self,
        user: Option<&str>,
        interface: &str,
        method: &str,
    ) -> Result<serde_json::Value, String> {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", user.unwrap_or("root"), "--", "busctl"])
            .arg(format!("--address={}", self.address))
            .args([
                "--json=short",
                "call",
                crate::api::BUS_NAME,
                crate::api::OBJECT_PATH,
            ])
            .args([interface, method]);
        let out = cmd
            .output()
            .expect("busctl (package systemd) must be installed");
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).expect("busctl prints JSON"))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
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
