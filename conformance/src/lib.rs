//! # annals-conformance
//!
//! The one conformance suite every [`EventStore`] implementation must pass: generic async test
//! functions over a [`Harness`] that opens and reopens a store. A backend's test file calls
//! [`conformance_tests!`] once:
//!
//! ```
//! use annals_conformance::Harness;
//! use annals_store::{MemDisk, MemStore};
//!
//! #[derive(Default)]
//! struct Mem(Option<MemDisk>);
//!
//! impl Harness for Mem {
//!     type Store = MemStore;
//!     async fn fresh(&mut self) -> MemStore {
//!         let disk = MemDisk::new();
//!         self.0 = Some(disk.clone());
//!         MemStore::open(disk).unwrap()
//!     }
//!     async fn reopen(&mut self, store: MemStore) -> MemStore {
//!         drop(store);
//!         MemStore::open(self.0.clone().unwrap()).unwrap()
//!     }
//! }
//!
//! // In a test file, `annals_conformance::conformance_tests!(mem, Mem::default());` makes one
//! // `#[tokio::test]` per function of the suite. One of them, run by hand:
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! rt.block_on(annals_conformance::partial_reappends_are_duplicates(Mem::default()));
//! ```
//!
//! Every function panics (with a message) on a contract violation, like any test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::time::Duration;

use annals_core::{
    AppendResult, CodecId, Direction, Error, EventData, EventId, EventStore, ExpectedVersion,
    Filter, Metadata, Position, RecordedEvent, Snapshot, SnapshotStore, StreamAppend, StreamId,
    Timestamp, Uuid, Version, VersionRange,
};

/// Opens stores for the suite.
pub trait Harness: Send + 'static {
    /// The store under test.
    type Store: EventStore + SnapshotStore;
    /// Opens a store on fresh, empty storage.
    fn fresh(&mut self) -> impl Future<Output = Self::Store> + Send;
    /// Closes `store` (dropping every handle) and opens it again on the same storage.
    fn reopen(&mut self, store: Self::Store) -> impl Future<Output = Self::Store> + Send;
}

/// Generates one `#[tokio::test]` per conformance function in a module named `$name`.
#[macro_export]
macro_rules! conformance_tests {
    ($name:ident, $harness:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_tests!(@tests $harness;
                expected_version_modes,
                positions_and_versions,
                read_stream_ranges_and_directions,
                read_all_and_filters,
                subscription_catch_up_then_live,
                idempotent_append,
                invalid_appends,
                metadata_and_codecs_round_trip,
                chunked_and_large_events,
                reopen_persistence,
                concurrent_exact_races,
                concurrent_writers_with_subscriber,
                read_event_by_id,
                snapshots_replace_and_persist,
                long_streams_of_many_appends,
                ids_of_every_kind,
                partial_reappends_are_duplicates,
                subscription_is_a_stream,
                load_latest_is_the_snapshot_and_what_follows,
                append_many_is_all_or_nothing,
                append_many_races,
            );
        }
    };
    (@tests $harness:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() {
                $crate::$test($harness).await;
            }
        )*
    };
}

/// A stream id for tests.
pub fn sid(name: &str) -> StreamId {
    StreamId::new(name).unwrap()
}

/// `n` small JSON events named `{prefix}{i}`.
pub fn events(prefix: &str, n: usize) -> Vec<EventData> {
    (0..n)
        .map(|i| EventData::json(format!("{prefix}{}", i % 3), &format!("{prefix}-{i}")).unwrap())
        .collect()
}

async fn all<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    store.read_all(Position::NONE, usize::MAX).await.unwrap()
}

/// Asserts that positions run 1, 2, 3, … and every stream's versions 1, 2, 3, … in `events`
/// (the whole log, in position order).
pub fn check_contiguous(events: &[RecordedEvent]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.position,
            Position(i as u64 + 1),
            "positions are contiguous from 1"
        );
    }
    let mut heads: BTreeMap<&StreamId, u64> = BTreeMap::new();
    for e in events {
        let h = heads.entry(&e.stream).or_default();
        *h += 1;
        assert_eq!(
            e.version,
            Version(*h),
            "versions of {} are contiguous",
            e.stream
        );
    }
}

fn conflict(r: Result<annals_core::AppendResult, Error>, want_actual: u64) {
    match r {
        Err(Error::Conflict { actual, .. }) => assert_eq!(actual, Version(want_actual)),
        other => panic!("expected a conflict at version {want_actual}, got {other:?}"),
    }
}

