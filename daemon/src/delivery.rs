//! Hands finished messages to the relay: SMTP through lettre, or the embedded default that drops
//! `.eml` files in `state_dir/local-mail` so that a fresh machine works with no mail server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

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
}

pub enum Relay {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// lettre's own timeout covers only the connection; this bounds the whole dialogue.
        send_timeout: Duration,
        description: String,
    },
    LocalDir(PathBuf),
}

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
            TlsMode::None => Tls::None,
            TlsMode::Starttls => Tls::Required(tls_parameters()?),
            TlsMode::Tls => Tls::Wrapper(tls_parameters()?),
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(relay.host.as_str())
                .port(relay.port)
                .tls(tls)
                .timeout(Some(send_timeout));
        if let Some(username) = &relay.username {
            let password = relay.password().map_err(Error::Setup)?.unwrap_or_default();
            builder = builder.credentials(Credentials::new(username.clone(), password));
        }
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
        Ok(Relay::Smtp {
            transport: builder.build(),
            send_timeout,
            description,
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Relay::Smtp { description, .. } => description.clone(),
            Relay::LocalDir(dir) => format!("local mail directory {}", dir.display()),
        }
    }

    /// Delivers the exact bytes given, so that a retried message is the same message.
    pub async fn send(
        &self,
        envelope: &Envelope,
        message_id: &str,
        bytes: &[u8],
    ) -> Result<(), Error> {
        match self {
            Relay::Smtp {
                transport,
                send_timeout,
                ..
            } => match tokio::time::timeout(*send_timeout, transport.send_raw(envelope, bytes))
                .await
            {
                Err(_) => Err(Error::Transient(format!(
                    "the relay did not finish within {} s",
                    send_timeout.as_secs()
                ))),
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) if e.is_permanent() => Err(Error::Permanent(e.to_string())),
                Ok(Err(e)) => Err(Error::Transient(e.to_string())),
            },
            Relay::LocalDir(dir) => write_local(dir, message_id, bytes)
                .await
                .map_err(|e| Error::Transient(format!("cannot write to {}: {e}", dir.display()))),
        }
    }
}

/// One `.eml` per message, written under a temporary name and renamed so that a reader never
/// sees half a message.
async fn write_local(dir: &Path, message_id: &str, bytes: &[u8]) -> std::io::Result<()> {
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
    tokio::fs::rename(&tmp, dir.join(name)).await
}
