//! Stored-record decoding: chunks, records, index entries, id entries and snapshots must turn
//! any bytes into a value or a typed error, never a panic.
#![no_main]

use annals::{EventId, Position};
use annals_store::format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = format::decode_chunk(data, Position(1));
    let _ = format::decode_record(data, Position(1));
    let _ = format::IndexEntry::decode(data, "fuzz");
    let _ = format::decode_id_entry(data, EventId::from_bytes([0; 16]));
    let _ = format::decode_snapshot(data);
    let _ = format::StreamEntry::decode(annals::Version(7), data, "fuzz");
    let _ = format::decode_id_bucket(data);
});
