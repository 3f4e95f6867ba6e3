//! Envelope and payload decoding: any payload bytes, any codec byte, any event type through
//! a derived `DomainEvent` and the codecs.
#![no_main]

use annals::{CodecId, DomainEvent};
use libfuzzer_sys::fuzz_target;

#[derive(annals::DomainEvent, serde::Serialize, serde::Deserialize, Debug)]
enum Sample {
    Opened { title: String, priority: u8 },
    Tagged(Vec<String>, u64),
    Closed,
}

fuzz_target!(|data: &[u8]| {
    let Some((&codec, rest)) = data.split_first() else {
        return;
    };
    let (kind, payload) = rest.split_at(rest.len().min(1));
    let event_type = match kind.first().map(|k| k % 4) {
        Some(0) => "Opened",
        Some(1) => "Tagged",
        Some(2) => "Closed",
        _ => "Unknown",
    };
    let _ = Sample::decode_payload(event_type, CodecId(codec), payload);
    let _ = CodecId(codec).decode::<(String, Vec<u64>)>(event_type, payload);
});
