//! The inbox SIGKILLed between handling and acknowledging: a child process consumes
//! JetStream messages and, for each, executes a command on its own sled store (a counter that
//! always appends) with a command id derived from the message; the parent kills it at random
//! moments, again and again, then lets one finish. Every message must have taken effect
//! exactly once. 10 cycles by default, 50 with `ANNALS_STRESS=1`.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use annals_broker::{
    HandleError, Inbox, InboxConfig, InboxHandler, IncomingEvent, MemCheckpoints, RelayConfig,
    StoreDeadLetters, command_id_for,
};
use annals_broker_conformance::{fill, relay_through};
use annals_core::{
    Direction, EventData, EventStore, ExpectedVersion, Position, StreamId, VersionRange,
};
use annals_nats::async_nats::jetstream;
use annals_nats::{ConsumerSettings, JetStreamConsumer, JetStreamPublisher, StreamSettings};
use annals_store::{MemStore, SledStore};

use crate::harness::{client, stream_name};

const DIR_VAR: &str = "ANNALS_INBOX_CHILD_DIR";
const STREAM_VAR: &str = "ANNALS_INBOX_CHILD_STREAM";
const COUNT_VAR: &str = "ANNALS_INBOX_CHILD_COUNT";

/// Appends one `Counted` event per incoming event to `count-<incoming stream>`, with the
/// incoming event's command id: without idempotency a redelivery would count twice.
struct Counter {
    store: SledStore,
}

impl InboxHandler for Counter {
    async fn handle(&self, e: &IncomingEvent) -> Result<(), HandleError> {
        let stream = StreamId::new(format!("count-{}", e.stream)).map_err(HandleError::from)?;
        let id = command_id_for("crash-inbox", e);
        let data = EventData::json("Counted", &e.position.0)?
            .with_id(annals_core::EventId::from_uuid(id))
            .with_metadata(e.caused_metadata());
        // The same id again is the original append's result, nothing stored twice.
        self.store
            .append(&stream, ExpectedVersion::Any, vec![data])
            .await?;
        // Widen the window between the effect and the acknowledgement.
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(())
    }
}

#[test]
fn inbox_crash_child() {
    let (Ok(dir), Ok(stream), Ok(count)) = (
        std::env::var(DIR_VAR),
        std::env::var(STREAM_VAR),
        std::env::var(COUNT_VAR),
    ) else {
        return;
    };
    let count: u64 = count.parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let store = SledStore::open(std::path::Path::new(&dir).join("store")).unwrap();
        let consumer = JetStreamConsumer::open(
            client().await,
            ConsumerSettings::new(&stream, "crash-inbox").ack_wait(Duration::from_millis(500)),
        )
        .await
        .unwrap();
        let inbox = Inbox::start(
            consumer,
            Counter {
                store: store.clone(),
            },
            StoreDeadLetters::new(store.clone()),
            InboxConfig::new("crash-inbox").fetch_wait(Duration::from_millis(100)),
        );
        // Finish when every message's effect is in the store.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n = store
                .read_all(Position::NONE, usize::MAX)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.event_type == "Counted")
                .count() as u64;
            if n >= count || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        inbox.shutdown().await;
        store.close().await.unwrap();
        println!("FINISHED");
    });
}

#[test]
fn inbox_sigkilled_between_handling_and_ack() {
    let stress = std::env::var("ANNALS_STRESS").is_ok_and(|v| v == "1");
    let cycles = if stress { 50 } else { 10 };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let prefix = format!("inbox-crash-{}", std::process::id());
    let name = stream_name(&prefix);
    let source = MemStore::new();
    let total = 1600u64;
    rt.block_on(async {
        let js = jetstream::new(client().await);
        let _ = js.delete_stream(&name).await;
        let head = fill(&source, "src", 8, total as usize).await;
        relay_through(
            &source,
            JetStreamPublisher::new(client().await, StreamSettings::for_prefix(&name, &prefix)),
            MemCheckpoints::new(),
            RelayConfig::new("inbox-crash", "crash-test", &prefix),
            head,
        )
        .await;
    });
    let dir = tempfile::tempdir().unwrap();
    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "inbox_crash::inbox_crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .env(STREAM_VAR, &name)
            .env(COUNT_VAR, total.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64 ^ u64::from(std::process::id());
    for _ in 0..cycles {
        let mut child = spawn();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 1200));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let status = spawn().wait().unwrap();
    assert!(status.success(), "the last inbox run failed");
    rt.block_on(async {
        let store = SledStore::open(dir.path().join("store")).unwrap();
        let events = store.read_all(Position::NONE, usize::MAX).await.unwrap();
        let mut per_stream: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for e in events.iter().filter(|e| e.event_type == "Counted") {
            per_stream
                .entry(e.stream.to_string())
                .or_default()
                .push(e.decode::<u64>().unwrap());
        }
        let counted: usize = per_stream.values().map(Vec::len).sum();
        assert_eq!(
            counted as u64, total,
            "every message took effect exactly once"
        );
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
        let _ = jetstream::new(client().await).delete_stream(&name).await;
    });
}
