//! The relay SIGKILLed at random moments: a child process appends to a sled store and relays
//! it to JetStream (file checkpoints beside the store); the parent kills it mid-work, again
//! and again, then lets one finish. JetStream must hold every event of the log exactly once
//! (by event id), in order per subject. 20 cycles by default, 100 with `ANNALS_STRESS=1`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use annals_broker::{FileCheckpoints, MemCheckpoints, Relay, RelayConfig};
use annals_broker_conformance::{check_exactly_once_in_order, fill, relay_through};
use annals_core::{EventStore, Position};
use annals_nats::async_nats::jetstream;
use annals_nats::{JetStreamPublisher, StreamSettings};
use annals_store::SledStore;

use crate::harness::{client, stored, stream_name};

const DIR_VAR: &str = "ANNALS_RELAY_CHILD_DIR";
const PREFIX_VAR: &str = "ANNALS_RELAY_CHILD_PREFIX";
const FINISH_VAR: &str = "ANNALS_RELAY_CHILD_FINISH";

/// The child: appends 200 events, relays everything, prints `DONE <head>` when caught up (or
/// keeps relaying until killed).
#[test]
fn relay_crash_child() {
    let (Ok(dir), Ok(prefix)) = (std::env::var(DIR_VAR), std::env::var(PREFIX_VAR)) else {
        return;
    };
    let finish = std::env::var(FINISH_VAR).is_ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = std::path::PathBuf::from(dir);
        let store = SledStore::open(dir.join("store")).unwrap();
        let publisher = JetStreamPublisher::new(
            client().await,
            StreamSettings::for_prefix(stream_name(&prefix), &prefix),
        );
        let config = RelayConfig::new("crash", "crash-test", &prefix)
            .max_in_flight(32)
            .checkpoint_every(Duration::from_millis(5));
        let relay = Relay::start(
            store.clone(),
            publisher,
            FileCheckpoints::new(dir.join("checkpoints")),
            config,
        );
        println!("STARTED");
        let head = fill(&store, "crash", 9, 200).await;
        relay.wait_for(head, Duration::from_secs(60)).await.unwrap();
        println!("DONE {}", head.0);
        if finish {
            relay.shutdown().await;
        } else {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });
}

fn spawn_child(dir: &std::path::Path, prefix: &str, finish: bool) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "relay_crash::relay_crash_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(DIR_VAR, dir)
    .env(PREFIX_VAR, prefix)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if finish {
        cmd.env(FINISH_VAR, "1");
    }
    cmd.spawn().unwrap()
}

#[test]
fn relay_sigkilled_at_random_moments() {
    let stress = std::env::var("ANNALS_STRESS").is_ok_and(|v| v == "1");
    let cycles = if stress { 100 } else { 20 };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let prefix = format!("crash-{}", std::process::id());
    let name = stream_name(&prefix);
    let js = rt.block_on(async { jetstream::new(client().await) });
    let _ = rt.block_on(js.delete_stream(&name));
    let dir = tempfile::tempdir().unwrap();
    // Some events before the first relay starts.
    rt.block_on(async {
        let store = SledStore::open(dir.path().join("store")).unwrap();
        fill(&store, "pre", 5, 500).await;
        store.close().await.unwrap();
    });
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut killed_before_done = 0;
    for _ in 0..cycles {
        let mut child = spawn_child(dir.path(), &prefix, false);
        let stdout = child.stdout.take().unwrap();
        let lines = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        // Anywhere from opening the store to well after it caught up.
        std::thread::sleep(Duration::from_millis(5 + next() % 250));
        child.kill().unwrap();
        child.wait().unwrap();
        if !lines.join().unwrap().iter().any(|l| l.starts_with("DONE")) {
            killed_before_done += 1;
        }
    }
    // One run to the end.
    let mut child = spawn_child(dir.path(), &prefix, true);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the last relay failed");
            break;
        }
        assert!(Instant::now() < deadline, "the last relay did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.block_on(async {
        let store = SledStore::open(dir.path().join("store")).unwrap();
        let events = store.read_all(Position::NONE, usize::MAX).await.unwrap();
        let messages = stored(&client().await, &name).await;
        check_exactly_once_in_order(&events, &messages);
        eprintln!(
            "relay crash: {cycles} kills ({killed_before_done} before catching up), {} events, {} messages",
            events.len(),
            messages.len()
        );
        // The stream's own checkpoint agrees: a relay from scratch adds nothing.
        let publisher = JetStreamPublisher::new(client().await, StreamSettings::for_prefix(&name, &prefix));
        let again = RelayConfig::new("again", "t", &prefix);
        relay_through(&store, publisher, MemCheckpoints::new(), again, store.head_position()).await;
        assert_eq!(stored(&client().await, &name).await.len(), messages.len());
        let _ = js.delete_stream(&name).await;
    });
}
