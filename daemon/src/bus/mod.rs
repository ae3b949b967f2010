//! The D-Bus skin: one file per interface, each resolving the caller through `authz`, calling
//! into `accounts` or `outbox` and mapping errors to `org.postecole.Mail1.Error.*`; `signals`
//! turns the subsystems' broadcasts into signals. No decision is taken here.

mod accounts;
mod archive;
mod outbox;
mod signals;

use postecole_dbus::Error as BusError;

use crate::error::Error;

pub use accounts::AccountsService;
pub use archive::ArchiveService;
pub use outbox::OutboxService;
pub use signals::forward_message_events;

impl From<Error> for BusError {
    fn from(e: Error) -> Self {
        use Error as E;
        match e {
            E::NotAuthorized(m) => BusError::NotAuthorized(m),
            E::NotFound(m) => BusError::NotFound(m),
            E::InvalidInput(m) => BusError::InvalidInput(m),
            E::WrongCode(m) => BusError::WrongCode(m),
            E::CodeExpired(m) => BusError::CodeExpired(m),
            E::TooManyAttempts(m) => BusError::TooManyAttempts(m),
            E::RateLimited(m) => BusError::RateLimited(m),
            E::InvalidState(m) => BusError::InvalidState(m),
            E::TooLarge(m) => BusError::TooLarge(m),
            E::RelayUnavailable(m) => BusError::RelayUnavailable(m),
            E::Internal(m) => BusError::Internal(m),
        }
    }
}