/// Every expected-version mode, on new and existing streams.
pub async fn expected_version_modes<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    let a = sid("a-1");
    conflict(
        s.append(&a, ExpectedVersion::StreamExists, events("E", 1))
            .await,
        0,
    );
    conflict(
        s.append(&a, ExpectedVersion::Exact(Version(1)), events("E", 1))
            .await,
        0,
    );
    let r = s
        .append(&a, ExpectedVersion::NoStream, events("E", 2))
        .await
        .unwrap();
    assert_eq!((r.first_version, r.last_version), (Version(1), Version(2)));
    conflict(
        s.append(&a, ExpectedVersion::NoStream, events("E", 1))
            .await,
        2,
    );
    conflict(
        s.append(&a, ExpectedVersion::Exact(Version(0)), events("E", 1))
            .await,
        2,
    );
    conflict(
        s.append(&a, ExpectedVersion::Exact(Version(1)), events("E", 1))
            .await,
        2,
    );
    conflict(
        s.append(&a, ExpectedVersion::Exact(Version(3)), events("E", 1))
            .await,
        2,
    );
    let r = s
        .append(&a, ExpectedVersion::Exact(Version(2)), events("E", 1))
        .await
        .unwrap();
    assert_eq!(r.last_version, Version(3));
    let r = s
        .append(&a, ExpectedVersion::StreamExists, events("E", 1))
        .await
        .unwrap();
    assert_eq!(r.last_version, Version(4));
    let r = s
        .append(&a, ExpectedVersion::Any, events("E", 2))
        .await
        .unwrap();
    assert_eq!(r.last_version, Version(6));
    let b = sid("b-1");
    let r = s
        .append(&b, ExpectedVersion::Any, events("E", 1))
        .await
        .unwrap();
    assert_eq!(r.last_version, Version(1));
    let r = s
        .append(
            &sid("c-1"),
            ExpectedVersion::Exact(Version(0)),
            events("E", 1),
        )
        .await
        .unwrap();
    assert_eq!(r.first_version, Version(1));
    // A failed append stores nothing.
    assert_eq!(all(&s).await.len(), 8);
    assert_eq!(s.stream_head(&a).await.unwrap(), Some(Version(6)));
    assert_eq!(s.stream_head(&sid("nope")).await.unwrap(), None);
    match s
        .append(&a, ExpectedVersion::Exact(Version(1)), events("E", 1))
        .await
    {
        Err(Error::Conflict {
            stream,
            expected,
            actual,
        }) => {
            assert_eq!(stream, a);
            assert_eq!(expected, ExpectedVersion::Exact(Version(1)));
            assert_eq!(actual, Version(6));
        }
        other => panic!("{other:?}"),
    }
}

/// Positions are global and contiguous; versions count per stream; results say so.
pub async fn positions_and_versions<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    assert_eq!(s.head_position(), Position::NONE);
    assert!(all(&s).await.is_empty());
    let mut expected_pos = 1;
    for round in 0..5u64 {
        for (i, name) in ["x-1", "y-1", "z-1"].iter().enumerate() {
            let n = 1 + (i + round as usize) % 3;
            let r = s
                .append(&sid(name), ExpectedVersion::Any, events("E", n))
                .await
                .unwrap();
            assert_eq!(r.first_position, Position(expected_pos));
            assert_eq!(r.last_position, Position(expected_pos + n as u64 - 1));
            assert_eq!(r.last_version.0 - r.first_version.0 + 1, n as u64);
            expected_pos += n as u64;
        }
    }
    assert_eq!(s.head_position(), Position(expected_pos - 1));
    let everything = all(&s).await;
    assert_eq!(everything.len() as u64, expected_pos - 1);
    check_contiguous(&everything);
    let mut last = everything[0].recorded_at;
    for e in &everything {
        assert!(
            e.recorded_at >= last,
            "timestamps never decrease along the log"
        );
        last = e.recorded_at;
    }
}

