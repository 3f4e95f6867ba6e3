//! # annals-core
//!
//! The small, stable heart of [annals](https://docs.rs/annals): identifiers, the event
//! envelope, the [`EventStore`] trait every storage backend implements, payload codecs and
//! the error type. No storage code lives here; `annals-store` (sled and in-memory) and other
//! backends implement [`EventStore`], and projections read through it.
//!
//! ```
//! use annals_core::{EventData, ExpectedVersion, StreamId, Version};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Opened { owner: String }
//!
//! let stream = StreamId::for_aggregate("account", 42)?;
//! let event = EventData::encode("Opened", &Opened { owner: "ada".into() })?;
//! assert_eq!(stream.as_str(), "account-42");
//! assert!(ExpectedVersion::NoStream.accepts(Version::NONE));
//! # let _ = event;
//! # Ok::<(), annals_core::Error>(())
//! ```

mod aggregate;
mod codec;
mod envelope;
mod error;
mod expected;
mod ids;
mod metadata;
mod snapshot;
mod store;
mod subscription;

pub use aggregate::{Aggregate, Command, DomainEvent};
pub use codec::{CodecId, DECODE_LIMIT};
pub use envelope::{EventData, MAX_EVENT_TYPE_LEN, RecordedEvent, Timestamp};
pub use error::{CodecAction, Error, Result, Source};
pub use expected::ExpectedVersion;
pub use ids::{EventId, MAX_STREAM_ID_LEN, Position, StreamId, Version};
pub use metadata::Metadata;
pub use snapshot::{Latest, Snapshot, SnapshotStore};
pub use store::{AppendMarks, AppendResult, Direction, EventStore, StreamAppend, VersionRange};
pub use subscription::{Filter, Subscription};

/// Re-exported so that implementors and users name the same UUID type.
pub use uuid::Uuid;
