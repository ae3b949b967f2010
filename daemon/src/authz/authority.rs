//! The authority: who is calling, as the bus daemon reports the sending connection's Unix
//! user, and what polkit says about them when polkit decides. The D-Bus interfaces ask it once
//! per call (`caller`, or `sender` for sending calls) and take no decision themselves.

use std::collections::HashMap;

use postecole_dbus::Error as BusError;
use zbus::Connection;
use zbus::message::Header;

use super::{ACTION_ADMINISTER, ACTION_SEND_ESTABLISHMENT, Caller};

/// How callers are judged: from `admin_group`, or by asking polkit.
pub struct Authority {
    /// The daemon's own connection: the bus daemon and polkit are asked through it.
    conn: Connection,
    admin_group: String,
    polkit: bool,
    /// Unique bus name → uid. The bus never gives a unique name to a second connection, and a
    /// connection's uid cannot change, so asking the bus once per client is enough.
    uids: std::sync::Mutex<HashMap<String, u32>>,
}

impl Authority {
    pub fn new(conn: Connection, admin_group: String, polkit: bool) -> Authority {
        Authority {
            conn,
            admin_group,
            polkit,
            uids: Default::default(),
        }
    }

    /// The Unix user behind the connection that sent this call, as the bus daemon knows it.
    /// Under polkit, the caller counts as an administrator only if polkit says so without
    /// asking anyone: a teacher listing the queue never meets a password prompt.
    pub async fn caller(&self, hdr: &Header<'_>) -> Result<Caller, BusError> {
        self.resolve(hdr, false).await
    }

    /// The caller of a method that only administrators may use: under polkit, the one call
    /// where an authentication dialog may ask for the administrator's password.
    pub async fn administrator(&self, hdr: &Header<'_>) -> Result<Caller, BusError> {
        self.resolve(hdr, true).await
    }

    async fn resolve(&self, hdr: &Header<'_>, interactive: bool) -> Result<Caller, BusError> {
        let sender = hdr
            .sender()
            .ok_or_else(|| BusError::NotAuthorized("the call has no sender".into()))?;
        let uid = self.uid(sender.as_str()).await?;
        let group = self.admin_group.to_owned();
        // NSS look-ups may block (LDAP, SSSD): in their own bounded pool, with a time limit.
        let mut caller = crate::blocking::USER_LOOKUPS
            .run(uid, move || Caller::from_uid(uid, &group))
            .await
            .map_err(|e| BusError::NotAuthorized(format!("cannot tell who is calling: {e}")))?
            .map_err(|e| BusError::NotAuthorized(format!("unknown caller: {e}")))?;
        if self.polkit && uid != 0 {
            caller.admin = self
                .polkit_allows(hdr, ACTION_ADMINISTER, interactive)
                .await?;
        }
        Ok(caller)
    }

    /// The caller, with what polkit says about sending with an establishment address.
    pub async fn sender(&self, hdr: &Header<'_>) -> Result<Caller, BusError> {
        let mut caller = self.caller(hdr).await?;
        if self.polkit && caller.uid != 0 {
            caller.send_establishment = self
                .polkit_allows(hdr, ACTION_SEND_ESTABLISHMENT, true)
                .await?;
        }
        Ok(caller)
    }

    /// The unique bus names of `uid`'s connections that have called the daemon (and may still
    /// be there), for what is theirs alone to hear.
    pub fn names_of(&self, uid: u32) -> Vec<String> {
        self.uids
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, u)| **u == uid)
            .map(|(name, _)| name.clone())
            .collect()
    }

    async fn uid(&self, sender: &str) -> Result<u32, BusError> {
        if let Some(uid) = self.uids.lock().unwrap().get(sender) {
            return Ok(*uid);
        }
        let dbus = zbus::fdo::DBusProxy::builder(&self.conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(internal)?;
        let name = zbus::names::UniqueName::try_from(sender).map_err(internal)?;
        let uid = dbus
            .get_connection_unix_user(name.into())
            .await
            .map_err(internal)?;
        let mut uids = self.uids.lock().unwrap();
        // Gone clients are not tracked; a bound keeps the map small on a long-lived bus.
        if uids.len() >= 1024 {
            uids.clear();
        }
        uids.insert(sender.to_owned(), uid);
        Ok(uid)
    }

    /// Asks polkit about `action` for the sender of this call (its bus name: polkit then
    /// checks the process and session behind it, never the daemon's own).
    async fn polkit_allows(
        &self,
        hdr: &Header<'_>,
        action: &str,
        interactive: bool,
    ) -> Result<bool, BusError> {
        use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};
        let subject = Subject::new_for_message_header(hdr).map_err(internal)?;
        let authority = AuthorityProxy::new(&self.conn).await.map_err(|e| {
            tracing::error!(error = %e, "polkit unreachable");
            BusError::NotAuthorized(
                "polkit, which decides who may do this, cannot be reached".into(),
            )
        })?;
        let result = authority
            .check_authorization(
                &subject,
                action,
                &HashMap::new(),
                if interactive {
                    CheckAuthorizationFlags::ALLOW_USER_INTERACTION
                } else {
                    CheckAuthorizationFlags::empty()
                },
                "",
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %e, action, "polkit check failed");
                BusError::NotAuthorized(format!("polkit did not answer about {action}"))
            })?;
        Ok(result.is_authorized)
    }
}

fn internal(e: impl std::fmt::Display) -> BusError {
    tracing::error!(error = %e, "bus failure");
    BusError::Internal("the daemon could not process the call; see its log".into())
}
