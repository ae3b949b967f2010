//! The relay finished messages are handed to: SMTP through lettre, or the embedded default that
//! drops `.eml` files in `state_dir/local-mail` so that a fresh machine works with no mail
//! server. One message at a time; the delivery loop that feeds it is in `delivery`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use crate::config::{Config, TlsMode};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Worth trying again later: 4xx replies, network, DNS, TLS, time-outs.
    #[error("{0}")]
    Transient(String),
    /// The relay refused for good (5xx); the text is its reply.
    #[error("{0}")]
    Permanent(String),
    #[error("relay configuration: {0}")]
    Setup(String),
    /// No session could be opened (connection, greeting, TLS): true of every message alike.
    #[error("{0}")]
    Unreachable(String),
}

pub enum Relay {
    Smtp(Smtp),
    LocalDir(PathBuf),
}

/// An SMTP relay and the idle connections kept to it.
///
/// lettre's `AsyncSmtpTransport` opens its sockets without TCP_NODELAY and writes the final
/// ".\r\n" apart from the body, so every message waits ~40 ms for a delayed ACK (Nagle). Its
/// connection type is used here directly over a socket of ours with TCP_NODELAY set.
pub struct Smtp {
    host: String,
    port: u16,
    mode: TlsMode,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
    /// Bounds a whole dialogue: lettre's own timeout covers only the connection.
    send_timeout: Duration,
    description: String,
    idle: std::sync::Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    max_idle: usize,
}

/// Relays drop idle clients after a while; older connections are not reused.
const MAX_IDLE: Duration = Duration::from_secs(30);

impl Relay {
    pub fn from_config(config: &Config) -> Result<Relay, Error> {
        let Some(relay) = &config.relay else {
            return Ok(Relay::LocalDir(config.local_mail_dir()));
        };
        let send_timeout = Duration::from_secs(config.queue.send_timeout_secs);
        let tls_parameters = || -> Result<TlsParameters, Error> {
            let mut builder = TlsParameters::builder(relay.host.clone());
            if let Some(ca) = &relay.ca_file {
                let pem = std::fs::read(ca).map_err(|e| {
                    Error::Setup(format!("cannot read ca_file {}: {e}", ca.display()))
                })?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| Error::Setup(format!("ca_file {}: {e}", ca.display())))?;
                builder = builder.add_root_certificate(cert);
            }
            builder
                .build_rustls()
                .map_err(|e| Error::Setup(e.to_string()))
        };
        let tls = match relay.tls {
            TlsMode::None => None,
            TlsMode::Starttls | TlsMode::Tls => Some(tls_parameters()?),
        };
        let credentials = match &relay.username {
            Some(username) => {
                let password = relay.password().map_err(Error::Setup)?.unwrap_or_default();
                Some(Credentials::new(username.clone(), password))
            }
            None => None,
        };
        let description = format!(
            "{}:{} ({})",
            relay.host,
            relay.port,
            match relay.tls {
                TlsMode::None => "no TLS",
                TlsMode::Starttls => "STARTTLS",
                TlsMode::Tls => "TLS",
            }
        );
        Ok(Relay::Smtp(Smtp {
            host: relay.host.clone(),
            port: relay.port,
            mode: relay.tls,
            tls,
            credentials,
            hello: ClientId::default(),
            send_timeout,
            description,
            idle: std::sync::Mutex::new(Vec::new()),
            max_idle: config.queue.concurrency,
        }))
    }

    pub fn describe(&self) -> String {
        match self {
            Relay::Smtp(smtp) => smtp.description.clone(),
            Relay::LocalDir(dir) => format!("local mail directory {}", dir.display()),
        }
    }

    /// Delivers the exact bytes given, so that a retried message is the same message; returns
    /// the relay's reply.
    pub async fn send(
        &self,
        envelope: &Envelope,
        message_id: &str,
        bytes: &[u8],
    ) -> Result<String, Error> {
        match self {
            Relay::Smtp(smtp) => {
                match tokio::time::timeout(smtp.send_timeout, smtp.send(envelope, bytes)).await {
                    Err(_) => Err(Error::Transient(format!(
                        "the relay did not finish within {} s",
                        smtp.send_timeout.as_secs()
                    ))),
                    Ok(Ok(response)) => Ok(format!(
                        "{} {}",
                        response.code(),
                        response.message().collect::<Vec<_>>().join(" ")
                    )),
                    Ok(Err(e)) => Err(e),
                }
            }
            Relay::LocalDir(dir) => write_local(dir, message_id, bytes)
                .await
                .map(|name| format!("written to {}", dir.join(name).display()))
                .map_err(|e| Error::Transient(format!("cannot write to {}: {e}", dir.display()))),
        }
    }

    /// The dialog's "test" button: connect, TLS and AUTH as configured, then say what happened.
    pub async fn test(&self) -> Result<String, String> {
        match self {
            Relay::Smtp(smtp) => {
                let description = &smtp.description;
                let attempt = async {
                    let mut conn = smtp.connect().await?;
                    let alive = conn.test_connected().await;
                    conn.quit().await.ok();
                    Ok::<bool, Error>(alive)
                };
                match tokio::time::timeout(smtp.send_timeout, attempt).await {
                    Err(_) => Err(format!(
                        "{description}: no answer within {} s",
                        smtp.send_timeout.as_secs()
                    )),
                    Ok(Ok(true)) => Ok(format!(
                        "{description}: connected{}{}",
                        if smtp.tls.is_some() {
                            ", TLS certificate verified"
                        } else {
                            ""
                        },
                        if smtp.credentials.is_some() {
                            ", authenticated"
                        } else {
                            ""
                        }
                    )),
                    Ok(Ok(false)) => Err(format!("{description}: the relay did not answer NOOP")),
                    Ok(Err(e)) => Err(format!("{description}: {e}")),
                }
            }
            Relay::LocalDir(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                let probe = dir.join(".probe");
                tokio::fs::write(&probe, b"")
                    .await
                    .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
                let _ = tokio::fs::remove_file(&probe).await;
                Ok(format!(
                    "no relay configured: mail is written to {}",
                    dir.display()
                ))
            }
        }
    }
}

