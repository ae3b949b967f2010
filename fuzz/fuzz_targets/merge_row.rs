//! A school's own template (`templates_dir/*.toml`) and a merge CSV row, as `Merge` meets them:
//! the input is the template's source, then NUL-separated `name=value` cells. A template is
//! loaded or refused, a row renders or is refused by name, and what renders becomes a message
//! or a named error; never a panic.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use postecoled::outbox::templates::Template;
use postecoled::outbox::{Request, build};

mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let Ok(template) = Template::parse("fuzz", parts.next().unwrap_or_default()) else {
        return;
    };
    let row: HashMap<String, String> = parts
        .filter_map(|cell| cell.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let Ok(rendered) = template.render(&row, &["email"]) else {
        return;
    };
    let request = Request {
        to: vec![row.get("email").cloned().unwrap_or_default()],
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
        ..Request::default()
    };
    if let Ok((_, bytes)) = build(common::config(), &common::account(), request) {
        common::check_message(&bytes);
    }
});
