use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

fn policy() -> config::Queue {
    config::Queue::default()
}

fn outgoing(n: usize) -> Outgoing {
    Outgoing {
        account: "acct".into(),
        submitter: 1000,
        notice: false,
        archive_to: None,
        message_id: format!("<{n}@test>"),
        envelope_from: "a@ecole.fr".into(),
        recipients: vec!["b@ecole.fr".into()],
        to: vec!["b@ecole.fr".into()],
        subject: format!("{n}"),
        bytes: format!("Subject: {n}\r\n\r\nbody {n}\r\n").into_bytes(),
    }
}

fn open(dir: &Path, now: &Arc<AtomicU64>) -> Arc<Queue> {
    let store = Store::open(dir).unwrap();
    let now = now.clone();
    Arc::new(
        Queue::open(
            store,
            dir,
            Archive::new(dir),
            policy(),
            Arc::new(move || now.load(Ordering::SeqCst)),
        )
        .unwrap(),
    )
}

/// Enqueues `items`: their ids, in order.
async fn enqueued(q: &Arc<Queue>, items: Vec<Outgoing>) -> Vec<String> {
    q.enqueue(items)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

#[tokio::test]
async fn lifecycle_retries_and_crash_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(1_000_000));
    let q = open(dir.path(), &now);
    let ids = enqueued(&q, (0..3).map(outgoing).collect()).await;
    assert_eq!(
        std::fs::read_dir(dir.path().join("spool")).unwrap().count(),
        1,
        "one segment for the call"
    );

    let a = q.take_due().unwrap().unwrap();
    assert_eq!(a.state, MsgState::Sending);
    let a = q.finish(a, Outcome::Transient("451 later".into())).unwrap();
    assert_eq!((a.state, a.next_attempt), (MsgState::Deferred, 1_000_300));
    let b = q.take_due().unwrap().unwrap();
    let b = q
        .finish(b, Outcome::Permanent("550 no such user".into()))
        .unwrap();
    assert_eq!(
        (b.state, b.last_reply.as_str()),
        (MsgState::Failed, "550 no such user")
    );
    let c = q.take_due().unwrap().unwrap();
    assert!(
        q.take_due().unwrap().is_none(),
        "the deferred one is not due yet"
    );
    assert_eq!(q.next_due_in(), Some(300));

    // Crash with c in `sending`: reopening puts it back in the queue.
    drop(q);
    let q = open(dir.path(), &now);
    assert_eq!(q.get(&c.id).unwrap().state, MsgState::Queued);
    let c = q.take_due().unwrap().unwrap();
    let c = q.finish(c, Outcome::Delivered("250 ok".into())).unwrap();
    assert_eq!(c.state, MsgState::Delivered);
    assert!(c.slot.is_none(), "a delivered message's bytes are freed");
    assert!(q.body(&c).is_err());

    now.fetch_add(300, Ordering::SeqCst);
    let a = q.take_due().unwrap().unwrap();
    assert_eq!(a.id, ids[0]);
    assert_eq!(q.body(&a).unwrap(), b"Subject: 0\r\n\r\nbody 0\r\n");
    q.finish(a, Outcome::Transient("451".into())).unwrap();
    assert!(
        matches!(q.hold(&ids[2]), Err(Error::InvalidState(_))),
        "delivered cannot be held"
    );
    // Retrying a delivered message says where its copy is, not that postecole wrote it.
    let e = q.retry(&ids[2]).unwrap_err().to_string();
    assert!(
        e.contains("was delivered") && e.contains("mailctl archive show"),
        "{e}"
    );
    q.hold(&ids[0]).unwrap();
    now.fetch_add(10_000, Ordering::SeqCst);
    assert!(q.take_due().unwrap().is_none(), "held messages wait");
    q.release(&ids[0]).unwrap();
    assert!(q.take_due().unwrap().is_some());
    q.retry(&ids[1]).unwrap();
    q.cancel(&ids[1]).unwrap();
    assert!(q.take_due().unwrap().is_none(), "cancelled is not sent");
    assert!(q.get(&ids[1]).unwrap().slot.is_none());
    // ids[0] is still waiting: its segment stays, with only its bytes readable.
    let segment = std::fs::read(
        dir.path()
            .join("spool")
            .join(&q.get(&ids[0]).unwrap().slot.unwrap().segment),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&segment);
    assert!(text.contains("body 0") && !text.contains("body 1") && !text.contains("body 2"));
}

