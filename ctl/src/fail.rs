//! How mailctl fails: a sentence in the caller's language that says what to do, the daemon's
//! own words and error name for whoever debugs, and an exit status by kind (sysexits.h) so
//! that scripts can tell a typo from a dead relay.

use std::sync::Mutex;

use postecole_dbus::Error;
use serde_json::json;

use crate::t;

/// Exit statuses, documented in mailctl(1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Any other failure.
    Other = 1,
    /// Partly done: some families got the message, others were refused or failed.
    Partial = 3,
    /// EX_USAGE: the command line is wrong.
    Usage = 64,
    /// EX_DATAERR: a value was refused (address, code, answer, size, step).
    Data = 65,
    /// EX_NOINPUT: no such account, message or file (or one the caller may not see).
    NoInput = 66,
    /// EX_UNAVAILABLE: postecoled cannot be reached, or the relay refused a message for good.
    Unavailable = 69,
    /// EX_SOFTWARE: postecoled failed inside.
    Software = 70,
    /// EX_CANTCREAT: an output file cannot be created (or already exists).
    CantCreate = 73,
    /// EX_TEMPFAIL: try again later (relay down, too soon, quota, disk full, still waiting).
    TempFail = 75,
    /// EX_NOPERM: not allowed, too many tries.
    NoPerm = 77,
}

#[derive(Debug)]
pub struct Failure {
    pub status: Status,
    /// In the caller's language.
    pub message: String,
    /// The D-Bus error name, when the daemon (or the bus) refused.
    pub name: Option<String>,
    /// The daemon's own sentence (English), with its particulars: tries left, the relay's reply.
    pub detail: Option<String>,
    /// What had been done before the failure, for `--json` (e.g. the id of a created account).
    pub partial: Option<serde_json::Value>,
    /// The command already printed its one JSON document, the error inside it.
    pub json_printed: bool,
}

impl Failure {
    pub fn new(status: Status, message: String) -> Failure {
        Failure {
            status,
            message,
            name: None,
            detail: None,
            partial: None,
            json_printed: false,
        }
    }

    pub fn with_partial(mut self, value: serde_json::Value) -> Failure {
        self.partial = Some(value);
        self
    }

    /// The short error name (`WrongCode`), when it is one of the daemon's.
    pub fn short_name(&self) -> Option<&str> {
        self.name
            .as_deref()
            .and_then(|n| n.strip_prefix(postecole_dbus::ERROR_PREFIX))
            .map(|n| n.trim_start_matches('.'))
    }

