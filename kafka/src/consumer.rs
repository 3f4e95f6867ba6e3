//! The inbox's side: a consumer-group member that stores offsets only below settled
//! messages.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use annals_broker::{BrokerError, Consumer, Delivery, Headers};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::Consumer as _;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::time::Instant;

use crate::{from_kafka, to_kafka};

/// A consumer group member's settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConsumerSettings {
    /// The bootstrap servers, e.g. `127.0.0.1:9092`.
    pub bootstrap: String,
    /// The topic.
    pub topic: String,
    /// The consumer group (`group.id`), e.g. `billing`.
    pub group: String,
    /// Where a parked message is copied, if anywhere, e.g. `orders.billing.dead`.
    pub dead_letter_topic: Option<String>,
    /// Partitions of the topic (and of the dead-letter topic) when the consumer creates it
    /// (default 6).
    pub partitions: i32,
    /// Further consumer settings (`session.timeout.ms`, security, ...).
    pub consumer: Vec<(String, String)>,
}

impl ConsumerSettings {
    /// Member of `group` consuming `topic` on the cluster at `bootstrap`.
    pub fn new(
        bootstrap: impl Into<String>,
        topic: impl Into<String>,
        group: impl Into<String>,
    ) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            topic: topic.into(),
            group: group.into(),
            dead_letter_topic: None,
            partitions: 6,
            consumer: Vec::new(),
        }
    }

    /// Copies parked messages to `topic`.
    pub fn dead_letter_topic(mut self, topic: impl Into<String>) -> Self {
        self.dead_letter_topic = Some(topic.into());
        self
    }

    /// Sets the partitions of topics the consumer creates.
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Adds a consumer setting (librdkafka's names).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.consumer.push((key.into(), value.into()));
        self
    }
}

/// What one partition has handed out and not settled yet.
#[derive(Default)]
struct Partition {
    /// Offsets received and not settled.
    unsettled: BTreeSet<i64>,
    /// One past the highest offset received.
    next: i64,
}

impl Partition {
    /// The offset to commit: every message below it is settled.
    fn committable(&self) -> i64 {
        self.unsettled.first().copied().unwrap_or(self.next)
    }
}

/// The partitions this member owns, shared with the rebalance callback.
#[derive(Default)]
struct Tracker {
    partitions: BTreeMap<i32, Partition>,
}

fn lock(t: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// The consumer's context: forgets revoked partitions before librdkafka commits for them.
struct Context {
    tracker: Arc<Mutex<Tracker>>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let mut t = lock(&self.tracker);
            for e in list.elements() {
                if let Some(p) = t.partitions.remove(&e.partition()) {
                    tracing::info!(
                        partition = e.partition(),
                        unsettled = p.unsettled.len(),
                        "partition revoked; its unsettled messages go to the next owner"
                    );
                }
            }
        }
    }
}

/// A message waiting in the consumer's own redelivery queue (a nak).
struct Again {
    ready: Instant,
    delivery: KafkaDelivery,
}

/// What the consumer and its deliveries share.
struct Shared {
    consumer: StreamConsumer<Context>,
    tracker: Arc<Mutex<Tracker>>,
    topic: String,
    again: Mutex<VecDeque<Again>>,
    dead_letters: Option<(FutureProducer, String)>,
}

impl Shared {
    /// Marks `offset` of `partition` settled and stores the partition's committable offset.
    fn settle(&self, partition: i32, offset: i64) -> Result<(), BrokerError> {
        let commit = {
            let mut t = lock(&self.tracker);
            let Some(p) = t.partitions.get_mut(&partition) else {
                // Revoked meanwhile: the next owner handles it again.
                return Ok(());
            };
            p.unsettled.remove(&offset);
            p.committable()
        };
        self.consumer
            .store_offset(&self.topic, partition, commit)
            .map_err(|e| BrokerError::client("storing the offset", e))
    }
}

/// A member of a Kafka consumer group.
pub struct KafkaConsumer {
    shared: Arc<Shared>,
}

