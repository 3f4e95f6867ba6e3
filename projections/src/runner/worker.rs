//! The worker task of one projection. What it is doing is one [`Mode`] at a time, so that no
//! impossible combination (paused *and* standing by, fenced *and* rebuilding) can be written,
//! and what it publishes is a match on it.

use std::sync::Arc;
use std::time::Duration;

use annals_core::{EventStore, Position, RecordedEvent, Subscription, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use super::config::{FailurePolicy, ProjectionConfig};
use super::handle::{Control, Progress, ProgressFn, Rebuild, RebuildReply, WorkerState};
use crate::error::ProjectionError;
use crate::leader::{Leadership, Lease};
use crate::parked::{DeadLetters, Parked};
use crate::projection::{Checkpoint, Projection};

/// What a worker is doing.
enum Mode {
    /// Applying events (catching up or live).
    Running,
    /// Applying events of a rebuild from scratch.
    Rebuilding(Rebuild),
    /// Paused by `pause` (in the middle of a rebuild, when `rebuild` is set) until `resume`.
    Paused { rebuild: Option<Rebuild> },
    /// Stopped on a failure (policy `Stop`) until `resume`, which tries the event again.
    Stopped {
        reason: String,
        rebuild: Option<Rebuild>,
    },
    /// Another worker moved the checkpoint: stop applying and read it again.
    Fenced,
    /// Waiting for leadership; once it leads, the worker goes on as `then` (a pause or a
    /// stop is kept across a standby).
    Standby { then: Box<Mode> },
}

impl Mode {
    /// The rebuild under way, whatever else the worker is doing.
    fn rebuild(&self) -> Option<&Rebuild> {
        match self {
            Mode::Rebuilding(r) => Some(r),
            Mode::Paused { rebuild } | Mode::Stopped { rebuild, .. } => rebuild.as_ref(),
            Mode::Running | Mode::Fenced | Mode::Standby { .. } => None,
        }
    }

    /// Takes the rebuild under way out (the rest of the mode stays).
    fn take_rebuild(&mut self) -> Option<Rebuild> {
        match std::mem::replace(self, Mode::Running) {
            Mode::Rebuilding(r) => Some(r),
            Mode::Paused { rebuild } => {
                *self = Mode::Paused { rebuild: None };
                rebuild
            }
            Mode::Stopped { reason, rebuild } => {
                *self = Mode::Stopped {
                    reason,
                    rebuild: None,
                };
                rebuild
            }
            other => {
                *self = other;
                None
            }
        }
    }

    /// The mode after `pause`.
    fn paused(self) -> Mode {
        match self {
            Mode::Running | Mode::Fenced => Mode::Paused { rebuild: None },
            Mode::Rebuilding(r) => Mode::Paused { rebuild: Some(r) },
            Mode::Standby { then } => Mode::Standby {
                then: Box::new(then.paused()),
            },
            same @ (Mode::Paused { .. } | Mode::Stopped { .. }) => same,
        }
    }

    /// The mode after `resume`; true when it ends a stop (the failed event is tried again).
    fn resumed(self) -> (Mode, bool) {
        let go_on = |rebuild: Option<Rebuild>| rebuild.map_or(Mode::Running, Mode::Rebuilding);
        match self {
            Mode::Paused { rebuild } => (go_on(rebuild), false),
            Mode::Stopped { rebuild, .. } => (go_on(rebuild), true),
            Mode::Standby { then } => (
                Mode::Standby {
                    then: Box::new(then.resumed().0),
                },
                false,
            ),
            same @ (Mode::Running | Mode::Rebuilding(_) | Mode::Fenced) => (same, false),
        }
    }

    /// Whether the worker waits for a control message instead of applying events.
    fn halted(&self) -> bool {
        matches!(self, Mode::Paused { .. } | Mode::Stopped { .. })
    }
}

pub(super) struct Worker<S> {
    name: String,
    store: S,
    projection: Box<dyn Projection>,
    config: ProjectionConfig,
    parked: Arc<dyn DeadLetters>,
    state: watch::Sender<(Position, WorkerState)>,
    control: mpsc::Receiver<Control>,
    checkpoint: Position,
    mode: Mode,
    leadership: Option<Arc<dyn Leadership>>,
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
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        name: String,
        store: S,
        projection: Box<dyn Projection>,
        config: ProjectionConfig,
        parked: Arc<dyn DeadLetters>,
        state: watch::Sender<(Position, WorkerState)>,
        control: mpsc::Receiver<Control>,
        leadership: Option<Arc<dyn Leadership>>,
    ) -> Self {
        Self {
            name,
            store,
            projection,
            config,
            parked,
            state,
            control,
            checkpoint: Position::NONE,
            mode: Mode::Running,
            leadership,
        }
    }

    fn publish(&self) {
        let rebuilding = |(target, _, _): &Rebuild| WorkerState::Rebuilding {
            position: self.checkpoint,
            target: *target,
        };
        let state = match &self.mode {
            Mode::Standby { .. } => WorkerState::Standby,
            Mode::Stopped { reason, .. } => WorkerState::Stopped {
                reason: reason.clone(),
            },
            Mode::Rebuilding(r) | Mode::Paused { rebuild: Some(r) } => rebuilding(r),
            Mode::Paused { rebuild: None } => WorkerState::Paused,
            Mode::Running | Mode::Fenced => WorkerState::Running,
        };
        self.state.send_replace((self.visible(), state));
    }

    /// A subscription from the checkpoint on: where the worker goes on after anything that
    /// moved the checkpoint or left events undelivered.
    fn resubscribe(&self) -> Subscription<S> {
        self.store.subscribe_all(self.checkpoint.next())
    }

    /// Stops on a failure, keeping a rebuild under way for `resume`.
    fn stop(&mut self, reason: String) {
        let rebuild = self.mode.take_rebuild();
        self.mode = Mode::Stopped { reason, rebuild };
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
        Checkpoint::at(position, self.projection.version())
    }

    pub(super) async fn run(mut self) {
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
                    if let Some((_, _, reply)) = self.mode.take_rebuild() {
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
        let then = match std::mem::replace(&mut self.mode, Mode::Running) {
            Mode::Fenced => Mode::Running,
            Mode::Standby { then } => *then,
            other => other,
        };
        self.mode = Mode::Standby {
            then: Box::new(then),
        };
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
                        self.checkpoint = Checkpoint::position_of(c);
                        self.publish();
                    }
                }
            }
        };
        tracing::info!("leading the projection");
        if let Mode::Standby { then } = std::mem::replace(&mut self.mode, Mode::Running) {
            self.mode = *then;
        }
        Some(lease)
    }

    /// Controls while standing by: pause and resume are remembered; the rest needs the
    /// leading process.
    fn on_standby_control(&mut self, c: Control) {
        let not_leader = || ProjectionError::NotLeader(self.name.clone());
        match c {
            Control::Pause(reply) => {
                self.mode = std::mem::replace(&mut self.mode, Mode::Running).paused();
                let _ = reply.send(());
            }
            Control::Resume(reply) => {
                self.mode = std::mem::replace(&mut self.mode, Mode::Running).resumed().0;
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
        if matches!(self.mode, Mode::Fenced) {
            self.mode = Mode::Running;
        }
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
            Ok(c) => self.checkpoint = Checkpoint::position_of(c),
            Err(e) => self.stop(format!("cannot read checkpoint: {e}")),
        }
        self.publish();
        let mut sub = self.resubscribe();
        let commit_interval = self.projection.commit_interval();
        loop {
            if matches!(self.mode, Mode::Fenced) {
                tracing::warn!("another worker moved the checkpoint; this one stands down");
                return Led::Lost;
            }
            if self.mode.halted() {
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
                self.mode = std::mem::replace(&mut self.mode, Mode::Running).paused();
                self.publish();
                let _ = reply.send(());
            }
            Control::Resume(reply) => {
                let (mode, was_stopped) =
                    std::mem::replace(&mut self.mode, Mode::Running).resumed();
                self.mode = mode;
                if was_stopped {
                    *sub = self.resubscribe();
                }
                self.publish();
                let _ = reply.send(());
            }
            Control::Reset(position, reply) => {
                let cp = self.checkpoint_at(position);
                let r = self.projection.apply(&[], cp).await;
                if r.is_ok() {
                    self.checkpoint = position;
                    *sub = self.resubscribe();
                }
                // Publish before replying, so a `wait_for` after `reset` sees the new position.
                self.publish();
                let _ = reply.send(r);
            }
            Control::Rebuild(progress, reply) => {
                self.start_rebuild(progress, reply).await;
                *sub = self.resubscribe();
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
        if let Err(e) = self.parked.clear(&self.name).await {
            tracing::warn!(error = %e, "cannot clear parked events for the rebuild");
        }
        self.checkpoint = Position::NONE;
        let rebuild = (self.store.head_position(), progress, reply);
        // A rebuild ends a stop; a pause stays (the rebuild goes on at `resume`).
        self.mode = match std::mem::replace(&mut self.mode, Mode::Running) {
            Mode::Paused { .. } => Mode::Paused {
                rebuild: Some(rebuild),
            },
            _ => Mode::Rebuilding(rebuild),
        };
        self.check_rebuild_done().await;
    }

    async fn check_rebuild_done(&mut self) {
        let done = match self.mode.rebuild() {
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
        if done && let Some((_, _, reply)) = self.mode.take_rebuild() {
            let r = self.projection.rebuilt().await.map(|()| self.checkpoint);
            self.publish();
            let _ = reply.send(r);
        }
    }

    async fn retry_parked(&mut self, position: Position) -> Result<(), ProjectionError> {
        let Some(mut record) = self.parked.get(&self.name, position).await? else {
            return Err(ProjectionError::NotParked(position));
        };
        let events = self.store.read_all(position, 1).await?;
        let cp = self.checkpoint_at(self.checkpoint);
        match self.projection.reapply(&events, cp).await {
            Ok(()) => {
                self.parked.remove(&self.name, position).await?;
                Ok(())
            }
            Err(e) => {
                record.attempts += 1;
                record.error = e.to_string();
                record.parked_at = Timestamp::now();
                self.parked.park(&record).await?;
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
                Err(_) if matches!(self.mode, Mode::Fenced) => {}
                Err(_) if batch.len() > 1 => {
                    // Isolate the failing event: apply one at a time.
                    for e in &batch {
                        let cp = self.checkpoint_at(e.position);
                        match self.apply_with_retry(std::slice::from_ref(e), cp).await {
                            Ok(()) => self.checkpoint = e.position,
                            Err(_) if matches!(self.mode, Mode::Fenced) => break,
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
                    // Whoever waits for a rebuild hears at the stand-down that this worker
                    // no longer leads (`run`); the rebuild itself is over.
                    if let Some((_, _, reply)) = self.mode.take_rebuild() {
                        let _ = reply.send(Err(ProjectionError::NotLeader(self.name.clone())));
                    }
                    self.mode = Mode::Fenced;
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
            let record = Parked::new(self.name.clone(), event, err.to_string(), attempts);
            tracing::warn!(position = event.position.0, error = %err, "parking event");
            let cp = self.checkpoint_at(event.position);
            let parked = match self.parked.park(&record).await {
                Ok(()) => self.apply_with_retry(&[], cp).await.map_err(|(e, _)| e),
                Err(e) => Err(e),
            };
            match parked {
                Ok(()) => {
                    self.checkpoint = event.position;
                    return true;
                }
                Err(_) if matches!(self.mode, Mode::Fenced) => return false,
                Err(e) => self.stop(format!("cannot park event at {}: {e}", event.position)),
            }
        } else {
            self.stop(format!(
                "event at {} failed {attempts} times: {err}",
                event.position
            ));
        }
        tracing::error!(position = event.position.0, "projection stopped");
        // Deliver from the checkpoint again on resume.
        *sub = self.resubscribe();
        self.publish();
        false
    }
}
