//! Checks on what callers send before it can reach a mail header or the store.

/// RFC 5321's limit on a forward path.
pub const MAX_ADDRESS_LEN: usize = 254;
pub const MAX_LABEL_CHARS: usize = 100;
pub const MAX_QUESTION_CHARS: usize = 200;

/// A single plain e-mail address (`user@example.org`, no display name); returns it trimmed.
pub fn address(input: &str) -> Result<String, String> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err("the e-mail address is empty".into());
    }
    if has_control(trimmed) {
        return Err("the e-mail address contains a line break or control character".into());
    }
    if trimmed.len() > MAX_ADDRESS_LEN {
        return Err(format!(
            "the e-mail address is longer than {MAX_ADDRESS_LEN} characters"
        ));
    }
    match trimmed.parse::<lettre::Address>() {
        Ok(a) if a.domain().contains('.') => Ok(trimmed.to_owned()),
        _ => Err(format!(
            "`{trimmed}` is not a valid e-mail address (expected name@domain.fr)"
        )),
    }
}

/// A one-line human text that may end up in a header (label, question): no CR/LF, no NUL,
/// no other control characters, not empty, not too long.
pub fn one_line(what: &str, input: &str, max_chars: usize) -> Result<String, String> {
    if has_control(input) {
        return Err(format!(
            "the {what} contains a line break or control character"
        ));
    }
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if trimmed.chars().count() > max_chars {
        return Err(format!("the {what} is longer than {max_chars} characters"));
    }
    Ok(trimmed.to_owned())
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            address(" secretariat@ecole.fr ").unwrap(),
            "secretariat@ecole.fr"
        );
        for bad in [
            "",
            "secretariat",
            "@ecole.fr",
            "a@b",
            "a b@ecole.fr",
            "x@ecole.fr\r\nBcc: evil@example.org",
            "Secrétariat <secretariat@ecole.fr>",
        ] {
            assert!(address(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@ecole.fr", "a".repeat(250));
        assert!(address(&long).unwrap_err().contains("254"));
    }

    #[test]
    fn one_line_texts() {
        assert_eq!(
            one_line("label", "  Secrétariat ", 100).unwrap(),
            "Secrétariat"
        );
        assert!(
            one_line("label", "a\nb", 100)
                .unwrap_err()
                .contains("line break")
        );
        assert!(one_line("label", "a\0b", 100).is_err());
        assert!(one_line("label", "   ", 100).unwrap_err().contains("empty"));
        assert!(
            one_line("label", &"é".repeat(101), 100)
                .unwrap_err()
                .contains("100")
        );
    }
}
