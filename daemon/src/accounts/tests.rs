use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

/// The default `limits.code_interval_secs`.
const RESEND_INTERVAL_SECS: u64 = 60;

struct Fixture {
    accounts: Accounts,
    now: Arc<AtomicU64>,
    dir: tempfile::TempDir,
}

fn fixture_with(relay: Option<crate::config::Relay>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = Arc::new(Config {
        state_dir: dir.path().to_owned(),
        relay,
        ..Config::default()
    });
    let store = Store::open(&config.state_dir).unwrap();
    let relay =
        Arc::new(crate::queue::relay::Relay::from_config(&config, crate::clock::system()).unwrap());
    let archive = crate::archive::Archive::new(&config.state_dir);
    let now = Arc::new(AtomicU64::new(1_800_000_000));
    let clock_now = now.clone();
    let clock: Clock = Arc::new(move || clock_now.load(Ordering::SeqCst));
    let queue = Arc::new(
        Queue::open(
            store.clone(),
            &config.state_dir,
            archive.clone(),
            config.queue.clone(),
            crate::clock::system(),
        )
        .unwrap(),
    );
    // A stop whose sender is gone never comes: delivery runs as long as the runtime.
    let (_, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(crate::queue::delivery::run(
        queue.clone(),
        relay.clone(),
        stop,
    ));
    Fixture {
        accounts: Accounts::new(
            config,
            store,
            queue,
            archive,
            relay.describe(),
            "poste-test".into(),
            clock,
        ),
        now,
        dir,
    }
}

fn fixture() -> Fixture {
    fixture_with(None)
}

impl Fixture {
    fn advance(&self, secs: u64) {
        self.now.fetch_add(secs, Ordering::SeqCst);
    }

    /// A personal account of `caller`'s just created, and the code mailed for it.
    async fn awaiting_code(&self, caller: &Caller) -> (Account, String) {
        let a = self
            .accounts
            .create(caller, "personal", "M", "m@ecole.fr")
            .await
            .unwrap();
        let code = self.last_code(&a.id);
        (a, code)
    }

    /// The code of the newest verification mail for this account, read from local-mail.
    fn last_code(&self, id: &str) -> String {
        let needle = format!("mailctl account verify {id} ");
        let mut mails: Vec<_> = std::fs::read_dir(self.dir.path().join("local-mail"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        mails.sort();
        mails
            .iter()
            .rev()
            .filter_map(|p| {
                let text = std::fs::read_to_string(p).unwrap();
                let start = text.find(&needle)? + needle.len();
                Some(text[start..start + 6].to_owned())
            })
            .next()
            .expect("a verification mail")
    }

    fn mail_count(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("local-mail"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Mail queued without waiting (the confirmation) arrives shortly after.
    async fn wait_mail_count(&self, n: usize) {
        for _ in 0..500 {
            if self.mail_count() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(self.mail_count(), n);
    }
}

fn user(uid: u32, name: &str) -> Caller {
    Caller {
        uid,
        name: name.into(),
        admin: false,
        groups: Vec::new(),
        send_establishment: true,
    }
}

fn admin() -> Caller {
    Caller {
        uid: 0,
        name: "root".into(),
        admin: true,
        groups: Vec::new(),
        send_establishment: true,
    }
}

/// An active account of `caller`'s, each at an address of its own.
async fn active(f: &Fixture, caller: &Caller, kind: &str) -> Account {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let address = format!(
        "secretariat{}@ecole.fr",
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let a = f
        .accounts
        .create(caller, kind, "Secrétariat Jules Ferry", &address)
        .await
        .unwrap();
    f.accounts
        .confirm_code(caller, &a.id, &f.last_code(&a.id))
        .await
        .unwrap();
    f.accounts
        .set_secret(caller, &a.id, "Ville de naissance ?", "Clermont-Ferrand")
        .await
        .unwrap();
    f.accounts.get(caller, &a.id).unwrap()
}

#[tokio::test]
async fn lifecycle_reaches_active_and_keeps_no_clear_secret() {
    let f = fixture();
    let alice = user(1001, "alice");
    let a = f
        .accounts
        .create(&alice, "personal", "Mme Martin", "martin@ecole.fr")
        .await
        .unwrap();
    assert_eq!(a.state, State::AwaitingCode);
    assert_eq!(f.mail_count(), 1);
    let code = f.last_code(&a.id);
    let err = f
        .accounts
        .set_secret(&alice, &a.id, "Q ?", "une réponse")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidState(_)), "{err:?}");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let err = f
        .accounts
        .confirm_code(&alice, &a.id, wrong)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::WrongCode(m) if m.contains("4 tries left")),
        "{err:?}"
    );
    let err = f
        .accounts
        .confirm_code(&alice, &a.id, "12ab")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    f.accounts.confirm_code(&alice, &a.id, &code).await.unwrap();
    assert_eq!(
        f.accounts.get(&alice, &a.id).unwrap().state,
        State::AwaitingSecret
    );
    let err = f
        .accounts
        .confirm_code(&alice, &a.id, &code)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidState(_)),
        "a code is single use: {err:?}"
    );

    for refused in [
        "court",
        "Mme Martin",
        "martin@ecole.fr",
        "MARTIN",
        " ma question ? ",
    ] {
        let err = f
            .accounts
            .set_secret(&alice, &a.id, "Ma question ?", refused)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{refused}: {err:?}");
    }
    let err = f
        .accounts
        .set_secret(&alice, &a.id, "Q\r\nBcc: x", "Clermont")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    f.accounts
        .set_secret(&alice, &a.id, "Ville de naissance ?", "  ZÜRICH-Oerlikon ")
        .await
        .unwrap();
    let a = f.accounts.get(&alice, &a.id).unwrap();
    assert_eq!(a.state, State::Active);
    let secret = a.secret.unwrap();
    assert!(secret::verify("zürich-oerlikon", &secret.answer_hash));
    f.wait_mail_count(2).await;

    // Neither the answer nor any code is anywhere in the store's files.
    f.accounts.store.flush().unwrap();
    for entry in walk(f.dir.path().join("db").as_path()) {
        let bytes = std::fs::read(&entry).unwrap();
        for needle in ["rich-oerlikon", "RICH-Oerlikon", code.as_str()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} found in {}",
                entry.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn codes_expire_after_fifteen_minutes() {
    let f = fixture();
    let alice = user(1001, "alice");
    let (a, code) = f.awaiting_code(&alice).await;
    f.advance(CODE_LIFETIME_SECS);
    let err = f
        .accounts
        .confirm_code(&alice, &a.id, &code)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CodeExpired(_)), "{err:?}");
}

#[tokio::test]
async fn five_wrong_codes_void_the_code_until_resent() {
    let f = fixture();
    let alice = user(1001, "alice");
    let (a, code) = f.awaiting_code(&alice).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..4 {
        let err = f
            .accounts
            .confirm_code(&alice, &a.id, wrong)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::WrongCode(_)), "{err:?}");
    }
    let err = f
        .accounts
        .confirm_code(&alice, &a.id, wrong)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooManyAttempts(_)), "{err:?}");
    let err = f
        .accounts
        .confirm_code(&alice, &a.id, &code)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TooManyAttempts(_)),
        "the right code is void too: {err:?}"
    );

    f.advance(RESEND_INTERVAL_SECS);
    f.accounts.resend_code(&alice, &a.id).await.unwrap();
    let fresh = f.last_code(&a.id);
    f.accounts
        .confirm_code(&alice, &a.id, &fresh)
        .await
        .unwrap();
}

