//! The broker conformance suite: generic test functions that every broker implementation
//! runs (JetStream, RabbitMQ, Kafka), over any event store. A test crate, like
//! `annals-conformance` for stores: each function panics on a failed check, as a test does,
//! and is only ever called from tests.
// Every unwrap, expect and panic in this crate (`lib.rs` and `crash.rs`) is a test assertion
// on data the test itself made: the crate is `publish = false` and only ever a
// dev-dependency of the broker crates' test suites, so no application's input, stored bytes
// or broker messages reach it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The crash scenarios' children report to their parent on stdout, and the scenarios report
// what they did as tests do.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_core::{EventData, EventStore, ExpectedVersion, Position, RecordedEvent, StreamId};

use annals_broker::MemCheckpoints;
use annals_broker::MemDeadLetters;
use annals_broker::cloudevents::{self, IncomingEvent};
use annals_broker::{Consumer, Headers, OutgoingMessage, Publisher};
use annals_broker::{HandleError, Inbox, InboxConfig, InboxHandler};
use annals_broker::{Relay, RelayConfig};

pub mod crash;

/// What a broker implementation gives the suite: a fresh destination per test.
///
/// The scenarios open every consumer before publishing what it must receive: a broker
/// without a log of its own (RabbitMQ) routes a message only to the queues that exist when
/// it is published.
pub trait BrokerHarness: Send + Sync + 'static {
    /// Its publisher.
    type Publisher: Publisher;
    /// Its consumer.
    type Consumer: Consumer;

    /// Whether the broker drops a re-published message id (JetStream's duplicate window).
    /// Without it, a relay restarted from an old checkpoint publishes again and the inbox's
    /// handler is where duplicates end.
    const DEDUPLICATES: bool = true;

    /// A publisher to a fresh, empty destination taking every subject under `prefix`.
    fn publisher(&self, prefix: &str) -> impl Future<Output = Self::Publisher> + Send;

    /// A durable consumer `name` of that destination (call after `publisher`).
    fn consumer(&self, prefix: &str, name: &str) -> impl Future<Output = Self::Consumer> + Send;

    /// A publisher to the destination [`BrokerHarness::publisher`] made, as it is (for a
    /// child process of a crash test).
    fn publisher_again(&self, prefix: &str) -> impl Future<Output = Self::Publisher> + Send;

    /// A consumer like [`BrokerHarness::consumer`] whose unsettled messages come again soon
    /// after its process dies (JetStream: a short acknowledgement wait). The default is
    /// `consumer`: brokers that return them when the connection ends need nothing else.
    fn quick_consumer(
        &self,
        prefix: &str,
        name: &str,
    ) -> impl Future<Output = Self::Consumer> + Send {
        self.consumer(prefix, name)
    }

    /// Takes the broker down (`true`: connections break and new ones are refused) or up
    /// again; false when the harness cannot (the outage scenario then runs without one).
    fn set_down(&self, down: bool) -> impl Future<Output = bool> + Send {
        let _ = down;
        async { false }
    }

    /// Environment variables a child process of a crash test needs to build the same
    /// harness (names that would otherwise differ between processes).
    fn child_env(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Every message stored at the destination, in its order: (subject, headers).
    fn stored(&self, prefix: &str) -> impl Future<Output = Vec<(String, Headers)>> + Send;
}

/// Appends `n` events round-robin over `streams` streams named `<tag>-<i>`.
pub async fn fill<S: EventStore>(store: &S, tag: &str, streams: usize, n: usize) -> Position {
    let mut last = Position::NONE;
    for i in 0..n {
        let stream = StreamId::new(format!("{tag}-{}", i % streams)).unwrap();
        let e = EventData::json("Happened", &serde_json::json!({ "n": i })).unwrap();
        last = store
            .append(&stream, ExpectedVersion::Any, vec![e])
            .await
            .unwrap()
            .last_position;
    }
    last
}

