//! The key parsers: any bytes are a key of one kind, with the numbers it names, or none.
#![no_main]

use annals::EventId;
use annals_store::layout;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(p) = layout::parse_event_key(data) {
        assert_eq!(layout::event_key(p)[..], data[..]);
    }
    if let Some((name, v)) = layout::parse_stream_key(data) {
        assert!(name.len() + 10 == data.len());
        let _ = v.next();
    }
    if let Some(id) = layout::parse_id_key(data) {
        assert_eq!(layout::id_key(id)[..], data[..]);
    }
    let _ = layout::parse_id_bucket_key(data);
    if data.len() >= 16 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&data[..16]);
        let (lo, hi) = layout::id_range(EventId::from_bytes(b));
        assert!(lo[..] <= hi[..]);
    }
});
