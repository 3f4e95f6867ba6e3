//! The runner: one worker task per projection — catch up from the checkpoint, then live;
//! batches; retries with backoff; park or stop; pause, resume, reset, rebuild; lag;
//! read-your-writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use annals_core::{EventStore, Position, RecordedEvent, Subscription, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::error::ProjectionError;
use crate::kv::position_of;
use crate::leader::{Leadership, Lease};
use crate::parked::{Parked, ParkedStore};
use crate::projection::{Checkpoint, Projection};

/// How failing events are retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries in all (at least 1) before the failure policy applies.
    pub attempts: u32,
    /// Wait before the second try; doubles each time.
    pub initial_backoff: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What happens to an event that still fails after every retry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Park it (dead-letter record with the error) and go on with the next event.
    #[default]
    Park,
    /// Stop the projection until `resume` (which tries the event again).
    Stop,
}

/// Options of one projection's worker.
#[derive(Clone, Debug)]
pub struct ProjectionConfig {
    /// The most events in one batch (one atomic read-model commit).
    pub batch_size: usize,
    /// How long to wait for a batch to fill once its first event is there (0: take what is
    /// there).
    pub batch_wait: Duration,
    /// Retries of failing events.
    pub retry: RetryPolicy,
    /// After the retries.
    pub on_failure: FailurePolicy,
}

impl Default for ProjectionConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            batch_wait: Duration::ZERO,
            retry: RetryPolicy::default(),
            on_failure: FailurePolicy::Park,
        }
    }
}

/// What a worker is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
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
pub struct Progress {
    /// The last applied position.
    pub position: Position,
    /// Where the rebuild runs to.
    pub target: Position,
}

/// A rebuild progress callback.
pub type ProgressFn = Box<dyn Fn(Progress) + Send + Sync>;

/// Who waits for a rebuild.
type RebuildReply = oneshot::Sender<Result<Position, ProjectionError>>;

/// A rebuild under way: its target, progress callback and who to tell when done.
type Rebuild = (Position, Option<ProgressFn>, RebuildReply);

enum Control {
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
    name: String,
    control: mpsc::Sender<Control>,
    state: watch::Receiver<(Position, WorkerState)>,
    head: Arc<dyn Fn() -> Position + Send + Sync>,
    parked: ParkedStore,
}

