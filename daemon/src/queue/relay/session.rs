//! One SMTP client session over a socket of ours, written here because no library pipelines:
//! lettre's connection sends each command and waits for its reply, and hides its stream.
//!
//! With PIPELINING (RFC 2920) a message costs two round trips: MAIL, every RCPT and DATA in
//! one write, their replies read together and judged per recipient, then the body. With
//! CHUNKING (RFC 3030) as well, `BDAT <size> LAST` and the body follow the RCPTs in the same
//! write: one round trip, or two when the relay answers MAIL and RCPT before it has read the
//! whole chunk (Postfix's smtpd does with a message larger than its 4 KB read buffer, and
//! holds the chunk's reply under Nagle until that first answer is ACKed: see
//! `Stream::quickack`). Without PIPELINING, one command at a time. lettre still gives the
//! commands' text, the EHLO keywords it knows (`ServerInfo`), reply parsing and the AUTH
//! mechanisms; TLS is tokio-rustls, as for the OAuth2 requests.

use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::commands::{Auth, Data, Ehlo, Mail, Noop, Quit, Rcpt, Rset, Starttls};
use lettre::transport::smtp::extension::{
    ClientId, Extension, MailBodyParameter, MailParameter, ServerInfo,
};
use lettre::transport::smtp::response::{Response, Severity};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

/// Postfix's `smtp_response_limit`: a reply longer than this is not a relay talking.
const MAX_REPLY_BYTES: usize = 100_000;

/// Why a session step failed.
#[derive(Debug)]
pub enum Fault {
    /// The relay answered no (4xx, 5xx) or unexpectedly.
    Reply(Response),
    /// No usable answer: the connection closed, was reset, or did not speak SMTP.
    Link(String),
    /// Nothing was sent: this relay cannot take this message as it is (8-bit text without
    /// 8BITMIME, a non-ASCII address without SMTPUTF8, larger than its SIZE).
    Unfit(String),
    /// The session could not be set up as configured (no STARTTLS, no common AUTH mechanism).
    Setup(String),
}

/// A failed transaction, and whether nothing of the message was taken (`at_mail`): MAIL
/// refused with a 4xx or 503, or no answer to a MAIL that carried no body, or a transaction
/// behind a 421 — what a relay that closed a kept connection, or that takes only so many
/// messages per connection, does.
#[derive(Debug)]
pub struct Failed {
    pub fault: Fault,
    pub at_mail: bool,
}

/// What the relay said of one message: each recipient's RCPT reply, in order, and the reply
/// to its body (`None` when no recipient was accepted, so no body was taken).
#[derive(Debug)]
pub struct Sent {
    pub recipients: Vec<Response>,
    pub body: Option<Response>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// ACK what comes next at once rather than after the delayed-ACK timer (~40 ms).
    ///
    /// A relay that answers a pipelined group in two writes (Postfix's smtpd flushes the MAIL
    /// and RCPT replies as soon as it must read more of a BDAT chunk, and writes the chunk's
    /// reply after cleanup) holds the second under Nagle until the first is ACKed; we have
    /// nothing to send meanwhile, so without this every message would wait for our timer.
    /// Linux clears the flag on its own, hence set again around each read; failing to set it
    /// only costs time.
    fn quickack(&self) {
        let tcp = match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        };
        let _ = socket2::SockRef::from(tcp).set_tcp_quickack(true);
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How a session is encrypted.
pub enum Security<'a> {
    None,
    Starttls(&'a TlsConnector, &'a ServerName<'static>),
    Implicit(&'a TlsConnector, &'a ServerName<'static>),
}

/// The EHLO keywords lettre's `ServerInfo` does not know.
#[derive(Debug, Default, Clone, Copy)]
pub struct Offers {
    pub pipelining: bool,
    pub chunking: bool,
    /// SIZE's limit; 0 when announced without one.
    pub size: Option<u64>,
}

impl Offers {
    fn from_ehlo(reply: &Response) -> Offers {
        let mut offers = Offers::default();
        for line in reply.message().skip(1) {
            let mut words = line.split_whitespace();
            match words.next().map(str::to_ascii_uppercase).as_deref() {
                Some("PIPELINING") => offers.pipelining = true,
                Some("CHUNKING") => offers.chunking = true,
                Some("SIZE") => {
                    offers.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0))
                }
                _ => {}
            }
        }
        offers
    }
}

