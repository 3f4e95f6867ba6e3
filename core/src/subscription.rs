//! Subscriptions to the global log and the [`Filter`] they (and filtered reads) apply.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use tokio::sync::watch;

use crate::envelope::RecordedEvent;
use crate::error::{Error, Result};
use crate::ids::Position;
use crate::store::EventStore;

/// Selects events by stream-name prefix and/or event type. The default filter matches
/// everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
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

    /// Every event (the default).
    pub fn all() -> Self {
        Self::default()
    }

    /// Keeps only events of the given types, beside the stream prefix.
    pub fn and_event_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types = Some(types.into_iter().map(Into::into).collect());
        self
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
    reader: Reader<S>,
    next: Position,
    filter: Filter,
    buffer: VecDeque<RecordedEvent>,
}

/// Where a subscription reads: the store, the next position and the head it watches. A read
/// in flight owns it (so the subscription can be polled as a [`Stream`]) and gives it back.
struct Cursor<S> {
    store: S,
    next: Position,
    head: watch::Receiver<Position>,
}

/// One page read from storage (`None`: the store is gone), and the cursor back.
type Page<S> = (Cursor<S>, Result<Option<Vec<RecordedEvent>>>);

/// The subscription's reading state.
enum Reader<S> {
    /// No read in flight.
    Idle(Cursor<S>),
    /// A read in flight (kept across polls, so a cancelled `next` loses nothing).
    Reading(Pin<Box<dyn Future<Output = Page<S>> + Send>>),
    /// Only while switching between the two.
    Switching,
}

// The subscription never pins its fields: a read in flight is boxed.
impl<S> Unpin for Subscription<S> {}

impl<S: EventStore> Subscription<S> {
    /// A subscription delivering events from `from` (inclusive) that pass `filter`.
    pub fn new(store: S, from: Position, filter: Filter) -> Self {
        let head = store.watch_head();
        let next = from.max(Position::FIRST);
        Self {
            reader: Reader::Idle(Cursor { store, next, head }),
            next,
            filter,
            buffer: VecDeque::new(),
        }
    }

    /// The position the subscription will read next (one past the last event it has read
    /// from storage, whether or not that event passed the filter).
    pub fn position(&self) -> Position {
        self.next
    }

    /// The position to resume from so that no event this subscription has read but not yet
    /// handed out is skipped: the first buffered event's position, or [`position`] when
    /// nothing is buffered. Everything below it has been handed out (or filtered out).
    ///
    /// [`position`]: Subscription::position
    pub fn resume_position(&self) -> Position {
        self.buffer.front().map_or(self.next, |e| e.position)
    }

    /// Waits for the next event. Returns `None` only when the store has shut down.
    ///
    /// An error (for example [`Error::Corrupt`]) is returned as `Some(Err(..))`; calling
    /// `next` again retries the same position: events are never skipped silently. The same
    /// as polling the subscription as a [`Stream`].
    pub async fn next(&mut self) -> Option<Result<RecordedEvent>> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Waits until at least one event is available, then returns up to `max` of them
    /// (`max` of 0 is taken as 1). `None` when the store has shut down.
    pub async fn next_batch(&mut self, max: usize) -> Option<Result<Vec<RecordedEvent>>> {
        let max = max.max(1);
        std::future::poll_fn(|cx| {
            while self.buffer.is_empty() {
                match self.poll_fill(cx) {
                    Poll::Ready(Ok(true)) => {}
                    Poll::Ready(Ok(false)) => return Poll::Ready(None),
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let n = max.min(self.buffer.len());
            Poll::Ready(Some(Ok(self.buffer.drain(..n).collect())))
        })
        .await
    }

    /// Returns any buffered events without waiting (possibly none).
    pub fn try_drain(&mut self) -> Vec<RecordedEvent> {
        self.buffer.drain(..).collect()
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<RecordedEvent>>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(true)) => {}
                Poll::Ready(Ok(false)) => return Poll::Ready(None),
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Reads one page into the buffer, waiting for the head to move if there is nothing to
    /// read. `Ok(false)` when the store is gone.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool>> {
        loop {
            match std::mem::replace(&mut self.reader, Reader::Switching) {
                Reader::Idle(cursor) => self.reader = Reader::Reading(Box::pin(cursor.read())),
                Reader::Reading(mut read) => match read.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.reader = Reader::Reading(read);
                        return Poll::Pending;
                    }
                    Poll::Ready((cursor, page)) => {
                        self.next = cursor.next;
                        self.reader = Reader::Idle(cursor);
                        return Poll::Ready(page.map(|page| match page {
                            Some(page) => {
                                let filter = &self.filter;
                                self.buffer
                                    .extend(page.into_iter().filter(|e| filter.matches(e)));
                                true
                            }
                            None => false,
                        }));
                    }
                },
                Reader::Switching => {
                    return Poll::Ready(Err(Error::storage(
                        "subscription polled while switching reads",
                    )));
                }
            }
        }
    }
}

impl<S: EventStore> Cursor<S> {
    /// Reads the next page, waiting for the head to move if there is nothing to read.
    async fn read(mut self) -> Page<S> {
        let page = self.read_page().await;
        (self, page)
    }

    async fn read_page(&mut self) -> Result<Option<Vec<RecordedEvent>>> {
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
                return Ok(Some(page));
            }
            if self.head.changed().await.is_err() {
                return Ok(None);
            }
        }
    }
}

/// A subscription is a stream of events (`futures::StreamExt` and `tokio_stream` work on
/// it); it ends only when the store shuts down.
impl<S: EventStore> Stream for Subscription<S> {
    type Item = Result<RecordedEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_event(cx)
    }
}
