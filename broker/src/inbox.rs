//! The inbox (idempotent consumer): hands each message of a durable consumer to a handler,
//! in order per subject, and settles it only after the handler's effect is durable.
//!
//! * **Idempotent by design**: the handler typically executes a command on a local
//!   `Repository` with a command id derived from the message id
//!   ([`command_id_for`]), so a redelivered message returns the first result and appends
//!   nothing. The message is acknowledged only after the handler returned.
//! * **Order per subject**: messages of one subject (one publishing stream) are handled one at
//!   a time, in the order the broker delivered them; different subjects run concurrently
//!   (at most [`InboxConfig::max_pending`] messages unsettled).
//! * **Retries**: a transient failure ([`HandleError::Retry`]) is retried with exponential
//!   backoff *in place* by default — the broker is told the message is still in progress —
//!   so that no later message of its subject overtakes it; [`RetryMode::Nak`] hands it back
//!   to the broker with the backoff as delay instead (a redelivery may then come after later
//!   messages of its subject). After [`InboxConfig::max_attempts`] attempts, counting the
//!   broker's deliveries, the message is parked and terminated; a
//!   [`HandleError::Reject`], a message without the CloudEvents headers, or one that does not
//!   decode is parked at once. The consumer goes on with the next message.
//! * **Trace and causation**: the handler runs in a span carrying the incoming
//!   `traceparent`; [`IncomingEvent::caused_metadata`] gives the metadata for the events it
//!   writes (correlation id kept, causation = the incoming event id).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_core::Uuid;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::cloudevents::{IncomingEvent, from_message};
use crate::error::BrokerError;
use crate::parked::{MessageDeadLetters, ParkedMessage};
use crate::seam::{Consumer, Delivery};

/// Why a handler did not handle a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// Try again later (the store or a service was unavailable).
    #[error("retry: {0}")]
    Retry(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Never handle it (a domain rejection, an event this service cannot use): park it.
    #[error("rejected: {0}")]
    Reject(String),
}

impl HandleError {
    /// A transient failure.
    pub fn retry(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        HandleError::Retry(e.into())
    }

    /// A permanent failure.
    pub fn reject(reason: impl Into<String>) -> Self {
        HandleError::Reject(reason.into())
    }
}

impl From<annals_core::Error> for HandleError {
    /// Store errors are transient, except payloads that do not decode and invalid input.
    fn from(e: annals_core::Error) -> Self {
        match e {
            annals_core::Error::Codec { .. }
            | annals_core::Error::InvalidStreamId { .. }
            | annals_core::Error::InvalidEvent { .. } => HandleError::Reject(e.to_string()),
            other => HandleError::Retry(Box::new(other)),
        }
    }
}

/// Handles the events an inbox receives. Used through generics (`impl Future + Send`).
pub trait InboxHandler: Send + Sync + 'static {
    /// Handles `event`; its effect must be durable when this returns `Ok` (the message is
    /// then acknowledged). Must be idempotent: a message can come again after a crash.
    fn handle(&self, event: &IncomingEvent)
    -> impl Future<Output = Result<(), HandleError>> + Send;
}

/// The command id for the command an incoming event causes: derived from the event id (and
/// the inbox name), so a redelivery executes the same command id and is a no-op.
pub fn command_id_for(inbox: &str, event: &IncomingEvent) -> Uuid {
    Uuid::new_v5(
        event.id.as_uuid(),
        format!("annals-inbox-{inbox}").as_bytes(),
    )
}

/// How an inbox retries a message whose handler failed transiently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryMode {
    /// Retry in place with backoff, telling the broker the message is still in progress:
    /// no later message of its subject overtakes it (the default).
    #[default]
    InPlace,
    /// Hand it back to the broker with a delay (a nak with backoff) and go on with the next
    /// message: the broker delivers it again after the delay, to this or another worker.
    /// Later messages of its subject may be handled before it.
    Nak,
}

/// An inbox's options.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct InboxConfig {
    /// The inbox's name (its dead-letter list's key).
    pub name: String,
    /// Attempts before a message that keeps failing is parked (default 5).
    pub max_attempts: u32,
    /// The most messages fetched and not yet settled (default 256).
    pub max_pending: usize,
    /// How long one fetch waits for messages (default 500 ms).
    pub fetch_wait: Duration,
    /// The first wait after a failure (default 100 ms); doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest wait between attempts (default 5 s).
    pub max_backoff: Duration,
    /// How transient failures are retried (default [`RetryMode::InPlace`]).
    pub retry: RetryMode,
}

