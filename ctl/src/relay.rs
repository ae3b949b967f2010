//! `mailctl relay test | login | status`.

use std::time::Duration;

use postecole_dbus::{OutboxProxy, RelayStatus};
use serde_json::{Value, json};

use crate::output;
use crate::{Failure, Status, outln, t};

/// Starts the OAuth2 device login and follows it until the daemon has its tokens and the
/// relay accepted them. Leaving early stops nothing: the daemon polls the provider itself.
pub async fn login(connection: &zbus::Connection, json: bool) -> Result<(), Failure> {
    let proxy = OutboxProxy::new(connection).await?;
    let (uri, code, expires) = proxy.relay_login().await?;
    if json {
        outln!(
            "{}",
            json!({ "verification_uri": uri, "user_code": code, "expires": expires })
        );
    } else {
        outln!(
            "{}",
            t!(
                "On any computer or phone, open {uri}\nsign in as the mailbox this PC sends from, and type this code:\n\n    {code}\n\nThe code is valid for {minutes} min. postecoled waits for the sign-in by itself: closing mailctl stops nothing.",
                uri = uri,
                code = code,
                minutes = expires.saturating_sub(output::now()).div_ceil(60)
            )
        );
    }
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let status = proxy.relay_status().await?;
        match status.login_state.as_str() {
            "done" => {
                if json {
                    outln!(
                        "{}",
                        json!({ "login": "done", "report": status.login_result })
                    );
                } else {
                    outln!(
                        "{}",
                        t!("Logged in: {report}", report = status.login_result)
                    );
                }
                return Ok(());
            }
            "failed" => {
                return Err(Failure::new(
                    Status::Unavailable,
                    t!("the relay login failed: {why}", why = status.login_result),
                ));
            }
            _ if output::now() > expires + 10 => {
                return Err(Failure::new(
                    Status::TempFail,
                    t!("nobody signed in before the code expired"),
                ));
            }
            _ => {}
        }
    }
}

pub async fn status(connection: &zbus::Connection, json: bool) -> Result<(), Failure> {
    let s = OutboxProxy::new(connection).await?.relay_status().await?;
    if json {
        outln!("{}", status_json(&s));
    } else {
        output::stdout(&status_text(&s, output::now()));
    }
    Ok(())
}

fn status_json(s: &RelayStatus) -> Value {
    json!({
        "relay": s.relay,
        "auth": s.auth,
        "grant": s.grant,
        "username": s.username,
        "token_expires": s.token_expires,
        "token_refreshed": s.token_refreshed,
        "needs_login": s.needs_login,
        "last_error": s.last_error,
        "login_state": s.login_state,
        "login_result": s.login_result,
        "login_uri": s.login_uri,
        "login_code": s.login_code,
        "login_expires": s.login_expires,
        "max_messages_per_minute": s.max_messages_per_minute,
        "max_recipients_per_day": s.max_recipients_per_day,
        "max_connections": s.max_connections,
        "recipients_today": s.recipients_today,
        "waiting": s.waiting,
        "eta_secs": s.eta_secs,
        "paused": s.paused,
    })
}

fn status_text(s: &RelayStatus, now: u64) -> String {
    let mut rows = vec![
        (t!("relay"), s.relay.clone()),
        (t!("authentication"), s.auth.clone()),
    ];
    if s.auth == "xoauth2" {
        rows.push((t!("grant"), s.grant.clone()));
        rows.push((t!("mailbox"), s.username.clone()));
        rows.push((
            t!("token"),
            if !s.needs_login.is_empty() {
                t!("NEEDS LOGIN: {why}", why = s.needs_login)
            } else if s.token_expires == 0 {
                t!("none yet")
            } else if s.token_expires > now {
                t!(
                    "valid, expires {when} (renewed before)",
                    when = output::relative(s.token_expires, now)
                )
            } else {
                t!("expired: renewed at the next message")
            },
        ));
        if s.token_refreshed > 0 {
            rows.push((t!("renewed"), output::relative(s.token_refreshed, now)));
        }
        if !s.last_error.is_empty() {
            rows.push((t!("last error"), s.last_error.clone()));
        }
        if !s.login_state.is_empty() {
            let mut login = s.login_state.clone();
            if !s.login_result.is_empty() {
                login = format!("{login}: {}", s.login_result);
            }
            if s.login_state == "waiting" && !s.login_code.is_empty() {
                login = t!(
                    "waiting: open {uri} and type {code}",
                    uri = s.login_uri,
                    code = s.login_code
                );
            }
            rows.push((t!("login"), login));
        }
    }
    let limit = |n: u32| {
        if n == 0 { t!("none") } else { n.to_string() }
    };
    rows.push((t!("messages a minute"), limit(s.max_messages_per_minute)));
    rows.push((
        t!("recipients a day"),
        if s.max_recipients_per_day == 0 {
            t!(
                "no limit ({used} in the last 24 h)",
                used = s.recipients_today
            )
        } else {
            t!(
                "{used} of {limit} used in the last 24 h",
                used = s.recipients_today,
                limit = s.max_recipients_per_day
            )
        },
    ));
    rows.push((t!("connections"), s.max_connections.to_string()));
    rows.push((t!("waiting"), waiting(s)));
    if !s.paused.is_empty() {
        rows.push((t!("paused"), s.paused.clone()));
    }
    output::details(&rows)
}

/// "12 messages, the last leaves in about 5 min".
pub fn waiting(s: &RelayStatus) -> String {
    if s.waiting == 0 {
        return t!("no message");
    }
    if s.eta_secs == 0 {
        return t!("{n} messages", n = s.waiting);
    }
    t!(
        "{n} messages; the last leaves in about {eta}",
        n = s.waiting,
        eta = duration(s.eta_secs)
    )
}

fn duration(secs: u64) -> String {
    match secs {
        0..=59 => t!("{n} s", n = secs),
        60..=5399 => t!("{n} min", n = secs.div_ceil(60)),
        _ => t!("{n} h", n = secs.div_ceil(3600)),
    }
}

/// "12 messages waiting; the last leaves in about 5 min", when the relay's limits make mail
/// wait; `None` otherwise (or from a daemon without `RelayStatus`).
pub async fn eta_line(outbox: &OutboxProxy<'_>) -> Option<String> {
    let s = outbox.relay_status().await.ok()?;
    (s.eta_secs > 0).then(|| waiting(&s))
}
