//! The broker seam: the two small traits a broker implements. Everything else — the relay's
//! checkpoint, window and retries, the inbox's ordering, retries and parking, the
//! CloudEvents mapping — is written once over them.
//!
//! Used through generics, so the methods return `impl Future + Send` (no `async-trait`).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use crate::error::BrokerError;

/// Message headers by name (one value each).
pub type Headers = BTreeMap<String, String>;

/// A message for the broker: where it goes, its unique id (the broker's de-duplication key),
/// its headers and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutgoingMessage {
    /// The subject (topic, routing key).
    pub subject: String,
    /// The unique id: a broker with de-duplication drops a second message with this id.
    pub id: String,
    /// The headers.
    pub headers: Headers,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

impl OutgoingMessage {
    /// A message of `payload` with `id` to `subject`, without headers.
    pub fn new(subject: impl Into<String>, id: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            subject: subject.into(),
            id: id.into(),
            headers: Headers::new(),
            payload,
        }
    }

    /// Sets the headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }
}

/// Publish with acknowledgement: the relay's side of a broker.
pub trait Publisher: Clone + Send + Sync + 'static {
    /// The broker's acknowledgement of one message: resolves once the broker has stored it
    /// (or failed to).
    type Ack: Future<Output = Result<(), BrokerError>> + Send + 'static;

    /// Makes sure the destination exists with settings the relay can work with (creating it
    /// when it is missing). Called at start, and again after the broker was unavailable.
    ///
    /// # Errors
    /// [`BrokerError::Incompatible`] when it exists with other settings;
    /// [`BrokerError::Unavailable`] when the broker cannot be reached.
    fn prepare(&self) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Sends `message`. Resolves once the message is handed to the client (waiting for room
    /// when its buffer is full) with the future of its acknowledgement, so that many
    /// messages can be in flight at once.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when it cannot be sent.
    fn publish(
        &self,
        message: OutgoingMessage,
    ) -> impl Future<Output = Result<Self::Ack, BrokerError>> + Send;
}

/// Pull, then ack, nak or terminate: the inbox's side of a broker. One consumer is a durable
/// position in the broker (a JetStream durable consumer, a Kafka consumer group, a queue).
pub trait Consumer: Send + 'static {
    /// One delivered message.
    type Delivery: Delivery;

    /// Called once before the first fetch: when a crashed predecessor left messages
    /// unsettled, waits until the broker will deliver them again, so that they come before
    /// newer messages of their subjects (order per subject across crashes). The default does
    /// nothing.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when the broker cannot be reached.
    fn recover(&mut self) -> impl Future<Output = Result<(), BrokerError>> + Send {
        async { Ok(()) }
    }

    /// Waits up to `wait` for at least one message and returns at most `max` (none when
    /// nothing arrived in time).
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when the broker cannot be reached.
    fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Self::Delivery>, BrokerError>> + Send;
}

/// One delivery of a message, to be settled once: acknowledged (done), negatively
/// acknowledged (deliver again after a delay) or terminated (never deliver again).
pub trait Delivery: Send + Sync + 'static {
    /// The subject it was published to.
    fn subject(&self) -> &str;

    /// Its headers.
    fn headers(&self) -> &Headers;

    /// Its payload.
    fn payload(&self) -> &[u8];

    /// How many times it has been delivered, this time included (1 the first time).
    fn delivered(&self) -> u64;

    /// Done: the broker forgets it for this consumer.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`]: the broker will deliver it again (handlers are
    /// idempotent).
    fn ack(&self) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Deliver it again after `delay`.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`]: the broker redelivers after its own timeout.
    fn nak(&self, delay: Duration) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Still being worked on: the broker must not deliver it elsewhere yet (extends its
    /// acknowledgement deadline, JetStream's "in progress").
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`].
    fn keep_alive(&self) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Never deliver it again (it was parked).
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`]: the broker may deliver it again; it is parked again.
    fn term(&self) -> impl Future<Output = Result<(), BrokerError>> + Send;
}
