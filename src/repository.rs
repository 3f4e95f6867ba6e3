//! The [`Repository`]: loads aggregates (latest, at a version, as of a time), executes
//! commands with optimistic concurrency and retries, takes snapshots.

use std::sync::{Arc, Mutex, MutexGuard};

use annals_core::{
    Aggregate, AppendResult, CodecId, Command, Direction, DomainEvent, Error, EventData, EventId,
    EventStore, ExpectedVersion, Metadata, Position, RecordedEvent, Snapshot, SnapshotStore,
    StreamId, Timestamp, Uuid, Version, VersionRange,
};
use tracing::Instrument;

use crate::upcast::Upcasters;

/// What went wrong executing a command or loading an aggregate. Domain errors (the
/// aggregate's own `Error`) are kept apart from store and decoding errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError<E> {
    /// The aggregate rejected the command. Nothing was appended; show it to the user.
    #[error("command rejected: {0}")]
    Domain(E),
    /// The store failed, or the stream kept changing under the command after every retry
    /// ([`Error::Conflict`]), or a stored event could not be decoded ([`Error::Codec`]).
    #[error(transparent)]
    Store(#[from] Error),
}

/// Metadata of one command execution: an id for idempotency, and the metadata (correlation,
/// causation, headers) copied into every event it causes.
///
/// ```
/// use annals::{CommandContext, Metadata, Uuid};
/// let ctx = CommandContext::new()
///     .with_command_id(Uuid::now_v7())
///     .with_metadata(Metadata::new().with_header("user", "ada"));
/// # let _ = ctx;
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CommandContext {
    /// The command's id. Executing a command with an id already executed returns the first
    /// result and appends nothing. It is also the default correlation and causation id.
    pub command_id: Option<Uuid>,
    /// Metadata for every event; unset correlation and causation ids default to the
    /// command id.
    pub metadata: Metadata,
}

impl CommandContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the command id.
    pub fn with_command_id(mut self, id: Uuid) -> Self {
        self.command_id = Some(id);
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    fn event_metadata(&self) -> Metadata {
        let mut m = self.metadata.clone();
        m.correlation_id = m.correlation_id.or(self.command_id);
        m.causation_id = m.causation_id.or(self.command_id);
        m
    }
}

/// The id of the `index`-th event of the command `command_id`: deterministic, so a retried
/// command produces the same ids and the store's idempotent append stores nothing twice.
pub fn event_id_for(command_id: Uuid, index: usize) -> EventId {
    EventId::from_uuid(Uuid::new_v5(
        &command_id,
        format!("annals-event-{index}").as_bytes(),
    ))
}

/// The outcome of [`Repository::execute`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Executed<E> {
    /// The events the command caused (empty when it caused none).
    pub events: Vec<E>,
    /// Where they were stored; `None` when there were none.
    pub append: Option<AppendResult>,
    /// The aggregate's version after the command.
    pub version: Version,
    /// True when the command id had been executed before and this is its first result.
    pub replayed: bool,
    /// How many times the command was decided: 1, plus one per optimistic-concurrency
    /// conflict retried (0 for a replayed result).
    pub attempts: usize,
}

/// One event of an aggregate's history.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HistoryEntry<E> {
    /// Version in the stream.
    pub version: Version,
    /// Position in the global log.
    pub position: Position,
    /// When it was committed.
    pub recorded_at: Timestamp,
    /// Its id.
    pub id: EventId,
    /// Its type name.
    pub event_type: String,
    /// Correlation, causation and headers.
    pub metadata: Metadata,
    /// The decoded (and upcast) event.
    pub event: E,
}