#[tokio::test]
async fn a_relay_test_brings_deferred_mail_forward() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(1_000_000));
    let q = open(dir.path(), &now);
    q.enqueue((0..2).map(outgoing).collect()).await.unwrap();
    let a = q.take_due().unwrap().unwrap();
    let a = q.finish(a, Outcome::Transient("451 later".into())).unwrap();
    let b = q.take_due().unwrap().unwrap();
    q.finish(b, Outcome::Delivered("250 ok".into())).unwrap();
    assert!(q.take_due().unwrap().is_none(), "deferred for its back-off");

    assert_eq!(
        q.bring_deferred_forward().unwrap(),
        1,
        "the deferred one only"
    );
    let due = q.take_due().unwrap().expect("due now");
    assert_eq!(due.id, a.id);
    assert_eq!(q.bring_deferred_forward().unwrap(), 0);
}

#[tokio::test]
async fn records_the_store_lost_in_a_crash_come_back_from_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(1_000_000));
    let q = open(dir.path(), &now);
    let sent = q.enqueue(vec![outgoing(6)]).await.unwrap().remove(0);
    let taken = q.take_due().unwrap().unwrap();
    q.finish(taken, Outcome::Delivered("250 ok".into()))
        .unwrap();
    let lost = q.enqueue(vec![outgoing(7)]).await.unwrap().remove(0);
    q.store.remove_messages(&[&lost]).unwrap();
    q.store.flush().unwrap();
    drop(q);

    let q = open(dir.path(), &now);
    let back = q.get(&lost.id).unwrap();
    assert_eq!(
        (back.state, back.message_id.as_str()),
        (MsgState::Queued, "<7@test>")
    );
    assert_eq!(q.body(&back).unwrap(), b"Subject: 7\r\n\r\nbody 7\r\n");
    assert_eq!(q.get(&sent.id).unwrap().state, MsgState::Delivered);
    assert_eq!(
        q.list().unwrap().len(),
        2,
        "the delivered one is not read back"
    );
    assert_eq!(q.take_due().unwrap().unwrap().id, lost.id);
}

#[tokio::test]
async fn an_unreachable_relay_pauses_all_but_a_fresh_notice() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(1_000_000));
    let q = open(dir.path(), &now);
    let bulk = q.enqueue(vec![outgoing(0), outgoing(1)]).await.unwrap();
    let first = q.take_due().unwrap().unwrap();
    q.relay_unreachable("connection refused");
    q.finish(first, Outcome::Transient("connection refused".into()))
        .unwrap();
    assert!(q.take_due().unwrap().is_none(), "bulk mail waits");
    assert_eq!(q.get(&bulk[1].id).unwrap().state, MsgState::Queued);
    assert_eq!(q.next_due_in(), Some(300));

    let mut notice = outgoing(2);
    notice.notice = true;
    let notice = q.enqueue(vec![notice]).await.unwrap().remove(0);
    let taken = q.take_due().unwrap().unwrap();
    assert_eq!(
        taken.id, notice.id,
        "a code e-mail still gets its first try"
    );
    q.finish(taken, Outcome::Transient("connection refused".into()))
        .unwrap();
    assert!(q.take_due().unwrap().is_none());

    now.fetch_add(300, Ordering::SeqCst);
    assert_eq!(
        q.take_due().unwrap().unwrap().id,
        bulk[1].id,
        "tried again after the pause"
    );
    q.relay_unreachable("connection refused");
    q.retry(&bulk[0].id).unwrap();
    assert!(
        q.take_due().unwrap().is_some(),
        "a retry asked by a person resumes at once"
    );
}

#[tokio::test]
async fn gives_up_after_the_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(1_000_000));
    let q = open(dir.path(), &now);
    q.enqueue(vec![outgoing(0)]).await.unwrap();
    let mut attempts = 0;
    loop {
        let Some(r) = q.take_due().unwrap() else {
            now.fetch_add(q.next_due_in().unwrap(), Ordering::SeqCst);
            continue;
        };
        attempts += 1;
        let r = q.finish(r, Outcome::Transient("421 busy".into())).unwrap();
        if r.state == MsgState::Failed {
            assert!(r.last_reply.contains("421 busy"), "{}", r.last_reply);
            break;
        }
        assert!(attempts < 200, "never gave up");
    }
    // 300+600+1200+2400 then 4000 s steps up to 432000 s.
    assert!((100..120).contains(&attempts), "{attempts} attempts");
}