#[tokio::test]
async fn resend_is_rate_limited_and_replaces_the_code() {
    let f = fixture();
    let alice = user(1001, "alice");
    let (a, first) = f.awaiting_code(&alice).await;
    let err = f.accounts.resend_code(&alice, &a.id).await.unwrap_err();
    assert!(
        matches!(&err, Error::RateLimited(m) if m.contains("60 s")),
        "{err:?}"
    );
    f.advance(RESEND_INTERVAL_SECS);
    f.accounts.resend_code(&alice, &a.id).await.unwrap();
    let second = f.last_code(&a.id);
    assert_eq!(f.mail_count(), 2);
    if first != second {
        let err = f
            .accounts
            .confirm_code(&alice, &a.id, &first)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::WrongCode(_)),
            "old code must stop working: {err:?}"
        );
    }
    f.accounts
        .confirm_code(&alice, &a.id, &second)
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_stored() {
    let f = fixture();
    let alice = user(1001, "alice");
    for (kind, label, address) in [
        ("shared", "L", "a@ecole.fr"),
        ("personal", "", "a@ecole.fr"),
        ("personal", "L\nBcc: x@y.fr", "a@ecole.fr"),
        ("personal", "L", "pas-une-adresse"),
        ("personal", "L", "a@ecole.fr\r\nBcc: x@y.fr"),
    ] {
        let err = f
            .accounts
            .create(&alice, kind, label, address)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidInput(_)),
            "{kind} {label:?} {address:?}: {err:?}"
        );
    }
    assert!(f.accounts.list(&alice).unwrap().is_empty());
    assert_eq!(f.mail_count(), 0);
}

