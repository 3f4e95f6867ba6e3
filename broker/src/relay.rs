//! The relay (outbox): follows the global log from a stored checkpoint and publishes each
//! event to the broker, at least once, in order per subject, never skipping one.
//!
//! * **The checkpoint moves only past acknowledged events.** Publishes are pipelined: up to
//!   [`RelayConfig::max_in_flight`] messages wait for their acknowledgement at once (the
//!   back-pressure), and acknowledgements are taken in log order, so the checkpoint is always
//!   a position through which *every* relayed event was stored by the broker. It is saved
//!   every [`RelayConfig::checkpoint_every`] and on shutdown.
//! * **Order per subject, also across retries**: at most one message per subject (one per
//!   stream) is in flight. When a publish fails, no later message of its subject was sent,
//!   so the retry, which starts again at the first unacknowledged event, sends the subject's
//!   messages in their order. Messages of other subjects that the broker did store before the
//!   failure are sent again and dropped by its de-duplication (the message id is the event
//!   id).
//! * **Broker down or slow**: the relay retries with exponential backoff, re-checks the
//!   destination, and goes on by itself when the broker is back; the status shows the error,
//!   the attempts and the growing lag. An incompatible destination stops it
//!   ([`RelayState::Failed`]).

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::time::{Duration, Instant};

use annals_core::{EventStore, Filter, Position, RecordedEvent, Subscription};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::checkpoint::RelayCheckpoints;
use crate::cloudevents::to_message;
use crate::error::BrokerError;
use crate::seam::Publisher;
use crate::subject::{partitioned_subject_for, subject_for};

/// A relay's options.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RelayConfig {
    /// The relay's name: the key of its checkpoint.
    pub name: String,
    /// The service name in `ce-source`.
    pub source: String,
    /// The subject prefix: events go to `<prefix>.<aggregate type>.<stream id>`.
    pub prefix: String,
    /// Which events to relay (default: all).
    pub filter: Filter,
    /// The most messages waiting for their acknowledgement at once (default 256).
    pub max_in_flight: usize,
    /// How often the checkpoint is saved while events flow (default 200 ms).
    pub checkpoint_every: Duration,
    /// The first wait after a failure (default 100 ms); it doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest wait between retries (default 5 s).
    pub max_backoff: Duration,
    /// Partitions of the subject space (default 0: none): with `n > 0` events go to
    /// `<prefix>.<partition>.<aggregate type>.<stream id>` (see [`crate::subject`]).
    pub partitions: u32,
    /// The base of the `ce-dataschema` header (default none): with a base, each message
    /// names its payload's schema, `<base>/<event type>/v<schema version>.json` — the
    /// layout of committed event contracts (see `annals-contracts`).
    pub dataschema: Option<String>,
}

impl RelayConfig {
    /// A relay named `name`, publishing as `source` under subject `prefix`.
    pub fn new(
        name: impl Into<String>,
        source: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            source: source.into(),
            prefix: prefix.into(),
            filter: Filter::default(),
            max_in_flight: 256,
            checkpoint_every: Duration::from_millis(200),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            partitions: 0,
            dataschema: None,
        }
    }

    /// Names each payload's schema in `ce-dataschema`, under `base` (e.g.
    /// `https://schemas.example.com/orders` or `urn:orders`).
    pub fn dataschema(mut self, base: impl Into<String>) -> Self {
        self.dataschema = Some(base.into());
        self
    }

    /// Partitions the subjects (for inboxes that scale out; see [`crate::subject`]).
    pub fn partitions(mut self, n: u32) -> Self {
        self.partitions = n;
        self
    }

    /// Relays only the events `filter` passes.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Sets the in-flight window.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Sets how often the checkpoint is saved.
    pub fn checkpoint_every(mut self, every: Duration) -> Self {
        self.checkpoint_every = every;
        self
    }

    /// Sets the first and the longest wait between retries.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }
}

/// What a relay is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayState {
    /// Loading its checkpoint and checking the destination.
    Starting,
    /// Publishing (or waiting for events).
    Running,
    /// The broker (or the store) failed; it tries again after a backoff.
    Retrying {
        /// The last failure.
        error: String,
        /// Failed attempts in a row.
        attempt: u32,
    },
    /// Stopped for good on an error that retrying cannot fix (an incompatible destination).
    Failed {
        /// The error.
        error: String,
    },
    /// Shut down.
    Stopped,
}

/// A snapshot of a relay's progress.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RelayStatus {
    /// What it is doing.
    pub state: RelayState,
    /// Every event up to here that the filter passes is acknowledged by the broker.
    pub acked: Position,
    /// The checkpoint as last saved.
    pub checkpoint: Position,
    /// The store's head.
    pub head: Position,
    /// `head - acked`.
    pub lag: u64,
    /// Messages acknowledged since the relay started.
    pub published: u64,
    /// Failed attempts since the relay started.
    pub failures: u64,
}

