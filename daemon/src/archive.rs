//! The encrypted archive of sent mail and the keys that open it.
//!
//! Each account has an age X25519 key pair. The public half is kept in clear, so the daemon
//! archives without any secret. The private half is kept only wrapped (ChaCha20-Poly1305),
//! once under a key derived from the secret answer (Argon2id, its own salt) and once under a
//! random recovery key that exists only in `cleRecuperation.crbee`. Lose both and the archive
//! is unreadable: that is the promise of the recovery file.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use age::secrecy::ExposeSecret;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secret;
use crate::spool::Slot;

pub const RECOVERY_FILE_NAME: &str = "cleRecuperation.crbee";
const RECOVERY_FORMAT: &str = "postecole-recovery-key";
const RECOVERY_VERSION: u32 = 1;

/// The account's archive keys as stored: public key in clear, private key wrapped twice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRing {
    /// age recipient (`age1…`).
    pub recipient: String,
    answer_salt: String,
    answer_nonce: String,
    answer_wrapped: String,
    recovery_nonce: String,
    recovery_wrapped: String,
}

/// The secret half, unwrapped for the length of one call.
pub struct Unlocked(age::x25519::Identity);

impl KeyRing {
    /// A new key pair, wrapped under `answer` (normalised) and under a fresh recovery key,
    /// which is returned and kept nowhere.
    pub fn create(answer: &str) -> (KeyRing, [u8; 32]) {
        let identity = age::x25519::Identity::generate();
        let recovery: [u8; 32] = secret::random_bytes();
        let plain = identity.to_string();
        let plain = plain.expose_secret().as_bytes();
        let (recovery_nonce, recovery_wrapped) = seal(&recovery, plain);
        let mut ring = KeyRing {
            recipient: identity.to_public().to_string(),
            answer_salt: String::new(),
            answer_nonce: String::new(),
            answer_wrapped: String::new(),
            recovery_nonce: hex(&recovery_nonce),
            recovery_wrapped: hex(&recovery_wrapped),
        };
        ring.wrap_answer(&Unlocked(identity), answer);
        (ring, recovery)
    }

    /// Wraps the private key under a new answer; the archive itself is not touched.
    pub fn wrap_answer(&mut self, key: &Unlocked, answer: &str) {
        let salt: [u8; 16] = secret::random_bytes();
        let wrapping = secret::derive_key(answer, &salt);
        let plain = key.0.to_string();
        let (nonce, wrapped) = seal(&wrapping, plain.expose_secret().as_bytes());
        self.answer_salt = hex(&salt);
        self.answer_nonce = hex(&nonce);
        self.answer_wrapped = hex(&wrapped);
    }

    /// The private key, if `answer` (normalised) is the right one. Costs one Argon2id.
    pub fn unlock_with_answer(&self, answer: &str) -> Option<Unlocked> {
        let salt = unhex(&self.answer_salt)?;
        let key = secret::derive_key(answer, &salt);
        open(&key, &self.answer_nonce, &self.answer_wrapped)
    }

    pub fn unlock_with_recovery(&self, recovery: &[u8; 32]) -> Option<Unlocked> {
        open(recovery, &self.recovery_nonce, &self.recovery_wrapped)
    }
}

fn seal(key: &[u8; 32], plain: &[u8]) -> ([u8; 12], Vec<u8>) {
    let nonce: [u8; 12] = secret::random_bytes();
    let sealed = ChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(Nonce::from_slice(&nonce), plain)
        .expect("ChaCha20-Poly1305 encrypts any length we use");
    (nonce, sealed)
}

