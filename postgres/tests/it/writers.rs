//! Two stores (two writers, each with its own memory of the head and the streams) on one
//! schema: every decision one takes from memory after the other wrote must be caught and
//! taken again under the lock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::collections::HashSet;

use annals_conformance::{Harness, check_contiguous, events, sid};
use annals_core::{Error, EventStore, ExpectedVersion, Position, Version};
use annals_postgres::{PgConfig, PgStore};
use common::{CONNECT, Pg};

async fn pair() -> (Pg, PgStore, PgStore) {
    let mut h = Pg::default();
    let a = h.fresh().await;
    let schema = h.schema.clone().unwrap();
    let b = PgStore::open(PgConfig::new(CONNECT, schema)).await.unwrap();
    (h, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_memory_is_caught() {
    let (_h, a, b) = pair().await;
    let s = sid("shared-1");
    let r = a
        .append(&s, ExpectedVersion::NoStream, events("A", 1))
        .await
        .unwrap();
    assert_eq!(r.last_position, Position(1));
    let from_b = events("B", 1);
    let r = b
        .append(&s, ExpectedVersion::Exact(Version(1)), from_b.clone())
        .await
        .unwrap();
    assert_eq!((r.last_version, r.last_position), (Version(2), Position(2)));
    // A remembers version 1: its fast path would accept Exact(1).
    match a
        .append(&s, ExpectedVersion::Exact(Version(1)), events("C", 1))
        .await
    {
        Err(Error::Conflict { actual, .. }) => assert_eq!(actual, Version(2)),
        other => panic!("expected a conflict at 2, got {other:?}"),
    }
    let r = a
        .append(&s, ExpectedVersion::Exact(Version(2)), events("D", 2))
        .await
        .unwrap();
    assert_eq!((r.last_version, r.last_position), (Version(4), Position(4)));
    // B remembers version 2 and head 2.
    let r = b
        .append(&s, ExpectedVersion::Any, events("E", 1))
        .await
        .unwrap();
    assert_eq!((r.last_version, r.last_position), (Version(5), Position(5)));
    // A new stream on A, whose head is stale.
    let r = a
        .append(&sid("other"), ExpectedVersion::NoStream, events("F", 1))
        .await
        .unwrap();
    assert_eq!(r.last_position, Position(6));
    // B's events retried through A: the original result, nothing written.
    let r = a
        .append(&s, ExpectedVersion::Exact(Version(1)), from_b)
        .await
        .unwrap();
    assert_eq!((r.last_version, r.last_position), (Version(2), Position(2)));
    // A stream B created, which A remembers as missing.
    b.append(&sid("late"), ExpectedVersion::NoStream, events("G", 1))
        .await
        .unwrap();
    a.append(&sid("other"), ExpectedVersion::Any, events("H", 1))
        .await
        .unwrap();
    match a
        .append(&sid("late"), ExpectedVersion::NoStream, events("I", 1))
        .await
    {
        Err(Error::Conflict { actual, .. }) => assert_eq!(actual, Version(1)),
        other => panic!("expected a conflict at 1, got {other:?}"),
    }
    assert_eq!(a.head_position(), b.head_position().max(a.head_position()));
    let all = a.read_all(Position::NONE, usize::MAX).await.unwrap();
    assert_eq!(all.len(), 8);
}

/// Four tasks per store append to three shared streams with `Exact(head)`, retrying
/// conflicts: every acked event is stored once, positions and versions are contiguous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_race_on_shared_streams() {
    let (_h, a, b) = pair().await;
    let per_task = 25;
    let mut tasks = Vec::new();
    for (w, store) in [a.clone(), b.clone()].into_iter().enumerate() {
        for t in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut conflicts = 0;
                let mut i = 0;
                while acked.len() < per_task {
                    let s = sid(&format!("race-{}", (t + i) % 3));
                    let head = store
                        .stream_head(&s)
                        .await
                        .unwrap()
                        .unwrap_or(Version::NONE);
                    let expected = if head == Version::NONE {
                        ExpectedVersion::NoStream
                    } else {
                        ExpectedVersion::Exact(head)
                    };
                    let e = events(&format!("W{w}T{t}N{i}"), 1 + i % 2);
                    let ids: Vec<_> = e.iter().map(|e| e.id).collect();
                    match store.append(&s, expected, e).await {
                        Ok(_) => acked.extend(ids),
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                    i += 1;
                }
                (acked, conflicts)
            }));
        }
    }
    let mut acked = HashSet::new();
    let mut conflicts = 0;
    for t in tasks {
        let (ids, c) = t.await.unwrap();
        conflicts += c;
        acked.extend(ids);
    }
    let all = a.read_all(Position::NONE, usize::MAX).await.unwrap();
    check_contiguous(&all);
    let stored: HashSet<_> = all.iter().map(|e| e.id).collect();
    assert_eq!(stored.len(), all.len(), "no event stored twice");
    assert_eq!(stored, acked, "exactly the acked events are stored");
    assert!(conflicts > 0, "the race produced conflicts");
}