impl InboxConfig {
    /// An inbox named `name` with the defaults.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            max_attempts: 5,
            max_pending: 256,
            fetch_wait: Duration::from_millis(500),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            retry: RetryMode::InPlace,
        }
    }

    /// Sets how transient failures are retried.
    pub fn retry(mut self, mode: RetryMode) -> Self {
        self.retry = mode;
        self
    }

    /// Sets the attempts before parking.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Sets the most unsettled messages.
    pub fn max_pending(mut self, n: usize) -> Self {
        self.max_pending = n;
        self
    }

    /// Sets how long one fetch waits.
    pub fn fetch_wait(mut self, wait: Duration) -> Self {
        self.fetch_wait = wait;
        self
    }

    /// Sets the first and the longest wait between attempts.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }
}

/// A snapshot of an inbox's work.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct InboxStatus {
    /// Messages handled and acknowledged since start.
    pub handled: u64,
    /// Messages parked since start.
    pub parked: u64,
    /// Failed attempts since start (retried or parked).
    pub failures: u64,
    /// The last fetch error, while the broker is unavailable.
    pub broker_error: Option<String>,
    /// Whether it has shut down.
    pub stopped: bool,
}

/// The inbox: starts a task that fetches and dispatches until [`InboxHandle::shutdown`].
pub struct Inbox;

impl Inbox {
    /// Starts handling the messages of `consumer` with `handler`, parking failures in
    /// `dead_letters`. Must be called inside a Tokio runtime.
    pub fn start<C, H, D>(
        consumer: C,
        handler: H,
        dead_letters: D,
        config: InboxConfig,
    ) -> InboxHandle<H, D>
    where
        C: Consumer,
        H: InboxHandler,
        D: MessageDeadLetters,
    {
        Self::start_fenced(consumer, handler, dead_letters, config, None)
    }

    /// [`Inbox::start`] for a consumer held by a lease: `fence` is the instant the lease may
    /// end (moved on by each renewal). Within `fetch_wait` of it the inbox fetches nothing,
    /// and past it a message is handed back instead of handled, so that a stalled holder
    /// stops before the lease's next holder starts.
    pub(crate) fn start_fenced<C, H, D>(
        consumer: C,
        handler: H,
        dead_letters: D,
        config: InboxConfig,
        fence: Option<watch::Receiver<Instant>>,
    ) -> InboxHandle<H, D>
    where
        C: Consumer,
        H: InboxHandler,
        D: MessageDeadLetters,
    {
        let (status_tx, status_rx) = watch::channel(InboxStatus::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let handler = Arc::new(handler);
        let shared = Arc::new(Shared {
            handler: Arc::clone(&handler),
            dead_letters: dead_letters.clone(),
            config: config.clone(),
            status: status_tx,
            queues: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(config.max_pending.max(1))),
            stop: stop_rx.clone(),
            fence,
        });
        let span = tracing::info_span!("inbox", name = %config.name);
        let join = tokio::spawn(fetch_loop(consumer, Arc::clone(&shared)).instrument(span));
        InboxHandle {
            status: status_rx,
            stop: stop_tx,
            join,
            handler,
            dead_letters,
            name: config.name,
        }
    }
}

/// The handle of a running inbox: status, shutdown and its dead-letter list.
pub struct InboxHandle<H, D> {
    status: watch::Receiver<InboxStatus>,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
    handler: Arc<H>,
    dead_letters: D,
    name: String,
}

impl<H: InboxHandler, D: MessageDeadLetters> InboxHandle<H, D> {
    /// Its work so far.
    pub fn status(&self) -> InboxStatus {
        self.status.borrow().clone()
    }

