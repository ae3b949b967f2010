use zbus::DBusError;

/// Every refusal the daemon can answer with, as `org.postecole.Mail1.Error.<Variant>`.
///
/// The string is a sentence meant for the person at the keyboard; clients show it as is.
#[derive(DBusError, Debug, Clone, PartialEq)]
#[zbus(prefix = "org.postecole.Mail1.Error")]
pub enum Error {
    /// Transport-level failure between the client and the bus (not sent by the daemon).
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller's Unix user may not do this.
    NotAuthorized(String),
    /// No such account or message, or one the caller may not see.
    NotFound(String),
    /// An argument is malformed: address, label, answer, user name…
    InvalidInput(String),
    /// The verification code does not match.
    WrongCode(String),
    /// The verification code is older than its lifetime.
    CodeExpired(String),
    /// Too many wrong codes or answers; a new code must be requested.
    TooManyAttempts(String),
    /// Asked again too soon; the message says how long to wait.
    RateLimited(String),
    /// The account is not at the step this call belongs to.
    InvalidState(String),
    /// The message is over the configured `max_message_bytes`.
    TooLarge(String),
    /// The mail relay could not be reached or refused the message.
    RelayUnavailable(String),
    /// Something failed inside the daemon; details are in its log.
    Internal(String),
}

impl Error {
    /// The short error name without the prefix (`NotAuthorized`, …), for scripts and tests.
    pub fn short_name(&self) -> &'static str {
        match self {
            Error::ZBus(_) => "ZBus",
            Error::NotAuthorized(_) => "NotAuthorized",
            Error::NotFound(_) => "NotFound",
            Error::InvalidInput(_) => "InvalidInput",
            Error::WrongCode(_) => "WrongCode",
            Error::CodeExpired(_) => "CodeExpired",
            Error::TooManyAttempts(_) => "TooManyAttempts",
            Error::RateLimited(_) => "RateLimited",
            Error::InvalidState(_) => "InvalidState",
            Error::TooLarge(_) => "TooLarge",
            Error::RelayUnavailable(_) => "RelayUnavailable",
            Error::Internal(_) => "Internal",
        }
    }

    /// The human sentence carried by the error.
    pub fn message(&self) -> String {
        match self {
            Error::ZBus(e) => e.to_string(),
            Error::NotAuthorized(m)
            | Error::NotFound(m)
            | Error::InvalidInput(m)
            | Error::WrongCode(m)
            | Error::CodeExpired(m)
            | Error::TooManyAttempts(m)
            | Error::RateLimited(m)
            | Error::InvalidState(m)
            | Error::TooLarge(m)
            | Error::RelayUnavailable(m)
            | Error::Internal(m) => m.clone(),
        }
    }
}