pub struct Session {
    stream: Stream,
    /// Bytes read and not yet taken as replies.
    buf: Vec<u8>,
    server: ServerInfo,
    pub offers: Offers,
    /// Unusable for another transaction: a write or read failed, or the relay said 421.
    broken: bool,
    /// Nothing more is read, and why: the relay closed, timed out, or its replies can no
    /// longer be told apart. A failed write alone leaves the replies already on their way
    /// readable.
    deaf: Option<String>,
    /// The relay said 421: it is closing, and reads nothing written after that reply's cause.
    closing: bool,
    /// Messages delivered on this connection.
    pub delivered: u32,
    /// Transactions written by `start` and not yet concluded.
    started: usize,
}

impl Session {
    /// Greeting, EHLO, and with STARTTLS the upgrade and EHLO again.
    pub async fn open(
        tcp: TcpStream,
        security: Security<'_>,
        hello: &ClientId,
    ) -> Result<Session, Fault> {
        let stream = match security {
            Security::Implicit(tls, name) => Stream::Tls(Box::new(
                tls.connect(name.clone(), tcp)
                    .await
                    .map_err(|e| Fault::Link(format!("TLS: {e}")))?,
            )),
            _ => Stream::Plain(tcp),
        };
        let mut session = Session {
            stream,
            buf: Vec::with_capacity(512),
            server: ServerInfo::default(),
            offers: Offers::default(),
            broken: false,
            deaf: None,
            closing: false,
            delivered: 0,
            started: 0,
        };
        session.expect(&[220]).await?;
        session.ehlo(hello).await?;
        if let Security::Starttls(tls, name) = security {
            if !session.server.supports_feature(Extension::StartTls) {
                return Err(Fault::Setup(
                    "STARTTLS is not supported on this server".into(),
                ));
            }
            session.write(Starttls.to_string().as_bytes()).await?;
            session.expect(&[220]).await?;
            // What came before the handshake must not be read as if it had come through TLS.
            if !session.buf.is_empty() {
                return Err(Fault::Link(
                    "the relay sent data ahead of the TLS handshake".into(),
                ));
            }
            let Stream::Plain(tcp) = session.stream else {
                unreachable!("STARTTLS only on a plain stream")
            };
            session.stream = Stream::Tls(Box::new(
                tls.connect(name.clone(), tcp)
                    .await
                    .map_err(|e| Fault::Link(format!("TLS: {e}")))?,
            ));
            session.ehlo(hello).await?;
        }
        Ok(session)
    }

    async fn ehlo(&mut self, hello: &ClientId) -> Result<(), Fault> {
        self.write(Ehlo::new(hello.clone()).to_string().as_bytes())
            .await?;
        let reply = self.expect(&[250]).await?;
        self.server =
            ServerInfo::from_response(&reply).map_err(|e| Fault::Link(format!("EHLO: {e}")))?;
        self.offers = Offers::from_ehlo(&reply);
        Ok(())
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// AUTH with a password, by the first of lettre's mechanisms the relay offers.
    pub async fn auth(&mut self, credentials: &Credentials) -> Result<(), Fault> {
        let mechanism = self
            .server
            .get_auth_mechanism(DEFAULT_MECHANISMS)
            .ok_or_else(|| {
                Fault::Setup("No compatible authentication mechanism was found".into())
            })?;
        let command = Auth::new(mechanism, credentials.clone(), None)
            .map_err(|e| Fault::Setup(e.to_string()))?;
        self.write(command.to_string().as_bytes()).await?;
        let mut reply = self.reply().await?;
        // A bound, so that a relay that only ever challenges does not hold the session.
        for _ in 0..10 {
            if !reply.has_code(334) {
                break;
            }
            let command = Auth::new_from_response(mechanism, credentials.clone(), &reply)
                .map_err(|e| Fault::Setup(e.to_string()))?;
            self.write(command.to_string().as_bytes()).await?;
            reply = self.reply().await?;
        }
        if reply.has_code(235) {
            Ok(())
        } else {
            Err(Fault::Reply(reply))
        }
    }

    /// One AUTH XOAUTH2 exchange: `None` when accepted, the refusal otherwise. Some providers
    /// answer a refused token with an error challenge (`334 <base64 JSON>`); answered with an
    /// empty line, the relay then gives its real reply (`535 5.7.8`).
    pub async fn xoauth2(&mut self, user: &str, token: &str) -> Result<Option<String>, Fault> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let initial = b64.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
        self.write(format!("AUTH XOAUTH2 {initial}\r\n").as_bytes())
            .await?;
        let reply = self.reply().await?;
        let refused = |r: Response| {
            if r.code().severity == Severity::PermanentNegativeCompletion
                || text(&r).contains("5.5.127")
            {
                Ok(Some(text(&r)))
            } else {
                Err(Fault::Reply(r))
            }
        };
        if reply.has_code(235) {
            return Ok(None);
        }
        if reply.has_code(334) {
            // The challenge is JSON ({"status":"401",...}): its status says why, nothing secret.
            let status = reply
                .message()
                .next()
                .and_then(|m| b64.decode(m.trim()).ok())
                .and_then(|j| serde_json::from_slice::<serde_json::Value>(&j).ok())
                .and_then(|v| v.get("status").and_then(|s| s.as_str().map(str::to_owned)));
            let challenge = format!(
                "error challenge (status {})",
                status.as_deref().unwrap_or("?")
            );
            self.write(b"\r\n").await?;
            let then = self.reply().await?;
            return if then.is_positive() {
                Ok(Some(format!("{challenge}, then {}", then.code())))
            } else {
                refused(then).map(|r| r.map(|r| format!("{challenge}, then {r}")))
            };
        }
        if !reply.is_positive() {
            return refused(reply);
        }
        Ok(Some(format!("unexpected reply {}", reply.code())))
    }