/// The store error of an aggregate that rejects nothing.
pub(crate) fn store_error(e: RepositoryError<std::convert::Infallible>) -> Error {
    match e {
        RepositoryError::Store(e) => e,
        RepositoryError::Domain(never) => match never {},
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Loads and changes aggregates of type `A` in store `S`.
///
/// * `load(id)`: the latest snapshot plus the events after it (recently used aggregates are
///   kept in memory — a least-recently-used cache of [`Repository::cache_capacity`]
///   aggregates — and caught up from their cached version);
/// * `load_at(id, version)` and `load_as_of(id, time)`: time travel;
/// * `execute(id, command)` (`execute_with` for a command id and metadata): load, decide,
///   append with `Exact(version)`; on a conflict, retry on fresh state (3 times by
///   default).
///
/// Cheap to clone; clones share the cache.
pub struct Repository<A: Aggregate, S> {
    store: S,
    services: Arc<A::Services>,
    upcasters: Arc<Upcasters>,
    snapshot_every: u64,
    /// Whether loads look for a snapshot (`None`: when `snapshot_every` is set).
    load_snapshots: Option<bool>,
    retries: usize,
    cache_capacity: usize,
    cache: Arc<Mutex<lru::LruCache<StreamId, (A, Version)>>>,
}

impl<A: Aggregate, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            services: Arc::clone(&self.services),
            upcasters: Arc::clone(&self.upcasters),
            snapshot_every: self.snapshot_every,
            load_snapshots: self.load_snapshots,
            retries: self.retries,
            cache_capacity: self.cache_capacity,
            cache: Arc::clone(&self.cache),
        }
    }
}

impl<A, S> Repository<A, S>
where
    A: Aggregate,
    A::Services: Default,
    S: EventStore + SnapshotStore,
{
    /// A repository over `store` with default services.
    pub fn new(store: S) -> Self {
        Self::with_services(store, A::Services::default())
    }
}

type Res<T, A> = Result<T, RepositoryError<<A as Aggregate>::Error>>;

