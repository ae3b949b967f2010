//! Each account has an age X25519 key pair. The public half is kept in clear, so the daemon
//! archives without any secret. The private half is kept only wrapped (ChaCha20-Poly1305),
//! once under a key derived from the secret answer (Argon2id, its own salt) and once under a
//! random recovery key that exists only in `cleRecuperation.crbee`. Lose both and the archive
//! is unreadable: that is the promise of the recovery file. The recovery-wrapped half is also
//! kept in the archive directory (`postecole_archive::KeyFile`), so that the archive and the
//! recovery file are enough without the database.

use postecole_archive::keys::{open, seal};
use postecole_archive::{KeyFile, Unlocked, hex, unhex};

use crate::model::KeyRing;
use crate::secret;

impl KeyRing {
    /// A new key pair, wrapped under `answer` (normalised) and under a fresh recovery key,
    /// which is returned and kept nowhere.
    pub fn create(answer: &str) -> (KeyRing, [u8; 32]) {
        let identity = age::x25519::Identity::generate();
        let recovery: [u8; 32] = secret::random_bytes();
        let key = Unlocked(identity);
        let (recovery_nonce, recovery_wrapped) = seal(
            &recovery,
            secret::random_bytes(),
            key.to_secret_text().as_bytes(),
        );
        let mut ring = KeyRing {
            recipient: key.0.to_public().to_string(),
            answer_salt: String::new(),
            answer_nonce: String::new(),
            answer_wrapped: String::new(),
            recovery_nonce,
            recovery_wrapped,
        };
        ring.wrap_answer(&key, answer);
        (ring, recovery)
    }

    /// Wraps the private key under a fresh recovery key, returned and kept nowhere: the
    /// recovery file issued before no longer opens it.
    pub fn wrap_recovery(&mut self, key: &Unlocked) -> [u8; 32] {
        let recovery: [u8; 32] = secret::random_bytes();
        let (nonce, wrapped) = seal(
            &recovery,
            secret::random_bytes(),
            key.to_secret_text().as_bytes(),
        );
        self.recovery_nonce = nonce;
        self.recovery_wrapped = wrapped;
        recovery
    }

    /// Wraps the private key under a new answer; the archive itself is not touched.
    pub fn wrap_answer(&mut self, key: &Unlocked, answer: &str) {
        let salt: [u8; 16] = secret::random_bytes();
        let wrapping = secret::derive_key(answer, &salt);
        let (nonce, wrapped) = seal(
            &wrapping,
            secret::random_bytes(),
            key.to_secret_text().as_bytes(),
        );
        self.answer_salt = hex(&salt);
        self.answer_nonce = nonce;
        self.answer_wrapped = wrapped;
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

    /// What the recovery file unwraps, for the account's archive directory.
    pub fn key_file(&self, account: &str, address: &str) -> KeyFile {
        KeyFile::new(
            account,
            address,
            &self.recipient,
            &self.recovery_nonce,
            &self.recovery_wrapped,
        )
    }
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
}