    /// NOOP answered: the session works.
    pub async fn noop(&mut self) -> bool {
        if self.write(Noop.to_string().as_bytes()).await.is_err() {
            return false;
        }
        matches!(self.reply().await, Ok(r) if r.is_positive())
    }

    pub async fn quit(&mut self) {
        if !self.broken && self.write(Quit.to_string().as_bytes()).await.is_ok() {
            let _ = self.reply().await;
        }
        let _ = self.stream.shutdown().await;
        self.broken = true;
    }

    /// Whether a transaction may be written while earlier ones still wait for their replies
    /// (`start`, then `conclude` in the same order): with PIPELINING and CHUNKING a whole
    /// transaction is one group that no reply has to open, `BDAT … LAST` ending it.
    pub fn streams(&self) -> bool {
        self.offers.pipelining && self.offers.chunking
    }

    /// One transaction, each group's replies read before what follows is written: for a relay
    /// that does not stream (one that does takes `start` and `conclude`). `body` is the message
    /// as stored (CRLF line ends), sent unchanged.
    pub async fn send(
        &mut self,
        from: &Address,
        to: &[Address],
        body: &[u8],
    ) -> Result<Sent, Failed> {
        let mail = self.mail_command(from, to, body).map_err(counted)?;
        if self.offers.pipelining {
            let mut out = mail.into_bytes();
            for a in to {
                out.extend_from_slice(Rcpt::new(a.clone(), vec![]).to_string().as_bytes());
            }
            out.extend_from_slice(Data.to_string().as_bytes());
            self.write(&out).await.map_err(at_mail)?;
            drop(out);
            let (mail_reply, recipients, last) = self.group(to.len()).await?;
            let accepted = mail_reply.is_positive() && recipients.iter().any(|r| r.is_positive());
            if last.has_code(354) && !accepted {
                // DATA opened with nobody to deliver to: an empty body ends it.
                self.write(b".\r\n").await.map_err(counted)?;
                self.reply().await.map_err(counted)?;
            }
            if !mail_reply.is_positive() {
                self.reset().await;
                return Err(mail_refusal(mail_reply));
            }
            if !last.has_code(354) || !accepted {
                return self.finish(recipients, accepted, last).await;
            }
            self.write(&stuffed(body)).await.map_err(counted)?;
            let reply = self.reply().await.map_err(counted)?;
            return self.finish(recipients, true, reply).await;
        }

        self.write(mail.as_bytes()).await.map_err(at_mail)?;
        let mail_reply = self.reply().await.map_err(at_mail)?;
        if !mail_reply.is_positive() {
            self.reset().await;
            return Err(mail_refusal(mail_reply));
        }
        let mut recipients = Vec::with_capacity(to.len());
        for a in to {
            self.write(Rcpt::new(a.clone(), vec![]).to_string().as_bytes())
                .await
                .map_err(counted)?;
            recipients.push(self.reply().await.map_err(counted)?);
        }
        if !recipients.iter().any(|r| r.is_positive()) {
            self.reset().await;
            return Ok(Sent {
                recipients,
                body: None,
            });
        }
        let reply = if self.offers.chunking {
            let command = format!("BDAT {} LAST\r\n", body.len());
            self.write_parts(command.as_bytes(), body)
                .await
                .map_err(counted)?;
            self.reply().await.map_err(counted)?
        } else {
            self.write(Data.to_string().as_bytes())
                .await
                .map_err(counted)?;
            let data = self.reply().await.map_err(counted)?;
            if !data.has_code(354) {
                data
            } else {
                self.write(&stuffed(body)).await.map_err(counted)?;
                self.reply().await.map_err(counted)?
            }
        };
        self.finish(recipients, true, reply).await
    }