    pub fn human(&self) -> String {
        let mut out = format!("mailctl: {}\n", self.message);
        match (&self.detail, &self.name) {
            (Some(detail), Some(name)) => {
                out.push_str(&format!("mailctl: postecoled: {detail} [{name}]\n"))
            }
            (None, Some(name)) => out.push_str(&format!("mailctl: [{name}]\n")),
            (Some(detail), None) => out.push_str(&format!("mailctl: {detail}\n")),
            (None, None) => {}
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let mut error = json!({
            "status": self.status as i32,
            "name": self.name,
            "message": self.message,
            "detail": self.detail,
        });
        if let Some(partial) = &self.partial {
            error["done"] = partial.clone();
        }
        json!({ "error": error })
    }
}

/// A file of the caller's, opened by mailctl as the caller (never by the daemon).
pub fn open_input(path: &std::path::Path) -> Result<std::fs::File, Failure> {
    std::fs::File::open(path).map_err(|e| cannot_read(path, e))
}

pub fn cannot_read(path: &std::path::Path, error: std::io::Error) -> Failure {
    Failure::new(
        Status::NoInput,
        t!(
            "cannot read {path}: {error}",
            path = path.display(),
            error = error
        ),
    )
}

pub fn cannot_create(path: &std::path::Path, error: std::io::Error) -> Failure {
    Failure::new(
        Status::CantCreate,
        t!(
            "cannot create {path}: {error}",
            path = path.display(),
            error = error
        ),
    )
}

/// The account the command is about, so that hints name it instead of "ID".
static ACCOUNT: Mutex<Option<String>> = Mutex::new(None);

pub fn set_account(id: &str) {
    if let Ok(mut slot) = ACCOUNT.lock() {
        *slot = Some(id.to_owned());
    }
}

fn account() -> String {
    ACCOUNT
        .lock()
        .ok()
        .and_then(|slot| slot.clone())
        .unwrap_or_else(|| "ID".to_owned())
}

/// What to do about each error the daemon names, and its kind.
pub fn explain(short: &str) -> Option<(Status, String)> {
    let id = account();
    Some(match short {
        "NotAuthorized" => (
            Status::NoPerm,
            t!(
                "Your Unix account may not do this. Ask an administrator of postecole (root or a member of its admin group); for an establishment address, an administrator can add you to its staff: mailctl account staff {id} --add USER",
                id = id
            ),
        ),
        "NotFound" => (
            Status::NoInput,
            t!(
                "No such account or message among those you may see. Check the id or the address with: mailctl account list (or mailctl queue list)"
            ),
        ),
        "InvalidInput" => (
            Status::Data,
            t!(
                "postecoled refused a value it was given; nothing was changed. Correct it as said below and run the command again."
            ),
        ),
        "WrongCode" => (
            Status::Data,
            t!(
                "The code or the answer does not match. Check it (a code: in the newest e-mail) and type it again; below is how many tries are left."
            ),
        ),
        "CodeExpired" => (
            Status::Data,
            t!(
                "The code has expired: a code is valid for 15 minutes. Ask for a new one with: mailctl account resend {id}",
                id = id
            ),
        ),
        "TooManyAttempts" => (
            Status::NoPerm,
            t!(
                "Too many wrong tries. For a code, ask for a new one: mailctl account resend {id}. For the answer, wait until the lock ends, or use the recovery file: mailctl account recover {id} --key cleRecuperation.crbee --question '…'",
                id = id
            ),
        ),
        "RateLimited" => (
            Status::TempFail,
            t!(
                "Asked again too soon. Wait as long as said below, then run the same command again."
            ),
        ),
        "InvalidState" => (
            Status::Data,
            t!(
                "The account is not at the step this command belongs to. See where it stands with: mailctl account show {id}",
                id = id
            ),
        ),
        "TooLarge" => (
            Status::Data,
            t!(
                "The message is too large for this PC's mail settings. Send fewer or smaller attachments, for instance one message per file."
            ),
        ),
        "RelayUnavailable" => (
            Status::TempFail,
            t!(
                "The mail relay could not be reached or refused. Nothing is lost: waiting mail is retried automatically. An administrator can check the relay with: mailctl relay test"
            ),
        ),
        "Internal" => (
            Status::Software,
            t!(
                "postecoled failed inside; what you typed is not the cause. An administrator finds why in its log: journalctl -u postecoled"
            ),
        ),
        "AddressInUse" => (
            Status::NoPerm,
            t!(
                "Another account on this PC already has this address. Use that account (mailctl account list) or ask an administrator."
            ),
        ),
        "QuotaExceeded" => (
            Status::TempFail,
            t!(
                "You have reached your share of the outgoing queue. Wait until your waiting messages have left (mailctl queue list), then try again."
            ),
        ),
        "DiskFull" => (
            Status::TempFail,
            t!(
                "The PC's disk is nearly full, so no new mail is accepted; mail already queued is kept. Tell an administrator."
            ),
        ),
        _ => return None,
    })
}

fn from_name(name: &str, detail: String) -> Failure {
    let short = name
        .strip_prefix(postecole_dbus::ERROR_PREFIX)
        .map(|n| n.trim_start_matches('.'));
    let (status, message) = match short.and_then(explain) {
        Some(found) => found,
        None => match name {
            "org.freedesktop.DBus.Error.ServiceUnknown"
            | "org.freedesktop.DBus.Error.NameHasNoOwner"
            | "org.freedesktop.DBus.Error.Spawn.ServiceNotFound" => (
                Status::Unavailable,
                t!(
                    "postecoled, the mail service, is not running on this PC. An administrator starts it with: systemctl start postecoled"
                ),
            ),
            "org.freedesktop.DBus.Error.AccessDenied" => (
                Status::NoPerm,
                t!(
                    "The message bus does not let you talk to postecoled. Check that its bus policy (org.postecole.Mail1.conf) is installed."
                ),
            ),
            "org.freedesktop.DBus.Error.NoReply" | "org.freedesktop.DBus.Error.Timeout" => (
                Status::TempFail,
                t!("postecoled did not answer in time. Try again in a moment."),
            ),
            _ => (Status::Other, t!("postecoled refused.")),
        },
    };
    Failure {
        status,
        message,
        name: Some(name.to_owned()),
        detail: Some(detail).filter(|d| !d.is_empty()),
        partial: None,
        json_printed: false,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::ZBus(zbus::Error::MethodError(name, msg, _)) => {
                from_name(name.as_str(), msg.unwrap_or_default())
            }
            Error::ZBus(zbus::Error::FDO(fdo)) => {
                let name = zbus::DBusError::name(fdo.as_ref()).to_string();
                let detail = zbus::DBusError::description(fdo.as_ref())
                    .unwrap_or_default()
                    .to_owned();
                from_name(&name, detail)
            }
            Error::ZBus(other) => Failure::new(
                Status::Unavailable,
                t!("cannot reach postecoled: {error}", error = other),
            ),
            other => from_name(
                &format!("{}.{}", postecole_dbus::ERROR_PREFIX, other.short_name()),
                other.message(),
            ),
        }
    }
}

impl From<zbus::Error> for Failure {
    fn from(e: zbus::Error) -> Self {
        Failure::from(Error::ZBus(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_daemon_error_has_a_sentence_and_a_kind() {
        let names = [
            "NotAuthorized",
            "NotFound",
            "InvalidInput",
            "WrongCode",
            "CodeExpired",
            "TooManyAttempts",
            "RateLimited",
            "InvalidState",
            "TooLarge",
            "RelayUnavailable",
            "Internal",
        ];
        for name in names {
            let (status, sentence) = explain(name).unwrap_or_else(|| panic!("{name}"));
            assert!(sentence.len() > 20, "{name}");
            assert_ne!(status, Status::Other, "{name}");
        }
        let e = Failure::from(Error::WrongCode("wrong code; 4 tries left".into()));
        assert_eq!(e.status, Status::Data);
        assert_eq!(e.short_name(), Some("WrongCode"));
        assert!(
            e.human()
                .contains("wrong code; 4 tries left [org.postecole.Mail1.Error.WrongCode]")
        );
        assert_eq!(e.json()["error"]["status"], 65);
    }
}