impl Smtp {
    async fn connect(&self) -> Result<AsyncSmtpConnection, Error> {
        self.open().await.map_err(|e| match e {
            Error::Transient(m) => Error::Unreachable(m),
            other => other,
        })
    }

    async fn open(&self) -> Result<AsyncSmtpConnection, Error> {
        let mut conn = if self.mode == TlsMode::Tls {
            // Implicit TLS goes through lettre's own socket (no TCP_NODELAY there).
            AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(self.send_timeout),
                &self.hello,
                self.tls.clone(),
                None,
            )
            .await
            .map_err(classify)?
        } else {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| {
                    Error::Transient(format!("cannot connect to {}: {e}", self.description))
                })?;
            tcp.set_nodelay(true)
                .map_err(|e| Error::Transient(format!("TCP_NODELAY: {e}")))?;
            let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                .await
                .map_err(classify)?;
            if let Some(tls) = &self.tls {
                conn.starttls(tls.clone(), &self.hello)
                    .await
                    .map_err(classify)?;
            }
            conn
        };
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials)
                .await
                .map_err(classify)?;
        }
        Ok(conn)
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().unwrap();
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < MAX_IDLE && !conn.has_broken() {
                return Some(conn);
            }
        }
        None
    }

    /// One transaction, on an idle connection when there is one. A reused connection that the
    /// relay closed meanwhile fails without a reply code: then once more on a fresh one.
    async fn send(
        &self,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<lettre::transport::smtp::response::Response, Error> {
        let (mut conn, reused) = match self.take_idle() {
            Some(conn) => (conn, true),
            None => (self.connect().await?, false),
        };
        let mut result = conn.send(envelope, bytes).await;
        // No reply code at all (a reset, or the end of the stream read as an incomplete
        // response): the relay had closed the idle session.
        if reused && matches!(&result, Err(e) if e.status().is_none() && !e.is_client()) {
            conn = self.connect().await?;
            result = conn.send(envelope, bytes).await;
        }
        if result.is_ok() && !conn.has_broken() {
            let mut idle = self.idle.lock().unwrap();
            if idle.len() < self.max_idle {
                idle.push((conn, Instant::now()));
            }
        }
        result.map_err(|e| {
            // lettre refuses before sending what this relay cannot take (8-bit text without
            // 8BITMIME, a non-ASCII address without SMTPUTF8): no later attempt would differ.
            if e.is_client() {
                Error::Permanent(format!("the relay cannot take this message: {e}"))
            } else {
                classify(e)
            }
        })
    }
}

/// 5xx replies are final; everything else — 4xx, network, TLS, a connection cut after the
/// final dot — is worth another try with the same bytes.
fn classify(e: lettre::transport::smtp::Error) -> Error {
    if e.is_permanent() {
        Error::Permanent(e.to_string())
    } else {
        Error::Transient(e.to_string())
    }
}

/// One `.eml` per message, written under a temporary name and renamed so that a reader never
/// sees half a message.
async fn write_local(dir: &Path, message_id: &str, bytes: &[u8]) -> std::io::Result<String> {
    tokio::fs::create_dir_all(dir).await?;
    let stem: String = message_id
        .trim_matches(['<', '>'])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let name = format!("{stamp}-{stem}.eml");
    let tmp = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, dir.join(&name)).await?;
    Ok(name)
}
