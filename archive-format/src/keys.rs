//! The account's private age key, wrapped (ChaCha20-Poly1305) under the 32-byte key of its
//! recovery file; and the `key` file that keeps this wrapped key inside the account's archive
//! directory, so that the archive outlives the daemon's database.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use age::secrecy::ExposeSecret;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

use crate::{hex, unhex};

pub const KEY_FILE_NAME: &str = "key";
const KEY_FORMAT: &str = "postecole-archive-key";
const KEY_VERSION: u32 = 1;

/// The secret half, unwrapped for the length of one call.
pub struct Unlocked(pub age::x25519::Identity);

impl Unlocked {
    pub fn to_secret_text(&self) -> String {
        self.0.to_string().expose_secret().to_owned()
    }
}

/// Seals `plain` under `key` with `nonce`, both hex-encoded in what it returns.
pub fn seal(key: &[u8; 32], nonce: [u8; 12], plain: &[u8]) -> (String, String) {
    let sealed = ChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(Nonce::from_slice(&nonce), plain)
        .expect("ChaCha20-Poly1305 encrypts any length we use");
    (hex(&nonce), hex(&sealed))
}

/// The private key wrapped under `key`, if `key` is the one it was wrapped under.
pub fn open(key: &[u8; 32], nonce: &str, sealed: &str) -> Option<Unlocked> {
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

/// `archive/<account>/key`: what the recovery file unwraps, and nothing it does not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyFile {
    pub format: String,
    pub version: u32,
    pub account: String,
    pub address: String,
    /// age recipient (`age1…`) the account's mail is sealed to.
    pub recipient: String,
    pub recovery_nonce: String,
    pub recovery_wrapped: String,
}

impl KeyFile {
    pub fn new(
        account: &str,
        address: &str,
        recipient: &str,
        recovery_nonce: &str,
        recovery_wrapped: &str,
    ) -> KeyFile {
        KeyFile {
            format: KEY_FORMAT.into(),
            version: KEY_VERSION,
            account: account.into(),
            address: address.into(),
            recipient: recipient.into(),
            recovery_nonce: recovery_nonce.into(),
            recovery_wrapped: recovery_wrapped.into(),
        }
    }

    pub fn unlock(&self, recovery: &[u8; 32]) -> Option<Unlocked> {
        open(recovery, &self.recovery_nonce, &self.recovery_wrapped)
    }

    /// Reads `dir/key`, or says what is wrong with it.
    pub fn read(dir: &Path) -> Result<KeyFile, String> {
        let path = dir.join(KEY_FILE_NAME);
        let text =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file: KeyFile = serde_json::from_slice(&text)
            .map_err(|e| format!("{} is damaged: {e}", path.display()))?;
        if file.format != KEY_FORMAT || file.version != KEY_VERSION {
            return Err(format!(
                "{} is {} version {}; this postecole reads {KEY_FORMAT} version {KEY_VERSION}",
                path.display(),
                file.format,
                file.version
            ));
        }
        Ok(file)
    }

    /// Replaces `dir/key` atomically: written beside it, synced, renamed over it, and the
    /// directory synced, so that a crash leaves the old file or the new one, never half.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{KEY_FILE_NAME}.tmp"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(self).expect("key files serialise"))?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(KEY_FILE_NAME))?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_opens_only_with_its_recovery_key() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let recovery = [7u8; 32];
        let (nonce, wrapped) = seal(
            &recovery,
            [1; 12],
            identity.to_string().expose_secret().as_bytes(),
        );
        let file = KeyFile::new(
            "abcd2345",
            "a@b.fr",
            &identity.to_public().to_string(),
            &nonce,
            &wrapped,
        );
        file.write(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(KEY_FILE_NAME)).unwrap();
        assert!(!text.contains("AGE-SECRET-KEY"), "nothing in clear");
        let back = KeyFile::read(dir.path()).unwrap();
        assert_eq!(back, file);
        let key = back.unlock(&recovery).unwrap();
        assert_eq!(key.0.to_public().to_string(), file.recipient);
        assert!(back.unlock(&[8; 32]).is_none());
        std::fs::write(dir.path().join(KEY_FILE_NAME), "{").unwrap();
        assert!(KeyFile::read(dir.path()).unwrap_err().contains("damaged"));
    }
}