#[tokio::test]
async fn relay_down_keeps_the_account_and_retries_the_code() {
    // A port nobody listens on: connection refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = fixture_with(Some(crate::config::Relay {
        host: "127.0.0.1".into(),
        port,
        tls: crate::config::TlsMode::None,
        username: None,
        password_file: None,
        ca_file: None,
        allowed_sender_domains: None,
        sender: None,
        auth: Default::default(),
        oauth2: None,
        preset: None,
        max_messages_per_minute: None,
        max_recipients_per_day: None,
        max_connections: None,
    }));
    let alice = user(1001, "alice");
    let mut events = f.accounts.subscribe();
    let err = f
        .accounts
        .create(&alice, "personal", "M", "m@ecole.fr")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::RelayUnavailable(m) if m.contains("m@ecole.fr") && m.contains("again automatically")),
        "{err:?}"
    );
    let kept = f.accounts.list(&alice).unwrap();
    assert_eq!(kept.len(), 1);
    // The account exists, so its listeners hear of it although the call answered an error.
    let event = events.try_recv().expect("a `created` event");
    assert_eq!(
        (event.id.as_str(), event.change),
        (kept[0].id.as_str(), change::CREATED)
    );
    let waiting = f.accounts.queue.list().unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].state, MsgState::Deferred);
    assert_eq!(waiting[0].account, kept[0].id);
    assert!(waiting[0].notice);
}

#[tokio::test]
async fn who_sees_and_manages_what() {
    let f = fixture();
    let root = admin();
    let alice = user(1001, "alice");
    let bob = user(1002, "bob");

    let err = f
        .accounts
        .create(&alice, "establishment", "S", "s@ecole.fr")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotAuthorized(_)), "{err:?}");

    let shared = active(&f, &root, "establishment").await;
    let err = f.accounts.get(&alice, &shared.id).unwrap_err();
    assert!(
        matches!(err, Error::NotFound(_)),
        "not on staff yet: {err:?}"
    );
    f.accounts
        .add_staff(&root, &shared.id, "root")
        .await
        .unwrap();
    let err = f
        .accounts
        .add_staff(&root, &shared.id, "no-such-user-x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");

    let mine = f
        .accounts
        .create(&alice, "personal", "Alice", "alice@ecole.fr")
        .await
        .unwrap();
    assert_eq!(f.accounts.list(&alice).unwrap().len(), 1);
    assert!(
        f.accounts.list(&bob).unwrap().is_empty(),
        "bob sees nothing"
    );
    let root_sees: Vec<String> = f
        .accounts
        .list(&root)
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(
        root_sees,
        vec![shared.id.clone()],
        "administrators do not see personal accounts"
    );
    for err in [
        f.accounts.get(&bob, &mine.id).unwrap_err(),
        f.accounts.delete(&bob, &mine.id, false).await.unwrap_err(),
        f.accounts.resend_code(&bob, &mine.id).await.unwrap_err(),
        f.accounts.set_default(&bob, &mine.id).unwrap_err(),
    ] {
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    }
    let err = f
        .accounts
        .add_staff(&root, &mine.id, "root")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    let err = f
        .accounts
        .convert(&alice, &shared.id, "personal")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");

    f.accounts.set_default(&alice, &mine.id).unwrap();
    assert_eq!(
        f.accounts.default_account(&alice).unwrap(),
        Some(mine.id.clone())
    );
    assert_eq!(f.accounts.default_account(&bob).unwrap(), None);
    f.accounts.delete(&alice, &mine.id, false).await.unwrap();
    assert_eq!(f.accounts.default_account(&alice).unwrap(), None);
}

