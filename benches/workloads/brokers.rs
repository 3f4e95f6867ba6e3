//! The broker workloads: `relay` (events/s from a pre-filled store to the broker, beside a
//! raw client of the same broker doing the same publishes) and `e2e` (append-acknowledged
//! to handled-in-the-other-service latency at a steady rate), per broker:
//! `--system annals-nats` (default), `annals-amqp` (the local RabbitMQ) or `annals-kafka`
//! (the cluster at `ANNALS_KAFKA_BOOTSTRAP`, else librdkafka's mock cluster in-process).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::prelude::*;
use annals_broker::{
    Consumer, HandleError, Inbox, InboxConfig, InboxHandler, IncomingEvent, MemCheckpoints,
    MemDeadLetters, OutgoingMessage, Publisher, Relay, RelayConfig,
};

use super::{Args, event, line};

/// The local NATS server with JetStream.
const NATS: &str = "127.0.0.1:4222";
/// The local RabbitMQ.
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The broker of a run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum System {
    Nats,
    Amqp,
    Kafka,
}

impl System {
    fn of(args: &Args) -> Self {
        match args.system.as_deref() {
            Some("annals-amqp") => System::Amqp,
            Some("annals-kafka") => System::Kafka,
            Some("annals-nats") | None => System::Nats,
            Some(other) => {
                eprintln!(
                    "unknown system {other:?}; known: annals-nats, annals-amqp, annals-kafka"
                );
                std::process::exit(2);
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            System::Nats => "annals-nats",
            System::Amqp => "annals-amqp",
            System::Kafka => "annals-kafka",
        }
    }

    fn floor(self) -> &'static str {
        match self {
            System::Nats => "nats-floor",
            System::Amqp => "lapin-floor",
            System::Kafka => "rdkafka-floor",
        }
    }
}

/// Kafka's bootstrap servers: `ANNALS_KAFKA_BOOTSTRAP`, or a mock cluster (three brokers)
/// on a thread of its own that creates the topics it is asked for.
fn kafka() -> (String, std::sync::mpsc::Sender<String>) {
    let (topics_tx, topics_rx) = std::sync::mpsc::channel::<String>();
    if let Ok(b) = std::env::var("ANNALS_KAFKA_BOOTSTRAP") {
        return (b, topics_tx);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let cluster = annals_kafka::rdkafka::mocking::MockCluster::new(3).unwrap();
        tx.send(cluster.bootstrap_servers()).unwrap();
        while let Ok(topic) = topics_rx.recv() {
            cluster.create_topic(&topic, 6, 1).unwrap();
        }
        loop {
            std::thread::park();
        }
    });
    (rx.recv().unwrap(), topics_tx)
}

/// What a run's destinations need: for Kafka, the cluster and a line to create topics.
struct Destination {
    kafka: (String, std::sync::mpsc::Sender<String>),
}

impl Destination {
    fn new(system: System) -> Self {
        Self {
            kafka: if system == System::Kafka {
                kafka()
            } else {
                (String::new(), std::sync::mpsc::channel().0)
            },
        }
    }

