//! The inbox's side: a durable JetStream pull consumer with explicit acknowledgements.

use std::time::Duration;

use annals_broker::{BrokerError, Consumer, Delivery, Headers};
use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures_util::StreamExt;

use crate::from_nats_headers;

/// A durable consumer's settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConsumerSettings {
    /// The JetStream stream it reads.
    pub stream: String,
    /// The durable consumer's name: its position survives restarts, and every worker of the
    /// service with this name shares it.
    pub durable: String,
    /// Only messages on subjects matching this (e.g. `orders.order.>`); empty: all.
    pub filter_subject: String,
    /// How long a delivered message may stay unsettled before JetStream delivers it again
    /// (default 30 s; the inbox extends it while it retries).
    pub ack_wait: Duration,
    /// The most unsettled messages JetStream hands out (default 1,024).
    pub max_ack_pending: i64,
}

impl ConsumerSettings {
    /// The durable consumer `durable` on `stream`, all subjects.
    pub fn new(stream: impl Into<String>, durable: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            durable: durable.into(),
            filter_subject: String::new(),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1024,
        }
    }

    /// Only messages on subjects matching `filter`.
    pub fn filter_subject(mut self, filter: impl Into<String>) -> Self {
        self.filter_subject = filter.into();
        self
    }

    /// Sets the acknowledgement deadline.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }
}

/// A durable pull consumer.
pub struct JetStreamConsumer {
    consumer: jetstream::consumer::Consumer<pull::Config>,
}

impl JetStreamConsumer {
    /// Opens (or creates) the durable consumer of `settings` on `client`.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when the stream is missing or the server cannot be
    /// reached.
    pub async fn open(
        client: async_nats::Client,
        settings: ConsumerSettings,
    ) -> Result<Self, BrokerError> {
        let js = jetstream::new(client);
        let stream = js
            .get_stream(&settings.stream)
            .await
            .map_err(|e| BrokerError::client("looking up the stream", e))?;
        let config = pull::Config {
            durable_name: Some(settings.durable.clone()),
            filter_subject: settings.filter_subject.clone(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: settings.ack_wait,
            // The inbox decides when to give up (and parks); JetStream never drops.
            max_deliver: -1,
            max_ack_pending: settings.max_ack_pending,
            ..Default::default()
        };
        let consumer = stream
            .get_or_create_consumer(&settings.durable, config)
            .await
            .map_err(|e| BrokerError::client("opening the consumer", e))?;
        Ok(Self { consumer })
    }
}

impl Consumer for JetStreamConsumer {
    type Delivery = JetStreamDelivery;

    /// JetStream redelivers a message left unacknowledged after `ack_wait`, ahead of newer
    /// ones: with messages pending, wait that long before fetching. Acknowledgements a
    /// predecessor sent just before it stopped may still be on their way: pending messages
    /// that clear within a second are not waited for.
    async fn recover(&mut self) -> Result<(), BrokerError> {
        let settle_by = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let info = self
                .consumer
                .info()
                .await
                .map_err(|e| BrokerError::client("reading the consumer", e))?;
            if info.num_ack_pending == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= settle_by {
                let wait = info.config.ack_wait + Duration::from_millis(100);
                tracing::info!(
                    pending = info.num_ack_pending,
                    ?wait,
                    "waiting for a predecessor's unsettled messages"
                );
                tokio::time::sleep(wait).await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<JetStreamDelivery>, BrokerError> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(max.max(1))
            .expires(wait)
            .messages()
            .await
            .map_err(|e| BrokerError::client("fetch", e))?;
        let mut out = Vec::new();
        while let Some(m) = batch.next().await {
            let message = m.map_err(|e| BrokerError::Unavailable {
                message: format!("fetch: {e}"),
                source: None,
            })?;
            let delivered = message
                .info()
                .ok()
                .and_then(|i| u64::try_from(i.delivered).ok())
                .unwrap_or(1);
            out.push(JetStreamDelivery {
                subject: message.subject.to_string(),
                headers: from_nats_headers(message.headers.as_ref()),
                delivered,
                message,
            });
        }
        Ok(out)
    }
}

/// One JetStream delivery.
pub struct JetStreamDelivery {
    message: jetstream::Message,
    subject: String,
    headers: Headers,
    delivered: u64,
}

impl JetStreamDelivery {
    async fn send(&self, kind: AckKind, what: &str) -> Result<(), BrokerError> {
        self.message
            .ack_with(kind)
            .await
            .map_err(|e| BrokerError::Unavailable {
                message: format!("{what}: {e}"),
                source: None,
            })
    }
}

impl Delivery for JetStreamDelivery {
    fn subject(&self) -> &str {
        &self.subject
    }

    fn headers(&self) -> &Headers {
        &self.headers
    }

    fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    fn delivered(&self) -> u64 {
        self.delivered
    }

    async fn ack(&self) -> Result<(), BrokerError> {
        self.send(AckKind::Ack, "ack").await
    }

    async fn nak(&self, delay: Duration) -> Result<(), BrokerError> {
        let delay = (!delay.is_zero()).then_some(delay);
        self.send(AckKind::Nak(delay), "nak").await
    }

    async fn keep_alive(&self) -> Result<(), BrokerError> {
        self.send(AckKind::Progress, "in progress").await
    }

    async fn term(&self) -> Result<(), BrokerError> {
        self.send(AckKind::Term, "term").await
    }
}
