//! The store engine shared by [`SledStore`](crate::SledStore) and
//! [`MemStore`](crate::MemStore): one writer thread doing group commit, and readers bounded by
//! the durable head.
//!
//! This file is the handle: [`Engine::open`] (format check, head recovery, writer start) and
//! what handles ask of the store. `read.rs` is the read half that readers and the writer
//! share; `writer.rs` is the writer thread and its group commit.

mod read;
mod writer;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use annals_core::{
    AppendResult, Direction, Error, EventData, EventId, ExpectedVersion, Position, RecordedEvent,
    Result, StreamAppend, StreamId, Timestamp, Version, VersionRange,
};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use crate::backend::{Backend, Flow};
use crate::config::StoreConfig;
use crate::format::{self, StreamEntry};
use crate::layout::{self, event_key, parse_event_key, parse_stream_key};
use writer::Writer;

const CONTINUE: Flow = ControlFlow::Continue(());
const BREAK: Flow = ControlFlow::Break(());

/// The writer's stream-head cache is cleared when it grows past this many streams.
const HEAD_CACHE_LIMIT: usize = 1 << 16;
/// The writer's cache of id buckets is cleared when it holds more than this many ids
/// (about 6 MiB).
const ID_CACHE_LIMIT: usize = 1 << 17;

/// A queued append: one stream's (`append`) or several streams' at once (`append_many`).
struct AppendRequest {
    parts: Vec<StreamAppend>,
    /// A result per part.
    reply: oneshot::Sender<Result<Vec<AppendResult>>>,
}

impl AppendRequest {
    fn events(&self) -> usize {
        self.parts.iter().map(|p| p.events.len()).sum()
    }
}

/// A key and value to write outside the log, and who to tell.
type Put = (Vec<u8>, Vec<u8>, oneshot::Sender<Result<()>>);

enum Msg {
    Append(AppendRequest),
    Flush(oneshot::Sender<Result<()>>),
    /// A key outside the log (a snapshot), written with the next group.
    Put(Vec<u8>, Vec<u8>, oneshot::Sender<Result<()>>),
}

/// State shared by the handles and the writer thread.
pub(crate) struct Shared<B> {
    backend: B,
    /// Readers see positions up to this one: the durable head (in `Periodic` mode, the
    /// written head).
    visible: AtomicU64,
    head_tx: watch::Sender<Position>,
    poisoned: Mutex<Option<String>>,
    config: StoreConfig,
}

struct Inner<B: Backend> {
    shared: Arc<Shared<B>>,
    tx: Option<flume::Sender<Msg>>,
    writer: Option<JoinHandle<()>>,
}

impl<B: Backend> Drop for Inner<B> {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued, flush, and exit; joining
        // it means the backend (and sled's file lock) is released when the last handle goes.
        self.tx = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// A handle on an open store; clones share it.
pub(crate) struct Engine<B: Backend> {
    inner: Arc<Inner<B>>,
}

impl<B: Backend> Clone for Engine<B> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// Runs blocking `work` (opening or closing a store) on a thread of its own and waits for it
/// without blocking the calling task's thread.
pub(crate) async fn on_own_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (done, finished) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = done.send(work());
        })?;
    finished.await.map_err(|_| Error::Closed)
}

/// What a store's format marker says.
pub(crate) enum Marker {
    /// A format this build reads.
    Reads(u8),
    /// Bytes that name no format this build reads.
    Unknown(Vec<u8>),
    /// No marker, on a key space that is empty or not.
    Missing {
        /// Whether the key space holds nothing at all.
        empty: bool,
    },
}

/// Reads the store's format marker: the one reading `open` and `verify` share.
pub(crate) fn read_marker<B: Backend>(backend: &B) -> Result<Marker> {
    Ok(match backend.get(layout::FORMAT_KEY)? {
        Some(v) => match v.as_ref() {
            [f] if layout::STORE_FORMATS_READ.contains(f) => Marker::Reads(*f),
            other => Marker::Unknown(other.to_vec()),
        },
        None => {
            let mut empty = true;
            backend.scan(&[0], &[0xff], false, &mut |_, _| {
                empty = false;
                Ok(BREAK)
            })?;
            Marker::Missing { empty }
        }
    })
}

