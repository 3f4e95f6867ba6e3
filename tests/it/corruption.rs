//! Bad bytes are errors, not panics: flipped and truncated bytes in stored records and index
//! entries surface as `Corrupt` naming the position, on every read path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use annals::Error;
use annals::prelude::*;
use annals::store::layout;

fn raw_sled(path: &Path) -> sled::Db {
    for _ in 0..200 {
        if let Ok(db) = sled::open(path) {
            return db;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    sled::open(path).unwrap()
}

async fn seeded(path: &Path) {
    let store = SledStore::open(path).unwrap();
    for i in 0..4 {
        let s = StreamId::new(format!("acc-{i}")).unwrap();
        let events = (0..3)
            .map(|j| EventData::json("Deposited", &(i * 10 + j)).unwrap())
            .collect();
        store
            .append(&s, ExpectedVersion::NoStream, events)
            .await
            .unwrap();
    }
    // Positions: acc-0 1..=3, acc-1 4..=6, acc-2 7..=9, acc-3 10..=12.
}

fn damage(path: &Path, key: &[u8], f: impl FnOnce(&mut Vec<u8>)) {
    let db = raw_sled(path);
    let mut v = db.get(key).unwrap().unwrap().to_vec();
    f(&mut v);
    db.insert(key, v).unwrap();
    db.flush().unwrap();
}

async fn expect_corrupt_at_4(store: &SledStore) {
    match store.read_all(Position::NONE, 100).await {
        Err(Error::Corrupt { position, .. }) => {
            assert!((4..=6).contains(&position.0), "{position}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Reads before the damage still work.
    assert_eq!(store.read_all(Position::NONE, 3).await.unwrap().len(), 3);
    assert_eq!(store.read_all(Position(7), 100).await.unwrap().len(), 6);
    let acc1 = StreamId::new("acc-1").unwrap();
    assert!(matches!(
        store
            .read_stream(&acc1, VersionRange::ALL, Direction::Forward, 10)
            .await,
        Err(Error::Corrupt { .. })
    ));
    let acc2 = StreamId::new("acc-2").unwrap();
    assert_eq!(
        store
            .read_stream(&acc2, VersionRange::ALL, Direction::Backward, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    // A subscription stops at the damage with an error, never skipping it.
    let mut sub = store.subscribe_all(Position::NONE);
    for _ in 0..3 {
        sub.next().await.unwrap().unwrap();
    }
    assert!(matches!(sub.next().await, Some(Err(Error::Corrupt { .. }))));
    assert!(
        matches!(sub.next().await, Some(Err(Error::Corrupt { .. }))),
        "retries the same position"
    );
}

#[tokio::test]
async fn every_flipped_byte_of_a_chunk_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    seeded(dir.path()).await;
    let key = layout::event_key(Position(4));
    let len = raw_sled(dir.path()).get(key).unwrap().unwrap().len();
    for i in (0..len).step_by(7) {
        damage(dir.path(), &key, |v| v[i] ^= 0x41);
        let store = SledStore::open(dir.path()).unwrap();
        expect_corrupt_at_4(&store).await;
        drop(store);
        damage(dir.path(), &key, |v| v[i] ^= 0x41);
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(
        store.read_all(Position::NONE, 100).await.unwrap().len(),
        12,
        "repaired"
    );
}

#[tokio::test]
async fn truncated_chunk_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    seeded(dir.path()).await;
    for keep in [0usize, 3, 5, 20, 60] {
        let key = layout::event_key(Position(4));
        let original = raw_sled(dir.path()).get(key).unwrap().unwrap().to_vec();
        damage(dir.path(), &key, |v| v.truncate(keep.min(v.len() - 1)));
        let store = SledStore::open(dir.path()).unwrap();
        expect_corrupt_at_4(&store).await;
        drop(store);
        damage(dir.path(), &key, |v| *v = original);
    }
}

#[tokio::test]
async fn damaged_index_entry_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    seeded(dir.path()).await;
    let acc1 = StreamId::new("acc-1").unwrap();
    // One stream-index entry (format 3, keyed by its first version) holds acc-1's run.
    damage(dir.path(), &layout::stream_key(&acc1, Version(1)), |v| {
        v[2] ^= 1
    });
    let store = SledStore::open(dir.path()).unwrap();
    assert!(matches!(
        store
            .read_stream(&acc1, VersionRange::ALL, Direction::Forward, 10)
            .await,
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        store.stream_head(&acc1).await,
        Err(Error::Corrupt { .. })
    ));
    // The append path refuses too, instead of guessing the head.
    assert!(matches!(
        store
            .append(
                &acc1,
                ExpectedVersion::Any,
                vec![EventData::json("X", &1).unwrap()]
            )
            .await,
        Err(Error::Corrupt { .. })
    ));
    // $all does not use the stream index.
    assert_eq!(store.read_all(Position::NONE, 100).await.unwrap().len(), 12);
}

#[tokio::test]
async fn damaged_last_chunk_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    seeded(dir.path()).await;
    damage(dir.path(), &layout::event_key(Position(10)), |v| {
        v[12] ^= 0xff
    });
    match SledStore::open(dir.path()) {
        Err(Error::Corrupt { position, .. }) => assert!((10..=12).contains(&position.0)),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("opened a store whose head cannot be read"),
    }
}

#[tokio::test]
async fn missing_chunk_is_a_hole_not_a_skip() {
    let dir = tempfile::tempdir().unwrap();
    seeded(dir.path()).await;
    {
        let db = raw_sled(dir.path());
        db.remove(layout::event_key(Position(7))).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    match store.read_all(Position(5), 100).await {
        Err(Error::Corrupt { position, .. }) => assert_eq!(position, Position(7)),
        other => panic!("expected a hole at 7, got {other:?}"),
    }
}
