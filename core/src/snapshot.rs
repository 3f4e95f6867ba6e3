//! Snapshots: an aggregate's state at a version, so loads need not replay every event.

use std::future::Future;

use crate::codec::CodecId;
use crate::envelope::Timestamp;
use crate::error::Result;
use crate::ids::{StreamId, Version};

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

    /// The latest snapshot of `stream`. A damaged snapshot is an error; callers fall back to
    /// a full replay.
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>>> + Send;
}
