//! `cleRecuperation.crbee`: the recovery key, mailed to the account's address once, kept
//! nowhere else.

use sha2::{Digest, Sha256};

use crate::{hex, unhex};

pub const RECOVERY_FILE_NAME: &str = "cleRecuperation.crbee";

const RECOVERY_FORMAT: &str = "postecole-recovery-key";

const RECOVERY_VERSION: u32 = 1;

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
         # Réponse oubliée : mailctl account recover {account} --key {RECOVERY_FILE_NAME} --question \"…\"\n\
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
    fn recovery_file_round_trip_and_damage() {
        let key: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
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
