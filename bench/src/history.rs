//! Costs that must not grow with a year of history: one `GetMessage`, and `FindMessages`
//! naming ten messages, among `records` records (100,000 for the full run). A whole-history
//! filtered scan is measured beside them, for scale.

use std::time::{Duration, Instant};

use postecole_dbus::MessageFilter;
use postecole_tests::Bus;

use super::{Batch, closed_port, percentile, plain_relay, prepared};

/// Small messages: what matters here is the number of records, not their bytes.
fn small(first: usize, count: usize) -> Batch {
    (first..first + count)
        .map(|i| {
            (
                postecole_dbus::OutgoingMessage {
                    to: Some(vec![format!("famille{i}@example.org")]),
                    subject: Some(format!("Absence {i}")),
                    text: Some("Merci de justifier l'absence.".into()),
                    ..Default::default()
                },
                vec![],
            )
        })
        .collect()
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    records: usize,
    put: &mut impl FnMut(&'static str, String),
) {
    let bus = Bus::start();
    // The relay is down: every record stays, and a waiting one costs the most to show (its
    // recipients and subject are read back from the spool).
    let (_daemon, account) = prepared(&bus, &plain_relay(closed_port()), "", 3600);
    let (get, find, scan) = runtime.block_on(async {
        let conn = bus.connect().await;
        let outbox = postecole_dbus::OutboxProxy::new(&conn).await.unwrap();
        let mut ids = Vec::with_capacity(records);
        for first in (0..records).step_by(100) {
            let batch = small(first, 100.min(records - first));
            ids.extend(outbox.send_batch(&account, batch).await.unwrap());
        }
        let pick = |i: usize| ids[(i * 7919) % ids.len()].clone();
        let mut get = Vec::with_capacity(1000);
        for i in 0..1000 {
            let id = pick(i);
            let t = Instant::now();
            outbox.get_message(&id).await.unwrap();
            get.push(t.elapsed());
        }
        let mut find = Vec::with_capacity(500);
        for i in 0..500 {
            let filter = MessageFilter {
                ids: Some((0..10).map(|k| pick(i * 10 + k)).collect()),
                ..Default::default()
            };
            let t = Instant::now();
            let (found, _) = outbox.find_messages(filter).await.unwrap();
            find.push(t.elapsed());
            assert_eq!(found.len(), 10);
        }
        let t = Instant::now();
        // Only the set-up's own mails were delivered: the whole history is read to find them.
        let (page, _) = outbox
            .find_messages(MessageFilter {
                states: Some(vec!["delivered".into()]),
                limit: Some(100),
                ..Default::default()
            })
            .await
            .unwrap();
        let scan = t.elapsed();
        assert!(page.len() < 10, "{}", page.len());
        get.sort();
        find.sort();
        (get, find, scan)
    });
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    put("history_records", records.to_string());
    put(
        "get_message_p50_ms",
        format!("{:.2}", percentile(&get, 0.5)),
    );
    put(
        "get_message_p99_ms",
        format!("{:.2}", percentile(&get, 0.99)),
    );
    put(
        "find_10_ids_p50_ms",
        format!("{:.2}", percentile(&find, 0.5)),
    );
    put(
        "find_10_ids_p99_ms",
        format!("{:.2}", percentile(&find, 0.99)),
    );
    put("find_by_state_scan_ms", format!("{:.0}", ms(scan)));
}
