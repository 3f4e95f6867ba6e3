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
    // Without --create a directory with no store is refused (and stays empty).
    let (code, _, err) = annals(copy.path(), &["import", export.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no store") && err.contains("--create"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(copy.path()).unwrap().count(), 0);
    for _ in 0..2 {
        let (code, out, err) = annals(
            copy.path(),
            &["import", "--create", export.to_str().unwrap()],
        );
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

/// Regression (issue 14.9): `annals --data <a path with no store> verify` exited 0 and
/// created an empty database there. Every command refuses such a path and creates nothing.
#[test]
fn every_command_refuses_a_path_without_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("nothing-here");
    let export = dir.path().join("x.jsonl");
    std::fs::write(&export, "").unwrap();
    for args in [
        &["streams"][..],
        &["read", "a-1"],
        &["tail"],
        &["projections"],
        &["parked"],
        &["verify"],
        &["export"],
        &["import", export.to_str().unwrap()],
    ] {
        let (code, out, err) = annals(&empty, args);
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(err.contains("no store"), "{args:?}: {err}");
        assert!(!empty.exists(), "{args:?} created {}", empty.display());
    }
    // An existing directory without a store stays as it was too.
    let (code, _, _) = annals(dir.path(), &["verify"]);
    assert_eq!(code, 2);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// Regression (issue 14.8): `annals verify` ignored the store-format marker: changed to an
/// unknown value or removed, it said "0 problem(s)" and exited 0 while `streams` refused
/// the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_checks_the_format_marker() {
    for change in [Some(&[9u8][..]), Some(&[][..]), None] {
        let dir = tempfile::tempdir().unwrap();
        seed(dir.path()).await;
        std::thread::sleep(std::time::Duration::from_millis(200));
        {
            let db = sled::open(dir.path().join("store")).unwrap();
            match change {
                Some(v) => db.insert(annals::store::layout::FORMAT_KEY, v).unwrap(),
                None => db.remove(annals::store::layout::FORMAT_KEY).unwrap(),
            };
            db.flush().unwrap();
        }
        let (code, out, err) = annals(dir.path(), &["verify"]);
        assert_eq!(code, 1, "{change:?}: {out} {err}");
        assert!(out.contains("format marker"), "{change:?}: {out}");
        let (code, _, _) = annals(dir.path(), &["streams"]);
        assert_eq!(code, 2, "{change:?}");
    }
}

/// Regression (issue 14, table): `annals import` of a line with `"version":0` panicked
/// computing the version before it; it is now a typed error naming the line.
#[test]
fn import_refuses_version_zero() {
    let dir = tempfile::tempdir().unwrap();
    let line = r#"{"position":1,"stream":"order-1","version":0,"id":"0192e9a0-0000-7000-8000-000000000001","event_type":"Placed","schema_version":1,"recorded_at_micros":0,"metadata":{"headers":{}},"codec":2,"payload_base64":"e30="}"#;
    let file = dir.path().join("bad.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}\n{line}\n",
            line.replace("\"version\":0", "\"version\":1")
        ),
    )
    .unwrap();
    let (code, out, err) = annals(
        &dir.path().join("data"),
        &["import", "--create", file.to_str().unwrap()],
    );
    assert_eq!(code, 2, "{out} {err}");
    assert!(err.contains("line 2") && err.contains("version 0"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `annals schema check`, with no data directory.
fn schema(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_annals"))
        .arg("schema")
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn write_schema(path: &Path, schema: &serde_json::Value) -> String {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(schema).unwrap()).unwrap();
    path.to_str().unwrap().to_owned()
}

fn order(props: serde_json::Value, required: &[&str]) -> serde_json::Value {
    serde_json::json!({"type": "object", "properties": props, "required": required})
}

#[test]
fn schema_check_of_two_files() {
    let dir = tempfile::tempdir().unwrap();
    let int = serde_json::json!({"type": "integer", "format": "uint64", "minimum": 0});
    let v1 = write_schema(
        &dir.path().join("v1.json"),
        &order(serde_json::json!({"total": int}), &["total"]),
    );
    // An added optional field: compatible every way.
    let v2 = write_schema(
        &dir.path().join("v2.json"),
        &order(
            serde_json::json!({"total": int, "note": {"type": ["string", "null"]}}),
            &["total"],
        ),
    );
    for mode in ["backward", "forward", "full", "full-transitive"] {
        let (code, out, err) = schema(&[&v1, &v2, "--mode", mode]);
        assert_eq!(code, 0, "{mode}: {out} {err}");
        assert_eq!(out, format!("compatible ({mode})\n"));
    }
    // The default mode is backward.
    let (code, out, _) = schema(&[&v1, &v2]);
    assert_eq!((code, out.as_str()), (0, "compatible (backward)\n"));
    // A changed type: incompatible, each way printed with its path.
    let v3 = write_schema(
        &dir.path().join("v3.json"),
        &order(serde_json::json!({"total": {"type": "string"}}), &["total"]),
    );
    let (code, out, err) = schema(&[&v1, &v3, "--mode", "full"]);
    assert_eq!(code, 1, "{out} {err}");
    assert_eq!(
        out,
        "backward /total: the writer may write integer here, the reader accepts only string\n\
         forward /total: the writer may write string here, the reader accepts only integer\n\
         2 incompatibilities (full)\n"
    );
    // A removed required field: backward yes, forward no.
    let v4 = write_schema(
        &dir.path().join("v4.json"),
        &order(serde_json::json!({}), &[]),
    );
    assert_eq!(schema(&[&v1, &v4, "--mode", "backward"]).0, 0);
    let (code, out, _) = schema(&[&v1, &v4, "--mode", "forward"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("forward (root): the reader requires property \"total\""),
        "{out}"
    );
}

#[test]
fn schema_check_of_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let int = serde_json::json!({"type": "integer"});
    let num = serde_json::json!({"type": "number"});
    // Placed: v1 integer, v2 number, v3 integer again. Each step reads the one before
    // backward only if it widens: v2 → v3 narrows.
    write_schema(
        &d.join("Placed/v1.json"),
        &order(serde_json::json!({"t": int}), &["t"]),
    );
    write_schema(
        &d.join("Placed/v2.json"),
        &order(serde_json::json!({"t": num}), &["t"]),
    );
    write_schema(
        &d.join("Placed/v3.json"),
        &order(serde_json::json!({"t": int}), &["t"]),
    );
    write_schema(
        &d.join("Paid/v1.json"),
        &serde_json::json!({"type": "null"}),
    );
    std::fs::write(d.join("README.md"), "not a schema").unwrap();
    let dir_arg = d.to_str().unwrap();
    let (code, out, err) = schema(&["--dir", dir_arg, "--mode", "backward"]);
    assert_eq!(code, 1, "{out} {err}");
    assert_eq!(
        out,
        "Paid                     v1 ok\n\
         Placed                   v2 -> v3: backward /t: the writer may write number here, the reader accepts only integer\n\
         2 event type(s), 1 incompatibility (backward)\n"
    );
    // Forward: v1 cannot read v2. Transitive forward: v1 cannot read v2 (v3 is fine).
    let (code, out, _) = schema(&["--dir", dir_arg, "--mode", "forward-transitive"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("v1 -> v2: forward /t") && !out.contains("v1 -> v3"),
        "{out}"
    );
    assert!(!out.contains("v2 -> v3"), "{out}");
    // Only the compatible part: fine.
    std::fs::remove_file(d.join("Placed/v3.json")).unwrap();
    let (code, out, _) = schema(&["--dir", dir_arg, "--mode", "backward-transitive"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Placed                   v1 v2 ok"), "{out}");
}

#[test]
fn schema_check_refuses_what_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write_schema(
        &dir.path().join("ok.json"),
        &serde_json::json!({"type": "string"}),
    );
    let odd = write_schema(
        &dir.path().join("odd.json"),
        &serde_json::json!({"type": "string", "if": {"minLength": 1}}),
    );
    let (code, _, err) = schema(&[&ok, &odd]);
    assert_eq!(code, 2);
    assert!(err.contains("unsupported schema construct `if`"), "{err}");
    std::fs::write(dir.path().join("bad.json"), "{").unwrap();
    let (code, _, err) = schema(&[&ok, dir.path().join("bad.json").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("not JSON"), "{err}");
    let (code, _, err) = schema(&[&ok, dir.path().join("missing.json").to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = schema(&["--dir", dir.path().join("empty").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("no schemas in"), "{err}");
    let (code, _, err) = schema(&[&ok]);
    assert_eq!(code, 2, "clap: {err}");
    let (code, _, err) = schema(&[&ok, &ok, "--mode", "sideways"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown compatibility mode"), "{err}");
    let (code, _, _) = schema(&[&ok, &ok, "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2, "files and --dir together");
}