impl KafkaConsumer {
    /// Creates the topic when missing (and the dead-letter topic), joins the group and
    /// subscribes.
    ///
    /// # Errors
    /// [`BrokerError::Config`] for settings librdkafka refuses;
    /// [`BrokerError::Unavailable`] when the cluster cannot be reached.
    pub async fn open(settings: ConsumerSettings) -> Result<Self, BrokerError> {
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", &settings.bootstrap);
        crate::publisher::ensure_topic(&base, &settings.topic, settings.partitions, 1).await?;
        let dead_letters = match &settings.dead_letter_topic {
            Some(topic) => {
                crate::publisher::ensure_topic(&base, topic, settings.partitions, 1).await?;
                let mut c = base.clone();
                c.set("enable.idempotence", "true").set("acks", "all");
                let producer: FutureProducer = c
                    .create()
                    .map_err(|e| BrokerError::Config(format!("the dead-letter producer: {e}")))?;
                Some((producer, topic.clone()))
            }
            None => None,
        };
        let mut config = base;
        config
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "100")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        for (k, v) in &settings.consumer {
            config.set(k, v);
        }
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let consumer: StreamConsumer<Context> = config
            .create_with_context(Context {
                tracker: Arc::clone(&tracker),
            })
            .map_err(|e| BrokerError::Config(format!("the Kafka consumer: {e}")))?;
        consumer
            .subscribe(&[&settings.topic])
            .map_err(|e| BrokerError::client("subscribing", e))?;
        Ok(Self {
            shared: Arc::new(Shared {
                consumer,
                tracker,
                topic: settings.topic,
                again: Mutex::new(VecDeque::new()),
                dead_letters,
            }),
        })
    }

    /// Redeliveries whose delay is over, up to `max`; and when the next one is due.
    fn due(&self, max: usize) -> (Vec<KafkaDelivery>, Option<Instant>) {
        let mut again = self.shared.again.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut out = Vec::new();
        let mut rest = VecDeque::new();
        while let Some(a) = again.pop_front() {
            if a.ready <= now && out.len() < max {
                out.push(a.delivery);
            } else {
                rest.push_back(a);
            }
        }
        let next = rest.iter().map(|a| a.ready).min();
        *again = rest;
        (out, next)
    }

    fn received(&self, m: &rdkafka::message::BorrowedMessage<'_>) -> KafkaDelivery {
        let (partition, offset) = (m.partition(), m.offset());
        {
            let mut t = lock(&self.shared.tracker);
            let p = t.partitions.entry(partition).or_default();
            p.unsettled.insert(offset);
            p.next = p.next.max(offset.saturating_add(1));
        }
        KafkaDelivery {
            subject: m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            headers: from_kafka(m.headers()),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            delivered: 1,
            partition,
            offset,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Consumer for KafkaConsumer {
    type Delivery = KafkaDelivery;

    async fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<KafkaDelivery>, BrokerError> {
        let max = max.max(1);
        let (mut out, next_again) = self.due(max);
        if !out.is_empty() {
            return Ok(out);
        }
        let until = match next_again {
            Some(at) => at.min(Instant::now() + wait),
            None => Instant::now() + wait,
        };
        let first = match tokio::time::timeout_at(until, self.shared.consumer.recv()).await {
            Err(_) => return Ok(out),
            Ok(Err(e)) => return Err(BrokerError::client("consuming", e)),
            Ok(Ok(m)) => self.received(&m),
        };
        out.push(first);
        // What has already arrived, without waiting.
        while out.len() < max {
            match tokio::time::timeout(Duration::ZERO, self.shared.consumer.recv()).await {
                Ok(Ok(m)) => {
                    let d = self.received(&m);
                    out.push(d);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "consuming");
                    break;
                }
                Err(_) => break,
            }
        }
        Ok(out)
    }
}

/// One delivery of a record.
pub struct KafkaDelivery {
    subject: String,
    headers: Headers,
    payload: Vec<u8>,
    delivered: u64,
    partition: i32,
    offset: i64,
    shared: Arc<Shared>,
}

impl KafkaDelivery {
    /// Its partition and offset.
    pub fn coordinates(&self) -> (i32, i64) {
        (self.partition, self.offset)
    }
}

impl Delivery for KafkaDelivery {
    fn subject(&self) -> &str {
        &self.subject
    }

    fn headers(&self) -> &Headers {
        &self.headers
    }

    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn delivered(&self) -> u64 {
        self.delivered
    }

    async fn ack(&self) -> Result<(), BrokerError> {
        self.shared.settle(self.partition, self.offset)
    }

    /// Into the consumer's own redelivery queue, delivered again after `delay`; its offset
    /// stays uncommitted meanwhile.
    async fn nak(&self, delay: Duration) -> Result<(), BrokerError> {
        let again = KafkaDelivery {
            subject: self.subject.clone(),
            headers: self.headers.clone(),
            payload: self.payload.clone(),
            delivered: self.delivered.saturating_add(1),
            partition: self.partition,
            offset: self.offset,
            shared: Arc::clone(&self.shared),
        };
        self.shared
            .again
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(Again {
                ready: Instant::now() + delay,
                delivery: again,
            });
        Ok(())
    }

    /// Nothing to extend: Kafka has no per-message deadline.
    async fn keep_alive(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Copied to the dead-letter topic (when set), then settled.
    async fn term(&self) -> Result<(), BrokerError> {
        if let Some((producer, topic)) = &self.shared.dead_letters {
            let mut headers = self.headers.clone();
            headers.insert(
                "annals-origin".into(),
                format!("{}/{}/{}", self.shared.topic, self.partition, self.offset),
            );
            let record = FutureRecord::to(topic)
                .key(self.subject.as_bytes())
                .payload(self.payload.as_slice())
                .headers(to_kafka(&headers));
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| BrokerError::client("copying to the dead-letter topic", e))?;
        }
        self.shared.settle(self.partition, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::Partition;

    #[test]
    fn the_committable_offset_waits_for_the_lowest_unsettled_message() {
        let mut p = Partition::default();
        assert_eq!(p.committable(), 0, "nothing received");
        for offset in 10..15 {
            p.unsettled.insert(offset);
            p.next = offset + 1;
        }
        assert_eq!(p.committable(), 10);
        // Settled out of order (other subjects): 10 still holds the offset back.
        p.unsettled.remove(&12);
        p.unsettled.remove(&11);
        assert_eq!(p.committable(), 10);
        p.unsettled.remove(&10);
        assert_eq!(p.committable(), 13);
        p.unsettled.remove(&13);
        p.unsettled.remove(&14);
        assert_eq!(
            p.committable(),
            15,
            "all settled: one past the last received"
        );
    }
}
