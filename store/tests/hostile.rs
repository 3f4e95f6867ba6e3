//! Hostile stored bytes *behind valid checksums*: values that decode field by field but name
//! numbers no writer makes (versions and positions at `u64::MAX`, runs that wrap, counts in
//! the billions). Every decoder, every accessor the store and `verify` use, `verify` itself
//! and the store's read paths must answer with a value or a typed error — never a panic in a
//! debug build, never a wrapped number in a release build — and `verify` must stay bounded.
//!
//! The named tests are the inputs a checksum-fixing fuzzer found (issue 14); the property
//! tests generate such values at random (2,000 cases by default, 50,000 with
//! `ANNALS_STRESS=1`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use annals_core::{
    CodecId, Direction, Error, EventData, EventId, EventStore, ExpectedVersion, Metadata, Position,
    RecordedEvent, StreamId, Timestamp, Uuid, Version, VersionRange,
};
use annals_store::format::{self, AppendMarks, IndexEntry, StreamEntry};
use annals_store::{MAX_PROBLEMS, MemDisk, MemStore, layout, verify_disk};
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn sid(s: &str) -> StreamId {
    StreamId::new(s).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A disk holding a small healthy store: `acc-1` with three appends, `acc-2` with one.
fn healthy_disk() -> MemDisk {
    let disk = MemDisk::new();
    rt().block_on(async {
        let store = MemStore::open(disk.clone()).unwrap();
        let ev = |n: u64| EventData::json("E", &n).unwrap();
        let (a, b) = (sid("acc-1"), sid("acc-2"));
        store
            .append(&a, ExpectedVersion::NoStream, vec![ev(1), ev(2)])
            .await
            .unwrap();
        store
            .append(&b, ExpectedVersion::NoStream, vec![ev(3)])
            .await
            .unwrap();
        store
            .append(&a, ExpectedVersion::Exact(Version(2)), vec![ev(4)])
            .await
            .unwrap();
    });
    disk
}

/// Opens the store on `disk` (when it opens) and runs every read path: each call returns a
/// value or an error, and never panics.
fn read_everything(disk: &MemDisk) {
    rt().block_on(async {
        let Ok(store) = MemStore::open(disk.clone()) else {
            return;
        };
        let _ = store.streams();
        let _ = store.read_all(Position::NONE, 1000).await;
        let _ = store.read_all(Position::MAX, 10).await;
        for s in ["acc-1", "acc-2", "acc-9", "z-3", "x"] {
            let s = sid(s);
            for dir in [Direction::Forward, Direction::Backward] {
                let _ = store.read_stream(&s, VersionRange::ALL, dir, 100).await;
                let _ = store.read_stream(&s, (2..=3).into(), dir, 100).await;
            }
            let _ = store.stream_head(&s).await;
            // Appends decide against what is stored: an error or a clean append.
            let _ = store
                .append(
                    &s,
                    ExpectedVersion::Any,
                    vec![EventData::json("N", &0).unwrap()],
                )
                .await;
        }
        let _ = store.read_event(EventId::new()).await;
        let _ = store
            .read_event(EventId::from_bytes(u128::MAX.to_be_bytes()))
            .await;
    });
}

/// Verify finishes quickly with a bounded report that is not clean.
fn verify_finds_damage(disk: &MemDisk) -> annals_store::VerifyReport {
    let started = Instant::now();
    let report = verify_disk(disk).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "verify took {:?}",
        started.elapsed()
    );
    assert!(!report.ok(), "damage not found");
    assert!(report.problems.len() <= MAX_PROBLEMS);
    report
}

// ---- the inputs found by fuzzing, as named regression tests ----

