//! Fault injection: a failing write, flush or fdatasync is never acknowledged, poisons the
//! store (nothing is acknowledged afterwards), and a reopen recovers every acknowledged event.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use annals::Error;
use annals::prelude::*;
use annals::store::{FaultPlan, FaultPoint, MemDisk};

fn one() -> Vec<EventData> {
    vec![EventData::json("E", &1).unwrap()]
}

async fn exercise<S: EventStore>(
    store: &S,
    poisoned: impl Fn() -> Option<String>,
) -> Vec<Position> {
    let s = StreamId::new("f-1").unwrap();
    let mut acked = Vec::new();
    // Each append is one group commit here: calls 1 and 2 succeed, call 3 faults.
    for _ in 0..2 {
        acked.push(
            store
                .append(&s, ExpectedVersion::Any, one())
                .await
                .unwrap()
                .first_position,
        );
    }
    let failed = store.append(&s, ExpectedVersion::Any, one()).await;
    assert!(
        matches!(failed, Err(Error::Io(_))),
        "the faulting append is not acked: {failed:?}"
    );
    assert!(poisoned().is_some());
    for _ in 0..3 {
        match store.append(&s, ExpectedVersion::Any, one()).await {
            Err(Error::Poisoned { reason }) => assert!(reason.contains("injected fault")),
            other => panic!("expected Poisoned, got {other:?}"),
        }
    }
    // Reads still work and see only acknowledged events.
    assert_eq!(store.head_position(), Position(2));
    assert_eq!(store.read_all(Position::NONE, 10).await.unwrap().len(), 2);
    acked
}

#[tokio::test]
async fn sled_store_poisons_on_each_fault_point() {
    for point in [FaultPoint::Write, FaultPoint::Flush, FaultPoint::Sync] {
        let dir = tempfile::tempdir().unwrap();
        let nth = 3;
        let config = StoreConfig::default().faults(FaultPlan::none().fail(point, nth));
        let store = SledStore::open_with(dir.path(), config).unwrap();
        let acked = exercise(&store, || store.poisoned()).await;
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        let all = store.read_all(Position::NONE, 10).await.unwrap();
        for p in &acked {
            assert!(
                all.iter().any(|e| e.position == *p),
                "{point:?}: acked {p} lost"
            );
        }
        // The store is writable again after the reopen.
        let s = StreamId::new("f-1").unwrap();
        store.append(&s, ExpectedVersion::Any, one()).await.unwrap();
    }
}

#[tokio::test]
async fn mem_store_loses_exactly_the_unacked_append_on_power_loss() {
    for point in [FaultPoint::Write, FaultPoint::Flush, FaultPoint::Sync] {
        let disk = MemDisk::new();
        let nth = 3;
        let config = StoreConfig::default().faults(FaultPlan::none().fail(point, nth));
        let store = MemStore::open_with(disk.clone(), config).unwrap();
        exercise(&store, || store.poisoned()).await;
        drop(store);
        assert!(disk.crash());
        let store = MemStore::open(disk).unwrap();
        let all = store.read_all(Position::NONE, 10).await.unwrap();
        assert_eq!(
            all.len(),
            2,
            "{point:?}: the two acked events, not the failed one"
        );
        // The failed group had rewritten the stream's index entry in place (adding its run):
        // the power loss puts back the entry as synced, not nothing.
        let s = StreamId::new("f-1").unwrap();
        assert_eq!(store.stream_head(&s).await.unwrap(), Some(Version(2)));
        let read = |store: &MemStore| {
            let store = store.clone();
            let s = s.clone();
            async move {
                store
                    .read_stream(&s, VersionRange::ALL, Direction::Forward, 10)
                    .await
                    .unwrap()
                    .len()
            }
        };
        assert_eq!(read(&store).await, 2, "{point:?}");
        store
            .append(&s, ExpectedVersion::Exact(Version(2)), one())
            .await
            .unwrap();
        assert_eq!(read(&store).await, 3, "{point:?}");
    }
}

#[tokio::test]
async fn periodic_mode_acks_before_sync_and_syncs_on_its_timer() {
    let disk = MemDisk::new();
    let every = std::time::Duration::from_millis(20);
    let config = StoreConfig::default().durability(Durability::Periodic { every });
    let store = MemStore::open_with(disk.clone(), config).unwrap();
    let s = StreamId::new("p-1").unwrap();
    store.append(&s, ExpectedVersion::Any, one()).await.unwrap();
    assert_eq!(
        store.head_position(),
        Position(1),
        "visible once acknowledged"
    );
    assert!(disk.unsynced_keys() > 0, "acknowledged before it is synced");
    let mut waited = 0;
    while disk.unsynced_keys() > 0 && waited < 500 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(disk.unsynced_keys(), 0, "the timer synced it");
    store.append(&s, ExpectedVersion::Any, one()).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(disk.unsynced_keys(), 0, "flush() synced it");
    drop(store);
    assert!(disk.crash());
    let store = MemStore::open(disk).unwrap();
    assert_eq!(store.head_position(), Position(2));
}