impl<A, S> Repository<A, S>
where
    A: Aggregate,
    S: EventStore + SnapshotStore,
{
    /// A repository over `store` whose aggregates consult `services` when deciding.
    pub fn with_services(store: S, services: A::Services) -> Self {
        Self {
            store,
            services: Arc::new(services),
            upcasters: Arc::new(Upcasters::new()),
            snapshot_every: 0,
            load_snapshots: None,
            retries: 3,
            cache_capacity: 10_000,
            cache: Arc::new(Mutex::new(lru::LruCache::unbounded())),
        }
    }

    /// Takes a snapshot whenever an append crosses a multiple of `n` events (0 = never).
    pub fn snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = n;
        self
    }

    /// Whether loads start from the stream's snapshot. By default they do when a snapshot
    /// policy is set ([`Self::snapshot_every`]) and skip the snapshot read otherwise (a
    /// round trip saved on every cache miss); turn it on to use snapshots taken elsewhere
    /// (by [`Self::snapshot_now`], or by another repository).
    pub fn load_snapshots(mut self, on: bool) -> Self {
        self.load_snapshots = Some(on);
        self
    }

    fn reads_snapshots(&self) -> bool {
        self.load_snapshots.unwrap_or(self.snapshot_every > 0)
    }

    /// How many times `execute` retries on a conflict (default 3).
    pub fn retries(mut self, n: usize) -> Self {
        self.retries = n;
        self
    }

    /// How many aggregates to keep in memory (default 10,000; 0 = no cache); when it is full,
    /// the least recently used one goes.
    pub fn cache_capacity(mut self, n: usize) -> Self {
        self.cache_capacity = n;
        self
    }

    /// Upcasters applied to every event read.
    pub fn upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = Arc::new(upcasters);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The aggregate id of a stream of this repository's aggregate type (`<A::TYPE>-<id>`),
    /// or `None` for another stream: for projections and handlers that get stream ids.
    pub fn aggregate_id(stream: &StreamId) -> Option<&str> {
        stream.aggregate_id(A::TYPE)
    }

    /// The stream of aggregate `id`: `<A::TYPE>-<id>`.
    ///
    /// # Errors
    /// [`Error::InvalidStreamId`] for an id that makes no valid stream name.
    pub fn stream_id(&self, id: &str) -> Result<StreamId, Error> {
        StreamId::for_aggregate(A::TYPE, id)
    }

    fn decode(&self, e: &RecordedEvent) -> Result<A::Event, Error> {
        self.upcasters.decode(e)
    }

    fn cached(&self, stream: &StreamId) -> Option<(A, Version)> {
        if self.cache_capacity == 0 {
            return None;
        }
        lock(&self.cache).get(stream).cloned()
    }

    pub(crate) fn remember(&self, stream: &StreamId, state: &A, version: Version) {
        if self.cache_capacity == 0 {
            return;
        }
        let mut cache = lock(&self.cache);
        match cache.peek(stream) {
            // A newer state is cached already (a concurrent command got there first).
            Some((_, v)) if *v > version => {
                cache.promote(stream);
            }
            _ => {
                cache.put(stream.clone(), (state.clone(), version));
            }
        }
        while cache.len() > self.cache_capacity {
            cache.pop_lru();
        }
    }

    pub(crate) fn forget(&self, stream: &StreamId) {
        lock(&self.cache).pop(stream);
    }

    /// Folds the events of `stream` in `range` into `state`; stops at `until` (a time) when
    /// given. Returns the version reached.
    async fn fold(
        &self,
        stream: &StreamId,
        state: &mut A,
        mut version: Version,
        end: Version,
        until: Option<Timestamp>,
    ) -> Result<Version, Error> {
        const PAGE: usize = 4096;
        loop {
            if version >= end {
                return Ok(version);
            }
            let range = VersionRange::new(version.next(), end);
            let page = self
                .store
                .read_stream(stream, range, Direction::Forward, PAGE)
                .await?;
            let n = page.len();
            for e in &page {
                if until.is_some_and(|t| e.recorded_at > t) {
                    return Ok(version);
                }
                state.apply(&self.decode(e)?);
                version = e.version;
            }
            if n < PAGE {
                return Ok(version);
            }
        }
    }

    /// The stream's snapshot, if usable for a state at or before `max_version`.
    fn usable_snapshot(
        stream: &StreamId,
        loaded: Result<Option<Snapshot>, Error>,
        max_version: Version,
    ) -> Option<(A, Version)> {
        let snap = match loaded {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(%stream, error = %e, "ignoring unreadable snapshot; replaying");
                return None;
            }
        };
        if snap.schema_version != A::SNAPSHOT_VERSION {
            tracing::warn!(
                %stream,
                stored = snap.schema_version,
                current = A::SNAPSHOT_VERSION,
                "ignoring snapshot of another schema version; replaying"
            );
            return None;
        }
        if snap.version > max_version {
            return None;
        }
        match snap.codec.decode::<A>(A::TYPE, &snap.payload) {
            Ok(state) => Some((state, snap.version)),
            Err(e) => {
                tracing::warn!(%stream, error = %e, "ignoring undecodable snapshot; replaying");
                None
            }
        }
    }

    /// Rebuilds from storage: snapshot (if allowed) plus events up to `end`.
    async fn rebuild(
        &self,
        stream: &StreamId,
        end: Version,
        use_snapshot: bool,
    ) -> Result<(A, Version), Error> {
        if !(use_snapshot && self.reads_snapshots()) {
            let mut state = A::default();
            let version = self
                .fold(stream, &mut state, Version::NONE, end, None)
                .await?;
            return Ok((state, version));
        }
        // The snapshot and the events after it in one call (one round trip on a server).
        const PAGE: usize = 4096;
        let latest = self.store.load_latest(stream, PAGE).await?;
        // The events follow the snapshot the store returned (or start at 1 without one).
        let base = match &latest.snapshot {
            Ok(Some(s)) => s.version,
            _ => Version::NONE,
        };
        let (mut state, mut version) =
            Self::usable_snapshot(stream, latest.snapshot, end).unwrap_or_default();
        // An unusable snapshot: the events do not follow the state; replay instead.
        let mut done = version == base && latest.events.len() < PAGE;
        if version == base {
            for e in &latest.events {
                if e.version > end {
                    done = true;
                    break;
                }
                if e.version != version.next() {
                    done = false;
                    break;
                }
                state.apply(&self.decode(e)?);
                version = e.version;
            }
        }
        if !done {
            version = self.fold(stream, &mut state, version, end, None).await?;
        }
        Ok((state, version))
    }

    /// The aggregate's current state and version ([`Version::NONE`] if it has no events).
    ///
    /// # Errors
    /// Store errors, or an event that cannot be decoded (even after upcasting).
    pub async fn load(&self, id: &str) -> Res<(A, Version), A> {
        let stream = self.stream_id(id)?;
        self.load_stream(&stream).await.map_err(Into::into)
    }

    async fn load_stream(&self, stream: &StreamId) -> Result<(A, Version), Error> {
        let span = tracing::debug_span!("load", %stream);
        async move {
            let (state, version) = match self.cached(stream) {
                Some((mut state, v)) => {
                    let version = self.fold(stream, &mut state, v, Version::MAX, None).await?;
                    (state, version)
                }
                None => self.rebuild(stream, Version::MAX, true).await?,
            };
            self.remember(stream, &state, version);
            Ok((state, version))
        }
        .instrument(span)
        .await
    }

    /// The aggregate as it was at `version` (or at its last version, if lower).
    ///
    /// # Errors
    /// As [`Repository::load`].
    pub async fn load_at(&self, id: &str, version: Version) -> Res<(A, Version), A> {
        let stream = self.stream_id(id)?;
        Ok(self.rebuild(&stream, version, true).await?)
    }

    /// The aggregate as it was at time `at`: every event recorded at or before it.
    ///
    /// # Errors
    /// As [`Repository::load`].
    pub async fn load_as_of(&self, id: &str, at: Timestamp) -> Res<(A, Version), A> {
        let stream = self.stream_id(id)?;
        let mut state = A::default();
        let version = self
            .fold(&stream, &mut state, Version::NONE, Version::MAX, Some(at))
            .await?;
        Ok((state, version))
    }

    /// Every event of the aggregate, decoded, with versions, positions, times and metadata.
    ///
    /// # Errors
    /// As [`Repository::load`].
    pub async fn history(&self, id: &str) -> Res<Vec<HistoryEntry<A::Event>>, A> {
        const PAGE: usize = 4096;
        let stream = self.stream_id(id)?;
        let mut out = Vec::new();
        let mut next = Version::FIRST;
        loop {
            // In pages, so that no single read holds a long stream's records at once.
            let page = self
                .store
                .read_stream(
                    &stream,
                    VersionRange::new(next, Version::MAX),
                    Direction::Forward,
                    PAGE,
                )
                .await?;
            let n = page.len();
            for e in page {
                next = e.version.next();
                let event = self.decode(&e)?;
                out.push(HistoryEntry {
                    version: e.version,
                    position: e.position,
                    recorded_at: e.recorded_at,
                    id: e.id,
                    event_type: e.event_type,
                    metadata: e.metadata,
                    event,
                });
            }
            if n < PAGE {
                return Ok(out);
            }
        }
    }

    /// Executes `command` on aggregate `id`: load, decide, append with `Exact(version)`,
    /// retrying on fresh state after a conflict. Without a command id the command is not
    /// idempotent (see [`Repository::execute_with`]).
    ///
    /// ```
    /// use annals::prelude::*;
    ///
    /// #[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
    /// struct Counter { total: u64 }
    /// #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, DomainEvent)]
    /// enum CounterEvent { Added { n: u64 } }
    /// #[derive(Debug, PartialEq, thiserror::Error)]
    /// #[error("add at least 1")]
    /// struct Zero;
    ///
    /// impl Aggregate for Counter {
    ///     const TYPE: &'static str = "counter";
    ///     type Command = u64;
    ///     type Event = CounterEvent;
    ///     type Error = Zero;
    ///     type Services = ();
    ///     fn handle(&self, n: &u64, _: &()) -> Result<Vec<CounterEvent>, Zero> {
    ///         if *n == 0 { return Err(Zero); }
    ///         Ok(vec![CounterEvent::Added { n: *n }])
    ///     }
    ///     fn apply(&mut self, CounterEvent::Added { n }: &CounterEvent) { self.total += n; }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let counters = Repository::<Counter, _>::new(MemStore::new());
    /// let done = counters.execute("c1", &5).await?;
    /// assert_eq!((done.version.0, done.attempts), (1, 1));
    /// // A rejection is a domain error; nothing is appended.
    /// assert!(matches!(counters.execute("c1", &0).await, Err(RepositoryError::Domain(Zero))));
    /// assert_eq!(counters.load("c1").await?.0.total, 5);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`RepositoryError::Domain`] when the aggregate rejects the command;
    /// [`RepositoryError::Store`] with [`Error::Conflict`] when every retry conflicted, or
    /// any other store error.
    pub async fn execute(&self, id: &str, command: &A::Command) -> Res<Executed<A::Event>, A> {
        self.execute_with(id, command, &CommandContext::new()).await
    }

    /// [`Repository::execute`] with a context: a command id (executing it again returns
    /// the first result and appends nothing) and metadata for every event it causes.
    ///
    /// # Errors
    /// As [`Repository::execute`].
    pub async fn execute_with(
        &self,
        id: &str,
        command: &A::Command,
        ctx: &CommandContext,
    ) -> Res<Executed<A::Event>, A> {
        let stream = self.stream_id(id)?;
        let span = tracing::debug_span!("execute", %stream, aggregate = A::TYPE);
        self.execute_on(&stream, command, ctx)
            .instrument(span)
            .await
    }

    /// [`Repository::execute`] on the aggregate the command names.
    ///
    /// # Errors
    /// As [`Repository::execute`].
    pub async fn execute_command(&self, command: &A::Command) -> Res<Executed<A::Event>, A>
    where
        A::Command: Command,
    {
        self.execute_command_with(command, &CommandContext::new())
            .await
    }

    /// [`Repository::execute_with`] on the aggregate the command names.
    ///
    /// # Errors
    /// As [`Repository::execute`].
    pub async fn execute_command_with(
        &self,
        command: &A::Command,
        ctx: &CommandContext,
    ) -> Res<Executed<A::Event>, A>
    where
        A::Command: Command,
    {
        self.execute_with(&command.aggregate_id(), command, ctx)
            .await
    }

    async fn execute_on(
        &self,
        stream: &StreamId,
        command: &A::Command,
        ctx: &CommandContext,
    ) -> Res<Executed<A::Event>, A> {
        if let Some(cid) = ctx.command_id
            && let Some(done) = self.already_executed(stream, cid).await?
        {
            return Ok(done);
        }
        let metadata = ctx.event_metadata();
        let mut attempt = 0;
        loop {
            // The cached state is used optimistically: an append with `Exact(version)`
            // validates it. A decision that appends nothing (a rejection, or no events) is not
            // validated by any append, so it is taken on the cached state only if the stream
            // has nothing after it (another repository or process may have moved it on).
            let (mut state, version, decision) = match self.cached(stream) {
                Some((state, version)) => {
                    let decision = state.handle(command, &self.services);
                    if matches!(&decision, Ok(events) if !events.is_empty()) {
                        (state, version, decision)
                    } else {
                        let (state, fresh) = self.catch_up(stream, state, version).await?;
                        if fresh == version {
                            (state, version, decision)
                        } else {
                            let decision = state.handle(command, &self.services);
                            (state, fresh, decision)
                        }
                    }
                }
                None => {
                    let (state, version) = self.load_stream(stream).await?;
                    let decision = state.handle(command, &self.services);
                    (state, version, decision)
                }
            };
            let events = decision.map_err(RepositoryError::Domain)?;
            if events.is_empty() {
                return Ok(Executed {
                    events,
                    append: None,
                    version,
                    replayed: false,
                    attempts: attempt + 1,
                });
            }
            let mut data = Vec::with_capacity(events.len());
            for (i, e) in events.iter().enumerate() {
                let mut d: EventData = e.to_event_data()?.with_metadata(metadata.clone());
                if let Some(cid) = ctx.command_id {
                    d.id = event_id_for(cid, i);
                }
                data.push(d);
            }
            match self
                .store
                .append(stream, ExpectedVersion::Exact(version), data)
                .await
            {
                Ok(r) => {
                    for e in &events {
                        state.apply(e);
                    }
                    self.remember(stream, &state, r.last_version);
                    self.maybe_snapshot(stream, &state, version, r.last_version)
                        .await;
                    return Ok(Executed {
                        events,
                        append: Some(r),
                        version: r.last_version,
                        replayed: false,
                        attempts: attempt + 1,
                    });
                }
                Err(Error::Conflict { .. }) if attempt < self.retries => {
                    attempt += 1;
                    // The state decided on is true at its version: catch it up rather than
                    // replay the stream (a hot stream conflicts often and may be long).
                    if self.cache_capacity > 0 {
                        self.catch_up(stream, state, version).await?;
                    }
                    tracing::debug!(%stream, attempt, "conflict; retrying on fresh state");
                }
                Err(e) => {
                    self.forget(stream);
                    return Err(e.into());
                }
            }
        }
    }

    /// Decides `command` on aggregate `id` into `work` without appending: the events it
    /// causes (with ids derived from the work's command id, and its metadata) are appended
    /// when the work lands, atomically with everything else in it (see
    /// [`crate::process::Dispatch`]). A second command on the same aggregate in one work is
    /// decided on the state the first one left. A command id already executed on the
    /// aggregate decides nothing and returns its first events.
    ///
    /// # Errors
    /// [`RepositoryError::Domain`] when the aggregate rejects the command (nothing is added);
    /// store errors.
    pub async fn decide_into(
        &self,
        work: &mut crate::process::Work,
        id: &str,
        command: &A::Command,
    ) -> Res<Vec<A::Event>, A> {
        let stream = self.stream_id(id)?;
        let cid = work.command_id();
        let (mut state, version) = match work.state::<A>(&stream) {
            Some(decided) => decided,
            None => {
                if let Some(done) = self.already_executed(&stream, cid).await? {
                    return Ok(done.events);
                }
                self.load_stream(&stream).await?
            }
        };
        let events = state
            .handle(command, &self.services)
            .map_err(RepositoryError::Domain)?;
        if events.is_empty() {
            return Ok(events);
        }
        let metadata = work.metadata().clone();
        let mut data = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            data.push(
                e.to_event_data()?
                    .with_metadata(metadata.clone())
                    .with_id(event_id_for(cid, i)),
            );
        }
        for e in &events {
            state.apply(e);
        }
        let after = Version(version.0 + events.len() as u64);
        let part =
            annals_core::StreamAppend::new(stream.clone(), ExpectedVersion::Exact(version), data);
        let repo = self.clone();
        let landed_state = state.clone();
        // When the work does not land (another writer moved a stream), the cache keeps what
        // it had: a true state at its version, which the next load catches up from.
        work.add(part, state, after, move |stored| {
            if stored {
                repo.remember(&stream, &landed_state, after);
            }
        });
        Ok(events)
    }

    /// `state` (at `version`) with the stream's later events folded in, remembered.
    async fn catch_up(
        &self,
        stream: &StreamId,
        mut state: A,
        version: Version,
    ) -> Result<(A, Version), Error> {
        let fresh = self
            .fold(stream, &mut state, version, Version::MAX, None)
            .await?;
        if fresh != version {
            self.remember(stream, &state, fresh);
        }
        Ok((state, fresh))
    }

    /// The first result of command `cid` if it was executed before.
    async fn already_executed(
        &self,
        stream: &StreamId,
        cid: Uuid,
    ) -> Res<Option<Executed<A::Event>>, A> {
        let Some(first) = self.store.read_event(event_id_for(cid, 0)).await? else {
            return Ok(None);
        };
        if first.stream != *stream {
            return Err(Error::DuplicateEventId {
                id: first.id,
                position: first.position,
            }
            .into());
        }
        let later = self
            .store
            .read_stream(
                stream,
                VersionRange::new(first.version, Version::MAX),
                Direction::Forward,
                1024,
            )
            .await?;
        let mine: Vec<&RecordedEvent> = later
            .iter()
            .enumerate()
            .take_while(|(i, e)| e.id == event_id_for(cid, *i))
            .map(|(_, e)| e)
            .collect();
        let mut events = Vec::with_capacity(mine.len());
        for e in &mine {
            events.push(self.decode(e)?);
        }
        let (Some(a), Some(b)) = (mine.first(), mine.last()) else {
            return Ok(None);
        };
        let append = AppendResult::new(a.version, b.version, a.position, b.position);
        Ok(Some(Executed {
            events,
            append: Some(append),
            version: b.version,
            replayed: true,
            attempts: 0,
        }))
    }

    /// Snapshots `state` (which includes exactly the events up to `to`) when the append from
    /// `from` to `to` crossed a multiple of the snapshot interval.
    async fn maybe_snapshot(&self, stream: &StreamId, state: &A, from: Version, to: Version) {
        let n = self.snapshot_every;
        if n == 0 || from.0 / n == to.0 / n {
            return;
        }
        let payload = match CodecId::BINCODE.encode(A::TYPE, state) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%stream, error = %e, "cannot encode snapshot");
                return;
            }
        };
        let snapshot = Snapshot::new(
            to,
            A::SNAPSHOT_VERSION,
            CodecId::BINCODE,
            payload,
            Timestamp::now(),
        );
        // Off the command's path: queued for the store's next write, not waited for.
        if let Err(e) = self.store.queue_snapshot(stream, snapshot).await {
            tracing::warn!(%stream, error = %e, "cannot save snapshot");
        }
    }

    /// Takes a snapshot of the aggregate's current state now.
    ///
    /// # Errors
    /// As [`Repository::load`], or the store's error saving it.
    pub async fn snapshot_now(&self, id: &str) -> Res<Version, A> {
        let stream = self.stream_id(id)?;
        let (state, version) = self.load_stream(&stream).await?;
        let payload = CodecId::BINCODE.encode(A::TYPE, &state)?;
        let snapshot = Snapshot::new(
            version,
            A::SNAPSHOT_VERSION,
            CodecId::BINCODE,
            payload,
            Timestamp::now(),
        );
        self.store.save_snapshot(&stream, snapshot).await?;
        Ok(version)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use annals_store::MemStore;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Noted;

    impl DomainEvent for Noted {
        fn event_type(&self) -> &'static str {
            "Noted"
        }
        fn schema_version(&self) -> u32 {
            1
        }
        fn event_types() -> &'static [(&'static str, u32)] {
            &[("Noted", 1)]
        }
        fn encode_payload(&self, codec: CodecId) -> Result<Vec<u8>, Error> {
            codec.encode("Noted", self)
        }
        fn decode_payload(event_type: &str, codec: CodecId, payload: &[u8]) -> Result<Self, Error> {
            codec.decode(event_type, payload)
        }
    }

    #[derive(Default, Clone, Debug, Serialize, Deserialize)]
    struct Note;

    impl Aggregate for Note {
        const TYPE: &'static str = "note";
        type Command = ();
        type Event = Noted;
        type Error = std::convert::Infallible;
        type Services = ();
        fn handle(&self, _: &(), _: &()) -> Result<Vec<Noted>, Self::Error> {
            Ok(vec![Noted])
        }
        fn apply(&mut self, _: &Noted) {}
    }

    /// The aggregate cache keeps the most recently used aggregates.
    #[tokio::test]
    async fn the_cache_evicts_the_least_recently_used() {
        let repo = Repository::<Note, _>::new(MemStore::new()).cache_capacity(2);
        for id in ["a", "b"] {
            repo.execute(id, &()).await.unwrap();
        }
        repo.load("a").await.unwrap(); // a is now the most recently used
        repo.execute("c", &()).await.unwrap();
        let cached: Vec<String> = lock(&repo.cache)
            .iter()
            .map(|(k, _)| k.to_string())
            .collect();
        assert_eq!(cached, ["note-c", "note-a"]);
    }
}
