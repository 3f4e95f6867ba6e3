//! The wire format: CloudEvents 1.0 in *binary* content mode over message headers.
//!
//! | header | value |
//! |---|---|
//! | `ce-specversion` | `1.0` |
//! | `ce-id` | the event id (a UUID) |
//! | `ce-type` | the event type, e.g. `OrderPlaced` |
//! | `ce-source` | the publishing service (configured), e.g. `orders` |
//! | `ce-time` | when the event was committed, RFC 3339 with microseconds, UTC |
//! | `ce-subject` | the stream id, e.g. `order-7` |
//! | `content-type` | `application/json` (codec 2) or `application/x-bincode` (codec 1) |
//! | `ce-annalsposition` | the position in the publishing store's global log |
//! | `ce-annalsversion` | the version in its stream |
//! | `ce-annalsschema` | the payload's schema version |
//! | `ce-annalscodec` | the codec id (the payload's encoding) |
//! | `ce-correlationid` | the correlation id, when the event has one |
//! | `ce-causationid` | the causation id, when the event has one |
//! | `traceparent` | the W3C trace context, when the event's metadata carries one |
//! | `ce-annalsheaders` | the event's other metadata headers as a JSON object, when any |
//! | `ce-dataschema` | the payload's schema, `<base>/<type>/v<schema version>.json`, when the relay is given a base |
//!
//! The payload bytes are the stored payload, unchanged. Extension names follow the
//! CloudEvents rule (lower-case letters and digits). The message id (JetStream's
//! `Nats-Msg-Id`) is the event id, so a broker with de-duplication drops a re-publish.

use annals_core::{
    CodecId, EventData, EventId, Metadata, Position, RecordedEvent, StreamId, Timestamp, Uuid,
    Version,
};

use crate::seam::{Headers, OutgoingMessage};

/// `ce-specversion`.
pub const SPECVERSION: &str = "ce-specversion";
/// `ce-id`.
pub const ID: &str = "ce-id";
/// `ce-type`.
pub const TYPE: &str = "ce-type";
/// `ce-source`.
pub const SOURCE: &str = "ce-source";
/// `ce-time`.
pub const TIME: &str = "ce-time";
/// `ce-subject`.
pub const SUBJECT: &str = "ce-subject";
/// `content-type` (CloudEvents' `datacontenttype` in binary mode).
pub const CONTENT_TYPE: &str = "content-type";
/// `ce-annalsposition`.
pub const POSITION: &str = "ce-annalsposition";
/// `ce-annalsversion`.
pub const VERSION: &str = "ce-annalsversion";
/// `ce-annalsschema`.
pub const SCHEMA: &str = "ce-annalsschema";
/// `ce-annalscodec`.
pub const CODEC: &str = "ce-annalscodec";
/// `ce-correlationid`.
pub const CORRELATION: &str = "ce-correlationid";
/// `ce-causationid`.
pub const CAUSATION: &str = "ce-causationid";
/// `traceparent` (W3C Trace Context).
pub const TRACEPARENT: &str = "traceparent";
/// `ce-annalsheaders`.
pub const HEADERS: &str = "ce-annalsheaders";

/// `ce-dataschema`: the URI of the payload's schema (set by a relay given a base).
pub const DATASCHEMA: &str = "ce-dataschema";

/// The `ce-dataschema` of an `event_type` payload at `version`: `<base>/<event
/// type>/v<version>.json` (the layout of committed contracts), with the base's trailing `/`
/// dropped and the event type one URI path segment (bytes other than letters, digits and
/// `-._~` as `%XX`, so a plain type name is the directory's name as it is).
pub fn dataschema_for(base: &str, event_type: &str, version: u32) -> String {
    let mut segment = String::with_capacity(event_type.len());
    for b in event_type.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            segment.push(char::from(b));
        } else {
            segment.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{}/{segment}/v{version}.json", base.trim_end_matches('/'))
}

/// The metadata header that carries an event's W3C trace context.
pub const TRACEPARENT_METADATA: &str = "traceparent";

/// The content type of a codec's payloads.
pub fn content_type(codec: CodecId) -> &'static str {
    if codec == CodecId::JSON {
        "application/json"
    } else if codec == CodecId::BINCODE {
        "application/x-bincode"
    } else {
        "application/octet-stream"
    }
}

