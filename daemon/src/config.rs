//! `/etc/postecole/postecoled.toml`: parsed strictly so that a typo stops the daemon at start
//! with the key's name instead of silently falling back to a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/postecole/postecoled.toml";
const DEFAULT_STATE_DIR: &str = "/var/lib/postecole";
/// File name looked up in `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`).
pub const PASSWORD_CREDENTIAL: &str = "relay-password";
/// The key the relay's OAuth2 tokens are encrypted with at rest (`LoadCredentialEncrypted=`).
pub const TOKEN_KEY_CREDENTIAL: &str = "relay-oauth2-key";
/// The OAuth2 client secret of the `client_credentials` grant.
pub const CLIENT_SECRET_CREDENTIAL: &str = "relay-oauth2-client-secret";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration file {path}: key `{key}`: {message}")]
    Value {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_admin_group")]
    pub admin_group: String,
    /// Who decides that a caller is an administrator.
    #[serde(default)]
    pub authorization: Authorization,
    /// The school's own message templates (`*.toml`), next to the built-in ones.
    #[serde(default = "default_templates_dir")]
    pub templates_dir: PathBuf,
    /// Absent: the embedded default, `.eml` files under `state_dir/local-mail`.
    pub relay: Option<Relay>,
    #[serde(default)]
    pub queue: Queue,
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Authorization {
    /// Root and members of `admin_group`: works where polkit is absent.
    #[default]
    Group,
    /// polkit decides, for the caller's bus name (the system-wide convention).
    Polkit,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    // The spellings relays' own documentation uses are taken as they are written there.
    #[serde(alias = "STARTTLS", alias = "StartTLS", alias = "StartTls")]
    Starttls,
    #[serde(alias = "TLS", alias = "Tls")]
    Tls,
    #[serde(alias = "NONE", alias = "None")]
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub allowed_sender_domains: Option<Vec<String>>,
    pub sender: Option<String>,
    /// How the daemon authenticates to the relay when it does.
    #[serde(default)]
    pub auth: AuthKind,
    pub oauth2: Option<OAuth2>,
    /// The provider whose published sending limits apply when the keys below are unset.
    pub preset: Option<Preset>,
    /// Messages handed to the relay in any minute; delivery paces itself to stay under it.
    pub max_messages_per_minute: Option<u32>,
    /// Recipients over any 24 hours; past it mail waits for the window to move on.
    pub max_recipients_per_day: Option<u32>,
    /// Simultaneous SMTP sessions with the relay (at most `queue.concurrency`).
    pub max_connections: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// `username` and the password credential (PLAIN or LOGIN).
    #[default]
    Password,
    /// OAuth2 access tokens (`[relay.oauth2]`), sent with SASL XOAUTH2.
    Xoauth2,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Exchange Online: 30 messages a minute, 10,000 recipients a day, 3 connections per mailbox.
    Microsoft365,
    /// Google Workspace: 10,000 recipients a day per user.
    GoogleWorkspace,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Microsoft,
    Google,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// RFC 8628: an administrator signs in once on another device (`mailctl relay login`).
    #[default]
    DeviceCode,
    /// The application's own identity, with a client secret (no user, no login).
    ClientCredentials,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2 {
    pub provider: Option<Provider>,
    /// The organisation's tenant (Microsoft): its domain or id, never `common`.
    pub tenant: Option<String>,
    pub token_url: Option<String>,
    pub device_url: Option<String>,
    pub client_id: String,
    pub scope: Option<String>,
    /// The mailbox the tokens are for (the SASL user name).
    pub username: String,
    #[serde(default)]
    pub grant: Grant,
    /// The client secret of `client_credentials`; the systemd credential is read first.
    pub client_secret_file: Option<PathBuf>,
    /// The key the tokens are encrypted with; the systemd credential is read first.
    pub key_file: Option<PathBuf>,
}

/// The relay's sending limits in force, after the preset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendingLimits {
    pub messages_per_minute: Option<u32>,
    pub recipients_per_day: Option<u32>,
    pub connections: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Queue {
    pub concurrency: usize,
    pub min_backoff_secs: u64,
    pub max_backoff_secs: u64,
    pub max_lifetime_secs: u64,
    pub send_timeout_secs: u64,
    pub max_message_bytes: u64,
    /// How long the record of a delivered, failed or cancelled message is listed after it was
    /// submitted; its sealed copy stays in the archive.
    pub retention_secs: u64,
}

impl Default for Queue {
    fn default() -> Self {
        // Postfix's defaults: minimal_backoff_time, maximal_backoff_time, maximal_queue_lifetime.
        Queue {
            concurrency: 4,
            min_backoff_secs: 300,
            max_backoff_secs: 4000,
            max_lifetime_secs: 432_000,
            send_timeout_secs: 120,
            max_message_bytes: 26_214_400,
            retention_secs: 90 * 86_400,
        }
    }
}

/// What one local user may take of the PC's shared daemon, and the disk's last reserve.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Per non-administrator Unix user: messages whose content waits in the spool (queued,
    /// deferred, held, sending, or failed and still retryable).
    pub max_queued_messages: u64,
    /// Per non-administrator Unix user: the bytes of those messages, as they will be sent.
    pub max_queued_bytes: u64,
    /// Per non-administrator call: recipients (To, Cc, Bcc) over all messages of the call.
    pub max_recipients_per_call: u64,
    /// Daemon-wide: estimated bytes of the messages being built at once; a call waits for room.
    pub max_building_bytes: u64,
    /// Below this much free space in `state_dir`, new mail and new accounts are refused
    /// (`DiskFull`); what is left is for recording deliveries and sealing the archive.
    pub disk_reserve_bytes: u64,
    /// Accounts a non-administrator may have awaiting their code at once.
    pub max_pending_accounts: u32,
    /// Accounts a non-administrator may create in 24 hours, deleted ones included.
    pub max_creations_per_day: u32,
    /// Least time between two codes e-mailed to one address (or for one account).
    pub code_interval_secs: u64,
    /// Codes e-mailed to one address (or for one account) in 24 hours, whoever asks;
    /// administrators are exempt from the per-user limits, never from the per-address ones.
    pub max_codes_per_day: u32,
}

impl Default for Limits {
    fn default() -> Self {
        // A whole-school merge: 1,000 families, one 200 KB PDF each (about 280 KB once
        // encoded), two addresses per family, with room for a second merge behind it.
        Limits {
            max_queued_messages: 5_000,
            max_queued_bytes: 1 << 30,
            max_recipients_per_call: 2_000,
            max_building_bytes: 64 << 20,
            disk_reserve_bytes: 64 << 20,
            max_pending_accounts: 3,
            max_creations_per_day: 10,
            code_interval_secs: 60,
            max_codes_per_day: 5,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: default_state_dir(),
            admin_group: default_admin_group(),
            authorization: Authorization::Group,
            templates_dir: default_templates_dir(),
            relay: None,
            queue: Queue::default(),
            limits: Limits::default(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}
fn default_templates_dir() -> PathBuf {
    PathBuf::from("/etc/postecole/templates")
}
fn default_admin_group() -> String {
    "postecole-admin".into()
}
fn default_port() -> u16 {
    587
}
fn default_tls() -> TlsMode {
    TlsMode::Starttls
}

impl Config {
    /// Reads and checks `path`. A missing file at the default path means "all defaults", so a
    /// fresh install runs with the embedded local-mail relay; a missing explicit path is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<Config, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => String::new(),
            Err(source) => {
                return Err(Error::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate().map_err(|(key, message)| Error::Value {
            path: path.to_owned(),
            key,
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.state_dir.is_absolute() {
            return Err(("state_dir", "must be an absolute path".into()));
        }
        if self.admin_group.is_empty()
            || !self
                .admin_group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(("admin_group", "must be a Unix group name".into()));
        }
        if let Some(relay) = &self.relay {
            relay.validate()?;
        }
        let q = &self.queue;
        if !(1..=64).contains(&q.concurrency) {
            return Err(("queue.concurrency", "must be between 1 and 64".into()));
        }
        if q.min_backoff_secs == 0 {
            return Err(("queue.min_backoff_secs", "must be at least 1".into()));
        }
        if q.max_backoff_secs < q.min_backoff_secs {
            return Err((
                "queue.max_backoff_secs",
                "must not be less than queue.min_backoff_secs".into(),
            ));
        }
        if q.max_lifetime_secs < q.min_backoff_secs {
            return Err((
                "queue.max_lifetime_secs",
                "must not be less than queue.min_backoff_secs".into(),
            ));
        }
        if q.send_timeout_secs == 0 {
            return Err(("queue.send_timeout_secs", "must be at least 1".into()));
        }
        if q.send_timeout_secs > 3600 {
            // An hour is beyond any relay's patience; the bound keeps deadlines computable.
            return Err(("queue.send_timeout_secs", "must be at most 3600".into()));
        }
        if q.retention_secs < q.max_lifetime_secs {
            return Err((
                "queue.retention_secs",
                "must not be less than queue.max_lifetime_secs".into(),
            ));
        }
        if q.max_message_bytes < 1024 {
            return Err(("queue.max_message_bytes", "must be at least 1024".into()));
        }
        let l = &self.limits;
        if l.max_queued_messages == 0 {
            return Err(("limits.max_queued_messages", "must be at least 1".into()));
        }
        if l.max_queued_bytes < q.max_message_bytes {
            return Err((
                "limits.max_queued_bytes",
                "must not be less than queue.max_message_bytes".into(),
            ));
        }
        if l.max_recipients_per_call == 0 {
            return Err((
                "limits.max_recipients_per_call",
                "must be at least 1".into(),
            ));
        }
        if l.max_building_bytes < 1 << 20 {
            return Err((
                "limits.max_building_bytes",
                "must be at least 1048576".into(),
            ));
        }
        if l.max_pending_accounts == 0 {
            return Err(("limits.max_pending_accounts", "must be at least 1".into()));
        }
        if l.max_creations_per_day == 0 {
            return Err(("limits.max_creations_per_day", "must be at least 1".into()));
        }
        if l.code_interval_secs == 0 {
            return Err(("limits.code_interval_secs", "must be at least 1".into()));
        }
        if !(1..=100).contains(&l.max_codes_per_day) {
            return Err((
                "limits.max_codes_per_day",
                "must be between 1 and 100".into(),
            ));
        }
        Ok(())
    }

    pub fn local_mail_dir(&self) -> PathBuf {
        self.state_dir.join("local-mail")
    }
}

impl Relay {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.host.trim().is_empty() || self.host.contains(char::is_whitespace) {
            return Err(("relay.host", "must be a host name or address".into()));
        }
        if self.port == 0 {
            return Err(("relay.port", "must be between 1 and 65535".into()));
        }
        if self.auth == AuthKind::Password
            && self.username.is_some()
            && self.password_file.is_none()
            && credential_path().is_none()
        {
            return Err((
                "relay.password_file",
                "is required when relay.username is set (or the systemd credential relay-password)"
                    .into(),
            ));
        }
        if let Some(sender) = &self.sender
            && sender.parse::<lettre::Address>().is_err()
        {
            return Err((
                "relay.sender",
                format!("`{sender}` is not an e-mail address"),
            ));
        }
        if self.allowed_sender_domains.is_some() && self.sender.is_none() {
            return Err((
                "relay.sender",
                "is required when relay.allowed_sender_domains is set".into(),
            ));
        }
        for (key, value) in [
            (
                "relay.max_messages_per_minute",
                self.max_messages_per_minute,
            ),
            ("relay.max_recipients_per_day", self.max_recipients_per_day),
            ("relay.max_connections", self.max_connections),
        ] {
            if value == Some(0) {
                return Err((key, "must be at least 1".into()));
            }
        }
        match (self.auth, &self.oauth2) {
            (AuthKind::Xoauth2, None) => {
                return Err((
                    "relay.oauth2",
                    "is required when relay.auth = \"xoauth2\"".into(),
                ));
            }
            (AuthKind::Password, Some(_)) => {
                return Err((
                    "relay.auth",
                    "must be \"xoauth2\" when [relay.oauth2] is given".into(),
                ));
            }
            (AuthKind::Xoauth2, Some(oauth2)) => oauth2.validate()?,
            (AuthKind::Password, None) => {}
        }
        Ok(())
    }

    /// The limits in force: the keys set here, else the preset's.
    pub fn sending_limits(&self) -> SendingLimits {
        let preset = match self.preset {
            Some(Preset::Microsoft365) => SendingLimits {
                messages_per_minute: Some(30),
                recipients_per_day: Some(10_000),
                connections: Some(3),
            },
            Some(Preset::GoogleWorkspace) => SendingLimits {
                messages_per_minute: None,
                recipients_per_day: Some(10_000),
                connections: None,
            },
            None => SendingLimits::default(),
        };
        SendingLimits {
            messages_per_minute: self.max_messages_per_minute.or(preset.messages_per_minute),
            recipients_per_day: self.max_recipients_per_day.or(preset.recipients_per_day),
            connections: self.max_connections.or(preset.connections),
        }
    }

    /// The relay password: systemd's credential first, then `password_file`.
    pub fn password(&self) -> Result<Option<String>, String> {
        if self.username.is_none() {
            return Ok(None);
        }
        let Some(path) = credential_path().or_else(|| self.password_file.clone()) else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read relay password {}: {e}", path.display()))?;
        Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()))
    }

    /// Whether mail may leave with the account's own address as From (DMARC-aligned relays).
    pub fn allows_sender_domain(&self, address: &str) -> bool {
        let Some(domains) = &self.allowed_sender_domains else {
            return true;
        };
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }
}

impl OAuth2 {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.client_id.trim().is_empty() {
            return Err(("relay.oauth2.client_id", "must not be empty".into()));
        }
        if self.username.parse::<lettre::Address>().is_err() {
            return Err((
                "relay.oauth2.username",
                format!("`{}` is not an e-mail address", self.username),
            ));
        }
        if let Some(tenant) = &self.tenant
            && (tenant.is_empty()
                || ["common", "organizations", "consumers"].contains(&tenant.as_str())
                || !tenant
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)))
        {
            return Err((
                "relay.oauth2.tenant",
                "must be the organisation's domain or tenant id (never common)".into(),
            ));
        }
        for (key, url) in [
            ("relay.oauth2.token_url", self.token_url()),
            ("relay.oauth2.device_url", self.device_url()),
        ] {
            let needed = key == "relay.oauth2.token_url" || self.grant == Grant::DeviceCode;
            match url {
                Some(u) if !u.starts_with("https://") || u.contains(char::is_whitespace) => {
                    return Err((key, format!("`{u}` is not an https:// address")));
                }
                None if needed => {
                    return Err((
                        key,
                        "is required unless provider (and tenant, for microsoft) give it".into(),
                    ));
                }
                _ => {}
            }
        }
        if self.scope().is_none() {
            return Err((
                "relay.oauth2.scope",
                "is required without a provider".into(),
            ));
        }
        if self.grant == Grant::ClientCredentials
            && self.client_secret_file.is_none()
            && credential(CLIENT_SECRET_CREDENTIAL).is_none()
        {
            return Err((
                "relay.oauth2.client_secret_file",
                "is required with grant = \"client_credentials\" (or the systemd credential relay-oauth2-client-secret)".into(),
            ));
        }
        if self.key_file.is_none() && credential(TOKEN_KEY_CREDENTIAL).is_none() {
            return Err((
                "relay.oauth2.key_file",
                "is required (or the systemd credential relay-oauth2-key): the tokens are kept encrypted with it".into(),
            ));
        }
        Ok(())
    }

    /// The token endpoint: the key, else the provider's.
    pub fn token_url(&self) -> Option<String> {
        self.token_url.clone().or_else(|| match self.provider? {
            Provider::Microsoft => Some(format!(
                "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
                self.tenant.as_ref()?
            )),
            Provider::Google => Some("https://oauth2.googleapis.com/token".into()),
        })
    }

    /// The device authorization endpoint (RFC 8628): the key, else the provider's.
    pub fn device_url(&self) -> Option<String> {
        self.device_url.clone().or_else(|| match self.provider? {
            Provider::Microsoft => Some(format!(
                "https://login.microsoftonline.com/{}/oauth2/v2.0/devicecode",
                self.tenant.as_ref()?
            )),
            Provider::Google => Some("https://oauth2.googleapis.com/device/code".into()),
        })
    }

    pub fn scope(&self) -> Option<String> {
        self.scope.clone().or_else(|| {
            Some(
                match (self.provider?, self.grant) {
                    (Provider::Microsoft, Grant::DeviceCode) => {
                        "https://outlook.office.com/SMTP.Send offline_access"
                    }
                    (Provider::Microsoft, Grant::ClientCredentials) => {
                        "https://outlook.office365.com/.default"
                    }
                    (Provider::Google, _) => "https://mail.google.com/",
                }
                .into(),
            )
        })
    }

    /// The client secret: systemd's credential first, then `client_secret_file`.
    pub fn client_secret(&self) -> Result<Option<String>, String> {
        if self.grant != Grant::ClientCredentials {
            return Ok(None);
        }
        let Some(path) =
            credential(CLIENT_SECRET_CREDENTIAL).or_else(|| self.client_secret_file.clone())
        else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the client secret {}: {e}", path.display()))?;
        Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()))
    }

    /// The bytes the token key is derived from: systemd's credential first, then `key_file`.
    pub fn token_key(&self) -> Result<Vec<u8>, String> {
        let path = credential(TOKEN_KEY_CREDENTIAL)
            .or_else(|| self.key_file.clone())
            .ok_or("no key for the relay's tokens (credential relay-oauth2-key or key_file)")?;
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("cannot read the token key {}: {e}", path.display()))?;
        if bytes.len() < 32 {
            return Err(format!(
                "the token key {} holds {} bytes: at least 32 random bytes are needed",
                path.display(),
                bytes.len()
            ));
        }
        Ok(bytes)
    }
}