#[tokio::test]
async fn orphan_spool_files_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(1_000_000));
    drop(open(dir.path(), &now));
    std::fs::write(dir.path().join("spool/orphan.spool"), "x").unwrap();
    let _q = open(dir.path(), &now);
    assert!(!dir.path().join("spool/orphan.spool").exists());
}

#[tokio::test]
async fn a_store_restored_from_an_older_snapshot_sends_no_ended_message_again() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(1_000_000));
    let q = open(dir.path(), &now);
    let ids = enqueued(&q, (0..4).map(outgoing).collect()).await;
    q.store.snapshot(1_000_000, false).unwrap().unwrap();
    let late = q.enqueue(vec![outgoing(4)]).await.unwrap().remove(0).id;
    let mut ended = Vec::new();
    for _ in 0..5 {
        let r = q.take_due().unwrap().unwrap();
        ended.push(r);
    }
    let take = |ended: &mut Vec<Record>, id: &str| {
        let i = ended.iter().position(|r| r.id == id).unwrap();
        ended.remove(i)
    };
    let sent = take(&mut ended, &ids[0]);
    q.finish(sent, Outcome::Delivered("250 ok".into())).unwrap();
    let refused = take(&mut ended, &ids[1]);
    q.finish(refused, Outcome::Permanent("550 no".into()))
        .unwrap();
    let late_r = take(&mut ended, &late);
    q.finish(late_r, Outcome::Permanent("550 no".into()))
        .unwrap();
    for r in ended {
        q.finish(r, Outcome::Transient("451 later".into())).unwrap();
    }
    q.cancel(&ids[2]).unwrap();
    drop(q);
    std::fs::remove_dir_all(dir.path().join("db")).unwrap();

    let q = open(dir.path(), &now);
    let state = |id: &str| q.get(id).unwrap().state;
    assert_eq!(state(&ids[0]), MsgState::Delivered);
    assert_eq!(state(&ids[1]), MsgState::Failed);
    assert_eq!(state(&ids[2]), MsgState::Cancelled);
    assert_eq!(state(&ids[3]), MsgState::Queued, "as in the snapshot");
    assert_eq!(state(&late), MsgState::Failed, "read back from the spool");
    let r = q.get(&late).unwrap();
    assert!(
        q.body(&r).unwrap().starts_with(b"Subject: 4"),
        "retry stays possible"
    );
    let due = q.take_due().unwrap().unwrap();
    assert_eq!(due.id, ids[3]);
    assert!(
        q.take_due().unwrap().is_none(),
        "nothing else is sent again"
    );
    q.retry(&late).unwrap();
    drop(q);
    std::fs::remove_dir_all(dir.path().join("db")).unwrap();
    let q = open(dir.path(), &now);
    assert_eq!(
        q.get(&late).unwrap().state,
        MsgState::Queued,
        "a retried message is waiting again"
    );
}

#[tokio::test]
async fn recipients_and_subject_never_reach_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(1_000_000));
    let q = open(dir.path(), &now);
    let mut message = outgoing(0);
    message.recipients = vec!["famille-dupont@exemple.fr".into()];
    message.to = message.recipients.clone();
    message.subject = "Convocation famille-dupont".into();
    let id = q.enqueue(vec![message]).await.unwrap().remove(0).id;
    assert_eq!(q.get(&id).unwrap().to, ["famille-dupont@exemple.fr"]);
    assert_eq!(q.get(&id).unwrap().subject, "Convocation famille-dupont");
    assert_eq!(q.list().unwrap()[0].to, ["famille-dupont@exemple.fr"]);
    let r = q.take_due().unwrap().unwrap();
    assert_eq!(
        r.recipients,
        ["famille-dupont@exemple.fr"],
        "for the envelope"
    );
    q.finish(r, Outcome::Delivered("250 ok".into())).unwrap();
    assert!(q.get(&id).unwrap().to.is_empty());
    assert!(q.get(&id).unwrap().subject.is_empty());
    q.store.snapshot(1_000_000, false).unwrap().unwrap();
    q.store.flush().unwrap();
    let mut stack = vec![dir.path().join("db"), dir.path().join("snapshots")];
    let mut files = 0;
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            files += 1;
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(14).any(|w| w == b"famille-dupont"),
                "{} holds a recipient",
                path.display()
            );
        }
    }
    assert!(files > 2);
}