/// `event` as a CloudEvents message from `source` to `subject`.
pub fn to_message(event: &RecordedEvent, source: &str, subject: String) -> OutgoingMessage {
    let mut h = Headers::new();
    let id = event.id.as_uuid().to_string();
    h.insert(SPECVERSION.into(), "1.0".into());
    h.insert(ID.into(), id.clone());
    h.insert(TYPE.into(), event.event_type.clone());
    h.insert(SOURCE.into(), source.to_owned());
    h.insert(
        TIME.into(),
        humantime::format_rfc3339_micros(event.recorded_at.to_system_time()).to_string(),
    );
    h.insert(SUBJECT.into(), event.stream.to_string());
    h.insert(CONTENT_TYPE.into(), content_type(event.codec).into());
    h.insert(POSITION.into(), event.position.0.to_string());
    h.insert(VERSION.into(), event.version.0.to_string());
    h.insert(SCHEMA.into(), event.schema_version.to_string());
    h.insert(CODEC.into(), event.codec.0.to_string());
    if let Some(c) = event.metadata.correlation_id {
        h.insert(CORRELATION.into(), c.to_string());
    }
    if let Some(c) = event.metadata.causation_id {
        h.insert(CAUSATION.into(), c.to_string());
    }
    let mut rest = event.metadata.headers.clone();
    if let Some(tp) = rest.remove(TRACEPARENT_METADATA) {
        h.insert(TRACEPARENT.into(), tp);
    }
    if !rest.is_empty()
        && let Ok(json) = serde_json::to_string(&rest)
    {
        h.insert(HEADERS.into(), json);
    }
    OutgoingMessage::new(subject, id, event.payload.clone()).with_headers(h)
}

/// An event received from another service: the CloudEvents attributes and the annals
/// extensions, decoded and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IncomingEvent {
    /// The event's id (`ce-id`).
    pub id: EventId,
    /// Its type (`ce-type`).
    pub event_type: String,
    /// The service that published it (`ce-source`).
    pub source: String,
    /// Its stream in the publishing service (`ce-subject`).
    pub stream: StreamId,
    /// When it was committed there (`ce-time`).
    pub time: Timestamp,
    /// Its position in the publisher's global log.
    pub position: Position,
    /// Its version in its stream.
    pub version: Version,
    /// The payload's schema version.
    pub schema_version: u32,
    /// The payload's codec.
    pub codec: CodecId,
    /// Correlation id, causation id and the other metadata headers (the trace context under
    /// `traceparent`).
    pub metadata: Metadata,
    /// The payload, as stored by the publisher.
    pub payload: Vec<u8>,
}

impl IncomingEvent {
    /// Decodes the payload with its codec.
    ///
    /// # Errors
    /// [`annals_core::Error::Codec`] when the bytes do not decode into `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, annals_core::Error> {
        self.codec.decode(&self.event_type, &self.payload)
    }

    /// The W3C trace context it carries.
    pub fn traceparent(&self) -> Option<&str> {
        self.metadata
            .headers
            .get(TRACEPARENT_METADATA)
            .map(String::as_str)
    }

    /// Metadata for the events a handler writes in reaction: the same correlation id (this
    /// event's id when it has none), this event as the causation, and its trace context.
    pub fn caused_metadata(&self) -> Metadata {
        let mut m = Metadata::new()
            .with_correlation_id(self.metadata.correlation_id.unwrap_or(*self.id.as_uuid()))
            .with_causation_id(*self.id.as_uuid());
        if let Some(tp) = self.traceparent() {
            m = m.with_header(TRACEPARENT_METADATA, tp);
        }
        m
    }

    /// The event as data to append to this service's store, as it was stored in the
    /// publisher's (same id, type, schema version, codec, metadata and payload): taking it
    /// in twice is an idempotent re-append.
    pub fn to_data(&self) -> EventData {
        EventData::new(
            self.id,
            self.event_type.clone(),
            self.schema_version,
            self.codec,
            self.metadata.clone(),
            self.payload.clone(),
        )
    }
}

/// Why a message is not an event this bridge can hand to a handler.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// A required header is missing.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// A header has a value of the wrong shape.
    #[error("header {header} has an invalid value {value:?}")]
    Invalid {
        /// The header.
        header: &'static str,
        /// Its value.
        value: String,
    },
    /// A CloudEvents version other than 1.0.
    #[error("unsupported CloudEvents version {0:?}")]
    SpecVersion(String),
}

fn required<'a>(h: &'a Headers, name: &'static str) -> Result<&'a str, MappingError> {
    h.get(name)
        .map(String::as_str)
        .ok_or(MappingError::Missing(name))
}

fn parsed<T: std::str::FromStr>(h: &Headers, name: &'static str) -> Result<T, MappingError> {
    let v = required(h, name)?;
    v.parse().map_err(|_| MappingError::Invalid {
        header: name,
        value: v.to_owned(),
    })
}

fn uuid_of(h: &Headers, name: &'static str) -> Result<Option<Uuid>, MappingError> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => Uuid::parse_str(v)
            .map(Some)
            .map_err(|_| MappingError::Invalid {
                header: name,
                value: v.clone(),
            }),
    }
}

