use zbus::DBusError;

/// Declares the error enum from one list of names, so that a new error is added in one place
/// and its D-Bus name, short name and message follow.
macro_rules! errors {
    ($( $(#[$doc:meta])* $name:ident, )*) => {
        /// Every refusal the daemon can answer with, as `org.postecole.Mail1.Error.<Variant>`.
        ///
        /// The string is a sentence meant for the person at the keyboard; clients show it as
        /// is. The daemon's own layers answer with it too, so that each name exists once.
        #[derive(DBusError, Debug, Clone, PartialEq)]
        #[zbus(prefix = "org.postecole.Mail1.Error")]
        pub enum Error {
            /// Transport-level failure between the client and the bus (not sent by the daemon).
            #[zbus(error)]
            ZBus(zbus::Error),
            $( $(#[$doc])* $name(String), )*
        }

        impl Error {
            /// The short error name without the prefix (`NotAuthorized`, …), for scripts and
            /// tests.
            pub fn short_name(&self) -> &'static str {
                match self {
                    Error::ZBus(_) => "ZBus",
                    $( Error::$name(_) => stringify!($name), )*
                }
            }

            /// The human sentence carried by the error.
            pub fn message(&self) -> String {
                match self {
                    Error::ZBus(e) => e.to_string(),
                    $( Error::$name(m) => m.clone(), )*
                }
            }
        }
    };
}

errors! {
    /// The caller's Unix user may not do this.
    NotAuthorized,
    /// No such account or message, or one the caller may not see.
    NotFound,
    /// An argument is malformed: address, label, answer, user name…
    InvalidInput,
    /// The verification code does not match.
    WrongCode,
    /// The verification code is older than its lifetime.
    CodeExpired,
    /// Too many wrong codes or answers; a new code must be requested.
    TooManyAttempts,
    /// Asked again too soon; the message says how long to wait.
    RateLimited,
    /// The account is not at the step this call belongs to.
    InvalidState,
    /// The message is over the configured `max_message_bytes`.
    TooLarge,
    /// The mail relay could not be reached or refused the message.
    RelayUnavailable,
    /// Over one of the caller's `[limits]` (queued messages, queued bytes, recipients per call,
    /// accounts awaiting their code, creations per day); the message names it.
    QuotaExceeded,
    /// The state directory is below its free-space reserve: no new mail or account for now.
    DiskFull,
    /// Something failed inside the daemon; details are in its log.
    Internal,
    /// Another account on this PC already uses the address; only an administrator may claim it.
    AddressInUse,
}
