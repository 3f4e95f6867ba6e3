//! The Kafka harness of the conformance suite: librdkafka's mock cluster.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use annals_broker::Headers;
use annals_broker_conformance::BrokerHarness;
use annals_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
use annals_kafka::rdkafka::message::Message as _;
use annals_kafka::rdkafka::{ClientConfig, TopicPartitionList};
use annals_kafka::{ConsumerSettings, KafkaConsumer, KafkaPublisher, TopicSettings};

/// The variable that gives a crash test's child its parent's mock cluster.
const BOOTSTRAP_VAR: &str = "ANNALS_KAFKA_TEST_BOOTSTRAP";

/// The mock cluster: its bootstrap servers, and a line to the thread that owns it (to
/// create topics: the mock cluster does not take the admin API's requests).
struct Cluster {
    bootstrap: String,
    commands: Option<Mutex<std::sync::mpsc::Sender<Order>>>,
}

/// What the cluster's thread does, answering on `done`.
struct Order {
    command: Command,
    done: std::sync::mpsc::Sender<()>,
}

enum Command {
    /// Create a topic of four partitions.
    CreateTopic(String),
    /// Take every broker down (true) or up again (false).
    Down(bool),
}

impl Cluster {
    /// The parent's cluster (in a child of a crash test), or a new three-broker mock
    /// cluster owned by a thread of its own that lives as long as the test process.
    fn start() -> Cluster {
        if let Ok(bootstrap) = std::env::var(BOOTSTRAP_VAR) {
            return Cluster {
                bootstrap,
                commands: None,
            };
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (orders_tx, orders_rx) = std::sync::mpsc::channel::<Order>();
        std::thread::spawn(move || {
            let cluster = annals_kafka::rdkafka::mocking::MockCluster::new(3).unwrap();
            tx.send(cluster.bootstrap_servers()).unwrap();
            while let Ok(order) = orders_rx.recv() {
                match order.command {
                    Command::CreateTopic(topic) => cluster.create_topic(&topic, 4, 1).unwrap(),
                    Command::Down(down) => {
                        for broker in 1..=3 {
                            if down {
                                cluster.broker_down(broker).unwrap();
                            } else {
                                cluster.broker_up(broker).unwrap();
                            }
                        }
                    }
                }
                let _ = order.done.send(());
            }
            // The cluster outlives its harness: clients may still be closing.
            loop {
                std::thread::park();
            }
        });
        Cluster {
            bootstrap: rx.recv().unwrap(),
            commands: Some(Mutex::new(orders_tx)),
        }
    }

    /// Has the cluster's thread carry out `command`, when this process owns the cluster.
    fn order(&self, command: Command) {
        if let Some(commands) = &self.commands {
            let (done, wait) = std::sync::mpsc::channel();
            commands
                .lock()
                .unwrap()
                .send(Order { command, done })
                .unwrap();
            wait.recv().unwrap();
        }
    }
}

/// The cluster the tests of this process share.
fn shared() -> Arc<Cluster> {
    static CLUSTER: OnceLock<Arc<Cluster>> = OnceLock::new();
    Arc::clone(CLUSTER.get_or_init(|| Arc::new(Cluster::start())))
}

pub(crate) fn topic(prefix: &str) -> String {
    format!("annals-test.{prefix}")
}

/// A mock cluster: the one the tests of the process share, or one of a test's own (a test
/// that takes the brokers down must not take them from the others).
pub(crate) struct Kafka {
    seen: Mutex<HashMap<String, Vec<(String, Headers)>>>,
    cluster: Arc<Cluster>,
}

impl Kafka {
    pub(crate) fn local() -> Self {
        Self {
            seen: Mutex::default(),
            cluster: shared(),
        }
    }

    pub(crate) fn own_cluster() -> Self {
        Self {
            seen: Mutex::default(),
            cluster: Arc::new(Cluster::start()),
        }
    }

    /// The cluster's bootstrap servers.
    pub(crate) fn bootstrap(&self) -> String {
        self.cluster.bootstrap.clone()
    }

    /// Creates `topic` (four partitions).
    pub(crate) fn create_topic(&self, topic: &str) {
        self.cluster.order(Command::CreateTopic(topic.to_owned()));
    }
}

impl BrokerHarness for Kafka {
    type Publisher = KafkaPublisher;
    type Consumer = KafkaConsumer;
    const DEDUPLICATES: bool = false;

    async fn publisher(&self, prefix: &str) -> KafkaPublisher {
        // Each test uses its own prefix in a process; a mock cluster lives with its process.
        self.create_topic(&topic(prefix));
        let p = self.publisher_again(prefix).await;
        annals_broker::Publisher::prepare(&p).await.unwrap();
        p
    }

    async fn publisher_again(&self, prefix: &str) -> KafkaPublisher {
        KafkaPublisher::new(TopicSettings::new(self.bootstrap(), topic(prefix)).create_with(4, 1))
            .unwrap()
    }

    async fn consumer(&self, prefix: &str, name: &str) -> KafkaConsumer {
        KafkaConsumer::open(
            ConsumerSettings::new(self.bootstrap(), topic(prefix), name)
                .partitions(4)
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "500"),
        )
        .await
        .unwrap()
    }

    async fn set_down(&self, down: bool) -> bool {
        let cluster = Arc::clone(&self.cluster);
        tokio::task::spawn_blocking(move || cluster.order(Command::Down(down)))
            .await
            .unwrap();
        true
    }

    fn child_env(&self) -> Vec<(String, String)> {
        vec![(BOOTSTRAP_VAR.to_owned(), self.bootstrap())]
    }

    async fn stored(&self, prefix: &str) -> Vec<(String, Headers)> {
        let (topic, bootstrap) = (topic(prefix), self.bootstrap());
        let all = tokio::task::spawn_blocking(move || read_topic(&bootstrap, &topic))
            .await
            .unwrap();
        let mut seen = self.seen.lock().unwrap();
        let kept = seen.entry(prefix.to_owned()).or_default();
        *kept = all;
        kept.clone()
    }
}

/// Every record of `topic`, partition after partition, each in offset order.
pub(crate) fn read_topic(bootstrap: &str, topic: &str) -> Vec<(String, Headers)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "annals-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut out = Vec::new();
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .unwrap();
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p.id(), annals_kafka::rdkafka::Offset::Offset(low))
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let mut next = low;
        while next < high {
            let Some(m) = consumer.poll(Duration::from_secs(10)) else {
                panic!("partition {} stopped at {next} of {high}", p.id());
            };
            let m = m.unwrap();
            let subject = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let mut headers = Headers::new();
            if let Some(h) = m.headers() {
                use annals_kafka::rdkafka::message::Headers as _;
                for header in h.iter() {
                    if let Some(v) = header.value {
                        headers.insert(
                            header.key.to_owned(),
                            String::from_utf8_lossy(v).into_owned(),
                        );
                    }
                }
            }
            out.push((subject, headers));
            next = m.offset() + 1;
        }
    }
    out
}