/// Step 1 of opening: the store's format marker must name a format this build reads. An
/// older one is rewritten to this build's (what it writes from now on needs the new marker,
/// so that older builds refuse the store instead of misreading it); an empty store gets one.
fn check_format<B: Backend>(backend: &B) -> Result<()> {
    let incompatible = |found: String| Error::IncompatibleFormat {
        found,
        reads: format!("{:?}", layout::STORE_FORMATS_READ),
    };
    let write_marker = match read_marker(backend)? {
        Marker::Reads(f) => f != layout::STORE_FORMAT,
        Marker::Unknown(v) => return Err(incompatible(format!("marker {v:?}"))),
        Marker::Missing { empty: true } => true,
        Marker::Missing { empty: false } => {
            return Err(incompatible("data but no format marker".into()));
        }
    };
    if write_marker {
        backend.apply(vec![(
            layout::FORMAT_KEY.to_vec(),
            vec![layout::STORE_FORMAT],
        )])?;
        backend.flush()?;
        backend.sync_data()?;
    }
    Ok(())
}

/// Step 2 of opening: the head is the last record of the last chunk (whose checksums must
/// hold: a store whose last chunk is damaged refuses to open rather than guess), with its
/// time, which later commits never go below.
fn recover_head<B: Backend>(backend: &B) -> Result<(Position, Timestamp)> {
    let mut last: Option<RecordedEvent> = None;
    backend.scan(
        &event_key(Position::NONE),
        &event_key(Position::MAX),
        true,
        &mut |k, v| {
            let first = parse_event_key(k)
                .ok_or_else(|| Error::corrupt(Position::NONE, "malformed event key"))?;
            last = format::decode_chunk(v, first)?.pop();
            Ok(BREAK)
        },
    )?;
    Ok(last.map_or((Position::NONE, Timestamp(0)), |e| {
        (e.position, e.recorded_at)
    }))
}

