//! Stored bytes are a format that lasts forever: committed fixture files of each format
//! version must keep decoding to the same events.
//!
//! `tests/fixtures/format-v1/` holds a chunk of three records (chunk format 1: one append), a
//! stream index entry (format 1) and an event-id index entry as raw bytes, and `store-v1/` a
//! tiny sled store written with those formats. `format-v2/` and `store-v2/` hold the same for
//! chunk format 2 (one group commit, several streams) and index format 2. Write the fixtures
//! of a *new* format version, never an old one, with
//! `ANNALS_WRITE_FIXTURES=<version> cargo test --test fixtures`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use annals::Uuid;
use annals::prelude::*;
use annals::store::format::{self, IndexEntry};

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
        .map(|i| RecordedEvent {
            position: Position(10 + u64::from(i)),
            stream: stream.clone(),
            version: Version(4 + u64::from(i)),
            id: EventId::from_bytes([i + 1; 16]),
            event_type: ["Opened", "Deposited", "Withdrew"][usize::from(i)].to_string(),
            schema_version: u32::from(i) + 1,
            recorded_at: Timestamp(1_764_000_000_000_000 + i64::from(i)),
            metadata: if i == 1 {
                Metadata::new()
                    .with_correlation_id(Uuid::from_bytes([9; 16]))
                    .with_causation_id(Uuid::from_bytes([8; 16]))
                    .with_header("user", "ada")
                    .with_header("trace", "00-abc-01")
            } else {
                Metadata::new()
            },
            codec: [CodecId::BINCODE, CodecId::JSON, CodecId::RAW][usize::from(i)],
            payload: match i {
                0 => CodecId::BINCODE
                    .encode("Opened", &("ada".to_string(), 100u64))
                    .unwrap(),
                1 => CodecId::JSON
                    .encode("Deposited", &serde_json::json!({"amount": 5}))
                    .unwrap(),
                _ => vec![0, 1, 2, 255],
            },
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
            format::encode_record(e, &mut recs);
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
        let data: Vec<EventData> = events
            .iter()
            .map(|e| EventData {
                id: e.id,
                event_type: e.event_type.clone(),
                schema_version: e.schema_version,
                codec: e.codec,
                metadata: e.metadata.clone(),
                payload: e.payload.clone(),
            })
            .collect();
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
            format::encode_record(e, &mut recs);
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
