//! OAuth2 access tokens for the relay (SASL XOAUTH2): the device authorization grant (RFC 8628)
//! that an administrator completes once, refresh ahead of expiry and after a refusal, the
//! `client_credentials` grant, and "needs login" when the provider refuses the refresh token.
//!
//! `http`: the HTTPS form client. `vault`: the tokens at rest, encrypted, rewritten atomically.
//! Token requests run on the async runtime (hyper); file writes in the blocking pool.

mod http;
pub mod vault;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::{self, Grant};
use vault::{Saved, Vault};

/// An access token is renewed when it has less than this left: a long merge must not meet its
/// expiry half-way through a session.
const RENEW_MARGIN: u64 = 300;
/// An unused refresh token lapses after ~90 idle days (Microsoft): used once a week, it never does.
pub const KEEP_ALIVE: u64 = 7 * 86_400;
const GRANT_DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";

#[derive(Debug, Clone, PartialEq)]
pub enum TokenError {
    /// Only an administrator's `mailctl relay login` (or a configuration fix) helps; the text
    /// names the provider's error code.
    NeedsLogin(String),
    /// The token endpoint could not be reached or answered with a server error: try later.
    Transient(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::NeedsLogin(why) => write!(f, "the relay needs a new login ({why})"),
            TokenError::Transient(why) => write!(f, "cannot renew the relay's token: {why}"),
        }
    }
}

/// A device login as `mailctl relay login` and `relay status` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    pub user_code: String,
    pub verification_uri: String,
    /// Seconds since the epoch.
    pub expires_at: u64,
    pub state: LoginState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LoginState {
    /// Polling the provider until the administrator has signed in.
    Waiting,
    /// Tokens obtained; checking them with EHLO + AUTH.
    Checking,
    Done(String),
    Failed(String),
}

impl LoginState {
    pub fn as_str(&self) -> &'static str {
        match self {
            LoginState::Waiting => "waiting",
            LoginState::Checking => "checking",
            LoginState::Done(_) => "done",
            LoginState::Failed(_) => "failed",
        }
    }
}

/// What `relay status` shows of the tokens; never a token.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub grant: &'static str,
    pub username: String,
    pub access_expires_at: u64,
    pub refreshed_at: u64,
    pub needs_login: Option<String>,
    pub last_error: Option<String>,
    pub login: Option<Login>,
}

struct State {
    saved: Saved,
    login: Option<Login>,
    /// Which login is current: a newer one makes an older poller stop.
    generation: u64,
    last_error: Option<String>,
}

