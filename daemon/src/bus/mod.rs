//! The D-Bus skin: one file per interface, each asking `authz::Authority` who is calling and
//! calling into `accounts` or `outbox`, whose errors already are the D-Bus errors; `signals`
//! turns the subsystems' broadcasts into signals. No decision is taken here.

mod accounts;
mod archive;
mod files;
mod outbox;
mod signals;

pub use accounts::AccountsService;
pub use archive::ArchiveService;
pub use outbox::OutboxService;
pub use signals::{forward_account_events, forward_message_events};