fn open(key: &[u8; 32], nonce: &str, sealed: &str) -> Option<Unlocked> {
    let nonce = unhex(nonce)?;
    if nonce.len() != 12 {
        return None;
    }
    let plain = ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(Nonce::from_slice(&nonce), unhex(sealed)?.as_slice())
        .ok()?;
    let text = String::from_utf8(plain).ok()?;
    text.parse::<age::x25519::Identity>().ok().map(Unlocked)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The text of `cleRecuperation.crbee`. Version 1:
///
/// ```text
/// # comment lines (French explanation)
/// postecole-recovery-key: 1
/// account: <id>
/// address: <address>
/// created: <seconds since the epoch>
/// key: <64 hex digits: the 32-byte recovery key>
/// checksum: <first 16 hex digits of SHA-256 over the five lines above, each ending in \n>
/// ```
pub fn recovery_file(account: &str, address: &str, created: u64, key: &[u8; 32]) -> String {
    let body = format!(
        "{RECOVERY_FORMAT}: {RECOVERY_VERSION}\naccount: {account}\naddress: {address}\ncreated: {created}\nkey: {}\n",
        hex(key)
    );
    format!(
        "# Clé de récupération postecole — à conserver en lieu sûr.\n\
         # C'est le seul moyen de relire les e-mails envoyés depuis {address}\n\
         # si la réponse à la question secrète est perdue. Sans elle et sans la\n\
         # réponse, ces e-mails sont illisibles, pour tout le monde.\n\
         # Ne modifiez pas ce fichier.\n\
         {body}checksum: {}\n",
        checksum(&body)
    )
}

fn checksum(body: &str) -> String {
    hex(&Sha256::digest(body.as_bytes())[..8])
}

/// The account id and key in a recovery file, or a sentence saying what is wrong with it.
pub fn parse_recovery_file(text: &str) -> Result<(String, [u8; 32]), String> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    let field = |i: usize, name: &str| -> Result<&str, String> {
        lines
            .get(i)
            .and_then(|l| l.strip_prefix(name))
            .and_then(|l| l.strip_prefix(": "))
            .ok_or_else(|| {
                format!("this is not a complete {RECOVERY_FILE_NAME} file (line `{name}` missing): it may be truncated")
            })
    };
    let version = field(0, RECOVERY_FORMAT)?;
    if version != RECOVERY_VERSION.to_string() {
        return Err(format!(
            "this {RECOVERY_FILE_NAME} is version {version}; this postecole reads version {RECOVERY_VERSION}"
        ));
    }
    let account = field(1, "account")?;
    field(2, "address")?;
    field(3, "created")?;
    let key_hex = field(4, "key")?;
    let sum = field(5, "checksum")?;
    let body: String = lines[..5].iter().map(|l| format!("{l}\n")).collect();
    if checksum(&body) != sum {
        return Err(format!(
            "this {RECOVERY_FILE_NAME} has been altered or mistyped (checksum mismatch)"
        ));
    }
    let key: [u8; 32] = unhex(key_hex)
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| format!("the key in this {RECOVERY_FILE_NAME} is malformed"))?;
    Ok((account.to_owned(), key))
}

/// Sealed copies of delivered messages, appended to per-account logs under
/// `state_dir/archive/<account>/NNNNNN.log`; the queue record of each message says where its
/// copy is. One log file takes a whole term of mail: no inode to create per message, one sync
/// per group of deliveries. A copy written but never recorded (a crash in between) is dead
/// weight in the log, sealed like the rest.
#[derive(Clone)]
pub struct Archive {
    dir: PathBuf,
    logs: Arc<Mutex<Logs>>,
}

#[derive(Default)]
struct Logs {
    /// Account → the log it appends to now.
    open: HashMap<String, Log>,
    /// Accounts written to since the last sync.
    unsynced: HashSet<String>,
}

struct Log {
    name: String,
    number: u32,
    file: File,
    len: u64,
}

/// A message from the archive: its queue id and its clear bytes.
pub type Sealed = (String, Vec<u8>);

/// A log stops growing past this size and the next one is started.
const LOG_BYTES: u64 = 256 * 1024 * 1024;

impl Archive {
    pub fn new(state_dir: &Path) -> Archive {
        Archive {
            dir: state_dir.join("archive"),
            logs: Arc::default(),
        }
    }