pub struct OAuth {
    token_url: String,
    device_url: Option<String>,
    client_id: String,
    scope: String,
    username: String,
    grant: Grant,
    client_secret: Option<String>,
    http: http::Client,
    vault: Arc<Vault>,
    clock: Clock,
    state: Mutex<State>,
    /// One renewal at a time: a rotated refresh token must not be spent twice.
    renewing: tokio::sync::Mutex<()>,
    /// Wakes whoever waits for the relay to be usable again (a login completed).
    usable: Notify,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct DeviceAnswer {
    device_code: String,
    user_code: String,
    /// Google spells it `verification_url`.
    #[serde(alias = "verification_url")]
    verification_uri: String,
    expires_in: serde_json::Value,
    interval: Option<serde_json::Value>,
}

fn seconds(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

impl OAuth {
    pub fn new(
        oauth2: &config::OAuth2,
        ca_file: Option<&std::path::Path>,
        state_dir: &std::path::Path,
        clock: Clock,
    ) -> Result<OAuth, String> {
        let key = oauth2.token_key()?;
        let vault = Vault::new(state_dir, &key);
        let mut saved = vault.load().unwrap_or_else(|e| {
            tracing::error!(error = %e, "relay token file unusable");
            Saved {
                needs_login: Some("the token file cannot be read with this machine's key".into()),
                ..Saved::default()
            }
        });
        if oauth2.grant == Grant::ClientCredentials {
            // Nobody logs in with this grant: a refusal is fixed in the configuration, and a
            // restart tries again.
            saved.needs_login = None;
        }
        Ok(OAuth {
            token_url: oauth2.token_url().ok_or("relay.oauth2.token_url missing")?,
            device_url: oauth2.device_url(),
            client_id: oauth2.client_id.clone(),
            scope: oauth2.scope().ok_or("relay.oauth2.scope missing")?,
            username: oauth2.username.clone(),
            grant: oauth2.grant,
            client_secret: oauth2.client_secret()?,
            http: http::Client::new(ca_file)?,
            vault: Arc::new(vault),
            clock,
            state: Mutex::new(State {
                saved,
                login: None,
                generation: 0,
                last_error: None,
            }),
            renewing: tokio::sync::Mutex::new(()),
            usable: Notify::new(),
        })
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Why the relay cannot be used until somebody logs in, if so.
    pub fn needs_login(&self) -> Option<String> {
        let state = self.state.lock().unwrap();
        if let Some(why) = &state.saved.needs_login {
            return Some(why.clone());
        }
        if self.grant == Grant::DeviceCode && state.saved.refresh_token.is_none() {
            let fresh = state.saved.access_token.is_some() && state.saved.expires_at > self.now();
            if !fresh {
                return Some("no login yet: run `mailctl relay login`".into());
            }
        }
        None
    }

    /// Resolves when a login has completed (or another change may have made the relay usable).
    pub async fn usable(&self) {
        self.usable.notified().await
    }

    fn fresh(&self, margin: u64) -> Result<Option<String>, TokenError> {
        if let Some(why) = self.needs_login() {
            return Err(TokenError::NeedsLogin(why));
        }
        let state = self.state.lock().unwrap();
        Ok(state
            .saved
            .access_token
            .clone()
            .filter(|_| state.saved.expires_at > self.now() + margin))
    }

    /// An access token with some life left, renewed first when it is near its expiry.
    pub async fn token(&self) -> Result<String, TokenError> {
        if let Some(t) = self.fresh(RENEW_MARGIN)? {
            return Ok(t);
        }
        let _one = self.renewing.lock().await;
        if let Some(t) = self.fresh(RENEW_MARGIN)? {
            return Ok(t);
        }
        self.renew().await
    }

    /// The relay refused `used` (535, an XOAUTH2 error challenge, "token will expire soon"):
    /// a new one, unless another session has renewed it meanwhile.
    pub async fn renew_after_refusal(&self, used: &str) -> Result<String, TokenError> {
        let _one = self.renewing.lock().await;
        if let Some(t) = self.fresh(RENEW_MARGIN)?
            && t != used
        {
            return Ok(t);
        }
        self.renew().await
    }

    /// Uses the refresh token when it has not been used for `KEEP_ALIVE`, so that it does not
    /// lapse while no mail is sent.
    pub async fn keep_alive(&self) -> Result<bool, TokenError> {
        let due = keep_alive_due(self.grant, &self.state.lock().unwrap().saved, self.now());
        if !due {
            return Ok(false);
        }
        let _one = self.renewing.lock().await;
        self.renew().await.map(|_| true)
    }

    /// Asks the token endpoint for a new access token (caller holds `renewing`).
    async fn renew(&self) -> Result<String, TokenError> {
        let answer = match self.grant {
            Grant::DeviceCode => {
                let Some(refresh) = self.state.lock().unwrap().saved.refresh_token.clone() else {
                    return Err(TokenError::NeedsLogin(
                        "no refresh token: run `mailctl relay login`".into(),
                    ));
                };
                self.http
                    .post_form(
                        &self.token_url,
                        &[
                            ("grant_type", "refresh_token"),
                            ("client_id", &self.client_id),
                            ("refresh_token", &refresh),
                            ("scope", &self.scope),
                        ],
                    )
                    .await
            }
            Grant::ClientCredentials => {
                let secret = self.client_secret.clone().unwrap_or_default();
                self.http
                    .post_form(
                        &self.token_url,
                        &[
                            ("grant_type", "client_credentials"),
                            ("client_id", &self.client_id),
                            ("client_secret", &secret),
                            ("scope", &self.scope),
                        ],
                    )
                    .await
            }
        };
        let answer = answer.map_err(|e| self.transient(e))?;
        if answer.status == 200 {
            let tokens: TokenAnswer = serde_json::from_slice(&answer.body)
                .map_err(|_| self.transient("the token endpoint's answer is not a token".into()))?;
            return self.keep(tokens, "refreshed").await;
        }
        let refusal = refusal(answer.status, &answer.body);
        if answer.status == 400 || answer.status == 401 {
            if refusal.starts_with("temporarily_unavailable") {
                return Err(self.transient(refusal));
            }
            tracing::error!(
                error = %refusal,
                "the relay's provider refused the token renewal: mail waits for `mailctl relay login`"
            );
            let saved = {
                let mut state = self.state.lock().unwrap();
                state.saved.needs_login = Some(refusal.clone());
                state.saved.access_token = None;
                state.saved.clone()
            };
            self.save(saved).await;
            return Err(TokenError::NeedsLogin(refusal));
        }
        Err(self.transient(format!("HTTP {}: {refusal}", answer.status)))
    }

    fn transient(&self, why: String) -> TokenError {
        tracing::warn!(error = %why, "cannot renew the relay's token now");
        self.state.lock().unwrap().last_error = Some(why.clone());
        TokenError::Transient(why)
    }

    /// Keeps new tokens: on disk first (a rotated refresh token is the only one that works
    /// from now on), then in memory.
    async fn keep(&self, tokens: TokenAnswer, how: &str) -> Result<String, TokenError> {
        let now = self.now();
        let lifetime = tokens.expires_in.as_ref().and_then(seconds).unwrap_or(3600);
        let saved = {
            let state = self.state.lock().unwrap();
            Saved {
                access_token: Some(tokens.access_token.clone()),
                refresh_token: tokens
                    .refresh_token
                    .or_else(|| state.saved.refresh_token.clone()),
                expires_at: now + lifetime,
                refreshed_at: now,
                needs_login: None,
            }
        };
        self.save(saved.clone()).await;
        {
            let mut state = self.state.lock().unwrap();
            state.saved = saved;
            state.last_error = None;
        }
        tracing::info!(expires_in = lifetime, "relay access token {how}");
        self.usable.notify_waiters();
        Ok(tokens.access_token)
    }

    async fn save(&self, saved: Saved) {
        // Short but synced: off the async workers.
        let vault = self.vault.clone();
        let result = tokio::task::spawn_blocking(move || vault.save(&saved))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot save the relay's tokens");
        }
    }

    /// Starts a device login: returns what the administrator must type where, and the poll
    /// that completes it (to be spawned; it keeps going whoever waits for it).
    pub async fn start_login(
        self: &Arc<Self>,
    ) -> Result<
        (
            Login,
            impl std::future::Future<Output = bool> + Send + 'static,
        ),
        String,
    > {
        if self.grant != Grant::DeviceCode {
            return Err(
                "this relay uses the client_credentials grant: there is nobody to log in".into(),
            );
        }
        let device_url = self.device_url.clone().ok_or("no device_url configured")?;
        let answer = self
            .http
            .post_form(
                &device_url,
                &[("client_id", &self.client_id), ("scope", &self.scope)],
            )
            .await?;
        if answer.status != 200 {
            return Err(format!(
                "the provider refused the device login: {}",
                refusal(answer.status, &answer.body)
            ));
        }
        let device: DeviceAnswer = serde_json::from_slice(&answer.body)
            .map_err(|e| format!("the provider's device login answer is not understood: {e}"))?;
        let now = self.now();
        let login = Login {
            user_code: device.user_code.clone(),
            verification_uri: device.verification_uri.clone(),
            expires_at: now + seconds(&device.expires_in).unwrap_or(900),
            state: LoginState::Waiting,
        };
        let generation = {
            let mut state = self.state.lock().unwrap();
            state.generation += 1;
            state.login = Some(login.clone());
            state.generation
        };
        tracing::info!(expires_at = login.expires_at, "relay device login started");
        let interval = device
            .interval
            .as_ref()
            .and_then(seconds)
            .unwrap_or(5)
            .max(1);
        let me = self.clone();
        let poll = async move {
            me.poll(device.device_code, interval, login.expires_at, generation)
                .await
        };
        Ok((login, poll))
    }

    /// Polls the token endpoint every `interval` seconds (five more after each `slow_down`)
    /// until the administrator has signed in, refused, or the code expired.
    async fn poll(
        &self,
        device_code: String,
        mut interval: u64,
        until: u64,
        generation: u64,
    ) -> bool {
        loop {
            tokio::time::sleep(Duration::from_secs(interval)).await;
            if self.state.lock().unwrap().generation != generation {
                return false;
            }
            if self.now() >= until {
                self.login_ended(generation, LoginState::Failed("the code expired".into()));
                return false;
            }
            let answer = self
                .http
                .post_form(
                    &self.token_url,
                    &[
                        ("grant_type", GRANT_DEVICE),
                        ("client_id", &self.client_id),
                        ("device_code", &device_code),
                    ],
                )
                .await;
            let answer = match answer {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "relay login: token endpoint unreachable; polling on");
                    continue;
                }
            };
            if answer.status == 200 {
                let Ok(tokens) = serde_json::from_slice::<TokenAnswer>(&answer.body) else {
                    self.login_ended(
                        generation,
                        LoginState::Failed("the provider's answer is not a token".into()),
                    );
                    return false;
                };
                let _one = self.renewing.lock().await;
                if self.state.lock().unwrap().generation != generation {
                    return false;
                }
                let _ = self.keep(tokens, "obtained by device login").await;
                self.login_ended(generation, LoginState::Checking);
                return true;
            }
            let error = serde_json::from_slice::<ErrorAnswer>(&answer.body)
                .map(|e| e.error)
                .unwrap_or_default();
            match error.as_str() {
                "authorization_pending" => {}
                "slow_down" => interval += 5,
                _ => {
                    let why = refusal(answer.status, &answer.body);
                    tracing::warn!(error = %why, "relay device login refused");
                    self.login_ended(generation, LoginState::Failed(why));
                    return false;
                }
            }
        }
    }

