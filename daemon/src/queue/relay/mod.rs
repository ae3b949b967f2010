//! The relay finished messages are handed to: SMTP, or the embedded default that drops `.eml`
//! files in `state_dir/local-mail` so that a fresh machine works with no mail server. The
//! delivery loop that feeds it is in `delivery`; the connections kept to an SMTP relay, each
//! a task taking messages in turn, in `lanes`; the SMTP dialogue itself (pipelined when the
//! relay allows) in `session`.
//!
//! With `auth = "xoauth2"` the session authenticates with an OAuth2 access token (`oauth`),
//! renewed once and tried again when the relay refuses it.

mod lanes;
mod session;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::{Response, Severity};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

use self::lanes::{Answer as Done, Job, Lanes};
use self::session::{Fault, Security, Session, text};
use super::outcome::Answer;
use super::pace::Pacer;
use crate::clock::Clock;
use crate::config::{AuthKind, Config, TlsMode};
use crate::oauth::{self, OAuth, TokenError};

#[derive(Debug, Clone, thiserror::Error)]
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
    /// The OAuth2 login must be done again (`mailctl relay login`): mail waits.
    #[error("{0}")]
    NeedsLogin(String),
    /// The relay refused the credentials, even a renewed token: true of every message alike.
    #[error("{0}")]
    AuthRefused(String),
    /// A provider's rate or concurrency refusal: wait that many seconds, nobody's fault.
    #[error("{0}")]
    Throttled(String, u64),
}

pub struct Relay {
    kind: Kind,
    pacer: Pacer,
    /// Sends at once: `queue.concurrency`, at most the relay's `max_connections`.
    connections: usize,
}

enum Kind {
    Smtp(Arc<Smtp>),
    LocalDir(PathBuf),
}

/// How a session authenticates.
enum Auth {
    None,
    Password(Credentials),
    Token(Arc<OAuth>),
}

/// The relay's answer to one message: its reply to the body (`None` when no recipient was
/// accepted) and each recipient's, in the envelope's order.
#[derive(Debug)]
pub struct Delivery {
    pub body: Option<String>,
    pub recipients: Vec<Answer>,
}

/// An SMTP relay and the connections kept to it, over sockets of ours with TCP_NODELAY (a
/// command written apart from what follows must not wait ~40 ms for a delayed ACK), in every
/// TLS mode.
pub struct Smtp {
    host: String,
    port: u16,
    mode: TlsMode,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    auth: Auth,
    hello: ClientId,
    /// Bounds opening a session, and each transaction from its first byte written.
    send_timeout: Duration,
    description: String,
    lanes: Lanes,
    connections: usize,
}

