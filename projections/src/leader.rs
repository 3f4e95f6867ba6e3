//! Leadership: which process runs a projection when several processes start it.
//!
//! A runner given a [`Leadership`] (see
//! [`ProjectionRunner::with_leadership`](crate::ProjectionRunner::with_leadership)) starts
//! each worker in [`WorkerState::Standby`](crate::WorkerState::Standby): it applies nothing
//! until [`Leadership::acquire`] grants it a [`Lease`], then reads its checkpoint and runs;
//! when the lease is lost it stops applying and stands by again. Leases are advisory: a read
//! model shared between processes must also fence its checkpoint (compare-and-set, see
//! [`ProjectionError::Fenced`]) so that a worker that lost its lease without noticing cannot
//! apply a batch twice.

use async_trait::async_trait;

use crate::error::ProjectionError;

/// Grants at most one process at a time the right to run a projection. Stored as a trait
/// object by the runner, hence `async-trait`.
#[async_trait]
pub trait Leadership: Send + Sync + 'static {
    /// Waits until this process may run `projection`. Dropping the future gives up; dropping
    /// the lease releases the projection for another process.
    ///
    /// # Errors
    /// The coordinator cannot be reached; the worker waits and asks again.
    async fn acquire(&self, projection: &str) -> Result<Box<dyn Lease>, ProjectionError>;
}

/// The right to run one projection, held until dropped or lost.
#[async_trait]
pub trait Lease: Send + Sync {
    /// Completes when the lease is lost (the coordinator became unreachable, or released it).
    /// Cancel-safe: the worker polls it beside its other work.
    async fn lost(&mut self);
}
