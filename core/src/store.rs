//! The [`EventStore`] trait and the shapes of its requests and answers.

use std::future::Future;
use std::ops::{RangeFrom, RangeFull, RangeInclusive};

use tokio::sync::watch;

use crate::envelope::{EventData, RecordedEvent};
use crate::error::Result;
use crate::expected::ExpectedVersion;
use crate::ids::{EventId, Position, StreamId, Version};
use crate::subscription::{Filter, Subscription};

/// The order in which a stream is read.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Direction {
    /// Oldest first.
    #[default]
    Forward,
    /// Newest first.
    Backward,
}

/// An inclusive range of stream versions, e.g. `VersionRange::from(3..=7)`, `(3..).into()`
/// or `(..).into()` for the whole stream.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct VersionRange {
    /// The lowest version included.
    pub start: Version,
    /// The highest version included.
    pub end: Version,
}

impl VersionRange {
    /// Every version.
    pub const ALL: VersionRange = VersionRange {
        start: Version::FIRST,
        end: Version::MAX,
    };

    /// `start..=end`.
    pub fn new(start: Version, end: Version) -> Self {
        Self { start, end }
    }

    /// Whether `v` is in the range.
    pub fn contains(&self, v: Version) -> bool {
        self.start <= v && v <= self.end
    }
}

impl From<RangeInclusive<u64>> for VersionRange {
    fn from(r: RangeInclusive<u64>) -> Self {
        Self::new(Version(*r.start()), Version(*r.end()))
    }
}

impl From<RangeFrom<u64>> for VersionRange {
    fn from(r: RangeFrom<u64>) -> Self {
        Self::new(Version(r.start), Version::MAX)
    }
}

impl From<RangeFull> for VersionRange {
    fn from(_: RangeFull) -> Self {
        Self::ALL
    }
}

/// What an append stored (or, for an idempotent re-append, had stored the first time).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct AppendResult {
    /// The version of the first event appended.
    pub first_version: Version,
    /// The version of the last event appended: the stream's version right after the append,
    /// to pass as `ExpectedVersion::Exact` next time.
    pub last_version: Version,
    /// The global position of the first event appended.
    pub first_position: Position,
    /// The global position of the last event appended.
    pub last_position: Position,
}

impl AppendResult {
    /// The result of an append of versions `first_version..=last_version` at positions
    /// `first_position..=last_position`.
    pub fn new(
        first_version: Version,
        last_version: Version,
        first_position: Position,
        last_position: Position,
    ) -> Self {
        Self {
            first_version,
            last_version,
            first_position,
            last_position,
        }
    }
}

/// One stream's part of an [`EventStore::append_many`]: the events to append to `stream` if it
/// satisfies `expected`.
///
/// ```
/// use annals_core::{EventData, ExpectedVersion, StreamAppend, StreamId};
/// let part = StreamAppend::new(
///     StreamId::new("order-7")?,
///     ExpectedVersion::NoStream,
///     vec![EventData::encode("Placed", &7u32)?],
/// );
/// assert_eq!(part.events.len(), 1);
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StreamAppend {
    /// The stream appended to.
    pub stream: StreamId,
    /// What the stream must be at for this part (and so the whole call) to go ahead.
    pub expected: ExpectedVersion,
    /// The events, in order; at least one.
    pub events: Vec<EventData>,
}

impl StreamAppend {
    /// `events` for `stream`, if it satisfies `expected`.
    pub fn new(stream: StreamId, expected: ExpectedVersion, events: Vec<EventData>) -> Self {
        Self {
            stream,
            expected,
            events,
        }
    }
}

impl From<(StreamId, ExpectedVersion, Vec<EventData>)> for StreamAppend {
    fn from((stream, expected, events): (StreamId, ExpectedVersion, Vec<EventData>)) -> Self {
        Self::new(stream, expected, events)
    }
}

/// Where a stored event sits in the append that stored it. Stores keep these two bits per
/// event so that an idempotent re-append can be told from a re-append of part of one: only
/// a whole original append returns the original result.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct AppendMarks {
    /// The first event of its append.
    pub first: bool,
    /// The last event of its append.
    pub last: bool,
}

impl AppendMarks {
    /// Marks as stored: `first` and `last` of their append.
    pub fn new(first: bool, last: bool) -> Self {
        Self { first, last }
    }

    /// The marks of the `i`-th (from 0) of `n` events of one append.
    pub fn of(i: usize, n: usize) -> Self {
        Self {
            first: i == 0,
            last: i + 1 == n,
        }
    }

    /// Whether stored events with these marks, in position order, are exactly one append:
    /// it begins at the first, ends at the last, and neither begins nor ends in between.
    ///
    /// ```
    /// use annals_core::AppendMarks;
    /// let append: Vec<_> = (0..3).map(|i| AppendMarks::of(i, 3)).collect();
    /// assert!(AppendMarks::whole(&append));
    /// assert!(!AppendMarks::whole(&append[..2]));
    /// assert!(!AppendMarks::whole(&[append[2], AppendMarks::of(0, 1)]));
    /// ```
    pub fn whole(marks: &[AppendMarks]) -> bool {
        let n = marks.len();
        n > 0 && marks.iter().enumerate().all(|(i, m)| *m == Self::of(i, n))
    }
}

