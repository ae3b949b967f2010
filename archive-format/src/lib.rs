//! The sealed archive of sent mail as it lies on disk, and the recovery file that opens it:
//! read by postecoled, and by `mailctl archive open` with no daemon and no database, so that
//! the archive directory plus `cleRecuperation.crbee` are enough to read an account's mail.
//!
//! An account's directory `archive/<account>/` holds:
//! - `NNNNNN.log`: age-encrypted groups appended one after the other (see `log`);
//! - `key`: the account's public recipient and its private key wrapped under the recovery key
//!   (see `keys`), never anything in clear.
#![forbid(unsafe_code)]

pub mod keys;
pub mod log;
pub mod recovery;
mod summary;

pub use keys::{KEY_FILE_NAME, KeyFile, Unlocked};
pub use recovery::{RECOVERY_FILE_NAME, parse_recovery_file, recovery_file};
pub use summary::summary;

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