    /// Writes a whole transaction — MAIL, every RCPT, `BDAT <size> LAST` and the body — and
    /// waits for no reply: `conclude` reads them, oldest transaction first. Only when
    /// `streams()`. `Fault::Unfit` when nothing was written.
    pub async fn start(
        &mut self,
        from: &Address,
        to: &[Address],
        body: &[u8],
    ) -> Result<(), Failed> {
        let mail = self.mail_command(from, to, body).map_err(counted)?;
        let mut out = mail.into_bytes();
        for a in to {
            out.extend_from_slice(Rcpt::new(a.clone(), vec![]).to_string().as_bytes());
        }
        out.extend_from_slice(format!("BDAT {} LAST\r\n", body.len()).as_bytes());
        self.write_parts(&out, body).await.map_err(at_mail)?;
        self.started += 1;
        Ok(())
    }

    /// The replies of the oldest transaction `start` wrote, judged.
    ///
    /// Its body left with MAIL, so no answer at all says nothing of whether the relay took it:
    /// that failure counts (`at_mail` false), unless the relay had said it was closing (421)
    /// before reading it. A 4xx or 503 to MAIL still means nothing was taken.
    pub async fn conclude(&mut self, recipients: usize) -> Result<Sent, Failed> {
        self.started = self.started.saturating_sub(1);
        let (mail_reply, recipients, last) = match self.group(recipients).await {
            Err(Failed {
                fault: fault @ Fault::Link(_),
                at_mail: true,
            }) if !self.closing => {
                return Err(Failed {
                    fault,
                    at_mail: false,
                });
            }
            other => other?,
        };
        if !mail_reply.is_positive() {
            if mail_reply.has_code(503) {
                // Out of step with the relay: no further transaction on this connection.
                self.broken = true;
            }
            return Err(mail_refusal(mail_reply));
        }
        let accepted = recipients.iter().any(|r| r.is_positive());
        self.finish(recipients, accepted, last).await
    }

    /// Whether the replies of the oldest transaction written, `recipients` RCPTs long, are all
    /// read already, so that `conclude` waits for nothing.
    pub fn concluded(&self, recipients: usize) -> bool {
        let mut at = 0;
        for _ in 0..recipients + 2 {
            match reply_end(&self.buf[at..]) {
                Some(end) => at += end,
                None => return false,
            }
        }
        true
    }

    /// The replies to a pipelined group: MAIL's, each RCPT's, and the one to what ended the
    /// group (DATA or BDAT).
    async fn group(
        &mut self,
        recipients: usize,
    ) -> Result<(Response, Vec<Response>, Response), Failed> {
        let mail_reply = match self.reply().await {
            Ok(r) => r,
            Err(fault) => {
                self.abandon(&fault_text(&fault));
                return Err(at_mail(fault));
            }
        };
        let mut replies = Vec::with_capacity(recipients);
        let mut last = None;
        let mut lost = None;
        for _ in 0..=recipients {
            match self.reply().await {
                Ok(r) if replies.len() < recipients => replies.push(r),
                Ok(r) => last = Some(r),
                Err(fault) => {
                    lost = Some(fault);
                    break;
                }
            }
        }
        // A group cut short leaves the replies out of step with the transactions: none after
        // it may be read as theirs.
        if last.is_none() {
            self.abandon(
                "a reply was missing from the relay: the replies after it cannot be told apart",
            );
        }
        match last {
            Some(last) => Ok((mail_reply, replies, last)),
            // The relay closed after refusing MAIL (421): that refusal says why.
            None if !mail_reply.is_positive() => Err(mail_refusal(mail_reply)),
            None => Err(counted(lost.expect("a reply is missing"))),
        }
    }

