//! Reading sealed groups back without opening more than needed: the group's layout and its
//! reader (which decrypts only the index, then only the chunks of the message asked for) are
//! `postecole_archive::log`'s, shared with mailctl's offline reader; here, which messages an
//! account holds, as the queue's records (and the store's pruned `Sealed` ones) say.

use std::fs::File;
use std::io::Write;

pub use postecole_archive::log::{Entry, Group};

use super::{Archive, Unlocked};
use crate::model::Slot;

impl Archive {
    /// Opens the group at `slot` and reads its index; None if its log is gone.
    pub fn open_group(
        &self,
        account: &str,
        slot: &Slot,
        key: &Unlocked,
    ) -> std::io::Result<Option<Group>> {
        let file = match File::open(self.dir.join(account).join(&slot.segment)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        postecole_archive::log::open_group(file, slot.offset, slot.len, key).map(Some)
    }
}

/// An account's archive opened for one call: which messages it holds and where.
pub struct View {
    pub archive: Archive,
    pub account: String,
    pub key: Unlocked,
    /// Oldest first.
    pub messages: Vec<Held>,
}

/// A message the queue's records (or, once pruned, the store's `Sealed`) say is in the archive.
pub struct Held {
    pub id: String,
    pub created: u64,
    pub sender: String,
    pub slot: Slot,
    /// `delivered`, or `failed` for a failed message sealed after `max_lifetime_secs`.
    pub state: &'static str,
    /// What the relay said last.
    pub reply: String,
}

/// A listing line: nothing but the group's index was decrypted for it.
pub struct Listed {
    pub id: String,
    pub created: u64,
    pub subject: String,
    pub to: String,
    pub size: u64,
    pub state: &'static str,
    pub reply: String,
}

impl View {
    /// Walks the messages in order, opening each group once while its messages follow one
    /// another (they were sealed together), and hands each to `each` with its group.
    fn walk(
        &self,
        mut each: impl FnMut(&Held, &mut Group, &Entry) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut open: Option<(Slot, Option<Group>)> = None;
        for held in &self.messages {
            if open.as_ref().is_none_or(|(slot, _)| *slot != held.slot) {
                let group = self
                    .archive
                    .open_group(&self.account, &held.slot, &self.key)
                    .unwrap_or_else(|e| {
                        tracing::error!(message = %held.id, error = %e, "archived message unreadable");
                        None
                    });
                open = Some((held.slot.clone(), group));
            }
            if let Some((_, Some(group))) = open.as_mut()
                && let Some(entry) = group.entry(&held.id).cloned()
            {
                each(held, group, &entry)?;
            }
        }
        Ok(())
    }

    /// Every message's summary, from the groups' indexes alone.
    pub fn list(&self) -> Vec<Listed> {
        let mut out = Vec::new();
        let _ = self.walk(|held, _, entry| {
            out.push(Listed {
                id: held.id.clone(),
                created: held.created,
                subject: entry.subject.clone(),
                to: entry.to.clone(),
                size: entry.size,
                state: held.state,
                reply: held.reply.clone(),
            });
            Ok(())
        });
        out
    }

    /// One message's bytes, decrypting only its group's index and the chunks holding it.
    pub fn read(&self, id: &str) -> std::io::Result<Option<Vec<u8>>> {
        let Some(held) = self.messages.iter().find(|m| m.id == id) else {
            return Ok(None);
        };
        let Some(mut group) = self
            .archive
            .open_group(&self.account, &held.slot, &self.key)?
        else {
            return Ok(None);
        };
        let Some(entry) = group.entry(id).cloned() else {
            return Ok(None);
        };
        group.bytes(&entry).map(Some)
    }

    /// Writes every message as an mbox to `out`, one message in memory at a time; returns how
    /// many were written.
    pub fn export(&self, out: &mut impl Write) -> std::io::Result<u32> {
        let mut count = 0;
        self.walk(|held, group, entry| {
            let bytes = group.bytes(entry)?;
            let mut mbox = Vec::with_capacity(bytes.len() + 256);
            super::mbox_entry(&mut mbox, &held.sender, held.created, &bytes);
            drop(bytes);
            out.write_all(&mbox)?;
            count += 1;
            Ok(())
        })?;
        out.flush()?;
        Ok(count)
    }
}
