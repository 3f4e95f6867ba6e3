//! The inbox's side: a durable queue bound to the exchange, consumed with manual
//! acknowledgements and a prefetch window.

use std::time::Duration;

use annals_broker::{BrokerError, Consumer, Delivery, Headers};
use futures_util::{FutureExt, StreamExt};
use lapin::Acker;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection};

use crate::publisher::declare_exchange;
use crate::{from_table, is_precondition_failed, open_channel, short};

/// The kind of a queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueKind {
    /// A replicated quorum queue: counts deliveries and enforces a delivery limit (default).
    #[default]
    Quorum,
    /// A classic queue (one node; the delivery count is only "redelivered or not").
    Classic,
}

/// A consuming service's durable queue.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct QueueSettings {
    /// The queue's name, e.g. `billing`.
    pub name: String,
    /// The binding keys on the exchange, e.g. `["orders.#"]` (topic patterns).
    pub bindings: Vec<String>,
    /// The queue's kind.
    pub kind: QueueKind,
    /// Quorum queues: RabbitMQ dead-letters a message returned this many times (the
    /// inbox parks it earlier, after its own `max_attempts`). Default 20.
    pub delivery_limit: Option<u32>,
    /// Where rejected (parked) and over-limit messages go, e.g. `billing.dead`.
    pub dead_letter_exchange: Option<String>,
    /// A durable queue bound to the dead-letter exchange (a fanout exchange, declared with
    /// it), keeping what was dead-lettered for inspection, e.g. `billing.dead`.
    pub dead_letter_queue: Option<String>,
    /// One consumer receives at a time; others wait as standbys (default true), so that a
    /// second process on the queue cannot break the order per stream.
    pub single_active_consumer: bool,
    /// Messages RabbitMQ sends ahead of acknowledgements (default 256).
    pub prefetch: u16,
    /// Deletes the queue after it has had no consumer for this long (for tests).
    pub expires: Option<Duration>,
    /// The server, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub uri: String,
    /// The topic exchange it is bound to.
    pub exchange: String,
}

impl QueueSettings {
    /// The quorum queue `name` on the server at `uri`, bound to `exchange` with the keys of
    /// every subject under `prefix` (`<prefix>.#`).
    pub fn new(
        uri: impl Into<String>,
        exchange: impl Into<String>,
        name: impl Into<String>,
        prefix: &str,
    ) -> Self {
        Self {
            name: name.into(),
            bindings: vec![format!("{prefix}.#")],
            kind: QueueKind::Quorum,
            delivery_limit: Some(20),
            dead_letter_exchange: None,
            dead_letter_queue: None,
            single_active_consumer: true,
            prefetch: 256,
            expires: None,
            uri: uri.into(),
            exchange: exchange.into(),
        }
    }

    /// Sets the binding keys.
    pub fn bindings(mut self, keys: Vec<String>) -> Self {
        self.bindings = keys;
        self
    }

    /// Sets the queue's kind.
    pub fn kind(mut self, kind: QueueKind) -> Self {
        self.kind = kind;
        self
    }

    /// Sets the delivery limit (quorum queues).
    pub fn delivery_limit(mut self, limit: Option<u32>) -> Self {
        self.delivery_limit = limit;
        self
    }

    /// Sets the dead-letter exchange (which must exist, as any exchange type).
    pub fn dead_letter_exchange(mut self, exchange: impl Into<String>) -> Self {
        self.dead_letter_exchange = Some(exchange.into());
        self
    }

    /// Dead-letters to the fanout exchange `exchange` and keeps what arrives there in the
    /// durable queue `queue`; both are declared with this queue.
    pub fn dead_letters(mut self, exchange: impl Into<String>, queue: impl Into<String>) -> Self {
        self.dead_letter_exchange = Some(exchange.into());
        self.dead_letter_queue = Some(queue.into());
        self
    }

    /// Sets whether one consumer receives at a time.
    pub fn single_active_consumer(mut self, single: bool) -> Self {
        self.single_active_consumer = single;
        self
    }

    /// Sets the prefetch window.
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// Deletes the queue after it has had no consumer for `after`.
    pub fn expires(mut self, after: Duration) -> Self {
        self.expires = Some(after);
        self
    }

