//! The one error type of the storage contract.

use std::sync::Arc;

use crate::expected::ExpectedVersion;
use crate::ids::{EventId, Position, StreamId, Version};

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a codec was doing when it failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum CodecAction {
    /// Turning a value into payload bytes.
    Encode,
    /// Turning payload bytes into a value.
    Decode,
}

impl std::fmt::Display for CodecAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CodecAction::Encode => "encode",
            CodecAction::Decode => "decode",
        })
    }
}

/// The cause of an infrastructure error, shared so that [`Error`] stays `Clone`.
pub type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong talking to an event store.
///
/// Variants are grouped by what a caller does about them: *retryable* conflicts, *caller bugs*
/// (bad input that will never succeed), *data* problems (corruption, undecodable payloads) and
/// *infrastructure* failures. Domain errors of aggregates are never of this type.
///
/// `Clone`: one failure can be handed to every caller it concerns (every append of a failed
/// group commit), causes and all — I/O errors and engine errors are kept behind an `Arc`, so
/// [`std::error::Error::source`] still reaches them.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Optimistic concurrency: the stream was not at the expected version.
    ///
    /// Handle it by reloading the stream and deciding again (the repository does this for
    /// you a configurable number of times). `actual` is the stream's version when the append
    /// was checked ([`Version::NONE`] when the stream does not exist).
    #[error("conflict on stream {stream}: expected {expected}, actual version {actual}")]
    Conflict {
        /// The stream appended to.
        stream: StreamId,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// What the stream's version was.
        actual: Version,
    },

    /// A stream id broke a naming rule. A caller bug: fix the name.
    #[error("invalid stream id {name:?}: {reason}")]
    InvalidStreamId {
        /// The rejected name.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// An event to append is malformed (empty type name, oversized payload, duplicate ids
    /// within one append, ...). A caller bug: fix the event.
    #[error("invalid event: {reason}")]
    InvalidEvent {
        /// What is wrong with it.
        reason: String,
    },

    /// An event id of this append is already stored, but not as part of an identical append:
    /// the content differs, or it sits in another stream or another batch. Appending the very
    /// same events again is not an error (it returns the original result); this is. Treat it
    /// as a caller bug: event ids must be unique per event.
    #[error("event id {id} is already stored at position {position} with different content")]
    DuplicateEventId {
        /// The reused id.
        id: EventId,
        /// Where the stored event with that id is.
        position: Position,
    },

    /// Stored bytes failed their checksum, were truncated, or are of a format this build does
    /// not know. Nothing is guessed: the event at `position` cannot be read until the store is
    /// repaired (restore from a backup or export/import around it).
    #[error("corrupt record at position {position}: {reason}")]
    Corrupt {
        /// The position of the record (or of the first record of the damaged unit).
        position: Position,
        /// What check failed.
        reason: String,
    },

    /// A payload could not be encoded or decoded with its codec, or its codec is unknown.
    /// On decode this usually means the event type changed without an upcaster.
    #[error("cannot {action} payload of event type {event_type:?}: {reason}")]
    Codec {
        /// Encoding or decoding.
        action: CodecAction,
        /// The event type involved.
        event_type: String,
        /// The codec's message.
        reason: String,
    },

    /// A write or flush failed earlier; the store refuses all further writes so that nothing
    /// is acknowledged on top of a state it cannot vouch for. Reads still work. Reopen the
    /// store (after fixing the disk) to recover every acknowledged event.
    #[error("store is poisoned after a failed write and refuses writes: {reason}")]
    Poisoned {
        /// The failure that poisoned it.
        reason: String,
    },

    /// The store was closed (its writer stopped). Open it again.
    #[error("store is closed")]
    Closed,

    /// The store's bytes are of a format this build does not read (written by a newer
    /// build, or not a store of this kind at all). Nothing was changed; open it with a build
    /// that reads `found`.
    #[error("incompatible store format {found}; this build reads {reads}")]
    IncompatibleFormat {
        /// What the store says it is (its format marker, or what is missing).
        found: String,
        /// The formats this build reads.
        reads: String,
    },

    /// The store is open in another handle or process that holds its lock. Close that one,
    /// or wait for it.
    #[error("store {what} is locked by another handle or process")]
    Locked {
        /// Which store (its path).
        what: String,
        /// The engine's error.
        #[source]
        source: Option<Source>,
    },

    /// An I/O error from the disk. The append that saw it was not acknowledged; the store is
    /// poisoned afterwards.
    #[error("i/o error: {0}")]
    Io(#[source] Arc<std::io::Error>),

    /// An error of the storage engine underneath (sled, a database server, ...).
    #[error("storage engine error: {message}")]
    Storage {
        /// What failed.
        message: String,
        /// The engine's own code for it, when it has one (a PostgreSQL SQLSTATE).
        code: Option<String>,
        /// The engine's error.
        #[source]
        source: Option<Source>,
    },
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl Error {
    /// True for errors that may go away when the operation is tried again on fresh state
    /// ([`Error::Conflict`]).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// A `Storage` error with a message and no cause.
    pub fn storage(message: impl Into<String>) -> Self {
        Error::Storage {
            message: message.into(),
            code: None,
            source: None,
        }
    }

    /// A `Storage` error caused by `source`.
    pub fn storage_caused(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Storage {
            message: message.into(),
            code: None,
            source: Some(Arc::new(source)),
        }
    }

    /// The `Codec` error for an event type that `for_type` does not know.
    pub fn unknown_event_type(event_type: &str, for_type: &str) -> Self {
        Error::Codec {
            action: CodecAction::Decode,
            event_type: event_type.to_owned(),
            reason: format!("not an event type of {for_type}"),
        }
    }

    /// A `Corrupt` error.
    pub fn corrupt(position: Position, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            position,
            reason: reason.into(),
        }
    }
}
