//! The envelope: [`EventData`] (what a caller appends) and [`RecordedEvent`] (what is stored
//! and delivered), with their [`Timestamp`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::CodecId;
use crate::error::Error;
use crate::ids::{EventId, Position, StreamId, Version};
use crate::metadata::Metadata;

/// The longest event type name accepted, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 255;

/// A point in time with microsecond resolution, as microseconds since the Unix epoch (UTC).
///
/// Stores stamp each event with the time its append was committed; stamps never decrease
/// along the global log, so "the state as of time T" is well defined.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current system time.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Converts a `SystemTime` (saturating at the ends of the range).
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            Err(e) => Self(-i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }

    /// Converts back into a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_micros(self.0.unsigned_abs())
        } else {
            UNIX_EPOCH - Duration::from_micros(self.0.unsigned_abs())
        }
    }

    /// Microseconds since the Unix epoch.
    pub fn as_micros(self) -> i64 {
        self.0
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}µs", self.0)
    }
}

/// One event as a caller appends it: everything but what the store assigns (stream, version,
/// position, time).
///
/// ```
/// use annals_core::{EventData, CodecId};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Deposited { amount: u64 }
/// let e = EventData::encode("Deposited", &Deposited { amount: 5 })?;
/// assert_eq!(e.codec, CodecId::BINCODE);
/// assert_eq!(e.schema_version, 1);
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct EventData {
    /// The event's unique id (a fresh UUID v7 unless set). Appending an event whose id is
    /// already stored in an identical append is a no-op that returns the original result.
    pub id: EventId,
    /// The event's type name, e.g. `"Deposited"`.
    pub event_type: String,
    /// The schema version of the payload (starts at 1; upcasters move old versions forward).
    pub schema_version: u32,
    /// How `payload` was encoded.
    pub codec: CodecId,
    /// Correlation, causation and headers.
    pub metadata: Metadata,
    /// The encoded payload.
    pub payload: Vec<u8>,
}

impl EventData {
    /// An event with every field given (what a store or an import builds from stored
    /// parts; [`EventData::from_bytes`] and the encoders give a fresh id instead).
    pub fn new(
        id: EventId,
        event_type: impl Into<String>,
        schema_version: u32,
        codec: CodecId,
        metadata: Metadata,
        payload: Vec<u8>,
    ) -> Self {
        Self {
            id,
            event_type: event_type.into(),
            schema_version,
            codec,
            metadata,
            payload,
        }
    }

    /// An event with already-encoded bytes and the given codec id.
    pub fn from_bytes(event_type: impl Into<String>, codec: CodecId, payload: Vec<u8>) -> Self {
        Self {
            id: EventId::new(),
            event_type: event_type.into(),
            schema_version: 1,
            codec,
            metadata: Metadata::default(),
            payload,
        }
    }

    /// Encodes `value` with the default codec (bincode).
    ///
    /// # Errors
    /// [`Error::Codec`] when serde fails.
    pub fn encode<T: Serialize + ?Sized>(
        event_type: impl Into<String>,
        value: &T,
    ) -> Result<Self, Error> {
        Self::encode_with(CodecId::default(), event_type, value)
    }

    /// Encodes `value` as JSON.
    ///
    /// # Errors
    /// [`Error::Codec`] when serde fails.
    pub fn json<T: Serialize + ?Sized>(
        event_type: impl Into<String>,
        value: &T,
    ) -> Result<Self, Error> {
        Self::encode_with(CodecId::JSON, event_type, value)
    }

    /// Encodes `value` with `codec`.
    ///
    /// # Errors
    /// [`Error::Codec`] when serde fails or the codec cannot encode.
    pub fn encode_with<T: Serialize + ?Sized>(
        codec: CodecId,
        event_type: impl Into<String>,
        value: &T,
    ) -> Result<Self, Error> {
        let event_type = event_type.into();
        let payload = codec.encode(&event_type, value)?;
        Ok(Self::from_bytes(event_type, codec, payload))
    }

    /// Sets the id.
    pub fn with_id(mut self, id: EventId) -> Self {
        self.id = id;
        self
    }

    /// Sets the schema version.
    pub fn with_schema_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// One stored event as it is delivered: the envelope (position, stream, version, id, type, schema version, time, metadata, codec, payload).
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct RecordedEvent {
    /// Place in the global log.
    pub position: Position,
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Its version within the stream (1 for the first event).
    pub version: Version,
    /// Its unique id.
    pub id: EventId,
    /// Its type name.
    pub event_type: String,
    /// The schema version of its payload.
    pub schema_version: u32,
    /// When its append was committed.
    pub recorded_at: Timestamp,
    /// Correlation, causation and headers.
    pub metadata: Metadata,
    /// How `payload` is encoded.
    pub codec: CodecId,
    /// The encoded payload.
    pub payload: Vec<u8>,
}

impl RecordedEvent {
    /// The stored form of `data`: at `position` in the global log, `version` in `stream`,
    /// committed at `recorded_at` (what a store builds when it appends or reads an event).
    pub fn new(
        position: Position,
        stream: StreamId,
        version: Version,
        recorded_at: Timestamp,
        data: EventData,
    ) -> Self {
        Self {
            position,
            stream,
            version,
            id: data.id,
            event_type: data.event_type,
            schema_version: data.schema_version,
            recorded_at,
            metadata: data.metadata,
            codec: data.codec,
            payload: data.payload,
        }
    }

    /// Decodes the payload with the codec it was stored with.
    ///
    /// # Errors
    /// [`Error::Codec`] when the bytes do not decode into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Error> {
        self.codec.decode(&self.event_type, &self.payload)
    }

    /// The event as data to append again (to another store, or as an idempotent retry):
    /// everything but what the store assigned.
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

    /// True when this stored event has the same content as `data` (id, type, schema version,
    /// codec, metadata and payload): the test for an idempotent re-append.
    pub fn same_content(&self, data: &EventData) -> bool {
        self.id == data.id
            && self.event_type == data.event_type
            && self.schema_version == data.schema_version
            && self.codec == data.codec
            && self.metadata == data.metadata
            && self.payload == data.payload
    }
}
