//! A message as a script writes it (headers, MIME, transfer encodings, charsets) turned into
//! the request `mailctl send` would make: recipients, subject, text, HTML and attachments. The
//! daemon builds the message anew from it and checks every part, as for any other client.

use std::borrow::Cow;
use std::collections::HashSet;

use mail_parser::{Address, MessageParser, MimeHeaders, PartType};

/// The message's contents, decoded.
#[derive(Debug, Default)]
pub struct Draft {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// File name, content type, contents.
    pub attachments: Vec<(String, String, Vec<u8>)>,
}

/// The message's bytes: all of standard input, or without `-i` up to a line holding a single
/// dot (the rest is not read, as sendmail does).
pub fn read(input: &mut impl std::io::BufRead, dot_ends: bool) -> std::io::Result<Vec<u8>> {
    // Room for a typical message at once: growing from nothing costs a read per doubling.
    let mut bytes = Vec::with_capacity(64 * 1024);
    if !dot_ends {
        input.read_to_end(&mut bytes)?;
        return Ok(bytes);
    }
    loop {
        let start = bytes.len();
        if input.read_until(b'\n', &mut bytes)? == 0 {
            return Ok(bytes);
        }
        if matches!(&bytes[start..], b".\n" | b".\r\n" | b".") {
            bytes.truncate(start);
            return Ok(bytes);
        }
    }
}

