use zbus::{DeserializeDict, OwnedFd, SerializeDict, Type, proxy};

use crate::Error;

/// One archived message as listed (`a{sv}`).
#[derive(SerializeDict, DeserializeDict, Type, Debug, Clone, Default, PartialEq)]
#[zbus(signature = "a{sv}")]
pub struct ArchivedInfo {
    pub id: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub subject: String,
    pub to: String,
    pub size: u64,
    /// `delivered`, or `failed` for a message that failed and was sealed later.
    pub state: String,
    /// What the relay said last.
    pub reply: String,
}

/// `org.postecole.Mail1.Archive`: the encrypted archive of sent mail.
///
/// Every call is unlocked either by the secret answer (`answer`, with `key_file` empty) or by
/// the content of `cleRecuperation.crbee` passed as one file descriptor in `key_file`.
#[proxy(
    interface = "org.postecole.Mail1.Archive",
    default_service = "org.postecole.Mail1",
    default_path = "/org/postecole/Mail1"
)]
pub trait Archive {
    fn list_archive(
        &self,
        account: &str,
        answer: &str,
        key_file: Vec<OwnedFd>,
    ) -> Result<Vec<ArchivedInfo>, Error>;
    /// The message exactly as it was sent.
    fn read_archived(
        &self,
        account: &str,
        message: &str,
        answer: &str,
        key_file: Vec<OwnedFd>,
    ) -> Result<Vec<u8>, Error>;
    /// Writes every archived message to `output` as an mbox; returns how many.
    fn export_mbox(
        &self,
        account: &str,
        answer: &str,
        key_file: Vec<OwnedFd>,
        output: OwnedFd,
    ) -> Result<u32, Error>;
    /// A new question and answer, proven by the old answer. The archive stays readable.
    fn change_secret(
        &self,
        account: &str,
        old_answer: &str,
        question: &str,
        answer: &str,
    ) -> Result<(), Error>;
    /// A new `cleRecuperation.crbee`, proven by the answer, mailed to the account's address;
    /// the file issued before stops opening the archive.
    fn new_recovery_key(&self, account: &str, answer: &str) -> Result<(), Error>;
    /// A new question and answer, proven by `cleRecuperation.crbee`. The archive stays
    /// readable and the file stays valid.
    fn recover(
        &self,
        account: &str,
        key_file: OwnedFd,
        question: &str,
        answer: &str,
    ) -> Result<(), Error>;
}
