//! Each account has an age X25519 key pair. The public half is kept in clear, so the daemon
//! archives without any secret. The private half is kept only wrapped (ChaCha20-Poly1305),
//! once under a key derived from the secret answer (Argon2id, its own salt) and once under a
//! random recovery key that exists only in `cleRecuperation.crbee`. Lose both and the archive
//! is unreadable: that is the promise of the recovery file.

use age::secrecy::ExposeSecret;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

use crate::model::KeyRing;
use crate::secret;

pub const RECOVERY_FILE_NAME: &str = "cleRecuperation.crbee";

const RECOVERY_FORMAT: &str = "postecole-recovery-key";

const RECOVERY_VERSION: u32 = 1;

/// The secret half, unwrapped for the length of one call.
pub struct Unlocked(pub(super) age::x25519::Identity);

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
}
