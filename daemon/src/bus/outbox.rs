//! `org.postecole.Mail1.Outbox`: sending, templates, one's own queued messages.

use std::collections::HashMap;

use postecole_dbus::{
    Attachment, MessageFilter, MessageInfo, OutgoingMessage, RelayInfo, RowAttachment, TemplateInfo,
};

use std::sync::Arc;

use postecole_dbus::Error as BusError;
use zbus::interface;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;

use super::files;
use crate::authz;
use crate::authz::Authority;
use crate::blocking::LISTINGS;
use crate::model::{MsgState, Record};
use crate::outbox::{Outbox, Request};
use crate::queue;

pub struct OutboxService {
    outbox: Arc<Outbox>,
    authority: Arc<Authority>,
}

/// A bus filter as the queue takes it; unknown states are refused by name.
fn queue_filter(f: MessageFilter) -> Result<queue::Filter, BusError> {
    let states = f
        .states
        .unwrap_or_default()
        .iter()
        .map(|s| {
            MsgState::parse(s).ok_or_else(|| {
                BusError::InvalidInput(format!(
                    "unknown state `{s}`: give queued, sending, deferred, held, delivered, failed or cancelled"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(queue::Filter {
        ids: f.ids,
        states,
        account: f.account.filter(|a| !a.is_empty()),
        since: f.since.unwrap_or(0),
        to: f.to.filter(|t| !t.is_empty()),
        after: f.after.unwrap_or(0),
        limit: f.limit.map_or(queue::MAX_PAGE, |l| l as usize),
    })
}

pub fn message_info(r: &Record) -> MessageInfo {
    MessageInfo {
        id: r.id.clone(),
        account: r.account.clone(),
        state: r.state.as_str().into(),
        to: r.to.clone(),
        subject: r.subject.clone(),
        created: r.created,
        attempts: r.attempts,
        next_attempt: r.next_attempt,
        last_reply: r.last_reply.clone(),
        message_id: r.message_id.clone(),
        submitter: authz::name_of(r.submitter),
        size: r.size,
    }
}

fn request(message: OutgoingMessage, attachments: Vec<Attachment>) -> Result<Request, BusError> {
    Ok(Request {
        to: message.to.unwrap_or_default(),
        cc: message.cc.unwrap_or_default(),
        bcc: message.bcc.unwrap_or_default(),
        subject: message.subject.unwrap_or_default(),
        text: message.text.unwrap_or_default(),
        html: message.html.filter(|h| !h.is_empty()),
        attachments: attachments
            .into_iter()
            .map(|(name, content_type, fd)| {
                let file = files::regular(fd, &format!("attachment `{name}`"))?;
                Ok((name, content_type, file))
            })
            .collect::<Result<_, BusError>>()?,
    })
}

impl OutboxService {
    pub fn new(outbox: Arc<Outbox>, authority: Arc<Authority>) -> Self {
        OutboxService { outbox, authority }
    }
}

#[interface(name = "org.postecole.Mail1.Outbox")]
impl OutboxService {
    #[zbus(out_args("id"))]
    async fn send(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        account: &str,
        message: OutgoingMessage,
        attachments: Vec<Attachment>,
    ) -> Result<String, BusError> {
        let caller = self.authority.sender(&hdr).await?;
        let mut ids = self
            .outbox
            .send(&caller, account, vec![request(message, attachments)?])
            .await?;
        Ok(ids.remove(0))
    }

    #[zbus(out_args("ids"))]
    async fn send_batch(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        account: &str,
        messages: Vec<(OutgoingMessage, Vec<Attachment>)>,
    ) -> Result<Vec<String>, BusError> {
        let caller = self.authority.sender(&hdr).await?;
        let requests = messages
            .into_iter()
            .map(|(m, a)| request(m, a))
            .collect::<Result<_, _>>()?;
        self.outbox.send(&caller, account, requests).await
    }

    #[zbus(out_args("message"))]
    async fn get_message(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        id: &str,
    ) -> Result<MessageInfo, BusError> {
        let caller = self.authority.caller(&hdr).await?;
        Ok(message_info(&self.outbox.get(&caller, id)?))
    }

    #[zbus(out_args("messages"))]
    async fn list_messages(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<Vec<MessageInfo>, BusError> {
        let caller = self.authority.caller(&hdr).await?;
        let outbox = self.outbox.clone();
        let uid = caller.uid;
        let records = LISTINGS
            .run(uid, move || outbox.list(&caller))
            .await
            .map_err(BusError::from)??;
        Ok(records.iter().map(message_info).collect())
    }

    #[zbus(out_args("messages", "next"))]
    async fn find_messages(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        filter: MessageFilter,
    ) -> Result<(Vec<MessageInfo>, u64), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        let filter = queue_filter(filter)?;
        let page = if filter.ids.is_some() {
            // Point look-ups: as cheap as GetMessage.
            self.outbox.find(&caller, &filter)?
        } else {
            let outbox = self.outbox.clone();
            let uid = caller.uid;
            LISTINGS
                .run(uid, move || outbox.find(&caller, &filter))
                .await
                .map_err(BusError::from)??
        };
        Ok((page.records.iter().map(message_info).collect(), page.next))
    }

    async fn cancel(&self, #[zbus(header)] hdr: Header<'_>, id: &str) -> Result<(), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.outbox.cancel(&caller, id)?;
        Ok(())
    }

    async fn retry(&self, #[zbus(header)] hdr: Header<'_>, id: &str) -> Result<(), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.outbox.retry(&caller, id)?;
        Ok(())
    }

    async fn hold(&self, #[zbus(header)] hdr: Header<'_>, id: &str) -> Result<(), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.outbox.hold(&caller, id)?;
        Ok(())
    }

    async fn release(&self, #[zbus(header)] hdr: Header<'_>, id: &str) -> Result<(), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.outbox.release(&caller, id)?;
        Ok(())
    }

    #[zbus(out_args("templates"))]
    async fn list_templates(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<Vec<TemplateInfo>, BusError> {
        self.authority.caller(&hdr).await?;
        Ok(self
            .outbox
            .templates()
            .into_values()
            .map(|t| TemplateInfo {
                name: t.name,
                description: t.description,
                variables: t.variables,
                attachment: t.attachment,
                subject: t.subject,
                text: t.text,
            })
            .collect())
    }

    #[zbus(out_args("subject", "text", "html"))]
    async fn preview(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        account: &str,
        template: &str,
        variables: HashMap<String, String>,
    ) -> Result<(String, String, String), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        let r = self
            .outbox
            .preview(&caller, account, template, &variables)?;
        Ok((r.subject, r.text, r.html.unwrap_or_default()))
    }

    // The D-Bus signature fixes the arguments.
    #[allow(clippy::too_many_arguments)]
    #[zbus(out_args("ids", "refused"))]
    async fn send_template(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        account: &str,
        template: &str,
        rows: Vec<HashMap<String, String>>,
        attachments: Vec<RowAttachment>,
        dry_run: bool,
    ) -> Result<(Vec<String>, Vec<(u32, String)>), BusError> {
        let caller = self.authority.sender(&hdr).await?;
        let mut by_row: HashMap<usize, Vec<(String, String, std::fs::File)>> = HashMap::new();
        for (row, name, content_type, fd) in attachments {
            let file = files::regular(fd, &format!("attachment `{name}` of row {}", row + 1))?;
            by_row
                .entry(row as usize)
                .or_default()
                .push((name, content_type, file));
        }
        self.outbox
            .send_template(&caller, account, template, rows, by_row, dry_run)
            .await
    }

    #[zbus(out_args("report"))]
    async fn test_relay(&self, #[zbus(header)] hdr: Header<'_>) -> Result<String, BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.outbox.test_relay(&caller).await
    }

    #[zbus(out_args("verification_uri", "user_code", "expires"))]
    async fn relay_login(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(String, String, u64), BusError> {
        let caller = self.authority.caller(&hdr).await?;
        let login = self.outbox.relay_login(&caller).await?;
        Ok((login.verification_uri, login.user_code, login.expires_at))
    }

    #[zbus(out_args("status"))]
    async fn relay_status(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<postecole_dbus::RelayStatus, BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.outbox.relay_status(&caller).await
    }

    #[zbus(out_args("relay"))]
    async fn get_relay(&self, #[zbus(header)] hdr: Header<'_>) -> Result<RelayInfo, BusError> {
        let caller = self.authority.caller(&hdr).await?;
        self.outbox.relay_settings(&caller)
    }

    /// Carries only the id and the new state; details need `GetMessage`.
    #[zbus(signal)]
    pub(crate) async fn message_changed(
        emitter: &SignalEmitter<'_>,
        id: &str,
        state: &str,
    ) -> zbus::Result<()>;
}
