//! Reading an archived message for a person: headers decoded (RFC 2047), the text part in
//! clear, attachments named with their size and saved on request, instead of megabytes of
//! base64. Enough MIME for what postecoled writes (lettre's multipart messages).

use base64::Engine;

pub struct Part {
    pub content_type: String,
    pub filename: Option<String>,
    pub body: Vec<u8>,
}

pub struct Message {
    /// Header name and decoded value, in order.
    pub headers: Vec<(String, String)>,
    /// The readable text: the text/plain parts (or the HTML when there is no plain text).
    pub text: String,
    pub attachments: Vec<Part>,
}

fn split_head(raw: &[u8]) -> (&[u8], &[u8]) {
    for (sep, len) in [(&b"\r\n\r\n"[..], 4), (&b"\n\n"[..], 2)] {
        if let Some(at) = raw.windows(len).position(|w| w == sep) {
            return (&raw[..at], &raw[at + len..]);
        }
    }
    (raw, &[])
}

/// Unfolded header lines (name, raw value).
fn header_lines(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim_start());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

fn charset_decode(bytes: &[u8], charset: &str) -> String {
    match encoding_rs::Encoding::for_label(charset.trim().as_bytes()) {
        Some(encoding) => encoding.decode(bytes).0.into_owned(),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// `=?utf-8?b?…?=` and `=?utf-8?q?…?=` words, with the blanks between two of them dropped.
pub fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut pending_blank = String::new();
    let mut last_was_word = false;
    while !rest.is_empty() {
        let word = rest.strip_prefix("=?").and_then(|inner| {
            let (charset, inner) = inner.split_once('?')?;
            let (enc, inner) = inner.split_once('?')?;
            let end = inner.find("?=")?;
            let data = &inner[..end];
            let bytes = match enc.to_ascii_lowercase().as_str() {
                "b" => base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .ok()?,
                "q" => quoted_printable::decode(
                    data.replace('_', " "),
                    quoted_printable::ParseMode::Robust,
                )
                .ok()?,
                _ => return None,
            };
            let used = 2 + charset.len() + 1 + enc.len() + 1 + end + 2;
            Some((charset_decode(&bytes, charset), used))
        });
        match word {
            Some((decoded, used)) => {
                if !last_was_word {
                    out.push_str(&pending_blank);
                }
                pending_blank.clear();
                out.push_str(&decoded);
                last_was_word = true;
                rest = &rest[used..];
            }
            None => {
                let c = rest.chars().next().unwrap_or(' ');
                if c.is_whitespace() {
                    pending_blank.push(c);
                } else {
                    out.push_str(&pending_blank);
                    pending_blank.clear();
                    out.push(c);
                    last_was_word = false;
                }
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out.push_str(&pending_blank);
    out
}

/// `text/plain; charset="utf-8"` → ("text/plain", [("charset", "utf-8")]).
fn parameters(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = value.split(';');
    let main = pieces
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let params = pieces
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_owned(),
            ))
        })
        .collect();
    (main, params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn percent_decode(encoded: &str, out: &mut Vec<u8>) {
    let raw = encoded.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && let Some(Ok(b)) = encoded.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
}

/// A parameter as RFC 2231 allows it: `filename*=utf-8''%C3%A9t%C3%A9.pdf`, or cut in
/// numbered pieces (`filename*0*=utf-8''…; filename*1*=…`, `filename*0="…"`), as lettre
/// writes long or non-ASCII names; else plain `filename="…"`, possibly RFC 2047.
fn extended(params: &[(String, String)], key: &str) -> Option<String> {
    let prefix = format!("{key}*");
    let mut pieces: Vec<(u32, bool, &str)> = params
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(&prefix)?;
            if rest.is_empty() {
                return Some((0, true, v.as_str()));
            }
            let (number, encoded) = match rest.strip_suffix('*') {
                Some(n) => (n, true),
                None => (rest, false),
            };
            Some((number.parse().ok()?, encoded, v.as_str()))
        })
        .collect();
    if pieces.is_empty() {
        return param(params, key).map(decode_words);
    }
    pieces.sort_by_key(|(n, _, _)| *n);
    let mut charset = "utf-8";
    let mut bytes = Vec::new();
    for (i, (_, encoded, value)) in pieces.iter().enumerate() {
        if !encoded {
            bytes.extend_from_slice(value.as_bytes());
            continue;
        }
        let mut value = *value;
        if i == 0
            && let Some((cs, rest)) = value.split_once('\'')
            && let Some((_, rest)) = rest.split_once('\'')
        {
            charset = cs;
            value = rest;
        }
        percent_decode(value, &mut bytes);
    }
    Some(charset_decode(&bytes, charset))
}

fn filename(params: &[(String, String)]) -> Option<String> {
    extended(params, "filename").or_else(|| extended(params, "name"))
}