/// Forward and backward reads over every version range, with limits.
pub async fn read_stream_ranges_and_directions<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    let a = sid("acc-7");
    for n in [1, 3, 1, 4, 2] {
        s.append(&a, ExpectedVersion::Any, events("A", n))
            .await
            .unwrap();
        s.append(&sid("other-1"), ExpectedVersion::Any, events("O", 1))
            .await
            .unwrap();
    }
    let full: Vec<RecordedEvent> = all(&s)
        .await
        .into_iter()
        .filter(|e| e.stream == a)
        .collect();
    assert_eq!(full.len(), 11);
    check_ranges(&s, &a, 1, &[0, 1, 2, 5, 100]).await;
    let tail = s
        .read_stream(&a, (10..).into(), Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(tail.len(), 2);
    assert!(
        s.read_stream(&sid("missing-1"), (..).into(), Direction::Forward, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.read_stream(&sid("missing-1"), (..).into(), Direction::Backward, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A stream whose name is a prefix of another's is not mixed with it.
    s.append(&sid("acc-7x"), ExpectedVersion::Any, events("X", 2))
        .await
        .unwrap();
    assert_eq!(
        s.read_stream(&a, (..).into(), Direction::Backward, 100)
            .await
            .unwrap()
            .len(),
        11
    );
    assert_eq!(s.stream_head(&a).await.unwrap(), Some(Version(11)));
}

/// Reads `stream` over version ranges from 0 to two past its head (bounds `stride` apart,
/// shifted by one each time so that every offset comes up), both directions and each of
/// `limits`, and compares with its events taken from `$all`.
async fn check_ranges<S: EventStore>(s: &S, stream: &StreamId, stride: u64, limits: &[usize]) {
    let full: Vec<RecordedEvent> = all(s)
        .await
        .into_iter()
        .filter(|e| e.stream == *stream)
        .collect();
    let head = full.len() as u64;
    assert_eq!(
        s.stream_head(stream).await.unwrap(),
        full.last().map(|e| e.version)
    );
    let bounds = |from: u64| {
        let mut b: Vec<u64> = (from..=head + 2)
            .step_by(stride as usize)
            .enumerate()
            .map(|(i, v)| (v + i as u64 % stride).min(head + 2))
            .collect();
        b.dedup();
        b
    };
    for start in bounds(0) {
        for end in bounds(start) {
            for &limit in limits {
                let range = VersionRange::from(start..=end);
                let want: Vec<_> = full
                    .iter()
                    .filter(|e| range.contains(e.version))
                    .cloned()
                    .collect();
                let fwd = s
                    .read_stream(stream, range, Direction::Forward, limit)
                    .await
                    .unwrap();
                assert_eq!(
                    fwd,
                    want.iter().take(limit).cloned().collect::<Vec<_>>(),
                    "fwd {start}..={end} limit {limit}"
                );
                let bwd = s
                    .read_stream(stream, range, Direction::Backward, limit)
                    .await
                    .unwrap();
                assert_eq!(
                    bwd,
                    want.iter().rev().take(limit).cloned().collect::<Vec<_>>(),
                    "bwd {start}..={end} limit {limit}"
                );
            }
        }
    }
}

/// A stream of many small appends (more than one index entry's worth in stores that pack a
/// stream's appends together), across a reopen and with concurrent appenders, reads back
/// exactly over every range.
pub async fn long_streams_of_many_appends<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    let a = sid("long-1");
    for (i, n) in [1, 1, 2, 1, 3].iter().cycle().take(40).enumerate() {
        s.append(&a, ExpectedVersion::Any, events("L", *n))
            .await
            .unwrap();
        if i % 3 == 0 {
            s.append(&sid("beside-1"), ExpectedVersion::Any, events("B", 1))
                .await
                .unwrap();
        }
    }
    check_ranges(&s, &a, 5, &[1, 100]).await;
    let s = h.reopen(s).await;
    // Many appends at once, to the stream and to others in between: a group may carry more
    // runs of the stream than one index entry holds.
    for _ in 0..3 {
        let mut tasks = Vec::new();
        for t in 0..48usize {
            let s = s.clone();
            let stream = if t % 2 == 0 {
                a.clone()
            } else {
                sid(&format!("own-{t}"))
            };
            let n = if t % 4 == 0 { 1 } else { 2 };
            tasks.push(tokio::spawn(async move {
                s.append(&stream, ExpectedVersion::Any, events("C", n))
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    let log = all(&s).await;
    check_contiguous(&log);
    assert_eq!(log.iter().filter(|e| e.stream == a).count(), 64 + 108);
    check_ranges(&s, &a, 9, &[1, 7, 1000]).await;
    let s = h.reopen(s).await;
    assert_eq!(s.stream_head(&a).await.unwrap(), Some(Version(172)));
    let r = s
        .append(&a, ExpectedVersion::Exact(Version(172)), events("E", 1))
        .await
        .unwrap();
    assert_eq!(r.first_version, Version(173));
}

/// Idempotency and lookups by id hold for ids of every kind: UUID v7 (several appends in one
/// millisecond), random (v4-shaped) and counter-like ids sharing their leading bytes.
pub async fn ids_of_every_kind<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    let v4 = |n: u8| {
        let mut b = [n.wrapping_mul(37); 16];
        b[6] = 0x40 | (n & 0x0f);
        b[8] = 0x80 | (n & 0x3f);
        EventId::from_bytes(b)
    };
    let counter = |n: u128| EventId::from_bytes(n.to_be_bytes());
    let with_ids = |ids: &[EventId]| {
        let mut batch = events("K", ids.len());
        for (e, id) in batch.iter_mut().zip(ids) {
            e.id = *id;
        }
        batch
    };
    let kinds = [
        // UUID v7, made together: they share their millisecond.
        (0..6).map(|_| EventId::new()).collect::<Vec<_>>(),
        (1..=6).map(v4).collect(),
        (1..=6).map(counter).collect(),
    ];
    for (k, ids) in kinds.iter().enumerate() {
        let stream = sid(&format!("kind-{k}"));
        let first = s
            .append(&stream, ExpectedVersion::NoStream, with_ids(&ids[..3]))
            .await
            .unwrap();
        let second = s
            .append(&stream, ExpectedVersion::Any, with_ids(&ids[3..]))
            .await
            .unwrap();
        assert_eq!(
            s.append(&stream, ExpectedVersion::Any, with_ids(&ids[..3]))
                .await
                .unwrap(),
            first,
            "kind {k}: a retry gives the original result"
        );
        assert!(
            matches!(
                s.append(
                    &sid("elsewhere-1"),
                    ExpectedVersion::Any,
                    with_ids(&ids[4..5])
                )
                .await,
                Err(Error::DuplicateEventId { .. })
            ),
            "kind {k}: an id is stored once in the whole store"
        );
        for (i, id) in ids.iter().enumerate() {
            let e = s.read_event(*id).await.unwrap().unwrap();
            let want = if i < 3 {
                first.first_position.0 + i as u64
            } else {
                second.first_position.0 + i as u64 - 3
            };
            assert_eq!(e.position, Position(want), "kind {k} id {i}");
        }
    }
    assert!(s.read_event(counter(7)).await.unwrap().is_none());
    assert!(s.read_event(v4(7)).await.unwrap().is_none());
    let s = h.reopen(s).await;
    assert_eq!(all(&s).await.len(), 18);
    for ids in &kinds {
        for id in ids {
            assert!(s.read_event(*id).await.unwrap().is_some());
        }
    }
    assert_eq!(
        s.append(
            &sid("kind-2"),
            ExpectedVersion::Any,
            with_ids(&kinds[2][3..])
        )
        .await
        .unwrap()
        .first_version,
        Version(4),
        "a retry after a reopen"
    );
}

/// `$all` reads from every position with limits; filtered reads.
pub async fn read_all_and_filters<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    for i in 0..6 {
        s.append(
            &sid(&format!("order-{i}")),
            ExpectedVersion::NoStream,
            events("Order", 2),
        )
        .await
        .unwrap();
        s.append(
            &sid(&format!("user-{i}")),
            ExpectedVersion::NoStream,
            events("User", 1),
        )
        .await
        .unwrap();
    }
    let everything = all(&s).await;
    assert_eq!(everything.len(), 18);
    check_contiguous(&everything);
    for from in 0..=20u64 {
        for limit in [0usize, 1, 3, 50] {
            let got = s.read_all(Position(from), limit).await.unwrap();
            let want: Vec<_> = everything
                .iter()
                .filter(|e| e.position.0 >= from)
                .take(limit)
                .cloned()
                .collect();
            assert_eq!(got, want, "from {from} limit {limit}");
        }
    }
    let users = s
        .read_all_filtered(Position::NONE, 100, &Filter::stream_prefix("user-"))
        .await
        .unwrap();
    assert_eq!(users.len(), 6);
    assert!(users.iter().all(|e| e.stream.as_str().starts_with("user-")));
    let typed = s
        .read_all_filtered(Position::NONE, 100, &Filter::event_types(["Order1"]))
        .await
        .unwrap();
    assert_eq!(typed.len(), 6);
    let both = Filter::event_types(["Order0"]).and_stream_prefix("order-1");
    let got = s
        .read_all_filtered(Position::NONE, 100, &both)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let limited = s
        .read_all_filtered(Position(5), 2, &Filter::stream_prefix("order-"))
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
    assert!(limited[0].position >= Position(5));
}

/// A subscription catches up, goes live, and filters, with no gap or duplicate at the seam.
pub async fn subscription_catch_up_then_live<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    for i in 0..5 {
        s.append(
            &sid(&format!("s-{i}")),
            ExpectedVersion::Any,
            events("E", 3),
        )
        .await
        .unwrap();
    }
    let mut sub = s.subscribe_all(Position::NONE);
    let mut mid = s.subscribe_all(Position(7));
    let mut filtered = s.subscribe_filtered(Position::NONE, Filter::stream_prefix("s-2"));
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                s.append(
                    &sid(&format!("s-{}", i % 4)),
                    ExpectedVersion::Any,
                    events("L", 1 + i % 2),
                )
                .await
                .unwrap();
            }
        })
    };
    let total = 15 + (0..20).map(|i| 1 + i % 2).sum::<usize>();
    let mut got = Vec::new();
    while got.len() < total {
        let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("live event in time");
        got.push(e.unwrap().unwrap());
    }
    writer.await.unwrap();
    check_contiguous(&got);
    assert_eq!(got, all(&s).await);
    let e = mid.next().await.unwrap().unwrap();
    assert_eq!(e.position, Position(7));
    let batch = mid.next_batch(1000).await.unwrap().unwrap();
    assert_eq!(batch[0].position, Position(8));
    let f = filtered.next().await.unwrap().unwrap();
    assert_eq!(f.stream.as_str(), "s-2");
    // Nothing more arrives when nothing is appended.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), sub.next())
            .await
            .is_err()
    );
    let r = s
        .append(&sid("late-1"), ExpectedVersion::Any, events("E", 1))
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(e.position, r.first_position);
}

