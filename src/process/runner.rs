//! The [`ProcessRunner`]: follows the global log from its checkpoint, routes each event to
//! its process, hands it to one of its workers (a process's events always to the same one, in
//! log order), fires deadlines by its clock, and saves its checkpoint.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use annals_core::{
    DomainEvent, Error, EventStore, Position, RecordedEvent, SnapshotStore, Subscription, Timestamp,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::deadlines::{Checkpoint, DeadlineKey, Deadlines, checkpoint_stream};
use super::reactor::{Reacted, Reactor};
use super::record::names;
use super::remote::{REMOTE_REJECTION, read_rejection};
use super::{
    Clock, CommandIssued, Dispatch, Process, ProcessRecord, ProcessState, Routed, SystemClock,
};
use crate::Repository;

/// What went wrong running processes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The store failed in a way retrying does not mend (closed, poisoned).
    #[error("process runner stopped: {0}")]
    Store(#[source] Error),
    /// The runner's task ended unexpectedly.
    #[error("process runner task ended: {reason}")]
    Stopped {
        /// Why.
        reason: String,
    },
}

/// How a [`ProcessRunner`] runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProcessConfig {
    /// Workers reacting in parallel (a process is always on the same one). Default 16.
    pub workers: usize,
    /// The most routed events handed to workers and not yet handled. Default 4,096.
    pub max_in_flight: usize,
    /// How often the checkpoint is saved when it moved. Default 200 ms.
    pub checkpoint_every: Duration,
    /// The most rounds in one reaction (a trigger, then the rejections of the commands it
    /// sent, ...): past it the process fails. Default 16.
    pub max_rounds: usize,
    /// The longest wait between retries of a reaction that failed on the store. Default 2 s.
    pub max_backoff: Duration,
    /// How many aggregates' states the process repository caches. Default 10,000.
    pub cache_capacity: usize,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        Self {
            workers: 16,
            max_in_flight: 4096,
            checkpoint_every: Duration::from_millis(200),
            max_rounds: 16,
            max_backoff: Duration::from_secs(2),
            cache_capacity: 10_000,
        }
    }
}

impl ProcessConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`Self::workers`] (at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Sets [`Self::max_in_flight`] (at least 1).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Sets [`Self::checkpoint_every`].
    pub fn checkpoint_every(mut self, d: Duration) -> Self {
        self.checkpoint_every = d;
        self
    }

    /// Sets [`Self::max_rounds`] (at least 1).
    pub fn max_rounds(mut self, n: usize) -> Self {
        self.max_rounds = n.max(1);
        self
    }

    /// Sets [`Self::max_backoff`].
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// Sets [`Self::cache_capacity`].
    pub fn cache_capacity(mut self, n: usize) -> Self {
        self.cache_capacity = n;
        self
    }
}

/// Where a runner is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessStatus {
    /// Every event up to this position is handled.
    pub handled: Position,
    /// Deadlines pending.
    pub deadlines: usize,
    /// Deadlines due and being fired.
    pub firing: usize,
    /// The earliest pending deadline not being fired.
    pub next_due: Option<Timestamp>,
    /// Events skipped since the start because no reaction to them can be made (a key that
    /// makes no stream id, an undecodable record; each is logged): they stay in the store.
    pub skipped: u64,
    /// The runner has stopped.
    pub stopped: bool,
}

/// Runs processes of type `P` on store `S`, carrying out their commands with `D`.
///
/// ```no_run
/// # use annals::process::*;
/// # async fn f<P: Process, D: Dispatch<P>>(dispatch: D) -> Result<(), Box<dyn std::error::Error>> {
/// let store = annals::store::MemStore::new();
/// let handle = ProcessRunner::<P, _, _>::new(store, dispatch)
///     .config(ProcessConfig::new().workers(8))
///     .start()
///     .await?;
/// // ... append events; processes react ...
/// handle.stop().await?;
/// # Ok(()) }
/// ```
pub struct ProcessRunner<P, S, D> {
    store: S,
    dispatch: Arc<D>,
    clock: Arc<dyn Clock>,
    config: ProcessConfig,
    _process: PhantomData<fn() -> P>,
}