    fn arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        if self.kind == QueueKind::Quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString(LongString::from("quorum")),
            );
            if let Some(limit) = self.delivery_limit {
                args.insert(
                    "x-delivery-limit".into(),
                    AMQPValue::LongLongInt(i64::from(limit)),
                );
            }
        }
        if let Some(dlx) = &self.dead_letter_exchange {
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(LongString::from(dlx.as_str())),
            );
        }
        if self.single_active_consumer {
            args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        }
        if let Some(after) = self.expires {
            let ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX).max(1);
            args.insert("x-expires".into(), AMQPValue::LongLongInt(ms));
        }
        args
    }
}

/// Declares `queue` (durable, with its arguments) and binds it to `exchange`:
/// [`BrokerError::Incompatible`] when it exists with other arguments.
pub(crate) async fn declare_queue(
    channel: &Channel,
    exchange: &str,
    queue: &QueueSettings,
) -> Result<(), BrokerError> {
    let name = short("queue", &queue.name)?;
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    if let (Some(dlx), Some(dlq)) = (&queue.dead_letter_exchange, &queue.dead_letter_queue) {
        declare_dead_letters(channel, dlx, dlq).await?;
    }
    match channel
        .queue_declare(name.clone(), options, queue.arguments())
        .await
    {
        Ok(_) => {}
        Err(e) if is_precondition_failed(&e) => {
            return Err(BrokerError::Incompatible {
                name: queue.name.clone(),
                reason: format!("it exists with other arguments ({e})"),
            });
        }
        Err(e) => return Err(BrokerError::client("declaring the queue", e)),
    }
    for key in &queue.bindings {
        channel
            .queue_bind(
                name.clone(),
                short("exchange", exchange)?,
                short("binding key", key)?,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| BrokerError::client("binding the queue", e))?;
    }
    Ok(())
}

/// Declares the fanout exchange `dlx` and the durable queue `dlq` bound to it.
async fn declare_dead_letters(channel: &Channel, dlx: &str, dlq: &str) -> Result<(), BrokerError> {
    let incompatible = |name: &str, e: lapin::Error| BrokerError::Incompatible {
        name: name.to_owned(),
        reason: format!("it exists with other settings ({e})"),
    };
    let exchange = short("dead-letter exchange", dlx)?;
    let queue = short("dead-letter queue", dlq)?;
    let durable = lapin::options::ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    match channel
        .exchange_declare(
            exchange.clone(),
            lapin::ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
    {
        Ok(()) => {}
        Err(e) if is_precondition_failed(&e) => return Err(incompatible(dlx, e)),
        Err(e) => return Err(BrokerError::client("declaring the dead-letter exchange", e)),
    }
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    match channel
        .queue_declare(queue.clone(), options, FieldTable::default())
        .await
    {
        Ok(_) => {}
        Err(e) if is_precondition_failed(&e) => return Err(incompatible(dlq, e)),
        Err(e) => return Err(BrokerError::client("declaring the dead-letter queue", e)),
    }
    channel
        .queue_bind(
            queue,
            exchange,
            ShortString::from(""),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| BrokerError::client("binding the dead-letter queue", e))
}

/// A live connection, its channel and the queue's consumer.
struct Link {
    connection: Connection,
    channel: Channel,
    consumer: lapin::Consumer,
}

/// Consumes a durable queue (declared and bound when missing). Reconnects on the next fetch
/// after the connection broke; deliveries of the broken connection go back to the queue.
pub struct AmqpConsumer {
    settings: QueueSettings,
    link: Option<Link>,
}

impl AmqpConsumer {
    /// Connects, declares the exchange and the queue, and starts consuming.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when the server cannot be reached;
    /// [`BrokerError::Incompatible`] when the exchange or queue exists with other settings;
    /// [`BrokerError::Config`] for a name AMQP cannot carry.
    pub async fn open(settings: QueueSettings) -> Result<Self, BrokerError> {
        let mut this = Self {
            settings,
            link: None,
        };
        this.connect().await?;
        Ok(this)
    }

    async fn connect(&mut self) -> Result<(), BrokerError> {
        self.link = None;
        let s = &self.settings;
        let (connection, channel) = open_channel(&s.uri, "annals-inbox").await?;
        declare_exchange(&channel, &s.exchange).await?;
        declare_queue(&channel, &s.exchange, s).await?;
        channel
            .basic_qos(s.prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(|e| BrokerError::client("setting the prefetch window", e))?;
        let consumer = channel
            .basic_consume(
                short("queue", &s.name)?,
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| BrokerError::client("consuming the queue", e))?;
        self.link = Some(Link {
            connection,
            channel,
            consumer,
        });
        Ok(())
    }

    /// Closes the connection (unacknowledged deliveries go back to the queue).
    pub async fn close(mut self) {
        if let Some(link) = self.link.take() {
            let _ = link.channel.close(200, "bye".into()).await;
            let _ = link.connection.close(200, "bye".into()).await;
        }
    }
}

impl Consumer for AmqpConsumer {
    type Delivery = AmqpDelivery;

    async fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<AmqpDelivery>, BrokerError> {
        let live = self
            .link
            .as_ref()
            .is_some_and(|l| l.connection.status().connected() && l.channel.status().connected());
        if !live {
            self.connect().await?;
        }
        let Some(link) = self.link.as_mut() else {
            return Err(BrokerError::Closed);
        };
        let mut out = Vec::new();
        let first = match tokio::time::timeout(wait, link.consumer.next()).await {
            Err(_) => return Ok(out),
            Ok(next) => next,
        };
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Some(Ok(d)) => out.push(AmqpDelivery::from_lapin(d)),
                Some(Err(e)) => {
                    self.link = None;
                    if out.is_empty() {
                        return Err(BrokerError::client("consuming", e));
                    }
                    return Ok(out);
                }
                None => {
                    self.link = None;
                    if out.is_empty() {
                        return Err(BrokerError::Unavailable {
                            message: "the server cancelled the consumer".into(),
                            source: None,
                        });
                    }
                    return Ok(out);
                }
            }
            if out.len() >= max.max(1) {
                break;
            }
            // What has already arrived, without waiting.
            next = link.consumer.next().now_or_never();
        }
        Ok(out)
    }
}

