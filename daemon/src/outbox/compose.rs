//! Turning a client's request into the exact message that will be sent: every address and
//! header checked, the size bounded while attachments are read. Pure but for reading the
//! attachment files the client passed.

use std::io::Read;

use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};

use crate::accounts::notices;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::Account;
use crate::validate;

/// More than this many recipients on one message is a mail-merge mistake: one message per
/// family is what `SendBatch` is for.
pub const MAX_RECIPIENTS: usize = 100;

pub const MAX_SUBJECT_CHARS: usize = 250;

/// A message as a client asks for it.
#[derive(Default)]
pub struct Request {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// File name, content type, and the open file the client passed.
    pub attachments: Vec<(String, String, std::fs::File)>,
}

fn addresses(what: &str, list: &[String]) -> Result<Vec<Mailbox>> {
    list.iter()
        .map(|a| {
            let a =
                validate::address(a).map_err(|m| Error::InvalidInput(format!("{what}: {m}")))?;
            Ok(Mailbox::new(
                None,
                a.parse()
                    .map_err(|e| Error::InvalidInput(format!("{what}: {e}")))?,
            ))
        })
        .collect()
}

/// The exact message that will be sent, every header checked, and its bytes (formatted once:
/// a 20 KB copy per message is not free in a batch of thousands).
pub fn build(config: &Config, account: &Account, r: Request) -> Result<(Message, Vec<u8>)> {
    let max = config.queue.max_message_bytes;
    let to = addresses("To", &r.to)?;
    let cc = addresses("Cc", &r.cc)?;
    let bcc = addresses("Bcc", &r.bcc)?;
    let count = to.len() + cc.len() + bcc.len();
    if count == 0 {
        return Err(Error::InvalidInput("the message has no recipient".into()));
    }
    if count > MAX_RECIPIENTS {
        return Err(Error::InvalidInput(format!(
            "{count} recipients: at most {MAX_RECIPIENTS} per message (send one message per family)"
        )));
    }
    let subject =
        checked_text(&r.subject, &r.text, r.html.as_deref()).map_err(Error::InvalidInput)?;
    let mut builder =
        notices::builder(config, account, &subject).map_err(|e| Error::Internal(e.to_string()))?;
    for m in to {
        builder = builder.to(m);
    }
    for m in cc {
        builder = builder.cc(m);
    }
    for m in bcc {
        builder = builder.bcc(m);
    }

    let mut total = r.text.len() as u64 + r.html.as_ref().map_or(0, |h| h.len() as u64);
    let mut attachments = Vec::new();
    for (name, content_type, file) in r.attachments {
        let name =
            validate::one_line("attachment name", &name, 200).map_err(Error::InvalidInput)?;
        if name.contains(['/', '\\']) {
            return Err(Error::InvalidInput(format!(
                "attachment name `{name}` must be a file name, not a path"
            )));
        }
        let content_type = ContentType::parse(content_type.trim()).map_err(|_| {
            Error::InvalidInput(format!(
                "attachment `{name}`: `{content_type}` is not a content type (e.g. application/pdf)"
            ))
        })?;
        // Sized once: doubling as it reads would hold half as much again, copied.
        let expected = file.metadata().map_or(0, |m| m.len()).min(max + 1);
        let mut bytes = Vec::with_capacity(expected as usize + 1);
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::InvalidInput(format!("attachment `{name}` cannot be read: {e}")))?;
        total += bytes.len() as u64;
        if total > max {
            return Err(too_large(max));
        }
        // Always base64: lettre would send an ASCII file in 7 bits as it is, and a CR or LF
        // alone in it, past SMTP's rule that they come only as CRLF, is how mail is smuggled
        // beyond the end of data.
        let body = Body::new_with_encoding(bytes, ContentTransferEncoding::Base64)
            .expect("base64 carries any bytes");
        attachments.push(Attachment::new(name).body(body, content_type));
    }

    let body = match r.html {
        None if attachments.is_empty() => {
            return check_size(
                builder.singlepart(text_part(ContentType::TEXT_PLAIN, r.text)),
                max,
            );
        }
        None => MultiPart::mixed().singlepart(text_part(ContentType::TEXT_PLAIN, r.text)),
        Some(html) => {
            let alternative = MultiPart::alternative()
                .singlepart(text_part(ContentType::TEXT_PLAIN, r.text))
                .singlepart(text_part(ContentType::TEXT_HTML, html));
            if attachments.is_empty() {
                alternative
            } else {
                MultiPart::mixed().multipart(alternative)
            }
        }
    };
    let body = attachments.into_iter().fold(body, |m, a| m.singlepart(a));
    check_size(builder.multipart(body), max)
}

