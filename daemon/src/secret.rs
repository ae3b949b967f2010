//! One-time codes and secret answers: how they are made, normalised and hashed.
//! Nothing here keeps or logs a clear value.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;
use rand::RngCore;
use rand::rngs::OsRng;
use unicode_normalization::UnicodeNormalization;

pub const CODE_DIGITS: usize = 6;
pub const MIN_ANSWER_CHARS: usize = 6;
pub const MAX_ANSWER_CHARS: usize = 200;

/// OWASP's Argon2id floor (m=19 MiB, t=2, p=1), which is also the crate's default.
fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// A fresh code from the operating system's generator, zero-padded to `CODE_DIGITS`.
pub fn new_code() -> String {
    let n: u32 = OsRng.gen_range(0..10u32.pow(CODE_DIGITS as u32));
    format!("{n:0width$}", width = CODE_DIGITS)
}

/// What the user typed, reduced to its digits (people paste "123 456" or "123-456").
pub fn normalise_code(typed: &str) -> Option<String> {
    let digits: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    (digits.len() == CODE_DIGITS && digits.chars().all(|c| c.is_ascii_digit())).then_some(digits)
}

/// Bytes from the operating system's generator (salts, nonces, keys).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// An identifier people read aloud and type: no 0/o, 1/l/i.
///
/// The operating system's bytes are drawn a buffer at a time (one `getrandom` per id, not one
/// per character: every queued message takes one), and a byte past the last whole multiple
/// of the alphabet's length is dropped, so that every character stays equally likely.
pub fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let usable = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut id = String::with_capacity(len);
    let mut bytes = [0u8; 32];
    while id.len() < len {
        OsRng.fill_bytes(&mut bytes);
        for &b in bytes.iter().filter(|&&b| b < usable) {
            if id.len() == len {
                break;
            }
            id.push(ALPHABET[b as usize % ALPHABET.len()] as char);
        }
    }
    id
}

/// Trim, Unicode NFKC, case-fold and collapse inner blanks, so that "  Écrou " and "écrou"
/// are the same answer.
pub fn normalise_answer(answer: &str) -> String {
    let nfkc: String = answer.nfkc().collect();
    let folded = nfkc.to_lowercase();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) of a normalised secret.
pub fn hash(secret: &str) -> String {
    let bytes: [u8; 16] = random_bytes();
    let salt = SaltString::encode_b64(&bytes).expect("16 bytes is a valid salt length");
    argon2()
        .hash_password(secret.as_bytes(), &salt)
        .expect("Argon2 with default parameters accepts any input")
        .to_string()
}

/// A 32-byte key derived from a normalised answer with Argon2id and its own salt; used to
/// wrap the archive key, never stored.
pub fn derive_key(secret: &str, salt: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 32];
    argon2()
        .hash_password_into(secret.as_bytes(), salt, &mut key)
        .expect("Argon2 accepts a 16-byte salt and a 32-byte output");
    key
}

/// Constant-time check of a normalised secret against a stored PHC string.
pub fn verify(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2().verify_password(secret.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_length_and_only_unambiguous_characters() {
        let mut seen = std::collections::HashSet::new();
        for len in [1, 8, 12, 40] {
            for _ in 0..200 {
                let id = random_id(len);
                assert_eq!(id.len(), len);
                assert!(id.bytes().all(|b| !b"0o1li".contains(&b)), "{id}");
                seen.extend(id.chars());
            }
        }
        // Every character of the alphabet turns up: no bias cuts one out.
        assert_eq!(seen.len(), 31, "{seen:?}");
    }

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: std::collections::HashSet<String> = (0..50).map(|_| new_code()).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 6 && c.chars().all(|d| d.is_ascii_digit()))
        );
        assert!(
            codes.len() > 40,
            "50 codes gave only {} distinct",
            codes.len()
        );
    }

    #[test]
    fn typed_codes_are_normalised() {
        assert_eq!(normalise_code(" 123 456 ").as_deref(), Some("123456"));
        assert_eq!(normalise_code("123-456").as_deref(), Some("123456"));
        assert_eq!(normalise_code("12345"), None);
        assert_eq!(normalise_code("12345a"), None);
        assert_eq!(normalise_code("1234567"), None);
    }

    #[test]
    fn answers_are_normalised() {
        assert_eq!(normalise_answer("  Le   Chat\tNoir "), "le chat noir");
        // NFKC: the "ﬁ" ligature and full-width letters become plain ones.
        assert_eq!(normalise_answer("ﬁlet ＡＢ"), "filet ab");
        // Composed and decomposed É compare equal after NFKC.
        assert_eq!(
            normalise_answer("E\u{301}cole"),
            normalise_answer("\u{c9}COLE")
        );
    }

    #[test]
    fn hash_is_argon2id_phc_and_verifies() {
        let phc = hash("le chat noir");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("chat"));
        assert!(verify("le chat noir", &phc));
        assert!(!verify("le chat blanc", &phc));
        assert!(!verify("le chat noir", "not a phc string"));
        assert_ne!(phc, hash("le chat noir"), "salts must differ");
    }
}