/// A subscription polled as a `futures_core::Stream` delivers the same events in the same
/// order, and a read cancelled while it waits (a timeout around `next`) loses nothing.
pub async fn subscription_is_a_stream<H: Harness>(mut h: H) {
    use futures_core::Stream;
    use std::pin::Pin;
    let s = h.fresh().await;
    s.append(&sid("st-1"), ExpectedVersion::Any, events("E", 3))
        .await
        .unwrap();
    let mut sub = s.subscribe_all(Position::NONE);
    let mut polled = Vec::new();
    for _ in 0..3 {
        let e = std::future::poll_fn(|cx| Pin::new(&mut sub).poll_next(cx)).await;
        polled.push(e.unwrap().unwrap());
    }
    assert_eq!(polled, all(&s).await);
    // Cancel waits several times, then append: the event arrives once.
    for _ in 0..3 {
        assert!(
            tokio::time::timeout(Duration::from_millis(20), sub.next())
                .await
                .is_err()
        );
    }
    let r = s
        .append(&sid("st-2"), ExpectedVersion::Any, events("L", 2))
        .await
        .unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(10), sub.next_batch(10))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        batch.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![r.first_position, r.last_position]
    );
    assert_eq!(sub.position(), r.last_position.next());
}

/// Same ids again → the original result, nothing stored twice; reused ids otherwise → error.
pub async fn idempotent_append<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    let a = sid("idem-1");
    let batch = events("E", 3);
    let first = s
        .append(&a, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    s.append(&sid("idem-2"), ExpectedVersion::Any, events("F", 2))
        .await
        .unwrap();
    // A retry with the same expected version, and with any other, gives the original result.
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Any,
        ExpectedVersion::Exact(Version(7)),
    ] {
        let again = s.append(&a, expected, batch.clone()).await.unwrap();
        assert_eq!(again, first, "{expected:?}");
    }
    assert_eq!(all(&s).await.len(), 5, "nothing stored twice");
    assert_eq!(s.stream_head(&a).await.unwrap(), Some(Version(3)));
    // Same id, different content.
    let mut changed = batch.clone();
    changed[0].payload = b"\"other\"".to_vec();
    changed[0].codec = annals_core::CodecId::JSON;
    assert!(matches!(
        s.append(&a, ExpectedVersion::Any, changed).await,
        Err(Error::DuplicateEventId {
            position: Position(1),
            ..
        })
    ));
    // A partial overlap (the tail of an earlier append plus a new event).
    let mut overlap = vec![batch[2].clone()];
    overlap.extend(events("E", 1));
    assert!(matches!(
        s.append(&a, ExpectedVersion::Any, overlap).await,
        Err(Error::DuplicateEventId {
            position: Position(3),
            ..
        })
    ));
    // The same events to another stream.
    assert!(matches!(
        s.append(&sid("idem-3"), ExpectedVersion::Any, batch.clone())
            .await,
        Err(Error::DuplicateEventId { .. })
    ));
    // A new event after an old one.
    let mut mixed = events("E", 1);
    mixed.push(batch[0].clone());
    assert!(matches!(
        s.append(&a, ExpectedVersion::Any, mixed).await,
        Err(Error::DuplicateEventId { .. })
    ));
    // Two identical appends racing: one stores, both get the same result.
    let racing = events("R", 2);
    let race = sid("race-1");
    let (x, y) = tokio::join!(
        s.append(&race, ExpectedVersion::Any, racing.clone()),
        s.append(&race, ExpectedVersion::Any, racing.clone()),
    );
    assert_eq!(x.unwrap(), y.unwrap());
    assert_eq!(
        s.stream_head(&sid("race-1")).await.unwrap(),
        Some(Version(2))
    );
    assert_eq!(all(&s).await.len(), 7);
    check_contiguous(&all(&s).await);
}

