//! Power cuts below the page cache: postecoled's state directory on crashfs, which keeps
//! every write and name change not yet synced apart and drops them at the cut, as a machine
//! switched off at the wall would. The daemon works (messages sent one by one and in
//! batches, delivered to aiosmtpd, an account set up) until the cut at a random moment; it is
//! then killed, the mount rolled back to what was synced, and the daemon started again on what
//! is left, and the promises checked:
//! - every message whose id was returned is still queued or delivered, and in the end
//!   delivered whole (its Message-ID at the relay, with its own recipient and body);
//! - nothing shown as delivered that the relay never had, nothing in the queue that no call
//!   ever submitted;
//! - every account reported active is still active, and its archive opens with its answer.
//!
//! `POSTECOLE_POWERCUTS=N` sets the number of cuts (default 6, a bounded CI run),
//! `POSTECOLE_POWERCUT_SEED` the seed (printed with the figures), and
//! `POSTECOLE_POWERCUT_NAMES=posix` makes name changes durable only through a directory fsync
//! (default `journal`: any fsync commits them, as ext4 does). The second test tears un-synced
//! writes instead of dropping them all: each page kept or dropped at random, a grown file cut
//! anywhere in what was appended, what the disk never got reading as zeros
//! (`POSTECOLE_POWERCUT_WRITES=torn` makes the first one do the same).
//! Run with `--nocapture` to see the figures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crashfs::Mount;
use postecole_tests::{ADMIN_GROUP, Bus, Daemon, Smtp, api, bin, code_in, create, mailctl};

const ANSWER: &str = "Clermont-Ferrand";
/// Cuts per machine.
const ROUND: usize = 25;
const QUEUE: &str = "[queue]\nconcurrency = 2\nmin_backoff_secs = 1\nmax_backoff_secs = 2\n";

/// xorshift64*: cut points that a printed seed reproduces.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the clients were told, and what they asked without an answer.
#[derive(Default)]
struct Ledger {
    /// Message id → its recipient, for every id the daemon returned.
    acked: HashMap<String, String>,
    /// Recipients of calls that had no successful answer when the power went.
    unanswered: HashSet<String>,
}

/// Sends until told to stop or until the daemon stops answering: one message per call, and
/// every fifth call a batch of ten; or, `once`, one batch of fifty and no more. Each message
/// has its own recipient, `<tag>-<n>@…`.
fn burst(
    bus: &Bus,
    account: &str,
    tag: &str,
    once: bool,
    ledger: &Mutex<Ledger>,
    stop: &AtomicBool,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let conn = bus.connect().await;
        let Ok(outbox) = api::OutboxProxy::new(&conn).await else {
            return;
        };
        for n in 0.. {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let to: Vec<String> = match n % 5 {
                _ if once => (0..50)
                    .map(|i| format!("{tag}-{n}-{i}@example.org"))
                    .collect(),
                4 => (0..10)
                    .map(|i| format!("{tag}-{n}-{i}@example.org"))
                    .collect(),
                _ => vec![format!("{tag}-{n}@example.org")],
            };
            ledger.lock().unwrap().unanswered.extend(to.iter().cloned());
            let message = |to: &String| api::OutgoingMessage {
                to: Some(vec![to.clone()]),
                subject: Some(format!("Coupure {to}")),
                text: Some(format!("Corps {to}")),
                ..Default::default()
            };
            let call = async {
                if to.len() == 1 {
                    outbox
                        .send(account, message(&to[0]), vec![])
                        .await
                        .map(|id| vec![id])
                } else {
                    outbox
                        .send_batch(account, to.iter().map(|t| (message(t), vec![])).collect())
                        .await
                }
            };
            match tokio::time::timeout(Duration::from_secs(20), call).await {
                Ok(Ok(ids)) => {
                    let mut ledger = ledger.lock().unwrap();
                    for (id, to) in ids.into_iter().zip(to) {
                        ledger.unanswered.remove(&to);
                        ledger.acked.insert(id, to);
                    }
                }
                _ => return,
            }
            if once {
                return;
            }
            // A school's pace rather than a flood: the queue stays small over many cuts.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// Sets up a personal account through code and secret; its id once `secure` said yes.
fn new_account(bus: &Bus, smtp: &Smtp, address: &str, stop: &AtomicBool) -> Option<String> {
    let out = create(bus, None, "personal", "Coupure", address);
    if !out.ok {
        return None;
    }
    let id = out.stdout.trim().to_owned();
    let start = Instant::now();
    let code = loop {
        if let Some(code) = code_in(&smtp.messages(), &id) {
            break code;
        }
        if stop.load(Ordering::SeqCst) || start.elapsed() > Duration::from_secs(20) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !mailctl(bus, None, &["account", "verify", &id, &code], None).ok {
        return None;
    }
    let out = mailctl(
        bus,
        None,
        &["account", "secure", &id, "--question", "Ville ?"],
        Some(&format!("{ANSWER}\n")),
    );
    out.ok.then_some(id)
}

fn list_messages(bus: &Bus) -> Vec<api::MessageInfo> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let conn = bus.connect().await;
        api::OutboxProxy::new(&conn)
            .await
            .unwrap()
            .list_messages()
            .await
            .unwrap()
    })
}

