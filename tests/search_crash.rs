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

#[path = "../examples/support/tickets.rs"]
mod tickets;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use annals::prelude::*;
use annals::projections::*;
use tickets::{TicketSearch, generated};

const DIR_VAR: &str = "ANNALS_SEARCH_CRASH_DIR";

fn open_db(dir: &Path) -> sled::Db {
    for _ in 0..300 {
        if let Ok(db) = sled::open(dir.join("rm")) {
            return db;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    sled::open(dir.join("rm")).unwrap()
}

fn search_config() -> SearchConfig {
    SearchConfig {
        commit_every_events: 200,
        commit_every: Duration::from_millis(30),
        ..SearchConfig::default()
    }
}

#[test]
fn search_crash_child() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = SledStore::open(dir.join("store")).unwrap();
        let db = open_db(&dir);
        let projection =
            SearchProjection::open(TicketSearch::default(), dir.join("search"), search_config())
                .unwrap();
        let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
        let _h = runner
            .start(
                Box::new(projection),
                ProjectionConfig {
                    batch_size: 50,
                    ..ProjectionConfig::default()
                },
            )
            .unwrap();
        println!("READY");
        let mut tasks = Vec::new();
        for t in 0..3u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for k in 0u64.. {
                    let e = generated(k * 3 + t);
                    let s = tickets::stream(&format!("{}-{t}-{k}", std::process::id()));
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
    let exe = std::env::current_exe().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut seed = 0x2545_F491_4F6C_DD1D_u64 ^ u64::from(std::process::id());
    let mut docs = 0;
    for cycle in 0..cycles {
        let mut child = Command::new(&exe)
            .args([
                "search_crash_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) if l.ends_with("READY") => break,
                Ok(_) => {}
                Err(e) => {
                    let _ = child.kill();
                    panic!("cycle {cycle}: child did not start: {e}");
                }
            }
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 300));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();

        rt.block_on(async {
            let store = SledStore::open(dir.path().join("store")).unwrap();
            let db = open_db(dir.path());
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
