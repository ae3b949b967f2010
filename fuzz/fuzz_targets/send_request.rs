//! A message as it enters `Send`: NUL-separated To, Cc, Bcc (comma-separated each), Subject,
//! text and HTML. Either a named error or a message whose header lines all end in CRLF, stay
//! under RFC 5322's 998 characters and carry no header the caller slipped in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postecoled::outbox::{Request, build};

mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let mut list = || -> Vec<String> {
        parts
            .next()
            .unwrap_or_default()
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (to, cc, bcc) = (list(), list(), list());
    let mut parts = text.split('\0').skip(3);
    let request = Request {
        to,
        cc,
        bcc,
        subject: parts.next().unwrap_or_default().to_owned(),
        text: parts.next().unwrap_or_default().to_owned(),
        html: parts.next().map(str::to_owned),
        attachments: Vec::new(),
    };
    if let Ok((_, bytes)) = build(common::config(), &common::account(), request) {
        common::check_message(&bytes);
    }
});