#[tokio::test]
async fn staff_member_uses_but_does_not_administer() {
    let f = fixture();
    let root = admin();
    let shared = active(&f, &root, "establishment").await;
    // A real user name is needed; "root" exists everywhere, so a non-admin caller named
    // root stands in for a member of staff.
    let staff = Caller {
        uid: 4242,
        name: "root".into(),
        admin: false,
        groups: Vec::new(),
        send_establishment: true,
    };
    f.accounts
        .add_staff(&root, &shared.id, "root")
        .await
        .unwrap();
    assert_eq!(f.accounts.get(&staff, &shared.id).unwrap().id, shared.id);
    let err = f
        .accounts
        .delete(&staff, &shared.id, false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotAuthorized(_)), "{err:?}");
    let err = f
        .accounts
        .add_staff(&staff, &shared.id, "root")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotAuthorized(_)), "{err:?}");
    f.accounts
        .remove_staff(&root, &shared.id, "root")
        .await
        .unwrap();
    assert!(f.accounts.get(&staff, &shared.id).is_err());
    let err = f
        .accounts
        .remove_staff(&root, &shared.id, "root")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
}

#[tokio::test]
async fn conversion_both_ways() {
    let f = fixture();
    let root = admin();
    let shared = active(&f, &root, "establishment").await;
    let err = f
        .accounts
        .convert(&root, &shared.id, "personal")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidState(m) if m.contains("0 staff")),
        "{err:?}"
    );
    f.accounts
        .add_staff(&root, &shared.id, "root")
        .await
        .unwrap();
    f.accounts
        .convert(&root, &shared.id, "personal")
        .await
        .unwrap();
    let a = f.accounts.get(&root, &shared.id).unwrap();
    assert_eq!((a.kind, a.owner, a.staff.len()), (Kind::Personal, 0, 0));
    let err = f
        .accounts
        .convert(&root, &shared.id, "personal")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidState(_)), "{err:?}");

    let alice = user(1001, "alice");
    let mine = active(&f, &alice, "personal").await;
    // A personal account is its owner's to hand over, not an administrator's to take.
    let err = f
        .accounts
        .convert(&root, &mine.id, "establishment")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    f.accounts
        .convert(&alice, &mine.id, "establishment")
        .await
        .unwrap();
    let a = f.accounts.store.account(&mine.id).unwrap().unwrap();
    assert_eq!(a.kind, Kind::Establishment);
    assert_eq!((a.staff, a.owner), (vec!["alice".to_owned()], 1001));
    // Back to personal is an administrator's decision, as for any establishment address.
    let err = f
        .accounts
        .convert(&alice, &mine.id, "personal")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotAuthorized(_)), "{err:?}");
}