/// Regression (issue 14.5): a re-append of *part* of an append, or of parts of two, passed
/// as idempotent and returned versions no append ever returned. Only a whole original append
/// gives the original result; anything else reusing its ids is `DuplicateEventId`.
pub async fn partial_reappends_are_duplicates<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    let x = sid("part-1");
    let a = events("A", 3);
    let b = events("B", 2);
    let ra = s
        .append(&x, ExpectedVersion::NoStream, a.clone())
        .await
        .unwrap();
    let rb = s
        .append(&x, ExpectedVersion::Exact(Version(3)), b.clone())
        .await
        .unwrap();
    check_partial_reappends(&s, &x, &a, &b, &ra, &rb).await;
    // The same after a reopen (from storage, not the writer's memory), and for appends that
    // shared one group commit.
    let s = h.reopen(s).await;
    check_partial_reappends(&s, &x, &a, &b, &ra, &rb).await;
    let y = sid("part-2");
    let (c, d) = (events("C", 2), events("D", 2));
    let (rc, rd) = tokio::join!(
        s.append(&y, ExpectedVersion::Any, c.clone()),
        s.append(&y, ExpectedVersion::Any, d.clone()),
    );
    let (rc, rd) = (rc.unwrap(), rd.unwrap());
    let both: Vec<EventData> = if rc.first_position < rd.first_position {
        c.iter().chain(&d).cloned().collect()
    } else {
        d.iter().chain(&c).cloned().collect()
    };
    let r = s.append(&y, ExpectedVersion::Any, both).await;
    assert!(matches!(r, Err(Error::DuplicateEventId { .. })), "{r:?}");
    assert_eq!(s.append(&y, ExpectedVersion::Any, c).await.unwrap(), rc);
    assert_eq!(s.append(&y, ExpectedVersion::Any, d).await.unwrap(), rd);
}

async fn check_partial_reappends<S: EventStore>(
    s: &S,
    x: &StreamId,
    a: &[EventData],
    b: &[EventData],
    ra: &annals_core::AppendResult,
    rb: &annals_core::AppendResult,
) {
    let parts: Vec<Vec<EventData>> = vec![
        a[..2].to_vec(),
        a[1..].to_vec(),
        a[1..2].to_vec(),
        vec![a[2].clone(), b[0].clone()],
        vec![a[0].clone()],
        vec![b[1].clone()],
        a.iter().chain(b).cloned().collect(),
    ];
    for part in parts {
        let ids: Vec<EventId> = part.iter().map(|e| e.id).collect();
        let r = s.append(x, ExpectedVersion::Any, part).await;
        assert!(
            matches!(r, Err(Error::DuplicateEventId { .. })),
            "{ids:?}: {r:?}"
        );
    }
    // Whole appends are still idempotent.
    assert_eq!(
        &s.append(x, ExpectedVersion::Any, a.to_vec()).await.unwrap(),
        ra
    );
    assert_eq!(
        &s.append(x, ExpectedVersion::Any, b.to_vec()).await.unwrap(),
        rb
    );
    assert_eq!(s.stream_head(x).await.unwrap(), Some(Version(5)));
    assert_eq!(all(s).await.len(), 5);
}

/// Malformed appends are typed errors and store nothing.
pub async fn invalid_appends<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    let a = sid("bad-1");
    assert!(matches!(
        s.append(&a, ExpectedVersion::Any, vec![]).await,
        Err(Error::InvalidEvent { .. })
    ));
    let mut e = events("E", 1);
    e[0].event_type = String::new();
    assert!(matches!(
        s.append(&a, ExpectedVersion::Any, e).await,
        Err(Error::InvalidEvent { .. })
    ));
    let mut e = events("E", 1);
    e[0].event_type = "x".repeat(300);
    assert!(matches!(
        s.append(&a, ExpectedVersion::Any, e).await,
        Err(Error::InvalidEvent { .. })
    ));
    let e = vec![EventData::from_bytes(
        "Big",
        annals_core::CodecId::RAW,
        vec![0; 17 * 1024 * 1024],
    )];
    assert!(matches!(
        s.append(&a, ExpectedVersion::Any, e).await,
        Err(Error::InvalidEvent { .. })
    ));
    let one = events("E", 1);
    let twice = vec![one[0].clone(), one[0].clone()];
    assert!(matches!(
        s.append(&a, ExpectedVersion::Any, twice).await,
        Err(Error::InvalidEvent { .. })
    ));
    for bad in ["", "a\u{7}b", "$all"] {
        assert!(matches!(
            StreamId::new(bad),
            Err(Error::InvalidStreamId { .. })
        ));
    }
    assert!(all(&s).await.is_empty());
    assert_eq!(s.head_position(), Position::NONE);
    // The store still works.
    s.append(&a, ExpectedVersion::NoStream, events("E", 1))
        .await
        .unwrap();
}