/// Runs a relay from `checkpoints` until every event up to `head` is acknowledged, then
/// stops it.
pub async fn relay_through<S: EventStore, P: Publisher, C: annals_broker::RelayCheckpoints>(
    store: &S,
    publisher: P,
    checkpoints: C,
    config: RelayConfig,
    head: Position,
) {
    let relay = Relay::start(store.clone(), publisher, checkpoints, config);
    relay.wait_for(head, Duration::from_secs(30)).await.unwrap();
    relay.shutdown().await;
}

/// Appends one event of each of `types` to `stream(type)`; the last position.
pub async fn append_types<S: EventStore>(
    store: &S,
    types: &[&str],
    stream: impl Fn(&str) -> String,
) -> Position {
    let mut last = Position::NONE;
    for ty in types {
        last = store
            .append(
                &StreamId::new(stream(ty)).unwrap(),
                ExpectedVersion::Any,
                vec![EventData::json(*ty, &1).unwrap()],
            )
            .await
            .unwrap()
            .last_position;
    }
    last
}

/// Checks that `stored` holds every event of `events` exactly once (by event id) and, per
/// subject, in stream-version order.
pub fn check_exactly_once_in_order(events: &[RecordedEvent], stored: &[(String, Headers)]) {
    let mut seen = HashSet::new();
    let mut last_version: HashMap<&str, u64> = HashMap::new();
    for (subject, headers) in stored {
        let id = &headers[cloudevents::ID];
        assert!(seen.insert(id.clone()), "event {id} stored twice");
        let version: u64 = headers[cloudevents::VERSION].parse().unwrap();
        let prev = last_version.insert(subject, version).unwrap_or(0);
        assert!(version > prev, "{subject}: version {version} after {prev}");
    }
    check_same_ids(events, &seen);
}

/// Checks that `stored` holds every event of `events` at least once and, per subject, in
/// stream-version order once repeats are dropped: what a broker without de-duplication
/// holds after a relay restarted from a checkpoint behind what it had published.
pub fn check_at_least_once_in_order(events: &[RecordedEvent], stored: &[(String, Headers)]) {
    let mut seen = HashSet::new();
    let mut last_version: HashMap<&str, u64> = HashMap::new();
    for (subject, headers) in stored {
        let id = &headers[cloudevents::ID];
        if !seen.insert(id.clone()) {
            continue;
        }
        let version: u64 = headers[cloudevents::VERSION].parse().unwrap();
        let prev = last_version.insert(subject, version).unwrap_or(0);
        assert!(version > prev, "{subject}: version {version} after {prev}");
    }
    check_same_ids(events, &seen);
}

/// Checks that the ids in `seen` are those of `events`, reporting what is missing and what
/// is extra (counts and a few ids) rather than both sets.
fn check_same_ids(events: &[RecordedEvent], seen: &HashSet<String>) {
    let want: HashSet<String> = events.iter().map(|e| e.id.as_uuid().to_string()).collect();
    let missing: Vec<&String> = want.difference(seen).collect();
    let mut gaps: Vec<u64> = events
        .iter()
        .filter(|e| !seen.contains(&e.id.as_uuid().to_string()))
        .map(|e| e.position.0)
        .collect();
    gaps.sort_unstable();
    let ranges = ranges_of(&gaps);
    let extra: Vec<&String> = seen.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} events, {} seen: {} missing (e.g. {:?}; positions {ranges}), {} not events (e.g. {:?})",
        want.len(),
        seen.len(),
        missing.len(),
        &missing[..missing.len().min(3)],
        extra.len(),
        &extra[..extra.len().min(3)],
    );
}

/// `1-3, 7` for `[1, 2, 3, 7]` (at most ten ranges).
fn ranges_of(sorted: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() && out.len() < 10 {
        let start = sorted[i];
        while i + 1 < sorted.len() && sorted[i + 1] == sorted[i] + 1 {
            i += 1;
        }
        out.push(if sorted[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", sorted[i])
        });
        i += 1;
    }
    out.join(", ")
}