impl<B: Backend> Engine<B> {
    /// Opens the engine on `backend`: checks the format, finds the head, starts the writer.
    pub(crate) fn open(backend: B, config: StoreConfig, name: &str) -> Result<Self> {
        check_format(&backend)?;
        let (head, last_ts) = recover_head(&backend)?;
        let (head_tx, _) = watch::channel(head);
        let shared = Arc::new(Shared {
            backend,
            visible: AtomicU64::new(head.0),
            head_tx,
            poisoned: Mutex::new(None),
            config,
        });
        let (tx, rx) = flume::bounded(shared.config.queue_capacity.max(1));
        let mut writer = Writer::new(Arc::clone(&shared), rx, head, last_ts);
        let handle = std::thread::Builder::new()
            .name(format!("annals-writer-{name}"))
            .spawn(move || writer.run())?;
        tracing::debug!(head = head.0, "store opened");
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                tx: Some(tx),
                writer: Some(handle),
            }),
        })
    }

    fn shared(&self) -> &Shared<B> {
        &self.inner.shared
    }

    fn visible(&self) -> Position {
        Position(self.shared().visible.load(Ordering::Acquire))
    }

    fn check_poisoned(&self) -> Result<()> {
        match &*self
            .shared()
            .poisoned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    pub(crate) async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Result<AppendResult> {
        let span = tracing::debug_span!("append", stream = %stream, events = events.len());
        async move {
            self.check_poisoned()?;
            let results = self
                .request(|reply| {
                    Msg::Append(AppendRequest {
                        parts: vec![StreamAppend::new(stream.clone(), expected, events)],
                        reply,
                    })
                })
                .await?;
            // One part, one result.
            results.into_iter().next().ok_or(Error::Closed)
        }
        .instrument(span)
        .await
    }

    pub(crate) async fn append_many(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        let span = tracing::debug_span!(
            "append_many",
            streams = parts.len(),
            events = parts.iter().map(|p| p.events.len()).sum::<usize>()
        );
        async move {
            self.check_poisoned()?;
            if parts.is_empty() {
                return Err(Error::InvalidEvent {
                    reason: "append_many needs at least one append".into(),
                });
            }
            self.request(|reply| Msg::Append(AppendRequest { parts, reply }))
                .await
        }
        .instrument(span)
        .await
    }

    /// Queues the message `make` builds around a reply channel, and waits for the reply.
    async fn request<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Msg) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.send(make(reply)).await?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Queues `msg` for the writer (waiting only while the queue is full).
    async fn send(&self, msg: Msg) -> Result<()> {
        let tx = self.inner.tx.as_ref().ok_or(Error::Closed)?;
        tx.send_async(msg).await.map_err(|_| Error::Closed)
    }

    /// Writes a key outside the log (a snapshot) with the next group commit.
    pub(crate) async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.check_poisoned()?;
        self.request(|reply| Msg::Put(key, value, reply)).await
    }

    /// Queues a key outside the log (a snapshot) for the next group commit without waiting
    /// for it; a later `flush` is queued behind it, so it waits for it too.
    pub(crate) async fn put_soon(&self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.check_poisoned()?;
        // Nobody waits for the reply: the writer's send to it fails quietly.
        let (reply, _) = oneshot::channel();
        self.send(Msg::Put(key, value, reply)).await
    }

    /// Reads a key outside the log.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.shared().backend.get(key)?.map(|v| v.as_ref().to_vec()))
    }

    /// The event with id `id`, if stored and visible.
    pub(crate) fn read_event(&self, id: EventId) -> Result<Option<RecordedEvent>> {
        let Some(position) = self.shared().lookup_id(id)? else {
            return Ok(None);
        };
        if position > self.visible() {
            return Ok(None);
        }
        let mut events = self.shared().read_all(position, 1, position)?;
        match events.pop() {
            Some(e) if e.id == id => Ok(Some(e)),
            _ => Err(Error::corrupt(
                position,
                format!("id index of {id} points at another event"),
            )),
        }
    }

    /// Drops this handle on a thread of its own and waits for that to finish: when it is the
    /// last handle, dropping it stops the writer and releases the backend.
    pub(crate) async fn close(self) -> Result<()> {
        on_own_thread("annals-close", move || drop(self)).await
    }

    /// Flushes and syncs now (useful in `Periodic` mode; a no-op cost in `Durable` mode).
    pub(crate) async fn flush(&self) -> Result<()> {
        self.request(Msg::Flush).await
    }

    pub(crate) fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let _span = tracing::trace_span!("read_stream", stream = %stream).entered();
        self.shared()
            .read_stream(stream, range, direction, limit, self.visible())
    }

    pub(crate) fn read_all(&self, from: Position, limit: usize) -> Result<Vec<RecordedEvent>> {
        let _span = tracing::trace_span!("read_all", from = from.0, limit).entered();
        self.shared().read_all(from, limit, self.visible())
    }

    pub(crate) fn stream_head(&self, stream: &StreamId) -> Result<Option<Version>> {
        self.shared().stream_head(stream, self.visible())
    }

    pub(crate) fn head_position(&self) -> Position {
        self.visible()
    }

    pub(crate) fn watch_head(&self) -> watch::Receiver<Position> {
        self.shared().head_tx.subscribe()
    }

    pub(crate) fn streams(&self) -> Result<Vec<(StreamId, Version)>> {
        let visible = self.visible();
        let mut out: Vec<(StreamId, Version)> = Vec::new();
        self.shared().backend.scan(
            &[layout::STREAMS],
            &[layout::STREAMS, 0xff],
            false,
            &mut |k, v| {
                let Some((name, version)) = parse_stream_key(k) else {
                    return Ok(CONTINUE);
                };
                let entry = StreamEntry::decode(version, v, "stream index entry")?;
                let Some(last) = entry.last_version_within(visible) else {
                    return Ok(CONTINUE);
                };
                let name = std::str::from_utf8(name)
                    .map_err(|_| Error::corrupt(Position::NONE, "stream name is not UTF-8"))?;
                match out.last_mut() {
                    Some((s, v)) if s.as_str() == name => *v = last,
                    _ => out.push((StreamId::new(name)?, last)),
                }
                Ok(CONTINUE)
            },
        )?;
        Ok(out)
    }

    #[cfg_attr(not(feature = "sled"), allow(dead_code))]
    pub(crate) fn size_on_disk(&self) -> Result<u64> {
        self.shared().backend.size_on_disk()
    }

    /// The reason the store refuses writes, if it does.
    pub(crate) fn poisoned(&self) -> Option<String> {
        self.shared()
            .poisoned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
