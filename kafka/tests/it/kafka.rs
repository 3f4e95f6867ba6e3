//! What is Kafka's own: a parked message is copied to the dead-letter topic; partitions
//! move between the members of a consumer group (a member joins, one leaves) while events
//! keep coming, and every event is handled, in order per stream.

use std::time::{Duration, Instant};

use annals_broker::{
    Inbox, InboxConfig, InboxHandler, MemCheckpoints, MemDeadLetters, Relay, RelayConfig,
};
use annals_broker_conformance::{Recorder, fill, park_a_poison_message};
use annals_kafka::{ConsumerSettings, KafkaConsumer};
use annals_store::MemStore;

use crate::harness::{Kafka, read_topic, topic};
use annals_broker_conformance::BrokerHarness as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_message_goes_to_the_dead_letter_topic() {
    let prefix = "k-dlq";
    let h = Kafka::local();
    let publisher = h.publisher(prefix).await;
    let dlq = format!("{}.dead", topic(prefix));
    h.publisher(&format!("{prefix}.dead")).await; // creates the dead-letter topic
    let consumer = KafkaConsumer::open(
        ConsumerSettings::new(h.bootstrap(), topic(prefix), "dlq")
            .partitions(4)
            .dead_letter_topic(&dlq),
    )
    .await
    .unwrap();
    park_a_poison_message(publisher, consumer, prefix).await;
    let bootstrap = h.bootstrap();
    let dead = tokio::task::spawn_blocking(move || read_topic(&bootstrap, &dlq))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, format!("{prefix}.bad.bad-1"));
    assert!(dead[0].1["annals-origin"].starts_with(&topic(prefix)));
    assert_eq!(dead[0].1[annals_broker::cloudevents::TYPE], "Poison");
}

/// A recorder that takes 2 ms per event.
#[derive(Clone)]
struct Slow(Recorder);

impl InboxHandler for Slow {
    async fn handle(
        &self,
        e: &annals_broker::IncomingEvent,
    ) -> Result<(), annals_broker::HandleError> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.0.handle(e).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_move_between_members_without_loss_or_disorder() {
    let prefix = "k-group";
    let h = Kafka::local();
    let publisher = h.publisher(prefix).await;
    let store = MemStore::new();
    let relay = Relay::start(
        store.clone(),
        publisher,
        MemCheckpoints::new(),
        RelayConfig::new(prefix, "test", prefix),
    );
    let recorder = Recorder::default();
    let member = || async {
        Inbox::start(
            h.consumer(prefix, "group").await,
            Slow(recorder.clone()),
            MemDeadLetters::new(),
            InboxConfig::new(prefix).fetch_wait(Duration::from_millis(100)),
        )
    };
    let a = member().await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut last = annals_core::Position::NONE;
            for _ in 0..30 {
                last = fill(&store, "g", 12, 40).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            last
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    // B joins: the group rebalances; A's partitions are revoked and split.
    let b = member().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A leaves: B takes everything.
    a.shutdown().await;
    let head = writer.await.unwrap();
    relay.wait_for(head, Duration::from_secs(30)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let total = 30 * 40;
    while recorder.seen.lock().unwrap().len() < total {
        assert!(
            Instant::now() < deadline,
            "handled {} of {total}",
            recorder.seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (stream, versions) in recorder.handled.lock().unwrap().iter() {
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{stream} in order: {versions:?}"
        );
    }
    assert!(b.status().handled > 0, "B took over");
    b.shutdown().await;
    relay.shutdown().await;
}