    /// Waits until `handled + parked` reaches `n`.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] after `timeout`.
    pub async fn wait_for_settled(&self, n: u64, timeout: Duration) -> Result<(), BrokerError> {
        let mut rx = self.status.clone();
        let wait = rx.wait_for(|s| s.handled + s.parked >= n);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(BrokerError::Closed),
            Err(_) => Err(BrokerError::Unavailable {
                message: format!("inbox settled fewer than {n} messages within {timeout:?}"),
                source: None,
            }),
        }
    }

    /// The parked messages.
    ///
    /// # Errors
    /// The dead-letter list's errors.
    pub async fn parked(&self) -> Result<Vec<ParkedMessage>, BrokerError> {
        self.dead_letters.list(&self.name).await
    }

    /// Handles the parked message `id` again (after a fix); on success it leaves the list.
    ///
    /// # Errors
    /// [`BrokerError::Config`] when no message `id` is parked; the mapping or handler's
    /// failure as [`BrokerError::Refused`] (the record stays, its attempts counted).
    pub async fn retry_parked(&self, id: &str) -> Result<(), BrokerError> {
        let parked = self.parked().await?;
        let Some(record) = parked.into_iter().find(|p| p.id == id) else {
            return Err(BrokerError::Config(format!("no parked message {id:?}")));
        };
        let outcome = match from_message(&record.headers, &record.payload) {
            Ok(event) => self.handler.handle(&event).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                self.dead_letters.remove(&self.name, id).await?;
                Ok(())
            }
            Err(error) => {
                let attempts = record.attempts.saturating_add(1);
                let mut again = record.with_attempts(attempts);
                again.error.clone_from(&error);
                self.dead_letters.park(&again).await?;
                Err(BrokerError::Refused {
                    message: error,
                    source: None,
                })
            }
        }
    }

    /// Drops the parked message `id`; false when there was none.
    ///
    /// # Errors
    /// The dead-letter list's errors.
    pub async fn discard_parked(&self, id: &str) -> Result<bool, BrokerError> {
        self.dead_letters.remove(&self.name, id).await
    }

    /// Stops fetching (a fetch under way still finishes), handles the messages already
    /// fetched, and waits. A transient failure while stopping hands its message, and the
    /// rest of its subject, back to the broker instead of retrying.
    ///
    /// Handing back leaves the messages unsettled at the broker until they are delivered
    /// again, and a successor waits for unsettled messages ([`Consumer::recover`]): draining
    /// is what lets the next consumer start at once.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.join.await;
    }
}

/// What the fetch loop and the subject tasks share.
struct Shared<H, D, M> {
    handler: Arc<H>,
    dead_letters: D,
    config: InboxConfig,
    status: watch::Sender<InboxStatus>,
    /// Messages waiting per subject; a subject is in the map while its task runs.
    queues: Mutex<HashMap<String, VecDeque<(M, tokio::sync::OwnedSemaphorePermit)>>>,
    permits: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    /// Until when the consumer is ours (a lease's end), if it is held by one.
    fence: Option<watch::Receiver<Instant>>,
}

impl<H, D, M> Shared<H, D, M> {
    /// Whether the lease ends within `margin` (or has ended).
    fn fenced(&self, margin: Duration) -> bool {
        self.fence
            .as_ref()
            .is_some_and(|f| Instant::now() + margin >= *f.borrow())
    }
}

/// How long a fetch under way may take, past its own wait, once the inbox stops: a fetch
/// dropped early leaves a pull request the broker may still fill, and those messages would
/// come back only after the acknowledgement timeout — after newer ones of their subjects.
const FETCH_GRACE: Duration = Duration::from_secs(5);