fn list_accounts(bus: &Bus) -> Vec<api::AccountInfo> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let conn = bus.connect().await;
        api::AccountsProxy::new(&conn)
            .await
            .unwrap()
            .list_accounts()
            .await
            .unwrap()
    })
}

/// The value of header `name` in a delivered message.
fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    let head = &mail[..mail.find("\r\n\r\n").unwrap_or(mail.len())];
    head.split("\r\n")
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// When a cut falls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Moment {
    Sending,
    Delivering,
    SettingUp,
    AfterActive,
}

/// The daemon with its state on crashfs over `backing`.
struct World {
    bus: Bus,
    smtp: Smtp,
    daemon: Daemon,
    mount: Option<Mount>,
    backing: PathBuf,
    mountpoint: PathBuf,
    journal: bool,
    /// Torn writes: the seed of this machine's cuts, and how many mounts it had.
    torn: Option<u64>,
    mounts: u64,
    _root: tempfile::TempDir,
}

impl World {
    fn start(journal: bool, torn: Option<u64>) -> World {
        let bus = Bus::start();
        let smtp = Smtp::start();
        let mut daemon = Daemon::start(&bus, "");
        daemon.stop();
        let root = tempfile::tempdir().unwrap();
        let backing = root.path().join("backing");
        let mountpoint = root.path().join("state");
        std::fs::create_dir(&backing).unwrap();
        std::fs::create_dir(&mountpoint).unwrap();
        // The helper's daemon, moved onto the mount: same bus, log and config file.
        std::fs::write(
            &daemon.config_path,
            format!(
                "state_dir = \"{}\"\nadmin_group = \"{ADMIN_GROUP}\"\n{}{QUEUE}",
                mountpoint.display(),
                smtp.relay_config()
            ),
        )
        .unwrap();
        daemon.state_dir = mountpoint.clone();
        let mut world = World {
            bus,
            smtp,
            daemon,
            mount: None,
            backing,
            mountpoint,
            journal,
            torn,
            mounts: 0,
            _root: root,
        };
        world.mount();
        world.daemon.restart();
        world
    }

    fn mount(&mut self) {
        self.mount = Some(Mount::start(
            &bin("crashfs"),
            &self.backing,
            &self.mountpoint,
            self.journal,
            self.torn.map(|seed| seed.wrapping_add(self.mounts)),
        ));
        self.mounts += 1;
    }

    /// A clean shutdown: everything written reaches the disk.
    fn shut_down_cleanly(&mut self) {
        self.daemon.stop();
        self.mount.take().unwrap().unmount();
    }
}

