//! The [`Projection`] trait.

use annals_core::{Position, RecordedEvent};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::ProjectionError;

/// Where a projection's read model is: every event up to `position` is applied, by the
/// projection at `version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Checkpoint {
    /// The last position whose effect is in the read model (0: none).
    pub position: Position,
    /// The projection version that built the read model.
    pub version: u32,
}

impl Checkpoint {
    /// The checkpoint at `position` of a projection at `version`.
    pub fn at(position: Position, version: u32) -> Self {
        Self { position, version }
    }

    /// The position of a stored checkpoint; [`Position::NONE`] when there is none yet.
    pub fn position_of(stored: Option<Checkpoint>) -> Position {
        stored.map_or(Position::NONE, |c| c.position)
    }
}

/// A read model fed from the global log. Stored as a trait object by the runner, hence
/// `async-trait`.
///
/// The contract that makes projections effectively-once: [`Projection::apply`] applies a
/// batch **and** stores the checkpoint in one atomic step (one sled batch, one database
/// transaction, one index commit), or changes nothing and fails. The runner never passes a
/// checkpoint beyond an event whose effect is not stored.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// A unique, stable name.
    fn name(&self) -> &str;

    /// The projection's version: bump it when the handler changes meaning; the runner then
    /// rebuilds the read model on start.
    fn version(&self) -> u32 {
        1
    }

    /// The checkpoint stored with the read model, `None` if it was never written.
    async fn checkpoint(&self) -> Result<Option<Checkpoint>, ProjectionError>;

    /// Applies `events` (possibly none) and stores `checkpoint`, atomically.
    ///
    /// # Errors
    /// [`ProjectionError::Handler`] naming the failing event, or a storage error; in both
    /// cases nothing may have changed.
    async fn apply(
        &mut self,
        events: &[RecordedEvent],
        checkpoint: Checkpoint,
    ) -> Result<(), ProjectionError>;

    /// Removes everything from the read model, checkpoint included (for rebuilds). A read
    /// model that can rebuild without downtime starts a fresh copy here and keeps serving
    /// the old one until [`Projection::rebuilt`].
    async fn clear(&mut self) -> Result<(), ProjectionError>;

    /// Applies `events` that lie at or below the stored checkpoint — the runner's retry of a
    /// parked event, which was skipped, not applied — keeping the checkpoint at
    /// `checkpoint`. Read models that refuse batches below their stored checkpoint (to fence
    /// off a stale worker) override it; the default is [`Projection::apply`].
    async fn reapply(
        &mut self,
        events: &[RecordedEvent],
        checkpoint: Checkpoint,
    ) -> Result<(), ProjectionError> {
        self.apply(events, checkpoint).await
    }

    /// Read models that commit on their own schedule (a search index committing every N
    /// events or T milliseconds) return the last position whose effect readers can see;
    /// `wait_for` and lag use it. `None` (the default): everything applied is visible.
    fn visible(&self) -> Option<Position> {
        None
    }

    /// How long applied-but-invisible events may wait for a [`Projection::commit`] when no
    /// new events arrive. `None` (the default): never needed.
    fn commit_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// Makes everything applied visible and durable now.
    ///
    /// # Errors
    /// The read model's storage error (retried later).
    async fn commit(&mut self) -> Result<(), ProjectionError> {
        Ok(())
    }

    /// Called when a rebuild has caught up with the head it started from: a read model
    /// built beside the live one swaps it in here.
    ///
    /// # Errors
    /// The read model's storage error.
    async fn rebuilt(&mut self) -> Result<(), ProjectionError> {
        Ok(())
    }
}