async fn all<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    store.read_all(Position::NONE, usize::MAX).await.unwrap()
}

/// The relay publishes every event once, in order per subject, with the CloudEvents
/// headers; a second relay from the same checkpoint publishes nothing again.
pub async fn relay_publishes_every_event_once<H: BrokerHarness, S: EventStore>(h: H, store: S) {
    let prefix = "conf-once";
    let publisher = h.publisher(prefix).await;
    let head = fill(&store, "order", 7, 300).await;
    let checkpoints = MemCheckpoints::new();
    let config = RelayConfig::new("conf-once", "conformance", prefix)
        .max_in_flight(32)
        .dataschema("urn:annals:conformance/");
    relay_through(
        &store,
        publisher.clone(),
        checkpoints.clone(),
        config.clone(),
        head,
    )
    .await;
    let stored = h.stored(prefix).await;
    let events = all(&store).await;
    check_exactly_once_in_order(&events, &stored);
    let (subject, headers) = &stored[0];
    assert_eq!(
        subject,
        &annals_broker::subject::subject_for(prefix, &events[0].stream)
    );
    assert_eq!(headers[cloudevents::SPECVERSION], "1.0");
    assert_eq!(headers[cloudevents::SOURCE], "conformance");
    assert_eq!(
        headers[cloudevents::DATASCHEMA],
        "urn:annals:conformance/Happened/v1.json"
    );
    // From the checkpoint: nothing more.
    relay_through(&store, publisher, checkpoints, config, head).await;
    assert_eq!(h.stored(prefix).await.len(), stored.len());
}

/// A relay restarted from an old checkpoint re-publishes; a broker with de-duplication keeps
/// every event once, one without keeps every event, in order per subject, at least once (a
/// whole second run after the first).
pub async fn republish_is_deduplicated<H: BrokerHarness, S: EventStore>(h: H, store: S) {
    let prefix = "conf-dedup";
    let publisher = h.publisher(prefix).await;
    let head = fill(&store, "item", 3, 60).await;
    for _ in 0..2 {
        // A fresh checkpoint each time: everything is published twice.
        let config = RelayConfig::new("conf-dedup", "conformance", prefix);
        relay_through(
            &store,
            publisher.clone(),
            MemCheckpoints::new(),
            config,
            head,
        )
        .await;
    }
    let stored = h.stored(prefix).await;
    let events = all(&store).await;
    if H::DEDUPLICATES {
        check_exactly_once_in_order(&events, &stored);
    } else {
        // Per subject: the whole run, then the whole run again (the broker keeps order per
        // subject only, not across subjects).
        assert_eq!(stored.len(), 2 * events.len(), "published twice");
        let mut got: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for (subject, headers) in &stored {
            got.entry(subject)
                .or_default()
                .push(headers[cloudevents::VERSION].parse().unwrap());
        }
        for (subject, versions) in got {
            let n = versions.len() / 2;
            let once: Vec<u64> = (1..=n as u64).collect();
            assert_eq!(versions, [once.clone(), once].concat(), "{subject}");
        }
    }
}

/// Records what it handled, once per event id; fails `Poison` events until fixed.
#[derive(Clone, Default)]
pub struct Recorder {
    /// Event ids handled, in order, per stream.
    pub handled: Arc<Mutex<BTreeMap<String, Vec<u64>>>>,
    /// Event ids seen (a second handling of one is idempotent).
    pub seen: Arc<Mutex<HashSet<String>>>,
    /// While false, `Poison` events are rejected.
    pub fixed: Arc<std::sync::atomic::AtomicBool>,
    /// Events of type `Flaky` fail this many times first.
    pub flaky: Arc<std::sync::atomic::AtomicU32>,
}