#[derive(Default)]
struct Figures {
    cuts: usize,
    duplicates: usize,
    /// When the cuts fell → how many.
    moments: BTreeMap<&'static str, usize>,
    worst_cut: String,
    acked: usize,
    unanswered_recovered: usize,
    unanswered_dropped: usize,
    worst_recovery: Duration,
    total_recovery: Duration,
    /// Kind of broken promise → each case.
    violations: BTreeMap<&'static str, Vec<String>>,
    /// (kind, message or account id) already counted: a case is counted once.
    counted: HashSet<(&'static str, String)>,
    rollbacks: BTreeMap<&'static str, usize>,
}

impl Figures {
    fn summary(&self, journal: bool, torn: bool, seed: u64) -> String {
        format!(
            "power cuts ({} names, {} writes, seed {seed}): {} cuts {:?}, {:?}; {} messages acknowledged, \
             {} sent twice; unanswered calls: {} recovered and delivered, {} dropped; \
             recovery worst {:?} ({}), mean {:?}; broken promises (distinct cases): {:?}",
            if journal { "journal" } else { "posix" },
            if torn { "torn" } else { "un-synced dropped" },
            self.cuts,
            self.moments,
            self.rollbacks,
            self.acked,
            self.duplicates,
            self.unanswered_recovered,
            self.unanswered_dropped,
            self.worst_recovery,
            self.worst_cut,
            self.total_recovery / self.cuts.max(1) as u32,
            self.violations
                .iter()
                .map(|(kind, v)| (kind, v.len()))
                .collect::<BTreeMap<_, _>>()
        )
    }

    fn violation(&mut self, kind: &'static str, id: &str, case: String) {
        if self.counted.insert((kind, id.to_owned())) {
            self.violations.entry(kind).or_default().push(case);
        }
    }
}

/// What is wrong with an acknowledged message to `to` that the queue shows as `m`, if
/// anything: waiting and delivered are both right.
fn broken(
    m: Option<&api::MessageInfo>,
    to: &str,
    relayed_to: &HashSet<&str>,
) -> Option<&'static str> {
    let at_relay = relayed_to.contains(to);
    match m {
        Some(m) if ["queued", "sending", "deferred", "delivered"].contains(&m.state.as_str()) => {
            None
        }
        None if at_relay => Some("delivered, then forgotten by the queue"),
        None => Some("LOST: never delivered and no longer queued"),
        Some(_) if at_relay => Some("delivered, then shown failed"),
        Some(_) => Some("LOST: never delivered, shown failed"),
    }
}