/// Forty wrong answers at once: each is counted before it is checked, so five are checked,
/// the lock is the first one (a minute, not a day), and the right answer works once it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_answers_are_counted_before_they_are_checked() {
    let f = Arc::new(fixture());
    let alice = user(1001, "alice");
    let a = active(&f, &alice, "personal").await;
    let mut tries = Vec::new();
    for _ in 0..40 {
        let (f, alice, id) = (f.clone(), alice.clone(), a.id.clone());
        tries.push(tokio::spawn(async move {
            f.accounts
                .unlock(&alice, &id, Unlock::Answer("Paris".into()), "archive-list")
                .await
                .map(|_| ())
        }));
    }
    let mut checked = 0;
    let mut locked = 0;
    for t in tries {
        match t.await.unwrap() {
            Err(Error::WrongCode(_)) => checked += 1,
            Err(Error::TooManyAttempts(_)) => locked += 1,
            other => panic!("{:?}", other.err()),
        }
    }
    assert_eq!((checked, locked), (5, 35));
    let account = f.accounts.get(&alice, &a.id).unwrap();
    assert_eq!(account.locked_until - f.now.load(Ordering::SeqCst), 60);

    let right = || Unlock::Answer("Clermont-Ferrand".into());
    let err = f
        .accounts
        .unlock(&alice, &a.id, right(), "archive-list")
        .await
        .err();
    assert!(matches!(err, Some(Error::TooManyAttempts(_))), "{err:?}");
    // Five more wrong ones after the first lock: the second lasts twice as long. Each says
    // what it leaves.
    f.advance(61);
    let mut said = Vec::new();
    for _ in 0..5 {
        match f
            .accounts
            .unlock(&alice, &a.id, Unlock::Answer("Lyon".into()), "archive-list")
            .await
        {
            Err(Error::WrongCode(m)) => said.push(m),
            other => panic!("{:?}", other.err()),
        }
    }
    assert!(
        said[0].ends_with("4 tries left before the archive locks"),
        "{said:?}"
    );
    assert!(
        said[3].ends_with("1 try left before the archive locks"),
        "{said:?}"
    );
    assert!(said[4].ends_with("locked for 2 minutes"), "{said:?}");
    let account = f.accounts.get(&alice, &a.id).unwrap();
    assert_eq!(account.locked_until - f.now.load(Ordering::SeqCst), 120);
    f.advance(121);
    assert!(
        f.accounts
            .unlock(&alice, &a.id, right(), "archive-list")
            .await
            .is_ok()
    );
    let account = f.accounts.get(&alice, &a.id).unwrap();
    assert_eq!(
        (
            account.unlock_failures,
            account.locked_until,
            account.lock_periods
        ),
        (0, 0, 0)
    );
}

fn other_admin() -> Caller {
    Caller {
        uid: 1003,
        name: "carol".into(),
        admin: true,
        groups: Vec::new(),
        send_establishment: true,
    }
}

#[tokio::test]
async fn codes_to_an_address_are_limited_whoever_asks_and_whatever_is_deleted() {
    let f = fixture();
    let (alice, bob) = (user(1001, "alice"), user(1002, "bob"));
    let a = f
        .accounts
        .create(&alice, "personal", "A", "Victim@ecole.fr")
        .await
        .unwrap();
    f.accounts.delete(&alice, &a.id, false).await.unwrap();
    // Another user, another case, a +tag, or an administrator: the same address.
    for (who, address) in [
        (&bob, "victim@ecole.fr"),
        (&alice, "victim+2@ECOLE.fr"),
        (&admin(), "victim@ecole.fr"),
    ] {
        let err = f
            .accounts
            .create(who, "personal", "B", address)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::RateLimited(m) if m.contains("wait 60 s")),
            "{err:?}"
        );
    }
    let mut sent = 1;
    let b = loop {
        f.advance(RESEND_INTERVAL_SECS);
        let b = f
            .accounts
            .create(&bob, "personal", "B", "victim@ecole.fr")
            .await
            .unwrap();
        sent += 1;
        if sent == 3 {
            break b;
        }
        f.accounts.delete(&bob, &b.id, false).await.unwrap();
    };
    while sent < 5 {
        f.advance(RESEND_INTERVAL_SECS);
        f.accounts.resend_code(&bob, &b.id).await.unwrap();
        sent += 1;
    }
    assert_eq!(f.mail_count(), 5);
    f.advance(RESEND_INTERVAL_SECS);
    let err = f.accounts.resend_code(&bob, &b.id).await.unwrap_err();
    assert!(
        matches!(&err, Error::RateLimited(m) if m.contains("24 hours")),
        "{err:?}"
    );
    f.accounts.delete(&bob, &b.id, false).await.unwrap();
    let err = f
        .accounts
        .create(&alice, "personal", "A", "victim@ecole.fr")
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::RateLimited(_)), "{err:?}");
    assert_eq!(f.mail_count(), 5, "five codes a day reach the address");
    f.advance(limits::DAY_SECS);
    f.accounts
        .create(&alice, "personal", "A", "victim@ecole.fr")
        .await
        .unwrap();
}