async fn fetch_loop<C: Consumer, H: InboxHandler, D: MessageDeadLetters>(
    mut consumer: C,
    shared: Arc<Shared<H, D, C::Delivery>>,
) {
    let mut backoff = shared.config.initial_backoff;
    let mut stop = shared.stop.clone();
    let mut tasks = tokio::task::JoinSet::new();
    // Messages a crashed predecessor left unsettled first.
    loop {
        let recovered = tokio::select! {
            r = consumer.recover() => r,
            _ = stop.wait_for(|s| *s) => Ok(()),
        };
        match recovered {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "inbox cannot recover; retrying");
                shared
                    .status
                    .send_modify(|s| s.broker_error = Some(e.to_string()));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                backoff = (backoff * 2).min(shared.config.max_backoff);
            }
        }
    }
    while !*stop.borrow() {
        // Room for at least one more unsettled message.
        let permit = tokio::select! {
            p = Arc::clone(&shared.permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let wait = shared.config.fetch_wait;
        if shared.fenced(wait) {
            // The lease may end before a fetch would: wait for a renewal (or the stop).
            drop(permit);
            let mut fence = shared.fence.clone();
            tokio::select! {
                _ = async {
                    match fence.as_mut() {
                        Some(f) => { let _ = f.changed().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            continue;
        }
        let room = shared.permits.available_permits() + 1;
        // Not dropped at the stop (see FETCH_GRACE): what it brings is handed back below.
        let fetched = tokio::select! {
            f = consumer.fetch(room, wait) => f,
            _ = async {
                let _ = stop.wait_for(|s| *s).await;
                tokio::time::sleep(wait + FETCH_GRACE).await;
            } => break,
        };
        let messages = match fetched {
            Ok(m) => {
                backoff = shared.config.initial_backoff;
                shared
                    .status
                    .send_if_modified(|s| s.broker_error.take().is_some());
                m
            }
            Err(e) => {
                tracing::warn!(error = %e, "inbox fetch failed");
                shared
                    .status
                    .send_modify(|s| s.broker_error = Some(e.to_string()));
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                backoff = (backoff * 2).min(shared.config.max_backoff);
                continue;
            }
        };
        if shared.fenced(Duration::ZERO) {
            // The lease may have ended: back to the broker for its next holder.
            for m in messages {
                let _ = m.nak(Duration::ZERO).await;
            }
            continue;
        }
        let mut permit = Some(permit);
        for m in messages {
            let p = match permit.take() {
                Some(p) => p,
                // Fetched no more than the free permits, so one is free.
                None => match Arc::clone(&shared.permits).try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => match Arc::clone(&shared.permits).acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                },
            };
            let subject = m.subject().to_owned();
            let start = {
                let mut queues = shared.queues.lock().unwrap_or_else(|e| e.into_inner());
                match queues.get_mut(&subject) {
                    Some(q) => {
                        q.push_back((m, p));
                        false
                    }
                    None => {
                        queues.insert(subject.clone(), VecDeque::from([(m, p)]));
                        true
                    }
                }
            };
            if start {
                tasks.spawn(subject_task(subject, Arc::clone(&shared)));
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    // Drain: the subjects handle what was fetched.
    while tasks.join_next().await.is_some() {}
    shared.status.send_modify(|s| s.stopped = true);
}

/// Handles the messages of one subject, one at a time, until its queue is empty.
async fn subject_task<H: InboxHandler, D: MessageDeadLetters, M: Delivery>(
    subject: String,
    shared: Arc<Shared<H, D, M>>,
) {
    let mut handing_back = false;
    loop {
        let next = {
            let mut queues = shared.queues.lock().unwrap_or_else(|e| e.into_inner());
            let next = queues.get_mut(&subject).and_then(VecDeque::pop_front);
            if next.is_none() {
                queues.remove(&subject);
            }
            next
        };
        let Some((message, _permit)) = next else {
            return;
        };
        if handing_back || shared.fenced(Duration::ZERO) {
            // The lease may have ended, or an earlier message of the subject went back: back
            // to the broker, in order, for another worker (or the next start).
            let _ = message.nak(Duration::ZERO).await;
            handing_back = true;
            continue;
        }
        if settle(&shared, &message).await == Settled::HandedBack {
            handing_back = true;
        }
    }
}

/// How [`settle`] left a message.
#[derive(Debug, PartialEq, Eq)]
enum Settled {
    /// Acknowledged, parked, or handed back with a delay by [`RetryMode::Nak`].
    Done,
    /// Handed back to the broker by a stopping inbox instead of a retry in place.
    HandedBack,
}

/// Handles one message to the end: acknowledged, or parked and terminated, or (stopping)
/// handed back.
async fn settle<H: InboxHandler, D: MessageDeadLetters, M: Delivery>(
    shared: &Shared<H, D, M>,
    message: &M,
) -> Settled {
    let config = &shared.config;
    let event = match from_message(message.headers(), message.payload()) {
        Ok(e) => e,
        Err(e) => {
            park(
                shared,
                message,
                None,
                format!("not an annals event: {e}"),
                0,
            )
            .await;
            return Settled::Done;
        }
    };
    let span = tracing::info_span!(
        "inbox_message",
        inbox = %config.name,
        event_id = %event.id.as_uuid(),
        event_type = %event.event_type,
        stream = %event.stream,
        traceparent = event.traceparent().unwrap_or(""),
    );
    #[cfg(feature = "otel")]
    if let Some(tp) = event.traceparent() {
        set_remote_parent(&span, tp);
    }
    // Deliveries before this one ended in a crash (or a lost acknowledgement).
    let earlier = u32::try_from(message.delivered().saturating_sub(1)).unwrap_or(u32::MAX);
    let mut attempts = earlier;
    let mut backoff = config.initial_backoff;
    loop {
        if attempts >= config.max_attempts.max(1) {
            let reason = format!("still failing after {attempts} attempts");
            park(shared, message, Some(&event), reason, attempts).await;
            return Settled::Done;
        }
        attempts += 1;
        let outcome = shared.handler.handle(&event).instrument(span.clone()).await;
        match outcome {
            Ok(()) => {
                if let Err(e) = message.ack().await {
                    // Redelivered later: the handler is idempotent.
                    tracing::warn!(error = %e, "cannot acknowledge; the broker will redeliver");
                }
                shared.status.send_modify(|s| s.handled += 1);
                return Settled::Done;
            }
            Err(HandleError::Reject(reason)) => {
                shared.status.send_modify(|s| s.failures += 1);
                park(shared, message, Some(&event), reason, attempts).await;
                return Settled::Done;
            }
            Err(HandleError::Retry(e)) => {
                shared.status.send_modify(|s| s.failures += 1);
                tracing::warn!(parent: &span, error = %e, attempts, "handler failed; retrying");
                if attempts >= config.max_attempts.max(1) {
                    park(shared, message, Some(&event), e.to_string(), attempts).await;
                    return Settled::Done;
                }
                if config.retry == RetryMode::Nak {
                    // The broker's delivery count carries the attempts on.
                    let mut delay = config.initial_backoff;
                    for _ in 1..attempts {
                        delay = (delay * 2).min(config.max_backoff);
                    }
                    if let Err(e) = message.nak(delay).await {
                        tracing::warn!(error = %e, "cannot nak; the broker redelivers after its timeout");
                    }
                    return Settled::Done;
                }
                if *shared.stop.borrow() {
                    // Stopping: no retry in place; another worker (or the next start) has it.
                    let _ = message.nak(Duration::ZERO).await;
                    return Settled::HandedBack;
                }
                let _ = message.keep_alive().await;
                tokio::time::sleep(backoff).await;
                let _ = message.keep_alive().await;
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
    }
}

/// Parks `message` (then terminates it at the broker).
async fn park<H, D: MessageDeadLetters, M: Delivery>(
    shared: &Shared<H, D, M>,
    message: &M,
    event: Option<&IncomingEvent>,
    reason: String,
    attempts: u32,
) {
    let id = match event {
        Some(e) => e.id.as_uuid().to_string(),
        None => message
            .headers()
            .get(crate::cloudevents::ID)
            .cloned()
            .unwrap_or_else(|| {
                format!(
                    "subject-{}-delivery-{}",
                    message.subject(),
                    message.delivered()
                )
            }),
    };
    tracing::warn!(inbox = %shared.config.name, %id, error = %reason, "parking message");
    let record = ParkedMessage::new(
        shared.config.name.clone(),
        id,
        message.subject(),
        message.headers().clone(),
        message.payload().to_vec(),
        reason,
    )
    .with_attempts(attempts);
    let mut backoff = shared.config.initial_backoff;
    // The record must be stored before the broker forgets the message.
    loop {
        match shared.dead_letters.park(&record).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "cannot park; retrying");
                let _ = message.keep_alive().await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(shared.config.max_backoff);
            }
        }
    }
    if let Err(e) = message.term().await {
        tracing::warn!(error = %e, "cannot terminate a parked message; it may come again");
    }
    shared.status.send_modify(|s| s.parked += 1);
}

/// Makes the W3C trace context `traceparent` the OpenTelemetry parent of `span`.
#[cfg(feature = "otel")]
fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::propagation::TextMapPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let carrier = std::collections::HashMap::from([(
        crate::cloudevents::TRACEPARENT.to_owned(),
        traceparent.to_owned(),
    )]);
    let cx = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    if let Err(e) = span.set_parent(cx) {
        tracing::debug!(error = %e, "no OpenTelemetry layer: the trace parent is a field only");
    }
}