/// An event store: optimistic-concurrency streams over a gap-free global log.
///
/// Implementations (the sled store, the in-memory store, server backends) must pass the
/// conformance suite in `annals-conformance`. The contract in short:
///
/// * **Atomic append**: the events of one `append` are all stored or none are; the parts of
///   one `append_many` too, across streams.
/// * **No holes**: positions are contiguous from 1, assigned in commit order; a reader never
///   sees position `n + 1` before `n`.
/// * **Durable acknowledgement** (in the default mode): `append` returns only after its
///   events are on disk; readers and subscribers never see an event that could still be lost.
/// * **Optimistic concurrency**: with `Exact(v)` at most one of concurrent appends wins.
/// * **Idempotent append**: appending events whose ids are already stored by an identical
///   append (the whole of it, nothing more: see [`AppendMarks`]) returns the original result
///   and stores nothing twice.
///
/// Handles are cheap to clone and share one store.
pub trait EventStore: Clone + Send + Sync + 'static {
    /// Appends `events` to `stream` if the stream satisfies `expected`.
    ///
    /// # Errors
    /// [`Error::Conflict`](crate::Error::Conflict) when `expected` does not hold;
    /// [`Error::InvalidEvent`](crate::Error::InvalidEvent) for an empty or malformed append;
    /// [`Error::DuplicateEventId`](crate::Error::DuplicateEventId) when an id is stored with
    /// other content; infrastructure errors otherwise.
    fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> impl Future<Output = Result<AppendResult>> + Send;

    /// Appends to several streams at once, all or nothing: every part's `expected` is checked
    /// and, if one fails (a conflict, a malformed part, a duplicate id), nothing is stored and
    /// that part's error is returned. The events stored take one contiguous range of global
    /// positions, in the order of the parts. Returns one result per part, in order.
    ///
    /// Parts are decided in order, as if appended one after the other in one instant: a
    /// stream may appear in two parts, the later one expecting the version the earlier one
    /// leaves. A part whose events are an earlier append's, whole and identical, is an
    /// idempotent re-append like [`EventStore::append`]'s: it returns the original result
    /// and stores nothing again (so a retried `append_many` that had landed stores nothing).
    ///
    /// # Errors
    /// As [`EventStore::append`], for the first part that fails;
    /// [`Error::InvalidEvent`](crate::Error::InvalidEvent) for an empty list of parts.
    fn append_many(
        &self,
        appends: Vec<StreamAppend>,
    ) -> impl Future<Output = Result<Vec<AppendResult>>> + Send;

    /// Reads at most `limit` events of `stream` whose versions lie in `range`, oldest or newest
    /// first. A stream that does not exist reads as empty.
    fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
        direction: Direction,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send;

    /// Reads at most `limit` events of the global log, starting at position `from`
    /// (inclusive; `Position::NONE` reads from the start).
    fn read_all(
        &self,
        from: Position,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send;

    /// The stream's current version, `None` when it has no events.
    fn stream_head(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Version>>> + Send;

    /// The stored event with id `id`, if any (and visible to readers).
    fn read_event(&self, id: EventId)
    -> impl Future<Output = Result<Option<RecordedEvent>>> + Send;

    /// The position of the last event readers may see (`Position::NONE` for an empty log).
    fn head_position(&self) -> Position;

    /// A receiver that changes whenever [`EventStore::head_position`] moves: what
    /// subscriptions wait on. Sending never blocks the store's writer.
    fn watch_head(&self) -> watch::Receiver<Position>;

    /// Like [`EventStore::read_all`] but only events matching `filter`: scans forward from
    /// `from` until `limit` matching events are found or the log ends.
    fn read_all_filtered(
        &self,
        from: Position,
        limit: usize,
        filter: &Filter,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send {
        async move {
            let mut out = Vec::new();
            let mut next = from;
            let page = limit.clamp(1, 1024);
            while out.len() < limit {
                let events = self.read_all(next, page).await?;
                let Some(last) = events.last() else { break };
                next = last.position.next();
                out.extend(events.into_iter().filter(|e| filter.matches(e)));
            }
            out.truncate(limit);
            Ok(out)
        }
    }

    /// Subscribes to the global log from position `from` (inclusive): delivers every stored
    /// event from there in order, then each new one as soon as it is durable, with no gap or
    /// duplicate at the switch from catching up to live.
    fn subscribe_all(&self, from: Position) -> Subscription<Self> {
        Subscription::new(self.clone(), from, Filter::default())
    }

    /// Like [`EventStore::subscribe_all`], delivering only events matching `filter`.
    fn subscribe_filtered(&self, from: Position, filter: Filter) -> Subscription<Self> {
        Subscription::new(self.clone(), from, filter)
    }
}
