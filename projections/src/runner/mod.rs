//! The runner: one worker task per projection — catch up from the checkpoint, then live;
//! batches; retries with backoff; park or stop; pause, resume, reset, rebuild; lag;
//! read-your-writes.
//!
//! `config.rs` holds a worker's options, `handle.rs` what callers hold (the handle, its
//! status and controls), `worker.rs` the worker task and its one-enum state; this file the
//! runner that starts workers, and [`project_until`].

mod config;
mod handle;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use annals_core::{EventStore, Position};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use config::{FailurePolicy, ProjectionConfig, RetryPolicy};
pub use handle::{Progress, ProgressFn, ProjectionHandle, Status, WorkerState};

use crate::error::ProjectionError;
use crate::leader::Leadership;
use crate::parked::DeadLetters;
#[cfg(feature = "sled")]
use crate::parked::ParkedStore;
use crate::projection::{Checkpoint, Projection};
use handle::Control;
use worker::Worker;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs projections over a store, one worker task each. Dropping the runner (or calling
/// [`ProjectionRunner::shutdown`]) stops the workers after their current batch; every
/// checkpoint stays consistent with its read model because each batch commits atomically.
pub struct ProjectionRunner<S> {
    store: S,
    parked: Arc<dyn DeadLetters>,
    leadership: Option<Arc<dyn Leadership>>,
    workers: Mutex<HashMap<String, (ProjectionHandle, JoinHandle<()>)>>,
}

impl<S: EventStore> ProjectionRunner<S> {
    /// A runner over `store`, keeping its dead-letter list in `db` (a [`ParkedStore`]).
    #[cfg(feature = "sled")]
    ///
    /// # Errors
    /// sled errors opening the dead-letter tree.
    pub fn new(store: S, db: &sled::Db) -> Result<Self, ProjectionError> {
        Ok(Self::with_dead_letters(store, ParkedStore::open(db)?))
    }

    /// A runner over `store` keeping its dead-letter list in `dead_letters`: for read models
    /// outside sled (PostgreSQL's `PgDeadLetters`, where parked events survive a leader
    /// failover), no sled database needed.
    pub fn with_dead_letters(store: S, dead_letters: impl DeadLetters) -> Self {
        Self {
            store,
            parked: Arc::new(dead_letters),
            leadership: None,
            workers: Mutex::new(HashMap::new()),
        }
    }

    /// Runs each projection only while `leadership` grants this process its lease: for
    /// several processes sharing one store and one read model. Workers started afterwards
    /// wait in [`WorkerState::Standby`] until they lead.
    pub fn with_leadership(mut self, leadership: impl Leadership) -> Self {
        self.leadership = Some(Arc::new(leadership));
        self
    }

    /// Starts a worker for `projection`: it catches up from the stored checkpoint (or
    /// rebuilds, when the stored version differs from the projection's), then follows the
    /// log live.
    ///
    /// ```
    /// use std::time::Duration;
    /// use annals_core::{EventData, EventStore, ExpectedVersion, RecordedEvent, StreamId};
    /// use annals_projections::*;
    ///
    /// /// Events per type.
    /// struct PerType;
    /// impl KvProjector for PerType {
    ///     type Key = String;
    ///     type Value = u64;
    ///     fn name(&self) -> &str { "per-type" }
    ///     fn apply(&self, e: &RecordedEvent, kv: &mut KvWriter<'_, String, u64>) -> Result<(), HandlerError> {
    ///         let n = kv.get(&e.event_type)?.unwrap_or(0);
    ///         Ok(kv.put(&e.event_type, &(n + 1))?)
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = annals_store::MemStore::new();
    /// let runner = ProjectionRunner::with_dead_letters(store.clone(), MemDeadLetters::new());
    /// let model = KvReadModel::<String, u64>::in_memory();
    /// let config = ProjectionConfig::default()
    ///     .batch_size(100)
    ///     .retry(RetryPolicy::default().attempts(3))
    ///     .on_failure(FailurePolicy::Park);
    /// let handle = runner.start(Box::new(KvProjection::new(PerType, model.clone())), config)?;
    ///
    /// let stream = StreamId::new("order-1")?;
    /// let events = vec![EventData::json("Placed", &1)?, EventData::json("Paid", &1)?];
    /// let appended = store.append(&stream, ExpectedVersion::NoStream, events).await?;
    /// // Read your write: wait until the projection has applied the append.
    /// handle.wait_for_applied(appended.last_position, Duration::from_secs(5)).await?;
    /// assert_eq!(model.get(&"Paid".to_string())?, Some(1));
    /// assert_eq!(handle.status().await?.lag, 0);
    /// runner.shutdown().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ProjectionError::AlreadyRunning`] for a duplicate name.
    pub fn start(
        &self,
        projection: Box<dyn Projection>,
        config: ProjectionConfig,
    ) -> Result<ProjectionHandle, ProjectionError> {
        let name = projection.name().to_owned();
        let mut workers = lock(&self.workers);
        if workers.contains_key(&name) {
            return Err(ProjectionError::AlreadyRunning(name));
        }
        let (control_tx, control_rx) = mpsc::channel(16);
        // With leadership a worker starts standing by; showing `Running` before it holds the
        // lease would tell a caller it leads when it may not.
        let initial = if self.leadership.is_some() {
            WorkerState::Standby
        } else {
            WorkerState::Running
        };
        let (state_tx, state_rx) = watch::channel((Position::NONE, initial));
        let store = self.store.clone();
        let head_store = self.store.clone();
        let handle = ProjectionHandle {
            name: name.clone(),
            control: control_tx,
            state: state_rx,
            head: Arc::new(move || head_store.head_position()),
            parked: Arc::clone(&self.parked),
        };
        let worker = Worker::new(
            name.clone(),
            store,
            projection,
            config,
            Arc::clone(&self.parked),
            state_tx,
            control_rx,
            self.leadership.clone(),
        );
        let span = tracing::info_span!("projection", name = %name);
        let join = tokio::spawn(worker.run().instrument(span));
        workers.insert(name, (handle.clone(), join));
        Ok(handle)
    }

    /// The handle of a running projection.
    pub fn get(&self, name: &str) -> Option<ProjectionHandle> {
        lock(&self.workers).get(name).map(|(h, _)| h.clone())
    }

    /// Handles of every projection, by name.
    pub fn handles(&self) -> Vec<ProjectionHandle> {
        let mut v: Vec<_> = lock(&self.workers)
            .values()
            .map(|(h, _)| h.clone())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Stops every worker after its current batch and waits for them.
    pub async fn shutdown(&self) {
        let workers: Vec<_> = lock(&self.workers).drain().collect();
        for (_, (handle, _)) in &workers {
            let _ = handle.control.send(Control::Shutdown).await;
        }
        for (_, (_, join)) in workers {
            let _ = join.await;
        }
    }
}

/// Runs `projection` from its checkpoint up to the store's head as of the call, without a
/// worker, and returns the position reached: one call to bring a read model up to date in a
/// test, a benchmark or a batch job (no runner to start, no timeout to guess).
///
/// # Errors
/// As [`project_until`].
pub async fn project_to_head<S: EventStore>(
    store: &S,
    projection: &mut dyn Projection,
    batch_size: usize,
) -> Result<Position, ProjectionError> {
    project_until(store, projection, store.head_position(), batch_size).await
}

/// Runs `projection` from its checkpoint up to `until` (inclusive) without a worker: for
/// read models *as of a position* (project into a temporary read model) and for tests.
///
/// # Errors
/// The first handler or store error (nothing is retried or parked).
pub async fn project_until<S: EventStore>(
    store: &S,
    projection: &mut dyn Projection,
    until: Position,
    batch_size: usize,
) -> Result<Position, ProjectionError> {
    let mut checkpoint = Checkpoint::position_of(projection.checkpoint().await?);
    let version = projection.version();
    while checkpoint < until {
        let limit = batch_size
            .max(1)
            .min(usize::try_from(until.0 - checkpoint.0).unwrap_or(usize::MAX));
        let events = store.read_all(checkpoint.next(), limit).await?;
        let Some(last) = events.last() else { break };
        let last = last.position;
        projection
            .apply(
                &events,
                Checkpoint {
                    position: last,
                    version,
                },
            )
            .await?;
        checkpoint = last;
    }
    Ok(checkpoint)
}
