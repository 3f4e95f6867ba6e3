//! # annals-nats
//!
//! NATS JetStream as the broker of `annals-broker`: [`JetStreamPublisher`] for the relay
//! (publishes with `Nats-Msg-Id` = the event id, so JetStream's duplicate window drops a
//! re-publish) and [`JetStreamConsumer`] for the inbox (a durable pull consumer with explicit
//! acknowledgements).
//!
//! **The JetStream stream.** [`StreamSettings`] names it and the subjects it takes
//! (`<prefix>.>` for a relay prefix). A missing stream is created with: file storage,
//! limits retention, the subjects given, a duplicate window of two minutes (the time within
//! which a re-published event is dropped), one replica. A stream that exists must take the
//! subjects and keep acknowledgements and a duplicate window at least that long; otherwise
//! the relay does not start ([`BrokerError::Incompatible`]).

mod consumer;
mod leases;
mod publisher;

pub use consumer::{ConsumerSettings, JetStreamConsumer, JetStreamDelivery};
pub use leases::{JetStreamPartitions, NatsLeases};
pub use publisher::{JetStreamAck, JetStreamPublisher, StreamSettings};

pub use annals_broker::BrokerError;
/// The NATS client this crate is built with.
pub use async_nats;

use annals_broker::Headers;

/// annals headers as NATS headers.
pub(crate) fn to_nats_headers(headers: &Headers) -> async_nats::HeaderMap {
    let mut map = async_nats::HeaderMap::new();
    for (k, v) in headers {
        map.insert(k.as_str(), v.as_str());
    }
    map
}

/// NATS headers as annals headers (the first value of each).
pub(crate) fn from_nats_headers(headers: Option<&async_nats::HeaderMap>) -> Headers {
    let mut out = Headers::new();
    if let Some(h) = headers {
        for (k, values) in h.iter() {
            if let Some(v) = values.first() {
                out.insert(k.to_string(), v.as_str().to_owned());
            }
        }
    }
    out
}
