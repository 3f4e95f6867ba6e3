//! The ops tool's import: any line is an event to import or a typed error, and any sequence
//! of events groups into appends whose expected versions are in range.
#![no_main]

use annals_cli::{Batcher, parse_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut batcher = Batcher::new(3);
    let mut appends = Vec::new();
    for line in text.lines() {
        if let Ok(Some(e)) = parse_line(line) {
            assert!(e.version.0 >= 1 && e.version.0 < u64::MAX);
            appends.extend(batcher.push(e));
        }
    }
    appends.extend(batcher.take());
    for (_, before, events) in appends {
        assert!(!events.is_empty() && events.len() <= 3);
        assert!(before.0.checked_add(events.len() as u64).is_some());
    }
});