/// The subject, trimmed, if it and the bodies can go into a message. A mail merge asks this of
/// every row before sending, so that a dry run refuses, and names, the rows a send would refuse.
pub fn checked_text(
    subject: &str,
    text: &str,
    html: Option<&str>,
) -> std::result::Result<String, String> {
    let subject = validate::one_line("subject", subject, MAX_SUBJECT_CHARS)?;
    if text.contains('\0') || html.is_some_and(|h| h.contains('\0')) {
        return Err("the body contains a NUL character".into());
    }
    Ok(subject)
}

/// RFC 5322 § 2.1.1: a line is at most 998 octets, its CRLF aside.
const MAX_LINE_OCTETS: usize = 998;

/// Text as it was typed, in 8 bits, as most mail programs send it: no quoted-printable to
/// inflate every accent to six bytes and to cost more CPU than the rest of a batch. The relay
/// must announce 8BITMIME (RFC 6152; every current one does), or the message fails at once
/// saying so. A line over 998 octets falls back to lettre's choice of quoted-printable or
/// base64.
///
/// Not lettre's `Body::new_with_encoding(.., EightBit)`: it refuses 8 bits for any line of 76
/// characters or more — a typed paragraph — so nearly every real letter went out in base64,
/// a third larger; it keeps a CR alone as it is; and its CRLF conversion moves the rest of
/// the text once per line.
fn text_part(content_type: ContentType, text: String) -> SinglePart {
    let (text, fits) = crlf_lines(&text);
    let body = if fits {
        Body::dangerous_pre_encoded(text.into_bytes(), ContentTransferEncoding::EightBit)
    } else {
        Body::new(text)
    };
    SinglePart::builder().header(content_type).body(body)
}

/// The text with CRLF line ends, and whether each line fits an 8-bit body (998 octets at
/// most). A CR or a LF alone ends a line too: SMTP allows them only together, and a relay
/// that reads a lone one otherwise than we do is how mail is smuggled past the end of data.
fn crlf_lines(text: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len() + text.len() / 32 + 2);
    let mut fits = true;
    let mut rest = text;
    while let Some(end) = rest.find(['\r', '\n']) {
        fits &= end <= MAX_LINE_OCTETS;
        out.push_str(&rest[..end]);
        out.push_str("\r\n");
        rest = rest[end..].strip_prefix("\r\n").unwrap_or(&rest[end + 1..]);
    }
    fits &= rest.len() <= MAX_LINE_OCTETS;
    out.push_str(rest);
    (out, fits)
}

fn check_size(
    built: std::result::Result<Message, lettre::error::Error>,
    max: u64,
) -> Result<(Message, Vec<u8>)> {
    let message = built.map_err(|e| Error::InvalidInput(e.to_string()))?;
    let bytes = fold_address_lines(message.formatted());
    if bytes.len() as u64 > max {
        return Err(too_large(max));
    }
    Ok((message, bytes))
}

/// Header lines are kept within 78 characters where they can be (RFC 5322 §2.1.1); relays
/// refuse lines over 998 (`500 Line too long`). lettre folds text headers but writes an address
/// list on one line, so 28 recipients already make a To line of thousands of characters. Folding
/// only inserts CRLF before a space that follows a comma, which unfolding takes back out: the
/// header means exactly what it meant.
fn fold_address_lines(bytes: Vec<u8>) -> Vec<u8> {
    const FOLD_AT: usize = 78;
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return bytes;
    };
    if !bytes[..end]
        .split(|&b| b == b'\n')
        .any(|line| line.len() > FOLD_AT + 1)
    {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len() + 256);
    for line in bytes[..end + 2].split_inclusive(|&b| b == b'\n') {
        if line.len() <= FOLD_AT + 2 {
            out.extend_from_slice(line);
            continue;
        }
        let mut column = 0;
        let mut last = 0;
        // Break points: the space of each ", ".
        let breaks = (1..line.len()).filter(|&i| line[i] == b' ' && line[i - 1] == b',');
        for at in breaks.chain(std::iter::once(line.len())) {
            let piece = &line[last..at];
            if column > 0 && column + piece.len() > FOLD_AT {
                out.extend_from_slice(b"\r\n");
                column = 0;
            }
            out.extend_from_slice(piece);
            column += piece.len();
            last = at;
        }
    }
    out.extend_from_slice(&bytes[end + 2..]);
    out
}