/// `$CREDENTIALS_DIRECTORY/relay-password`, when systemd handed it over (LoadCredential=).
fn credential_path() -> Option<PathBuf> {
    credential(PASSWORD_CREDENTIAL)
}

/// `$CREDENTIALS_DIRECTORY/NAME`, when systemd handed it over.
fn credential(name: &str) -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|dir| PathBuf::from(dir).join(name))
        .filter(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/postecole"));
        assert_eq!(c.admin_group, "postecole-admin");
        assert!(c.relay.is_none());
        assert_eq!(c.queue.min_backoff_secs, 300);
        assert_eq!(c.queue.max_lifetime_secs, 432_000);
        assert_eq!(c.limits.max_queued_messages, 5_000);
        assert_eq!(c.limits.disk_reserve_bytes, 64 << 20);
        assert_eq!(c.limits.max_pending_accounts, 3);
        assert_eq!(c.limits.max_creations_per_day, 10);
        assert_eq!(c.limits.code_interval_secs, 60);
        assert_eq!(c.limits.max_codes_per_day, 5);
    }

    #[test]
    fn limits_parse_and_are_checked() {
        let c = parse("[limits]\nmax_queued_messages = 3\ndisk_reserve_bytes = 0").unwrap();
        assert_eq!(c.limits.max_queued_messages, 3);
        assert_eq!(c.limits.disk_reserve_bytes, 0);
        assert_eq!(c.limits.max_recipients_per_call, 2_000);
        // The default merge fits: 1,000 families, two addresses, a 200 KB PDF each, encoded.
        let d = Limits::default();
        assert!(d.max_queued_messages >= 1_000 && d.max_recipients_per_call >= 2_000);
        assert!(d.max_queued_bytes >= 1_000 * 280_000);
        let e = parse("[limits]\nmax_queued_messages = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.max_queued_messages"), "{e}");
        let e = parse("[limits]\nmax_queued_bytes = 10")
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.max_queued_bytes"), "{e}");
        let e = parse("[limits]\nmax_queud = 1").unwrap_err().to_string();
        assert!(e.contains("max_queud"), "{e}");
    }

    #[test]
    fn limits_are_read_and_checked() {
        let c = parse("[limits]\nmax_pending_accounts = 1\ncode_interval_secs = 5").unwrap();
        assert_eq!(c.limits.max_pending_accounts, 1);
        assert_eq!(c.limits.code_interval_secs, 5);
        assert_eq!(
            c.limits.max_codes_per_day, 5,
            "unset keys keep their default"
        );
        let e = parse("[limits]\nmax_codes_per_day = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.max_codes_per_day"), "{e}");
        let e = parse("[limits]\nmax_creations_per_day = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.max_creations_per_day"), "{e}");
        let e = parse("[limits]\nmax_pending = 2").unwrap_err().to_string();
        assert!(e.contains("max_pending"), "{e}");
    }

    #[test]
    fn full_example_parses() {
        let c = parse(
            r#"
state_dir = "/tmp/x"
admin_group = "staff-admin"
[relay]
host = "smtp.ac-example.fr"
port = 465
tls = "tls"
username = "ce.0123456x"
password_file = "/etc/postecole/relay-password"
allowed_sender_domains = ["ac-example.fr"]
sender = "ne-pas-repondre@ac-example.fr"
[queue]
concurrency = 2
"#,
        )
        .unwrap();
        let relay = c.relay.unwrap();
        assert_eq!(relay.tls, TlsMode::Tls);
        assert_eq!(relay.port, 465);
        assert!(relay.allows_sender_domain("x@AC-example.fr"));
        assert!(!relay.allows_sender_domain("x@ecole.fr"));
        assert_eq!(c.queue.concurrency, 2);
        assert_eq!(c.queue.max_backoff_secs, 4000);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("stat_dir = \"/x\"").unwrap_err().to_string();
        assert!(e.contains("stat_dir"), "{e}");
        let e = parse("[relay]\nhost = \"h\"\nprot = 25")
            .unwrap_err()
            .to_string();
        assert!(e.contains("prot"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("[relay]\nhost = \"h\"\ntls = \"ssl\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls") && e.contains("ssl"), "{e}");
        let e = parse("[relay]\nhost = \"h\"\nport = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("relay.port"), "{e}");
        let e = parse("[queue]\nmin_backoff_secs = 10\nmax_backoff_secs = 5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("queue.max_backoff_secs"), "{e}");
        let e = parse("state_dir = \"relative\"").unwrap_err().to_string();
        assert!(e.contains("state_dir"), "{e}");
        let e = parse("[relay]\nhost = \"h\"\nusername = \"u\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("relay.password_file"), "{e}");
        let e = parse("authorization = \"ldap\"").unwrap_err().to_string();
        assert!(e.contains("authorization") || e.contains("ldap"), "{e}");
        let e = parse("[queue]\nconcurrency = \"four\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("concurrency"), "{e}");
    }

    #[test]
    fn tls_modes_are_taken_as_relays_spell_them() {
        for (written, mode) in [
            ("STARTTLS", TlsMode::Starttls),
            ("starttls", TlsMode::Starttls),
            ("TLS", TlsMode::Tls),
            ("none", TlsMode::None),
        ] {
            let c = parse(&format!(
                "[relay]\nhost = \"smtp.ac-test.fr\"\ntls = \"{written}\"\n"
            ))
            .unwrap();
            assert_eq!(c.relay.unwrap().tls, mode, "{written}");
        }
        assert!(parse("[relay]\nhost = \"h\"\ntls = \"sometimes\"\n").is_err());
    }
}
