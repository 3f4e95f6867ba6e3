//! RabbitMQ's own dead-lettering: a message the inbox parks is rejected into the queue's
//! dead-letter exchange (and kept in the parked list); a message returned more often than
//! the quorum queue's delivery limit is dead-lettered by RabbitMQ itself.

use std::time::{Duration, Instant};

use annals_amqp::lapin::options::{BasicAckOptions, BasicGetOptions};
use annals_amqp::{AmqpConsumer, AmqpPublisher, ExchangeSettings, QueueSettings};
use annals_broker::{Consumer, Delivery, MemCheckpoints, RelayConfig};
use annals_broker_conformance::{fill, park_a_poison_message, relay_through};
use annals_store::MemStore;

use crate::harness::{EXPIRES, URI, connect, exchange_name, queue_name};

/// Takes every message in `queue`: (routing key, `x-death` present).
async fn drain(queue: &str) -> Vec<(String, bool)> {
    let conn = connect().await;
    let channel = conn.create_channel().await.unwrap();
    let mut out = Vec::new();
    while let Ok(Some(m)) = channel
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
    {
        let died = m
            .delivery
            .properties
            .headers()
            .as_ref()
            .is_some_and(|h| h.inner().contains_key("x-death"));
        out.push((m.delivery.routing_key.as_str().to_owned(), died));
        m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    out
}

async fn wait_for_dead(queue: &str, n: usize) -> Vec<(String, bool)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut all = Vec::new();
    while all.len() < n {
        assert!(Instant::now() < deadline, "dead letters: {all:?}");
        all.extend(drain(queue).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    all
}

fn settings(prefix: &str, limit: u32) -> QueueSettings {
    QueueSettings::new(URI, exchange_name(prefix), queue_name(prefix, "q"), prefix)
        .delivery_limit(Some(limit))
        .dead_letters(
            format!("{}.dlx", exchange_name(prefix)),
            queue_name(prefix, "dead"),
        )
        .expires(EXPIRES)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_message_is_dead_lettered() {
    let prefix = "dlx-parked";
    let consumer = AmqpConsumer::open(settings(prefix, 20)).await.unwrap();
    let publisher = AmqpPublisher::new(ExchangeSettings::new(URI, exchange_name(prefix)));
    park_a_poison_message(publisher, consumer, prefix).await;
    let dead = wait_for_dead(&queue_name(prefix, "dead"), 1).await;
    assert_eq!(dead, vec![(format!("{prefix}.bad.bad-1"), true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_delivery_limit_rabbitmq_dead_letters() {
    let prefix = "dlx-limit";
    let store = MemStore::new();
    let mut consumer = AmqpConsumer::open(settings(prefix, 2)).await.unwrap();
    let head = fill(&store, "once", 1, 1).await;
    let publisher = AmqpPublisher::new(ExchangeSettings::new(URI, exchange_name(prefix)));
    relay_through(
        &store,
        publisher,
        MemCheckpoints::new(),
        RelayConfig::new(prefix, "test", prefix),
        head,
    )
    .await;
    // Returned again and again: the count the inbox reads grows with each delivery.
    let mut counts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while counts.len() < 3 {
        assert!(Instant::now() < deadline, "deliveries: {counts:?}");
        for d in consumer
            .fetch(10, Duration::from_millis(200))
            .await
            .unwrap()
        {
            counts.push(d.delivered());
            d.nak(Duration::ZERO).await.unwrap();
        }
    }
    assert_eq!(counts, vec![1, 2, 3]);
    let dead = wait_for_dead(&queue_name(prefix, "dead"), 1).await;
    assert_eq!(dead.len(), 1);
    assert!(
        consumer
            .fetch(10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "gone from the queue"
    );
    consumer.close().await;
}
