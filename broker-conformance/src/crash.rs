//! Crash scenarios with real processes: the test binary runs itself as a child (the
//! `*_child` functions return at once unless the parent set their environment variables),
//! and the parent SIGKILLs it mid-work, again and again, then lets one run finish.
//!
//! A test crate wraps each pair in two `#[test]` functions, passing the child's full test
//! name (`module::function`) to the parent.
//!
//! Like the rest of this test crate, it fails by panicking (its unwraps are test assertions;
//! see the crate's root).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use annals_broker::{
    FileCheckpoints, HandleError, Inbox, InboxConfig, InboxHandler, IncomingEvent, MemCheckpoints,
    Relay, RelayConfig, StoreDeadLetters, command_id_for,
};
use annals_core::{
    Direction, EventData, EventStore, ExpectedVersion, Position, StreamId, VersionRange,
};

use crate::{BrokerHarness, check_at_least_once_in_order, check_exactly_once_in_order, fill};

const DIR_VAR: &str = "ANNALS_CRASH_CHILD_DIR";
const PREFIX_VAR: &str = "ANNALS_CRASH_CHILD_PREFIX";
const COUNT_VAR: &str = "ANNALS_CRASH_CHILD_COUNT";
const FINISH_VAR: &str = "ANNALS_CRASH_CHILD_FINISH";