#[tokio::test]
async fn quotas_count_what_is_in_the_spool_until_it_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(1_000_000));
    let q = open(dir.path(), &now);
    let quota = Quota {
        max_messages: 2,
        max_bytes: 1 << 20,
    };
    let ids: Vec<String> = q
        .enqueue_within(vec![outgoing(0), outgoing(1)], Some(quota))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(q.usage(1000).messages, 2);
    let e = q
        .enqueue_within(vec![outgoing(2)], Some(quota))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::QuotaExceeded(_)), "{e}");
    assert_eq!(q.usage(1000).messages, 2, "a refused call takes nothing");
    q.cancel(&ids[0]).unwrap();
    let r = q.take_due().unwrap().unwrap();
    q.finish(r, Outcome::Delivered("250 ok".into())).unwrap();
    assert_eq!(q.usage(1000), Usage::default());
    // Counted again from the records after a restart.
    q.enqueue_within(vec![outgoing(3)], Some(quota))
        .await
        .unwrap();
    drop(q);
    let q = open(dir.path(), &now);
    assert_eq!(q.usage(1000).messages, 1);
}

#[tokio::test]
async fn a_failed_message_is_sealed_once_its_clear_text_has_lived_its_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(1_000_000));
    let q = open(dir.path(), &now);
    let (ring, recovery) = crate::model::KeyRing::create("le chat noir");
    let mut item = outgoing(0);
    item.archive_to = Some(ring.recipient.clone());
    let id = q.enqueue(vec![item]).await.unwrap().remove(0).id;
    let r = q.take_due().unwrap().unwrap();
    let r = q.finish(r, Outcome::Permanent("550 no".into())).unwrap();
    assert_eq!((r.state, r.failed_at), (MsgState::Failed, 1_000_000));
    assert_eq!(
        q.seal_pending().unwrap(),
        0,
        "kept for retry within its lifetime"
    );
    assert!(q.get(&id).unwrap().slot.is_some());
    now.fetch_add(policy().max_lifetime_secs, Ordering::SeqCst);
    assert_eq!(q.seal_pending().unwrap(), 1);
    let r = q.get(&id).unwrap();
    assert!(r.slot.is_none() && r.archived.is_some(), "{r:?}");
    assert_eq!(q.usage(1000), Usage::default());
    let key = ring.unlock_with_recovery(&recovery).unwrap();
    let group = q
        .archive
        .read("acct", r.archived.as_ref().unwrap(), &key)
        .unwrap()
        .unwrap();
    assert_eq!(group[0].0, id);
    let e = q.retry(&id).unwrap_err().to_string();
    assert!(e.contains("sealed in the archive"), "{e}");
}

#[tokio::test]
async fn find_filters_pages_and_names_messages_without_a_scan() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(1_000_000));
    let q = open(dir.path(), &now);
    let mut items: Vec<Outgoing> = (0..5).map(outgoing).collect();
    items[3].account = "other".into();
    items[4].to = vec!["famille.martin@example.org".into()];
    items[4].recipients = items[4].to.clone();
    let ids = enqueued(&q, items).await;
    let first = q.take_due().unwrap().unwrap();
    q.finish(first, Outcome::Delivered("250 ok".into()))
        .unwrap();
    let everything = |_: &Record| true;
    let find = |f: Filter| q.find(&f, everything).unwrap();

    let delivered = find(Filter {
        states: vec![MsgState::Delivered],
        limit: 10,
        ..Default::default()
    });
    assert_eq!(
        delivered.records.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&ids[0]]
    );
    let other = find(Filter {
        account: Some("other".into()),
        limit: 10,
        ..Default::default()
    });
    assert_eq!(other.records.len(), 1);
    assert_eq!(other.records[0].id, ids[3]);
    let martin = find(Filter {
        to: Some("MARTIN".into()),
        limit: 10,
        ..Default::default()
    });
    assert_eq!(martin.records.len(), 1);
    assert_eq!(martin.records[0].to, ["famille.martin@example.org"]);

    // Two at a time, oldest first, each page starting where the last one ended.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = find(Filter {
            after,
            limit: 2,
            ..Default::default()
        });
        assert!(page.records.len() <= 2);
        seen.extend(page.records.into_iter().map(|r| r.id));
        if page.next == 0 {
            break;
        }
        after = page.next;
    }
    assert_eq!(seen, ids);

    let named = find(Filter {
        ids: Some(vec![ids[2].clone(), "nosuch".into(), ids[1].clone()]),
        limit: 10,
        ..Default::default()
    });
    assert_eq!(
        named.records.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&ids[1], &ids[2]]
    );
    let hidden = q
        .find(
            &Filter {
                limit: 10,
                ..Default::default()
            },
            |r| r.account != "other",
        )
        .unwrap();
    assert!(hidden.records.iter().all(|r| r.account != "other"));
    assert_eq!(hidden.records.len(), 4);
}

