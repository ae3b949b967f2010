//! The queue's records as `FindMessages` gives them: a page at a time, or named by id, so that
//! no command reads the whole history to show a part of it.

use postecole_dbus::{MessageFilter, MessageInfo, OutboxProxy};

/// The daemon's largest page, and the most ids one call may name.
const PAGE: usize = 1000;

/// Every record `filter` wants, page after page, oldest first.
pub async fn all(
    outbox: &OutboxProxy<'_>,
    mut filter: MessageFilter,
) -> Result<Vec<MessageInfo>, postecole_dbus::Error> {
    let mut out = Vec::new();
    loop {
        let (page, next) = outbox.find_messages(filter.clone()).await?;
        out.extend(page);
        if next == 0 {
            return Ok(out);
        }
        filter.after = Some(next);
    }
}

/// The records of these messages, as far as the caller may see them.
pub async fn by_ids(
    outbox: &OutboxProxy<'_>,
    ids: &[String],
) -> Result<Vec<MessageInfo>, postecole_dbus::Error> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(PAGE) {
        let filter = MessageFilter {
            ids: Some(chunk.to_vec()),
            ..Default::default()
        };
        out.extend(outbox.find_messages(filter).await?.0);
    }
    Ok(out)
}