    /// A name unique to this run.
    fn unique(name: &str) -> String {
        format!(
            "{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        )
    }
}

/// Relay: events/s from a pre-filled sled store of 200,000 events (10,000 streams) into the
/// broker, beside the broker's raw client doing the same publishes (the same CloudEvents
/// messages, the same in-flight window) in the same run.
pub(super) async fn relay(args: &Args) {
    let system = System::of(args);
    let total = args.events.unwrap_or(200_000);
    let window = args.concurrency.unwrap_or(256);
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    // Written like W1: one event per append, 64 writers, 10,000 streams, so the log
    // interleaves streams as a service's log does. (A run of one stream's events relays at
    // one round trip per event: the relay keeps one message per subject in flight.)
    let same_stream = args.batch.unwrap_or(1);
    let writers = 64;
    let mut tasks = Vec::new();
    for t in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = t * same_stream;
            while i < total {
                let n = same_stream.min(total - i);
                let batch: Vec<_> = (0..n).map(|k| event(t, i + k)).collect();
                let s = StreamId::new(format!("account-{}", (i / same_stream) % 10_000)).unwrap();
                store.append(&s, ExpectedVersion::Any, batch).await.unwrap();
                i += writers * same_stream;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let events = store.read_all(Position::NONE, usize::MAX).await.unwrap();
    let dest = Destination::new(system);
    for round in 0..args.repeat.max(1) {
        let messages: Vec<OutgoingMessage> = events
            .iter()
            .map(|e| {
                let subject = annals_broker::subject::subject_for("bench-floor", &e.stream);
                annals_broker::cloudevents::to_message(e, "bench", subject)
            })
            .collect();
        let floor_secs = match system {
            System::Nats => nats_floor(messages, window).await,
            System::Amqp => amqp_floor(messages, window).await,
            System::Kafka => kafka_floor(&dest, messages, window).await,
        };
        let extra = format!(
            ",\"in_flight\":{window},\"round\":{round},\"events_per_append\":{same_stream}"
        );
        line(system.floor(), "relay", events.len(), floor_secs, &extra);
        let secs = match system {
            System::Nats => {
                use annals_nats::async_nats::jetstream;
                let client = annals_nats::async_nats::connect(NATS).await.unwrap();
                let _ = jetstream::new(client.clone())
                    .delete_stream("ANNALS_BENCH_RELAY")
                    .await;
                let p = annals_nats::JetStreamPublisher::new(
                    client,
                    annals_nats::StreamSettings::for_prefix("ANNALS_BENCH_RELAY", "bench-relay"),
                );
                relay_through(&store, p, window).await
            }
            System::Amqp => {
                let exchange = Destination::unique("annals-bench-relay");
                let queue = annals_amqp::QueueSettings::new(
                    AMQP,
                    &exchange,
                    format!("{exchange}.q"),
                    "bench-relay",
                )
                .expires(Duration::from_secs(60));
                let p = annals_amqp::AmqpPublisher::new(
                    annals_amqp::ExchangeSettings::new(AMQP, &exchange).bind(queue),
                );
                let secs = relay_through(&store, p, window).await;
                delete_amqp(&exchange, &[format!("{exchange}.q")]).await;
                secs
            }
            System::Kafka => {
                let topic = Destination::unique("annals-bench-relay");
                let _ = dest.kafka.1.send(topic.clone());
                let p = annals_kafka::KafkaPublisher::new(annals_kafka::TopicSettings::new(
                    &dest.kafka.0,
                    &topic,
                ))
                .unwrap();
                relay_through(&store, p, window).await
            }
        };
        line(
            system.name(),
            "relay",
            events.len(),
            secs,
            &format!("{extra},\"ratio_to_floor\":{:.2}", floor_secs / secs),
        );
    }
}

/// Runs a relay from scratch until the store's head is acknowledged: the seconds it took.
async fn relay_through<P: Publisher>(store: &SledStore, publisher: P, window: usize) -> f64 {
    let started = Instant::now();
    let r = Relay::start(
        store.clone(),
        publisher,
        MemCheckpoints::new(),
        RelayConfig::new("bench", "bench", "bench-relay").max_in_flight(window),
    );
    r.wait_for(store.head_position(), Duration::from_secs(600))
        .await
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    r.shutdown().await;
    secs
}

/// The floor on JetStream: async-nats publishes with `Nats-Msg-Id`, `window` unacknowledged.
async fn nats_floor(messages: Vec<OutgoingMessage>, window: usize) -> f64 {
    use annals_nats::async_nats::jetstream;
    let client = annals_nats::async_nats::connect(NATS).await.unwrap();
    let js = jetstream::new(client.clone());
    let _ = js.delete_stream("ANNALS_BENCH_FLOOR").await;
    js.create_stream(jetstream::stream::Config {
        name: "ANNALS_BENCH_FLOOR".into(),
        subjects: vec!["bench-floor.>".into()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
    let started = Instant::now();
    let mut acks = VecDeque::new();
    for m in messages {
        let mut headers = annals_nats::async_nats::HeaderMap::new();
        for (k, v) in &m.headers {
            headers.insert(k.as_str(), v.as_str());
        }
        let publish = jetstream::message::PublishMessage::build()
            .payload(m.payload.into())
            .headers(headers)
            .message_id(m.id);
        if acks.len() >= window {
            let ack: jetstream::context::PublishAckFuture = acks.pop_front().unwrap();
            ack.await.unwrap();
        }
        acks.push_back(js.send_publish(m.subject, publish).await.unwrap());
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = js.delete_stream("ANNALS_BENCH_FLOOR").await;
    secs
}

/// The floor on RabbitMQ: lapin publishes persistent messages with the same headers to a
/// durable topic exchange bound to a quorum queue, with confirms, `window` unconfirmed.
async fn amqp_floor(messages: Vec<OutgoingMessage>, window: usize) -> f64 {
    use annals_amqp::lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    use annals_amqp::lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
    use annals_amqp::lapin::{BasicProperties, Connection, ConnectionProperties};
    let exchange = Destination::unique("annals-bench-floor");
    let queue = format!("{exchange}.q");
    // Declared as the relay's (the crate's declarations), then published to raw.
    drop(
        annals_amqp::AmqpConsumer::open(
            annals_amqp::QueueSettings::new(AMQP, &exchange, &queue, "bench-floor")
                .expires(Duration::from_secs(60)),
        )
        .await
        .unwrap(),
    );
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let started = Instant::now();
    let mut confirms = VecDeque::new();
    for m in messages {
        let mut table = FieldTable::default();
        for (k, v) in &m.headers {
            table.insert(
                ShortString::from(k.as_str()),
                AMQPValue::LongString(LongString::from(v.as_str())),
            );
        }
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(m.id.as_str()))
            .with_headers(table);
        if confirms.len() >= window {
            let c: annals_amqp::lapin::PublisherConfirm = confirms.pop_front().unwrap();
            c.await.unwrap();
        }
        confirms.push_back(
            channel
                .basic_publish(
                    ShortString::from(exchange.as_str()),
                    ShortString::from(m.subject.as_str()),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &m.payload,
                    props,
                )
                .await
                .unwrap(),
        );
    }
    for c in confirms {
        c.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = conn.close(200, "bye".into()).await;
    delete_amqp(&exchange, &[queue]).await;
    secs
}

/// Deletes a bench's exchange and queues.
async fn delete_amqp(exchange: &str, queues: &[String]) {
    use annals_amqp::lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    use annals_amqp::lapin::{Connection, ConnectionProperties};
    let conn = Connection::connect(AMQP, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    for q in queues {
        let _ = channel
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = channel
        .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
        .await;
    let _ = conn.close(200, "bye".into()).await;
}

/// The floor on Kafka: an idempotent rdkafka producer (`acks=all`) sends the same records
/// (key = subject, the same headers), `window` unacknowledged.
async fn kafka_floor(dest: &Destination, messages: Vec<OutgoingMessage>, window: usize) -> f64 {
    use annals_kafka::rdkafka::ClientConfig;
    use annals_kafka::rdkafka::message::{Header, OwnedHeaders};
    use annals_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
    let topic = Destination::unique("annals-bench-floor");
    let _ = dest.kafka.1.send(topic.clone());
    // Created as the relay's topic is (on a real cluster: by the crate).
    annals_kafka::KafkaPublisher::new(annals_kafka::TopicSettings::new(&dest.kafka.0, &topic))
        .unwrap()
        .prepare()
        .await
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &dest.kafka.0)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .create()
        .unwrap();
    let started = Instant::now();
    let mut acks = VecDeque::new();
    for m in messages {
        let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
        for (k, v) in &m.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_str()),
            });
        }
        if acks.len() >= window {
            let a: annals_kafka::rdkafka::producer::DeliveryFuture = acks.pop_front().unwrap();
            a.await.unwrap().unwrap();
        }
        let record = FutureRecord::to(&topic)
            .key(m.subject.as_bytes())
            .payload(m.payload.as_slice())
            .headers(headers);
        let mut record = record;
        let delivery = loop {
            match producer.send_result(record) {
                Ok(d) => break d,
                Err((_, r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        acks.push_back(delivery);
    }
    for a in acks {
        a.await.unwrap().unwrap();
    }
    started.elapsed().as_secs_f64()
}

/// Times when each event was handled.
struct Clock {
    handled: Arc<Mutex<HashMap<EventId, Instant>>>,
}

impl InboxHandler for Clock {
    async fn handle(&self, e: &IncomingEvent) -> Result<(), HandleError> {
        let now = Instant::now();
        self.handled.lock().unwrap().entry(e.id).or_insert(now);
        Ok(())
    }
}

/// E2E: append-acknowledged to handled-in-the-other-service latency at a steady rate (default
/// 1,000 events/s for 10 s): service A appends to its sled store, its relay publishes to the
/// broker, service B's inbox handles each event; p50 and p99 of the time from A's append
/// acknowledgement to B's handler.
pub(super) async fn e2e(args: &Args) {
    let system = System::of(args);
    let dest = Destination::new(system);
    match system {
        System::Nats => {
            use annals_nats::async_nats::jetstream;
            use annals_nats::{
                ConsumerSettings, JetStreamConsumer, JetStreamPublisher, StreamSettings,
            };
            let client = annals_nats::async_nats::connect(NATS).await.unwrap();
            let js = jetstream::new(client.clone());
            let _ = js.delete_stream("ANNALS_BENCH_E2E").await;
            let p = JetStreamPublisher::new(
                client.clone(),
                StreamSettings::for_prefix("ANNALS_BENCH_E2E", "bench-e2e"),
            );
            p.prepare().await.unwrap();
            let c =
                JetStreamConsumer::open(client, ConsumerSettings::new("ANNALS_BENCH_E2E", "e2e"))
                    .await
                    .unwrap();
            e2e_with(args, system, p, c).await;
            let _ = js.delete_stream("ANNALS_BENCH_E2E").await;
        }
        System::Amqp => {
            let exchange = Destination::unique("annals-bench-e2e");
            let queue = format!("{exchange}.e2e");
            let c = annals_amqp::AmqpConsumer::open(
                annals_amqp::QueueSettings::new(AMQP, &exchange, &queue, "bench-e2e")
                    .expires(Duration::from_secs(60)),
            )
            .await
            .unwrap();
            let p = annals_amqp::AmqpPublisher::new(annals_amqp::ExchangeSettings::new(
                AMQP, &exchange,
            ));
            e2e_with(args, system, p, c).await;
            delete_amqp(&exchange, &[queue]).await;
        }
        System::Kafka => {
            let topic = Destination::unique("annals-bench-e2e");
            let _ = dest.kafka.1.send(topic.clone());
            let p = annals_kafka::KafkaPublisher::new(annals_kafka::TopicSettings::new(
                &dest.kafka.0,
                &topic,
            ))
            .unwrap();
            p.prepare().await.unwrap();
            // librdkafka's mock cluster answers a fetch only when its wait is over, not when
            // data arrives (a real broker answers at once with `fetch.min.bytes=1`): a short
            // wait keeps the latency the client's, not the mock's.
            let wait = std::env::var("ANNALS_KAFKA_FETCH_WAIT_MS").unwrap_or_else(|_| "5".into());
            let c = annals_kafka::KafkaConsumer::open(
                annals_kafka::ConsumerSettings::new(&dest.kafka.0, &topic, "e2e")
                    .set("fetch.wait.max.ms", wait),
            )
            .await
            .unwrap();
            e2e_with(args, system, p, c).await;
        }
    }
}

async fn e2e_with<P: Publisher, C: Consumer>(
    args: &Args,
    system: System,
    publisher: P,
    consumer: C,
) {
    let rate = args.events.unwrap_or(1_000) as u64;
    let secs = (args.minutes * 60.0).clamp(1.0, 600.0).min(10.0);
    let total = (rate as f64 * secs) as usize;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let relay = Relay::start(
        store.clone(),
        publisher,
        MemCheckpoints::new(),
        RelayConfig::new("e2e", "bench", "bench-e2e"),
    );
    let handled = Arc::new(Mutex::new(HashMap::new()));
    let inbox = Inbox::start(
        consumer,
        Clock {
            handled: Arc::clone(&handled),
        },
        MemDeadLetters::new(),
        InboxConfig::new("e2e").fetch_wait(Duration::from_millis(100)),
    );
    // Warm up: the first event through (a Kafka consumer joins its group first).
    let warm = event(1, 0);
    let warm_id = warm.id;
    store
        .append(
            &StreamId::new("warm-up").unwrap(),
            ExpectedVersion::Any,
            vec![warm],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !handled.lock().unwrap().contains_key(&warm_id) {
        assert!(Instant::now() < deadline, "the warm-up event never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut acked = HashMap::new();
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    for i in 0..total {
        let due = started + every * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let data = event(0, i);
        let id = data.id;
        let s = StreamId::new(format!("account-{}", i % 1000)).unwrap();
        store
            .append(&s, ExpectedVersion::Any, vec![data])
            .await
            .unwrap();
        acked.insert(id, Instant::now());
    }
    inbox
        .wait_for_settled(total as u64 + 1, Duration::from_secs(60))
        .await
        .unwrap();
    inbox.shutdown().await;
    relay.shutdown().await;
    let handled = handled.lock().unwrap().clone();
    let mut l: Vec<Duration> = acked
        .iter()
        .filter_map(|(id, at)| handled.get(id).map(|h| h.saturating_duration_since(*at)))
        .collect();
    l.sort();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "{{\"system\":\"{}\",\"workload\":\"e2e\",\"events\":{},\"rate\":{rate},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2}}}",
        system.name(),
        l.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}