/// Postmortem: a stream-index key naming version `u64::MAX` made the format-1/2 decoder
/// compute `key + 1 - count` (a debug panic, a wrap in release), and `annals verify`,
/// `streams` and `read` panicked on it. Keys naming 0 or `u64::MAX` are now corrupt.
#[test]
fn stream_key_at_the_largest_version_is_corrupt() {
    let value = hex("010100000000000000010000000db4fbf1");
    assert!(StreamEntry::decode(Version(1), &value, "x").is_ok());
    let e = StreamEntry::decode(Version(u64::MAX), &value, "x").unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    let disk = healthy_disk();
    disk.overwrite(
        &layout::stream_key(&sid("acc-1"), Version(u64::MAX)),
        &value,
    );
    let report = verify_finds_damage(&disk);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.what.contains("largest version")),
        "{:?}",
        report.problems
    );
    read_everything(&disk);
}

/// Postmortem: a format-2 entry with chunk and first position `u64::MAX` and two events was
/// accepted, and `verify` then computed positions past `u64::MAX`. Runs must now end below
/// `Position::MAX` and within what one chunk can count.
#[test]
fn run_past_the_largest_position_is_corrupt() {
    let value = hex("02ffffffffffffffffffffffffffffffff02000000a3c550f2");
    assert!(matches!(
        StreamEntry::decode(Version(5), &value, "x"),
        Err(Error::Corrupt { .. })
    ));
    let disk = healthy_disk();
    disk.overwrite(&layout::stream_key(&sid("acc-1"), Version(5)), &value);
    verify_finds_damage(&disk);
    read_everything(&disk);
}

/// Postmortem: an undecodable chunk under event key `u64::MAX` made `verify` compute the
/// key after it (`u64::MAX + 1`).
#[test]
fn chunk_under_the_largest_position_is_reported() {
    let disk = healthy_disk();
    disk.overwrite(
        &layout::event_key(Position::MAX),
        b"\x02\x01\x00\x00\x00garbage",
    );
    let report = verify_finds_damage(&disk);
    assert_eq!(report.events, 4);
    read_everything(&disk);
    // A decodable-looking chunk there too (a record claiming the largest position).
    let disk = healthy_disk();
    let mut recs = Vec::new();
    format::encode_record(&event(u64::MAX, 1), AppendMarks::of(0, 1), &mut recs);
    disk.overwrite(
        &layout::event_key(Position::MAX),
        &format::encode_chunk(1, &recs),
    );
    verify_finds_damage(&disk);
    read_everything(&disk);
}

/// Postmortem: one 25-byte entry claiming 10 million positions made `verify` build one
/// problem per position (+1.1 GiB, 6 s); at `u32::MAX` per run and 16 runs it would have
/// needed hundreds of GiB. Positions past the log are now one range, found without walking.
#[test]
fn entries_claiming_billions_of_positions_are_one_problem() {
    for count in [10_000_000u32, u32::MAX - 1] {
        let disk = healthy_disk();
        let run = IndexEntry {
            chunk: Position(1),
            first_position: Position(1),
            count,
        };
        disk.overwrite(
            &layout::stream_key(&sid("acc-9"), Version(u64::from(count))),
            &run.encode(),
        );
        let report = verify_finds_damage(&disk);
        assert!(report.problem_count() < 20, "{:?}", report.problems);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.what.contains("past the log") && p.through.0 == u64::from(count)),
            "{:?}",
            report.problems
        );
        read_everything(&disk);
    }
    // Sixteen runs of that size in one format-3 entry.
    let disk = healthy_disk();
    let mut entry = StreamEntry::new(
        Version(1),
        IndexEntry {
            chunk: Position(1),
            first_position: Position(1),
            count: u32::MAX,
        },
    );
    for i in 1..16u64 {
        entry.runs.push(IndexEntry {
            chunk: Position(i << 32),
            first_position: Position(i << 32),
            count: u32::MAX,
        });
    }
    let bytes = entry.encode();
    assert!(StreamEntry::decode(Version(1), &bytes, "x").is_ok());
    disk.overwrite(&layout::stream_key(&sid("acc-9"), Version(1)), &bytes);
    let report = verify_finds_damage(&disk);
    assert!(report.problem_count() < 40, "{:?}", report.problems);
    read_everything(&disk);
}

