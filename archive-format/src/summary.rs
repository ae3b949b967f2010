//! Subject and To of a message, for listings.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