/// One delivery from a queue.
pub struct AmqpDelivery {
    subject: String,
    headers: Headers,
    payload: Vec<u8>,
    delivered: u64,
    acker: Acker,
}

impl AmqpDelivery {
    fn from_lapin(d: lapin::message::Delivery) -> Self {
        let mut headers = from_table(d.properties.headers().as_ref());
        if let Some(ct) = d.properties.content_type() {
            headers
                .entry(annals_broker::cloudevents::CONTENT_TYPE.to_owned())
                .or_insert_with(|| ct.as_str().to_owned());
        }
        // Quorum queues count the earlier (returned) deliveries; classic ones only flag a
        // redelivery.
        let earlier = headers
            .remove("x-delivery-count")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(u64::from(d.redelivered));
        Self {
            subject: d.routing_key.as_str().to_owned(),
            headers,
            payload: d.data,
            delivered: earlier.saturating_add(1),
            acker: d.acker,
        }
    }
}

fn settle_error(what: &str, e: lapin::Error) -> BrokerError {
    BrokerError::client(what, e)
}

impl Delivery for AmqpDelivery {
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
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| settle_error("ack", e))
    }

    /// RabbitMQ has no delayed requeue: the message is held (unacknowledged) for `delay`,
    /// then returned to the queue; a crash meanwhile returns it at once.
    async fn nak(&self, delay: Duration) -> Result<(), BrokerError> {
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        if delay.is_zero() {
            return self
                .acker
                .nack(requeue)
                .await
                .map(|_| ())
                .map_err(|e| settle_error("nack", e));
        }
        let acker = self.acker.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Err(e) = acker.nack(requeue).await {
                tracing::warn!(error = %e, "cannot return a message; the server will when the connection ends");
            }
        });
        Ok(())
    }

    /// RabbitMQ gives an unacknowledged delivery no deadline short of its consumer timeout:
    /// nothing to do.
    async fn keep_alive(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Rejected without requeue: dead-lettered when the queue has a dead-letter exchange.
    async fn term(&self) -> Result<(), BrokerError> {
        self.acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .map(|_| ())
            .map_err(|e| settle_error("reject", e))
    }
}
