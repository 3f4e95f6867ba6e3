//! Chunks and records, with their checksums fixed up so that mutations reach every field, and
//! the chunk key's position taken from the input: a value (whose numbers keep the decoder's
//! promises) or a typed error, never a panic.
#![no_main]

use annals::{Position, Version};
use annals_fuzz::{Input, fix_chunk_crcs, fix_record_crcs, fix_trailing_crc};
use annals_store::format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let key = Position(input.number());
    let mut bytes = input.rest().to_vec();
    // Raw, then with every checksum made valid.
    for fixed in [false, true] {
        if fixed {
            fix_chunk_crcs(&mut bytes);
        }
        if let Ok(records) = format::decode_chunk_marks(&bytes, key) {
            for (i, (r, _)) in records.iter().enumerate() {
                assert_eq!(Some(r.position.0), key.0.checked_add(i as u64));
                assert!(r.position < Position::MAX && r.version < Version::MAX);
                assert!(r.position > Position::NONE && r.version > Version::NONE);
            }
        }
        let _ = format::decode_chunk(&bytes, key);
    }
    let mut record = data.to_vec();
    fix_record_crcs(&mut record);
    if let Ok((r, used, _)) = format::decode_record_marks(&record, key) {
        assert!(used <= record.len());
        assert!(r.position < Position::MAX && r.version < Version::MAX);
    }
    let mut snapshot = data.to_vec();
    fix_trailing_crc(&mut snapshot);
    let _ = format::decode_snapshot(&snapshot);
});
