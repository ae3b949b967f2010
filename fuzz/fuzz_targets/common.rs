//! What the message-building targets share: a configuration, a sending account, and the
//! properties every built message must have.

use std::sync::LazyLock;

use postecoled::config::Config;
use postecoled::model::{Account, Kind, State};

static CONFIG: LazyLock<Config> = LazyLock::new(Config::default);

pub fn config() -> &'static Config {
    &CONFIG
}

pub fn account() -> Account {
    Account {
        id: "a1".into(),
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

/// The header section: lines end in CRLF, none over 998 characters, and the only headers are
/// those the daemon writes (a caller's CR or LF must never start one of its own).
pub fn check_message(bytes: &[u8]) {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header section ends with an empty line");
    let head = &bytes[..end + 2];
    for line in head.split_inclusive(|&b| b == b'\n') {
        assert!(line.ends_with(b"\r\n"), "bare LF in {line:?}");
        assert!(
            !line[..line.len() - 2].contains(&b'\r'),
            "bare CR in {line:?}"
        );
        assert!(
            line.len() - 2 <= 998,
            "a header line of {} bytes",
            line.len()
        );
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            let name = line.split(|&b| b == b':').next().unwrap();
            assert!(
                KNOWN
                    .iter()
                    .any(|k| k.as_bytes().eq_ignore_ascii_case(name)),
                "a header the daemon does not write: {}",
                String::from_utf8_lossy(line)
            );
        }
    }
}

const KNOWN: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "User-Agent",
    "Auto-Submitted",
];