impl<P, S, D> ProcessRunner<P, S, D>
where
    P: Process,
    S: EventStore + SnapshotStore,
    D: Dispatch<P>,
{
    /// A runner over `store` dispatching with `dispatch`, on the system clock.
    pub fn new(store: S, dispatch: D) -> Self {
        Self {
            store,
            dispatch: Arc::new(dispatch),
            clock: Arc::new(SystemClock),
            config: ProcessConfig::default(),
            _process: PhantomData,
        }
    }

    /// Uses `clock` for deadlines (a [`ManualClock`](super::ManualClock) in tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sets the configuration.
    pub fn config(mut self, config: ProcessConfig) -> Self {
        self.config = config;
        self
    }

    /// Loads the checkpoint and starts following the log.
    ///
    /// # Errors
    /// The store's error reading the checkpoint.
    pub async fn start(self) -> Result<ProcessHandle<P, S>, ProcessError> {
        let slot = checkpoint_stream(P::TYPE).map_err(ProcessError::Store)?;
        let saved = self
            .store
            .load_snapshot(&slot)
            .await
            .map_err(ProcessError::Store)?;
        let (checkpoint, table) = Checkpoint::from_snapshot(saved);
        let handled = Position(checkpoint.position);
        let processes = Repository::<ProcessState<P>, S>::new(self.store.clone())
            .cache_capacity(self.config.cache_capacity);
        let reactor = Arc::new(Reactor {
            store: self.store.clone(),
            processes: processes.clone(),
            dispatch: self.dispatch,
            clock: Arc::clone(&self.clock),
            max_rounds: self.config.max_rounds,
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        // What `idle` sees before the loop first runs: the deadlines are known already.
        let (status_tx, status_rx) = watch::channel(ProcessStatus {
            handled,
            deadlines: table.len(),
            next_due: table.next_due(),
            ..ProcessStatus::default()
        });
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let mut workers = Vec::with_capacity(self.config.workers);
        let mut jobs = Vec::with_capacity(self.config.workers);
        for _ in 0..self.config.workers {
            let (tx, rx) = mpsc::unbounded_channel();
            jobs.push(tx);
            workers.push(tokio::spawn(work(
                Arc::clone(&reactor),
                rx,
                done_tx.clone(),
                stop_rx.clone(),
                self.config.max_backoff,
            )));
        }
        let follow = Follow {
            store: self.store.clone(),
            slot,
            clock: Arc::clone(&self.clock),
            config: self.config,
            table,
            in_flight: BTreeSet::new(),
            read: handled,
            saved: handled,
            table_changed: false,
            skipped: 0,
            jobs,
            workers,
            done: done_rx,
            status: status_tx,
            _process: PhantomData::<fn() -> P>,
        };
        let sub = self.store.subscribe_all(handled.next());
        let task = tokio::spawn(follow.run(sub, stop_rx));
        Ok(ProcessHandle {
            store: self.store,
            processes,
            clock: self.clock,
            status: status_rx,
            stop: stop_tx,
            task: Some(task),
        })
    }
}

/// A running [`ProcessRunner`]. Dropping it stops the runner without waiting.
pub struct ProcessHandle<P: Process, S> {
    store: S,
    processes: Repository<ProcessState<P>, S>,
    clock: Arc<dyn Clock>,
    status: watch::Receiver<ProcessStatus>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), ProcessError>>>,
}

impl<P: Process, S> Drop for ProcessHandle<P, S> {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

impl<P, S> ProcessHandle<P, S>
where
    P: Process,
    S: EventStore + SnapshotStore,
{
    /// The processes' repository: `load`, `load_at`, `history` of a process by key.
    pub fn processes(&self) -> &Repository<ProcessState<P>, S> {
        &self.processes
    }

    /// Where the runner is.
    pub fn status(&self) -> ProcessStatus {
        *self.status.borrow()
    }

    /// Waits until every event up to `position` is handled.
    ///
    /// # Errors
    /// [`ProcessError::Stopped`] when the runner stopped first.
    pub async fn caught_up(&self, position: Position) -> Result<(), ProcessError> {
        let mut rx = self.status.clone();
        let st = rx
            .wait_for(|s| s.handled >= position || s.stopped)
            .await
            .map_err(|_| stopped("the runner is gone"))?;
        if st.handled >= position {
            Ok(())
        } else {
            Err(stopped("the runner stopped before catching up"))
        }
    }

    /// Waits until the runner has nothing left to do: every event in the store handled, and
    /// no deadline due by its clock (later deadlines may be pending).
    ///
    /// # Errors
    /// [`ProcessError::Stopped`] when the runner stopped first.
    pub async fn idle(&self) -> Result<(), ProcessError> {
        loop {
            let head = self.store.head_position();
            let clock = Arc::clone(&self.clock);
            let mut rx = self.status.clone();
            let st = rx
                .wait_for(|s| {
                    s.stopped
                        || (s.handled >= head
                            && s.firing == 0
                            && s.next_due.is_none_or(|t| t > clock.now()))
                })
                .await
                .map_err(|_| stopped("the runner is gone"))?;
            if st.stopped {
                return Err(stopped("the runner stopped"));
            }
            if self.store.head_position() == head {
                return Ok(());
            }
        }
    }

    /// Stops the runner: workers finish the reaction they are in, and the checkpoint is
    /// saved.
    ///
    /// # Errors
    /// The error that stopped the runner before, if one did.
    pub async fn stop(mut self) -> Result<(), ProcessError> {
        self.stop.send_replace(true);
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| stopped(&format!("runner task: {e}")))?,
            None => Ok(()),
        }
    }
}