/// The relay: starts one task that runs until [`RelayHandle::shutdown`].
pub struct Relay;

impl Relay {
    /// Starts relaying the events of `store` through `publisher`, from the checkpoint in
    /// `checkpoints`. Must be called inside a Tokio runtime.
    pub fn start<S, P, C>(
        store: S,
        publisher: P,
        checkpoints: C,
        config: RelayConfig,
    ) -> RelayHandle
    where
        S: EventStore,
        P: Publisher,
        C: RelayCheckpoints,
    {
        let initial = RelayStatus {
            state: RelayState::Starting,
            acked: Position::NONE,
            checkpoint: Position::NONE,
            head: store.head_position(),
            lag: 0,
            published: 0,
            failures: 0,
        };
        let (status_tx, status_rx) = watch::channel(initial);
        let (stop_tx, stop_rx) = watch::channel(false);
        let span = tracing::info_span!("relay", name = %config.name);
        let worker = Worker {
            store,
            publisher,
            checkpoints,
            config,
            status: status_tx,
            stop: stop_rx,
            acked: Position::NONE,
            saved: Position::NONE,
            published: 0,
            failures: 0,
        };
        let join = tokio::spawn(worker.run().instrument(span));
        RelayHandle {
            status: status_rx,
            stop: stop_tx,
            join,
        }
    }
}

