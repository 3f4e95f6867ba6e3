//! # annals-projections
//!
//! Turns the global event log into read models.
//!
//! * [`Projection`]: a read model with a name, a version and a batch handler that applies
//!   events **and** stores its checkpoint atomically (effectively-once).
//! * [`ProjectionRunner`]: one worker task per projection — catch up from the checkpoint,
//!   then live on `subscribe_all`; batches; retry with exponential backoff, then park the
//!   event in a dead-letter list (or stop); pause, resume, reset, rebuild with progress; lag;
//!   [`ProjectionHandle::wait_for`] for read-your-writes.
//! * [`KvReadModel`] / [`KvProjection`]: a typed sled key-value read model whose writes and
//!   checkpoint land in one atomic batch.
//! * [`project_until`]: a read model as it was at a position.
//! * [`SearchProjection`]: a tantivy full-text read model — upserts by id, commits every N
//!   events or T ms with the checkpoint in the commit payload, rebuilds beside the live
//!   index and swaps it in without downtime; [`SearchIndex`] answers queries with scores,
//!   stored fields and highlighted snippets.
//! * [`Leadership`] / [`Lease`]: with
//!   [`ProjectionRunner::with_leadership`], each projection runs in one process at a time;
//!   the others stand by and take over when the leader goes away. Feature `postgres`:
//!   `PgLeadership` (session advisory locks) and `PgReadModel` / `PgProjector`, a read model
//!   in PostgreSQL tables whose checkpoint moves by compare-and-set in the batch's
//!   transaction (`ProjectionError::Fenced` for a worker that lost its lease).
//!
//! The runtime reads events only through [`annals_core::EventStore`], so it works over any
//! store.
//!
//! ```
//! use annals_core::{EventData, EventStore, ExpectedVersion, RecordedEvent, StreamId};
//! use annals_projections::*;
//! use std::time::Duration;
//!
//! /// Counts events per stream.
//! struct Counts;
//! impl KvProjector for Counts {
//!     type Key = String;
//!     type Value = u64;
//!     fn name(&self) -> &str { "counts" }
//!     fn apply(&self, e: &RecordedEvent, kv: &mut KvWriter<'_, String, u64>) -> Result<(), HandlerError> {
//!         let key = e.stream.to_string();
//!         let n = kv.get(&key)?.unwrap_or(0);
//!         Ok(kv.put(&key, &(n + 1))?)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = annals_store::MemStore::new();
//! let db = sled::Config::new().temporary(true).open()?;
//! let model = KvReadModel::<String, u64>::open(&db, "counts")?;
//! let runner = ProjectionRunner::new(store.clone(), &db)?;
//! let counts = runner.start(Box::new(KvProjection::new(Counts, model.clone())), ProjectionConfig::default())?;
//!
//! let stream = StreamId::new("order-1")?;
//! let r = store.append(&stream, ExpectedVersion::Any, vec![EventData::json("Placed", &1)?]).await?;
//! counts.wait_for(r.last_position, Duration::from_secs(5)).await?; // read your write
//! assert_eq!(model.get(&"order-1".to_string())?, Some(1));
//! runner.shutdown().await;
//! # Ok(()) }
//! ```

mod error;
mod kv;
mod leader;
mod parked;
#[cfg(feature = "postgres")]
mod pg_parked;
#[cfg(feature = "postgres")]
mod postgres;
mod projection;
mod runner;
#[cfg(feature = "search")]
mod search;

pub use error::{HandlerError, ProjectionError};
#[cfg(feature = "sled")]
/// The sled this crate is built with: [`ProjectionRunner::new`] and [`KvReadModel::open`]
/// take a `sled::Db`, and with this re-export no application needs its own (exactly
/// matching) sled dependency.
pub use sled;

/// The read models' byte decoders, for the fuzz targets: not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::{Parked, ProjectionError};

    /// A KV read model's stored value (or checkpoint) as `T`.
    ///
    /// # Errors
    /// Undecodable bytes.
    pub fn kv_value<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ProjectionError> {
        crate::kv::decode(bytes)
    }

    /// A parked record.
    ///
    /// # Errors
    /// Undecodable bytes.
    pub fn parked(bytes: &[u8]) -> Result<Parked, ProjectionError> {
        crate::parked::decode(bytes)
    }

    /// The checkpoint in a search index commit's payload.
    ///
    /// # Errors
    /// An undecodable payload.
    #[cfg(feature = "search")]
    pub fn search_payload(payload: &str) -> Result<crate::Checkpoint, ProjectionError> {
        crate::search::decode_payload(payload)
    }
}
#[cfg(feature = "sled")]
pub use kv::kv_read_models;
pub use kv::{KvProjection, KvProjector, KvReadModel, KvWriter};
pub use leader::{Leadership, Lease};
#[cfg(feature = "sled")]
pub use parked::ParkedStore;
pub use parked::{DeadLetters, MemDeadLetters, Parked};
#[cfg(feature = "postgres")]
pub use pg_parked::PgDeadLetters;
#[cfg(feature = "postgres")]
pub use postgres::{PgLeadership, PgProjector, PgReadModel};
pub use projection::{Checkpoint, Projection};
pub use runner::{
    FailurePolicy, Progress, ProgressFn, ProjectionConfig, ProjectionHandle, ProjectionRunner,
    RetryPolicy, Status, WorkerState, project_to_head, project_until,
};
/// The PostgreSQL driver, re-exported so that projectors use the same version.
#[cfg(feature = "postgres")]
pub use tokio_postgres;

#[cfg(feature = "search")]
pub use search::{
    CurrentDoc, FastFilter, Hit, SearchConfig, SearchIndex, SearchOp, SearchProjection,
    SearchProjector, search_checkpoint,
};

/// tantivy, re-exported so that schemas and documents are built with the same version.
#[cfg(feature = "search")]
pub use tantivy;

pub use annals_core::{EventStore, Filter, Position, RecordedEvent, Subscription};