fn stopped(reason: &str) -> ProcessError {
    ProcessError::Stopped {
        reason: reason.to_owned(),
    }
}

/// Work for a worker.
enum Job<P: Process> {
    Event {
        event: RecordedEvent,
        routed: Routed<P::Input>,
    },
    Deadline {
        key: DeadlineKey,
        due: Timestamp,
    },
    Rejected {
        event: RecordedEvent,
        key: String,
        issued: CommandIssued<P::Command>,
        reason: String,
    },
}

/// What a worker reports.
enum Done {
    Event(Position),
    /// Handled by skipping it: a permanent error.
    Skipped(Position),
    Deadline {
        key: DeadlineKey,
        due: Timestamp,
        fired: bool,
    },
    /// The store refuses work for good.
    Failed(Error),
}

/// Errors no retry mends, of the store: the runner stops.
fn fatal(e: &Error) -> bool {
    matches!(e, Error::Closed | Error::Poisoned { .. })
}

/// Errors no retry mends, of one trigger: a key that makes no stream id, a record that does
/// not decode, an event the store refuses. The trigger is skipped (and logged); what it
/// came from stays in the store.
fn permanent(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidStreamId { .. }
            | Error::InvalidEvent { .. }
            | Error::Codec { .. }
            | Error::DuplicateEventId { .. }
    )
}