#[tokio::test]
async fn an_address_in_use_is_claimed_again_only_by_an_administrator() {
    let f = fixture();
    let root = admin();
    let alice = user(1001, "alice");
    let shared = active(&f, &root, "establishment").await;
    let address = shared.address.to_uppercase();
    let err = f
        .accounts
        .create(&alice, "personal", "Moi", &address)
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::AddressInUse(_)), "{err:?}");
    assert!(
        !err.to_string().contains(&shared.id),
        "the holder is not named: {err}"
    );
    // An administrator may set it up again (a second PC's account moved here, say).
    f.advance(RESEND_INTERVAL_SECS);
    let again = f
        .accounts
        .create(&other_admin(), "personal", "Secrétariat", &address)
        .await
        .unwrap();
    f.accounts
        .confirm_code(&other_admin(), &again.id, &f.last_code(&again.id))
        .await
        .unwrap();
}

#[tokio::test]
async fn of_two_verifications_of_one_address_at_once_one_wins() {
    let f = fixture();
    let (alice, bob) = (user(1001, "alice"), user(1002, "bob"));
    let a = f
        .accounts
        .create(&alice, "personal", "A", "shared@ecole.fr")
        .await
        .unwrap();
    let code_a = f.last_code(&a.id);
    f.advance(RESEND_INTERVAL_SECS);
    let b = f
        .accounts
        .create(&bob, "personal", "B", "shared@ecole.fr")
        .await
        .unwrap();
    let code_b = f.last_code(&b.id);
    let (ra, rb) = tokio::join!(
        f.accounts.confirm_code(&alice, &a.id, &code_a),
        f.accounts.confirm_code(&bob, &b.id, &code_b),
    );
    let outcomes = [&ra, &rb];
    assert_eq!(
        outcomes.iter().filter(|r| r.is_ok()).count(),
        1,
        "{ra:?} {rb:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|r| matches!(r, Err(Error::AddressInUse(_)))),
        "{ra:?} {rb:?}"
    );
    let held: Vec<_> = [&a.id, &b.id]
        .iter()
        .filter_map(|id| f.accounts.store.account(id).unwrap())
        .filter(|acc| acc.state != State::AwaitingCode)
        .collect();
    assert_eq!(held.len(), 1);
}

#[tokio::test]
async fn a_user_has_few_accounts_awaiting_a_code_and_few_creations_a_day() {
    let f = fixture();
    let alice = user(1001, "alice");
    let mut ids = Vec::new();
    for i in 0..3 {
        let a = f
            .accounts
            .create(&alice, "personal", "A", &format!("a{i}@ecole.fr"))
            .await
            .unwrap();
        ids.push(a.id);
    }
    let err = f
        .accounts
        .create(&alice, "personal", "A", "a3@ecole.fr")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::QuotaExceeded(m) if m.contains("awaiting")),
        "{err:?}"
    );
    // Deleting one frees its place, but not the day's count of creations.
    for i in 3..10 {
        f.accounts
            .delete(&alice, &ids.remove(0), false)
            .await
            .unwrap();
        let a = f
            .accounts
            .create(&alice, "personal", "A", &format!("a{i}@ecole.fr"))
            .await
            .unwrap();
        ids.push(a.id);
    }
    f.accounts
        .delete(&alice, &ids.remove(0), false)
        .await
        .unwrap();
    let err = f
        .accounts
        .create(&alice, "personal", "A", "a10@ecole.fr")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::QuotaExceeded(m) if m.contains("24 hours")),
        "{err:?}"
    );
    // Administrators set up the school's addresses in bulk.
    for i in 0..5 {
        f.accounts
            .create(&admin(), "establishment", "S", &format!("s{i}@ecole.fr"))
            .await
            .unwrap();
    }
    f.advance(limits::DAY_SECS);
    f.accounts
        .create(&alice, "personal", "A", "a10@ecole.fr")
        .await
        .unwrap();
}