/// Every envelope field survives storage.
pub async fn metadata_and_codecs_round_trip<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    let meta = Metadata::new()
        .with_correlation_id(Uuid::now_v7())
        .with_causation_id(Uuid::now_v7())
        .with_header("user", "ada")
        .with_header("tenant", "ünïcode ✓");
    let id = EventId::new();
    let data = vec![
        EventData::encode("Deposited", &(42u64, "note".to_string()))
            .unwrap()
            .with_id(id)
            .with_schema_version(3)
            .with_metadata(meta.clone()),
        EventData::json("Json", &serde_json_like()).unwrap(),
        EventData::from_bytes("Raw", annals_core::CodecId::RAW, vec![]),
    ];
    s.append(&sid("meta-1"), ExpectedVersion::Any, data.clone())
        .await
        .unwrap();
    let got = all(&s).await;
    assert_eq!(got.len(), 3);
    for (g, d) in got.iter().zip(&data) {
        assert!(g.same_content(d), "{g:?} vs {d:?}");
    }
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].schema_version, 3);
    assert_eq!(got[0].metadata, meta);
    assert_eq!(
        got[0].decode::<(u64, String)>().unwrap(),
        (42, "note".to_string())
    );
    assert!(got[2].payload.is_empty());
    assert!(matches!(got[2].decode::<u8>(), Err(Error::Codec { .. })));
}

fn serde_json_like() -> BTreeMap<String, Vec<u32>> {
    BTreeMap::from([("k".to_string(), vec![1, 2, 3])])
}

/// Appends large enough to span several storage units, and one big event.
pub async fn chunked_and_large_events<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    let a = sid("big-1");
    let many: Vec<EventData> = (0..300)
        .map(|i| {
            EventData::from_bytes(
                "Chunky",
                annals_core::CodecId::RAW,
                vec![(i % 251) as u8; 100 + i],
            )
        })
        .collect();
    s.append(&a, ExpectedVersion::NoStream, many.clone())
        .await
        .unwrap();
    let big = vec![EventData::from_bytes(
        "Huge",
        annals_core::CodecId::RAW,
        vec![7; 1 << 20],
    )];
    s.append(&a, ExpectedVersion::Exact(Version(300)), big.clone())
        .await
        .unwrap();
    let got = s
        .read_stream(&a, (..).into(), Direction::Forward, usize::MAX)
        .await
        .unwrap();
    assert_eq!(got.len(), 301);
    for (g, d) in got.iter().zip(many.iter().chain(&big)) {
        assert!(g.same_content(d));
    }
    let mid = s
        .read_stream(&a, (37..=250).into(), Direction::Backward, 500)
        .await
        .unwrap();
    assert_eq!(mid.len(), 214);
    assert_eq!(mid[0].version, Version(250));
    let from_all = s.read_all(Position(123), 10).await.unwrap();
    assert_eq!(from_all[0].position, Position(123));
    assert_eq!(from_all.len(), 10);
}

/// Everything survives close and reopen; positions and idempotency carry on.
pub async fn reopen_persistence<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    let batch = events("E", 2);
    let first = s
        .append(&sid("p-1"), ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    s.append(&sid("p-2"), ExpectedVersion::NoStream, events("E", 3))
        .await
        .unwrap();
    let before = all(&s).await;
    let s = h.reopen(s).await;
    assert_eq!(all(&s).await, before);
    assert_eq!(s.head_position(), Position(5));
    assert_eq!(s.stream_head(&sid("p-2")).await.unwrap(), Some(Version(3)));
    assert_eq!(
        s.append(&sid("p-1"), ExpectedVersion::Any, batch)
            .await
            .unwrap(),
        first
    );
    conflict(
        s.append(
            &sid("p-1"),
            ExpectedVersion::Exact(Version(1)),
            events("E", 1),
        )
        .await,
        2,
    );
    let r = s
        .append(
            &sid("p-1"),
            ExpectedVersion::Exact(Version(2)),
            events("E", 1),
        )
        .await
        .unwrap();
    assert_eq!(r.first_position, Position(6));
    let s = h.reopen(s).await;
    let after = all(&s).await;
    assert_eq!(after.len(), 6);
    check_contiguous(&after);
    assert!(after[5].recorded_at >= after[4].recorded_at);
}

/// 8 tasks race `Exact(v)` appends on one stream: exactly one winner per round.
pub async fn concurrent_exact_races<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    let a = sid("race-1");
    let rounds = 40u64;
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for t in 0..8 {
            let s = s.clone();
            let a = a.clone();
            tasks.push(tokio::spawn(async move {
                let e = events(&format!("T{t}R{round}"), 1 + t % 2);
                s.append(&a, ExpectedVersion::Exact(Version(round * 10)), e)
                    .await
            }));
        }
        let mut winners = 0;
        let mut won_len = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(r) => {
                    winners += 1;
                    won_len = r.last_version.0 - r.first_version.0 + 1;
                }
                Err(Error::Conflict { .. }) => {}
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert_eq!(winners, 1, "round {round}");
        // Pad the stream to the next round's expected version.
        let pad = round * 10 + 10 - (round * 10 + won_len);
        s.append(
            &a,
            ExpectedVersion::Exact(Version(round * 10 + won_len)),
            events("Pad", pad as usize),
        )
        .await
        .unwrap();
    }
    assert_eq!(s.stream_head(&a).await.unwrap(), Some(Version(rounds * 10)));
    check_contiguous(&all(&s).await);
}

