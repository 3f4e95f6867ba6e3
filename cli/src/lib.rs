//! The library half of the `annals` ops tool: the JSON-lines export format and its parser,
//! kept apart from the binary so that it can be tested and fuzzed on its own.
//!
//! ```
//! use annals_cli::{ImportError, parse_line};
//!
//! let line = r#"{"position":1,"stream":"order-1","version":1,
//!   "id":"0192e9a0-0000-7000-8000-000000000001","event_type":"Placed","schema_version":1,
//!   "recorded_at_micros":0,"metadata":{"headers":{}},"codec":2,"payload_base64":"e30="}"#;
//! let event = parse_line(&line.replace('\n', ""))?;
//! assert_eq!(event.map(|e| e.version.0), Some(1));
//! assert!(matches!(
//!     parse_line(&line.replace('\n', "").replace(r#""version":1"#, r#""version":0"#)),
//!     Err(ImportError::Version { .. })
//! ));
//! # Ok::<(), ImportError>(())
//! ```

use annals::prelude::*;
use annals::{Uuid, Version};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// One exported event: a line of `annals export`.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[non_exhaustive]
pub struct Line {
    /// Its position in the exporting store.
    pub position: u64,
    /// Its stream.
    pub stream: String,
    /// Its version in the stream.
    pub version: u64,
    /// Its id.
    pub id: Uuid,
    /// Its type name.
    pub event_type: String,
    /// The payload's schema version.
    pub schema_version: u32,
    /// When it was recorded, in microseconds since the epoch.
    pub recorded_at_micros: i64,
    /// Correlation, causation and headers.
    pub metadata: Metadata,
    /// The payload's codec byte.
    pub codec: u8,
    /// The payload bytes, base64.
    pub payload_base64: String,
    /// The payload decoded, when it is JSON (informational: import reads the base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_json: Option<serde_json::Value>,
}

impl Line {
    /// The export line of a stored event.
    pub fn of(e: RecordedEvent) -> Self {
        let payload_json = (e.codec == CodecId::JSON)
            .then(|| serde_json::from_slice(&e.payload).ok())
            .flatten();
        Line {
            position: e.position.0,
            stream: e.stream.to_string(),
            version: e.version.0,
            id: *e.id.as_uuid(),
            event_type: e.event_type,
            schema_version: e.schema_version,
            recorded_at_micros: e.recorded_at.0,
            metadata: e.metadata,
            codec: e.codec.0,
            payload_base64: base64::engine::general_purpose::STANDARD.encode(&e.payload),
            payload_json,
        }
    }
}

/// Why an import line was refused. Nothing of a refused file is appended past the line
/// before it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The line is not a JSON export line.
    #[error("not an export line: {0}")]
    Json(#[source] serde_json::Error),
    /// The payload is not valid base64.
    #[error("payload: {0}")]
    Payload(#[source] base64::DecodeError),
    /// The stream id breaks a naming rule.
    #[error("stream: {0}")]
    Stream(#[source] annals::Error),
    /// The version is 0 or the largest version, which no stored event has.
    #[error("version {version} is not a version an event can have")]
    Version {
        /// The version the line names.
        version: u64,
    },
}

/// One event to import: its stream, the version it had, and its data.
#[derive(Debug)]
#[non_exhaustive]
pub struct ImportEvent {
    /// The stream it goes to.
    pub stream: StreamId,
    /// The version it had in the exporting store (1 or more).
    pub version: Version,
    /// The event, with its original id.
    pub data: EventData,
}

/// Parses one line of an export; `Ok(None)` for a blank line.
///
/// # Errors
/// [`ImportError`] naming what is wrong with the line.
pub fn parse_line(line: &str) -> Result<Option<ImportEvent>, ImportError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let l: Line = serde_json::from_str(line).map_err(ImportError::Json)?;
    if l.version == 0 || l.version == Version::MAX.0 {
        return Err(ImportError::Version { version: l.version });
    }
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&l.payload_base64)
        .map_err(ImportError::Payload)?;
    let stream = StreamId::new(l.stream).map_err(ImportError::Stream)?;
    Ok(Some(ImportEvent {
        stream,
        version: Version(l.version),
        data: EventData::new(
            EventId::from_uuid(l.id),
            l.event_type,
            l.schema_version,
            CodecId(l.codec),
            l.metadata,
            payload,
        ),
    }))
}

/// Groups import events into appends: runs of one stream with consecutive versions, at most
/// `max` events each. Each append expects the stream at the version before its first event,
/// so importing the same file twice appends nothing the second time.
#[derive(Debug)]
pub struct Batcher {
    max: usize,
    run: Option<(StreamId, Version, Version)>,
    events: Vec<EventData>,
}

/// One append of an import: the stream, the version it must be at, and the events.
pub type Append = (StreamId, Version, Vec<EventData>);

impl Batcher {
    /// A batcher cutting appends at `max` events (at least 1).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            run: None,
            events: Vec::new(),
        }
    }

    /// Adds an event; returns the append it closes, if it closes one.
    pub fn push(&mut self, e: ImportEvent) -> Option<Append> {
        let continues = matches!(&self.run, Some((s, _, last))
            if *s == e.stream && last.next() == e.version && last.0 < e.version.0);
        let closed = if !continues || self.events.len() >= self.max {
            self.take()
        } else {
            None
        };
        match &mut self.run {
            Some((_, _, last)) => *last = e.version,
            None => {
                // `version >= 1` (parse_line checks), so the one before it exists.
                let before = Version(e.version.0.saturating_sub(1));
                self.run = Some((e.stream, before, e.version));
            }
        }
        self.events.push(e.data);
        closed
    }

    /// The append in progress, if any (call at the end of the file).
    pub fn take(&mut self) -> Option<Append> {
        let (stream, before, _) = self.run.take()?;
        let events = std::mem::take(&mut self.events);
        (!events.is_empty()).then_some((stream, before, events))
    }
}
