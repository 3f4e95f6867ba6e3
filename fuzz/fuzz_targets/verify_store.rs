//! `verify` and the store's read and write paths over an in-memory disk built from the input:
//! a sequence of keys of every kind (numbers from the input) with values whose checksums are
//! fixed up. `verify` must end with a bounded report; opening, reading and appending must
//! give values or typed errors.
#![no_main]

use annals::{Direction, EventData, EventStore, ExpectedVersion, Position, StreamId, VersionRange};
use annals_fuzz::STREAMS;
use annals_store::{MAX_PROBLEMS, MemStore, verify_disk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let disk = annals_fuzz::disk_from(data);
    if let Ok(report) = verify_disk(&disk) {
        assert!(report.problems.len() <= MAX_PROBLEMS);
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let Ok(store) = MemStore::open(disk.clone()) else {
            return;
        };
        let _ = store.streams();
        let _ = store.read_all(Position::NONE, 100).await;
        for name in STREAMS {
            let Ok(s) = StreamId::new(name) else { continue };
            for dir in [Direction::Forward, Direction::Backward] {
                let _ = store.read_stream(&s, VersionRange::ALL, dir, 50).await;
                let _ = store.read_stream(&s, (2..=5).into(), dir, 50).await;
            }
            let _ = store.stream_head(&s).await;
            if let Ok(e) = EventData::json("E", &1) {
                let _ = store.append(&s, ExpectedVersion::Any, vec![e]).await;
            }
        }
    });
});
