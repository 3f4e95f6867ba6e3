//! The tantivy search read model: found after `wait_for`, idempotent replay, bad queries,
//! rebuild while queries run, version change on start, filters and snippets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::tickets;

use std::time::Duration;

use annals::prelude::*;
use annals::projections::*;
use tickets::{TicketEvent, TicketSearch, generated};

fn temp_db() -> sled::Db {
    sled::Config::new().temporary(true).open().unwrap()
}

async fn put(store: &MemStore, id: &str, e: TicketEvent) -> Position {
    store
        .append(
            &tickets::stream(id).unwrap(),
            ExpectedVersion::Any,
            vec![tickets::data(&e)],
        )
        .await
        .unwrap()
        .last_position
}

async fn put_generated(store: &MemStore, n: u64) -> Position {
    put(store, &format!("t{n}"), generated(n)).await
}

fn config() -> SearchConfig {
    SearchConfig::default()
        .commit_every_events(50)
        .commit_every(Duration::from_millis(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_found_after_wait_for_with_snippets_filters_and_counts() {
    let store = MemStore::new();
    let dir = tempfile::tempdir().unwrap();
    let db = temp_db();
    let projection = SearchProjection::open(TicketSearch::default(), dir.path(), config()).unwrap();
    let index = projection.index();
    let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
    let h = runner
        .start(Box::new(projection), ProjectionConfig::default())
        .unwrap();
    put(
        &store,
        "a",
        TicketEvent::Opened {
            title: "Printer on fire".into(),
            body: "the office printer smokes".into(),
            priority: 4,
        },
    )
    .await;
    put(
        &store,
        "b",
        TicketEvent::Opened {
            title: "VPN drops".into(),
            body: "vpn disconnects hourly".into(),
            priority: 1,
        },
    )
    .await;
    let p = put(
        &store,
        "b",
        TicketEvent::Commented {
            text: "also the printer is slow".into(),
        },
    )
    .await;
    h.wait_for(p, Duration::from_secs(10)).await.unwrap();
    let hits = index.search("printer", 10).unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].id, "a", "title and body match beats body only");
    assert!(hits[0].snippet.contains("<b>"), "{}", hits[0].snippet);
    assert_eq!(hits[0].fields["status"], serde_json::json!(["open"]));
    let high = index
        .search_filtered("printer", &[FastFilter::new("priority", 3, 5)], 10)
        .unwrap();
    assert_eq!(
        high.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(index.count("vpn").unwrap(), 1);
    assert_eq!(index.count("status:open").unwrap(), 2);
    let p = put(
        &store,
        "a",
        TicketEvent::Closed {
            reason: "fixed".into(),
        },
    )
    .await;
    h.wait_for(p, Duration::from_secs(10)).await.unwrap();
    assert_eq!(index.count("status:closed").unwrap(), 1);
    let p = put(&store, "b", TicketEvent::Assigned { to: "ada".into() }).await;
    h.wait_for(p, Duration::from_secs(10)).await.unwrap();
    assert_eq!(index.count("assignee:ada").unwrap(), 1);
    assert_eq!(index.num_docs(), 2);
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let projection = SearchProjection::open(TicketSearch::default(), dir.path(), config()).unwrap();
    let index = projection.index();
    for bad in ["nosuchfield:x", "title:(unclosed", "priority:[a TO b]"] {
        match index.search(bad, 10) {
            Err(ProjectionError::Query { query, .. }) => assert_eq!(query, bad),
            other => panic!("{bad:?}: expected a Query error, got {other:?}"),
        }
    }
    assert!(matches!(
        index.search_filtered("x", &[FastFilter::new("nope", 0, 1)], 5),
        Err(ProjectionError::Query { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_is_idempotent_and_restart_resumes_from_the_payload_checkpoint() {
    let store = MemStore::new();
    let dir = tempfile::tempdir().unwrap();
    let db = temp_db();
    for n in 0..120 {
        put_generated(&store, n).await;
    }
    for n in 0..40 {
        put(
            &store,
            &format!("t{n}"),
            TicketEvent::Commented {
                text: "zebra".into(),
            },
        )
        .await;
    }
    let head = store.head_position();
    {
        let projection =
            SearchProjection::open(TicketSearch::default(), dir.path(), config()).unwrap();
        let index = projection.index();
        let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
        let h = runner
            .start(Box::new(projection), ProjectionConfig::default())
            .unwrap();
        h.wait_for(head, Duration::from_secs(20)).await.unwrap();
        assert_eq!(index.num_docs(), 120);
        assert_eq!(index.count("zebra").unwrap(), 40);
        // Replaying everything again (reset to 0) upserts, never duplicates.
        h.reset(Position::NONE).await.unwrap();
        h.wait_for(head, Duration::from_secs(20)).await.unwrap();
        assert_eq!(index.num_docs(), 120);
        assert_eq!(
            index.count("zebra").unwrap(),
            40,
            "comments re-applied onto the stored body stay single"
        );
        runner.shutdown().await;
    }
    // Restart: the checkpoint comes from the commit payload.
    let mut projection =
        SearchProjection::open(TicketSearch::default(), dir.path(), config()).unwrap();
    assert_eq!(
        projection.checkpoint().await.unwrap().unwrap().position,
        head
    );
    assert_eq!(projection.index().num_docs(), 120);
    let more = put_generated(&store, 500).await;
    project_until(&store, &mut projection, more, 100)
        .await
        .unwrap();
    projection.commit().await.unwrap();
    assert_eq!(projection.index().num_docs(), 121);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_runs_beside_the_live_index_and_queries_answer_throughout() {
    let store = MemStore::new();
    let dir = tempfile::tempdir().unwrap();
    let db = temp_db();
    for n in 0..1500 {
        put_generated(&store, n).await;
    }
    let projection = SearchProjection::open(TicketSearch::default(), dir.path(), config()).unwrap();
    let index = projection.index();
    let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
    let pc = ProjectionConfig::default().batch_size(100);
    let h = runner.start(Box::new(projection), pc).unwrap();
    h.wait_for(store.head_position(), Duration::from_secs(30))
        .await
        .unwrap();
    let before = index.count("printer").unwrap();
    assert!(before > 0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let querier = {
        let index = index.clone();
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let mut queries = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let n = index.count("printer").unwrap();
                assert!(
                    n >= before,
                    "queries during the rebuild see the full old index ({n} < {before})"
                );
                queries += 1;
            }
            queries
        })
    };
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 2000..2100 {
                put_generated(&store, n).await;
            }
        })
    };
    h.rebuild(None).await.unwrap();
    writer.await.unwrap();
    h.wait_for(store.head_position(), Duration::from_secs(30))
        .await
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let queries = querier.await.unwrap();
    assert!(queries > 0);
    assert_eq!(
        index.num_docs(),
        1600,
        "the swapped-in index has everything, appended-during-rebuild included"
    );
    let generations: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("gen-"))
        .collect();
    assert_eq!(generations.len(), 1, "the old index was removed");
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_projection_version_rebuilds_on_start() {
    let store = MemStore::new();
    let dir = tempfile::tempdir().unwrap();
    let db = temp_db();
    for n in 0..30 {
        put_generated(&store, n).await;
    }
    {
        let projection =
            SearchProjection::open(TicketSearch::default(), dir.path(), config()).unwrap();
        let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
        let h = runner
            .start(Box::new(projection), ProjectionConfig::default())
            .unwrap();
        h.wait_for(Position(30), Duration::from_secs(10))
            .await
            .unwrap();
        runner.shutdown().await;
    }
    let v2 = TicketSearch {
        version: 2,
        ..TicketSearch::default()
    };
    let projection = SearchProjection::open(v2, dir.path(), config()).unwrap();
    let index = projection.index();
    assert_eq!(
        index.num_docs(),
        30,
        "the old index serves until the rebuild is done"
    );
    let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
    let h = runner
        .start(Box::new(projection), ProjectionConfig::default())
        .unwrap();
    h.wait_for(Position(30), Duration::from_secs(10))
        .await
        .unwrap();
    let mut waited = 0;
    while std::fs::read_to_string(dir.path().join("CURRENT"))
        .unwrap()
        .trim()
        != "2"
        && waited < 100
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("CURRENT"))
            .unwrap()
            .trim(),
        "2"
    );
    assert_eq!(index.num_docs(), 30);
    runner.shutdown().await;
}

/// A tool reads the stored index's checkpoint without the projector's types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_checkpoint_reads_a_stored_index() {
    let store = MemStore::new();
    let dir = tempfile::tempdir().unwrap();
    assert!(search_checkpoint(dir.path()).unwrap().is_none());
    let mut projection =
        SearchProjection::open(TicketSearch::default(), dir.path(), config()).unwrap();
    let mut last = Position::NONE;
    for n in 0..5 {
        last = put_generated(&store, n).await;
    }
    project_to_head(&store, &mut projection, 100).await.unwrap();
    projection.commit().await.unwrap();
    let (generation, checkpoint) = search_checkpoint(dir.path()).unwrap().unwrap();
    assert_eq!(generation, 1);
    assert_eq!(checkpoint.map(|c| c.position), Some(last));
}

/// The index as of a position is one call; its scratch directory goes with the last handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_as_of_a_position_in_one_call() {
    let store = MemStore::new();
    let opened = |title: &str| TicketEvent::Opened {
        title: title.into(),
        body: "on the third floor".into(),
        priority: 2,
    };
    let then = put(&store, "a", opened("Printer jams")).await;
    put(&store, "b", opened("Printer smokes")).await;
    let index = SearchProjection::as_of(&store, TicketSearch::default(), then, config())
        .await
        .unwrap();
    let hits = index.search("printer", 10).unwrap();
    assert_eq!(
        hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    let now = SearchProjection::as_of(
        &store,
        TicketSearch::default(),
        store.head_position(),
        config(),
    )
    .await
    .unwrap();
    assert_eq!(now.count("printer").unwrap(), 2);
    let scratch_dirs = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("annals-search-as-of-{}-", std::process::id()))
            })
            .count()
    };
    assert!(scratch_dirs() >= 2);
    let copy = index.clone();
    drop(index);
    assert_eq!(copy.count("printer").unwrap(), 1);
    drop((copy, now));
    assert_eq!(scratch_dirs(), 0);
}