/// One machine's life: set up, then `cuts` power cuts, then every promise checked.
fn round(rng: &mut Rng, journal: bool, torn: bool, first_cut: usize, cuts: usize, f: &mut Figures) {
    let mut w = World::start(journal, torn.then(|| rng.below(u64::MAX)));
    let never = AtomicBool::new(false);
    let first = new_account(&w.bus, &w.smtp, "premier@ecole.fr", &never)
        .expect("the first account is set up before any cut");
    // The school installed the machine and shut it down properly once.
    w.shut_down_cleanly();
    w.mount();
    w.daemon.restart();

    let ledger = Mutex::new(Ledger::default());
    let mut active = vec![first.clone()];
    let mut seen_unanswered: HashSet<String> = HashSet::new();
    for k in first_cut..first_cut + cuts {
        // A third of the cuts fall while messages are sent, a third while a batch of fifty
        // is being delivered and nothing else comes in, a third while an account is set up:
        // half of those at any moment, half within 400 ms of its being reported active, when
        // only a store flush stands between the answer and the disk.
        let moment = [
            Moment::Sending,
            Moment::Sending,
            Moment::Delivering,
            Moment::Delivering,
            Moment::SettingUp,
            Moment::AfterActive,
        ][rng.below(6) as usize];
        let with_account = matches!(moment, Moment::SettingUp | Moment::AfterActive);
        let delay = Duration::from_millis(match moment {
            Moment::Sending => rng.below(800),
            Moment::Delivering => rng.below(1500),
            Moment::SettingUp => rng.below(2500),
            Moment::AfterActive => rng.below(400),
        });
        let stop = AtomicBool::new(false);
        let tag = format!("c{k}");
        let address = format!("c{k}@ecole.fr");
        let once = moment == Moment::Delivering;
        let new = std::thread::scope(|s| {
            let sender = s.spawn(|| burst(&w.bus, &first, &tag, once, &ledger, &stop));
            let setup =
                with_account.then(|| s.spawn(|| new_account(&w.bus, &w.smtp, &address, &stop)));
            // The delay counts from the batch's answer, or from the account's activation.
            let ready = || match moment {
                Moment::Delivering => sender.is_finished(),
                Moment::AfterActive => setup.as_ref().is_none_or(|t| t.is_finished()),
                _ => true,
            };
            let start = Instant::now();
            while !ready() && start.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(delay);
            w.mount.as_mut().unwrap().cut();
            stop.store(true, Ordering::SeqCst);
            w.daemon.kill9();
            sender.join().unwrap();
            setup.and_then(|t| t.join().unwrap())
        });
        f.cuts += 1;
        let said = w.mount.take().unwrap().unmount();
        *f.rollbacks
            .entry(
                if said.contains("rolled back: 0 files") && said.contains("(0 names)") {
                    "nothing to roll back"
                } else {
                    "rolled back"
                },
            )
            .or_default() += 1;
        let moment = match moment {
            Moment::Sending => "while sending",
            Moment::Delivering => "while delivering a batch",
            Moment::SettingUp => "during an account set-up",
            Moment::AfterActive => "after an account became active",
        };
        *f.moments.entry(moment).or_default() += 1;
        let context = format!("cut {k} {delay:?} {moment} ({said})");
        if let Some(id) = &new {
            active.push(id.clone());
        }

        w.mount();
        let start = Instant::now();
        let restarted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            w.daemon.restart();
            list_messages(&w.bus)
        }));
        let Ok(messages) = restarted else {
            // Nothing more can be asked of this machine; the figures say why.
            f.violation(
                "daemon did not come back",
                "",
                format!(
                    "{context}: {}",
                    w.daemon
                        .log()
                        .lines()
                        .rev()
                        .take(5)
                        .collect::<Vec<_>>()
                        .join(" | ")
                ),
            );
            return;
        };
        let recovery = start.elapsed();
        if recovery > f.worst_recovery {
            f.worst_recovery = recovery;
            f.worst_cut = context.clone();
        }
        f.total_recovery += recovery;

        let mut ledger = ledger.lock().unwrap();
        let by_id: HashMap<&str, &api::MessageInfo> =
            messages.iter().map(|m| (m.id.as_str(), m)).collect();
        let mails = w.smtp.messages();
        let relayed_to: HashSet<&str> = mails
            .iter()
            .filter_map(|m| header(m, "X-Envelope-To"))
            .collect();
        for (id, to) in &ledger.acked {
            if let Some(kind) = broken(by_id.get(id.as_str()).copied(), to, &relayed_to) {
                f.violation(kind, id, format!("{context}: {id} to {to}"));
            }
        }
        let relayed: HashSet<String> = mails
            .iter()
            .filter_map(|m| header(m, "Message-ID").map(str::to_owned))
            .collect();
        for m in &messages {
            if m.state == "delivered" && !relayed.contains(&m.message_id) {
                f.violation(
                    "shown delivered, never reached the relay",
                    &m.id,
                    format!("{context}: {}", m.id),
                );
            }
            let to = m.to.first().cloned().unwrap_or_default();
            if !ledger.acked.contains_key(&m.id) && to.ends_with("@example.org") {
                if ledger.unanswered.contains(&to) || seen_unanswered.contains(&to) {
                    if seen_unanswered.insert(to.clone()) {
                        f.unanswered_recovered += 1;
                    }
                } else {
                    f.violation(
                        "in the queue, never submitted",
                        &m.id,
                        format!("{context}: {} to {to}", m.id),
                    );
                }
            }
        }
        for to in ledger.unanswered.drain() {
            if !seen_unanswered.contains(&to) {
                f.unanswered_dropped += 1;
            }
        }
        drop(ledger);

        let accounts = list_accounts(&w.bus);
        for id in &active {
            match accounts.iter().find(|a| &a.id == id) {
                Some(a) if a.state == "active" => {}
                found => f.violation(
                    "account reported active, then not",
                    id,
                    format!(
                        "{context}: {id} is {}",
                        found.map_or("gone", |a| a.state.as_str())
                    ),
                ),
            }
        }
        // Each opening costs an Argon2: the first account and a new one at every cut, all of
        // them at the last.
        let mut opened = vec![first.clone()];
        opened.extend(new.clone());
        if k + 1 == first_cut + cuts {
            opened.extend(active.iter().skip(1).cloned());
        }
        // The archive of an account that is no longer active was counted above.
        let still_active =
            |id: &&String| accounts.iter().any(|a| &a.id == *id && a.state == "active");
        for id in opened.iter().filter(still_active).collect::<HashSet<_>>() {
            let out = mailctl(
                &w.bus,
                None,
                &["archive", "list", id, "--json"],
                Some(&format!("{ANSWER}\n")),
            );
            if !out.ok {
                f.violation(
                    "archive does not open with its answer",
                    id,
                    format!("{context}: {id}: {}", out.stderr.trim()),
                );
            }
        }
        println!("{context}: back in {recovery:?}");
    }

    // Every acknowledged message must in the end reach the relay, whole.
    let ledger = ledger.into_inner().unwrap();
    f.acked += ledger.acked.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let waiting = list_messages(&w.bus)
            .iter()
            .filter(|m| {
                ledger.acked.contains_key(&m.id)
                    && ["queued", "sending", "deferred"].contains(&m.state.as_str())
            })
            .count();
        if waiting == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mails = w.smtp.messages();
    let relayed_to: HashSet<&str> = mails
        .iter()
        .filter_map(|m| header(m, "X-Envelope-To"))
        .collect();
    let mut copies: HashMap<&str, Vec<&String>> = HashMap::new();
    for m in &mails {
        if let Some(id) = header(m, "Message-ID") {
            copies.entry(id).or_default().push(m);
        }
    }
    let messages = list_messages(&w.bus);
    let by_id: HashMap<&str, &api::MessageInfo> =
        messages.iter().map(|m| (m.id.as_str(), m)).collect();
    for (id, to) in &ledger.acked {
        let m = by_id.get(id.as_str()).copied();
        if let Some(kind) = broken(m, to, &relayed_to) {
            f.violation(kind, id, format!("end: {id} to {to}"));
            continue;
        }
        let m = m.expect("checked");
        let Some(sent) = copies.get(m.message_id.as_str()) else {
            f.violation(
                "never delivered",
                id,
                format!("end: {id} to {to} is {}: {}", m.state, m.last_reply),
            );
            continue;
        };
        f.duplicates += sent.len() - 1;
        for copy in sent {
            if header(copy, "X-Envelope-To") != Some(to.as_str())
                || !copy.contains(&format!("Corps {to}"))
            {
                f.violation("delivered corrupted", id, format!("end: {id} to {to}"));
            }
        }
    }
    w.shut_down_cleanly();
}

