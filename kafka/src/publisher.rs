//! The relay's side: an idempotent producer, records keyed by subject.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use annals_broker::{BrokerError, OutgoingMessage, Publisher};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::to_kafka;

/// The Kafka cluster and topic a relay publishes to.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TopicSettings {
    /// The bootstrap servers, e.g. `127.0.0.1:9092`.
    pub bootstrap: String,
    /// The topic, e.g. `orders`.
    pub topic: String,
    /// Partitions of a topic the relay creates (default 6).
    pub partitions: i32,
    /// Replicas of a topic the relay creates (default 1).
    pub replication: i32,
    /// Further producer settings (`linger.ms`, `compression.type`, security, ...).
    pub producer: Vec<(String, String)>,
}

impl TopicSettings {
    /// The topic `topic` on the cluster at `bootstrap`.
    pub fn new(bootstrap: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            topic: topic.into(),
            partitions: 6,
            replication: 1,
            producer: Vec::new(),
        }
    }

    /// Sets the partitions and replicas of a topic the relay creates.
    pub fn create_with(mut self, partitions: i32, replication: i32) -> Self {
        self.partitions = partitions;
        self.replication = replication;
        self
    }

    /// Adds a producer setting (librdkafka's names).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.producer.push((key.into(), value.into()));
        self
    }

    fn client_config(&self) -> ClientConfig {
        self.client_config_with(&[])
    }

    /// The bootstrap servers, then `defaults`, then the caller's settings (which win).
    fn client_config_with(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.producer {
            c.set(k, v);
        }
        c
    }
}

/// Whether `topic` exists with at least one partition (a blocking metadata request, run
/// off the executor).
async fn topic_exists(config: &ClientConfig, topic: &str) -> Result<bool, BrokerError> {
    let mut config = config.clone();
    config.set("allow.auto.create.topics", "false");
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = config
            .create()
            .map_err(|e| BrokerError::Config(format!("the Kafka metadata client: {e}")))?;
        let metadata = client
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(|e| BrokerError::client("reading the topic's metadata", e))?;
        Ok(metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
    })
    .await
    .map_err(|e| BrokerError::Unavailable {
        message: format!("reading the topic's metadata: {e}"),
        source: None,
    })?
}

/// Creates `topic` when missing; fine when it exists.
pub(crate) async fn ensure_topic(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> Result<(), BrokerError> {
    if topic_exists(config, topic).await? {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| BrokerError::Config(format!("the Kafka admin client: {e}")))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&new], &options)
        .await
        .map_err(|e| BrokerError::client("creating the topic", e))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, partitions, "created the Kafka topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(BrokerError::Unavailable {
                    message: format!("creating topic {name:?}: {code}"),
                    source: None,
                });
            }
        }
    }
    Ok(())
}

/// Publishes to a Kafka topic. Cheap to clone (clones share one producer).
#[derive(Clone)]
pub struct KafkaPublisher {
    settings: Arc<TopicSettings>,
    producer: FutureProducer,
}

impl KafkaPublisher {
    /// An idempotent producer (`enable.idempotence=true`, `acks=all`) with `settings`.
    ///
    /// # Errors
    /// [`BrokerError::Config`] for settings librdkafka refuses.
    pub fn new(settings: TopicSettings) -> Result<Self, BrokerError> {
        let config = settings.client_config_with(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("max.in.flight.requests.per.connection", "5"),
            ("linger.ms", "1"),
            ("message.timeout.ms", "30000"),
        ]);
        let producer = config
            .create()
            .map_err(|e| BrokerError::Config(format!("the Kafka producer: {e}")))?;
        Ok(Self {
            settings: Arc::new(settings),
            producer,
        })
    }
}

/// The acknowledgement of one record.
pub struct KafkaAck {
    inner: Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>>,
}

impl Future for KafkaAck {
    type Output = Result<(), BrokerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl Publisher for KafkaPublisher {
    type Ack = KafkaAck;

    async fn prepare(&self) -> Result<(), BrokerError> {
        let s = &self.settings;
        ensure_topic(&s.client_config(), &s.topic, s.partitions, s.replication).await
    }

    async fn publish(&self, message: OutgoingMessage) -> Result<KafkaAck, BrokerError> {
        let headers = to_kafka(&message.headers);
        let mut backoff = Duration::from_millis(1);
        let delivery = loop {
            let record = FutureRecord::to(&self.settings.topic)
                .key(message.subject.as_bytes())
                .payload(message.payload.as_slice())
                .headers(headers.clone());
            match self.producer.send_result(record) {
                Ok(d) => break d,
                // The producer's queue is full: wait for room.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Err((e, _)) => return Err(BrokerError::client("publish", e)),
            }
        };
        Ok(KafkaAck {
            inner: Box::pin(async move {
                match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(BrokerError::client("publish acknowledgement", e)),
                    Err(_) => Err(BrokerError::Unavailable {
                        message: "the producer dropped the record".into(),
                        source: None,
                    }),
                }
            }),
        })
    }
}
