//! The one kind of HTTP request OAuth2 needs: an HTTPS POST of a form, answered with JSON.
//!
//! hyper's HTTP/1.1 client over the rustls the relay session uses (tokio-rustls, ring), so
//! that the daemon has one TLS stack. One connection per request: token requests are rare.
//! Redirects are not followed: a token endpoint that redirects is misconfigured, and following
//! one would hand the form (refresh token, client secret) to another host.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};

/// A token endpoint's answer is a few kilobytes; more is refused rather than held.
const MAX_BODY: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Client {
    tls: TlsConnector,
}

/// An HTTP status and the body, bounded.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Client {
    /// Trusts the system's roots and, when given, `extra_ca` (PEM).
    pub fn new(extra_ca: Option<&std::path::Path>) -> Result<Client, String> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = extra_ca {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Client {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// POSTs `form` to `url` (https only) and returns the answer, whatever its status.
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Result<Answer, String> {
        tokio::time::timeout(TIMEOUT, self.post(url, form))
            .await
            .map_err(|_| {
                format!(
                    "no answer from {} within {} s",
                    host_of(url),
                    TIMEOUT.as_secs()
                )
            })?
    }

    async fn post(&self, url: &str, form: &[(&str, &str)]) -> Result<Answer, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("bad address {url}: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("{url} is not an https:// address"));
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("no host in {url}"))?
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
            .map_err(|e| format!("bad host in {url}: {e}"))?;
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP with {host}: {e}"))?;
        let driver = tokio::spawn(connection);
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let authority = match uri.port_u16() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let request = hyper::Request::post(
            uri.path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .to_owned(),
        )
        .header(hyper::header::HOST, authority)
        .header(
            hyper::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(hyper::header::ACCEPT, "application/json")
        .header(hyper::header::USER_AGENT, "postecoled")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP with {host}: {e}"))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the answer of {host}: {e}"))?
            .to_bytes()
            .to_vec();
        driver.abort();
        Ok(Answer { status, body })
    }
}

/// For messages: the host alone, never a query string.
pub fn host_of(url: &str) -> String {
    url.parse::<hyper::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .unwrap_or_else(|| "the token endpoint".into())
}