/// The handle of a running relay.
pub struct RelayHandle {
    status: watch::Receiver<RelayStatus>,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl RelayHandle {
    /// Its progress now.
    pub fn status(&self) -> RelayStatus {
        self.status.borrow().clone()
    }

    /// Waits until every event up to `position` is acknowledged by the broker.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] after `timeout` (with the last state);
    /// [`BrokerError::Closed`] when the relay stopped first.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> Result<(), BrokerError> {
        let mut rx = self.status.clone();
        let wait = async {
            loop {
                {
                    let s = rx.borrow_and_update();
                    if s.acked >= position {
                        return Ok(());
                    }
                    if matches!(s.state, RelayState::Failed { .. } | RelayState::Stopped) {
                        return Err(BrokerError::Closed);
                    }
                }
                if rx.changed().await.is_err() {
                    return Err(BrokerError::Closed);
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => {
                let s = self.status();
                Err(BrokerError::Unavailable {
                    message: format!(
                        "relay reached {} of {position} within {timeout:?} ({:?})",
                        s.acked, s.state
                    ),
                    source: None,
                })
            }
        }
    }

    /// Stops after the messages in flight are acknowledged (or failed), saves the
    /// checkpoint and waits for the task to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.join.await;
    }
}

/// A message waiting for its acknowledgement.
struct InFlight<A> {
    position: Position,
    subject: String,
    ack: Pin<Box<A>>,
}

struct Worker<S, P: Publisher, C> {
    store: S,
    publisher: P,
    checkpoints: C,
    config: RelayConfig,
    status: watch::Sender<RelayStatus>,
    stop: watch::Receiver<bool>,
    /// Every passing event up to here is acknowledged.
    acked: Position,
    /// The checkpoint as last saved.
    saved: Position,
    published: u64,
    failures: u64,
}

/// How a session ended.
enum Ended {
    /// Shutdown requested.
    Stop,
    /// A failure: retry after a backoff.
    Failed(BrokerError),
}

impl<S: EventStore, P: Publisher, C: RelayCheckpoints> Worker<S, P, C> {
    fn publish_status(&self, state: RelayState) {
        let head = self.store.head_position();
        self.status.send_replace(RelayStatus {
            state,
            acked: self.acked,
            checkpoint: self.saved,
            head,
            lag: head.0.saturating_sub(self.acked.0),
            published: self.published,
            failures: self.failures,
        });
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn run(mut self) {
        let mut attempt = 0u32;
        let mut backoff = self.config.initial_backoff;
        let mut loaded = false;
        while !self.stopping() {
            let result = async {
                if !loaded {
                    self.acked = self.checkpoints.load(&self.config.name).await?;
                    self.saved = self.acked;
                    loaded = true;
                }
                self.publisher.prepare().await
            }
            .await;
            let ended = match result {
                Ok(()) => {
                    self.publish_status(RelayState::Running);
                    self.session(&mut attempt, &mut backoff).await
                }
                Err(e) => Ended::Failed(e),
            };
            match ended {
                Ended::Stop => break,
                Ended::Failed(e)
                    if !e.is_transient() && !matches!(e, BrokerError::Refused { .. }) =>
                {
                    tracing::error!(error = %e, "relay stopped");
                    self.publish_status(RelayState::Failed {
                        error: e.to_string(),
                    });
                    return;
                }
                Ended::Failed(e) => {
                    attempt = attempt.saturating_add(1);
                    self.failures += 1;
                    tracing::warn!(error = %e, attempt, "relay retrying");
                    self.publish_status(RelayState::Retrying {
                        error: e.to_string(),
                        attempt,
                    });
                    let mut stop = self.stop.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
        if self.acked > self.saved {
            match self.checkpoints.save(&self.config.name, self.acked).await {
                Ok(()) => self.saved = self.acked,
                Err(e) => tracing::warn!(error = %e, "cannot save the relay checkpoint"),
            }
        }
        self.publish_status(RelayState::Stopped);
    }

    /// Publishes from the checkpoint until a failure or a shutdown.
    async fn session(&mut self, attempt: &mut u32, backoff: &mut Duration) -> Ended {
        let mut sub: Subscription<S> = self
            .store
            .subscribe_filtered(self.acked.next(), self.config.filter.clone());
        let mut window: VecDeque<InFlight<P::Ack>> = VecDeque::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut held: Option<(RecordedEvent, String)> = None;
        let mut last_save = Instant::now();
        let mut stop = self.stop.clone();
        let max = self.config.max_in_flight.max(1);
        loop {
            // Send the held event unless its subject has a message in flight.
            if let Some((event, subject)) = held.take() {
                if in_flight.contains(&subject) {
                    held = Some((event, subject));
                } else {
                    let mut message = to_message(&event, &self.config.source, subject.clone());
                    if let Some(base) = &self.config.dataschema {
                        message.headers.insert(
                            crate::cloudevents::DATASCHEMA.to_owned(),
                            crate::cloudevents::dataschema_for(
                                base,
                                &event.event_type,
                                event.schema_version,
                            ),
                        );
                    }
                    match self.publisher.publish(message).await {
                        Ok(ack) => {
                            in_flight.insert(subject.clone());
                            window.push_back(InFlight {
                                position: event.position,
                                subject,
                                ack: Box::pin(ack),
                            });
                        }
                        Err(e) => return Ended::Failed(e),
                    }
                }
            }
            // Nothing unsettled: every event handed out so far is done (and those the filter
            // passed over); events read ahead but not handed out are not.
            if window.is_empty() && held.is_none() {
                self.acked = self
                    .acked
                    .max(Position(sub.resume_position().0.saturating_sub(1)));
            }
            if self.acked > self.saved && last_save.elapsed() >= self.config.checkpoint_every {
                if let Err(e) = self.checkpoints.save(&self.config.name, self.acked).await {
                    return Ended::Failed(e);
                }
                self.saved = self.acked;
                last_save = Instant::now();
                self.publish_status(RelayState::Running);
            }
            if self.stopping() {
                // Settle what is in flight, then stop.
                while let Some(f) = window.pop_front() {
                    if f.ack.await.is_err() {
                        break;
                    }
                    self.acked = f.position;
                    self.published += 1;
                }
                return Ended::Stop;
            }
            let save_in = self
                .config
                .checkpoint_every
                .saturating_sub(last_save.elapsed());
            tokio::select! {
                biased;
                _ = stop.changed() => {}
                acked = front(&mut window), if !window.is_empty() => {
                    match acked {
                        Ok(()) => {
                            if let Some(f) = window.pop_front() {
                                in_flight.remove(&f.subject);
                                self.acked = f.position;
                                self.published += 1;
                                *attempt = 0;
                                *backoff = self.config.initial_backoff;
                            }
                        }
                        Err(e) => return Ended::Failed(e),
                    }
                    if window.len() % 64 == 0 {
                        self.publish_status(RelayState::Running);
                    }
                }
                next = sub.next(), if held.is_none() && window.len() < max => {
                    match next {
                        Some(Ok(event)) => {
                            let subject = match self.config.partitions {
                                0 => subject_for(&self.config.prefix, &event.stream),
                                n => partitioned_subject_for(&self.config.prefix, n, &event.stream),
                            };
                            held = Some((event, subject));
                        }
                        Some(Err(e)) => return Ended::Failed(BrokerError::Store(e)),
                        None => return Ended::Failed(BrokerError::Store(annals_core::Error::Closed)),
                    }
                }
                _ = tokio::time::sleep(save_in), if self.acked > self.saved => {}
            }
        }
    }
}

/// The acknowledgement of the oldest message in flight.
async fn front<A: std::future::Future<Output = Result<(), BrokerError>>>(
    window: &mut VecDeque<InFlight<A>>,
) -> Result<(), BrokerError> {
    match window.front_mut() {
        Some(f) => f.ack.as_mut().await,
        None => std::future::pending().await,
    }
}
