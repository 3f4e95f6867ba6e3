//! Snapshots: an aggregate's state at a version, so loads need not replay every event.

use std::future::Future;

use crate::codec::CodecId;
use crate::envelope::{RecordedEvent, Timestamp};
use crate::error::{Error, Result};
use crate::ids::{StreamId, Version};
use crate::store::{Direction, EventStore, VersionRange};

/// One stored snapshot of a stream's aggregate.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct Snapshot {
    /// The stream version the state includes (every event up to and including it).
    pub version: Version,
    /// The aggregate's own state schema version (`Aggregate::SNAPSHOT_VERSION`).
    pub schema_version: u32,
    /// How `payload` is encoded.
    pub codec: CodecId,
    /// The encoded state.
    pub payload: Vec<u8>,
    /// When it was taken.
    pub taken_at: Timestamp,
}

impl Snapshot {
    /// A snapshot of the state encoded in `payload` (with `codec`, at the aggregate's state
    /// `schema_version`) that includes every event up to `version`, taken at `taken_at`.
    pub fn new(
        version: Version,
        schema_version: u32,
        codec: CodecId,
        payload: Vec<u8>,
        taken_at: Timestamp,
    ) -> Self {
        Self {
            version,
            schema_version,
            codec,
            payload,
            taken_at,
        }
    }
}

/// What a load needs: the latest snapshot and the events after it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Latest {
    /// The snapshot; `Err` when it could not be read (callers replay instead).
    pub snapshot: std::result::Result<Option<Snapshot>, Error>,
    /// Events of the stream in version order, from after the snapshot as the store saw it
    /// (from version 1 without one), at most the limit asked for. A snapshot written
    /// meanwhile can make them start later or earlier than `snapshot.version + 1`: callers
    /// check that they follow on.
    pub events: Vec<RecordedEvent>,
}

impl Latest {
    /// A snapshot (or the error reading it) and the events after it.
    pub fn new(
        snapshot: std::result::Result<Option<Snapshot>, Error>,
        events: Vec<RecordedEvent>,
    ) -> Self {
        Self { snapshot, events }
    }
}

/// Where snapshots live: one (the latest) per stream. Snapshots are a cache: losing one only
/// costs a longer replay, so stores may write them without their own sync.
pub trait SnapshotStore: Clone + Send + Sync + 'static {
    /// Stores `snapshot` as the latest of `stream`, replacing an older one.
    fn save_snapshot(
        &self,
        stream: &StreamId,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Stores `snapshot` without waiting for it to be written: it is written with the store's
    /// next write (so a command that takes a snapshot never waits for one more commit), and a
    /// later flush of the store, where it has one, waits for it. The default waits, as
    /// [`Self::save_snapshot`].
    fn queue_snapshot(
        &self,
        stream: &StreamId,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<()>> + Send {
        self.save_snapshot(stream, snapshot)
    }

    /// The latest snapshot of `stream` and up to `limit` events after it, in one call: what
    /// loading an aggregate needs. Stores with a server answer it in one round trip; the
    /// default makes the two calls.
    ///
    /// # Errors
    /// The events' read errors (a snapshot that cannot be read is in [`Latest::snapshot`]).
    fn load_latest(
        &self,
        stream: &StreamId,
        limit: usize,
    ) -> impl Future<Output = Result<Latest>> + Send
    where
        Self: EventStore,
    {
        async move {
            let snapshot = self.load_snapshot(stream).await;
            let from = match &snapshot {
                Ok(Some(s)) => s.version.next(),
                _ => Version::FIRST,
            };
            let events = self
                .read_stream(
                    stream,
                    VersionRange::new(from, Version::MAX),
                    Direction::Forward,
                    limit,
                )
                .await?;
            Ok(Latest { snapshot, events })
        }
    }

    /// The latest snapshot of `stream`. A damaged snapshot is an error; callers fall back to
    /// a full replay.
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>>> + Send;
}
