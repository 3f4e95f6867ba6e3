//! Writes the named seeds of the committed corpus (`corpus/<target>/<name>`): valid encodings
//! of every stored format version (the fixture files of `tests/fixtures/` among them), so that
//! fuzzing starts from inputs that reach deep into each decoder. Run from `fuzz/` with
//! `cargo run --bin seed_corpus` after a format change; the output is committed. Beside the
//! named seeds, the corpus holds minimized inputs the fuzzer found (hash-named files, kept by
//! `cargo fuzz run <target> <new dir> corpus/<target> work/<target> -- -merge=1`); this
//! program leaves those alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use annals::projections::{Checkpoint, Parked};
use annals::{
    AppendMarks, CodecId, EventData, EventId, Metadata, Position, RecordedEvent, StreamId,
    Timestamp, Uuid, Version,
};
use annals_store::format::{self, IndexEntry, StreamEntry};
use annals_store::layout;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn fixture(path: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus().join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// An exact number for `annals_fuzz::Input::number`: region 3 (raw), then 8 bytes LE.
fn number(n: u64) -> Vec<u8> {
    let mut v = vec![3u8];
    v.extend_from_slice(&n.to_le_bytes());
    v
}

fn keyed(n: u64, value: &[u8]) -> Vec<u8> {
    let mut v = number(n);
    v.extend_from_slice(value);
    v
}

fn event(position: u64, version: u64, id: u128) -> RecordedEvent {
    RecordedEvent::new(
        Position(position),
        StreamId::new("acc-1").unwrap(),
        Version(version),
        Timestamp(1_764_000_000_000_000),
        EventData::new(EventId::from_bytes(id.to_be_bytes()), "Deposited", 1, CodecId::JSON, Metadata::new()
                    .with_correlation_id(Uuid::from_bytes([9; 16]))
                    .with_header("user", "ada"), b"{\"amount\":5}".to_vec()),
    )
}

fn chunk_of(events: &[RecordedEvent]) -> Vec<u8> {
    let mut recs = Vec::new();
    for (i, e) in events.iter().enumerate() {
        format::encode_record(e, AppendMarks::of(i, events.len()), &mut recs);
    }
    format::encode_chunk(events.len() as u32, &recs)
}

fn main() {
    // Records and chunks of every format.
    write(
        "stored_record",
        "chunk-v1",
        &keyed(10, &fixture("format-v1/chunk-at-10.bin")),
    );
    write(
        "stored_record",
        "chunk-v2",
        &keyed(10, &fixture("format-v2/group-chunk-at-10.bin")),
    );
    write(
        "stored_record",
        "chunk-v2-records-v2",
        &keyed(10, &fixture("format-v4/group-chunk-at-10.bin")),
    );
    let events = [event(7, 1, 1), event(8, 2, 2)];
    write(
        "stored_record",
        "chunk-fresh",
        &keyed(7, &chunk_of(&events)),
    );
    let mut v1 = Vec::new();
    format::encode_record_v1(&events[0], &mut v1);
    write("stored_record", "record-v1", &keyed(7, &v1));
    let snapshot =
        annals::Snapshot::new(Version(3), 1, CodecId::BINCODE, vec![1, 2, 3], Timestamp(5));
    write(
        "stored_record",
        "snapshot-v1",
        &keyed(0, &format::encode_snapshot(&snapshot)),
    );
    // Index entries of every format, under the key versions they were written for.
    write(
        "index_entry",
        "stream-v1",
        &keyed(6, &fixture("format-v1/index-entry.bin")),
    );
    write(
        "index_entry",
        "stream-v2",
        &keyed(5, &fixture("format-v2/index-entry.bin")),
    );
    write(
        "index_entry",
        "stream-v3",
        &keyed(4, &fixture("format-v3/stream-entry.bin")),
    );
    let run = |c, f, n| IndexEntry {
        chunk: Position(c),
        first_position: Position(f),
        count: n,
    };
    let mut long = StreamEntry::new(Version(1), run(1, 1, 2));
    for i in 1..16u64 {
        long.runs.push(run(10 * i, 10 * i + 1, 3));
    }
    write("index_entry", "stream-v3-full", &keyed(1, &long.encode()));
    write(
        "index_entry",
        "id-bucket-v2",
        &keyed(0, &fixture("format-v3/id-bucket.bin")),
    );
    write(
        "index_entry",
        "id-entry-v1",
        &keyed(0, &fixture("format-v1/id-entry.bin")),
    );
    // A small healthy store for verify: marker, one chunk of two events, its stream entry,
    // two format-1 id entries (counter ids 1 and 2).
    let mut store = vec![2u8, 4];
    let mut kv = |kind: u8, n: u64, value: &[u8]| {
        store.push(kind);
        store.extend(number(n));
        store.push(u8::try_from(value.len()).unwrap());
        store.extend_from_slice(value);
    };
    let events = [event(1, 1, 1), event(2, 2, 2)];
    kv(0, 1, &chunk_of(&events));
    kv(1, 1, &StreamEntry::new(Version(1), run(1, 1, 2)).encode());
    kv(4, 1, &format::encode_id_entry(Position(1)));
    kv(4, 2, &format::encode_id_entry(Position(2)));
    let report = annals_store::verify_disk(&annals_fuzz::disk_from(&store)).unwrap();
    assert!(report.ok() && report.events == 2, "{:?}", report.problems);
    write("verify_store", "healthy", &store);
    // Keys of every kind.
    let s = StreamId::new("acc-1").unwrap();
    write("layout_keys", "event", &layout::event_key(Position(42)));
    write("layout_keys", "stream", &layout::stream_key(&s, Version(7)));
    write(
        "layout_keys",
        "id",
        &layout::id_key(EventId::from_bytes([7; 16])),
    );
    write(
        "layout_keys",
        "bucket",
        &layout::id_bucket_key([7; 10], Position(9)),
    );
    write("layout_keys", "snapshot", &layout::snapshot_key(&s));
    // Read-model bytes, encoded as the read models encode them.
    let kv_config = bincode::config::standard()
        .with_big_endian()
        .with_fixed_int_encoding();
    let cp = Checkpoint::at(Position(42), 3);
    write(
        "read_model_bytes",
        "kv-checkpoint",
        &bincode::serde::encode_to_vec(cp, kv_config).unwrap(),
    );
    let row = ("Printer jams".to_string(), 2u64);
    write(
        "read_model_bytes",
        "kv-row",
        &bincode::serde::encode_to_vec(&row, kv_config).unwrap(),
    );
    let mut parked = Parked::new("ticket-list", &event(7, 1, 7), "boom", 3);
    parked.parked_at = Timestamp(5);
    write(
        "read_model_bytes",
        "parked",
        &bincode::serde::encode_to_vec(&parked, bincode::config::standard()).unwrap(),
    );
    write(
        "read_model_bytes",
        "search-payload",
        br#"{"position":42,"version":1}"#,
    );
    // Export lines.
    let mut lines = String::new();
    for e in [event(1, 1, 1), event(2, 2, 2)] {
        lines.push_str(&serde_json::to_string(&annals_cli::Line::of(e)).unwrap());
        lines.push('\n');
    }
    write("import_line", "export", lines.as_bytes());
    // Payloads: [codec][kind][payload].
    let mut json = vec![CodecId::JSON.0, 0];
    json.extend_from_slice(br#"{"Opened":{"title":"t","priority":2}}"#);
    write("envelope_payload", "json-opened", &json);
    let mut bin = vec![CodecId::BINCODE.0, 1];
    bin.extend(
        CodecId::BINCODE
            .encode("Tagged", &(vec!["a".to_string()], 7u64))
            .unwrap(),
    );
    write("envelope_payload", "bincode-tagged", &bin);
    // REPL lines.
    for (i, line) in [
        "open Printer jams | The 3rd floor printer jams on A3 | 2",
        "show 1 @v2",
        "show 1 @2026-11-24T10:14:51.848Z",
        "search printer @12",
        "show 1 @-5m",
        "log --follow",
    ]
    .iter()
    .enumerate()
    {
        write("repl_command", &format!("line-{i}"), line.as_bytes());
    }
}
