//! A child process runs a projection over the sled store while writers append; the parent
//! SIGKILLs it mid-batch at random moments. After every restart the read model equals a
//! rebuild up to its own checkpoint, no event was applied twice, and a restarted worker
//! catches up to equal a full rebuild. 8 cycles by default, 100 with `ANNALS_STRESS=1`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use crate::common;

use std::time::Duration;

use annals::prelude::*;
use annals::projections::*;
use common::projections::{PerStream, check_once, rebuilt};

const DIR_VAR: &str = "ANNALS_PROJECTION_CRASH_DIR";

fn config() -> ProjectionConfig {
    ProjectionConfig::default()
        .batch_size(40)
        .batch_wait(Duration::from_millis(2))
}

#[test]
fn projection_crash_child() {
    let Some((dir, rt)) = common::child::child_setup(DIR_VAR) else {
        return;
    };
    rt.block_on(async move {
        let store = SledStore::open(dir.join("store")).unwrap();
        let db = common::child::open_read_models(&dir);
        let model = KvReadModel::open(&db, "per-stream").unwrap();
        let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
        let _h = runner
            .start(
                Box::new(KvProjection::new(PerStream::new("per-stream"), model)),
                config(),
            )
            .unwrap();
        println!("READY");
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for k in 0u64.. {
                    let stream = StreamId::new(format!("pc-{}", (t + k) % 6)).unwrap();
                    let n = 1 + (k % 3) as usize;
                    let events = (0..n)
                        .map(|i| EventData::json("Add", &(k + i as u64)).unwrap())
                        .collect();
                    store
                        .append(&stream, ExpectedVersion::Any, events)
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn sigkill_mid_batch_keeps_the_read_model_equal_to_a_rebuild() {
    let cycles = if std::env::var_os("ANNALS_STRESS").is_some() {
        100
    } else {
        8
    };
    let dir = tempfile::tempdir().unwrap();
    let rt = common::child::runtime();
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ u64::from(std::process::id());
    let mut checked = 0;
    for cycle in 0..cycles {
        let run_for = Duration::from_millis(20 + common::child::next(&mut seed) % 150);
        common::child::run_and_kill(
            "projection_crash::projection_crash_child",
            DIR_VAR,
            dir.path(),
            run_for,
            cycle,
        );

        rt.block_on(async {
            let store = SledStore::open(dir.path().join("store")).unwrap();
            let db = common::child::open_read_models(dir.path());
            let model = common::projections::check_kv_against_rebuild(
                &store,
                &db,
                "per-stream",
                &format!("cycle {cycle}"),
            )
            .await;
            // Restarted, the worker catches up from the checkpoint to equal a full rebuild.
            let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
            let h = runner
                .start(
                    Box::new(KvProjection::new(
                        PerStream::new("per-stream"),
                        model.clone(),
                    )),
                    config(),
                )
                .unwrap();
            let head = store.head_position();
            h.wait_for(head, Duration::from_secs(30)).await.unwrap();
            let caught_up = model.entries().unwrap();
            check_once(&caught_up);
            assert_eq!(caught_up, rebuilt(&store, head).await);
            runner.shutdown().await;
            checked = head.0;
        });
    }
    println!("projection crash cycles: {cycles}, events at the end: {checked}, mismatches: 0");
}
