//! The read models' stored bytes: KV values and checkpoints, parked records, the search
//! index's checkpoint payload. A value or a typed error, never a panic or an abort.
#![no_main]

use annals::projections::{Checkpoint, fuzzing};
use libfuzzer_sys::fuzz_target;

#[derive(serde::Deserialize, Debug)]
#[allow(dead_code)]
struct Row {
    title: String,
    tags: Vec<String>,
    priority: u8,
    assignee: Option<String>,
    counts: std::collections::BTreeMap<u64, u32>,
}

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::kv_value::<Checkpoint>(data);
    let _ = fuzzing::kv_value::<Row>(data);
    let _ = fuzzing::kv_value::<(String, u64)>(data);
    let _ = fuzzing::kv_value::<Vec<String>>(data);
    let _ = fuzzing::parked(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = fuzzing::search_payload(s);
    }
});
