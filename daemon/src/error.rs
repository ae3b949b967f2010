//! The errors the service layer (`accounts`, `outbox`) answers with are the D-Bus errors
//! themselves, named once in `postecole-dbus`; here, how each subsystem's failure maps to one
//! of them. Internal details go to the journal, a sentence for the person at the keyboard
//! goes to the caller.

use crate::{authz, blocking, queue, store};

pub use postecole_dbus::Error;

pub type Result<T> = std::result::Result<T, Error>;

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        tracing::error!(error = %e, "store failure");
        Error::Internal("the database could not be read or written".into())
    }
}

impl From<authz::Error> for Error {
    fn from(e: authz::Error) -> Self {
        tracing::error!(error = %e, "user database failure");
        Error::Internal("the user database could not be read".into())
    }
}

impl From<queue::Error> for Error {
    fn from(e: queue::Error) -> Self {
        match e {
            queue::Error::NotFound(id) => Error::NotFound(format!(
                "no message `{id}` that you may see (see `mailctl queue list`)"
            )),
            queue::Error::InvalidState(m) => Error::InvalidState(m),
            queue::Error::QuotaExceeded(m) => Error::QuotaExceeded(m),
            queue::Error::DiskFull(m) => Error::DiskFull(m),
            other => {
                tracing::error!(error = %other, "queue failure");
                Error::Internal("the outgoing queue could not be read or written".into())
            }
        }
    }
}

impl From<blocking::Error> for Error {
    fn from(e: blocking::Error) -> Self {
        match e {
            // The caller's own runs are what fills its share: waiting a moment is the answer.
            blocking::Error::TimedOut { .. } => {
                Error::RateLimited(format!("{e}; try again in a moment"))
            }
            blocking::Error::Failed { .. } => {
                tracing::error!(error = %e, "blocking task failed");
                Error::Internal("the daemon could not finish the call; see its log".into())
            }
        }
    }
}