    /// Encrypts a group of delivered messages (id, bytes) of one account to `recipient`,
    /// together, and appends them to the account's log. One age header per group rather than
    /// per message: its X25519 agreement was a twentieth of the CPU spent delivering. Not
    /// synced: the queue syncs once per group (`sync`) before the records say they are archived.
    pub fn store(
        &self,
        account: &str,
        recipient: &str,
        messages: &[(&str, &[u8])],
    ) -> std::io::Result<Slot> {
        let recipient: age::x25519::Recipient = recipient
            .parse()
            .map_err(|e: &str| std::io::Error::other(format!("bad archive key: {e}")))?;
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(std::io::Error::other)?;
        let total: usize = messages.iter().map(|(id, b)| 12 + id.len() + b.len()).sum();
        let mut sealed = Vec::with_capacity(total + 512);
        let mut writer = encryptor.wrap_output(&mut sealed)?;
        // Each message: id length (u32), id, length (u64), bytes; little-endian.
        for (id, bytes) in messages {
            writer.write_all(&(id.len() as u32).to_le_bytes())?;
            writer.write_all(id.as_bytes())?;
            writer.write_all(&(bytes.len() as u64).to_le_bytes())?;
            writer.write_all(bytes)?;
        }
        writer.finish()?;

        let mut logs = self.logs.lock().unwrap();
        let full = logs.open.get(account).is_none_or(|l| l.len >= LOG_BYTES);
        if full {
            let log = self.next_log(account, logs.open.get(account).map(|l| l.number))?;
            logs.open.insert(account.to_owned(), log);
        }
        let log = logs.open.get_mut(account).expect("just opened");
        log.file.write_all_at(&sealed, log.len)?;
        let slot = Slot {
            segment: log.name.clone(),
            offset: log.len,
            len: sealed.len() as u64,
        };
        log.len += sealed.len() as u64;
        logs.unsynced.insert(account.to_owned());
        Ok(slot)
    }

    /// Syncs every log written to since the last call.
    pub fn sync(&self) -> std::io::Result<()> {
        let mut logs = self.logs.lock().unwrap();
        let unsynced = std::mem::take(&mut logs.unsynced);
        for account in &unsynced {
            if let Some(log) = logs.open.get(account) {
                log.file.sync_data()?;
            }
        }
        Ok(())
    }

