//! The authority: who is calling, as the bus daemon reports the sending connection's Unix
//! user, and what polkit says about them when polkit decides.

use std::collections::HashMap;

use postecole_dbus::Error as BusError;
use zbus::Connection;
use zbus::message::Header;

use super::{ACTION_ADMINISTER, ACTION_SEND_ESTABLISHMENT, Caller};

/// How callers are judged: from `admin_group`, or by asking polkit.
pub struct Policy {
    pub admin_group: String,
    pub polkit: bool,
    /// Unique bus name → uid. The bus never gives a unique name to a second connection, and a
    /// connection's uid cannot change, so asking the bus once per client is enough.
    uids: std::sync::Mutex<HashMap<String, u32>>,
}

impl Policy {
    pub fn new(admin_group: String, polkit: bool) -> Policy {
        Policy {
            admin_group,
            polkit,
            uids: Default::default(),
        }
    }

    async fn uid(&self, conn: &Connection, sender: &str) -> Result<u32, BusError> {
        if let Some(uid) = self.uids.lock().unwrap().get(sender) {
            return Ok(*uid);
        }
        let dbus = zbus::fdo::DBusProxy::builder(conn)
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
}

/// Asks polkit about `action` for the sender of this call (its bus name: polkit then checks
/// the process and session behind it, never the daemon's own).
async fn polkit_allows(
    conn: &Connection,
    hdr: &Header<'_>,
    action: &str,
) -> Result<bool, BusError> {
    use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};
    let subject = Subject::new_for_message_header(hdr).map_err(internal)?;
    let authority = AuthorityProxy::new(conn).await.map_err(|e| {
        tracing::error!(error = %e, "polkit unreachable");
        BusError::NotAuthorized("polkit, which decides who may do this, cannot be reached".into())
    })?;
    let result = authority
        .check_authorization(
            &subject,
            action,
            &std::collections::HashMap::new(),
            CheckAuthorizationFlags::ALLOW_USER_INTERACTION,
            "",
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %e, action, "polkit check failed");
            BusError::NotAuthorized(format!("polkit did not answer about {action}"))
        })?;
    Ok(result.is_authorized)
}

/// The caller, with what polkit says about sending with an establishment address.
pub async fn caller_for_send(
    conn: &Connection,
    hdr: &Header<'_>,
    policy: &Policy,
) -> Result<Caller, BusError> {
    let mut caller = caller(conn, hdr, policy).await?;
    if policy.polkit && caller.uid != 0 {
        caller.send_establishment = polkit_allows(conn, hdr, ACTION_SEND_ESTABLISHMENT).await?;
    }
    Ok(caller)
}

/// The Unix user behind the connection that sent this call, as the bus daemon knows it.
pub async fn caller(
    conn: &Connection,
    hdr: &Header<'_>,
    policy: &Policy,
) -> Result<Caller, BusError> {
    let sender = hdr
        .sender()
        .ok_or_else(|| BusError::NotAuthorized("the call has no sender".into()))?;
    let uid = policy.uid(conn, sender.as_str()).await?;
    let group = policy.admin_group.to_owned();
    // NSS look-ups may block (LDAP, SSSD).
    let mut caller = tokio::task::spawn_blocking(move || Caller::from_uid(uid, &group))
        .await
        .map_err(internal)?
        .map_err(|e| BusError::NotAuthorized(format!("unknown caller: {e}")))?;
    if policy.polkit && uid != 0 {
        caller.admin = polkit_allows(conn, hdr, ACTION_ADMINISTER).await?;
    }
    Ok(caller)
}

fn internal(e: impl std::fmt::Display) -> BusError {
    tracing::error!(error = %e, "bus failure");
    BusError::Internal("the daemon could not process the call; see its log".into())
}