fn stress() -> bool {
    std::env::var("ANNALS_STRESS").is_ok_and(|v| v == "1")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn spawn_child<H: BrokerHarness>(
    h: &H,
    child_test: &str,
    vars: &[(&str, String)],
    stdout: Stdio,
) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", child_test, "--nocapture", "--test-threads=1"])
        .envs(h.child_env())
        .stdout(stdout)
        .stderr(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// A xorshift generator seeded from `seed` and the process id.
fn random(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed ^ u64::from(std::process::id());
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// Appends one `Counted` event per incoming event to `count-<incoming stream>`, with the
/// incoming event's command id as event id: the dedup record is the id, stored in the same
/// append as the effect, so a redelivery (or a re-publish) counts once.
struct Counter<S> {
    store: S,
}

impl<S: EventStore> InboxHandler for Counter<S> {
    async fn handle(&self, e: &IncomingEvent) -> Result<(), HandleError> {
        let stream = StreamId::new(format!("count-{}", e.stream)).map_err(HandleError::from)?;
        let id = command_id_for("crash-inbox", e);
        let data = EventData::json("Counted", &e.position.0)?
            .with_id(annals_core::EventId::from_uuid(id))
            .with_metadata(e.caused_metadata());
        self.store
            .append(&stream, ExpectedVersion::Any, vec![data])
            .await?;
        // Widen the window between the effect and the acknowledgement.
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(())
    }
}

/// The inbox child: consumes `<prefix>` as `crash-inbox` into its store until every message
/// took effect.
pub fn inbox_crash_child<H: BrokerHarness, S: EventStore>(
    harness: impl AsyncFnOnce() -> H,
    open: impl FnOnce(&Path) -> S,
) {
    let (Ok(dir), Ok(prefix), Ok(count)) = (
        std::env::var(DIR_VAR),
        std::env::var(PREFIX_VAR),
        std::env::var(COUNT_VAR),
    ) else {
        return;
    };
    let count: usize = count.parse().unwrap();
    runtime().block_on(async move {
        let h = harness().await;
        let store = open(&Path::new(&dir).join("store"));
        let consumer = h.quick_consumer(&prefix, "crash-inbox").await;
        let inbox = Inbox::start(
            consumer,
            Counter {
                store: store.clone(),
            },
            StoreDeadLetters::new(store.clone()),
            InboxConfig::new("crash-inbox").fetch_wait(Duration::from_millis(100)),
        );
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n = store
                .read_all(Position::NONE, usize::MAX)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.event_type == "Counted")
                .count();
            if n >= count || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        inbox.shutdown().await;
        println!("FINISHED");
    });
}

/// The inbox SIGKILLed between handling and acknowledging: 1,600 messages (relayed before
/// the first child starts), 10 kills (50 with `ANNALS_STRESS=1`), then one run to the end.
/// Every message must have taken effect exactly once, in order per stream, nothing parked.
pub fn inbox_sigkilled_between_handling_and_ack<H: BrokerHarness, S: EventStore>(
    harness: impl AsyncFnOnce() -> H,
    open: impl Fn(&Path) -> S,
    prefix: &str,
    child_test: &str,
) {
    let cycles = if stress() { 50 } else { 10 };
    let total = 1600usize;
    let rt = runtime();
    let h = rt.block_on(async {
        let h = harness().await;
        let publisher = h.publisher(prefix).await;
        // The queue exists before anything is published (brokers without a log).
        drop(h.quick_consumer(prefix, "crash-inbox").await);
        let source = annals_store::MemStore::new();
        let head = fill(&source, "src", 8, total).await;
        crate::relay_through(
            &source,
            publisher,
            MemCheckpoints::new(),
            RelayConfig::new("inbox-crash", "crash-test", prefix),
            head,
        )
        .await;
        h
    });
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let vars = [
        (DIR_VAR, dir.display().to_string()),
        (PREFIX_VAR, prefix.to_owned()),
        (COUNT_VAR, total.to_string()),
    ];
    let mut next = random(0x2545_f491_4f6c_dd1d);
    for _ in 0..cycles {
        let mut child = spawn_child(&h, child_test, &vars, Stdio::null());
        std::thread::sleep(Duration::from_millis(100 + next() % 1200));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let status = spawn_child(&h, child_test, &vars, Stdio::null())
        .wait()
        .unwrap();
    assert!(status.success(), "the last inbox run failed");
    rt.block_on(async {
        let store = open(&dir.join("store"));
        let events = store.read_all(Position::NONE, usize::MAX).await.unwrap();
        let mut per_stream: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for e in events.iter().filter(|e| e.event_type == "Counted") {
            per_stream
                .entry(e.stream.to_string())
                .or_default()
                .push(e.decode::<u64>().unwrap());
        }
        let counted: usize = per_stream.values().map(Vec::len).sum();
        assert_eq!(counted, total, "every message took effect exactly once");
        for (stream, positions) in &per_stream {
            assert!(
                positions.windows(2).all(|w| w[0] < w[1]),
                "{stream} in order, none twice: {positions:?}"
            );
        }
        let parked = store
            .read_stream(
                &StreamId::new("annals-inbox-crash-inbox").unwrap(),
                VersionRange::from(..),
                Direction::Forward,
                10,
            )
            .await
            .unwrap();
        assert!(parked.is_empty(), "nothing parked: {parked:?}");
        eprintln!("inbox crash: {cycles} kills, {total} messages, each counted once");
    });
}

/// The relay child: appends 200 events to its store and relays everything (file
/// checkpoints beside the store), printing `DONE` when caught up; then keeps relaying until
/// killed, or stops when told to finish.
pub fn relay_crash_child<H: BrokerHarness, S: EventStore>(
    harness: impl AsyncFnOnce() -> H,
    open: impl FnOnce(&Path) -> S,
) {
    let (Ok(dir), Ok(prefix)) = (std::env::var(DIR_VAR), std::env::var(PREFIX_VAR)) else {
        return;
    };
    let finish = std::env::var(FINISH_VAR).is_ok();
    runtime().block_on(async move {
        let h = harness().await;
        let dir = std::path::PathBuf::from(dir);
        let store = open(&dir.join("store"));
        let config = RelayConfig::new("crash", "crash-test", &prefix)
            .max_in_flight(32)
            .checkpoint_every(Duration::from_millis(5));
        let relay = Relay::start(
            store.clone(),
            h.publisher_again(&prefix).await,
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

/// The relay SIGKILLed at random moments: 20 kills (100 with `ANNALS_STRESS=1`) of a child
/// that appends and relays, then one run to the end. The broker must hold every event of
/// the log exactly once (with de-duplication) or at least once (without), in order per
/// subject.
pub fn relay_sigkilled_at_random_moments<H: BrokerHarness, S: EventStore>(
    harness: impl AsyncFnOnce() -> H,
    open: impl Fn(&Path) -> S,
    close: impl AsyncFn(S),
    prefix: &str,
    child_test: &str,
) {
    let cycles = if stress() { 100 } else { 20 };
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let h = rt.block_on(async {
        let h = harness().await;
        drop(h.publisher(prefix).await);
        // Some events before the first relay starts.
        let store = open(&dir.join("store"));
        fill(&store, "pre", 5, 500).await;
        close(store).await;
        h
    });
    let vars = [
        (DIR_VAR, dir.display().to_string()),
        (PREFIX_VAR, prefix.to_owned()),
    ];
    let mut next = random(0x9e37_79b9_7f4a_7c15);
    let mut killed_before_done = 0;
    for _ in 0..cycles {
        let mut child = spawn_child(&h, child_test, &vars, Stdio::piped());
        let stdout = child.stdout.take().unwrap();
        let lines = std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        // Anywhere from opening the store to well after it caught up.
        std::thread::sleep(Duration::from_millis(5 + next() % 250));
        child.kill().unwrap();
        child.wait().unwrap();
        if !lines.join().unwrap().iter().any(|l| l.contains("DONE")) {
            killed_before_done += 1;
        }
    }
    let mut finish = vars.to_vec();
    finish.push((FINISH_VAR, "1".to_owned()));
    let mut child = spawn_child(&h, child_test, &finish, Stdio::null());
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
        let store = open(&dir.join("store"));
        let events = store.read_all(Position::NONE, usize::MAX).await.unwrap();
        let messages = h.stored(prefix).await;
        if H::DEDUPLICATES {
            check_exactly_once_in_order(&events, &messages);
        } else {
            check_at_least_once_in_order(&events, &messages);
        }
        eprintln!(
            "relay crash: {cycles} kills ({killed_before_done} before catching up), {} events, {} messages",
            events.len(),
            messages.len()
        );
    });
}
