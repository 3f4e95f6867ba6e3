//! What callers hold: the handle of one running projection, its status and its controls.

use std::sync::Arc;
use std::time::Duration;

use annals_core::Position;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::ProjectionError;
use crate::parked::{DeadLetters, Parked};

/// What a worker is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerState {
    /// Applying events (catching up or live).
    Running,
    /// Waiting for leadership: another process runs this projection (the checkpoint shown
    /// is the leader's, refreshed every half second).
    Standby,
    /// Paused by `pause`.
    Paused,
    /// Rebuilding from scratch; `target` is the head when the rebuild started.
    Rebuilding {
        /// The last applied position.
        position: Position,
        /// The position the rebuild runs to before it counts as done.
        target: Position,
    },
    /// Stopped on a failure (policy `Stop`) until `resume`.
    Stopped {
        /// The failure.
        reason: String,
    },
    /// The worker has exited.
    ShutDown,
}

/// A snapshot of one projection's progress.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Status {
    /// The projection's name.
    pub name: String,
    /// The last position applied (or parked).
    pub checkpoint: Position,
    /// The store's head position.
    pub head: Position,
    /// `head - checkpoint`.
    pub lag: u64,
    /// What the worker is doing.
    pub state: WorkerState,
    /// How many events it has parked.
    pub parked: usize,
}

/// Progress of a rebuild, given to its callback after every batch.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Progress {
    /// The last applied position.
    pub position: Position,
    /// Where the rebuild runs to.
    pub target: Position,
}

/// A rebuild progress callback.
pub type ProgressFn = Box<dyn Fn(Progress) + Send + Sync>;

/// Who waits for a rebuild.
pub(super) type RebuildReply = oneshot::Sender<Result<Position, ProjectionError>>;

/// A rebuild under way: its target, progress callback and who to tell when done.
pub(super) type Rebuild = (Position, Option<ProgressFn>, RebuildReply);

pub(super) enum Control {
    Pause(oneshot::Sender<()>),
    Resume(oneshot::Sender<()>),
    Reset(Position, oneshot::Sender<Result<(), ProjectionError>>),
    Rebuild(Option<ProgressFn>, RebuildReply),
    Retry(Position, oneshot::Sender<Result<(), ProjectionError>>),
    Shutdown,
}

/// A handle on one running projection. Cheap to clone.
#[derive(Clone)]
pub struct ProjectionHandle {
    pub(super) name: String,
    pub(super) control: mpsc::Sender<Control>,
    pub(super) state: watch::Receiver<(Position, WorkerState)>,
    pub(super) head: Arc<dyn Fn() -> Position + Send + Sync>,
    pub(super) parked: Arc<dyn DeadLetters>,
}

impl ProjectionHandle {
    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checkpoint, head, lag, state and parked count now.
    ///
    /// # Errors
    /// The dead-letter list's error counting parked events.
    pub async fn status(&self) -> Result<Status, ProjectionError> {
        let (checkpoint, state) = self.state.borrow().clone();
        let head = (self.head)();
        Ok(Status {
            name: self.name.clone(),
            checkpoint,
            head,
            lag: head.0.saturating_sub(checkpoint.0),
            state,
            parked: self.parked.count(&self.name).await?,
        })
    }

    /// What the worker is doing now.
    pub fn state(&self) -> WorkerState {
        self.state.borrow().1.clone()
    }

    /// The last position applied (or parked).
    pub fn checkpoint(&self) -> Position {
        self.state.borrow().0
    }

    /// Head position minus checkpoint.
    pub fn lag(&self) -> u64 {
        (self.head)().0.saturating_sub(self.checkpoint().0)
    }