    /// The body's reply judged: taken, or the whole message refused (an RSET then, so that
    /// the connection is ready for the next one).
    async fn finish(
        &mut self,
        recipients: Vec<Response>,
        accepted: bool,
        reply: Response,
    ) -> Result<Sent, Failed> {
        if !accepted {
            self.reset().await;
            return Ok(Sent {
                recipients,
                body: None,
            });
        }
        if reply.is_positive() {
            self.delivered += 1;
            return Ok(Sent {
                recipients,
                body: Some(reply),
            });
        }
        self.reset().await;
        Err(Failed {
            fault: Fault::Reply(reply),
            at_mail: false,
        })
    }

    /// Ends a transaction that did not complete; a connection that cannot is not reused.
    async fn reset(&mut self) {
        // Streaming, `BDAT … LAST` has ended the transaction (RFC 3030) and a refused MAIL
        // opened none; with transactions written behind, an RSET's reply would come after
        // theirs anyway.
        if self.broken || self.streams() {
            return;
        }
        let ok = match self.write(Rset.to_string().as_bytes()).await {
            Ok(()) => matches!(self.reply().await, Ok(r) if r.is_positive()),
            Err(_) => false,
        };
        if !ok {
            self.broken = true;
        }
    }

    /// MAIL FROM with the parameters the message needs, or why this relay cannot take it.
    fn mail_command(&self, from: &Address, to: &[Address], body: &[u8]) -> Result<String, Fault> {
        let mut parameters = Vec::new();
        if let Some(limit) = self.offers.size {
            if limit > 0 && body.len() as u64 > limit {
                return Err(Fault::Unfit(format!(
                    "the message is {} bytes, and the relay takes at most {limit} (SIZE)",
                    body.len()
                )));
            }
            parameters.push(MailParameter::Size(body.len()));
        }
        let addresses_ascii = std::iter::once(from)
            .chain(to)
            .all(|a| AsRef::<str>::as_ref(a).is_ascii());
        if !addresses_ascii {
            if !self.server.supports_feature(Extension::SmtpUtfEight) {
                return Err(Fault::Unfit(
                    "Envelope contains non-ascii chars but server does not support SMTPUTF8".into(),
                ));
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if !body.is_ascii() {
            if !self.server.supports_feature(Extension::EightBitMime) {
                return Err(Fault::Unfit(
                    "Message contains non-ascii chars but server does not support 8BITMIME".into(),
                ));
            }
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        Ok(Mail::new(Some(from.clone()), parameters).to_string())
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Fault> {
        self.write_parts(bytes, &[]).await
    }

    /// `commands` then `body` back to back, flushed once: in one write when the body is small,
    /// so that both leave in the same segments; a large body is not copied for that.
    async fn write_parts(&mut self, commands: &[u8], body: &[u8]) -> Result<(), Fault> {
        const COPIED: usize = 64 * 1024;
        let joined;
        let (first, rest) = if !body.is_empty() && body.len() <= COPIED {
            joined = [commands, body].concat();
            (&joined[..], &[][..])
        } else {
            (commands, body)
        };
        let written = async {
            self.stream.write_all(first).await?;
            if !rest.is_empty() {
                self.stream.write_all(rest).await?;
            }
            self.stream.flush().await
        }
        .await;
        written.map_err(|e| {
            self.broken = true;
            Fault::Link(format!("the connection failed: {e}"))
        })
    }

    /// The next reply, with one of `codes`.
    async fn expect(&mut self, codes: &[u16]) -> Result<Response, Fault> {
        let reply = self.reply().await?;
        if codes.iter().any(|&c| reply.has_code(c)) {
            Ok(reply)
        } else {
            Err(Fault::Reply(reply))
        }
    }

    /// The next reply, whatever its code; from bytes already read when a pipelined group's
    /// replies came together.
    async fn reply(&mut self) -> Result<Response, Fault> {
        loop {
            if let Some(end) = reply_end(&self.buf) {
                let reply = parse_reply(&self.buf[..end]);
                self.buf.drain(..end);
                let reply = reply.inspect_err(|e| {
                    self.broken = true;
                    self.deaf = Some(format!("{e:?}"));
                })?;
                if reply.has_code(421) {
                    // The relay is closing the connection.
                    self.broken = true;
                    self.closing = true;
                }
                return Ok(reply);
            }
            self.fill().await?;
        }
    }

    /// Reads what the relay sent next into the buffer. Cancel-safe: nothing read is lost
    /// when another event wins a `select!` against it. A connection known unusable is not
    /// read again (a relay that stopped answering would hold the reader).
    pub async fn fill(&mut self) -> Result<(), Fault> {
        if let Some(why) = &self.deaf {
            return Err(Fault::Link(why.clone()));
        }
        if self.buf.len() > MAX_REPLY_BYTES {
            return Err(self.gone("the relay's reply is too long".into()));
        }
        let mut chunk = [0u8; 4096];
        self.stream.quickack();
        let read = self.stream.read(&mut chunk).await;
        self.stream.quickack();
        match read {
            Ok(0) => Err(self.gone("the relay closed the connection without a reply".into())),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(self.gone(format!("the connection failed: {e}"))),
        }
    }

    /// Nothing more to read, for this reason, which every later read gives too.
    fn gone(&mut self, why: String) -> Fault {
        self.broken = true;
        self.deaf = Some(why.clone());
        Fault::Link(why)
    }

    /// Ends the session at once, without QUIT (a transaction timed out, or replies fell out
    /// of step), saying why to the transactions still waiting. Replies read are dropped too,
    /// lest a transaction written behind take them for its own.
    pub fn abandon(&mut self, why: &str) {
        self.broken = true;
        self.deaf = Some(why.to_owned());
        self.buf.clear();
    }
}

/// What a fault says, for the transactions after it.
fn fault_text(fault: &Fault) -> String {
    match fault {
        Fault::Reply(r) => text(r),
        Fault::Link(m) | Fault::Unfit(m) | Fault::Setup(m) => m.clone(),
    }
}

/// Nothing of the message was taken: worth once more on another connection.
fn at_mail(fault: Fault) -> Failed {
    Failed {
        fault,
        at_mail: true,
    }
}

/// A failure that counts: the relay may hold the message, or no connection would differ.
fn counted(fault: Fault) -> Failed {
    Failed {
        fault,
        at_mail: false,
    }
}

/// MAIL refused. A 4xx, or a 503 (bad sequence: the relay did not take a transaction written
/// behind another as ended), took nothing of the message.
fn mail_refusal(reply: Response) -> Failed {
    Failed {
        at_mail: reply.code().severity == Severity::TransientNegativeCompletion
            || reply.has_code(503),
        fault: Fault::Reply(reply),
    }
}

/// Where the first complete reply in `buf` ends: after the first line that is not followed
/// by another of the same reply (`250-…` lines are).
fn reply_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + nl + 1];
        start += nl + 1;
        if line.get(3) != Some(&b'-') {
            return Some(start);
        }
    }
    None
}

/// One reply's lines to lettre's `Response`, which wants CRLF and text after every code.
fn parse_reply(bytes: &[u8]) -> Result<Response, Fault> {
    let text = String::from_utf8_lossy(bytes);
    let mut normal = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        normal.push_str(line);
        if line.len() == 3 {
            normal.push(' ');
        }
        normal.push_str("\r\n");
    }
    Response::from_str(&normal).map_err(|e| {
        Fault::Link(format!(
            "the relay's reply could not be read ({e}): {}",
            text.trim_end().chars().take(200).collect::<String>()
        ))
    })
}