impl InboxHandler for Recorder {
    async fn handle(&self, event: &IncomingEvent) -> Result<(), HandleError> {
        use std::sync::atomic::Ordering;
        if event.event_type == "Poison" && !self.fixed.load(Ordering::SeqCst) {
            return Err(HandleError::reject("poison"));
        }
        if event.event_type == "Flaky"
            && self
                .flaky
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(HandleError::retry("flaky"));
        }
        if self
            .seen
            .lock()
            .unwrap()
            .insert(event.id.as_uuid().to_string())
        {
            self.handled
                .lock()
                .unwrap()
                .entry(event.stream.to_string())
                .or_default()
                .push(event.version.0);
        }
        Ok(())
    }
}

/// The inbox handles every message once and in order per subject, retries a transient
/// failure in place, parks a poison message and a message that is not an event while the
/// others go on, and handles the poison message after a fix.
pub async fn inbox_handles_in_order_and_parks_poison<H: BrokerHarness, S: EventStore>(
    h: H,
    store: S,
) {
    inbox_handles_in_order_and_parks_poison_under(h, store, "conf-inbox").await;
}

/// [`inbox_handles_in_order_and_parks_poison`] with its own subject prefix (to run it more
/// than once against one broker, e.g. over several stores).
pub async fn inbox_handles_in_order_and_parks_poison_under<H: BrokerHarness, S: EventStore>(
    h: H,
    store: S,
    prefix: &str,
) {
    let publisher = h.publisher(prefix).await;
    let consumer = h.consumer(prefix, "conf-inbox").await;
    fill(&store, "acct", 5, 100).await;
    let last = append_types(&store, &["Poison", "Flaky", "Happened"], |_| {
        "acct-0".into()
    })
    .await;
    let config = RelayConfig::new(prefix, "conformance", prefix);
    relay_through(
        &store,
        publisher.clone(),
        MemCheckpoints::new(),
        config,
        last,
    )
    .await;
    // Not an event at all.
    let junk = OutgoingMessage::new(format!("{prefix}.junk.junk-1"), "junk-1", b"??".to_vec());
    publisher.publish(junk).await.unwrap().await.unwrap();

    let recorder = Recorder::default();
    recorder.flaky.store(2, std::sync::atomic::Ordering::SeqCst);
    let dead = MemDeadLetters::new();
    let config = InboxConfig::new(prefix)
        .max_attempts(5)
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .fetch_wait(Duration::from_millis(200));
    let inbox = Inbox::start(consumer, recorder.clone(), dead, config);
    inbox
        .wait_for_settled(104, Duration::from_secs(30))
        .await
        .unwrap();
    let handled = recorder.handled.lock().unwrap().clone();
    for (stream, versions) in &handled {
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{stream} in order: {versions:?}"
        );
    }
    assert_eq!(
        handled.values().map(Vec::len).sum::<usize>(),
        102,
        "all but two"
    );
    let status = inbox.status();
    assert_eq!((status.handled, status.parked), (102, 2));
    assert!(status.failures >= 3, "poison once, flaky twice");
    let mut parked = inbox.parked().await.unwrap();
    parked.sort_by(|a, b| a.subject.cmp(&b.subject));
    assert_eq!(parked.len(), 2);
    assert!(
        parked
            .iter()
            .any(|p| p.error.contains("not an annals event"))
    );
    let poison = parked.iter().find(|p| p.error == "poison").unwrap();
    // Still broken: the retry fails and the record stays; fixed: it is handled and goes.
    assert!(inbox.retry_parked(&poison.id).await.is_err());
    recorder
        .fixed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    inbox.retry_parked(&poison.id).await.unwrap();
    assert_eq!(inbox.parked().await.unwrap().len(), 1);
    let junk = inbox.parked().await.unwrap().remove(0);
    assert!(inbox.discard_parked(&junk.id).await.unwrap());
    assert!(inbox.parked().await.unwrap().is_empty());
    inbox.shutdown().await;
}