#[tokio::test]
async fn the_code_mail_shows_nothing_the_asker_typed_before_it_is_opened() {
    let f = fixture();
    let alice = user(1001, "alice");
    f.accounts
        .create(&alice, "personal", "Votre banque URGENT", "victim@ecole.fr")
        .await
        .unwrap();
    let path = std::fs::read_dir(f.dir.path().join("local-mail"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mail = std::fs::read_to_string(path).unwrap();
    let (headers, body) = mail.split_once("\r\n\r\n").unwrap();
    assert!(!headers.contains("banque"), "{headers}");
    assert!(
        headers.contains("From: postecole <victim@ecole.fr>"),
        "{headers}"
    );
    // The subject is encoded (it has an accent): compare it as lettre writes the fixed text.
    let reference = lettre::Message::builder()
        .from("a@b.fr".parse().unwrap())
        .to("a@b.fr".parse().unwrap())
        .subject(notices::CODE_SUBJECT)
        .body(String::new())
        .unwrap();
    let reference = String::from_utf8(reference.formatted()).unwrap();
    assert_eq!(subject_of(headers), subject_of(&reference));
    assert!(body.contains("banque"), "the label is in the body");
}

#[tokio::test]
async fn personal_accounts_are_hidden_from_other_administrators_but_root_may_delete_them() {
    let f = fixture();
    let alice = user(1001, "alice");
    let carol = other_admin();
    let mine = active(&f, &alice, "personal").await;
    let shared = active(&f, &carol, "establishment").await;

    // Wrong codes are in the log.
    f.advance(RESEND_INTERVAL_SECS);
    let (pending, code) = f.awaiting_code(&alice).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    f.accounts
        .confirm_code(&alice, &pending.id, wrong)
        .await
        .unwrap_err();

    let log = f.accounts.audit_log(&carol, 100).unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "verify" && e.outcome == "wrong-code" && e.uid == 1001),
        "{log:?}"
    );
    assert!(
        log.iter()
            .all(|e| e.account != mine.id && e.account != pending.id),
        "{log:?}"
    );
    assert!(log.iter().any(|e| e.account == shared.id));
    assert!(log.iter().any(|e| e.account == audit::HIDDEN));
    let root_log = f.accounts.audit_log(&admin(), 100).unwrap();
    assert!(
        root_log.iter().any(|e| e.account == mine.id),
        "{root_log:?}"
    );

    let hidden = f.accounts.hidden_from(&carol).unwrap();
    assert!(hidden.contains(&mine.id) && !hidden.contains(&shared.id));
    assert!(f.accounts.hidden_from(&admin()).unwrap().is_empty());

    // Neither seen nor used nor converted nor deleted by another administrator.
    for err in [
        f.accounts.get(&carol, &mine.id).unwrap_err(),
        f.accounts.for_sending(&carol, &mine.id).unwrap_err(),
        f.accounts
            .convert(&carol, &mine.id, "establishment")
            .await
            .unwrap_err(),
        f.accounts
            .delete(&carol, &mine.id, false)
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    }
    // Root may delete it, and the log says so.
    f.accounts.delete(&admin(), &mine.id, false).await.unwrap();
    assert!(f.accounts.store.account(&mine.id).unwrap().is_none());
    let last = f.accounts.audit_log(&admin(), 1).unwrap().remove(0);
    assert_eq!(
        (last.action.as_str(), last.account.as_str(), last.uid),
        ("delete", mine.id.as_str(), 0)
    );
}

