//! Stored bytes are a format that lasts forever: committed fixture files of each format
//! version must keep decoding to the same events.
//!
//! `tests/fixtures/format-v1/` holds a chunk of three records (chunk format 1: one append), a
//! stream index entry (format 1) and an event-id index entry as raw bytes, and `store-v1/` a
//! tiny sled store written with those formats. `format-v2/` and `store-v2/` hold the same for
//! chunk format 2 (one group commit, several streams) and index format 2. `format-v3/` holds a
//! multi-run stream-index entry (index format 3) and an id bucket (id format 2), `store-v3/` a
//! store written with them (store format 2). `format-v4/` holds a chunk of records of format
//! 2 (append marks), `store-v4/` a store written with them (store format 3). Write the fixtures
//! of a *new* format version, never an old one, with
//! `ANNALS_WRITE_FIXTURES=<version> cargo test --test it fixtures::`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use annals::Error;
use annals::Uuid;
use annals::prelude::*;
use annals::store::format::{self, IndexEntry, StreamEntry};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn writing(version: &str) -> bool {
    std::env::var("ANNALS_WRITE_FIXTURES").is_ok_and(|v| v == version)
}

/// The events the fixtures hold, with every envelope field set.
fn expected_events() -> Vec<RecordedEvent> {
    let stream = StreamId::new("account-ünïcode-1").unwrap();
    (0..3u8)
        .map(|i| {
            RecordedEvent::new(
                Position(10 + u64::from(i)),
                stream.clone(),
                Version(4 + u64::from(i)),
                Timestamp(1_764_000_000_000_000 + i64::from(i)),
                EventData::new(
                    EventId::from_bytes([i + 1; 16]),
                    ["Opened", "Deposited", "Withdrew"][usize::from(i)].to_string(),
                    u32::from(i) + 1,
                    [CodecId::BINCODE, CodecId::JSON, CodecId::RAW][usize::from(i)],
                    if i == 1 {
                        Metadata::new()
                            .with_correlation_id(Uuid::from_bytes([9; 16]))
                            .with_causation_id(Uuid::from_bytes([8; 16]))
                            .with_header("user", "ada")
                            .with_header("trace", "00-abc-01")
                    } else {
                        Metadata::new()
                    },
                    match i {
                        0 => CodecId::BINCODE
                            .encode("Opened", &("ada".to_string(), 100u64))
                            .unwrap(),
                        1 => CodecId::JSON
                            .encode("Deposited", &serde_json::json!({"amount": 5}))
                            .unwrap(),
                        _ => vec![0, 1, 2, 255],
                    },
                ),
            )
        })
        .collect()
}

#[test]
fn format_v1_record_bytes_still_decode() {
    let dir = dir().join("format-v1");
    let events = expected_events();
    if writing("1") {
        std::fs::create_dir_all(&dir).unwrap();
        let mut recs = Vec::new();
        for e in &events {
            format::encode_record_v1(e, &mut recs);
        }
        std::fs::write(
            dir.join("chunk-at-10.bin"),
            format::encode_chunk_as(format::CHUNK_FORMAT_V1, 3, &recs),
        )
        .unwrap();
        let entry = IndexEntry {
            chunk: Position(10),
            first_position: Position(10),
            count: 3,
        };
        std::fs::write(dir.join("index-entry.bin"), entry.encode_v1()).unwrap();
        std::fs::write(
            dir.join("id-entry.bin"),
            format::encode_id_entry(Position(11)),
        )
        .unwrap();
    }
    let chunk = std::fs::read(dir.join("chunk-at-10.bin")).unwrap();
    assert_eq!(format::decode_chunk(&chunk, Position(10)).unwrap(), events);
    let (ada, amount): (String, u64) = events[0].decode().unwrap();
    assert_eq!((ada.as_str(), amount), ("ada", 100));
    let entry = std::fs::read(dir.join("index-entry.bin")).unwrap();
    assert_eq!(
        IndexEntry::decode(&entry, "fixture").unwrap(),
        IndexEntry {
            chunk: Position(10),
            first_position: Position(10),
            count: 3
        }
    );
    let id = std::fs::read(dir.join("id-entry.bin")).unwrap();
    assert_eq!(
        format::decode_id_entry(&id, EventId::new()).unwrap(),
        Position(11)
    );
}