impl ProjectionHandle {
    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checkpoint, head, lag, state and parked count now.
    pub fn status(&self) -> Status {
        let (checkpoint, state) = self.state.borrow().clone();
        let head = (self.head)();
        Status {
            name: self.name.clone(),
            checkpoint,
            head,
            lag: head.0.saturating_sub(checkpoint.0),
            state,
            parked: self.parked.count(&self.name),
        }
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
    /// sled errors reading the dead-letter list.
    pub fn parked(&self) -> Result<Vec<Parked>, ProjectionError> {
        self.parked.list(&self.name)
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
    /// [`ProjectionError::NotParked`], or sled errors.
    pub fn discard_parked(&self, position: Position) -> Result<(), ProjectionError> {
        if self.parked.remove(&self.name, position)? {
            Ok(())
        } else {
            Err(ProjectionError::NotParked(position))
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs projections over a store, one worker task each. Dropping the runner (or calling
/// [`ProjectionRunner::shutdown`]) stops the workers after their current batch; every
/// checkpoint stays consistent with its read model because each batch commits atomically.
pub struct ProjectionRunner<S> {
    store: S,
    parked: ParkedStore,
    leadership: Option<Arc<dyn Leadership>>,
    workers: Mutex<HashMap<String, (ProjectionHandle, JoinHandle<()>)>>,
}

impl<S: EventStore> ProjectionRunner<S> {
    /// A runner over `store`, keeping its dead-letter list in `db`.
    ///
    /// # Errors
    /// sled errors opening the dead-letter tree.
    pub fn new(store: S, db: &sled::Db) -> Result<Self, ProjectionError> {
        Ok(Self {
            store,
            parked: ParkedStore::open(db)?,
            leadership: None,
            workers: Mutex::new(HashMap::new()),
        })
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
            parked: self.parked.clone(),
        };
        let worker = Worker {
            name: name.clone(),
            store,
            projection,
            config,
            parked: self.parked.clone(),
            state: state_tx,
            control: control_rx,
            checkpoint: Position::NONE,
            paused: false,
            stopped: None,
            rebuild: None,
            leadership: self.leadership.clone(),
            standby: false,
            fenced: false,
        };
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

struct Worker<S> {
    name: String,
    store: S,
    projection: Box<dyn Projection>,
    config: ProjectionConfig,
    parked: ParkedStore,
    state: watch::Sender<(Position, WorkerState)>,
    control: mpsc::Receiver<Control>,
    checkpoint: Position,
    paused: bool,
    stopped: Option<String>,
    rebuild: Option<Rebuild>,
    leadership: Option<Arc<dyn Leadership>>,
    /// Waiting for leadership.
    standby: bool,
    /// Another worker moved the checkpoint: stop applying, read it again.
    fenced: bool,
}

/// How a worker's time as the projection's runner ended.
enum Led {
    /// Shut down.
    Done,
    /// Lost its lease or was fenced off: stand by (or, without leadership, start over from
    /// the stored checkpoint).
    Lost,
}

/// Completes when `lease` is lost; never without a lease.
async fn lost(lease: &mut Option<Box<dyn Lease>>) {
    match lease {
        Some(l) => l.lost().await,
        None => std::future::pending().await,
    }
}

impl<S: EventStore> Worker<S> {
    fn publish(&self) {
        let state = if self.standby {
            WorkerState::Standby
        } else if let Some(reason) = &self.stopped {
            WorkerState::Stopped {
                reason: reason.clone(),
            }
        } else if let Some((target, _, _)) = &self.rebuild {
            WorkerState::Rebuilding {
                position: self.checkpoint,
                target: *target,
            }
        } else if self.paused {
            WorkerState::Paused
        } else {
            WorkerState::Running
        };
        self.state.send_replace((self.visible(), state));
    }

    /// What readers of the read model can see: the checkpoint, or less for read models that
    /// commit on their own schedule.
    fn visible(&self) -> Position {
        self.projection
            .visible()
            .map_or(self.checkpoint, |v| v.min(self.checkpoint))
    }

    /// Commits applied-but-invisible events (read models with their own commit schedule).
    async fn commit_pending(&mut self) {
        if let Err(e) = self.projection.commit().await {
            tracing::warn!(error = %e, "read model commit failed; retrying later");
        }
        self.publish();
    }

    fn checkpoint_at(&self, position: Position) -> Checkpoint {
        Checkpoint {
            position,
            version: self.projection.version(),
        }
    }

    async fn run(mut self) {
        loop {
            let lease = match self.leadership.clone() {
                Some(l) => match self.stand_by(&*l).await {
                    Some(lease) => Some(lease),
                    None => break,
                },
                None => None,
            };
            match self.lead(lease).await {
                Led::Done => break,
                Led::Lost => {
                    if let Some((_, _, reply)) = self.rebuild.take() {
                        let _ = reply.send(Err(ProjectionError::NotLeader(self.name.clone())));
                    }
                    if self.leadership.is_none() {
                        tokio::time::sleep(self.config.retry.initial_backoff).await;
                    }
                }
            }
        }
        self.state
            .send_replace((self.checkpoint, WorkerState::ShutDown));
        tracing::debug!(checkpoint = self.checkpoint.0, "projection worker stopped");
    }

    /// Waits for leadership, following the leader's checkpoint meanwhile; `None` on shutdown.
    async fn stand_by(&mut self, leadership: &dyn Leadership) -> Option<Box<dyn Lease>> {
        self.standby = true;
        self.publish();
        let name = self.name.clone();
        let acquire = leadership.acquire(&name);
        tokio::pin!(acquire);
        let mut follow = tokio::time::interval(Duration::from_millis(500));
        let lease = loop {
            tokio::select! {
                biased;
                c = self.control.recv() => match c {
                    None | Some(Control::Shutdown) => return None,
                    Some(c) => self.on_standby_control(c),
                },
                r = &mut acquire => match r {
                    Ok(lease) => break lease,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot ask for leadership; asking again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        acquire.set(leadership.acquire(&name));
                    }
                },
                _ = follow.tick() => {
                    if let Ok(c) = self.projection.checkpoint().await {
                        self.checkpoint = position_of(c);
                        self.publish();
                    }
                }
            }
        };
        tracing::info!("leading the projection");
        self.standby = false;
        Some(lease)
    }

    /// Controls while standing by: pause and resume are remembered; the rest needs the
    /// leading process.
    fn on_standby_control(&mut self, c: Control) {
        let not_leader = || ProjectionError::NotLeader(self.name.clone());
        match c {
            Control::Pause(reply) => {
                self.paused = true;
                let _ = reply.send(());
            }
            Control::Resume(reply) => {
                self.paused = false;
                self.stopped = None;
                let _ = reply.send(());
            }
            Control::Reset(_, reply) | Control::Retry(_, reply) => {
                let _ = reply.send(Err(not_leader()));
            }
            Control::Rebuild(_, reply) => {
                let _ = reply.send(Err(not_leader()));
            }
            Control::Shutdown => {}
        }
        self.publish();
    }

    /// Runs the projection from its stored checkpoint until shutdown, or until the lease is
    /// lost or another worker moves the checkpoint.
    async fn lead(&mut self, mut lease: Option<Box<dyn Lease>>) -> Led {
        self.fenced = false;
        match self.projection.checkpoint().await {
            Ok(Some(c)) if c.version != self.projection.version() => {
                tracing::info!(
                    stored = c.version,
                    current = self.projection.version(),
                    "projection version changed; rebuilding"
                );
                let (tx, _) = oneshot::channel();
                self.start_rebuild(None, tx).await;
            }
            Ok(c) => self.checkpoint = position_of(c),
            Err(e) => self.stopped = Some(format!("cannot read checkpoint: {e}")),
        }
        self.publish();
        let mut sub = self.store.subscribe_all(self.checkpoint.next());
        let commit_interval = self.projection.commit_interval();
        loop {
            if self.fenced {
                tracing::warn!("another worker moved the checkpoint; this one stands down");
                return Led::Lost;
            }
            if self.paused || self.stopped.is_some() {
                tokio::select! {
                    biased;
                    c = self.control.recv() => match c {
                        None | Some(Control::Shutdown) => return Led::Done,
                        Some(c) => self.on_control(c, &mut sub).await,
                    },
                    () = lost(&mut lease) => return Led::Lost,
                }
                continue;
            }
            let uncommitted = self.visible() < self.checkpoint;
            let commit_wait = commit_interval.unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                biased;
                c = self.control.recv() => match c {
                    None | Some(Control::Shutdown) => return Led::Done,
                    Some(c) => self.on_control(c, &mut sub).await,
                },
                () = lost(&mut lease) => {
                    tracing::warn!("leadership lost");
                    return Led::Lost;
                }
                () = tokio::time::sleep(commit_wait), if uncommitted && commit_interval.is_some() => {
                    self.commit_pending().await;
                }
                first = sub.next_batch(self.config.batch_size) => match first {
                    None => return Led::Done,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "reading the log failed; retrying");
                        tokio::time::sleep(self.config.retry.initial_backoff).await;
                    }
                    Some(Ok(mut batch)) => {
                        self.fill(&mut sub, &mut batch).await;
                        self.process(batch, &mut sub).await;
                    }
                },
            }
        }
    }

    /// Tops `batch` up to the batch size for at most `batch_wait`.
    async fn fill(&mut self, sub: &mut Subscription<S>, batch: &mut Vec<RecordedEvent>) {
        let size = self.config.batch_size;
        if self.config.batch_wait.is_zero() {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.config.batch_wait;
        while batch.len() < size {
            match tokio::time::timeout_at(deadline, sub.next_batch(size - batch.len())).await {
                Ok(Some(Ok(more))) => batch.extend(more),
                _ => break,
            }
        }
    }

    async fn on_control(&mut self, c: Control, sub: &mut Subscription<S>) {
        match c {
            Control::Pause(reply) => {
                self.paused = true;
                self.publish();
                let _ = reply.send(());
            }
            Control::Resume(reply) => {
                self.paused = false;
                if self.stopped.take().is_some() {
                    *sub = self.store.subscribe_all(self.checkpoint.next());
                }
                self.publish();
                let _ = reply.send(());
            }
            Control::Reset(position, reply) => {
                let cp = self.checkpoint_at(position);
                let r = self.projection.apply(&[], cp).await;
                if r.is_ok() {
                    self.checkpoint = position;
                    *sub = self.store.subscribe_all(position.next());
                }
                // Publish before replying, so a `wait_for` after `reset` sees the new position.
                self.publish();
                let _ = reply.send(r);
            }
            Control::Rebuild(progress, reply) => {
                self.start_rebuild(progress, reply).await;
                *sub = self.store.subscribe_all(self.checkpoint.next());
            }
            Control::Retry(position, reply) => {
                let r = self.retry_parked(position).await;
                let _ = reply.send(r);
            }
            Control::Shutdown => {}
        }
        self.publish();
    }

    async fn start_rebuild(&mut self, progress: Option<ProgressFn>, reply: RebuildReply) {
        if let Err(e) = self.projection.clear().await {
            let _ = reply.send(Err(e));
            return;
        }
        if let Err(e) = self.parked.clear(&self.name) {
            tracing::warn!(error = %e, "cannot clear parked events for the rebuild");
        }
        self.checkpoint = Position::NONE;
        self.stopped = None;
        let target = self.store.head_position();
        self.rebuild = Some((target, progress, reply));
        self.check_rebuild_done().await;
    }

    async fn check_rebuild_done(&mut self) {
        let done = match &self.rebuild {
            Some((target, progress, _)) => {
                if let Some(p) = progress {
                    p(Progress {
                        position: self.checkpoint,
                        target: *target,
                    });
                }
                self.checkpoint >= *target
            }
            None => false,
        };
        if done && let Some((_, _, reply)) = self.rebuild.take() {
            let r = self.projection.rebuilt().await.map(|()| self.checkpoint);
            self.publish();
            let _ = reply.send(r);
        }
    }

    async fn retry_parked(&mut self, position: Position) -> Result<(), ProjectionError> {
        let Some(mut record) = self.parked.get(&self.name, position)? else {
            return Err(ProjectionError::NotParked(position));
        };
        let events = self.store.read_all(position, 1).await?;
        let cp = self.checkpoint_at(self.checkpoint);
        match self.projection.apply(&events, cp).await {
            Ok(()) => {
                self.parked.remove(&self.name, position)?;
                Ok(())
            }
            Err(e) => {
                record.attempts += 1;
                record.error = e.to_string();
                record.parked_at = Timestamp::now();
                self.parked.put(&record)?;
                Err(e)
            }
        }
    }

    async fn process(&mut self, batch: Vec<RecordedEvent>, sub: &mut Subscription<S>) {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return;
        };
        let span = tracing::debug_span!("projection_batch", projection = %self.name, events = batch.len(), from = first.position.0, to = last.position.0);
        async {
            let cp = self.checkpoint_at(last.position);
            match self.apply_with_retry(&batch, cp).await {
                Ok(()) => self.checkpoint = last.position,
                Err(_) if self.fenced => {}
                Err(_) if batch.len() > 1 => {
                    // Isolate the failing event: apply one at a time.
                    for e in &batch {
                        let cp = self.checkpoint_at(e.position);
                        match self.apply_with_retry(std::slice::from_ref(e), cp).await {
                            Ok(()) => self.checkpoint = e.position,
                            Err(_) if self.fenced => break,
                            Err((err, attempts)) => {
                                if !self.on_poison(e, err, attempts, sub).await {
                                    break;
                                }
                            }
                        }
                        self.publish();
                    }
                }
                Err((err, attempts)) => {
                    self.on_poison(first, err, attempts, sub).await;
                }
            }
        }
        .instrument(span)
        .await;
        self.publish();
        self.check_rebuild_done().await;
    }

    async fn apply_with_retry(
        &mut self,
        events: &[RecordedEvent],
        cp: Checkpoint,
    ) -> Result<(), (ProjectionError, u32)> {
        let retry = &self.config.retry;
        let mut backoff = retry.initial_backoff;
        let mut attempt = 1;
        loop {
            match self.projection.apply(events, cp).await {
                Ok(()) => return Ok(()),
                // Not retried: another worker owns the read model now.
                Err(e @ ProjectionError::Fenced { .. }) => {
                    self.fenced = true;
                    return Err((e, attempt));
                }
                Err(e) if attempt < retry.attempts.max(1) => {
                    tracing::debug!(error = %e, attempt, "projection batch failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(retry.max_backoff);
                    attempt += 1;
                }
                Err(e) => return Err((e, attempt)),
            }
        }
    }

    /// Parks `event` and moves on (true), or stops (false).
    async fn on_poison(
        &mut self,
        event: &RecordedEvent,
        err: ProjectionError,
        attempts: u32,
        sub: &mut Subscription<S>,
    ) -> bool {
        if self.config.on_failure == FailurePolicy::Park {
            let record = Parked {
                projection: self.name.clone(),
                position: event.position,
                stream: event.stream.to_string(),
                event_type: event.event_type.clone(),
                error: err.to_string(),
                attempts,
                parked_at: Timestamp::now(),
            };
            tracing::warn!(position = event.position.0, error = %err, "parking event");
            let cp = self.checkpoint_at(event.position);
            let parked = match self.parked.put(&record) {
                Ok(()) => self.apply_with_retry(&[], cp).await.map_err(|(e, _)| e),
                Err(e) => Err(e),
            };
            match parked {
                Ok(()) => {
                    self.checkpoint = event.position;
                    return true;
                }
                Err(_) if self.fenced => return false,
                Err(e) => {
                    self.stopped = Some(format!("cannot park event at {}: {e}", event.position));
                }
            }
        } else {
            self.stopped = Some(format!(
                "event at {} failed {attempts} times: {err}",
                event.position
            ));
        }
        tracing::error!(position = event.position.0, "projection stopped");
        // Deliver from the checkpoint again on resume.
        *sub = self.store.subscribe_all(self.checkpoint.next());
        self.publish();
        false
    }
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
    let mut checkpoint = position_of(projection.checkpoint().await?);
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