/// The event in a message's headers and payload.
///
/// # Errors
/// [`MappingError`] naming the first header that is missing or malformed.
pub fn from_message(headers: &Headers, payload: &[u8]) -> Result<IncomingEvent, MappingError> {
    let spec = required(headers, SPECVERSION)?;
    if spec != "1.0" {
        return Err(MappingError::SpecVersion(spec.to_owned()));
    }
    let invalid = |header: &'static str| MappingError::Invalid {
        header,
        value: headers.get(header).cloned().unwrap_or_default(),
    };
    let id = EventId::from_uuid(Uuid::parse_str(required(headers, ID)?).map_err(|_| invalid(ID))?);
    let event_type = required(headers, TYPE)?.to_owned();
    if event_type.is_empty() {
        return Err(invalid(TYPE));
    }
    let source = required(headers, SOURCE)?.to_owned();
    let stream = StreamId::new(required(headers, SUBJECT)?).map_err(|_| invalid(SUBJECT))?;
    let time =
        humantime::parse_rfc3339_weak(required(headers, TIME)?).map_err(|_| invalid(TIME))?;
    let position = Position(parsed(headers, POSITION)?);
    let version = Version(parsed(headers, VERSION)?);
    if position == Position::NONE || version == Version::NONE {
        return Err(invalid(POSITION));
    }
    let mut metadata = Metadata::new()
        .correlated(uuid_of(headers, CORRELATION)?)
        .caused_by(uuid_of(headers, CAUSATION)?);
    if let Some(json) = headers.get(HEADERS) {
        let rest: std::collections::BTreeMap<String, String> =
            serde_json::from_str(json).map_err(|_| invalid(HEADERS))?;
        metadata = metadata.with_headers(rest);
    }
    if let Some(tp) = headers.get(TRACEPARENT) {
        metadata = metadata.with_header(TRACEPARENT_METADATA, tp.clone());
    }
    Ok(IncomingEvent {
        id,
        event_type,
        source,
        stream,
        time: Timestamp::from_system_time(time),
        position,
        version,
        schema_version: parsed(headers, SCHEMA)?,
        codec: CodecId(parsed(headers, CODEC)?),
        metadata,
        payload: payload.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use annals_core::EventData;

    #[test]
    fn dataschema_names_the_committed_file() {
        assert_eq!(
            dataschema_for("https://schemas.example.com/orders/", "OrderPlaced", 2),
            "https://schemas.example.com/orders/OrderPlaced/v2.json"
        );
        assert_eq!(dataschema_for("urn:x", "a.b", 1), "urn:x/a.b/v1.json");
        assert_eq!(
            dataschema_for("urn:x", "a/b c", 1),
            "urn:x/a%2Fb%20c/v1.json"
        );
    }

    fn recorded() -> RecordedEvent {
        let data = EventData::json("OrderPlaced", &serde_json::json!({"total": 5}))
            .unwrap()
            .with_metadata(
                Metadata::new()
                    .with_correlation_id(Uuid::now_v7())
                    .with_header(
                        "traceparent",
                        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    )
                    .with_header("user", "ada"),
            );
        RecordedEvent::new(
            Position(42),
            StreamId::new("order-7").unwrap(),
            Version(3),
            Timestamp::now(),
            data,
        )
    }

    #[test]
    fn a_recorded_event_round_trips_through_the_headers() {
        let e = recorded();
        let m = to_message(&e, "orders", "orders.order.order-7".into());
        assert_eq!(m.id, e.id.as_uuid().to_string());
        assert_eq!(m.payload, e.payload, "payload unchanged");
        assert_eq!(m.headers[CONTENT_TYPE], "application/json");
        assert!(m.headers[TIME].ends_with('Z'));
        let back = from_message(&m.headers, &m.payload).unwrap();
        assert_eq!(
            (
                back.id,
                &back.event_type,
                &back.stream,
                back.position,
                back.version
            ),
            (e.id, &e.event_type, &e.stream, e.position, e.version)
        );
        assert_eq!(back.time, e.recorded_at);
        assert_eq!(back.metadata, e.metadata);
        assert_eq!(back.source, "orders");
        let caused = back.caused_metadata();
        assert_eq!(caused.correlation_id, e.metadata.correlation_id);
        assert_eq!(caused.causation_id, Some(*e.id.as_uuid()));
        assert_eq!(
            caused.headers.get("traceparent"),
            e.metadata.headers.get("traceparent")
        );
    }

    #[test]
    fn every_missing_or_bad_header_is_named() {
        let m = to_message(&recorded(), "orders", "s".into());
        for h in [
            SPECVERSION,
            ID,
            TYPE,
            SOURCE,
            TIME,
            SUBJECT,
            POSITION,
            VERSION,
            SCHEMA,
            CODEC,
        ] {
            let mut headers = m.headers.clone();
            headers.remove(h);
            assert_eq!(
                from_message(&headers, &m.payload),
                Err(MappingError::Missing(h))
            );
            if ![TYPE, SOURCE, SUBJECT].contains(&h) {
                headers.insert(h.to_owned(), "not valid ✗".into());
                assert!(from_message(&headers, &m.payload).is_err(), "{h}");
            }
        }
        let mut headers = m.headers.clone();
        headers.insert(CORRELATION.into(), "nope".into());
        assert!(matches!(
            from_message(&headers, &m.payload),
            Err(MappingError::Invalid {
                header: CORRELATION,
                ..
            })
        ));
    }
}
