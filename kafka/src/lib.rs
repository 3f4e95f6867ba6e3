//! # annals-kafka
//!
//! Kafka as the broker of `annals-broker`, on `rdkafka` (librdkafka): [`KafkaPublisher`] for
//! the relay and [`KafkaConsumer`] for the inbox. The relay, the inbox, their ordering,
//! retries and parking are the ones every broker uses; this crate maps the broker seam.
//!
//! **Producing.** All of a relay's events go to one topic ([`TopicSettings`], created with
//! its partition count when missing) with the subject (`<prefix>.<aggregate type>.<stream
//! id>`) as the record **key**, so a stream's events land in one partition, in order. The
//! producer is **idempotent** (`enable.idempotence=true`, which also means `acks=all` and
//! at most five requests in flight with ordering kept): a retry inside the producer never
//! writes a record twice or out of order, and an event counts as published (the relay's
//! checkpoint may pass it) only when every in-sync replica has it. Kafka keeps no
//! de-duplication across producer sessions: a relay restarted from its checkpoint
//! publishes the events after it again, and the inbox's handler is where duplicates end
//! (the command id derived from the event id is stored in the same append as the effect).
//!
//! **Consuming.** [`KafkaConsumer`] is a member of a consumer group (`group.id` = the
//! consumer's name). Offsets are committed only for messages the inbox settled: the
//! consumer stores, per partition, the offset below which every message was acknowledged
//! or parked (`enable.auto.offset.store=false`), and librdkafka commits stored offsets in
//! the background and on every rebalance. Messages of one partition are handled
//! concurrently across subjects, so an unsettled message holds its partition's committed
//! offset back; after a crash or a **revocation** the new owner starts from that offset,
//! and what comes again is handled again — a no-op, by the handlers' idempotency — in order
//! per stream. On revocation the consumer forgets the revoked partitions' unsettled
//! messages (their acknowledgements are then ignored), so it never commits for a partition
//! it no longer owns.
//!
//! **Retries and poison.** Kafka cannot hand one message back: a nak
//! ([`RetryMode::Nak`](annals_broker::RetryMode)) puts the message in the consumer's own
//! redelivery queue, delivered again after the delay with its delivery count raised (the
//! count starts over if the process restarts). A parked message is also copied to the
//! dead-letter topic when one is set ([`ConsumerSettings::dead_letter_topic`]), with its
//! headers and an `annals-error` header, before its offset is released.
//!
//! **Headers.** The CloudEvents attributes travel as Kafka record headers with the same
//! `ce-` names as on the other brokers (binary content mode).
//!
//! **Build.** librdkafka comes from the crate's bundled sources, built by its own
//! `configure` and `make` (rdkafka's default build, which needs a C compiler, make, perl
//! and zlib's headers — no cmake) and linked statically.

mod consumer;
mod publisher;

pub use consumer::{ConsumerSettings, KafkaConsumer, KafkaDelivery};
pub use publisher::{KafkaAck, KafkaPublisher, TopicSettings};

pub use annals_broker::BrokerError;
/// The Kafka client this crate is built with.
pub use rdkafka;

use annals_broker::Headers;
use rdkafka::message::{Header, OwnedHeaders};

/// annals headers as Kafka record headers.
pub(crate) fn to_kafka(headers: &Headers) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(headers.len());
    for (k, v) in headers {
        out = out.insert(Header {
            key: k,
            value: Some(v.as_str()),
        });
    }
    out
}

/// Kafka record headers as annals headers (the last value of a repeated name; values that
/// are not UTF-8 are left out).
pub(crate) fn from_kafka<H: rdkafka::message::Headers>(headers: Option<&H>) -> Headers {
    let mut out = Headers::new();
    if let Some(h) = headers {
        for header in h.iter() {
            if let Some(v) = header.value.and_then(|v| std::str::from_utf8(v).ok()) {
                out.insert(header.key.to_owned(), v.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let mut h = Headers::new();
        h.insert("ce-id".into(), "42".into());
        h.insert("traceparent".into(), "00-ab-cd-01".into());
        assert_eq!(from_kafka(Some(&to_kafka(&h))), h);
        assert!(from_kafka::<OwnedHeaders>(None).is_empty());
    }
}
