//! A child process runs the search projection while writers append; the parent SIGKILLs it
//! at random moments. After each restart the index resumes from the checkpoint in its commit
//! payload, holds exactly one document per ticket up to that checkpoint (no duplicates from
//! replayed upserts) and catches up to the head. 5 cycles by default, 40 with
//! `ANNALS_STRESS=1`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use crate::common;
use crate::tickets;

use std::collections::HashSet;
use std::time::Duration;

use annals::prelude::*;
use annals::projections::*;
use tickets::{TicketSearch, generated};

const DIR_VAR: &str = "ANNALS_SEARCH_CRASH_DIR";

fn search_config() -> SearchConfig {
    SearchConfig::default()
        .commit_every_events(200)
        .commit_every(Duration::from_millis(30))
}

#[test]
fn search_crash_child() {
    let Some((dir, rt)) = common::child::child_setup(DIR_VAR) else {
        return;
    };
    rt.block_on(async move {
        let store = SledStore::open(dir.join("store")).unwrap();
        let db = common::child::open_read_models(&dir);
        let projection =
            SearchProjection::open(TicketSearch::default(), dir.join("search"), search_config())
                .unwrap();
        let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
        let _h = runner
            .start(
                Box::new(projection),
                ProjectionConfig::default().batch_size(50),
            )
            .unwrap();
        println!("READY");
        let mut tasks = Vec::new();
        for t in 0..3u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for k in 0u64.. {
                    let e = generated(k * 3 + t);
                    let s = tickets::stream(&format!("{}-{t}-{k}", std::process::id())).unwrap();
                    store
                        .append(&s, ExpectedVersion::NoStream, vec![tickets::data(&e)])
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

async fn tickets_up_to(store: &SledStore, until: Position) -> HashSet<String> {
    let events = store
        .read_all(Position::NONE, until.0 as usize)
        .await
        .unwrap();
    events
        .iter()
        .filter(|e| e.event_type == "Opened")
        .filter_map(|e| tickets::ticket_id(e).map(str::to_owned))
        .collect()
}

#[test]
fn sigkill_resumes_from_the_payload_checkpoint_without_duplicates() {
    let cycles = if std::env::var_os("ANNALS_STRESS").is_some() {
        40
    } else {
        5
    };
    let dir = tempfile::tempdir().unwrap();
    let rt = common::child::runtime();
    let mut seed = 0x2545_F491_4F6C_DD1D_u64 ^ u64::from(std::process::id());
    let mut docs = 0;
    for cycle in 0..cycles {
        let run_for = Duration::from_millis(100 + common::child::next(&mut seed) % 300);
        common::child::run_and_kill(
            "search_crash::search_crash_child",
            DIR_VAR,
            dir.path(),
            run_for,
            cycle,
        );

        rt.block_on(async {
            let store = SledStore::open(dir.path().join("store")).unwrap();
            let db = common::child::open_read_models(dir.path());
            let projection = SearchProjection::open(
                TicketSearch::default(),
                dir.path().join("search"),
                search_config(),
            )
            .unwrap();
            let index = projection.index();
            let cp = projection
                .checkpoint()
                .await
                .unwrap()
                .map_or(Position::NONE, |c| c.position);
            let expected = tickets_up_to(&store, cp).await;
            assert_eq!(
                index.num_docs() as usize,
                expected.len(),
                "cycle {cycle}: one document per ticket up to {cp}"
            );
            let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
            let h = runner
                .start(Box::new(projection), ProjectionConfig::default())
                .unwrap();
            let head = store.head_position();
            h.wait_for(head, Duration::from_secs(60)).await.unwrap();
            let all = tickets_up_to(&store, head).await;
            assert_eq!(
                index.num_docs() as usize,
                all.len(),
                "cycle {cycle}: caught up without duplicates"
            );
            for id in all.iter().take(20) {
                assert_eq!(index.count(&format!("id:\"{id}\"")).unwrap(), 1);
            }
            runner.shutdown().await;
            docs = all.len();
        });
    }
    println!("search crash cycles: {cycles}, documents at the end: {docs}, duplicates: 0");
}