/// With [`RetryMode::Nak`](annals_broker::RetryMode::Nak), a transient failure goes back to the
/// broker with a delay and comes again; after `max_attempts` deliveries it is parked.
pub async fn inbox_nak_mode_redelivers<H: BrokerHarness, S: EventStore>(h: H, store: S) {
    use std::sync::atomic::Ordering;
    let prefix = "conf-nak";
    let publisher = h.publisher(prefix).await;
    let consumer = h.consumer(prefix, prefix).await;
    fill(&store, "nak", 3, 20).await;
    let last = append_types(&store, &["Flaky", "Poison"], |ty| format!("nak-{ty}")).await;
    let config = RelayConfig::new(prefix, "conformance", prefix);
    relay_through(&store, publisher, MemCheckpoints::new(), config, last).await;
    let recorder = Recorder::default();
    recorder.flaky.store(2, Ordering::SeqCst);
    // Poison fails transiently here (a flaky that never recovers): parked after 3 deliveries.
    #[derive(Clone)]
    struct NeverPoison(Recorder);
    impl InboxHandler for NeverPoison {
        async fn handle(&self, e: &IncomingEvent) -> Result<(), HandleError> {
            if e.event_type == "Poison" {
                return Err(HandleError::retry("still down"));
            }
            self.0.handle(e).await
        }
    }
    let config = InboxConfig::new(prefix)
        .retry(annals_broker::RetryMode::Nak)
        .max_attempts(3)
        .backoff(Duration::from_millis(10), Duration::from_millis(40))
        .fetch_wait(Duration::from_millis(100));
    let inbox = Inbox::start(
        consumer,
        NeverPoison(recorder.clone()),
        MemDeadLetters::new(),
        config,
    );
    inbox
        .wait_for_settled(22, Duration::from_secs(30))
        .await
        .unwrap();
    let status = inbox.status();
    assert_eq!((status.handled, status.parked), (21, 1));
    assert_eq!(status.failures, 2 + 3, "flaky twice, poison three times");
    let parked = inbox.parked().await.unwrap();
    assert_eq!(parked[0].attempts, 3);
    assert!(recorder.seen.lock().unwrap().len() == 21);
    inbox.shutdown().await;
}