impl Relay {
    pub fn from_config(config: &Config, clock: Clock) -> Result<Relay, Error> {
        let Some(relay) = &config.relay else {
            return Ok(Relay {
                kind: Kind::LocalDir(config.local_mail_dir()),
                pacer: Pacer::new(Default::default(), &config.state_dir, clock),
                connections: config.queue.concurrency,
            });
        };
        let limits = relay.sending_limits();
        let connections = limits.connections.map_or(config.queue.concurrency, |c| {
            (c as usize).min(config.queue.concurrency)
        });
        let send_timeout = Duration::from_secs(config.queue.send_timeout_secs);
        let tls = match relay.tls {
            TlsMode::None => None,
            TlsMode::Starttls | TlsMode::Tls => {
                Some(tls_client(&relay.host, relay.ca_file.as_deref())?)
            }
        };
        let auth = match (relay.auth, &relay.oauth2, &relay.username) {
            (AuthKind::Xoauth2, Some(oauth2), _) => Auth::Token(Arc::new(
                OAuth::new(
                    oauth2,
                    relay.ca_file.as_deref(),
                    &config.state_dir,
                    clock.clone(),
                )
                .map_err(Error::Setup)?,
            )),
            (AuthKind::Password, _, Some(username)) => {
                let password = relay.password().map_err(Error::Setup)?.unwrap_or_default();
                Auth::Password(Credentials::new(username.clone(), password))
            }
            _ => Auth::None,
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
        Ok(Relay {
            kind: Kind::Smtp(Arc::new(Smtp {
                host: relay.host.clone(),
                port: relay.port,
                mode: relay.tls,
                tls,
                auth,
                hello: ClientId::default(),
                send_timeout,
                description,
                lanes: Lanes::default(),
                connections,
            })),
            pacer: Pacer::new(limits, &config.state_dir, clock),
            connections,
        })
    }

    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Smtp(smtp) => smtp.description.clone(),
            Kind::LocalDir(dir) => format!("local mail directory {}", dir.display()),
        }
    }

    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Messages that may be handed to `send` at once: with an SMTP relay, each connection
    /// takes a few in turn (see `lanes`).
    pub fn in_flight(&self) -> usize {
        match self.kind {
            Kind::Smtp(_) => self.connections * lanes::DEPTH,
            Kind::LocalDir(_) => self.connections,
        }
    }

    /// The OAuth2 tokens, when the relay uses them.
    pub fn oauth(&self) -> Option<&Arc<OAuth>> {
        match &self.kind {
            Kind::Smtp(smtp) => match &smtp.auth {
                Auth::Token(o) => Some(o),
                _ => None,
            },
            _ => None,
        }
    }

    /// `none`, `password` or `xoauth2`.
    pub fn auth_kind(&self) -> &'static str {
        match &self.kind {
            Kind::Smtp(smtp) => match smtp.auth {
                Auth::Token(_) => "xoauth2",
                Auth::Password(_) => "password",
                Auth::None => "none",
            },
            Kind::LocalDir(_) => "none",
        }
    }

    /// Why no message may be tried now, whatever it is: the relay needs a new login.
    pub fn hold(&self) -> Option<String> {
        self.oauth()?.needs_login()
    }

    /// Resolves when a held relay may have become usable (a login completed).
    pub async fn usable(&self) {
        match self.oauth() {
            Some(o) => o.usable().await,
            None => std::future::pending().await,
        }
    }

    /// Starts `mailctl relay login`: the device authorization grant. The daemon polls the
    /// provider by itself, whoever waits, and checks the new token with EHLO + AUTH.
    pub async fn login(self: &Arc<Self>) -> Result<oauth::Login, String> {
        let oauth = self
            .oauth()
            .ok_or("the relay does not use OAuth2 (relay.auth = \"xoauth2\")")?
            .clone();
        let (login, poll) = oauth.start_login().await?;
        let relay = self.clone();
        tokio::spawn(async move {
            if poll.await {
                let checked = relay.test().await;
                oauth.login_checked(checked);
            }
        });
        Ok(login)
    }

    /// Uses an idle refresh token now and then so that it does not lapse (never returns).
    pub async fn keep_alive(self: Arc<Self>) {
        let Some(oauth) = self.oauth().cloned() else {
            return;
        };
        loop {
            match oauth.keep_alive().await {
                Ok(true) => tracing::info!("relay refresh token kept alive"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "relay refresh token not renewed"),
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }

    /// Delivers the exact bytes given, so that a retried message is the same message; returns
    /// the relay's answers.
    pub async fn send(
        &self,
        envelope: &Envelope,
        message_id: &str,
        bytes: Vec<u8>,
    ) -> Result<Delivery, Error> {
        match &self.kind {
            // Time-outs are the connection's: from a session's opening, and from each
            // transaction's first byte.
            Kind::Smtp(smtp) => smtp.send(envelope, Arc::new(bytes)).await,
            Kind::LocalDir(dir) => write_local(dir, message_id, &bytes)
                .await
                .map(|name| Delivery {
                    body: Some(format!("written to {}", dir.join(name).display())),
                    recipients: vec![Answer::Accepted; envelope.to().len()],
                })
                .map_err(|e| Error::Transient(format!("cannot write to {}: {e}", dir.display()))),
        }
    }

    /// The dialog's "test" button: connect, TLS and AUTH as configured, then say what happened.
    pub async fn test(&self) -> Result<String, String> {
        match &self.kind {
            Kind::Smtp(smtp) => {
                let description = &smtp.description;
                let attempt = async {
                    let mut session = smtp.connect().await?;
                    let alive = session.noop().await;
                    session.quit().await;
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
                        match &smtp.auth {
                            Auth::None => "",
                            Auth::Password(_) => ", authenticated",
                            Auth::Token(_) => ", authenticated with an OAuth2 token (XOAUTH2)",
                        }
                    )),
                    Ok(Ok(false)) => Err(format!("{description}: the relay did not answer NOOP")),
                    Ok(Err(e)) => Err(format!("{description}: {e}")),
                }
            }
            Kind::LocalDir(dir) => {
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
    async fn connect(&self) -> Result<Session, Error> {
        self.open().await.map_err(|e| match e {
            Error::Transient(m) => {
                Error::Unreachable(match setting_hint(&m, self.mode, self.port) {
                    Some(hint) => format!("{m} — {hint}"),
                    None => m,
                })
            }
            other => other,
        })
    }

    async fn open(&self) -> Result<Session, Error> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                Error::Transient(format!("cannot connect to {}: {e}", self.description))
            })?;
        tcp.set_nodelay(true)
            .map_err(|e| Error::Transient(format!("TCP_NODELAY: {e}")))?;
        let security = match (&self.tls, self.mode) {
            (Some((tls, name)), TlsMode::Tls) => Security::Implicit(tls, name),
            (Some((tls, name)), _) => Security::Starttls(tls, name),
            (None, _) => Security::None,
        };
        let mut session = Session::open(tcp, security, &self.hello)
            .await
            .map_err(fault)?;
        match &self.auth {
            Auth::None => {}
            Auth::Password(credentials) => session.auth(credentials).await.map_err(fault)?,
            Auth::Token(oauth) => self.xoauth2(&mut session, oauth).await?,
        }
        Ok(session)
    }

    /// AUTH XOAUTH2 with the current token; refused, once more with a renewed one.
    async fn xoauth2(&self, session: &mut Session, oauth: &OAuth) -> Result<(), Error> {
        let token = oauth.token().await.map_err(token_error)?;
        let refusal = match session
            .xoauth2(oauth.username(), &token)
            .await
            .map_err(fault)?
        {
            None => return Ok(()),
            Some(reply) => reply,
        };
        tracing::info!(reply = %refusal, "the relay refused the access token; renewing it");
        let token = oauth
            .renew_after_refusal(&token)
            .await
            .map_err(token_error)?;
        match session
            .xoauth2(oauth.username(), &token)
            .await
            .map_err(fault)?
        {
            None => Ok(()),
            Some(reply) => Err(Error::AuthRefused(format!(
                "the relay refused the OAuth2 token of {}: {reply}",
                oauth.username()
            ))),
        }
    }

    /// One message, on a connection kept to the relay or a new one. A kept connection that
    /// the relay closed meanwhile, or that has carried as many messages as the relay takes on
    /// one connection (`421 4.7.0 too many messages`), fails before MAIL is accepted: then
    /// once more on another, with no failure counted.
    async fn send(
        self: &Arc<Self>,
        envelope: &Envelope,
        body: Arc<Vec<u8>>,
    ) -> Result<Delivery, Error> {
        let Some(from) = envelope.from() else {
            return Err(Error::Permanent("no envelope sender".into()));
        };
        let mut again = true;
        // Connections that end before writing it hand it back; a bound, should they all.
        let mut untried = 0;
        let sent = loop {
            let (answer, done) = tokio::sync::oneshot::channel();
            let job = Job {
                from: from.clone(),
                to: envelope.to().to_vec(),
                body: body.clone(),
                answer,
            };
            self.lanes.dispatch(self, job);
            match done.await.unwrap_or(Done::Untried) {
                Done::Sent(sent) => break sent,
                Done::Setup(e) => return Err(e),
                Done::Failed {
                    fault: f,
                    again: true,
                } if again => {
                    tracing::debug!(reason = ?f, "relay connection not reusable; opening another");
                    again = false;
                }
                Done::Failed { fault: f, .. } => return Err(fault(f)),
                Done::Untried if untried < 8 => untried += 1,
                Done::Untried => {
                    return Err(Error::Transient(format!(
                        "{}: connections kept ending before the message was written",
                        self.description
                    )));
                }
            }
        };
        let recipients: Vec<Answer> = sent
            .recipients
            .iter()
            .map(|r| match r.code().severity {
                Severity::PositiveCompletion => Answer::Accepted,
                Severity::PermanentNegativeCompletion => Answer::Refused(text(r)),
                _ => Answer::Later(text(r)),
            })
            .collect();
        // Every recipient put off by a provider that asks to slow down: the relay's refusal,
        // not the message's.
        if sent.body.is_none()
            && let Some(first) = sent.recipients.first()
            && sent.recipients.iter().all(|r| !r.is_positive())
            && let Some(wait) = throttled(first)
        {
            return Err(Error::Throttled(text(first), wait));
        }
        Ok(Delivery {
            body: sent.body.as_ref().map(text),
            recipients,
        })
    }
}

