//! The [`Projection`] trait.

use annals_core::{Position, RecordedEvent};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::ProjectionError;

/// Where a projection's read model is: every event up to `position` is applied, by the
/// projection at `version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last position whose effect is in the read model (0: none).
    pub position: Position,
    /// The projection version that built the read model.
    pub version: u32,
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

    /// Removes everything from the read model, checkpoint included (for rebuilds).
    async fn clear(&mut self) -> Result<(), ProjectionError>;
}