fn transfer_decode(body: &[u8], encoding: &str) -> Vec<u8> {
    match encoding.trim().to_ascii_lowercase().as_str() {
        "base64" => {
            let compact: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap_or_else(|_| body.to_vec())
        }
        "quoted-printable" => quoted_printable::decode(body, quoted_printable::ParseMode::Robust)
            .unwrap_or_else(|_| body.to_vec()),
        _ => body.to_vec(),
    }
}

fn walk(raw: &[u8], texts: &mut Vec<(bool, String)>, attachments: &mut Vec<Part>) {
    let (head, body) = split_head(raw);
    let headers = header_lines(head);
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let (content_type, params) = parameters(get("Content-Type").unwrap_or("text/plain"));
    if content_type.starts_with("multipart/") {
        let Some(boundary) = param(&params, "boundary") else {
            return;
        };
        let delimiter = format!("--{boundary}");
        let text = body;
        let mut starts = Vec::new();
        let mut at = 0;
        while let Some(found) = text[at..]
            .windows(delimiter.len())
            .position(|w| w == delimiter.as_bytes())
        {
            starts.push(at + found);
            at += found + delimiter.len();
        }
        for pair in starts.windows(2) {
            let mut part = &text[pair[0] + delimiter.len()..pair[1]];
            if part.starts_with(b"--") {
                break;
            }
            part = part.strip_prefix(b"\r\n").unwrap_or(part);
            part = part.strip_prefix(b"\n").unwrap_or(part);
            part = part.strip_suffix(b"\r\n").unwrap_or(part);
            part = part.strip_suffix(b"\n").unwrap_or(part);
            walk(part, texts, attachments);
        }
        return;
    }
    let decoded = transfer_decode(body, get("Content-Transfer-Encoding").unwrap_or("8bit"));
    let (disposition, disposition_params) = parameters(get("Content-Disposition").unwrap_or(""));
    let name = filename(&disposition_params).or_else(|| filename(&params));
    let is_text = content_type == "text/plain" || content_type == "text/html";
    if is_text && disposition != "attachment" {
        let charset = param(&params, "charset").unwrap_or("utf-8");
        texts.push((
            content_type == "text/plain",
            charset_decode(&decoded, charset),
        ));
    } else {
        attachments.push(Part {
            content_type,
            filename: name,
            body: decoded,
        });
    }
}

pub fn parse(raw: &[u8]) -> Message {
    let (head, _) = split_head(raw);
    let headers = header_lines(head)
        .into_iter()
        .map(|(k, v)| {
            let v = decode_words(&v);
            (k, v)
        })
        .collect();
    let mut texts = Vec::new();
    let mut attachments = Vec::new();
    walk(raw, &mut texts, &mut attachments);
    let plain: Vec<&str> = texts
        .iter()
        .filter(|(plain, _)| *plain)
        .map(|(_, t)| t.as_str())
        .collect();
    let text = if plain.is_empty() {
        texts
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        plain.join("\n")
    };
    Message {
        headers,
        text: text.replace("\r\n", "\n"),
        attachments,
    }
}

/// A file name safe to create in a folder: its last component, never `..` or empty.
pub fn safe_name(name: Option<&str>, index: usize) -> String {
    let base = name
        .and_then(|n| n.rsplit(['/', '\\']).next())
        .map(str::trim)
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .map(|n| n.chars().filter(|c| !c.is_control()).collect::<String>());
    base.unwrap_or_else(|| format!("attachment-{}", index + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_lettre_writes() {
        let raw = "From: =?utf-8?b?U2VjcsOpdGFyaWF0?= <secretariat@ecole.fr>\r\n\
Subject: =?utf-8?q?Bilan_de_L=C3=A9a?= =?utf-8?q?_=E2=80=94_1er?=\r\n\
Content-Type: multipart/mixed;\r\n boundary=\"XyZ\"\r\n\r\n\
--XyZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Bonjour, le bilan de L=C3=A9a est joint.\r\n\
--XyZ\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"bilan.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0x\r\nLjQ=\r\n--XyZ--\r\n";
        let m = parse(raw.as_bytes());
        assert_eq!(m.headers[0].1, "Secrétariat <secretariat@ecole.fr>");
        assert_eq!(m.headers[1].1, "Bilan de Léa — 1er");
        assert_eq!(m.text, "Bonjour, le bilan de Léa est joint.");
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].filename.as_deref(), Some("bilan.pdf"));
        assert_eq!(m.attachments[0].body, b"%PDF-1.4");
        assert_eq!(safe_name(Some("../../etc/passwd"), 0), "passwd");
        let (_, params) =
            parameters("attachment; filename*0*=utf-8''bilan-l%C3%A9a; filename*1*=%20T1.pdf");
        assert_eq!(filename(&params).as_deref(), Some("bilan-léa T1.pdf"));
        let (_, params) = parameters("attachment; filename*0=\"a-long-\"; filename*1=\"name.pdf\"");
        assert_eq!(filename(&params).as_deref(), Some("a-long-name.pdf"));
        assert_eq!(safe_name(Some(".."), 2), "attachment-3");
    }
}