/// The TLS client for the relay: the system's roots, and `ca_file` when given.
fn tls_client(
    host: &str,
    ca_file: Option<&Path>,
) -> Result<(TlsConnector, ServerName<'static>), Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| Error::Setup(format!("cannot read ca_file {}: {e}", ca.display())))?;
        let mut any = false;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| Error::Setup(format!("ca_file {}: {e}", ca.display())))?;
            roots
                .add(cert)
                .map_err(|e| Error::Setup(format!("ca_file {}: {e}", ca.display())))?;
            any = true;
        }
        if !any {
            return Err(Error::Setup(format!(
                "ca_file {}: no PEM certificate in it",
                ca.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| Error::Setup(format!("relay host {host}: {e}")))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

/// A session's failure as the queue sees it.
fn fault(f: Fault) -> Error {
    match f {
        Fault::Reply(reply) => classify(&reply),
        Fault::Link(m) | Fault::Setup(m) => Error::Transient(m),
        // Refused before anything was sent: no later attempt would differ.
        Fault::Unfit(m) => Error::Permanent(format!("the relay cannot take this message: {m}")),
    }
}

fn token_error(e: TokenError) -> Error {
    match e {
        TokenError::NeedsLogin(_) => Error::NeedsLogin(e.to_string()),
        TokenError::Transient(_) => Error::Unreachable(e.to_string()),
    }
}

/// A provider's refusal that means "too fast" or "too many at once" rather than anything about
/// the message: how long to wait. Exchange Online answers `432 4.3.2` to too many connections
/// and `554 5.2.0 …SubmissionQuotaExceededException` past the day's quota; Gmail `421 4.7.28`
/// and `4.7.0 … rate`.
fn throttled(reply: &Response) -> Option<u64> {
    let lower = text(reply).to_ascii_lowercase();
    if lower.contains("submissionquotaexceeded") {
        return Some(900);
    }
    let transient = reply.code().severity == Severity::TransientNegativeCompletion;
    let rate = [
        "rate limit",
        "throttl",
        "concurrent",
        "too many",
        "4.3.2",
        "4.7.28",
    ]
    .iter()
    .any(|w| lower.contains(w));
    (transient && rate).then_some(60)
}

/// The setting an administrator most likely has to change, for the failures to open a session
/// that a wrong `tls`, port or `ca_file` gives; said in `relay test` and in the queue's reply.
fn setting_hint(message: &str, mode: TlsMode, port: u16) -> Option<String> {
    let has = |needle: &str| message.contains(needle);
    if has("STARTTLS is not supported") {
        Some(format!(
            "the relay offers no STARTTLS on port {port}: if it is an implicit-TLS port (465), set tls = \"tls\"; for a local relay without TLS, tls = \"none\""
        ))
    } else if mode == TlsMode::Tls
        && (has("InvalidContentType") || has("corrupt message") || has("wrong version number"))
    {
        Some(format!(
            "the relay does not speak TLS from the first byte on port {port}: set tls = \"starttls\" (ports 587 and 25), or port = 465"
        ))
    } else if has("No compatible authentication mechanism") {
        Some(
            "the relay offers no login method here (many offer one only after STARTTLS): set tls = \"starttls\", or remove username if the relay needs no login"
                .into(),
        )
    } else if has("certificate") || has("UnknownIssuer") {
        Some(
            "the relay's certificate is not trusted: set ca_file to the certificate of the authority that signed it"
                .into(),
        )
    } else if has("Connection refused") {
        Some(format!(
            "nothing answers on port {port}: check host and port"
        ))
    } else {
        None
    }
}

/// 5xx replies are final; everything else — 4xx, network, TLS, a connection cut after the
/// final dot — is worth another try with the same bytes.
fn classify(reply: &Response) -> Error {
    if let Some(wait) = throttled(reply) {
        Error::Throttled(text(reply), wait)
    } else if reply.code().severity == Severity::PermanentNegativeCompletion {
        Error::Permanent(text(reply))
    } else {
        Error::Transient(text(reply))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_failures_name_the_setting_to_change() {
        let hint = |m: &str, mode| setting_hint(m, mode, 465).unwrap_or_default();
        assert!(
            hint(
                "internal client error: STARTTLS is not supported on this server",
                TlsMode::Starttls
            )
            .contains("tls = \"tls\"")
        );
        assert!(
            hint(
                "received corrupt message of type InvalidContentType",
                TlsMode::Tls
            )
            .contains("tls = \"starttls\"")
        );
        assert!(
            hint(
                "No compatible authentication mechanism was found",
                TlsMode::None
            )
            .contains("username")
        );
        assert!(hint("invalid peer certificate: UnknownIssuer", TlsMode::Tls).contains("ca_file"));
        assert!(hint("Connection refused (os error 111)", TlsMode::None).contains("port"));
        assert_eq!(
            setting_hint("451 4.3.0 later", TlsMode::Starttls, 587),
            None
        );
    }
}
