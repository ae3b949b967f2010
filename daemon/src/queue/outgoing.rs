//! What the queue is handed: a finished message's bytes as they will be sent, its envelope and
//! whose it is. Built here from a lettre message, for the outbox and the account notices alike.

use lettre::Message;

/// A finished message handed to the queue.
pub struct Outgoing {
    pub account: String,
    pub submitter: u32,
    pub notice: bool,
    pub archive_to: Option<String>,
    pub message_id: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub to: Vec<String>,
    pub subject: String,
    pub bytes: Vec<u8>,
}

/// What the queue keeps of a built message: its bytes as sent and its envelope.
pub fn package(message: &Message, account: &str, submitter: u32, notice: bool) -> Outgoing {
    packaged(message, message.formatted(), account, submitter, notice)
}

pub fn packaged(
    message: &Message,
    bytes: Vec<u8>,
    account: &str,
    submitter: u32,
    notice: bool,
) -> Outgoing {
    let envelope = message.envelope();
    let header = |name: &str| {
        message
            .headers()
            .get_raw(name)
            .map(|v| {
                v.split(',')
                    .map(|a| a.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let mut to = header("To");
    to.extend(header("Cc"));
    Outgoing {
        account: account.to_owned(),
        submitter,
        notice,
        archive_to: None,
        message_id: message
            .headers()
            .get_raw("Message-ID")
            .unwrap_or_default()
            .to_owned(),
        envelope_from: envelope.from().map(|a| a.to_string()).unwrap_or_default(),
        recipients: envelope.to().iter().map(|a| a.to_string()).collect(),
        to,
        subject: message
            .headers()
            .get::<lettre::message::header::Subject>()
            .map(|s| s.as_ref().to_owned())
            .unwrap_or_default(),
        bytes,
    }
}
