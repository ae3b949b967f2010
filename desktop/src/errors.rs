//! Every refusal of the daemon, and every failure to reach it, as a sentence for the person at
//! the keyboard. The daemon's own messages are for logs and scripts: never shown as they are.

use postecole_dbus::Error;

use crate::i18n::tr;

/// The sentence shown for `error`.
pub fn sentence(error: &Error) -> String {
    match error {
        Error::ZBus(_) => tr(
            "The mail service of this PC cannot be reached. Try again in a moment; if it goes on, tell the person who looks after this PC.",
        ),
        Error::NotAuthorized(_) => {
            tr("You are not allowed to do this on this PC. Ask the person who looks after this PC.")
        }
        Error::NotFound(_) => {
            tr("This account or message no longer exists, or is not yours to see.")
        }
        Error::InvalidInput(_) => tr(
            "Something typed is not accepted: check the e-mail address, the label, the names and the other fields.",
        ),
        Error::WrongCode(_) => tr(
            "This code is not the right one. Check the latest e-mail received at this address and type its code again.",
        ),
        Error::CodeExpired(_) => tr(
            "This code is too old: codes only last 15 minutes. Click “Resend the code” and type the new one.",
        ),
        Error::TooManyAttempts(_) => tr(
            "Too many wrong tries. Click “Resend the code” for a new code, or wait before trying again.",
        ),
        Error::RateLimited(_) => tr("You asked again too soon. Wait a minute, then try again."),
        Error::InvalidState(_) => tr(
            "This account is not at this step any more. Close this window and look at the account's state in the list.",
        ),
        Error::TooLarge(_) => tr(
            "This message is too large to be sent. Remove an attachment or attach smaller files.",
        ),
        Error::RelayUnavailable(_) => tr(
            "The mail server could not be reached or refused the message. Try again later; if it goes on, tell the person who looks after this PC.",
        ),
        Error::QuotaExceeded(_) => tr(
            "You have reached what one person may send or set up on this PC for now. Wait until your messages have left, or ask the person who looks after this PC.",
        ),
        Error::DiskFull(_) => tr(
            "The disk of this PC is nearly full: no new message or account for now. Tell the person who looks after this PC.",
        ),
        Error::AddressInUse(_) => tr(
            "Another account on this PC already uses this e-mail address. Ask the person who looks after this PC.",
        ),
        Error::Internal(_) => tr(
            "The mail service of this PC met a problem. Try again; if it happens again, tell the person who looks after this PC.",
        ),
    }
}

/// Answers to the secret question are given twice; both must match and hold something.
pub fn check_answers(answer: &str, again: &str) -> Result<(), String> {
    if answer.trim().is_empty() {
        return Err(tr("Type an answer to the secret question."));
    }
    if answer != again {
        return Err(tr(
            "The two answers are not the same. Type the answer again, twice.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_error() -> Vec<Error> {
        let m = || "daemon text".to_owned();
        vec![
            Error::ZBus(zbus::Error::Failure(m())),
            Error::NotAuthorized(m()),
            Error::NotFound(m()),
            Error::InvalidInput(m()),
            Error::WrongCode(m()),
            Error::CodeExpired(m()),
            Error::TooManyAttempts(m()),
            Error::RateLimited(m()),
            Error::InvalidState(m()),
            Error::TooLarge(m()),
            Error::RelayUnavailable(m()),
            Error::QuotaExceeded(m()),
            Error::DiskFull(m()),
            Error::Internal(m()),
            Error::AddressInUse(m()),
        ]
    }

    #[test]
    fn every_error_has_its_own_sentence_without_the_daemon_text() {
        let sentences: Vec<String> = every_error().iter().map(sentence).collect();
        for (e, s) in every_error().iter().zip(&sentences) {
            assert!(!s.contains("daemon text"), "{e:?} shows the raw message");
            assert!(!s.contains("org.postecole"), "{e:?} shows an error name");
            assert!(s.ends_with('.'), "{e:?}: {s}");
        }
        let mut unique = sentences.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), sentences.len(), "two errors share a sentence");
    }

    #[test]
    fn answers_must_match_and_not_be_blank() {
        assert!(check_answers("  ", "  ").is_err());
        assert!(check_answers("Médor", "médor").is_err());
        assert!(check_answers("Médor", "Médor").is_ok());
    }
}
