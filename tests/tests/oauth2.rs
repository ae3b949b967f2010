//! A relay that takes OAuth2 tokens (SASL XOAUTH2), as Microsoft 365 and Google Workspace do:
//! the device login, delivery, renewal ahead of expiry and after each kind of refusal, the
//! rotated refresh token across a kill -9, "needs login" that loses and bounces nothing, no
//! token anywhere in clear, and a merge paced under the relay's rate limit.

use std::time::{Duration, Instant};

use postecole_tests::{
    Bus, Daemon, MAILBOX, OAuthRelay, Smtp, logged_in, mailctl, merge, oauth_account, queue_json,
    relay_status, relayed_account, send_mail, spawn_login, wait_for, wait_state,
};
use serde_json::json;

/// `mailctl send` of a one-line message to a@example.org; its id.
fn send(bus: &Bus, account: &str, subject: &str) -> String {
    send_mail(bus, account, &["a@example.org"], subject, "Bonjour")
}

fn delivered(bus: &Bus, id: &str) -> serde_json::Value {
    wait_state(bus, id, "delivered", Duration::from_secs(30))
}

/// The SMTP AUTH attempts since the `from`-th event, as (ok, why).
fn auths_since(relay: &OAuthRelay, from: usize) -> Vec<(bool, String)> {
    relay.events()[from..]
        .iter()
        .filter(|e| e["ev"] == "auth")
        .map(|e| {
            (
                e["ok"].as_bool().unwrap(),
                e["why"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn refreshes(relay: &OAuthRelay) -> usize {
    relay
        .events_of("refresh")
        .iter()
        .filter(|e| e["ok"] == true)
        .count()
}

/// No issued token in the daemon's log or anywhere under its state directory (store, spool,
/// token file), and the token file is the daemon's alone.
fn assert_no_token_in_clear(relay: &OAuthRelay, daemon: &Daemon) {
    let tokens = relay.issued_tokens();
    assert!(!tokens.is_empty());
    let log = daemon.log();
    for (path, bytes) in daemon.state_bytes() {
        for t in &tokens {
            assert!(
                !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                "a token in clear in {}",
                path.display()
            );
        }
    }
    for t in &tokens {
        assert!(!log.contains(t.as_str()), "a token in the daemon's log");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(daemon.state_dir.join("relay-oauth2.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn device_login_then_delivery_with_xoauth2() {
    let relay = OAuthRelay::start();
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, &relay.relay_config("device_code", ""));

    let status = relay_status(&bus);
    assert_eq!(status["auth"], "xoauth2", "{status}");
    assert!(
        status["needs_login"].as_str().unwrap().contains("no login"),
        "{status}"
    );
    // A user who is not an administrator may not log the relay in.
    postecole_tests::ensure_users();
    mailctl(
        &bus,
        Some(postecole_tests::USER_ALICE),
        &["relay", "login"],
        None,
    )
    .err("NotAuthorized");

    // mailctl shows the address and the code, then leaves: the daemon polls on by itself.
    let mut login = spawn_login(&bus);
    wait_for("the first poll", Duration::from_secs(10), || {
        !relay.events_of("poll").is_empty()
    });
    let status = relay_status(&bus);
    assert_eq!(status["login_state"], "waiting", "{status}");
    let code = status["login_code"].as_str().unwrap().to_owned();
    assert!(code.starts_with("PEC-"), "{status}");
    login.kill().unwrap();
    let out = login.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&code) && shown.contains("/device"),
        "mailctl showed: {shown}"
    );
    // Pending, then slow_down: the next poll waits 5 s more than the interval (1 s).
    wait_for("the slow_down poll", Duration::from_secs(10), || {
        relay.events_of("poll").len() >= 2
    });
    relay.set("approve", json!(true));
    wait_for("the login to be checked", Duration::from_secs(30), || {
        relay_status(&bus)["login_state"] == "done"
    });
    let polls = relay.events_of("poll");
    let at = |i: usize| polls[i]["t"].as_f64().unwrap();
    assert_eq!(polls[0]["answer"], "authorization_pending");
    assert_eq!(polls[1]["answer"], "slow_down");
    assert_eq!(polls.last().unwrap()["answer"], "tokens");
    assert!(at(1) - at(0) >= 0.9, "{polls:?}");
    assert!(at(2) - at(1) >= 5.9, "slow_down not honoured: {polls:?}");
    // The check: EHLO + AUTH only, no message.
    let auths = relay.events_of("auth");
    assert_eq!(auths.len(), 1, "{auths:?}");
    assert_eq!(
        (auths[0]["ok"].as_bool(), auths[0]["user"].as_str()),
        (Some(true), Some(MAILBOX))
    );
    let status = relay_status(&bus);
    assert!(
        status["needs_login"].as_str().unwrap().is_empty(),
        "{status}"
    );
    assert!(
        status["login_result"].as_str().unwrap().contains("XOAUTH2"),
        "{status}"
    );
    assert!(status["token_expires"].as_u64().unwrap() > 0);

    // The code e-mail that waited now leaves; the account is set up and sends.
    let account = oauth_account(&bus, &relay, "secretariat2@ecole.example");
    let id = send(&bus, &account, "Bulletin");
    delivered(&bus, &id);
    assert!(
        relay
            .messages()
            .iter()
            .any(|m| m.contains("Subject: Bulletin"))
    );
    assert!(relay.events_of("auth").iter().all(|e| e["user"] == MAILBOX));
    assert_no_token_in_clear(&relay, &daemon);
}

#[test]
fn tokens_are_renewed_ahead_of_expiry_and_after_each_refusal() {
    let relay = OAuthRelay::start();
    // Each message authenticates afresh; access tokens live 330 s, 30 s more than the margin
    // the daemon renews them within.
    relay.control(json!({"close_after_data": true, "access_ttl": 330}));
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, &relay.relay_config("device_code", ""));
    logged_in(&bus, &relay);
    let logged_at = Instant::now();
    let account = oauth_account(&bus, &relay, "secretariat@ecole.example");
    assert_eq!(refreshes(&relay), 0, "a fresh token is not renewed");
    relay.set("access_ttl", json!(3600));

    // Ahead of expiry: renewed before the relay ever refuses it.
    std::thread::sleep(Duration::from_secs(31).saturating_sub(logged_at.elapsed()));
    let from = relay.events().len();
    let id = send(&bus, &account, "Avant expiration");
    delivered(&bus, &id);
    assert_eq!(refreshes(&relay), 1);
    assert!(
        auths_since(&relay, from).iter().all(|(ok, _)| *ok),
        "{:?}",
        auths_since(&relay, from)
    );

    // Refused: Google's 334 JSON challenge then 535 5.7.8, Microsoft's 535 5.7.3.
    for (n, failure) in ["challenge", "5.7.3"].iter().enumerate() {
        relay.set("auth_failure", json!(failure));
        relay.set("revoke", json!(n + 1));
        let from = relay.events().len();
        let before = refreshes(&relay);
        let id = send(&bus, &account, &format!("Après {failure}"));
        let record = delivered(&bus, &id);
        assert_eq!(record["attempts"], 1, "{record}");
        assert_eq!(refreshes(&relay), before + 1, "{failure}");
        assert_eq!(
            auths_since(&relay, from),
            [(false, "revoked token".into()), (true, "ok".into())],
            "{failure}"
        );
    }
    let answers = relay.events_of("challenge_answer");
    assert_eq!(answers.len(), 1);
    assert_eq!(
        answers[0]["empty"], true,
        "the challenge is answered with an empty line"
    );

    // Microsoft's "501 5.5.127 Token will expire soon": renewed and tried again.
    relay.set("expire_soon_once", json!(1));
    let from = relay.events().len();
    let before = refreshes(&relay);
    let id = send(&bus, &account, "Expire bientôt");
    delivered(&bus, &id);
    assert_eq!(refreshes(&relay), before + 1);
    assert_eq!(
        auths_since(&relay, from),
        [(false, "expire soon".into()), (true, "ok".into())]
    );
    assert_no_token_in_clear(&relay, &daemon);
}

#[test]
fn the_rotated_refresh_token_survives_a_kill_9() {
    let relay = OAuthRelay::start();
    relay.control(json!({"close_after_data": true}));
    let bus = Bus::start();
    let mut daemon = Daemon::start(&bus, &relay.relay_config("device_code", ""));
    logged_in(&bus, &relay);
    let account = oauth_account(&bus, &relay, "secretariat@ecole.example");

    // A refusal makes the daemon renew: the provider rotates the refresh token.
    relay.set("revoke", json!(1));
    let id = send(&bus, &account, "Avant la panne");
    delivered(&bus, &id);
    assert_eq!(refreshes(&relay), 1, "{:?}", relay.events());
    daemon.kill9();

    // The next renewal needs the rotated token: the old one is void at the provider.
    daemon.restart();
    relay.set("revoke", json!(2));
    let id = send(&bus, &account, "Après la panne");
    delivered(&bus, &id);
    let renewals = relay.events_of("refresh");
    assert_eq!(
        renewals
            .iter()
            .map(|e| e["ok"].as_bool().unwrap())
            .collect::<Vec<_>>(),
        [true, true],
        "{renewals:?}"
    );
    assert!(
        relay_status(&bus)["needs_login"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert_no_token_in_clear(&relay, &daemon);
}

#[test]
fn invalid_grant_holds_mail_until_a_new_login() {
    let relay = OAuthRelay::start();
    relay.control(json!({"close_after_data": true}));
    let bus = Bus::start();
    let mut daemon = Daemon::start(&bus, &relay.relay_config("device_code", ""));
    logged_in(&bus, &relay);
    let account = oauth_account(&bus, &relay, "secretariat@ecole.example");
    let delivered_before = relay.messages().len();

    // Consent revoked: the token is refused and the refresh token too.
    relay.control(json!({"close_after_data": true, "revoke": 1, "refresh": "invalid_grant"}));
    let ids: Vec<String> = (0..3)
        .map(|n| send(&bus, &account, &format!("Pendant l'attente {n}")))
        .collect();
    wait_for("needs login", Duration::from_secs(20), || {
        !relay_status(&bus)["needs_login"]
            .as_str()
            .unwrap()
            .is_empty()
    });
    let status = relay_status(&bus);
    assert!(
        status["needs_login"]
            .as_str()
            .unwrap()
            .contains("invalid_grant AADSTS700082"),
        "{status}"
    );
    let text = mailctl(&bus, None, &["relay", "status"], None).out();
    assert!(text.contains("NEEDS LOGIN"), "{text}");
    assert!(daemon.log().contains("needs a new login"));
    // Mail waits: nothing failed, deferred or counted as an attempt, nothing sent.
    std::thread::sleep(Duration::from_secs(3));
    for m in queue_json(&bus, None)
        .iter()
        .filter(|m| ids.contains(&m["id"].as_str().unwrap().to_owned()))
    {
        assert_eq!(
            (m["state"].as_str(), m["attempts"].as_u64()),
            (Some("queued"), Some(0)),
            "{m}"
        );
        assert!(
            m["last_reply"]
                .as_str()
                .unwrap()
                .contains("needs a new login"),
            "{m}"
        );
    }
    assert_eq!(relay.messages().len(), delivered_before);
    // A restart remembers: still waiting for a login, still nothing sent.
    daemon.stop();
    daemon.restart();
    assert!(
        relay_status(&bus)["needs_login"]
            .as_str()
            .unwrap()
            .contains("invalid_grant"),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(relay.messages().len(), delivered_before);

    // A new login: mail leaves by itself.
    relay.control(json!({"close_after_data": true, "revoke": 1}));
    let out = logged_in(&bus, &relay);
    assert!(out.stdout.contains("Logged in"), "{}", out.stdout);
    for id in &ids {
        delivered(&bus, id);
    }
    assert!(
        relay_status(&bus)["needs_login"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert_no_token_in_clear(&relay, &daemon);
}

#[test]
fn client_credentials_need_no_login() {
    let relay = OAuthRelay::start();
    let bus = Bus::start();
    let daemon = Daemon::start(&bus, &relay.relay_config("client_credentials", ""));
    let status = relay_status(&bus);
    assert_eq!(status["grant"], "client_credentials", "{status}");
    assert!(
        status["needs_login"].as_str().unwrap().is_empty(),
        "{status}"
    );
    mailctl(&bus, None, &["relay", "login"], None).err("RelayUnavailable");
    let account = oauth_account(&bus, &relay, "secretariat@ecole.example");
    let id = send(&bus, &account, "Sans connexion");
    delivered(&bus, &id);
    let grants = relay.events_of("client_credentials");
    assert!(!grants.is_empty() && grants.iter().all(|e| e["ok"] == true));
    assert_no_token_in_clear(&relay, &daemon);
}

#[test]
fn the_days_recipient_allowance_makes_mail_wait() {
    let smtp = Smtp::start();
    let (bus, _daemon, account) = relayed_account(
        &smtp,
        "max_recipients_per_day = 4\n",
        "personal",
        "moi@ecole.fr",
    );
    // The code and the confirmation e-mails took two of the four.
    wait_for("the confirmation e-mail", Duration::from_secs(20), || {
        smtp.messages().len() == 2
    });
    let ids: Vec<String> = (0..3)
        .map(|n| send(&bus, &account, &format!("Message {n}")))
        .collect();
    delivered(&bus, &ids[0]);
    delivered(&bus, &ids[1]);
    wait_for("the third to wait", Duration::from_secs(20), || {
        queue_json(&bus, None).iter().any(|m| {
            m["id"] == ids[2].as_str() && m["last_reply"].as_str().unwrap().contains("allowance")
        })
    });
    let third = queue_json(&bus, None)
        .into_iter()
        .find(|m| m["id"] == ids[2].as_str())
        .unwrap();
    assert_eq!(
        (third["state"].as_str(), third["attempts"].as_u64()),
        (Some("queued"), Some(0)),
        "{third}"
    );
    assert_eq!(smtp.messages().len(), 4);
    let status = relay_status(&bus);
    assert_eq!(
        (
            status["recipients_today"].as_u64(),
            status["max_recipients_per_day"].as_u64()
        ),
        (Some(4), Some(4)),
        "{status}"
    );
    assert!(
        status["paused"].as_str().unwrap().contains("allowance"),
        "{status}"
    );
    assert!(status["eta_secs"].as_u64().unwrap() >= 86_000, "{status}");
}

/// `n` families for the `absence` template.
fn families(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let mut csv = String::from("eleve;classe;dates;contact;email\n");
    for i in 0..n {
        csv.push_str(&format!(
            "Élève {i};CM2;12 mars;vie.scolaire@ecole.fr;famille{i}@example.org\n"
        ));
    }
    let path = dir.join("familles.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

#[test]
fn a_merge_is_paced_under_the_relays_rate_limit() {
    let relay = OAuthRelay::start();
    // 600 a minute, counted over any 10 s: beyond 100 the relay answers 450 4.7.0.
    relay.control(json!({"rate": [100, 10]}));
    let dir = tempfile::tempdir().unwrap();

    // Without the limit configured, a burst of 130 is refused in part: the relay can refuse.
    {
        let bus = Bus::start();
        let _daemon = Daemon::start(&bus, &relay.relay_config("device_code", ""));
        logged_in(&bus, &relay);
        let account = oauth_account(&bus, &relay, "secretariat@ecole.example");
        let csv = families(dir.path(), 130);
        let mut args = vec![
            "merge",
            "--account",
            &account,
            "--template",
            "absence",
            "--csv",
        ];
        args.push(csv.to_str().unwrap());
        let mut child = std::process::Command::new(postecole_tests::bin("mailctl"))
            .args(&args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_for("a throttling reply", Duration::from_secs(30), || {
            relay.events_of("data").iter().any(|e| e["ok"] == false)
        });
        child.kill().unwrap();
        child.wait().unwrap();
        // A throttled message waits: no attempt counted, nothing failed or deferred.
        wait_for(
            "a message waiting out the throttling",
            Duration::from_secs(10),
            || {
                queue_json(&bus, None).iter().any(|m| {
                    m["state"] == "queued"
                        && m["attempts"] == 0
                        && m["last_reply"].as_str().unwrap().contains("slow down")
                })
            },
        );
        assert!(
            queue_json(&bus, None)
                .iter()
                .all(|m| m["state"] != "failed" && m["state"] != "deferred")
        );
    }
    std::thread::sleep(Duration::from_secs(11));

    // With max_messages_per_minute = 600: 200 messages, no throttling reply, all delivered.
    let bus = Bus::start();
    let _daemon = Daemon::start(
        &bus,
        &relay.relay_config("device_code", "max_messages_per_minute = 600"),
    );
    logged_in(&bus, &relay);
    let account = oauth_account(&bus, &relay, "direction@ecole.example");
    let status = relay_status(&bus);
    assert_eq!(status["max_messages_per_minute"], 600, "{status}");
    let from = relay.events().len();
    let start = Instant::now();
    let csv = families(dir.path(), 200);
    let merged = std::thread::scope(|s| {
        let running = s.spawn(|| merge(&bus, &account, "absence", &csv, &["--json"]));
        wait_for("the merge to be queued", Duration::from_secs(30), || {
            relay_status(&bus)["waiting"].as_u64().unwrap_or(0) > 100
        });
        let status = relay_status(&bus);
        assert!(status["eta_secs"].as_u64().unwrap() >= 5, "{status}");
        running.join().unwrap()
    });
    let report: serde_json::Value = serde_json::from_str(&merged.out()).unwrap();
    assert_eq!(report["delivered"], 200, "{report}");
    let took = start.elapsed();
    let data: Vec<_> = relay.events()[from..]
        .iter()
        .filter(|e| e["ev"] == "data")
        .cloned()
        .collect();
    assert!(
        data.iter().all(|e| e["ok"] == true),
        "a throttling reply was provoked"
    );
    assert!(data.len() >= 200);
    // 200 messages 0.105 s apart.
    assert!(took >= Duration::from_secs(20), "{took:?}");
}