/// A reply as one line: "550 5.1.1 No such user".
pub fn text(reply: &Response) -> String {
    let mut out = reply.code().to_string();
    for line in reply.message() {
        out.push(' ');
        out.push_str(line);
    }
    out
}

/// The body for DATA: a dot that starts a line doubled (RFC 5321 4.5.2), then the final
/// dot. A dot after a bare LF is doubled too, since some relays end lines there. The bytes are
/// otherwise sent as stored; the final CRLF is the body's own when it ends with one.
pub fn stuffed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 5);
    let mut line_start = true;
    for &b in body {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_that_start_a_line_are_doubled_and_the_body_ends_once() {
        assert_eq!(
            stuffed(b".hidden\r\nline.\r\n..two\r\nx\n.bare\r\n"),
            b"..hidden\r\nline.\r\n...two\r\nx\n..bare\r\n.\r\n"
        );
        assert_eq!(stuffed(b"no final line end"), b"no final line end\r\n.\r\n");
        assert_eq!(stuffed(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(stuffed(b""), b".\r\n");
    }

    #[test]
    fn pipelined_replies_are_taken_one_by_one() {
        let buf = b"250 2.1.0 Ok\r\n550 5.1.1 <x@y>: unknown\r\n250-a\r\n250 b\r\n354 go";
        let first = reply_end(buf).unwrap();
        assert_eq!(&buf[..first], b"250 2.1.0 Ok\r\n");
        let rest = &buf[first..];
        let second = reply_end(rest).unwrap();
        let refused = parse_reply(&rest[..second]).unwrap();
        assert_eq!(text(&refused), "550 5.1.1 <x@y>: unknown");
        let rest = &rest[second..];
        let third = reply_end(rest).unwrap();
        assert_eq!(text(&parse_reply(&rest[..third]).unwrap()), "250 a b");
        assert_eq!(
            reply_end(&rest[third..]),
            None,
            "a reply without its line end"
        );
        // A bare code, and LF alone, are read too.
        assert_eq!(text(&parse_reply(b"250\n").unwrap()), "250 ");
        assert!(parse_reply(b"hello\r\n").is_err());
    }

    /// A relay on loopback that answers the greeting and EHLO (PIPELINING, CHUNKING), reads
    /// what comes, and writes `script` once it has read `wait_for` MAIL commands.
    async fn scripted_relay(wait_for: usize, script: &'static [u8]) -> TcpStream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"220 relay\r\n").await.unwrap();
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            let mut answered_ehlo = false;
            loop {
                let n = s.read(&mut chunk).await.unwrap();
                if n == 0 {
                    return;
                }
                seen.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&seen);
                if !answered_ehlo && text.contains("EHLO") {
                    answered_ehlo = true;
                    s.write_all(b"250-relay\r\n250-PIPELINING\r\n250 CHUNKING\r\n")
                        .await
                        .unwrap();
                }
                if text.matches("MAIL FROM").count() == wait_for {
                    s.write_all(script).await.unwrap();
                    // Keep the connection open: what follows is for the client to judge.
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    return;
                }
            }
        });
        TcpStream::connect(("127.0.0.1", port)).await.unwrap()
    }

    #[tokio::test]
    async fn a_reply_out_of_step_is_never_taken_by_the_transaction_behind() {
        // The first transaction's RCPT reply cannot be read; its BDAT reply and the second's
        // three replies follow. The second must not take the first's leftovers for its own.
        let tcp = scripted_relay(
            2,
            b"250 2.1.0 ok\r\nnonsense\r\n250 2.0.0 first taken\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.7.1 second refused\r\n",
        )
        .await;
        let hello = ClientId::Domain("client.example".into());
        let mut session = Session::open(tcp, Security::None, &hello).await.unwrap();
        assert!(session.streams());
        let from: Address = "moi@ecole.fr".parse().unwrap();
        let to: Vec<Address> = vec!["famille@example.org".parse().unwrap()];
        session
            .start(&from, &to, b"Subject: 1\r\n\r\nun\r\n")
            .await
            .unwrap();
        session
            .start(&from, &to, b"Subject: 2\r\n\r\ndeux\r\n")
            .await
            .unwrap();
        assert!(session.conclude(1).await.is_err(), "the unreadable reply");
        match session.conclude(1).await {
            Ok(sent) => panic!("the second judged on the first's replies: {sent:?}"),
            Err(failed) => assert!(
                !failed.at_mail,
                "its chunk went out whole: not a free retry ({:?})",
                failed.fault
            ),
        }
        assert!(session.is_broken());
    }

    #[test]
    fn ehlo_keywords_lettre_does_not_know() {
        let ehlo = parse_reply(
            b"250-relay.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-CHUNKING\r\n250 8BITMIME\r\n",
        )
        .unwrap();
        let offers = Offers::from_ehlo(&ehlo);
        assert!(offers.pipelining && offers.chunking);
        assert_eq!(offers.size, Some(10_240_000));
        let plain = parse_reply(b"250-relay.example\r\n250 SIZE\r\n").unwrap();
        let offers = Offers::from_ehlo(&plain);
        assert!(!offers.pipelining && !offers.chunking);
        assert_eq!(offers.size, Some(0));
    }
}
