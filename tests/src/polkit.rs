//! A mocked polkitd on the test bus, answering as it is told.

use std::process::Command;
use std::time::Duration;

use crate::{Bus, wait_for};

/// python-dbusmock's polkitd template on the test bus (Debian's python3-dbusmock).
pub struct MockPolkit {
    child: std::process::Child,
}

impl MockPolkit {
    pub fn start(bus: &Bus) -> MockPolkit {
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "dbusmock", "--system", "--template", "polkitd"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("python3-dbusmock");
        let address = bus.address.clone();
        wait_for("the mock polkitd", Duration::from_secs(20), || {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                let conn = zbus::connection::Builder::address(address.as_str())
                    .build()
                    .await
                    .unwrap();
                zbus::fdo::DBusProxy::new(&conn)
                    .await
                    .unwrap()
                    .name_has_owner("org.freedesktop.PolicyKit1".try_into().unwrap())
                    .await
                    .unwrap_or(false)
            })
        });
        MockPolkit { child }
    }

    pub fn allow(&self, bus: &Bus, actions: &[&str]) {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let conn = bus.connect().await;
            conn.call_method(
                Some("org.freedesktop.PolicyKit1"),
                "/org/freedesktop/PolicyKit1/Authority",
                Some("org.freedesktop.DBus.Mock"),
                "SetAllowed",
                &(actions.to_vec(),),
            )
            .await
            .unwrap();
        });
    }
}

impl Drop for MockPolkit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the test bus must add to let the mock own polkit's name and be called.
pub const MOCK_POLKIT_POLICY: &str = r#"<policy user="root"><allow own="org.freedesktop.PolicyKit1"/></policy>
  <policy context="default"><allow send_destination="org.freedesktop.PolicyKit1"/></policy>"#;
