//! `verify` and the store's read and write paths over an in-memory disk built from the input:
//! a sequence of keys of every kind (numbers from the input) with values whose checksums are
//! fixed up. `verify` must end with a bounded report; opening, reading and appending must
//! give values or typed errors.
#![no_main]

use annals::{
    Direction, EventData, EventId, EventStore, ExpectedVersion, Position, StreamId, Version,
    VersionRange,
};
use annals_fuzz::{Input, fix_chunk_crcs, fix_trailing_crc};
use annals_store::format::ID_PREFIX;
use annals_store::{MAX_PROBLEMS, MemDisk, MemStore, layout, verify_disk};
use libfuzzer_sys::fuzz_target;

const STREAMS: [&str; 3] = ["acc-1", "acc-2", "z-3"];

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let disk = MemDisk::new();
    let marker = match input.byte() % 8 {
        0 => None,
        1 => Some(9),
        _ => Some(layout::STORE_FORMAT),
    };
    if let Some(m) = marker {
        disk.overwrite(layout::FORMAT_KEY, &[m]);
    }
    for _ in 0..(input.byte() % 8) {
        let kind = input.byte();
        let n = input.number();
        let len = usize::from(input.byte());
        let mut value = input.take(len).to_vec();
        let key = match kind % 5 {
            0 => {
                fix_chunk_crcs(&mut value);
                layout::event_key(Position(n)).to_vec()
            }
            1 | 2 => {
                fix_trailing_crc(&mut value);
                let Ok(s) = StreamId::new(STREAMS[usize::from(kind / 5) % 3]) else {
                    continue;
                };
                layout::stream_key(&s, Version(n))
            }
            3 => {
                fix_trailing_crc(&mut value);
                let mut prefix = [0u8; ID_PREFIX];
                prefix[..8].copy_from_slice(&n.to_le_bytes());
                layout::id_bucket_key(prefix, Position(n)).to_vec()
            }
            _ => {
                fix_trailing_crc(&mut value);
                layout::id_key(EventId::from_bytes(u128::from(n).to_be_bytes())).to_vec()
            }
        };
        disk.overwrite(&key, &value);
    }
    if let Ok(report) = verify_disk(&disk) {
        assert!(report.problems.len() <= MAX_PROBLEMS);
    }
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
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
