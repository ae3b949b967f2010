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
        Ok(self
            .accounts
            .archived(&caller, account, with, "archive-list")
            .await?
            .into_iter()
            .map(|m| {
                let (subject, to) = crate::archive::summary(&m.bytes);
                ArchivedInfo {
                    id: m.id,
                    created: m.created,
                    subject,
                    to,
                    size: m.bytes.len() as u64,
                }
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
        self.accounts
            .archived(&caller, account, with, "archive-read")
            .await?
            .into_iter()
            .find(|m| m.id == message)
            .map(|m| m.bytes)
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
        use std::io::Write;
        let caller = self.authority.caller(&hdr).await?;
        let mut file = files::regular(output, "the export's destination")?;
        let with = unlock_with(caller.uid, answer, key_file).await?;
        let messages = self
            .accounts
            .archived(&caller, account, with, "archive-export")
            .await?;
        let count = messages.len() as u32;
        crate::blocking::CALLER_FILES
            .run(caller.uid, move || {
                let mut mbox = Vec::new();
                for m in &messages {
                    crate::archive::mbox_entry(&mut mbox, &m.sender, m.created, &m.bytes);
                }
                file.write_all(&mbox)
            })
            .await
            .map_err(|e| BusError::InvalidInput(format!("the export: {e}")))?
            .map_err(|e| BusError::InvalidInput(format!("cannot write the export: {e}")))?;
        Ok(count)
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