#[test]
fn power_cuts_lose_no_acknowledged_message() {
    power_cuts(std::env::var("POSTECOLE_POWERCUT_WRITES").as_deref() == Ok("torn"));
}

/// The same promises when the disk kept some un-synced pages and not others.
#[test]
fn torn_writes_at_a_power_cut_lose_no_acknowledged_message() {
    power_cuts(true);
}

fn power_cuts(torn: bool) {
    let cuts: usize = env_or("POSTECOLE_POWERCUTS", 6);
    let seed: u64 = env_or(
        "POSTECOLE_POWERCUT_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1,
    );
    let journal = std::env::var("POSTECOLE_POWERCUT_NAMES").as_deref() != Ok("posix");
    let mut rng = Rng(seed);
    let mut f = Figures::default();
    // A fresh machine every ROUND cuts, so that the queue and the relay's mailbox stay small.
    while f.cuts < cuts {
        let n = (cuts - f.cuts).min(ROUND);
        round(&mut rng, journal, torn, f.cuts, n, &mut f);
        if f.cuts < cuts {
            println!("so far: {}", f.summary(journal, torn, seed));
        }
    }

    println!("{}", f.summary(journal, torn, seed));
    for (kind, examples) in &f.violations {
        for v in examples.iter().take(5) {
            println!("VIOLATION {kind}: {v}");
        }
    }
    assert!(f.acked > 0, "nothing was acknowledged: nothing was tested");
    let broken: Vec<_> = f.violations.keys().collect();
    assert!(broken.is_empty(), "promises broken: {broken:?}");
}