/// Opens a copy of a fixture store (opening writes; the fixture stays as committed).
fn open_copy(fixture: &Path) -> (tempfile::TempDir, SledStore) {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(fixture, tmp.path());
    let store = SledStore::open(tmp.path()).unwrap();
    (tmp, store)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn format_v1_store_still_opens() {
    let fixture = dir().join("store-v1");
    let events = expected_events();
    if writing("1") {
        let _ = std::fs::remove_dir_all(&fixture);
        let store = SledStore::open(&fixture).unwrap();
        let data: Vec<EventData> = events.iter().map(RecordedEvent::to_data).collect();
        store
            .append(
                &events[0].stream,
                ExpectedVersion::NoStream,
                data[..1].to_vec(),
            )
            .await
            .unwrap();
        store
            .append(
                &StreamId::new("other-1").unwrap(),
                ExpectedVersion::NoStream,
                data[1..2].to_vec(),
            )
            .await
            .unwrap();
        store
            .append(
                &events[0].stream,
                ExpectedVersion::Exact(Version(1)),
                data[2..].to_vec(),
            )
            .await
            .unwrap();
        drop(store);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (_tmp, store) = open_copy(&fixture);
    let all = store.read_all(Position::NONE, 100).await.unwrap();
    assert_eq!(all.len(), 3);
    for (got, want) in all.iter().zip(&events) {
        assert_eq!(got.id, want.id);
        assert_eq!(got.event_type, want.event_type);
        assert_eq!(got.metadata, want.metadata);
        assert_eq!(got.payload, want.payload);
        assert_eq!(got.codec, want.codec);
    }
    assert_eq!(all[1].stream.as_str(), "other-1");
    assert_eq!(
        store.stream_head(&events[0].stream).await.unwrap(),
        Some(Version(2))
    );
    let r = store
        .append(
            &events[0].stream,
            ExpectedVersion::Exact(Version(2)),
            vec![EventData::json("New", &1).unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(r.first_position, Position(4));
}

/// Chunk format 2: a group of records of several streams; index format 2 names the chunk and
/// the run inside it.
#[test]
fn format_v2_group_chunk_and_index_entry_still_decode() {
    let dir = dir().join("format-v2");
    let mut events = expected_events();
    events[1].stream = StreamId::new("other-7").unwrap();
    events[1].version = Version(1);
    events[2].version = Version(5);
    let entry = IndexEntry {
        chunk: Position(10),
        first_position: Position(12),
        count: 1,
    };
    if writing("2") {
        std::fs::create_dir_all(&dir).unwrap();
        let mut recs = Vec::new();
        for e in &events {
            format::encode_record_v1(e, &mut recs);
        }
        std::fs::write(
            dir.join("group-chunk-at-10.bin"),
            format::encode_chunk(3, &recs),
        )
        .unwrap();
        std::fs::write(dir.join("index-entry.bin"), entry.encode()).unwrap();
    }
    let chunk = std::fs::read(dir.join("group-chunk-at-10.bin")).unwrap();
    assert_eq!(chunk[0], format::CHUNK_FORMAT_V2);
    assert_eq!(format::decode_chunk(&chunk, Position(10)).unwrap(), events);
    let bytes = std::fs::read(dir.join("index-entry.bin")).unwrap();
    assert_eq!(IndexEntry::decode(&bytes, "fixture").unwrap(), entry);
}

/// A store written with group chunks still opens, and reads per stream and in order.
#[tokio::test]
async fn format_v2_store_still_opens() {
    let fixture = dir().join("store-v2");
    let a = StreamId::new("acc-a").unwrap();
    let b = StreamId::new("acc-b").unwrap();
    if writing("2") {
        let _ = std::fs::remove_dir_all(&fixture);
        let store = SledStore::open(&fixture).unwrap();
        // Concurrent appends land in shared group chunks.
        let mut tasks = Vec::new();
        for i in 0..8u64 {
            let store = store.clone();
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                let events = (0..3)
                    .map(|j| EventData::json("Deposited", &(i * 10 + j)).unwrap())
                    .collect();
                store
                    .append(&s, ExpectedVersion::Any, events)
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        drop(store);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (_tmp, store) = open_copy(&fixture);
    let all = store.read_all(Position::NONE, 100).await.unwrap();
    assert_eq!(all.len(), 24);
    for s in [&a, &b] {
        let events = store
            .read_stream(s, VersionRange::ALL, Direction::Forward, 100)
            .await
            .unwrap();
        assert_eq!(events.len(), 12);
        let mut sums: Vec<u64> = events
            .iter()
            .map(|e| e.decode::<u64>().unwrap() % 10)
            .collect();
        sums.sort_unstable();
        assert_eq!(sums, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.version, Version(i as u64 + 1));
        }
    }
}

/// Stream-index format 3 (several runs, keyed by the entry's first version) and event-id
/// buckets (format 2, UUID v7 ids of one millisecond).
#[test]
fn format_v3_index_entries_still_decode() {
    let dir = dir().join("format-v3");
    let run = |chunk, first, count| IndexEntry {
        chunk: Position(chunk),
        first_position: Position(first),
        count,
    };
    let mut entry = StreamEntry::new(Version(4), run(10, 10, 1));
    entry.runs.push(run(10, 12, 1));
    entry.runs.push(run(20, 25, 3));
    // Two UUID v7 ids of one millisecond.
    let v7 =
        |last: u8| EventId::from_bytes([1, 2, 3, 4, 5, 6, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, last]);
    let ids = vec![(v7(1), Position(10)), (v7(2), Position(12))];
    if writing("3") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stream-entry.bin"), entry.encode()).unwrap();
        std::fs::write(dir.join("id-bucket.bin"), format::encode_id_bucket(&ids)).unwrap();
    }
    let bytes = std::fs::read(dir.join("stream-entry.bin")).unwrap();
    assert_eq!(bytes[0], format::INDEX_FORMAT_V3);
    let back = StreamEntry::decode(Version(4), &bytes, "fixture").unwrap();
    assert_eq!(back, entry);
    assert_eq!(back.last_version(), Version(8));
    let bytes = std::fs::read(dir.join("id-bucket.bin")).unwrap();
    assert_eq!(format::decode_id_bucket(&bytes).unwrap(), ids);
    assert!(ids.iter().all(|(id, _)| format::bucketed(*id)));
}

/// A store written with multi-run stream entries and id buckets still opens, reads, keeps
/// its ids, and verifies.
#[tokio::test]
async fn format_v3_store_still_opens() {
    let fixture = dir().join("store-v3");
    let a = StreamId::new("acc-a").unwrap();
    let b = StreamId::new("acc-b").unwrap();
    // 20 single-event appends to acc-a (more runs than one entry holds), each followed by
    // one to acc-b; acc-b's ids are counter-like (not UUID v7).
    let data = |i: u64| EventData::json("Deposited", &i).unwrap();
    let counter = |i: u64| EventId::from_bytes(u128::from(i).to_be_bytes());
    if writing("3") {
        let _ = std::fs::remove_dir_all(&fixture);
        let store = SledStore::open(&fixture).unwrap();
        for i in 0..20u64 {
            store
                .append(&a, ExpectedVersion::Exact(Version(i)), vec![data(i)])
                .await
                .unwrap();
            let mut e = data(100 + i);
            e.id = counter(i + 1);
            store
                .append(&b, ExpectedVersion::Exact(Version(i)), vec![e])
                .await
                .unwrap();
        }
        drop(store);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The fixture holds what it is meant to: acc-a's 20 runs in two multi-run entries, its
    // UUID v7 ids in buckets, acc-b's counter ids in single entries.
    {
        let raw = tempfile::tempdir().unwrap();
        copy_dir(&fixture, raw.path());
        let db = sled::open(raw.path()).unwrap();
        let a_entries: Vec<_> = db
            .scan_prefix(&annals::store::layout::stream_key(&a, Version::NONE)[..7])
            .map(|kv| kv.unwrap().1)
            .collect();
        assert_eq!(a_entries.len(), 2);
        assert!(a_entries.iter().all(|v| v[0] == format::INDEX_FORMAT_V3));
        let id_keys: Vec<usize> = db
            .scan_prefix([annals::store::layout::IDS])
            .map(|kv| kv.unwrap().0.len())
            .collect();
        assert_eq!(id_keys.iter().filter(|&&n| n == 17).count(), 20);
        assert!(id_keys.iter().filter(|&&n| n == 19).count() >= 1);
    }
    let (tmp, store) = open_copy(&fixture);
    let all = store.read_all(Position::NONE, 100).await.unwrap();
    assert_eq!(all.len(), 40);
    for (s, base) in [(&a, 0u64), (&b, 100)] {
        let events = store
            .read_stream(s, VersionRange::ALL, Direction::Forward, 100)
            .await
            .unwrap();
        let values: Vec<u64> = events.iter().map(|e| e.decode().unwrap()).collect();
        assert_eq!(values, (base..base + 20).collect::<Vec<_>>());
        let back = store
            .read_stream(s, (5..=17).into(), Direction::Backward, 100)
            .await
            .unwrap();
        assert_eq!(back.len(), 13);
        assert_eq!(back[0].version, Version(17));
    }
    // Ids of both kinds are still found: retries give the original result.
    let a3 = &all[4];
    let retry = a3.to_data();
    let r = store
        .append(&a, ExpectedVersion::Any, vec![retry])
        .await
        .unwrap();
    assert_eq!(
        (r.first_position, r.first_version),
        (a3.position, Version(3))
    );
    let mut b_retry = data(102);
    b_retry.id = counter(3);
    let r = store
        .append(&b, ExpectedVersion::Any, vec![b_retry])
        .await
        .unwrap();
    assert_eq!(r.first_version, Version(3));
    assert_eq!(
        store
            .read_event(counter(20))
            .await
            .unwrap()
            .unwrap()
            .position,
        Position(40)
    );
    let r = store
        .append(&a, ExpectedVersion::Exact(Version(20)), vec![data(20)])
        .await
        .unwrap();
    assert_eq!(r.first_position, Position(41));
    drop(store);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let report = annals::store::verify(tmp.path()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

/// Record format 2 (store format 3): flag bits mark each record's place in its append.
#[test]
fn format_v4_records_with_append_marks_still_decode() {
    let dir = dir().join("format-v4");
    let events = expected_events();
    // One append of two events, then one of one.
    let marks = [
        format::AppendMarks::new(true, false),
        format::AppendMarks::new(false, true),
        format::AppendMarks::new(true, true),
    ];
    if writing("4") {
        std::fs::create_dir_all(&dir).unwrap();
        let mut recs = Vec::new();
        for (e, m) in events.iter().zip(marks) {
            format::encode_record(e, m, &mut recs);
        }
        std::fs::write(
            dir.join("group-chunk-at-10.bin"),
            format::encode_chunk(3, &recs),
        )
        .unwrap();
    }
    let chunk = std::fs::read(dir.join("group-chunk-at-10.bin")).unwrap();
    assert_eq!(chunk[5], format::RECORD_FORMAT_V2);
    assert_eq!(format::decode_chunk(&chunk, Position(10)).unwrap(), events);
    let marked = format::decode_chunk_marks(&chunk, Position(10)).unwrap();
    let back: Vec<_> = marked.iter().map(|(_, m)| m.unwrap()).collect();
    assert_eq!(back, marks);
}

/// A store of format 3 (records with append marks): opens, reads, verifies, and tells a whole
/// re-append from a part of one.
#[tokio::test]
async fn format_v4_store_still_opens() {
    let fixture = dir().join("store-v4");
    let s = StreamId::new("acc-a").unwrap();
    let ids: Vec<EventId> = (1..=5u8).map(|i| EventId::from_bytes([i; 16])).collect();
    let data = |i: usize| EventData::json("Deposited", &i).unwrap().with_id(ids[i]);
    if writing("4") {
        let _ = std::fs::remove_dir_all(&fixture);
        let store = SledStore::open(&fixture).unwrap();
        store
            .append(&s, ExpectedVersion::NoStream, (0..3).map(data).collect())
            .await
            .unwrap();
        store
            .append(
                &s,
                ExpectedVersion::Exact(Version(3)),
                (3..5).map(data).collect(),
            )
            .await
            .unwrap();
        drop(store);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (tmp, store) = open_copy(&fixture);
    let all = store.read_all(Position::NONE, 100).await.unwrap();
    assert_eq!(all.len(), 5);
    let r = store
        .append(&s, ExpectedVersion::Any, (3..5).map(data).collect())
        .await
        .unwrap();
    assert_eq!((r.first_version, r.last_version), (Version(4), Version(5)));
    for part in [0..2, 1..3, 2..4] {
        let e = store
            .append(&s, ExpectedVersion::Any, part.clone().map(data).collect())
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::DuplicateEventId { .. }),
            "{part:?}: {e:?}"
        );
    }
    drop(store);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let report = annals::store::verify(tmp.path()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

/// A store of an older format gets the current marker on open and takes new appends to old
/// streams: old single-run entries and new multi-run ones read as one stream.
#[tokio::test]
async fn older_stores_are_upgraded_in_place() {
    for (fixture, stream, head) in [
        ("store-v1", "account-ünïcode-1", 2u64),
        ("store-v2", "acc-a", 12),
        ("store-v3", "acc-a", 20),
    ] {
        let (tmp, store) = open_copy(&dir().join(fixture));
        let s = StreamId::new(stream).unwrap();
        for i in 0..20u64 {
            store
                .append(
                    &s,
                    ExpectedVersion::Exact(Version(head + i)),
                    vec![EventData::json("New", &i).unwrap()],
                )
                .await
                .unwrap();
        }
        let events = store
            .read_stream(&s, VersionRange::ALL, Direction::Forward, 1000)
            .await
            .unwrap();
        assert_eq!(events.len() as u64, head + 20, "{fixture}");
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.version, Version(i as u64 + 1));
        }
        let back = store
            .read_stream(&s, (head - 1..=head + 3).into(), Direction::Backward, 100)
            .await
            .unwrap();
        assert_eq!(back.len(), 5, "{fixture}");
        drop(store);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let report = annals::store::verify(tmp.path()).unwrap();
        assert!(report.ok(), "{fixture}: {:?}", report.problems);
        let db = sled::open(tmp.path()).unwrap();
        assert_eq!(
            db.get(annals::store::layout::FORMAT_KEY)
                .unwrap()
                .unwrap()
                .as_ref(),
            [annals::store::layout::STORE_FORMAT]
        );
    }
}
