//! Crash cycles across the store and its read models: a child process appends in `Durable`
//! mode from 8 tasks (single- and multi-event appends, with expected-version conflicts on
//! shared streams), prints each ack, and runs a key-value and a search projection; the parent
//! SIGKILLs it at a random moment, reopens everything and checks that every acked event is
//! present, no append is partial, positions and versions are contiguous, the KV read model
//! equals a rebuild at its checkpoint with nothing applied twice, and the search index holds
//! exactly one document per ticket up to its checkpoint.
//!
//! 20 cycles by default; `ANNALS_STRESS=1` runs 300 and prints the one-line summary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic
)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

use annals::Error;
use annals::prelude::*;
use annals::projections::{
    KvProjection, KvReadModel, ProjectionConfig, ProjectionRunner, SearchConfig, SearchProjection,
};

use crate::common;
use crate::tickets;

use common::projections::PerStream;
use tickets::TicketEvent;

const DIR_VAR: &str = "ANNALS_CRASH_CHILD_DIR";

/// The child: runs only when the parent sets `ANNALS_CRASH_CHILD_DIR`.
#[test]
fn crash_child() {
    let Some((dir, rt)) = common::child::child_setup(DIR_VAR) else {
        return;
    };
    rt.block_on(async move {
        let store = SledStore::open(dir.join("store")).unwrap();
        let db = common::child::open_read_models(&dir);
        let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
        let model = KvReadModel::open(&db, "per-stream").unwrap();
        let pc = ProjectionConfig::default().batch_size(40);
        runner
            .start(
                Box::new(KvProjection::new(PerStream::new("per-stream"), model)),
                pc.clone(),
            )
            .unwrap();
        let search = SearchProjection::open(
            tickets::TicketSearch::default(),
            dir.join("search"),
            search_config(),
        )
        .unwrap();
        runner.start(Box::new(search), pc).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        // One printer thread, so ack lines never interleave.
        std::thread::spawn(move || {
            let mut out = std::io::stdout().lock();
            while let Ok(line) = rx.recv() {
                writeln!(out, "{line}").unwrap();
                out.flush().unwrap();
            }
        });
        // Through the printer thread: it holds the stdout lock while it waits.
        tx.send("READY".to_string()).unwrap();
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let store = store.clone();
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut seed = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ std::process::id() as u64;
                for k in 0u64.. {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // Streams shared by two tasks, so some appends conflict.
                    let stream = tickets::stream(&format!("c{}-{}", t / 2, seed % 3)).unwrap();
                    let n = 1 + (seed >> 8) % 3;
                    let head = store
                        .stream_head(&stream)
                        .await
                        .unwrap()
                        .unwrap_or(Version::NONE);
                    let tag = format!("{}-{t}-{k}", std::process::id());
                    let events: Vec<EventData> = (0..n)
                        .map(|i| {
                            let e = if head == Version::NONE && i == 0 {
                                TicketEvent::Opened {
                                    title: format!("crash {tag}"),
                                    body: "kill nine".into(),
                                    priority: 3,
                                }
                            } else {
                                TicketEvent::Commented {
                                    text: format!("{tag}/{i}"),
                                }
                            };
                            tickets::data(&e).with_metadata(
                                Metadata::new()
                                    .with_header("append", tag.clone())
                                    .with_header("count", n.to_string()),
                            )
                        })
                        .collect();
                    match store
                        .append(&stream, ExpectedVersion::Exact(head), events.clone())
                        .await
                    {
                        Ok(r) => {
                            let ids: Vec<String> =
                                events.iter().map(|e| e.id.to_string()).collect();
                            tx.send(format!(
                                "ACK {stream} {} {} {}",
                                r.first_version.0,
                                r.first_position.0,
                                ids.join(",")
                            ))
                            .unwrap();
                        }
                        Err(Error::Conflict { .. }) => {}
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

struct Ack {
    stream: String,
    first_version: u64,
    first_position: u64,
    ids: Vec<String>,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.strip_prefix("ACK ")?.split(' ');
    Some(Ack {
        stream: parts.next()?.to_string(),
        first_version: parts.next()?.parse().ok()?,
        first_position: parts.next()?.parse().ok()?,
        ids: parts.next()?.split(',').map(str::to_string).collect(),
    })
}

/// Checks the invariants of a reopened store; returns (events, acked appends checked).
fn search_config() -> SearchConfig {
    SearchConfig::default()
        .commit_every_events(200)
        .commit_every(Duration::from_millis(30))
}

/// The KV read model equals a rebuild at its checkpoint with nothing applied twice; the
/// search index holds one document per ticket opened up to its checkpoint.
async fn verify_read_models(store: &SledStore, dir: &std::path::Path, cycle: usize) {
    let db = common::child::open_read_models(dir);
    common::projections::check_kv_against_rebuild(
        store,
        &db,
        "per-stream",
        &format!("cycle {cycle}"),
    )
    .await;
    drop(db);
    let search = SearchProjection::open(
        tickets::TicketSearch::default(),
        dir.join("search"),
        search_config(),
    )
    .unwrap();
    let cp = annals::projections::Projection::checkpoint(&search)
        .await
        .unwrap()
        .map_or(Position::NONE, |c| c.position);
    let opened = store
        .read_all(Position::NONE, cp.0 as usize)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == "Opened")
        .count();
    assert_eq!(
        search.index().num_docs() as usize,
        opened,
        "cycle {cycle}: search documents != tickets opened up to {cp}"
    );
}

async fn verify(store: &SledStore, acks: &[Ack]) -> (usize, usize) {
    let all = store.read_all(Position::NONE, usize::MAX).await.unwrap();
    let mut heads: HashMap<StreamId, u64> = HashMap::new();
    let mut appends: BTreeMap<String, Vec<&RecordedEvent>> = BTreeMap::new();
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, Position(i as u64 + 1), "hole in the log");
        let h = heads.entry(e.stream.clone()).or_default();
        *h += 1;
        assert_eq!(
            e.version,
            Version(*h),
            "versions of {} not contiguous",
            e.stream
        );
        appends
            .entry(e.metadata.headers["append"].clone())
            .or_default()
            .push(e);
    }
    for (tag, events) in &appends {
        let count: usize = events[0].metadata.headers["count"].parse().unwrap();
        assert_eq!(events.len(), count, "append {tag} is partial");
        for w in events.windows(2) {
            assert_eq!(
                w[1].position.0,
                w[0].position.0 + 1,
                "append {tag} not contiguous"
            );
        }
    }
    for ack in acks {
        for (i, id) in ack.ids.iter().enumerate() {
            let p = ack.first_position as usize + i;
            let e = all
                .get(p - 1)
                .unwrap_or_else(|| panic!("acked position {p} lost"));
            assert_eq!(&e.id.to_string(), id, "acked event at {p} differs");
            assert_eq!(e.stream.as_str(), ack.stream);
            assert_eq!(e.version.0, ack.first_version + i as u64);
        }
    }
    (all.len(), appends.len())
}

#[test]
fn kill_nine_loses_no_acked_event() {
    let stress = std::env::var_os("ANNALS_STRESS").is_some();
    let cycles = if stress { 300 } else { 20 };
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut seed = 0x2545_F491_4F6C_DD1D_u64 ^ u64::from(std::process::id());
    let mut acks: Vec<Ack> = Vec::new();
    let started = Instant::now();
    let mut events = 0;
    for cycle in 0..cycles {
        let run_for = Duration::from_millis(5 + common::child::next(&mut seed) % 120);
        let lines =
            common::child::run_and_kill("crash::crash_child", DIR_VAR, dir.path(), run_for, cycle);
        acks.extend(lines.iter().filter_map(|l| parse_ack(l)));
        let store = SledStore::open(dir.path().join("store")).unwrap();
        let (n, _) = rt.block_on(verify(&store, &acks));
        assert!(n >= events, "cycle {cycle}: the log shrank");
        events = n;
        rt.block_on(verify_read_models(&store, dir.path(), cycle));
        drop(store);
    }
    println!(
        "crash cycles: {cycles}, acked: {}, lost: 0, partial: 0, holes: 0, read-model mismatches: 0 (events: {events}, secs: {:.1})",
        acks.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(!acks.is_empty(), "the child never acknowledged anything");
}
