//! `/etc/postecole/postecoled.toml`, as an administrator's editor may leave it: a
//! configuration or a named error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = postecoled::config::Config::parse(text, std::path::Path::new("fuzz.toml"));
    }
});