/// A worker: reacts to its jobs in order, retrying each until it lands (or the runner stops).
async fn work<P, S, D>(
    reactor: Arc<Reactor<P, S, D>>,
    mut jobs: mpsc::UnboundedReceiver<Job<P>>,
    done: mpsc::UnboundedSender<Done>,
    stop: watch::Receiver<bool>,
    max_backoff: Duration,
) where
    P: Process,
    S: EventStore + SnapshotStore,
    D: Dispatch<P>,
{
    while let Some(job) = jobs.recv().await {
        let mut backoff = Duration::from_millis(5);
        let mut conflicts = 0;
        loop {
            let result = match &job {
                Job::Event { event, routed } => reactor.on_event(event, routed).await,
                Job::Deadline { key, due } => reactor.on_deadline(&key.0, &key.1, *due).await,
                Job::Rejected {
                    event,
                    key,
                    issued,
                    reason,
                } => reactor.on_rejected(event, key, issued, reason).await,
            };
            let report = match (result, &job) {
                (Ok(_), Job::Event { event, .. } | Job::Rejected { event, .. }) => {
                    Done::Event(event.position)
                }
                (Ok(r), Job::Deadline { key, due }) => Done::Deadline {
                    key: key.clone(),
                    due: *due,
                    fired: r == Reacted::Landed,
                },
                (Err(e), _) if fatal(&e) => {
                    let _ = done.send(Done::Failed(e));
                    return;
                }
                (Err(e), job) if permanent(&e) => {
                    let position = match job {
                        Job::Event { event, .. } | Job::Rejected { event, .. } => {
                            Some(event.position)
                        }
                        Job::Deadline { .. } => None,
                    };
                    tracing::error!(
                        ?position,
                        error = %e,
                        "process reaction cannot be made; skipped"
                    );
                    match job {
                        Job::Deadline { key, due } => Done::Deadline {
                            key: key.clone(),
                            due: *due,
                            fired: false,
                        },
                        Job::Event { event, .. } | Job::Rejected { event, .. } => {
                            Done::Skipped(event.position)
                        }
                    }
                }
                (Err(Error::Conflict { .. }), _) if conflicts < 10 => {
                    // Another writer moved a stream the reaction read: decide again at once.
                    conflicts += 1;
                    continue;
                }
                (Err(e), _) => {
                    tracing::warn!(error = %e, ?backoff, "process reaction failed; retrying");
                    if *stop.borrow() {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(max_backoff);
                    continue;
                }
            };
            let _ = done.send(report);
            break;
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// The runner's loop: reads the log, routes, fires deadlines, tracks what is handled.
struct Follow<P: Process, S> {
    store: S,
    slot: annals_core::StreamId,
    clock: Arc<dyn Clock>,
    config: ProcessConfig,
    table: Deadlines,
    /// Positions handed to workers and not yet handled.
    in_flight: BTreeSet<u64>,
    /// The last position read.
    read: Position,
    /// The position of the checkpoint last saved.
    saved: Position,
    table_changed: bool,
    /// Triggers skipped for a permanent error since the start.
    skipped: u64,
    jobs: Vec<mpsc::UnboundedSender<Job<P>>>,
    workers: Vec<JoinHandle<()>>,
    done: mpsc::UnboundedReceiver<Done>,
    status: watch::Sender<ProcessStatus>,
    _process: PhantomData<fn() -> P>,
}

impl<P, S> Follow<P, S>
where
    P: Process,
    S: EventStore + SnapshotStore,
{
    async fn run(
        mut self,
        mut sub: Subscription<S>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), ProcessError> {
        let mut tick = tokio::time::interval(self.config.checkpoint_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            self.publish(false);
            let room = self.in_flight.len() < self.config.max_in_flight;
            let next_due = self.table.next_due();
            let sleep = next_due.map(|t| self.clock.sleep_until(t));
            tokio::select! {
                biased;
                _ = stop.changed() => break Ok(()),
                Some(done) = self.done.recv() => {
                    if let Err(e) = self.on_done(done) {
                        break Err(e);
                    }
                }
                () = async { if let Some(s) = sleep { s.await } }, if next_due.is_some() => {
                    self.fire_due();
                }
                next = sub.next(), if room => match next {
                    Some(Ok(event)) => self.on_event(event),
                    Some(Err(e)) if fatal(&e) => break Err(ProcessError::Store(e)),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "process runner cannot read the log; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        sub = self.store.subscribe_all(self.read.next());
                    }
                    None => break Ok(()),
                },
                _ = tick.tick() => self.save().await,
            }
        };
        // Workers finish the reaction they are in; what they report counts.
        self.jobs.clear();
        for w in std::mem::take(&mut self.workers) {
            let _ = w.await;
        }
        while let Ok(done) = self.done.try_recv() {
            let _ = self.on_done(done);
        }
        self.save().await;
        self.publish(true);
        result
    }

    fn handled(&self) -> Position {
        match self.in_flight.first() {
            Some(first) => Position(first - 1),
            None => self.read,
        }
    }

    fn publish(&self, stopped: bool) {
        let st = ProcessStatus {
            handled: self.handled(),
            deadlines: self.table.len(),
            firing: self.table.firing(),
            next_due: self.table.next_due(),
            skipped: self.skipped,
            stopped,
        };
        self.status.send_if_modified(|old| {
            let changed = *old != st;
            *old = st;
            changed
        });
    }

    fn on_done(&mut self, done: Done) -> Result<(), ProcessError> {
        match done {
            Done::Event(p) => {
                self.in_flight.remove(&p.0);
            }
            Done::Skipped(p) => {
                self.in_flight.remove(&p.0);
                self.skipped += 1;
            }
            Done::Deadline { key, due, fired } => {
                self.table.fired(&key, due, fired);
                self.table_changed = true;
            }
            Done::Failed(e) => return Err(ProcessError::Store(e)),
        }
        Ok(())
    }

    fn worker_of(&self, key: &str) -> usize {
        // FNV-1a: stable across runs and builds.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % self.jobs.len().max(1) as u64) as usize
    }

    fn on_event(&mut self, event: RecordedEvent) {
        self.read = event.position;
        if let Some(key) = event.stream.aggregate_id(P::TYPE) {
            let key = key.to_owned();
            self.on_own_record(key, &event);
            return;
        }
        if event.event_type == REMOTE_REJECTION {
            self.on_rejection(event);
            return;
        }
        let routed = match P::route(&event) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(
                    position = %event.position,
                    stream = %event.stream,
                    event_type = %event.event_type,
                    error = %e,
                    "process cannot route an event; skipped (it stays in the store)"
                );
                self.skipped += 1;
                return;
            }
        };
        let w = self.worker_of(&routed.key);
        let position = event.position.0;
        if let Some(tx) = self.jobs.get(w)
            && tx.send(Job::Event { event, routed }).is_ok()
        {
            self.in_flight.insert(position);
        }
    }

    /// A rejection from another service of a command one of the processes sent.
    fn on_rejection(&mut self, event: RecordedEvent) {
        let (stream, issued, reason) =
            match read_rejection::<P::Command>(&event.payload, event.codec) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(position = %event.position, error = %e, "unreadable rejection");
                    self.skipped += 1;
                    return;
                }
            };
        let Some(key) = stream.aggregate_id(P::TYPE) else {
            return; // another process type's
        };
        let key = key.to_owned();
        let w = self.worker_of(&key);
        let position = event.position.0;
        let job = Job::Rejected {
            event,
            key,
            issued,
            reason,
        };
        if let Some(tx) = self.jobs.get(w)
            && tx.send(job).is_ok()
        {
            self.in_flight.insert(position);
        }
    }

    /// A record of one of the processes' own streams: the deadline table follows it.
    fn on_own_record(&mut self, key: String, event: &RecordedEvent) {
        let t = event.event_type.as_str();
        if ![
            names::DEADLINE_SET,
            names::DEADLINE_CANCELLED,
            names::DEADLINE_FIRED,
        ]
        .contains(&t)
        {
            return;
        }
        match ProcessRecord::<P>::decode_payload(t, event.codec, &event.payload) {
            Ok(ProcessRecord::DeadlineSet { name, due }) => self.table.set((key, name), due),
            Ok(
                ProcessRecord::DeadlineCancelled { name } | ProcessRecord::DeadlineFired { name },
            ) => {
                self.table.remove(&(key, name));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(position = %event.position, error = %e, "unreadable deadline record");
            }
        }
        self.table_changed = true;
    }

    fn fire_due(&mut self) {
        for (key, due) in self.table.take_due(self.clock.now()) {
            let w = self.worker_of(&key.0);
            if let Some(tx) = self.jobs.get(w) {
                let _ = tx.send(Job::Deadline { key, due });
            }
        }
    }

    async fn save(&mut self) {
        let handled = self.handled();
        if handled == self.saved && !self.table_changed {
            return;
        }
        let snapshot = match Checkpoint::of(handled, &self.table).to_snapshot() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode the process checkpoint");
                return;
            }
        };
        match self.store.save_snapshot(&self.slot, snapshot).await {
            Ok(()) => {
                self.saved = handled;
                self.table_changed = false;
            }
            Err(e) => tracing::warn!(error = %e, "cannot save the process checkpoint"),
        }
    }
}