/// Plain addresses of one header (display names and groups dropped: the daemon writes the
/// headers itself).
fn addresses(header: Option<&Address>) -> Vec<String> {
    header
        .map(|a| {
            a.iter()
                .filter_map(|a| a.address.as_deref())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Addresses given as arguments: several may share one, separated by commas, each bare or as
/// `Name <address>`.
fn argument_addresses(args: &[String]) -> Vec<String> {
    args.iter()
        .flat_map(|a| a.split(','))
        .map(|a| {
            let a = a.trim();
            match (a.rfind('<'), a.rfind('>')) {
                (Some(open), Some(close)) if open < close => a[open + 1..close].trim(),
                _ => a,
            }
        })
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The part's contents as text, when it is the kind asked for.
fn text_of<'a>(part: &'a PartType, html: bool) -> Option<&'a Cow<'a, str>> {
    match part {
        PartType::Text(t) if !html => Some(t),
        PartType::Html(h) if html => Some(h),
        _ => None,
    }
}

/// A file name the daemon takes: one line, no directory, never empty.
fn file_name(given: Option<&str>, n: usize) -> String {
    let base = given
        .map(|g| g.rsplit(['/', '\\']).next().unwrap_or(g))
        .map(|g| g.chars().filter(|c| !c.is_control()).collect::<String>())
        .map(|g| g.trim().to_owned())
        .filter(|g| !g.is_empty() && g != "." && g != "..");
    base.unwrap_or_else(|| format!("attachment-{n}"))
}

/// The message decoded, its recipients chosen as sendmail would: with `-t`, those of its To,
/// Cc and Bcc headers plus the arguments; without, the arguments alone.
///
/// Each recipient appears where the message shows it: an argument that is in its To or Cc
/// stays there, any other gets the message without being shown (as an envelope recipient
/// does). A message with no To nor Cc shows its recipients in To, since one with no visible
/// recipient at all is taken for spam.
pub fn draft(raw: &[u8], from_headers: bool, args: &[String]) -> Draft {
    let Some(message) = MessageParser::default().parse(raw) else {
        return Draft {
            to: argument_addresses(args),
            ..Draft::default()
        };
    };
    let shown_to = addresses(message.to());
    let shown_cc = addresses(message.cc());
    let mut wanted = argument_addresses(args);
    if from_headers {
        wanted.extend(shown_to.iter().cloned());
        wanted.extend(shown_cc.iter().cloned());
        wanted.extend(addresses(message.bcc()));
    }
    let mut draft = Draft::default();
    let mut seen = HashSet::new();
    let nobody_shown = shown_to.is_empty() && shown_cc.is_empty();
    for address in wanted {
        if !seen.insert(address.to_ascii_lowercase()) {
            continue;
        }
        let is = |list: &[String]| list.iter().any(|a| a.eq_ignore_ascii_case(&address));
        if nobody_shown || is(&shown_to) {
            draft.to.push(address);
        } else if is(&shown_cc) {
            draft.cc.push(address);
        } else {
            draft.bcc.push(address);
        }
    }
    draft.subject = message.subject().unwrap_or_default().to_owned();

    let mut body_parts = HashSet::new();
    let mut texts = Vec::new();
    for &id in &message.text_body {
        if let Some(t) = message.part(id).and_then(|p| text_of(&p.body, false)) {
            texts.push(t.as_ref());
            body_parts.insert(id);
        }
    }
    let mut htmls = Vec::new();
    for &id in &message.html_body {
        if let Some(h) = message.part(id).and_then(|p| text_of(&p.body, true)) {
            htmls.push(h.as_ref());
            body_parts.insert(id);
        }
    }
    draft.text = if texts.is_empty() {
        // Only HTML: its text, as mail readers show it without HTML.
        message.body_text(0).unwrap_or_default().into_owned()
    } else {
        texts.join("\n")
    };
    draft.html = (!htmls.is_empty()).then(|| htmls.join("\n"));

    for (n, &id) in message.attachments.iter().enumerate() {
        if body_parts.contains(&id) {
            continue;
        }
        let Some(part) = message.part(id) else {
            continue;
        };
        let content_type = part
            .content_type()
            .map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_owned(),
            })
            .filter(|ct| ct.contains('/') && !ct.chars().any(char::is_control))
            .unwrap_or_else(|| {
                if part.is_message() {
                    "message/rfc822".into()
                } else {
                    "application/octet-stream".into()
                }
            });
        draft.attachments.push((
            file_name(part.attachment_name(), n + 1),
            content_type,
            part.contents().to_vec(),
        ));
    }
    draft
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_lone_dot_ends_the_message_only_without_i() {
        let input = b"Subject: x\n\nline\n.\nafter\n";
        let cut = read(&mut &input[..], true).unwrap();
        assert_eq!(cut, b"Subject: x\n\nline\n");
        let whole = read(&mut &input[..], false).unwrap();
        assert_eq!(whole, input);
        let crlf = read(&mut &b"a\r\n.\r\nb"[..], true).unwrap();
        assert_eq!(crlf, b"a\r\n");
        let dots = read(&mut &b"..\n. \nx"[..], true).unwrap();
        assert_eq!(dots, b"..\n. \nx", "only a dot alone on its line");
    }

    #[test]
    fn recipients_as_sendmail_chooses_them() {
        let raw = b"To: Famille <f@example.org>, g@example.org\nCc: c@example.org\n\
                    Bcc: cachee@example.org\nSubject: s\n\nbody\n";
        let d = draft(raw, true, &args(&["extra@example.org"]));
        assert_eq!(d.to, ["f@example.org", "g@example.org"]);
        assert_eq!(d.cc, ["c@example.org"]);
        assert_eq!(d.bcc, ["extra@example.org", "cachee@example.org"]);
        // Without -t: only the arguments, each where the headers show it.
        let d = draft(raw, false, &args(&["G@example.org, autre <x@example.org>"]));
        assert_eq!(d.to, ["G@example.org"]);
        assert!(d.cc.is_empty());
        assert_eq!(d.bcc, ["x@example.org"]);
        let d = draft(b"Subject: s\n\nb\n", false, &args(&["a@example.org"]));
        assert_eq!(d.to, ["a@example.org"], "no header shows anyone: To");
        let d = draft(b"Subject: s\n\nb\n", true, &[]);
        assert!(d.to.is_empty() && d.cc.is_empty() && d.bcc.is_empty());
    }

    #[test]
    fn subject_and_text_decoded_from_their_encodings() {
        let raw = b"To: a@example.org\nSubject: =?ISO-8859-1?Q?R=E9union_=E0_18_h?=\n\
                    MIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\n\
                    Content-Transfer-Encoding: quoted-printable\n\nLa r=E9union est =E0 18 h.=\n continue\n";
        let d = draft(raw, true, &[]);
        assert_eq!(d.subject, "Réunion à 18 h");
        assert_eq!(d.text.trim_end(), "La réunion est à 18 h. continue");
        assert!(d.html.is_none() && d.attachments.is_empty());
    }

    #[test]
    fn html_alternative_and_a_pdf_attachment() {
        let raw = concat!(
            "To: a@example.org\nSubject: Bilan\nMIME-Version: 1.0\n",
            "Content-Type: multipart/mixed; boundary=\"m\"\n\n",
            "--m\nContent-Type: multipart/alternative; boundary=\"a\"\n\n",
            "--a\nContent-Type: text/plain; charset=utf-8\n\nBonjour\n",
            "--a\nContent-Type: text/html; charset=utf-8\n\n<p>Bonjour</p>\n",
            "--a--\n",
            "--m\nContent-Type: application/pdf; name=\"x.pdf\"\n",
            "Content-Disposition: attachment; filename=\"../bilan.pdf\"\n",
            "Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n",
            "--m--\n"
        );
        let d = draft(raw.as_bytes(), true, &[]);
        assert_eq!(d.text.trim_end(), "Bonjour");
        assert_eq!(d.html.as_deref().map(str::trim_end), Some("<p>Bonjour</p>"));
        assert_eq!(d.attachments.len(), 1);
        let (name, ct, bytes) = &d.attachments[0];
        assert_eq!(name, "bilan.pdf", "no directory in a file name");
        assert_eq!(ct, "application/pdf");
        assert_eq!(bytes, b"%PDF-1.4\n");
    }

    #[test]
    fn an_encoded_line_break_reaches_the_daemon_as_it_is() {
        // "x\r\nBcc: espion@example.org" in an encoded word: decoded, not cleaned, so that the
        // daemon refuses it as it refuses it from mailctl.
        let raw =
            b"To: a@example.org\nSubject: =?utf-8?b?eA0KQmNjOiBlc3Bpb25AZXhhbXBsZS5vcmc=?=\n\nb\n";
        let d = draft(raw, true, &[]);
        assert!(d.subject.contains("\r\n"), "{:?}", d.subject);
    }
}
