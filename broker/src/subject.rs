//! Subjects: where the relay publishes an event, `<prefix>.<aggregate type>.<stream id>`.
//!
//! Broker subjects (NATS) and routing keys (AMQP) split on `.` and give `*` and `>` (or `#`)
//! a meaning, and some brokers refuse spaces. Each token is therefore made *subject-safe*,
//! reversibly: ASCII letters, digits, `-` and `_` stay as they are; every other byte of the
//! UTF-8 text (`%` included) becomes `%` and two upper-case hex digits. `order-7` stays
//! `order-7`; `a.b c` becomes `a%2Eb%20c`. The aggregate type is the stream id's part before
//! its first `-` (the whole id when it has none), so `orders.order.order-7` is the subject of
//! stream `order-7` under prefix `orders`.
//!
//! **Partitions** (for inboxes that scale out over several processes): a relay with
//! `RelayConfig::partitions(n)` puts the stream's partition ([`partition_of`]) after the
//! prefix, `orders.3.order.order-7`, so that each partition is one durable consumer
//! (`orders.3.>`) that one process at a time consumes: every stream's messages go to one
//! partition, so order per stream holds however many processes share the work.

use annals_core::StreamId;

/// `token` made subject-safe.
///
/// ```
/// use annals_broker::subject::{decode_token, encode_token};
/// assert_eq!(encode_token("order-7"), "order-7");
/// assert_eq!(encode_token("a.b c*%"), "a%2Eb%20c%2A%25");
/// assert_eq!(decode_token("a%2Eb%20c%2A%25").as_deref(), Some("a.b c*%"));
/// ```
pub fn encode_token(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    for b in token.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The text of an encoded token; `None` when it is not one [`encode_token`] makes.
pub fn decode_token(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |c: u8| HEX.iter().position(|&h| h == c);
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
            i += 3;
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// The aggregate type of a stream: its id's part before the first `-`.
pub fn aggregate_type(stream: &StreamId) -> &str {
    let s = stream.as_str();
    s.split_once('-').map_or(s, |(t, _)| t)
}

/// The subject of `stream` under `prefix`: `<prefix>.<aggregate type>.<stream id>`, each
/// token subject-safe (the prefix is used as given: it may hold dots of its own).
pub fn subject_for(prefix: &str, stream: &StreamId) -> String {
    format!(
        "{prefix}.{}.{}",
        encode_token(aggregate_type(stream)),
        encode_token(stream.as_str())
    )
}

/// The partition of `stream` among `partitions` (at least 1): FNV-1a (32 bits) of the stream
/// id's UTF-8 bytes, modulo `partitions`. Stable forever: publishers and consumers of other
/// builds and languages compute the same.
///
/// ```
/// use annals_broker::subject::partition_of;
/// use annals_core::StreamId;
/// let p = partition_of(&StreamId::new("order-7")?, 4);
/// assert!(p < 4);
/// assert_eq!(p, partition_of(&StreamId::new("order-7")?, 4));
/// # Ok::<(), annals_core::Error>(())
/// ```
pub fn partition_of(stream: &StreamId, partitions: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in stream.as_str().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % partitions.max(1)
}

/// The subject of `stream` under `prefix` in a partitioned relay:
/// `<prefix>.<partition>.<aggregate type>.<stream id>`, so that the consumer of partition `k`
/// takes `<prefix>.<k>.>`.
pub fn partitioned_subject_for(prefix: &str, partitions: u32, stream: &StreamId) -> String {
    format!(
        "{prefix}.{}.{}.{}",
        partition_of(stream, partitions),
        encode_token(aggregate_type(stream)),
        encode_token(stream.as_str())
    )
}

/// The stream id a subject made by [`subject_for`] names: its last token, decoded.
pub fn stream_of(subject: &str) -> Option<StreamId> {
    let last = subject.rsplit('.').next()?;
    StreamId::new(decode_token(last)?).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_stream_id_round_trips() {
        for id in ["order-7", "a.b", "x y", "ünï-cödé", "%41", "a>b*c", "plain"] {
            let stream = StreamId::new(id).unwrap();
            let subject = subject_for("svc.events", &stream);
            assert!(
                subject
                    .split('.')
                    .all(|t| !t.is_empty() && !t.contains(['*', '>', ' ']))
            );
            assert_eq!(stream_of(&subject).unwrap(), stream, "{subject}");
        }
        assert_eq!(
            subject_for("orders", &StreamId::new("order-7").unwrap()),
            "orders.order.order-7"
        );
        assert_eq!(decode_token("%4"), None);
        assert_eq!(decode_token("a.b"), None);
        assert_eq!(decode_token("%FF"), None, "not UTF-8");
    }
}