    /// The account's log after `after` (or its newest one when the daemon has not written
    /// to it yet), created if needed with its directory entries synced.
    fn next_log(&self, account: &str, after: Option<u32>) -> std::io::Result<Log> {
        let dir = self.dir.join(account);
        let number = match after {
            Some(n) => n + 1,
            None => {
                create_synced_dir(&self.dir)?;
                create_synced_dir(&dir)?;
                std::fs::read_dir(&dir)?
                    .filter_map(|e| {
                        let name = e.ok()?.file_name().into_string().ok()?;
                        name.strip_suffix(".log")?.parse::<u32>().ok()
                    })
                    .max()
                    .unwrap_or(1)
            }
        };
        let name = format!("{number:06}.log");
        let path = dir.join(&name);
        let existed = path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)?;
        if !existed {
            File::open(&dir)?.sync_all()?;
        }
        let len = file.metadata()?.len();
        Ok(Log {
            name,
            number,
            file,
            len,
        })
    }

    /// The messages sealed together in `slot`, in clear, or None if its log is gone.
    pub fn read(
        &self,
        account: &str,
        slot: &Slot,
        key: &Unlocked,
    ) -> std::io::Result<Option<Vec<Sealed>>> {
        let file = match File::open(self.dir.join(account).join(&slot.segment)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut sealed = vec![0; slot.len as usize];
        file.read_exact_at(&mut sealed, slot.offset)?;
        let decryptor = age::Decryptor::new(&sealed[..]).map_err(std::io::Error::other)?;
        let mut reader = decryptor
            .decrypt(std::iter::once(&key.0 as &dyn age::Identity))
            .map_err(std::io::Error::other)?;
        let mut clear = Vec::new();
        reader.read_to_end(&mut clear)?;
        let malformed = || std::io::Error::other("malformed archive group");
        let mut rest = &clear[..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(malformed)?;
            let (id, tail) = tail
                .split_at_checked(u32::from_le_bytes(*len) as usize)
                .ok_or_else(malformed)?;
            let (len, tail) = tail.split_first_chunk::<8>().ok_or_else(malformed)?;
            let (bytes, tail) = tail
                .split_at_checked(u64::from_le_bytes(*len) as usize)
                .ok_or_else(malformed)?;
            out.push((String::from_utf8_lossy(id).into_owned(), bytes.to_vec()));
            rest = tail;
        }
        Ok(Some(out))
    }

    /// Removes an account's archive (when the account is deleted).
    pub fn remove_account(&self, account: &str) -> std::io::Result<()> {
        let mut logs = self.logs.lock().unwrap();
        logs.open.remove(account);
        logs.unsynced.remove(account);
        match std::fs::remove_dir_all(self.dir.join(account)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn create_synced_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => File::open(dir.parent().unwrap_or(dir))?.sync_all(),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Subject and To of a stored message, decoded for display (RFC 2047 encoded words).
pub fn summary(message: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut subject = String::new();
    let mut to = String::new();
    let mut current: Option<&mut String> = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(field) = current.as_mut() {
                field.push_str(line.trim_start());
            }
            continue;
        }
        current = None;
        if let Some(v) = line.strip_prefix("Subject: ") {
            subject.push_str(v);
            current = Some(&mut subject);
        } else if let Some(v) = line.strip_prefix("To: ") {
            to.push_str(v);
            current = Some(&mut to);
        }
    }
    (decode_words(&subject), decode_words(&to))
}

/// Decodes `=?utf-8?b?…?=` and `=?utf-8?q?…?=` words; anything else is kept as is.
fn decode_words(value: &str) -> String {
    use base64::Engine;
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let between = &rest[..start];
        if !(last_was_word && between.trim().is_empty()) {
            out.push_str(between);
        }
        let word = &rest[start + 2..];
        let parts: Vec<&str> = word.splitn(3, '?').collect();
        let decoded = match parts.as_slice() {
            [charset, enc, tail] if charset.eq_ignore_ascii_case("utf-8") => {
                tail.find("?=").and_then(|end| {
                    let payload = &tail[..end];
                    let bytes = match enc.to_ascii_lowercase().as_str() {
                        "b" => base64::engine::general_purpose::STANDARD
                            .decode(payload)
                            .ok()?,
                        "q" => q_decode(payload)?,
                        _ => return None,
                    };
                    Some((
                        String::from_utf8_lossy(&bytes).into_owned(),
                        charset.len() + enc.len() + end + 6,
                    ))
                })
            }
            _ => None,
        };
        match decoded {
            Some((text, used)) => {
                out.push_str(&text);
                rest = &rest[start + used..];
                last_was_word = true;
            }
            None => {
                out.push_str("=?");
                rest = &rest[start + 2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

fn q_decode(payload: &str) -> Option<Vec<u8>> {
    let bytes = payload.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => out.push(b' '),
            b'=' => {
                out.push(u8::from_str_radix(payload.get(i + 1..i + 3)?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// An mbox "From " line and body with ">From " quoting, for `ExportMbox`.
pub fn mbox_entry(out: &mut Vec<u8>, sender: &str, date: u64, message: &[u8]) {
    out.extend_from_slice(format!("From {sender} {}\n", asctime(date)).as_bytes());
    let text = String::from_utf8_lossy(message).replace("\r\n", "\n");
    for line in text.lines() {
        if line.trim_start_matches('>').starts_with("From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// `Thu Nov 26 10:00:00 2026`, as mbox "From " lines want it (UTC).
fn asctime(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {year}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_open_with_answer_or_recovery_only() {
        let (mut ring, recovery) = KeyRing::create("le chat noir");
        assert!(ring.recipient.starts_with("age1"));
        assert!(ring.unlock_with_answer("le chat noir").is_some());
        assert!(ring.unlock_with_answer("le chat blanc").is_none());
        assert!(ring.unlock_with_recovery(&recovery).is_some());
        let mut wrong = recovery;
        wrong[0] ^= 1;
        assert!(ring.unlock_with_recovery(&wrong).is_none());

        let key = ring.unlock_with_recovery(&recovery).unwrap();
        ring.wrap_answer(&key, "nouvelle réponse");
        assert!(ring.unlock_with_answer("le chat noir").is_none());
        assert!(ring.unlock_with_answer("nouvelle réponse").is_some());
        assert!(
            ring.unlock_with_recovery(&recovery).is_some(),
            "the file stays valid"
        );
    }

    #[test]
    fn archive_round_trip_and_nothing_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let (ring, recovery) = KeyRing::create("le chat noir");
        let archive = Archive::new(dir.path());
        let message = b"Subject: MARQUEUR-UNIQUE-42\r\n\r\nIdentifiants: famille / secret\r\n";
        let first = archive
            .store(
                "acct",
                &ring.recipient,
                &[("m1", message), ("m2", b"second")],
            )
            .unwrap();
        let third = archive
            .store("acct", &ring.recipient, &[("m3", b"third")])
            .unwrap();
        archive.sync().unwrap();
        assert_eq!(first.segment, third.segment, "one log per account");
        let on_disk = std::fs::read(dir.path().join("archive/acct/000001.log")).unwrap();
        assert!(!on_disk.windows(8).any(|w| w == b"MARQUEUR"));
        let key = ring.unlock_with_recovery(&recovery).unwrap();
        let group = archive.read("acct", &first, &key).unwrap().unwrap();
        assert_eq!(
            group,
            vec![
                ("m1".to_owned(), message.to_vec()),
                ("m2".to_owned(), b"second".to_vec())
            ]
        );
        // A daemon started later appends to the same log.
        let later = Archive::new(dir.path());
        let fourth = later
            .store("acct", &ring.recipient, &[("m4", b"fourth")])
            .unwrap();
        assert_eq!(
            (fourth.segment.as_str(), fourth.offset),
            ("000001.log", third.offset + third.len)
        );
        assert_eq!(
            later.read("acct", &fourth, &key).unwrap().unwrap(),
            vec![("m4".to_owned(), b"fourth".to_vec())]
        );
        let (other, _) = KeyRing::create("autre réponse");
        let other_key = other.unlock_with_answer("autre réponse").unwrap();
        assert!(archive.read("acct", &first, &other_key).is_err());
        archive.remove_account("acct").unwrap();
        assert!(archive.read("acct", &first, &key).unwrap().is_none());
    }

    #[test]
    fn recovery_file_round_trip_and_damage() {
        let key: [u8; 32] = secret::random_bytes();
        let text = recovery_file("abcd2345", "secretariat@ecole.fr", 1_800_000_000, &key);
        assert_eq!(
            parse_recovery_file(&text).unwrap(),
            ("abcd2345".to_owned(), key)
        );
        assert_eq!(
            parse_recovery_file(&text.replace('\n', "\r\n")).unwrap().1,
            key
        );

        let truncated = &text[..text.len() - 30];
        assert!(
            parse_recovery_file(truncated)
                .unwrap_err()
                .contains("truncated")
        );
        let key_line = text.lines().find(|l| l.starts_with("key: ")).unwrap();
        let mut typo = key_line.to_owned();
        let last = typo.pop().unwrap();
        typo.push(if last == '0' { '1' } else { '0' });
        let err = parse_recovery_file(&text.replace(key_line, &typo)).unwrap_err();
        assert!(err.contains("checksum"), "{err}");
        assert!(
            parse_recovery_file("hello")
                .unwrap_err()
                .contains("not a complete")
        );
        let v2 = text.replace("postecole-recovery-key: 1", "postecole-recovery-key: 2");
        assert!(parse_recovery_file(&v2).unwrap_err().contains("version 2"));
    }

    #[test]
    fn summaries_decode_encoded_words() {
        let m = b"From: x@y.fr\r\nSubject: Bilan du =?utf-8?b?MWVy?=\r\n =?utf-8?q?trimestre_=C3=A9t=C3=A9?=\r\nTo: a@b.fr, c@d.fr\r\n\r\nSubject: not this\r\n";
        assert_eq!(
            summary(m),
            (
                "Bilan du 1ertrimestre été".to_owned(),
                "a@b.fr, c@d.fr".to_owned()
            )
        );
        assert_eq!(decode_words("plain =?x"), "plain =?x");
    }

    #[test]
    fn mbox_quotes_from_lines_and_dates() {
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(1_795_600_000), "Wed Nov 25 09:46:40 2026");
        let mut out = Vec::new();
        mbox_entry(
            &mut out,
            "a@b.fr",
            0,
            b"Subject: x\r\n\r\nFrom here\r\n>From there\r\n",
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("From a@b.fr Thu Jan  1 00:00:00 1970\n"));
        assert!(text.contains("\n>From here\n>>From there\n"), "{text}");
    }
}
