//! The projection runtime: read model == rebuild under concurrent writers, poison events are
//! retried, parked and retried after a fix, stop policy, rebuild while appending, wait_for,
//! lag, pause, reset, version bump, read models as of a position.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use annals::prelude::*;
use annals::projections::*;
use proptest::prelude::*;

use crate::common;

use common::projections::{PerStream, check_once, rebuilt, temp_db};

async fn append(store: &MemStore, stream: &str, n: u64, ty: &str) -> AppendResult {
    let s = StreamId::new(stream).unwrap();
    store
        .append(
            &s,
            ExpectedVersion::Any,
            vec![EventData::json(ty, &n).unwrap()],
        )
        .await
        .unwrap()
}

fn fast_retry(policy: FailurePolicy) -> ProjectionConfig {
    ProjectionConfig::default()
        .batch_size(7)
        .batch_wait(Duration::from_millis(1))
        .retry(
            RetryPolicy::default()
                .attempts(3)
                .initial_backoff(Duration::from_millis(1))
                .max_backoff(Duration::from_millis(4)),
        )
        .on_failure(policy)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if std::env::var_os("ANNALS_STRESS").is_some() { 300 } else { 24 }, failure_persistence: None, ..ProptestConfig::default() })]

    /// The read model after concurrent writers equals the read model rebuilt from scratch.
    #[test]
    fn read_model_after_concurrent_writers_equals_rebuild(
        writers in proptest::collection::vec(proptest::collection::vec((0u8..5, 0u64..100, 1usize..4), 1..20), 1..5),
        batch_size in 1usize..40,
        pre in 0usize..30,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let store = MemStore::new();
            for i in 0..pre {
                append(&store, &format!("s-{}", i % 3), i as u64, "Pre").await;
            }
            let db = temp_db();
            let model = KvReadModel::open(&db, "per-stream").unwrap();
            let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
            let config = ProjectionConfig::default().batch_size(batch_size);
            let h = runner.start(Box::new(KvProjection::new(PerStream::new("per-stream"), model.clone())), config).unwrap();
            let mut tasks = Vec::new();
            for ops in writers {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for (s, n, k) in ops {
                        let stream = StreamId::new(format!("s-{s}")).unwrap();
                        let events = (0..k).map(|_| EventData::json("Add", &n).unwrap()).collect();
                        store.append(&stream, ExpectedVersion::Any, events).await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let head = store.head_position();
            h.wait_for(head, Duration::from_secs(20)).await.unwrap();
            let live = model.entries().unwrap();
            check_once(&live);
            assert_eq!(live, rebuilt(&store, head).await);
            assert_eq!(h.lag(), 0);
            runner.shutdown().await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_event_is_retried_parked_and_retried_after_a_fix() {
    let store = MemStore::new();
    let db = temp_db();
    let model = KvReadModel::open(&db, "p").unwrap();
    let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
    poison_cycle(store, model, runner).await;
}

/// The same with no sled anywhere: an in-memory read model and dead-letter list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_cycle_in_memory() {
    let store = MemStore::new();
    let runner = ProjectionRunner::with_dead_letters(store.clone(), MemDeadLetters::new());
    poison_cycle(store, KvReadModel::in_memory(), runner).await;
}

async fn poison_cycle(
    store: MemStore,
    model: KvReadModel<String, (u64, u64, u64)>,
    runner: ProjectionRunner<MemStore>,
) {
    let projector = PerStream::new("p");
    let poison = projector.poison.clone();
    poison.store(true, Ordering::SeqCst);
    let h = runner
        .start(
            Box::new(KvProjection::new(projector, model.clone())),
            fast_retry(FailurePolicy::Park),
        )
        .unwrap();
    for i in 0..5 {
        append(&store, "a-1", i, "Add").await;
    }
    let bad = append(&store, "b-1", 100, "Poison").await.last_position;
    for i in 0..5 {
        append(&store, "a-1", i, "Add").await;
    }
    let head = append(&store, "b-1", 1, "Add").await.last_position;
    h.wait_for(head, Duration::from_secs(10)).await.unwrap();
    let parked = h.parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].position, bad);
    assert_eq!(parked[0].attempts, 3);
    assert!(parked[0].error.contains("cannot handle poison"));
    assert_eq!(h.status().await.unwrap().parked, 1);
    // No other event was skipped.
    assert_eq!(model.get(&"a-1".to_string()).unwrap(), Some((10, 10, 20)));
    assert_eq!(model.get(&"b-1".to_string()).unwrap(), Some((1, 2, 1)));
    // A retry while still broken keeps the record and counts the attempt.
    assert!(h.retry_parked(bad).await.is_err());
    assert_eq!(h.parked().await.unwrap()[0].attempts, 4);
    // Fixed: the retry applies it and the record goes.
    poison.store(false, Ordering::SeqCst);
    h.retry_parked(bad).await.unwrap();
    assert!(h.parked().await.unwrap().is_empty());
    let (count, _, sum) = model.get(&"b-1".to_string()).unwrap().unwrap();
    assert_eq!((count, sum), (2, 101));
    assert!(matches!(
        h.retry_parked(bad).await,
        Err(ProjectionError::NotParked(_))
    ));
    // Discard.
    poison.store(true, Ordering::SeqCst);
    let bad2 = append(&store, "c-1", 1, "Poison").await.last_position;
    h.wait_for(bad2, Duration::from_secs(10)).await.unwrap();
    // Reached by parking it: `wait_for_applied` says so.
    assert!(matches!(
        h.wait_for_applied(bad2, Duration::from_secs(10)).await,
        Err(ProjectionError::Parked { position, .. }) if position == bad2
    ));
    h.discard_parked(bad2).await.unwrap();
    assert!(h.parked().await.unwrap().is_empty());
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_policy_stops_and_resume_retries() {
    let store = MemStore::new();
    let db = temp_db();
    let model = KvReadModel::open(&db, "s").unwrap();
    let projector = PerStream::new("s");
    let poison = projector.poison.clone();
    poison.store(true, Ordering::SeqCst);
    let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
    let h = runner
        .start(
            Box::new(KvProjection::new(projector, model.clone())),
            fast_retry(FailurePolicy::Stop),
        )
        .unwrap();
    append(&store, "a-1", 1, "Add").await;
    let bad = append(&store, "a-1", 2, "Poison").await.last_position;
    let after = append(&store, "a-1", 3, "Add").await.last_position;
    match h.wait_for(after, Duration::from_secs(10)).await {
        Err(ProjectionError::Stopped { reason, .. }) => assert!(reason.contains("failed 3 times")),
        other => panic!("expected Stopped, got {other:?}"),
    }
    assert_eq!(h.checkpoint(), Position(bad.0 - 1));
    assert!(matches!(h.state(), WorkerState::Stopped { .. }));
    poison.store(false, Ordering::SeqCst);
    h.resume().await.unwrap();
    h.wait_for(after, Duration::from_secs(10)).await.unwrap();
    assert_eq!(model.get(&"a-1".to_string()).unwrap(), Some((3, 3, 6)));
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_loses_no_event_appended_meanwhile() {
    let store = MemStore::new();
    for i in 0..500 {
        append(&store, &format!("r-{}", i % 7), i, "Add").await;
    }
    let db = temp_db();
    let model = KvReadModel::open(&db, "r").unwrap();
    let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
    let config = ProjectionConfig::default().batch_size(25);
    let h = runner
        .start(
            Box::new(KvProjection::new(PerStream::new("r"), model.clone())),
            config,
        )
        .unwrap();
    h.wait_for(store.head_position(), Duration::from_secs(10))
        .await
        .unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                append(&store, &format!("r-{}", i % 5), i, "Add").await;
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let progress = {
        let seen = seen.clone();
        Box::new(move |p: Progress| seen.lock().unwrap().push((p.position, p.target))) as ProgressFn
    };
    let reached = h.rebuild(Some(progress)).await.unwrap();
    writer.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress only moves forward"
    );
    assert!(reached >= seen[0].1, "rebuild ran to its target");
    let head = store.head_position();
    h.wait_for(head, Duration::from_secs(10)).await.unwrap();
    let live = model.entries().unwrap();
    check_once(&live);
    assert_eq!(live, rebuilt(&store, head).await);
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_lag_pause_resume_and_reset() {
    let store = MemStore::new();
    let db = temp_db();
    let model = KvReadModel::open(&db, "w").unwrap();
    let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
    let h = runner
        .start(
            Box::new(KvProjection::new(PerStream::new("w"), model.clone())),
            ProjectionConfig::default(),
        )
        .unwrap();
    let p = append(&store, "w-1", 1, "Add").await.last_position;
    h.wait_for(p, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        model.get(&"w-1".to_string()).unwrap(),
        Some((1, 1, 1)),
        "read your writes"
    );
    h.pause().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    for i in 0..4 {
        append(&store, "w-1", i, "Add").await;
    }
    let head = store.head_position();
    match h.wait_for(head, Duration::from_millis(50)).await {
        Err(ProjectionError::Timeout {
            position, reached, ..
        }) => {
            assert_eq!(position, head);
            assert_eq!(reached, p);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let status = h.status().await.unwrap();
    assert_eq!(status.lag, 4);
    assert_eq!(status.state, WorkerState::Paused);
    h.resume().await.unwrap();
    h.wait_for(head, Duration::from_secs(5)).await.unwrap();
    assert_eq!(h.lag(), 0);
    // Reset moves the checkpoint only.
    h.reset(Position(2)).await.unwrap();
    h.wait_for(head, Duration::from_secs(5)).await.unwrap();
    assert_eq!(model.checkpoint().unwrap().unwrap().position, head);
    // Events 3..=5 were applied again (this handler is not idempotent: 5 + 3 applications).
    assert_eq!(model.get(&"w-1".to_string()).unwrap().map(|v| v.0), Some(8));
    runner.shutdown().await;
    assert!(matches!(
        h.wait_for(Position(999), Duration::from_secs(1)).await,
        Err(ProjectionError::Closed | ProjectionError::Timeout { .. })
    ));
    assert!(
        runner
            .start(
                Box::new(KvProjection::new(PerStream::new("w2"), model.clone())),
                ProjectionConfig::default()
            )
            .is_ok()
    );
    assert!(matches!(
        runner.start(
            Box::new(KvProjection::new(PerStream::new("w2"), model)),
            ProjectionConfig::default()
        ),
        Err(ProjectionError::AlreadyRunning(_))
    ));
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_rebuilds_on_start_and_checkpoints_survive_restart() {
    let store = MemStore::new();
    for i in 0..50 {
        append(&store, &format!("v-{}", i % 3), i, "Add").await;
    }
    let db = temp_db();
    let model = KvReadModel::<String, (u64, u64, u64)>::open(&db, "v").unwrap();
    {
        let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
        let h = runner
            .start(
                Box::new(KvProjection::new(PerStream::new("v"), model.clone())),
                ProjectionConfig::default(),
            )
            .unwrap();
        h.wait_for(Position(50), Duration::from_secs(5))
            .await
            .unwrap();
        runner.shutdown().await;
    }
    assert_eq!(
        model.checkpoint().unwrap().unwrap(),
        Checkpoint::at(Position(50), 1)
    );
    // Restart at the same version: resumes from the checkpoint, applies nothing twice.
    let projector = PerStream::new("v");
    let calls = projector.calls.clone();
    let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
    let h = runner
        .start(
            Box::new(KvProjection::new(projector, model.clone())),
            ProjectionConfig::default(),
        )
        .unwrap();
    let p = append(&store, "v-0", 1, "Add").await.last_position;
    h.wait_for(p, Duration::from_secs(5)).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    runner.shutdown().await;
    // Version 2: rebuilt from scratch on start.
    let mut projector = PerStream::new("v");
    projector.version = 2;
    let calls = projector.calls.clone();
    let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
    let h = runner
        .start(
            Box::new(KvProjection::new(projector, model.clone())),
            ProjectionConfig::default(),
        )
        .unwrap();
    h.wait_for(p, Duration::from_secs(5)).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 51);
    assert_eq!(model.checkpoint().unwrap().unwrap().version, 2);
    check_once(&model.entries().unwrap());
    runner.shutdown().await;
}

/// What did the read model say at position P: project into a temporary model up to P.
#[tokio::test]
async fn read_model_as_of_a_position() {
    let store = MemStore::new();
    for i in 1..=30u64 {
        append(&store, "asof-1", i, "Add").await;
    }
    for p in [0u64, 1, 7, 30] {
        let entries = rebuilt(&store, Position(p)).await;
        let want: u64 = (1..=p).sum();
        match entries.first() {
            Some((_, (count, version, sum))) => assert_eq!((*count, *version, *sum), (p, p, want)),
            None => assert_eq!(p, 0),
        }
    }
    // Up to the head in one call, no runner.
    let model = KvReadModel::temporary().unwrap();
    let mut projection =
        KvProjection::new(common::projections::PerStream::new("head"), model.clone());
    assert_eq!(
        project_to_head(&store, &mut projection, 8).await.unwrap(),
        Position(30)
    );
    assert_eq!(
        model.get(&"asof-1".to_string()).unwrap(),
        Some((30, 30, (1..=30).sum()))
    );
}

/// A tool lists the key-value read models of a database and their checkpoints without
/// knowing their key and value types.
#[tokio::test]
async fn kv_read_models_lists_models_and_checkpoints() {
    let store = MemStore::new();
    let db = temp_db();
    let a = KvReadModel::<String, (u64, u64, u64)>::open(&db, "a").unwrap();
    let _b = KvReadModel::<String, u64>::open(&db, "b").unwrap();
    let last = append(&store, "s-1", 3, "E").await.last_position;
    let mut projection = KvProjection::new(PerStream::new("a"), a);
    project_to_head(&store, &mut projection, 10).await.unwrap();
    let models = kv_read_models(&db).unwrap();
    assert_eq!(
        models,
        vec![
            ("a".to_string(), Some(Checkpoint::at(last, 1))),
            ("b".to_string(), None)
        ]
    );
}
