//! Subscriptions to the global log and the [`Filter`] they (and filtered reads) apply.

use std::collections::VecDeque;

use tokio::sync::watch;

use crate::envelope::RecordedEvent;
use crate::error::{Error, Result};
use crate::ids::Position;
use crate::store::EventStore;

/// Selects events by stream-name prefix and/or event type. The default filter matches
/// everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only events of streams whose name starts with this.
    pub stream_prefix: Option<String>,
    /// Only events of these types (any of them).
    pub event_types: Option<Vec<String>>,
}

impl Filter {
    /// Events of streams whose name starts with `prefix`.
    pub fn stream_prefix(prefix: impl Into<String>) -> Self {
        Self {
            stream_prefix: Some(prefix.into()),
            event_types: None,
        }
    }

    /// Events of the given types.
    pub fn event_types<I, S>(types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            stream_prefix: None,
            event_types: Some(types.into_iter().map(Into::into).collect()),
        }
    }

    /// Adds a stream prefix to this filter.
    pub fn and_stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stream_prefix = Some(prefix.into());
        self
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        let prefix_ok = self
            .stream_prefix
            .as_deref()
            .is_none_or(|p| event.stream.as_str().starts_with(p));
        let type_ok = self
            .event_types
            .as_ref()
            .is_none_or(|types| types.contains(&event.event_type));
        prefix_ok && type_ok
    }
}

/// How many events a subscription reads from storage at a time.
const PAGE: usize = 512;

/// A subscription to the global log: catches up from storage, then follows new events as
/// they become durable.
///
/// There is one mechanism for both phases: the subscription reads pages from storage while
/// the store's head is ahead of it and otherwise waits for the head to move. So there is no
/// seam where events could be skipped or repeated, and a slow subscriber never holds up the
/// writer: it simply falls behind and reads from storage.
///
/// ```
/// # async fn demo<S: annals_core::EventStore>(store: S) -> annals_core::Result<()> {
/// use annals_core::{EventStore, Position};
/// let mut sub = store.subscribe_all(Position::NONE);
/// while let Some(event) = sub.next().await {
///     let event = event?;
///     // handle event.position, event.event_type, event.decode::<T>() ...
/// #   let _ = event; break;
/// }
/// # Ok(()) }
/// ```
pub struct Subscription<S> {
    store: S,
    next: Position,
    filter: Filter,
    buffer: VecDeque<RecordedEvent>,
    head: watch::Receiver<Position>,
}

impl<S: EventStore> Subscription<S> {
    /// A subscription delivering events from `from` (inclusive) that pass `filter`.
    pub fn new(store: S, from: Position, filter: Filter) -> Self {
        let head = store.watch_head();
        Self {
            store,
            next: from.max(Position::FIRST),
            filter,
            buffer: VecDeque::new(),
            head,
        }
    }

    /// The position the subscription will read next (one past the last event it has read
    /// from storage, whether or not that event passed the filter).
    pub fn position(&self) -> Position {
        self.next
    }

    /// Waits for the next event. Returns `None` only when the store has shut down.
    ///
    /// An error (for example [`Error::Corrupt`]) is returned as `Some(Err(..))`; calling
    /// `next` again retries the same position: events are never skipped silently.
    pub async fn next(&mut self) -> Option<Result<RecordedEvent>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Some(Ok(event));
            }
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Waits until at least one event is available, then returns up to `max` of them
    /// (`max` of 0 is taken as 1). `None` when the store has shut down.
    pub async fn next_batch(&mut self, max: usize) -> Option<Result<Vec<RecordedEvent>>> {
        let max = max.max(1);
        while self.buffer.is_empty() {
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
        let n = max.min(self.buffer.len());
        Some(Ok(self.buffer.drain(..n).collect()))
    }

    /// Returns any buffered events without waiting (possibly none).
    pub fn try_drain(&mut self) -> Vec<RecordedEvent> {
        self.buffer.drain(..).collect()
    }

    /// Reads one page into the buffer, waiting for the head to move if there is nothing to
    /// read. `Ok(false)` when the store is gone.
    async fn fill(&mut self) -> Result<bool> {
        loop {
            let head = *self.head.borrow_and_update();
            if head >= self.next {
                // A damaged record fails the whole page: read one event at a time up to
                // it, so every good event before it is still delivered.
                let page = match self.store.read_all(self.next, PAGE).await {
                    Ok(page) => page,
                    Err(_) => self.store.read_all(self.next, 1).await?,
                };
                let Some(last) = page.last() else {
                    return Err(Error::corrupt(
                        self.next,
                        format!(
                            "head is at {head} but position {} cannot be read",
                            self.next
                        ),
                    ));
                };
                if page[0].position != self.next {
                    return Err(Error::corrupt(
                        self.next,
                        format!("expected position {}, read {}", self.next, page[0].position),
                    ));
                }
                self.next = last.position.next();
                let filter = &self.filter;
                self.buffer
                    .extend(page.into_iter().filter(|e| filter.matches(e)));
                return Ok(true);
            }
            if self.head.changed().await.is_err() {
                return Ok(false);
            }
        }
    }
}