    fn login_ended(&self, generation: u64, state: LoginState) {
        let mut s = self.state.lock().unwrap();
        if s.generation == generation
            && let Some(login) = &mut s.login
        {
            login.state = state;
        }
    }

    /// The outcome of checking the new tokens with the relay.
    pub fn login_checked(&self, result: Result<String, String>) {
        let generation = self.state.lock().unwrap().generation;
        match &result {
            Ok(_) => tracing::info!("relay login checked: the relay accepts the token"),
            Err(e) => tracing::warn!(error = %e, "relay login: the relay refused the new token"),
        }
        self.login_ended(
            generation,
            match result {
                Ok(report) => LoginState::Done(report),
                Err(e) => LoginState::Failed(e),
            },
        );
    }

    pub fn status(&self) -> Status {
        let needs_login = self.needs_login();
        let state = self.state.lock().unwrap();
        Status {
            grant: match self.grant {
                Grant::DeviceCode => "device_code",
                Grant::ClientCredentials => "client_credentials",
            },
            username: self.username.clone(),
            access_expires_at: if state.saved.access_token.is_some() {
                state.saved.expires_at
            } else {
                0
            },
            refreshed_at: state.saved.refreshed_at,
            needs_login,
            last_error: state.last_error.clone(),
            login: state.login.clone(),
        }
    }
}

