//! The errors of the service layer (`accounts`, `outbox`): one variant per D-Bus error name,
//! each carrying a sentence for the person at the keyboard.

use crate::{authz, queue, store};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotAuthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    WrongCode(String),
    #[error("{0}")]
    CodeExpired(String),
    #[error("{0}")]
    TooManyAttempts(String),
    #[error("{0}")]
    RateLimited(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    RelayUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

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
            other => {
                tracing::error!(error = %other, "queue failure");
                Error::Internal("the outgoing queue could not be read or written".into())
            }
        }
    }
}