/// Many damaged keys: the report lists `MAX_PROBLEMS` and counts the rest.
#[test]
fn the_report_is_capped_and_counts_the_rest() {
    let disk = healthy_disk();
    for i in 0..(MAX_PROBLEMS as u64 + 500) {
        // Every other position, so that no two problems merge into one range.
        disk.overwrite(&layout::event_key(Position(100 + 2 * i)), b"bad");
    }
    let report = verify_finds_damage(&disk);
    assert_eq!(report.problems.len(), MAX_PROBLEMS);
    assert!(report.omitted > 500, "{}", report.omitted);
}

/// A store whose format marker is unknown or missing is reported, not walked as if fine.
#[test]
fn verify_checks_the_format_marker() {
    let disk = healthy_disk();
    assert!(verify_disk(&disk).unwrap().ok());
    disk.overwrite(layout::FORMAT_KEY, &[9]);
    let report = verify_finds_damage(&disk);
    assert!(report.problems[0].what.contains("unknown store format"));
    assert!(MemStore::open(disk.clone()).is_err());
    let empty = MemDisk::new();
    assert!(!verify_disk(&empty).unwrap().ok(), "no marker, no store");
}

// ---- generated hostile values ----

/// Numbers near the edges, where arithmetic wraps, and ordinary ones.
fn edge_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        (0u64..64).prop_map(|d| u64::MAX - d),
        Just(u64::from(u32::MAX)),
        0u64..64,
        any::<u64>(),
    ]
}

fn edge_u32() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(1), Just(u32::MAX), 0u32..32, any::<u32>()]
}

fn run() -> impl Strategy<Value = IndexEntry> {
    (edge_u64(), edge_u64(), edge_u32()).prop_map(|(chunk, first, count)| IndexEntry {
        chunk: Position(chunk),
        first_position: Position(first),
        count,
    })
}

fn event(position: u64, version: u64) -> RecordedEvent {
    RecordedEvent::new(
        Position(position),
        sid("acc-1"),
        Version(version),
        Timestamp(1),
        EventData::new(
            EventId::new(),
            "E",
            1,
            CodecId::JSON,
            Metadata::new().with_correlation_id(Uuid::from_bytes([1; 16])),
            b"1".to_vec(),
        ),
    )
}

/// A CRC-valid stored value of some kind, with the key it goes under.
#[derive(Debug, Clone)]
enum Hostile {
    Entry(u64, String, Vec<IndexEntry>),
    OldEntry(u64, String, IndexEntry, bool),
    Bucket(Vec<(u128, u64)>, u64),
    IdEntry(u128, u64),
    Chunk(u64, Vec<(u64, u64, bool, bool)>, u32),
}

fn hostile() -> impl Strategy<Value = Hostile> {
    let stream = prop::sample::select(vec!["acc-1".to_string(), "acc-2".into(), "z-3".into()]);
    prop_oneof![
        (
            edge_u64(),
            stream.clone(),
            prop::collection::vec(run(), 1..20)
        )
            .prop_map(|(k, s, runs)| Hostile::Entry(k, s, runs)),
        (edge_u64(), stream, run(), any::<bool>())
            .prop_map(|(k, s, r, v1)| Hostile::OldEntry(k, s, r, v1)),
        (
            prop::collection::vec((any::<u128>(), edge_u64()), 1..200),
            edge_u64()
        )
            .prop_map(|(ids, k)| Hostile::Bucket(ids, k)),
        (any::<u128>(), edge_u64()).prop_map(|(id, p)| Hostile::IdEntry(id, p)),
        (
            edge_u64(),
            prop::collection::vec((edge_u64(), edge_u64(), any::<bool>(), any::<bool>()), 1..4),
            edge_u32()
        )
            .prop_map(|(k, recs, count)| Hostile::Chunk(k, recs, count)),
    ]
}

