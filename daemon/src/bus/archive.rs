//! `org.postecole.Mail1.Archive`: reading and exporting an account's sent mail, changing or
//! recovering its secret.

use postecole_dbus::ArchivedInfo;
use zbus::OwnedFd;

use std::sync::Arc;

use postecole_dbus::Error as BusError;
use zbus::interface;
use zbus::message::Header;

use super::files;
use crate::accounts::{Accounts, Unlock};
use crate::authz::Authority;

pub struct ArchiveService {
    accounts: Arc<Accounts>,
    authority: Arc<Authority>,
}

async fn unlock_with(uid: u32, answer: &str, key_file: Vec<OwnedFd>) -> Result<Unlock, BusError> {
    let mut files = key_file.into_iter();
    match (files.next(), files.next(), answer.is_empty()) {
        (Some(fd), None, true) => Ok(Unlock::RecoveryFile(files::read_key_file(uid, fd).await?)),
        (None, _, false) => Ok(Unlock::Answer(answer.to_owned())),
        _ => Err(BusError::InvalidInput(
            "give either the answer or one recovery file".into(),
        )),
    }
}

/// Runs `work` (decryption, file writes) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BusError> + Send + 'static,
) -> Result<T, BusError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BusError::Internal(e.to_string()))?
}

impl ArchiveService {
    pub fn new(accounts: Arc<Accounts>, authority: Arc<Authority>) -> Self {
        ArchiveService {
            accounts,
            authority,
        }
    }
}

#[interface(name = "org.postecole.Mail1.Archive")]
impl ArchiveService {
    #[zbus(out_args("messages"))]
    async fn list_archive(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        account: &str,
        answer: &str,
        key_file: Vec<OwnedFd>,
    ) -> Result<Vec<ArchivedInfo>, BusError> {
        let caller = self.authority.caller(&hdr).await?;
        let with = unlock_with(caller.uid, answer, key_file).await?;
        let view = self
            .accounts
            .archive_view(&caller, account, with, "archive-list")
            .await?;
        let listed = blocking(move || Ok(view.list())).await?;
        Ok(listed
            .into_iter()
            .map(|m| ArchivedInfo {
                id: m.id,
                created: m.created,
                subject: m.subject,
                to: m.to,
                size: m.size,
                state: m.state.into(),
                reply: m.reply,
            })
            .collect())
    }

    #[zbus(out_args("content"))]
    async fn read_archived(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        account: &str,
        message: &str,
        answer: &str,
        key_file: Vec<OwnedFd>,
    ) -> Result<Vec<u8>, BusError> {
        let caller = self.authority.caller(&hdr).await?;
        let with = unlock_with(caller.uid, answer, key_file).await?;
        let view = self
            .accounts
            .archive_view(&caller, account, with, "archive-read")
            .await?;
        let id = message.to_owned();
        blocking(move || {
            view.read(&id).map_err(|e| {
                tracing::error!(message = %id, error = %e, "archived message unreadable");
                BusError::Internal("the archived message cannot be read".into())
            })
        })
        .await?
        .ok_or_else(|| {
            BusError::NotFound(format!(
                "no message `{message}` in the archive of {account}"
            ))
        })
    }

    #[zbus(out_args("count"))]
    async fn export_mbox(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        account: &str,
        answer: &str,
        key_file: Vec<OwnedFd>,
        output: OwnedFd,
    ) -> Result<u32, BusError> {
        let caller = self.authority.caller(&hdr).await?;
        let file = files::regular(output, "the export's destination")?;
        let with = unlock_with(caller.uid, answer, key_file).await?;
        let view = self
            .accounts
            .archive_view(&caller, account, with, "archive-export")
            .await?;
        // Written as it is read: one message in memory at a time, whatever the archive's size.
        files::write_streamed(caller.uid, file, move |out| view.export(out)).await
    }

    async fn change_secret(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        account: &str,
        old_answer: &str,
        question: &str,
        answer: &str,
    ) -> Result<(), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.accounts
            .change_secret(&caller, account, old_answer, question, answer)
            .await
    }

    async fn new_recovery_key(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        account: &str,
        answer: &str,
    ) -> Result<(), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.accounts
            .new_recovery_key(&caller, account, answer)
            .await
    }

    async fn recover(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        account: &str,
        key_file: OwnedFd,
        question: &str,
        answer: &str,
    ) -> Result<(), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        let file = files::read_key_file(caller.uid, key_file).await?;
        self.accounts
            .recover(&caller, account, &file, question, answer)
            .await
    }
}
