//! Stream-index entries (every format), id entries and id buckets, with the trailing CRC
//! fixed up and the version of the stream-index key taken from the input; on a successful
//! decode, every accessor the store and `verify` use.
#![no_main]

use annals::{EventId, Position, Version};
use annals_fuzz::{Input, fix_trailing_crc, use_entry};
use annals_store::format::{self, IndexEntry, StreamEntry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let key = Version(input.number());
    let raw = input.rest();
    let mut bytes = raw.to_vec();
    fix_trailing_crc(&mut bytes);
    for b in [raw, &bytes[..]] {
        if let Ok(e) = StreamEntry::decode(key, b, "fuzz") {
            use_entry(&e);
            assert!(e.runs.len() <= format::MAX_RUNS);
        }
        if let Ok(run) = IndexEntry::decode(b, "fuzz") {
            assert!(run.last_position() < Position::MAX);
        }
        if let Ok(ids) = format::decode_id_bucket(b) {
            assert!(ids.len() <= format::ID_BUCKET_MAX);
            assert!(
                ids.iter()
                    .all(|(_, p)| *p > Position::NONE && *p < Position::MAX)
            );
        }
        if let Ok(p) = format::decode_id_entry(b, EventId::from_bytes([0; 16])) {
            assert!(p > Position::NONE && p < Position::MAX);
        }
    }
});
