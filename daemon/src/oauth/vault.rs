//! The relay's tokens at rest: one file in the state directory, 0600, encrypted
//! (ChaCha20-Poly1305) under a key that comes from outside the state directory (a systemd
//! credential), so that a copy of the disk's state carries no working token.
//!
//! Every write goes to a new file that is synced and renamed over the old one, then the
//! directory is synced: a refresh token that the provider has just rotated is on disk, whole,
//! before it is ever used, and a crash leaves either the old file or the new one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const MAGIC: &[u8] = b"postecole-relay-token-1\n";
pub const FILE_NAME: &str = "relay-oauth2.token";

/// What is kept: the tokens and whether a new login is needed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Saved {
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    /// Seconds since the epoch.
    pub expires_at: u64,
    /// When the refresh token was last obtained or used (it lapses after ~90 idle days).
    pub refreshed_at: u64,
    /// Set when the provider refused the refresh token: the provider's error code, no secret.
    pub needs_login: Option<String>,
}

pub struct Vault {
    path: PathBuf,
    cipher: ChaCha20Poly1305,
}

impl Vault {
    pub fn new(state_dir: &Path, key_material: &[u8]) -> Vault {
        let mut hash = Sha256::new();
        hash.update(b"postecole relay token key\0");
        hash.update(key_material);
        let key: [u8; 32] = hash.finalize().into();
        Vault {
            path: state_dir.join(FILE_NAME),
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// The saved state; nothing saved yet is the default (never logged in).
    pub fn load(&self) -> Result<Saved, String> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
        };
        let rest = bytes
            .strip_prefix(MAGIC)
            .filter(|r| r.len() > 12)
            .ok_or_else(|| format!("{} is not a token file", self.path.display()))?;
        let (nonce, sealed) = rest.split_at(12);
        let clear = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| {
                format!(
                    "{} cannot be decrypted with this key (another machine's, or the key changed): a new `mailctl relay login` is needed",
                    self.path.display()
                )
            })?;
        serde_json::from_slice(&clear).map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Replaces the file atomically and durably (blocking: run it off the async workers).
    pub fn save(&self, saved: &Saved) -> std::io::Result<()> {
        let clear = serde_json::to_vec(saved).map_err(std::io::Error::other)?;
        let nonce: [u8; 12] = crate::secret::random_bytes();
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), clear.as_slice())
            .map_err(|_| std::io::Error::other("encryption failed"))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
        {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(MAGIC)?;
            file.write_all(&nonce)?;
            file.write_all(&sealed)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::new(dir.path(), &[7u8; 32]);
        assert_eq!(vault.load().unwrap(), Saved::default());
        let saved = Saved {
            access_token: Some("access-secret".into()),
            refresh_token: Some("refresh-secret".into()),
            expires_at: 42,
            refreshed_at: 41,
            needs_login: None,
        };
        vault.save(&saved).unwrap();
        assert_eq!(vault.load().unwrap(), saved);
        let raw = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        assert!(!raw.windows(13).any(|w| w == b"access-secret"));
        assert!(!raw.windows(14).any(|w| w == b"refresh-secret"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = Vault::new(dir.path(), &[8u8; 32]);
        assert!(other.load().unwrap_err().contains("relay login"));
    }
}
