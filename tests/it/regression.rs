//! Named regression tests: every shrunk failure of the model-based and crash tests is kept
//! here with a one-line postmortem.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::{Expect, Op};

/// Postmortem: reopening a sled store right after dropping it failed with "could not acquire
/// lock" because sled's background I/O threads release the file lock a moment after the last
/// handle; dropping the last handle now waits until sled has let go of the lock.
#[test]
fn reopen_right_after_close_waits_for_sleds_file_lock() {
    let mut ops = vec![
        Op::Append {
            stream: 3,
            expect: Expect::StreamExists,
            n: 3,
        },
        Op::Append {
            stream: 3,
            expect: Expect::Any,
            n: 2,
        },
    ];
    for i in 0..40 {
        ops.push(Op::Append {
            stream: (i % 4) as u8,
            expect: Expect::Any,
            n: 1 + (i % 3) as u8,
        });
        ops.push(Op::Restart);
    }
    ops.push(Op::Subscribe { from: 0 });
    common::run_both(&ops);
}

/// Postmortem: none yet beyond the above; a retry of an append that straddled a restart must
/// still return the original result (checked here as a guard for the id index).
#[test]
fn retry_after_restart_returns_original_result() {
    let ops = vec![
        Op::Append {
            stream: 0,
            expect: Expect::NoStream,
            n: 4,
        },
        Op::Restart,
        Op::Retry { which: 0 },
        Op::Append {
            stream: 0,
            expect: Expect::Exact(0),
            n: 1,
        },
        Op::Retry { which: 1 },
        Op::ReadStream {
            stream: 0,
            start: 0,
            end: 9,
            backward: true,
            limit: 9,
        },
    ];
    common::run_both(&ops);
}

/// Postmortem: the payload proptest (`tests/decoders.rs`) found that a bincode length prefix
/// claiming 2 EiB made decoding allocate it and abort the process; bincode decoding now runs
/// with a 64 MiB limit (`annals::DECODE_LIMIT`) and such payloads are `Error::Codec`.
#[test]
fn huge_bincode_length_prefix_is_a_codec_error_not_an_abort() {
    let bytes = [0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F];
    let r: Result<(String, String, u8), _> = annals::CodecId::BINCODE.decode("Opened", &bytes);
    assert!(matches!(r, Err(annals::Error::Codec { .. })));
}

/// A store open in another handle is `Error::Locked` (typed, not text to match) once
/// `lock_wait` has passed; `close()` returns once sled has released its lock, so a reopen
/// right after it works, as does one right after dropping the last handle. (A raw sled handle
/// releases its lock a moment after it is dropped: `lock_wait` covers that —
/// `corruption::every_flipped_byte_of_a_chunk_is_reported` opens right after one, 30 times.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_store_is_a_typed_error_and_close_releases_it() {
    use annals::Error;
    use annals::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let s = StreamId::new("lock-1").unwrap();
    store
        .append(
            &s,
            ExpectedVersion::Any,
            vec![EventData::json("E", &1).unwrap()],
        )
        .await
        .unwrap();
    // After waiting `lock_wait` (default 1 s) for the other handle to let go.
    match SledStore::open_async(dir.path(), StoreConfig::default()).await {
        Err(Error::Locked { .. }) => {}
        Err(e) => panic!("expected Locked, got {e:?}"),
        Ok(_) => panic!("opened a locked store twice"),
    }
    let at_once = StoreConfig::default().lock_wait(std::time::Duration::ZERO);
    for _ in 0..20 {
        let store = SledStore::open_with(dir.path(), at_once.clone())
            .err()
            .map_or(Ok(()), Err);
        assert!(matches!(store, Err(Error::Locked { .. })));
    }
    store.close().await.unwrap();
    for round in 0..5 {
        let again = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            again.stream_head(&s).await.unwrap(),
            Some(Version(1)),
            "{round}"
        );
        if round % 2 == 0 {
            again.close().await.unwrap();
        } else {
            drop(again);
        }
    }
    // The in-memory disk says the same when it is open twice.
    let disk = annals::store::MemDisk::new();
    let mem = MemStore::open(disk.clone()).unwrap();
    assert!(matches!(
        MemStore::open(disk.clone()),
        Err(Error::Locked { .. })
    ));
    mem.close().await.unwrap();
    assert!(MemStore::open(disk).is_ok());
}