/// 8 tasks append to distinct streams while a subscriber follows `$all` from the start:
/// every position exactly once, in order, across the catch-up → live seam.
pub async fn concurrent_writers_with_subscriber<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    for i in 0..50 {
        s.append(
            &sid(&format!("pre-{}", i % 5)),
            ExpectedVersion::Any,
            events("P", 1),
        )
        .await
        .unwrap();
    }
    let per_task = 60usize;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let stream = sid(&format!("writer-{t}"));
            let mut acked = Vec::new();
            for i in 0..per_task {
                let r = s
                    .append(
                        &stream,
                        ExpectedVersion::Exact(Version(i as u64)),
                        events("W", 1),
                    )
                    .await
                    .unwrap();
                acked.push(r.first_position);
            }
            acked
        }));
    }
    // The subscriber starts while the writers run, so it crosses the seam under load.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let total = 50 + 8 * per_task;
    let mut sub = s.subscribe_all(Position::NONE);
    let reader = tokio::spawn(async move {
        let mut seen = Vec::with_capacity(total);
        while seen.len() < total {
            let batch = tokio::time::timeout(Duration::from_secs(20), sub.next_batch(64))
                .await
                .expect("subscriber kept up")
                .unwrap()
                .unwrap();
            seen.extend(batch);
        }
        seen
    });
    let mut acked = HashSet::new();
    for t in tasks {
        for p in t.await.unwrap() {
            assert!(acked.insert(p), "position {p} acked twice");
        }
    }
    let seen = reader.await.unwrap();
    check_contiguous(&seen);
    let seen_positions: HashSet<Position> = seen.iter().map(|e| e.position).collect();
    assert!(acked.is_subset(&seen_positions));
    for t in 0..8 {
        let n = seen
            .iter()
            .filter(|e| e.stream.as_str() == format!("writer-{t}"))
            .count();
        assert_eq!(n, per_task);
    }
}

/// Events can be looked up by id.
pub async fn read_event_by_id<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    let batch = events("E", 3);
    s.append(&sid("id-1"), ExpectedVersion::Any, batch.clone())
        .await
        .unwrap();
    let e = s.read_event(batch[1].id).await.unwrap().unwrap();
    assert_eq!((e.position, e.version), (Position(2), Version(2)));
    assert!(e.same_content(&batch[1]));
    assert!(s.read_event(EventId::new()).await.unwrap().is_none());
    let s = h.reopen(s).await;
    assert_eq!(
        s.read_event(batch[2].id).await.unwrap().unwrap().position,
        Position(3)
    );
}

/// `load_latest`: the snapshot and the events after it (all events without one), at most
/// the limit.
pub async fn load_latest_is_the_snapshot_and_what_follows<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    let stream = sid("latest-1");
    s.append(&stream, ExpectedVersion::Any, events("E", 10))
        .await
        .unwrap();
    s.append(&sid("other-1"), ExpectedVersion::Any, events("O", 3))
        .await
        .unwrap();
    let versions =
        |l: &annals_core::Latest| l.events.iter().map(|e| e.version.0).collect::<Vec<_>>();
    let none = s.load_latest(&stream, 100).await.unwrap();
    assert!(matches!(none.snapshot, Ok(None)));
    assert_eq!(versions(&none), (1..=10).collect::<Vec<_>>());
    let snap = Snapshot::new(
        Version(6),
        1,
        CodecId::JSON,
        b"{}".to_vec(),
        Timestamp::now(),
    );
    s.save_snapshot(&stream, snap.clone()).await.unwrap();
    let after = s.load_latest(&stream, 100).await.unwrap();
    assert_eq!(after.snapshot.as_ref().ok(), Some(&Some(snap)));
    assert_eq!(versions(&after), vec![7, 8, 9, 10]);
    let limited = s.load_latest(&stream, 2).await.unwrap();
    assert_eq!(versions(&limited), vec![7, 8]);
    assert!(
        s.load_latest(&sid("none-1"), 10)
            .await
            .unwrap()
            .events
            .is_empty()
    );
}

/// The latest snapshot per stream replaces older ones and survives a reopen.
pub async fn snapshots_replace_and_persist<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    let a = sid("snap-1");
    assert!(s.load_snapshot(&a).await.unwrap().is_none());
    let snap = |v: u64| {
        Snapshot::new(
            Version(v),
            1,
            annals_core::CodecId::BINCODE,
            vec![v as u8; 10],
            Timestamp(v as i64),
        )
    };
    s.save_snapshot(&a, snap(10)).await.unwrap();
    s.save_snapshot(&a, snap(20)).await.unwrap();
    s.save_snapshot(&sid("snap-2"), snap(5)).await.unwrap();
    assert_eq!(s.load_snapshot(&a).await.unwrap(), Some(snap(20)));
    let s = h.reopen(s).await;
    assert_eq!(s.load_snapshot(&a).await.unwrap(), Some(snap(20)));
    assert_eq!(
        s.load_snapshot(&sid("snap-2")).await.unwrap(),
        Some(snap(5))
    );
    assert!(s.load_snapshot(&sid("snap-3")).await.unwrap().is_none());
}

fn part(stream: &str, expected: ExpectedVersion, events: Vec<EventData>) -> StreamAppend {
    StreamAppend::new(sid(stream), expected, events)
}