/// The Subject header of a mail, its folded lines joined.
fn subject_of(headers: &str) -> String {
    let start = headers.find("Subject:").expect("a subject");
    let mut subject = String::new();
    for (i, line) in headers[start..].split("\r\n").enumerate() {
        if i > 0 && !line.starts_with([' ', '\t']) {
            break;
        }
        subject.push_str(line);
    }
    subject
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_guesses_get_five_tries_in_all() {
    let f = fixture();
    let alice = user(1001, "alice");
    let (a, code) = f.awaiting_code(&alice).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let accounts = &f.accounts;
    let guesses: Vec<_> = (0..12)
        .map(|_| accounts.confirm_code(&alice, &a.id, wrong))
        .collect();
    let results = futures_util::future::join_all(guesses).await;
    let wrong_codes = results
        .iter()
        .filter(|r| matches!(r, Err(Error::WrongCode(_))))
        .count();
    assert_eq!(wrong_codes, 4, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(Error::WrongCode(_) | Error::TooManyAttempts(_))))
    );
    let logged = f
        .accounts
        .audit_log(&admin(), 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.outcome == "wrong-code")
        .count();
    assert_eq!(logged, 5, "five tries were checked, and logged");
    let err = f
        .accounts
        .confirm_code(&alice, &a.id, &code)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooManyAttempts(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_creations_for_one_address_at_once_one_code_leaves() {
    let f = fixture();
    let (alice, bob) = (user(1001, "alice"), user(1002, "bob"));
    let (ra, rb) = tokio::join!(
        f.accounts.create(&alice, "personal", "A", "same@ecole.fr"),
        f.accounts.create(&bob, "personal", "B", "same@ecole.fr"),
    );
    assert!(ra.is_ok() != rb.is_ok(), "{ra:?} {rb:?}");
    assert!(
        [&ra, &rb]
            .iter()
            .any(|r| matches!(r, Err(Error::RateLimited(_)))),
        "{ra:?} {rb:?}"
    );
    assert_eq!(f.mail_count(), 1);
}

#[tokio::test]
async fn a_personal_accounts_changes_are_told_to_its_owner_alone() {
    let f = fixture();
    let alice = user(1001, "alice");
    let mut events = f.accounts.subscribe();
    let mine = active(&f, &alice, "personal").await;
    let shared = active(&f, &admin(), "establishment").await;
    f.accounts.delete(&alice, &mine.id, false).await.unwrap();
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push((e.id, e.change, e.private_to));
    }
    assert!(
        seen.iter()
            .filter(|(id, ..)| *id == mine.id)
            .all(|(.., to)| *to == Some(1001)),
        "{seen:?}"
    );
    assert!(seen.contains(&(mine.id.clone(), change::DELETED, Some(1001))));
    assert!(seen.contains(&(shared.id.clone(), change::CREATED, None)));
}

#[tokio::test]
async fn deleting_an_account_keeps_its_archive_unless_asked() {
    let f = fixture();
    let alice = user(1000, "alice");
    let kept = active(&f, &alice, "personal").await;
    let gone = active(&f, &alice, "personal").await;
    let archive = f.dir.path().join("archive");
    assert!(
        archive.join(&kept.id).join("key").exists(),
        "the archive's key is written"
    );

    assert!(f.accounts.delete(&alice, &kept.id, false).await.unwrap());
    assert!(
        archive.join(&kept.id).join("key").exists(),
        "kept, with what opens it"
    );
    assert!(
        archive
            .join(&kept.id)
            .join(crate::archive::RETIRED)
            .exists()
    );
    assert!(matches!(
        f.accounts.get(&alice, &kept.id),
        Err(Error::NotFound(_))
    ));

    assert!(!f.accounts.delete(&alice, &gone.id, true).await.unwrap());
    assert!(!archive.join(&gone.id).exists(), "removed when asked");
}
