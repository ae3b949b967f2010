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

impl MockPolkit {
    /// Every `CheckAuthorization` asked so far, as (action, flags); flags 1 is
    /// `AllowUserInteraction`, the one that may put a password dialog in front of the user.
    pub fn checks(&self, bus: &Bus) -> Vec<(String, u32)> {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let conn = bus.connect().await;
            let reply = conn
                .call_method(
                    Some("org.freedesktop.PolicyKit1"),
                    "/org/freedesktop/PolicyKit1/Authority",
                    Some("org.freedesktop.DBus.Mock"),
                    "GetCalls",
                    &(),
                )
                .await
                .unwrap();
            let calls: Vec<(u64, String, Vec<zbus::OwnedVariant>)> =
                reply.body().deserialize().unwrap();
            calls
                .into_iter()
                .filter(|(_, method, _)| method == "CheckAuthorization")
                .map(|(_, _, args)| {
                    let action: String = args[1].clone().try_into().unwrap();
                    let flags: u32 = args[3].clone().try_into().unwrap();
                    (action, flags)
                })
                .collect()
        })
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