/// An inbox stopped while a fetch is under way does not leave what that fetch brings to the
/// broker's acknowledgement timeout (when it would come after newer messages): it handles
/// it, or hands it back so that the next inbox on the consumer gets it at once, in order. Needs a consumer whose
/// acknowledgement timeout is well above ten seconds (JetStream's default is 30 s).
pub async fn inbox_stopped_mid_fetch_hands_messages_back<H: BrokerHarness, S: EventStore>(
    h: H,
    store: S,
) {
    let prefix = "conf-midfetch";
    let publisher = h.publisher(prefix).await;
    let consumer = h.consumer(prefix, prefix).await;
    let config = RelayConfig::new(prefix, "conformance", prefix);
    let relay = Relay::start(store.clone(), publisher, MemCheckpoints::new(), config);
    let first = fill(&store, "mid", 1, 1).await;
    relay
        .wait_for(first, Duration::from_secs(30))
        .await
        .unwrap();
    let recorder = Recorder::default();
    // A long poll: the first inbox is inside a fetch when it is told to stop.
    let long = InboxConfig::new(prefix).fetch_wait(Duration::from_secs(3));
    let a = Inbox::start(consumer, recorder.clone(), MemDeadLetters::new(), long);
    a.wait_for_settled(1, Duration::from_secs(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(a.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Published while the stopping inbox's fetch is still open.
    let head = fill(&store, "mid", 1, 5).await;
    relay.wait_for(head, Duration::from_secs(30)).await.unwrap();
    stopping.await.unwrap();
    let b = Inbox::start(
        h.consumer(prefix, prefix).await,
        recorder.clone(),
        MemDeadLetters::new(),
        InboxConfig::new(prefix).fetch_wait(Duration::from_millis(100)),
    );
    // The stopping inbox handled them, or handed them back and the next one handles them
    // at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while recorder.seen.lock().unwrap().len() < 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "the messages the stopped inbox's fetch brought were not handled at once: {:?}",
            recorder.handled.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        recorder.handled.lock().unwrap().get("mid-0"),
        Some(&vec![1, 2, 3, 4, 5, 6]),
        "each once, in order"
    );
    b.shutdown().await;
    relay.shutdown().await;
}

/// The relay and an inbox ride out a broker outage while events keep coming: nothing is
/// lost, each stream's events are handled in order, and both go on by themselves once the
/// broker is back.
pub async fn relay_and_inbox_ride_out_an_outage<H: BrokerHarness, S: EventStore>(h: H, store: S) {
    let prefix = "conf-outage";
    let publisher = h.publisher(prefix).await;
    let consumer = h.consumer(prefix, prefix).await;
    let config = RelayConfig::new(prefix, "conformance", prefix)
        .max_in_flight(64)
        .backoff(Duration::from_millis(20), Duration::from_millis(200));
    let relay = Relay::start(store.clone(), publisher, MemCheckpoints::new(), config);
    let recorder = Recorder::default();
    let inbox = Inbox::start(
        consumer,
        recorder.clone(),
        MemDeadLetters::new(),
        InboxConfig::new(prefix)
            .fetch_wait(Duration::from_millis(100))
            .backoff(Duration::from_millis(20), Duration::from_millis(200)),
    );
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut last = Position::NONE;
            for _ in 0..20 {
                last = fill(&store, "out", 5, 50).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            last
        })
    };
    relay
        .wait_for(Position(200), Duration::from_secs(30))
        .await
        .unwrap();
    let outage = h.set_down(true).await;
    if outage {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(h.set_down(false).await);
    }
    let head = writer.await.unwrap();
    relay.wait_for(head, Duration::from_secs(60)).await.unwrap();
    let total = 20 * 50;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while recorder.seen.lock().unwrap().len() < total {
        assert!(
            std::time::Instant::now() < deadline,
            "handled {} of {total} after the outage ({outage}): {:?}",
            recorder.seen.lock().unwrap().len(),
            inbox.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (stream, versions) in recorder.handled.lock().unwrap().iter() {
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{stream} in order: {versions:?}"
        );
    }
    let events = all(&store).await;
    let stored = h.stored(prefix).await;
    if H::DEDUPLICATES {
        check_exactly_once_in_order(&events, &stored);
    } else {
        check_at_least_once_in_order(&events, &stored);
    }
    inbox.shutdown().await;
    relay.shutdown().await;
}

/// Relays ten events and a `Poison` one (stream `bad-1`, subject `<prefix>.bad.bad-1`)
/// through `publisher`, and has an inbox on `consumer` park the poison one: its status and
/// parked list say so. What became of the parked message at the broker (a dead-letter
/// exchange, a dead-letter topic) is for the caller to check.
pub async fn park_a_poison_message<P: Publisher, C: Consumer>(
    publisher: P,
    consumer: C,
    prefix: &str,
) {
    let store = annals_store::MemStore::new();
    fill(&store, "ok", 2, 10).await;
    let head = append_types(&store, &["Poison"], |_| "bad-1".into()).await;
    let config = RelayConfig::new(prefix, "conformance", prefix);
    relay_through(&store, publisher, MemCheckpoints::new(), config, head).await;
    let inbox = Inbox::start(
        consumer,
        Recorder::default(),
        MemDeadLetters::new(),
        InboxConfig::new(prefix).fetch_wait(Duration::from_millis(100)),
    );
    inbox
        .wait_for_settled(11, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(inbox.status().parked, 1);
    let parked = inbox.parked().await.unwrap();
    assert_eq!(parked.len(), 1, "in the parked list");
    assert_eq!(parked[0].subject, format!("{prefix}.bad.bad-1"));
    inbox.shutdown().await;
}