/// `append_many`: one contiguous range of positions in the order of the parts; a failing part
/// (a conflict, an empty part, an id used twice) stores nothing of any part; a stream may
/// appear twice; a retried call is idempotent; it all survives a reopen.
pub async fn append_many_is_all_or_nothing<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    s.append(&sid("m-a"), ExpectedVersion::NoStream, events("A", 2))
        .await
        .unwrap();
    let parts = vec![
        part("m-a", ExpectedVersion::Exact(Version(2)), events("A", 2)),
        part("m-b", ExpectedVersion::NoStream, events("B", 3)),
        part("m-c", ExpectedVersion::Any, events("C", 1)),
    ];
    let results = s.append_many(parts.clone()).await.unwrap();
    assert_eq!(results.len(), 3);
    let spans: Vec<(u64, u64, u64, u64)> = results
        .iter()
        .map(|r| {
            (
                r.first_version.0,
                r.last_version.0,
                r.first_position.0,
                r.last_position.0,
            )
        })
        .collect();
    assert_eq!(spans, [(3, 4, 3, 4), (1, 3, 5, 7), (1, 1, 8, 8)]);
    assert_eq!(s.head_position(), Position(8));
    // Retried: the original results, nothing stored twice.
    assert_eq!(s.append_many(parts).await.unwrap(), results);
    assert_eq!(s.head_position(), Position(8));

    let untouched = |s: H::Store| async move {
        assert_eq!(s.head_position(), Position(8), "nothing was stored");
        assert_eq!(s.stream_head(&sid("m-a")).await.unwrap(), Some(Version(4)));
        assert_eq!(s.stream_head(&sid("m-d")).await.unwrap(), None);
        assert_eq!(all(&s).await.len(), 8);
        s
    };
    // The last part conflicts: the first is not stored either.
    let r = s
        .append_many(vec![
            part("m-d", ExpectedVersion::NoStream, events("D", 2)),
            part("m-a", ExpectedVersion::Exact(Version(3)), events("A", 1)),
        ])
        .await;
    match r {
        Err(Error::Conflict { stream, actual, .. }) => {
            assert_eq!((stream, actual), (sid("m-a"), Version(4)));
        }
        other => panic!("expected a conflict on m-a, got {other:?}"),
    }
    let s = untouched(s).await;
    // An empty part.
    let r = s
        .append_many(vec![
            part("m-d", ExpectedVersion::Any, events("D", 1)),
            part("m-e", ExpectedVersion::Any, Vec::new()),
        ])
        .await;
    assert!(matches!(r, Err(Error::InvalidEvent { .. })), "{r:?}");
    let s = untouched(s).await;
    // One id in two parts.
    let twice = events("T", 1);
    let mut other = events("U", 1);
    other[0].id = twice[0].id;
    let r = s
        .append_many(vec![
            part("m-d", ExpectedVersion::Any, twice),
            part("m-e", ExpectedVersion::Any, other),
        ])
        .await;
    assert!(matches!(r, Err(Error::DuplicateEventId { .. })), "{r:?}");
    let s = untouched(s).await;
    // No parts at all.
    let r = s.append_many(Vec::new()).await;
    assert!(matches!(r, Err(Error::InvalidEvent { .. })), "{r:?}");
    // A stream twice: the second part expects what the first leaves; a wrong expectation
    // there undoes the first part too.
    let r = s
        .append_many(vec![
            part("m-d", ExpectedVersion::NoStream, events("D", 2)),
            part("m-d", ExpectedVersion::Exact(Version(1)), events("D", 1)),
        ])
        .await;
    assert!(matches!(r, Err(Error::Conflict { .. })), "{r:?}");
    let s = untouched(s).await;
    let results = s
        .append_many(vec![
            part("m-d", ExpectedVersion::NoStream, events("D", 2)),
            part("m-d", ExpectedVersion::Exact(Version(2)), events("D", 1)),
        ])
        .await
        .unwrap();
    assert_eq!(
        (results[1].first_version, results[1].last_position),
        (Version(3), Position(11))
    );
    let s = h.reopen(s).await;
    let log = all(&s).await;
    check_contiguous(&log);
    assert_eq!(log.len(), 11);
    assert_eq!(s.stream_head(&sid("m-d")).await.unwrap(), Some(Version(3)));
}

/// 8 tasks race `append_many`s over two shared streams (each with a third stream of its own),
/// against plain appends to one of them: per round exactly one multi-append wins, and a loser
/// stores nothing, not even on its own stream.
pub async fn append_many_races<H: Harness>(mut h: H) {
    let s = h.fresh().await;
    let rounds = 30u64;
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let own = format!("race-own-{t}-{round}");
                s.append_many(vec![
                    part(
                        "race-x",
                        ExpectedVersion::Exact(Version(round)),
                        events("X", 1),
                    ),
                    part(&own, ExpectedVersion::NoStream, events("O", 2)),
                    part(
                        "race-y",
                        ExpectedVersion::Exact(Version(round * 2)),
                        events("Y", 2),
                    ),
                ])
                .await
                .map(|r| (t, r))
            }));
        }
        // A plain append that expects what no multi-append leaves: it never wins.
        let plain = {
            let s = s.clone();
            tokio::spawn(async move {
                s.append(
                    &sid("race-y"),
                    ExpectedVersion::Exact(Version(round * 2 + 1)),
                    events("P", 1),
                )
                .await
            })
        };
        let mut winners: Vec<(u64, Vec<AppendResult>)> = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(w) => winners.push(w),
                Err(Error::Conflict { .. }) => {}
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(matches!(plain.await.unwrap(), Err(Error::Conflict { .. })));
        assert_eq!(winners.len(), 1, "round {round}");
        let (winner, results) = &winners[0];
        assert_eq!(results[0].last_position.next(), results[1].first_position);
        assert_eq!(results[1].last_position.next(), results[2].first_position);
        for t in 0..8u64 {
            let own = sid(&format!("race-own-{t}-{round}"));
            let head = s.stream_head(&own).await.unwrap();
            assert_eq!(head.is_some(), t == *winner, "round {round}, task {t}");
        }
    }
    assert_eq!(s.head_position(), Position(rounds * 5));
    check_contiguous(&all(&s).await);
}
