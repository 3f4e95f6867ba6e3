//! # annals-amqp
//!
//! RabbitMQ (AMQP 0-9-1) as the broker of `annals-broker`, on `lapin`: [`AmqpPublisher`] for
//! the relay and [`AmqpConsumer`] for the inbox. The relay, the inbox, their ordering,
//! retries and parking are the ones JetStream uses; this crate only maps the broker seam.
//!
//! **Topology.** The relay publishes every event to one durable **topic exchange**
//! ([`ExchangeSettings`], e.g. `orders`) with the subject as routing key
//! (`<prefix>.<aggregate type>.<stream id>`), as a *persistent* message whose `message-id` is
//! the event id, with **publisher confirms**: an event counts as published (and the relay's
//! checkpoint may pass it) only once RabbitMQ confirmed it, which for a durable queue means
//! it is on disk (for a quorum queue, on a majority of its replicas). Each consuming
//! service has its own durable queue ([`QueueSettings`], a **quorum queue** by default) bound
//! to the exchange with `<prefix>.#` (or narrower keys); the inbox consumes it with manual
//! acknowledgements and a prefetch window.
//!
//! **Unroutable messages.** RabbitMQ drops a message that no queue is bound to. The relay
//! publishes with `mandatory` set, and by default a returned message is an error the relay
//! retries with backoff ([`Unroutable::Retry`]): events wait in the store until a queue
//! takes them instead of vanishing. Declare the consuming queues before relaying
//! ([`ExchangeSettings::bind`] lets the relay itself declare them), or choose
//! [`Unroutable::Drop`] for events nobody has to see.
//!
//! **De-duplication.** RabbitMQ has no broker-side de-duplication: a relay that restarts
//! from its last checkpoint publishes the events after it again. The inbox's handler is
//! where duplicates end: it executes its command with a command id derived from the event
//! id ([`annals_broker::command_id_for`]), and the store keeps that id *in the same append*
//! as the command's events, so the dedup record and the effect commit together or not at
//! all, and a second delivery returns the first result and appends nothing. A handler
//! whose effect lives elsewhere must keep the event id in the same transaction as that
//! effect.
//!
//! **Order and redelivery.** A queue hands messages to one consumer in order; with
//! [`QueueSettings::single_active_consumer`] (the default) a second process on the same
//! queue waits as a standby and takes over when the first one's connection ends. Messages a
//! dead consumer left unacknowledged go back to the queue at once and are delivered again
//! before newer ones, so the inbox needs no recovery wait. A quorum queue counts
//! deliveries (`x-delivery-count`), which the inbox reads as the delivery number; after
//! [`QueueSettings::delivery_limit`] returns RabbitMQ itself dead-letters a message, and a
//! message the inbox parks is rejected without requeue, which dead-letters it to
//! [`QueueSettings::dead_letter_exchange`] when one is set.
//!
//! **Headers.** The CloudEvents attributes travel as AMQP headers with the same `ce-` names
//! as on JetStream (binary content mode); `content-type` is also the message's
//! `content-type` property, and the event id its `message-id`.
//!
//! A routing key holds at most 255 bytes: a longer subject is shortened to its first 200
//! bytes, `~` and a 64-bit hash of the whole (still one key per stream, and still matched by
//! `<prefix>.#`); the stream id stays whole in `ce-subject`.

mod consumer;
mod publisher;

pub use consumer::{AmqpConsumer, AmqpDelivery, QueueKind, QueueSettings};
pub use publisher::{AmqpAck, AmqpPublisher, ExchangeSettings, Unroutable};

pub use annals_broker::BrokerError;
/// The AMQP client this crate is built with.
pub use lapin;

use annals_broker::Headers;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// The longest routing key AMQP carries.
const MAX_KEY: usize = 255;

/// The routing key of `subject` (shortened when longer than AMQP allows, see the crate
/// documentation).
pub fn routing_key(subject: &str) -> String {
    if subject.len() <= MAX_KEY {
        return subject.to_owned();
    }
    let mut cut = 200;
    while !subject.is_char_boundary(cut) {
        cut -= 1;
    }
    // FNV-1a, 64 bits: stable across processes and versions.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in subject.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}~{hash:016x}", &subject[..cut])
}

/// A short string from text the caller gave (a name, a key), or a configuration error.
pub(crate) fn short(what: &str, s: &str) -> Result<ShortString, BrokerError> {
    ShortString::try_new(s).map_err(|e| BrokerError::Config(format!("{what} {s:?}: {e}")))
}

/// annals headers as an AMQP header table (long strings; a name too long for AMQP is left
/// out, which no annals header is).
pub(crate) fn to_table(headers: &Headers) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in headers {
        if let Ok(name) = ShortString::try_new(k.as_str()) {
            table.insert(name, AMQPValue::LongString(LongString::from(v.as_str())));
        }
    }
    table
}

/// An AMQP header table as annals headers: text values as they are, numbers and flags in
/// their decimal form; other values are left out.
pub(crate) fn from_table(table: Option<&FieldTable>) -> Headers {
    let mut out = Headers::new();
    if let Some(t) = table {
        for (k, v) in t.inner() {
            let text = match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                AMQPValue::Boolean(b) => b.to_string(),
                AMQPValue::ShortShortInt(n) => n.to_string(),
                AMQPValue::ShortShortUInt(n) => n.to_string(),
                AMQPValue::ShortInt(n) => n.to_string(),
                AMQPValue::ShortUInt(n) => n.to_string(),
                AMQPValue::LongInt(n) => n.to_string(),
                AMQPValue::LongUInt(n) => n.to_string(),
                AMQPValue::LongLongInt(n) => n.to_string(),
                AMQPValue::Timestamp(n) => n.to_string(),
                _ => continue,
            };
            out.insert(k.as_str().to_owned(), text);
        }
    }
    out
}

/// Whether `e` is RabbitMQ's `PRECONDITION_FAILED` (a declaration that contradicts what
/// exists).
pub(crate) fn is_precondition_failed(e: &lapin::Error) -> bool {
    matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if p.get_id() == 406)
}

/// Connects to `uri` (the connection named `name` in RabbitMQ's list) and opens a channel.
pub(crate) async fn open_channel(
    uri: &str,
    name: &str,
) -> Result<(lapin::Connection, lapin::Channel), BrokerError> {
    let properties =
        lapin::ConnectionProperties::default().with_connection_name(LongString::from(name));
    let connection = lapin::Connection::connect(uri, properties)
        .await
        .map_err(|e| BrokerError::client("connecting", e))?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| BrokerError::client("opening a channel", e))?;
    Ok((connection, channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_subjects_are_their_own_key() {
        assert_eq!(routing_key("orders.order.order-7"), "orders.order.order-7");
    }

    #[test]
    fn long_subjects_are_shortened_with_a_hash() {
        let long = format!("orders.order.{}", "é".repeat(200));
        let key = routing_key(&long);
        assert!(key.len() <= MAX_KEY, "{}", key.len());
        assert!(key.starts_with("orders.order."));
        assert_ne!(key, routing_key(&format!("{long}x")), "one key per subject");
        assert_eq!(key, routing_key(&long), "stable");
    }

    #[test]
    fn headers_round_trip() {
        let mut h = Headers::new();
        h.insert("ce-id".into(), "42".into());
        h.insert("traceparent".into(), "00-ab-cd-01".into());
        assert_eq!(from_table(Some(&to_table(&h))), h);
        assert!(from_table(None).is_empty());
    }
}