/// Whether an idle refresh token should be used now so that it does not lapse.
fn keep_alive_due(grant: Grant, saved: &Saved, now: u64) -> bool {
    grant == Grant::DeviceCode
        && saved.needs_login.is_none()
        && saved.refresh_token.is_some()
        && saved.refreshed_at + KEEP_ALIVE <= now
}

/// A token endpoint's refusal as its error code and, for Microsoft, the AADSTS number: never
/// the rest of the description, which may echo what was sent.
fn refusal(status: u16, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorAnswer>(body) {
        Ok(e) => {
            let code = e.error_description.as_deref().and_then(|d| {
                d.split(|c: char| !c.is_ascii_alphanumeric())
                    .find(|w| w.starts_with("AADSTS") && w.len() > 6)
                    .map(str::to_owned)
            });
            let error: String = e
                .error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            match code {
                Some(code) => format!("{error} {code}"),
                None => error,
            }
        }
        Err(_) => format!("HTTP {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_refresh_token_is_used_after_a_week() {
        let saved = Saved {
            refresh_token: Some("r".into()),
            refreshed_at: 1_000,
            ..Saved::default()
        };
        let week = KEEP_ALIVE;
        assert!(!keep_alive_due(Grant::DeviceCode, &saved, 1_000 + week - 1));
        assert!(keep_alive_due(Grant::DeviceCode, &saved, 1_000 + week));
        assert!(!keep_alive_due(
            Grant::ClientCredentials,
            &saved,
            1_000 + week
        ));
        let waiting = Saved {
            needs_login: Some("invalid_grant".into()),
            ..saved.clone()
        };
        assert!(!keep_alive_due(Grant::DeviceCode, &waiting, 1_000 + week));
        let none = Saved {
            refresh_token: None,
            ..saved
        };
        assert!(!keep_alive_due(Grant::DeviceCode, &none, 1_000 + week));
    }

    #[test]
    fn refusals_keep_codes_only() {
        let body = br#"{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity. token=abc"}"#;
        assert_eq!(refusal(400, body), "invalid_grant AADSTS700082");
        assert_eq!(
            refusal(400, br#"{"error":"invalid_grant"}"#),
            "invalid_grant"
        );
        assert_eq!(refusal(502, b"<html>"), "HTTP 502");
    }
}