fn too_large(max: u64) -> Error {
    Error::TooLarge(format!(
        "the message is over the limit of {:.1} MB set by the administrator (max_message_bytes)",
        max as f64 / 1_000_000.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, State};

    fn account() -> Account {
        Account {
            id: "abcd2345".into(),
            kind: Kind::Establishment,
            label: "Secrétariat".into(),
            address: "secretariat@ecole.fr".into(),
            state: State::Active,
            owner: 0,
            staff: Vec::new(),
            created: 0,
            code: None,
            secret: None,
            keys: None,
            unlock_failures: 0,
            locked_until: 0,
            lock_periods: 0,
        }
    }

    fn request() -> Request {
        Request {
            to: vec!["famille@example.org".into()],
            cc: vec!["copie@example.org".into()],
            bcc: vec!["cachee@example.org".into()],
            subject: "Réunion".into(),
            text: "Bonjour, la réunion est à 18 h.".into(),
            ..Request::default()
        }
    }

    #[test]
    fn a_request_becomes_the_exact_message() {
        let (message, bytes) = build(&Config::default(), &account(), request()).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(bytes, message.formatted(), "formatted once, as sent");
        assert!(
            text.contains("From: =?utf-8?b?"),
            "the label, encoded: {text}"
        );
        assert!(text.contains("<secretariat@ecole.fr>"), "{text}");
        assert!(text.contains("To: famille@example.org\r\n"), "{text}");
        assert!(text.contains("Cc: copie@example.org\r\n"), "{text}");
        assert!(!text.contains("cachee"), "Bcc in no header: {text}");
        assert!(
            text.contains("Content-Transfer-Encoding: 8bit\r\n"),
            "{text}"
        );
        assert!(
            text.contains("la réunion est à 18 h."),
            "typed as is: {text}"
        );
        let envelope = message.envelope();
        assert_eq!(envelope.to().len(), 3, "Bcc gets it");
        assert_eq!(envelope.from().unwrap().to_string(), "secretariat@ecole.fr");
    }

    #[test]
    fn typed_paragraphs_go_in_eight_bits_up_to_the_998_octet_line() {
        let built = |text: String| {
            let r = Request { text, ..request() };
            let (_, bytes) = build(&Config::default(), &account(), r).unwrap();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        // A paragraph typed without line breaks: over 76 characters, far under 998.
        let paragraph =
            "Veuillez trouver ci-dessous le bilan détaillé de la période, matière par matière.";
        let text = built(format!("Bonjour,\n\n{paragraph}\n{paragraph}\n"));
        assert!(
            text.contains("Content-Transfer-Encoding: 8bit\r\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "\r\n\r\nBonjour,\r\n\r\n{paragraph}\r\n{paragraph}\r\n"
            )),
            "as typed, CRLF line ends: {text}"
        );
        let longest = "é".repeat(499);
        assert!(built(longest.clone()).contains("8bit"), "998 octets");
        let over = built(format!("{longest}a"));
        assert!(!over.contains("8bit"), "999 octets: {over}");
        assert!(!over.contains(&longest), "encoded: {over}");
        let alone = built("ligne\rsuite\n.\rfin".into());
        assert!(
            alone.contains("ligne\r\nsuite\r\n.\r\nfin"),
            "a CR or LF alone ends a line, never goes raw: {alone:?}"
        );
        for tricky in ["\r", "\n", "\r\r\n", "\n\r", "a\r\n\r\nb\r", "\n.\r\n"] {
            let (lines, fits) = crlf_lines(tricky);
            assert!(fits);
            let bytes = lines.as_bytes();
            for (i, b) in bytes.iter().enumerate() {
                match b {
                    b'\r' => assert_eq!(bytes.get(i + 1), Some(&b'\n'), "{tricky:?} → {lines:?}"),
                    b'\n' => assert!(i > 0 && bytes[i - 1] == b'\r', "{tricky:?} → {lines:?}"),
                    _ => {}
                }
            }
        }
        let long_and_alone = built(format!("{longest}a\r.\rfin"));
        assert!(!long_and_alone.contains("\r.\r"), "{long_and_alone:?}");
    }

    #[test]
    fn attachments_go_in_base64_whatever_their_bytes() {
        use base64::Engine;
        use std::io::{Seek, Write};
        let content = b"une\r.\r\nligne\n.\ndeux\0";
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(content).unwrap();
        file.rewind().unwrap();
        let r = Request {
            attachments: vec![("notes.txt".into(), "text/plain".into(), file)],
            ..request()
        };
        let (_, bytes) = build(&Config::default(), &account(), r).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let encoded = base64::engine::general_purpose::STANDARD.encode(content);
        assert!(text.contains(&encoded), "{text:?}");
        assert!(!text.contains("\r.\r"), "no CR alone on the wire: {text:?}");
        assert!(!text.contains('\0'), "{text:?}");
    }

    #[test]
    fn refusals_are_named_before_anything_is_built() {
        let config = Config::default();
        let refused = |r: Request| build(&config, &account(), r).unwrap_err();
        let nobody = Request {
            to: Vec::new(),
            cc: Vec::new(),
            bcc: Vec::new(),
            ..request()
        };
        assert!(matches!(refused(nobody), Error::InvalidInput(m) if m.contains("no recipient")));
        let crowd = Request {
            to: (0..=MAX_RECIPIENTS)
                .map(|i| format!("f{i}@example.org"))
                .collect(),
            ..request()
        };
        assert!(matches!(refused(crowd), Error::InvalidInput(m) if m.contains("at most 100")));
        let injected = Request {
            subject: "Réunion\r\nBcc: espion@example.org".into(),
            ..request()
        };
        assert!(matches!(refused(injected), Error::InvalidInput(m) if m.contains("subject")));
        let bad = Request {
            cc: vec!["pas une adresse".into()],
            ..request()
        };
        assert!(matches!(refused(bad), Error::InvalidInput(m) if m.starts_with("Cc: ")));

        let small = Config {
            queue: crate::config::Queue {
                max_message_bytes: 1000,
                ..Default::default()
            },
            ..Config::default()
        };
        let long = Request {
            text: "x".repeat(2000),
            ..request()
        };
        assert!(matches!(
            build(&small, &account(), long).unwrap_err(),
            Error::TooLarge(_)
        ));
    }

    fn message_to(n: usize) -> Vec<u8> {
        let mut builder = Message::builder()
            .from("secretariat@ecole.fr".parse().unwrap())
            .subject("Bilan du premier trimestre");
        for i in 0..n {
            builder = builder.to(format!("famille.numero{i}@exemple.fr").parse().unwrap());
        }
        builder
            .singlepart(text_part(ContentType::TEXT_PLAIN, "Bonjour".into()))
            .unwrap()
            .formatted()
    }

    fn headers(bytes: &[u8]) -> &str {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        std::str::from_utf8(&bytes[..end + 2]).unwrap()
    }

    #[test]
    fn a_hundred_recipients_fold_into_short_lines_that_unfold_to_the_same_header() {
        let plain = message_to(100);
        assert!(headers(&plain).lines().any(|l| l.len() > 998));
        let folded = fold_address_lines(plain.clone());
        for line in headers(&folded).split("\r\n") {
            assert!(line.len() <= 78, "{} characters: {line}", line.len());
        }
        let unfolded = String::from_utf8(folded.clone())
            .unwrap()
            .replace("\r\n ", " ");
        assert_eq!(unfolded.as_bytes(), plain.as_slice());
    }

    #[test]
    fn short_headers_and_the_body_are_left_alone() {
        let plain = message_to(2);
        assert_eq!(fold_address_lines(plain.clone()), plain);
        // A long body line is the transfer encoding's business, not a header's.
        let mut long_body = plain.clone();
        long_body.extend(std::iter::repeat_n(b'x', 500));
        assert_eq!(fold_address_lines(long_body.clone()), long_body);
    }
}