    /// Waits until the projection has applied `position` (read-your-writes: pass the
    /// `last_position` of an append).
    ///
    /// # Errors
    /// [`ProjectionError::Timeout`] after `timeout`; [`ProjectionError::Stopped`] if the
    /// projection stops on a failure first; [`ProjectionError::Closed`] if it shuts down.
    /// The position counts as reached when its event was parked, too: use
    /// [`Self::wait_for_applied`] to be told.
    pub async fn wait_for(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Result<(), ProjectionError> {
        let mut rx = self.state.clone();
        let wait = async {
            loop {
                {
                    let (checkpoint, state) = &*rx.borrow_and_update();
                    if *checkpoint >= position {
                        return Ok(());
                    }
                    if let WorkerState::Stopped { reason } = state {
                        return Err(ProjectionError::Stopped {
                            projection: self.name.clone(),
                            reason: reason.clone(),
                        });
                    }
                }
                if rx.changed().await.is_err() {
                    return Err(ProjectionError::Closed);
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(ProjectionError::Timeout {
                projection: self.name.clone(),
                position,
                reached: self.checkpoint(),
                waited: timeout,
            }),
        }
    }

    /// [`Self::wait_for`], and then an error if the event at `position` was parked (its
    /// effect is not in the read model) rather than applied.
    ///
    /// # Errors
    /// As [`Self::wait_for`], and [`ProjectionError::Parked`] with the error it was parked
    /// with.
    pub async fn wait_for_applied(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Result<(), ProjectionError> {
        self.wait_for(position, timeout).await?;
        match self.parked.get(&self.name, position).await? {
            Some(p) => Err(ProjectionError::Parked {
                projection: self.name.clone(),
                position,
                error: p.error,
            }),
            None => Ok(()),
        }
    }

    async fn send(&self, c: Control) -> Result<(), ProjectionError> {
        self.control
            .send(c)
            .await
            .map_err(|_| ProjectionError::Closed)
    }

    /// Stops applying events (after the current batch) until `resume`; returns once paused.
    ///
    /// # Errors
    /// [`ProjectionError::Closed`] if the worker has shut down.
    pub async fn pause(&self) -> Result<(), ProjectionError> {
        let (tx, rx) = oneshot::channel();
        self.send(Control::Pause(tx)).await?;
        rx.await.map_err(|_| ProjectionError::Closed)
    }

    /// Resumes after `pause`, or retries the failed event after a `Stop`.
    ///
    /// # Errors
    /// [`ProjectionError::Closed`] if the worker has shut down.
    pub async fn resume(&self) -> Result<(), ProjectionError> {
        let (tx, rx) = oneshot::channel();
        self.send(Control::Resume(tx)).await?;
        rx.await.map_err(|_| ProjectionError::Closed)
    }

    /// Moves the checkpoint to `position` without touching the read model: later events are
    /// applied from `position + 1` on. Use it to skip a range, or to re-apply one when the
    /// handler is idempotent; use `rebuild` to start from scratch.
    ///
    /// # Errors
    /// The read model's error storing the checkpoint, or `Closed`.
    pub async fn reset(&self, position: Position) -> Result<(), ProjectionError> {
        let (tx, rx) = oneshot::channel();
        self.send(Control::Reset(position, tx)).await?;
        rx.await.map_err(|_| ProjectionError::Closed)?
    }

    /// Clears the read model and replays the log from the start; returns once it has caught
    /// up with the head as of the call (events appended meanwhile follow live). `progress`
    /// is called after every batch.
    ///
    /// # Errors
    /// The read model's error clearing it, or `Closed`.
    pub async fn rebuild(&self, progress: Option<ProgressFn>) -> Result<Position, ProjectionError> {
        let (tx, rx) = oneshot::channel();
        self.send(Control::Rebuild(progress, tx)).await?;
        rx.await.map_err(|_| ProjectionError::Closed)?
    }

    /// The parked events.
    ///
    /// # Errors
    /// The dead-letter list's errors.
    pub async fn parked(&self) -> Result<Vec<Parked>, ProjectionError> {
        self.parked.list(&self.name).await
    }

    /// Applies the parked event at `position` again (after a fix); on success it leaves the
    /// dead-letter list.
    ///
    /// # Errors
    /// [`ProjectionError::NotParked`], or the handler's error (the record stays, its
    /// attempts counted).
    pub async fn retry_parked(&self, position: Position) -> Result<(), ProjectionError> {
        let (tx, rx) = oneshot::channel();
        self.send(Control::Retry(position, tx)).await?;
        rx.await.map_err(|_| ProjectionError::Closed)?
    }

    /// Drops the parked event at `position` from the list.
    ///
    /// # Errors
    /// [`ProjectionError::NotParked`], or the dead-letter list's errors.
    pub async fn discard_parked(&self, position: Position) -> Result<(), ProjectionError> {
        if self.parked.remove(&self.name, position).await? {
            Ok(())
        } else {
            Err(ProjectionError::NotParked(position))
        }
    }
}