#[tokio::test]
async fn records_are_pruned_after_the_retention_and_the_archive_keeps_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(1_000_000));
    let q = open(dir.path(), &now);
    let (ring, recovery) = crate::model::KeyRing::create("le chat noir");
    let mut items: Vec<Outgoing> = (0..3).map(outgoing).collect();
    items[0].archive_to = Some(ring.recipient.clone());
    let ids = enqueued(&q, items).await;
    let sent = q.take_due().unwrap().unwrap();
    q.finish(sent, Outcome::Delivered("250 2.0.0 queued as 4XyZ".into()))
        .unwrap();
    q.cancel(&ids[1]).unwrap();
    // ids[2] still waits: never pruned, however old.
    assert_eq!(q.prune().unwrap(), 0, "within the retention");
    now.fetch_add(policy().retention_secs + 1, Ordering::SeqCst);
    assert_eq!(q.prune().unwrap(), 2);
    assert!(matches!(q.get(&ids[0]), Err(Error::NotFound(_))));
    assert!(matches!(q.get(&ids[1]), Err(Error::NotFound(_))));
    assert_eq!(q.get(&ids[2]).unwrap().state, MsgState::Queued);

    let sealed = q.store.sealed("acct").unwrap();
    assert_eq!(sealed.len(), 1);
    assert_eq!(sealed[0].id, ids[0]);
    assert_eq!(sealed[0].last_reply, "250 2.0.0 queued as 4XyZ");
    let key = ring.unlock_with_recovery(&recovery).unwrap();
    let group = q
        .archive
        .read("acct", &sealed[0].slot, &key)
        .unwrap()
        .unwrap();
    assert_eq!(group[0].0, ids[0]);

    // Reopened: what was pruned stays pruned.
    drop(q);
    let q = open(dir.path(), &now);
    assert!(matches!(q.get(&ids[0]), Err(Error::NotFound(_))));
    assert_eq!(q.store.sealed("acct").unwrap().len(), 1);
}

/// Outcomes are gathered a moment to share one sync; at a stop, those at hand are recorded
/// at once, and those of messages still being sent as their answers come, until the last
/// sender is gone (anything unrecorded would go to the relay again after the restart).
#[tokio::test]
async fn a_stop_records_the_outcomes_at_hand_and_those_still_coming() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(1_000_000));
    let q = open(dir.path(), &now);
    let ids = enqueued(&q, (0..2).map(outgoing).collect()).await;
    let (answered, being_sent) = (
        q.take_due().unwrap().unwrap(),
        q.take_due().unwrap().unwrap(),
    );
    let (done, outcomes) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let recorder = tokio::spawn(super::delivery::record_outcomes(
        q.clone(),
        outcomes,
        stopping,
    ));
    done.send((answered, Outcome::Delivered("250 ok".into())))
        .unwrap();
    stop.send_replace(true);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while q.get(&ids[0]).unwrap().state != MsgState::Delivered {
        assert!(std::time::Instant::now() < deadline, "recorded at the stop");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(!recorder.is_finished(), "a sender is still there");
    done.send((being_sent, Outcome::Delivered("250 ok".into())))
        .unwrap();
    drop(done);
    tokio::time::timeout(std::time::Duration::from_secs(10), recorder)
        .await
        .expect("the recorder returns once the last sender is gone")
        .unwrap();
    assert_eq!(q.get(&ids[1]).unwrap().state, MsgState::Delivered);
}