/// Writes `h` into `disk`; returns its key and value.
fn put(disk: &MemDisk, h: &Hostile) -> (Vec<u8>, Vec<u8>) {
    let (key, value) = match h {
        Hostile::Entry(k, s, runs) => {
            let mut e = StreamEntry::new(Version(*k), runs[0]);
            e.runs = runs.clone();
            (layout::stream_key(&sid(s), Version(*k)), e.encode())
        }
        Hostile::OldEntry(k, s, r, v1) => (
            layout::stream_key(&sid(s), Version(*k)),
            if *v1 {
                r.encode_v1().to_vec()
            } else {
                r.encode().to_vec()
            },
        ),
        Hostile::Bucket(ids, k) => {
            let ids: Vec<(EventId, Position)> = ids
                .iter()
                .map(|(id, p)| (EventId::from_bytes(id.to_be_bytes()), Position(*p)))
                .collect();
            let prefix = format::id_prefix(ids[0].0);
            (
                layout::id_bucket_key(prefix, Position(*k)).to_vec(),
                format::encode_id_bucket(&ids),
            )
        }
        Hostile::IdEntry(id, p) => (
            layout::id_key(EventId::from_bytes(id.to_be_bytes())).to_vec(),
            format::encode_id_entry(Position(*p)).to_vec(),
        ),
        Hostile::Chunk(k, recs, count) => {
            let mut bytes = Vec::new();
            for (p, v, first, last) in recs {
                let marks = AppendMarks::new(*first, *last);
                format::encode_record(&event(*p, *v), marks, &mut bytes);
            }
            (
                layout::event_key(Position(*k)).to_vec(),
                format::encode_chunk(*count, &bytes),
            )
        }
    };
    disk.overwrite(&key, &value);
    (key, value)
}

fn cases() -> u32 {
    if std::env::var_os("ANNALS_STRESS").is_some() {
        50_000
    } else {
        2_000
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// CRC-valid values with any numbers, under any key-derived number, through every
    /// decoder and accessor: a value or `Corrupt`, and decoded values keep their promises.
    #[test]
    fn crc_valid_values_decode_or_are_corrupt(h in hostile(), key in edge_u64()) {
        let disk = MemDisk::new();
        let (_, value) = put(&disk, &h);
        match StreamEntry::decode(Version(key), &value, "x") {
            // A decoded entry's versions and positions stay below the largest value.
            Ok(e) => prop_assert!(e.keeps_its_promises(), "{e:?}"),
            Err(e) => prop_assert!(matches!(e, Error::Corrupt { .. }), "{e:?}"),
        }
        if let Ok(ids) = format::decode_id_bucket(&value) {
            prop_assert!(ids.iter().all(|(_, p)| *p > Position::NONE && *p < Position::MAX));
        }
        if let Ok(p) = format::decode_id_entry(&value, EventId::new()) {
            prop_assert!(p > Position::NONE && p < Position::MAX);
        }
        match format::decode_chunk_marks(&value, Position(key)) {
            Ok(records) => {
                for (i, (r, _)) in records.iter().enumerate() {
                    prop_assert_eq!(Some(r.position.0), key.checked_add(i as u64));
                    prop_assert!(r.position < Position::MAX && r.version < Version::MAX);
                }
            }
            Err(e) => prop_assert!(matches!(e, Error::Corrupt { .. }), "{e:?}"),
        }
        let _ = IndexEntry::decode(&value, "x");
        let _ = format::decode_record_marks(&value, Position(key));
    }

    /// A healthy store with a few CRC-valid hostile values written over it: `verify` ends,
    /// bounded, and the store's read paths answer without a panic.
    #[test]
    fn verify_and_reads_survive_hostile_values(values in prop::collection::vec(hostile(), 1..4)) {
        let disk = healthy_disk();
        for h in &values {
            put(&disk, h);
        }
        let report = verify_disk(&disk).unwrap();
        prop_assert!(report.problems.len() <= MAX_PROBLEMS);
        read_everything(&disk);
    }
}
