//! The `annals` ops tool end to end: streams, read, tail, projections, parked, verify (clean
//! and with a corrupted record), export and import.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use annals::prelude::*;

fn annals(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_annals"))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

async fn seed(data: &Path) {
    let store = SledStore::open(data.join("store")).unwrap();
    for i in 0..5 {
        let s = StreamId::new(format!("order-{i}")).unwrap();
        store
            .append(
                &s,
                ExpectedVersion::NoStream,
                vec![
                    EventData::json("Placed", &i).unwrap(),
                    EventData::encode("Paid", &(i * 10)).unwrap(),
                ],
            )
            .await
            .unwrap();
    }
    let s = StreamId::new("order-0").unwrap();
    store
        .append(
            &s,
            ExpectedVersion::Exact(Version(2)),
            vec![EventData::json("Shipped", &"fast").unwrap()],
        )
        .await
        .unwrap();
    drop(store);
    let db = sled::open(data.join("read-models")).unwrap();
    let model = annals::projections::KvReadModel::<String, u64>::open(&db, "orders").unwrap();
    drop(model);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_commands_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    seed(data).await;
    std::thread::sleep(std::time::Duration::from_millis(200));

    let (code, out, err) = annals(data, &["streams"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("order-0") && out.contains("v3"), "{out}");
    assert_eq!(out.lines().count(), 5);

    let (code, out, _) = annals(data, &["read", "order-0"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 3);
    assert!(out.contains("Shipped"));
    let (code, _, err) = annals(data, &["read", "nope-1"]);
    assert_eq!(code, 2);
    assert!(err.contains("no stream nope-1"));

    let (code, out, _) = annals(data, &["tail", "-n", "2"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2);
    assert!(out.starts_with("@10"), "{out}");

    let (code, out, _) = annals(data, &["projections"]);
    assert_eq!(code, 0);
    assert!(out.contains("orders") && out.contains("lag 11"), "{out}");
    let (code, out, _) = annals(data, &["parked"]);
    assert_eq!(code, 0);
    assert!(out.contains("no parked events"));

    let (code, out, _) = annals(data, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("11 events, 5 streams"), "{out}");

    // Export, then import into a fresh directory: same events; importing twice is idempotent.
    let export = dir.path().join("export.jsonl");
    let (code, _, err) = annals(data, &["export", "--out", export.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&export).unwrap();
    assert_eq!(text.lines().count(), 11);
    assert!(text.contains("\"payload_json\":\"fast\""));
    let copy = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let (code, out, err) = annals(copy.path(), &["import", export.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("head @11"), "{out}");
    }
    let (code, out, _) = annals(copy.path(), &["verify"]);
    assert_eq!(code, 0, "{out}");
    let a = SledStore::open(data.join("store")).unwrap();
    let b = SledStore::open(copy.path().join("store")).unwrap();
    let (ea, eb) = (
        a.read_all(Position::NONE, 100).await.unwrap(),
        b.read_all(Position::NONE, 100).await.unwrap(),
    );
    drop((a, b));
    assert_eq!(ea.len(), eb.len());
    for (x, y) in ea.iter().zip(&eb) {
        assert_eq!(
            (
                x.position,
                &x.stream,
                x.version,
                x.id,
                &x.event_type,
                &x.payload,
                x.codec
            ),
            (
                y.position,
                &y.stream,
                y.version,
                y.id,
                &y.event_type,
                &y.payload,
                y.codec
            )
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(200));

    // Corrupt one record: verify names its position and exits non-zero.
    {
        let db = sled::open(data.join("store")).unwrap();
        let key = annals::store::layout::event_key(Position(3));
        let mut v = db.get(key).unwrap().unwrap().to_vec();
        let last = v.len() - 1;
        v[last] ^= 0x55;
        db.insert(key, v).unwrap();
        db.flush().unwrap();
    }
    let (code, out, _) = annals(data, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("problem at position 3"), "{out}");
}
