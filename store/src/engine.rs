//! The store engine shared by [`SledStore`](crate::SledStore) and
//! [`MemStore`](crate::MemStore): one writer thread doing group commit, and readers bounded by
//! the durable head.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use annals_core::{
    AppendResult, Direction, Error, EventData, EventId, ExpectedVersion, Position, RecordedEvent,
    Result, StreamId, Timestamp, Version, VersionRange,
};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use crate::backend::{Backend, Flow};
use crate::config::{Durability, FaultPoint, StoreConfig};
use crate::format::{
    self, AppendMarks, CHUNK_TARGET_BYTES, ID_BUCKET_MAX, ID_PREFIX, IndexEntry, StreamEntry,
};
use crate::layout::{self, event_key, id_key, parse_event_key, parse_stream_key, stream_key};

const CONTINUE: Flow = ControlFlow::Continue(());
const BREAK: Flow = ControlFlow::Break(());

/// The writer's stream-head cache is cleared when it grows past this many streams.
const HEAD_CACHE_LIMIT: usize = 1 << 16;
/// The writer's cache of id buckets is cleared when it holds more than this many ids
/// (about 6 MiB).
const ID_CACHE_LIMIT: usize = 1 << 17;

struct AppendRequest {
    stream: StreamId,
    expected: ExpectedVersion,
    events: Vec<EventData>,
    reply: oneshot::Sender<Result<AppendResult>>,
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

impl<B: Backend> Engine<B> {
    /// Opens the engine on `backend`: checks the format, finds the head, starts the writer.
    pub(crate) fn open(backend: B, config: StoreConfig, name: &str) -> Result<Self> {
        let write_marker = match backend.get(layout::FORMAT_KEY)? {
            Some(v) if v.as_ref() == [layout::STORE_FORMAT] => false,
            // An older format this build reads; what it writes from now on needs the new
            // marker, so older builds refuse the store instead of misreading it.
            Some(v)
                if layout::STORE_FORMATS_READ
                    .iter()
                    .any(|f| v.as_ref() == [*f]) =>
            {
                true
            }
            Some(v) => {
                return Err(Error::IncompatibleFormat {
                    found: format!("marker {:?}", v.as_ref()),
                    reads: format!("{:?}", layout::STORE_FORMATS_READ),
                });
            }
            None => {
                let mut empty = true;
                backend.scan(&[0], &[0xff], false, &mut |_, _| {
                    empty = false;
                    Ok(BREAK)
                })?;
                if !empty {
                    return Err(Error::IncompatibleFormat {
                        found: "data but no format marker".into(),
                        reads: format!("{:?}", layout::STORE_FORMATS_READ),
                    });
                }
                true
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
        let (head, last_ts) = last.map_or((Position::NONE, Timestamp(0)), |e| {
            (e.position, e.recorded_at)
        });
        let (head_tx, _) = watch::channel(head);
        let shared = Arc::new(Shared {
            backend,
            visible: AtomicU64::new(head.0),
            head_tx,
            poisoned: Mutex::new(None),
            config,
        });
        let (tx, rx) = flume::bounded(shared.config.queue_capacity.max(1));
        let mut writer = Writer {
            shared: Arc::clone(&shared),
            rx,
            heads: HashMap::new(),
            ids: HashMap::new(),
            cached_ids: 0,
            next_position: head.next(),
            last_ts,
            dirty: false,
            last_appends: 1,
        };
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
            let tx = self.inner.tx.as_ref().ok_or(Error::Closed)?;
            let (reply, rx) = oneshot::channel();
            let req = AppendRequest {
                stream: stream.clone(),
                expected,
                events,
                reply,
            };
            tx.send_async(Msg::Append(req))
                .await
                .map_err(|_| Error::Closed)?;
            rx.await.map_err(|_| Error::Closed)?
        }
        .instrument(span)
        .await
    }

    /// Writes a key outside the log (a snapshot) with the next group commit.
    pub(crate) async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.check_poisoned()?;
        let tx = self.inner.tx.as_ref().ok_or(Error::Closed)?;
        let (reply, rx) = oneshot::channel();
        tx.send_async(Msg::Put(key, value, reply))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
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
        let (done, finished) = oneshot::channel();
        std::thread::Builder::new()
            .name("annals-close".into())
            .spawn(move || {
                drop(self);
                let _ = done.send(());
            })?;
        let _ = finished.await;
        Ok(())
    }

    /// Flushes and syncs now (useful in `Periodic` mode; a no-op cost in `Durable` mode).
    pub(crate) async fn flush(&self) -> Result<()> {
        let tx = self.inner.tx.as_ref().ok_or(Error::Closed)?;
        let (reply, rx) = oneshot::channel();
        tx.send_async(Msg::Flush(reply))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
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

impl<B: Backend> Shared<B> {
    fn chunk(&self, first: Position) -> Result<Vec<RecordedEvent>> {
        match self.backend.get(&event_key(first))? {
            Some(v) => format::decode_chunk(v.as_ref(), first),
            None => Err(Error::corrupt(
                first,
                "the stream index names a chunk that is missing",
            )),
        }
    }

    /// Events from `from` on, at most `limit`, none past `bound`; checks there is no hole.
    fn read_all(
        &self,
        from: Position,
        limit: usize,
        bound: Position,
    ) -> Result<Vec<RecordedEvent>> {
        self.read_log(from, limit, bound, format::decode_chunk_into, |e| {
            e.position
        })
    }

    /// [`Self::read_all`] with each event's place in its append (`None`: a format-1 record).
    fn read_all_marked(
        &self,
        from: Position,
        limit: usize,
    ) -> Result<Vec<(RecordedEvent, Option<AppendMarks>)>> {
        self.read_log(
            from,
            limit,
            Position::MAX,
            |v, first, out| {
                out.extend(format::decode_chunk_marks(v, first)?);
                Ok(())
            },
            |(e, _)| e.position,
        )
    }

    /// The log read behind [`Self::read_all`]: `decode` appends a chunk's items to the output,
    /// `position` tells an item's position.
    fn read_log<T>(
        &self,
        from: Position,
        limit: usize,
        bound: Position,
        decode: impl Fn(&[u8], Position, &mut Vec<T>) -> Result<()>,
        position: impl Fn(&T) -> Position,
    ) -> Result<Vec<T>> {
        let from = from.max(Position::FIRST);
        if limit == 0 || from > bound {
            return Ok(Vec::new());
        }
        let mut start_key = event_key(from);
        self.backend.scan(
            &event_key(Position::NONE),
            &event_key(from),
            true,
            &mut |k, _| {
                start_key.copy_from_slice(k.get(..9).unwrap_or(&[0; 9]));
                Ok(BREAK)
            },
        )?;
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut expect = from;
        self.backend
            .scan(&start_key, &event_key(bound), false, &mut |k, v| {
                let first = parse_event_key(k)
                    .ok_or_else(|| Error::corrupt(expect, "malformed event key"))?;
                if first > expect {
                    return Err(Error::corrupt(expect, "position missing from the log"));
                }
                let before = out.len();
                decode(v, first, &mut out)?;
                // Only the first chunk can start before `from`.
                let skip = usize::try_from(expect.0 - first.0)
                    .unwrap_or(usize::MAX)
                    .min(out.len() - before);
                out.drain(before..before + skip);
                while out.last().is_some_and(|e| position(e) > bound) || out.len() > limit {
                    out.pop();
                }
                if let Some(last) = out.last() {
                    expect = position(last).next();
                }
                Ok(if out.len() >= limit || expect > bound {
                    BREAK
                } else {
                    CONTINUE
                })
            })?;
        if out.is_empty() || (out.len() < limit && expect <= bound) {
            return Err(Error::corrupt(expect, "position missing from the log"));
        }
        Ok(out)
    }

    fn entry(stream: &StreamId, k: &[u8], v: &[u8]) -> Result<StreamEntry> {
        let (_, version) = parse_stream_key(k).ok_or_else(|| {
            Error::corrupt(Position::NONE, format!("malformed index key of {stream}"))
        })?;
        StreamEntry::decode(
            version,
            v,
            &format!("index entry of {stream} at version {version}"),
        )
    }

    /// The events of one run of `stream` starting at `first_version`, checked against it.
    fn checked_chunk(
        &self,
        stream: &StreamId,
        first_version: Version,
        run: IndexEntry,
    ) -> Result<Vec<RecordedEvent>> {
        let mut events = self.chunk(run.chunk)?;
        let skip = usize::try_from(run.first_position.0 - run.chunk.0).unwrap_or(usize::MAX);
        if skip > 0 {
            events.drain(..skip.min(events.len()));
        }
        events.truncate(run.count as usize);
        let ok = events.len() == run.count as usize
            && events
                .iter()
                .enumerate()
                .all(|(i, e)| e.stream == *stream && e.version.0 == first_version.0 + i as u64);
        if !ok {
            return Err(Error::corrupt(
                run.first_position,
                format!("chunk does not match the index of {stream} at version {first_version}"),
            ));
        }
        Ok(events)
    }

    /// The key of `stream`'s entry that may hold `version` from below: the greatest index
    /// key at or under `version`'s key (a format-3 entry keyed by its first version), or the
    /// stream's lowest possible key. Entries of formats 1 and 2 are keyed by their last
    /// version, so the one holding `version` lies at or above this key either way.
    fn floor_key(&self, stream: &StreamId, version: Version) -> Result<Vec<u8>> {
        let mut floor = stream_key(stream, Version::NONE);
        self.backend.scan(
            &floor.clone(),
            &stream_key(stream, version),
            true,
            &mut |k, _| {
                floor = k.to_vec();
                Ok(BREAK)
            },
        )?;
        Ok(floor)
    }

    fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
        direction: Direction,
        limit: usize,
        bound: Position,
    ) -> Result<Vec<RecordedEvent>> {
        let start = range.start.max(Version::FIRST);
        if limit == 0 || start > range.end {
            return Ok(Vec::new());
        }
        let lo = self.floor_key(stream, start)?;
        let top = stream_key(stream, Version::MAX);
        let mut out = Vec::with_capacity(limit.min(1024));
        match direction {
            Direction::Forward => {
                self.backend.scan(&lo, &top, false, &mut |k, v| {
                    let entry = Self::entry(stream, k, v)?;
                    if entry.first_version > range.end {
                        return Ok(BREAK);
                    }
                    for (first, run) in entry.runs_with_versions() {
                        if first.0 + u64::from(run.count) <= start.0 {
                            continue;
                        }
                        for e in self.checked_chunk(stream, first, run)? {
                            if e.position > bound || e.version > range.end {
                                return Ok(BREAK);
                            }
                            if range.contains(e.version) {
                                out.push(e);
                                if out.len() >= limit {
                                    return Ok(BREAK);
                                }
                            }
                        }
                    }
                    Ok(CONTINUE)
                })?;
            }
            Direction::Backward => {
                // The entry holding range.end is at or below the first key at or above it.
                let mut hi = top.clone();
                self.backend
                    .scan(&stream_key(stream, range.end), &top, false, &mut |k, _| {
                        hi = k.to_vec();
                        Ok(BREAK)
                    })?;
                self.backend.scan(&lo, &hi, true, &mut |k, v| {
                    let entry = Self::entry(stream, k, v)?;
                    let runs: Vec<_> = entry.runs_with_versions().collect();
                    for (first, run) in runs.into_iter().rev() {
                        if first > range.end {
                            continue;
                        }
                        for e in self.checked_chunk(stream, first, run)?.into_iter().rev() {
                            if e.position > bound || !range.contains(e.version) {
                                continue;
                            }
                            out.push(e);
                            if out.len() >= limit {
                                return Ok(BREAK);
                            }
                        }
                        if first <= start {
                            return Ok(BREAK);
                        }
                    }
                    Ok(CONTINUE)
                })?;
            }
        }
        Ok(out)
    }

    /// The version of `stream`'s last event at or before `bound`.
    fn stream_head(&self, stream: &StreamId, bound: Position) -> Result<Option<Version>> {
        let mut head = None;
        self.newest_first(stream, &mut |entry| {
            // The newest entries may be all past `bound` (a group not visible yet).
            head = entry.last_version_within(bound);
            if head.is_some() { BREAK } else { CONTINUE }
        })?;
        Ok(head)
    }

    /// `stream`'s newest index entry (whatever its positions), if the stream exists.
    fn last_entry(&self, stream: &StreamId) -> Result<Option<StreamEntry>> {
        let mut last = None;
        self.newest_first(stream, &mut |entry| {
            last = Some(entry);
            BREAK
        })?;
        Ok(last)
    }

    /// Visits `stream`'s index entries, newest first, until `f` says stop.
    fn newest_first(
        &self,
        stream: &StreamId,
        f: &mut dyn FnMut(StreamEntry) -> Flow,
    ) -> Result<()> {
        self.backend.scan(
            &stream_key(stream, Version::NONE),
            &stream_key(stream, Version::MAX),
            true,
            &mut |k, v| Ok(f(Self::entry(stream, k, v)?)),
        )
    }

    /// Where the event with `id` is stored, if it is (visible or not).
    fn lookup_id(&self, id: EventId) -> Result<Option<Position>> {
        if !format::bucketed(id) {
            return match self.backend.get(&id_key(id))? {
                Some(v) => format::decode_id_entry(v.as_ref(), id).map(Some),
                None => Ok(None),
            };
        }
        let mut found = None;
        self.scan_bucket(id, &mut |other, p| {
            if other == id {
                found = Some(p);
                return BREAK;
            }
            CONTINUE
        })?;
        Ok(found)
    }

    /// Visits every (id, position) the id index holds under the prefix of `id`, a UUID v7:
    /// its buckets, and the format-1 entries of an older store.
    fn scan_bucket(&self, id: EventId, f: &mut dyn FnMut(EventId, Position) -> Flow) -> Result<()> {
        let (lo, hi) = layout::id_range(id);
        self.backend.scan(&lo, &hi, false, &mut |k, v| {
            if let Some(old) = layout::parse_id_key(k) {
                return Ok(f(old, format::decode_id_entry(v, old)?));
            }
            if layout::parse_id_bucket_key(k).is_none() {
                return Err(Error::corrupt(
                    Position::NONE,
                    format!("malformed id key {k:?}"),
                ));
            }
            for (other, p) in format::decode_id_bucket(v)? {
                if f(other, p).is_break() {
                    return Ok(BREAK);
                }
            }
            Ok(CONTINUE)
        })
    }

    fn poison(&self, reason: String) {
        tracing::error!(%reason, "store poisoned: refusing further writes");
        let mut p = self.poisoned.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none() {
            *p = Some(reason);
        }
    }
}

/// Writes the ids of `records` (in position order) into the id index: UUID v7 ids as
/// buckets by their ten-byte prefix (their millisecond), other ids as one format-1 entry each.
fn index_ids(records: &[RecordedEvent], batch: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    let mut buckets: std::collections::BTreeMap<[u8; ID_PREFIX], Vec<(EventId, Position)>> =
        std::collections::BTreeMap::new();
    for r in records {
        if format::bucketed(r.id) {
            buckets
                .entry(format::id_prefix(r.id))
                .or_default()
                .push((r.id, r.position));
        } else {
            batch.push((
                id_key(r.id).to_vec(),
                format::encode_id_entry(r.position).to_vec(),
            ));
        }
    }
    for (prefix, entries) in buckets {
        for part in entries.chunks(ID_BUCKET_MAX) {
            batch.push((
                layout::id_bucket_key(prefix, part[0].1).to_vec(),
                format::encode_id_bucket(part),
            ));
        }
    }
}

/// What one group commit is building.
struct Group {
    batch: Vec<(Vec<u8>, Vec<u8>)>,
    heads: HashMap<StreamId, Version>,
    ids: HashMap<EventId, Position>,
    /// The newest stored index entry of each stream whose head was read from storage in this
    /// group (`None`: a new stream), for the stream index to extend without reading it again.
    newest: HashMap<StreamId, Option<StreamEntry>>,
    first_position: Position,
    next_position: Position,
    /// The events of this group in position order (for idempotency checks within it).
    records: Vec<RecordedEvent>,
    /// Where each of `records` sits in its append.
    marks: Vec<AppendMarks>,
    ts: Timestamp,
}

struct Writer<B> {
    shared: Arc<Shared<B>>,
    rx: flume::Receiver<Msg>,
    heads: HashMap<StreamId, Version>,
    /// The stored ids of each UUID v7 bucket prefix looked up lately, kept up to date with
    /// every commit: the ids of one millisecond are looked up by many groups in a row.
    ids: HashMap<[u8; ID_PREFIX], HashMap<EventId, Position>>,
    /// How many ids `ids` holds.
    cached_ids: usize,
    next_position: Position,
    last_ts: Timestamp,
    /// Written but not yet synced (`Periodic` mode).
    dirty: bool,
    /// Appends in the last group: in `Durable` mode the writer waits up to
    /// `StoreConfig::linger` for that many — the last group's appenders are about to send
    /// their next append, and one `fdatasync` for all of them costs less than two.
    last_appends: usize,
}

impl<B: Backend> Writer<B> {
    fn run(&mut self) {
        loop {
            let msg = match self.shared.config.durability {
                Durability::Periodic { every } if self.dirty => match self.rx.recv_timeout(every) {
                    Ok(m) => m,
                    Err(flume::RecvTimeoutError::Timeout) => {
                        let _ = self.sync("periodic flush");
                        continue;
                    }
                    Err(flume::RecvTimeoutError::Disconnected) => break,
                },
                _ => match self.rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            let mut appends = Vec::new();
            let mut flushes = Vec::new();
            let mut puts = Vec::new();
            let mut events = 0usize;
            let started = Instant::now();
            let linger = matches!(self.shared.config.durability, Durability::Durable);
            let mut next = Some(msg);
            while let Some(m) = next.take() {
                match m {
                    Msg::Append(r) => {
                        events += r.events.len();
                        appends.push(r);
                    }
                    Msg::Flush(r) => flushes.push(r),
                    Msg::Put(k, v, r) => puts.push((k, v, r)),
                }
                if events < self.shared.config.max_group_events {
                    next = self.rx.try_recv().ok();
                    let wait = self.shared.config.linger.saturating_sub(started.elapsed());
                    if next.is_none()
                        && linger
                        && appends.len() < self.last_appends
                        && !wait.is_zero()
                    {
                        next = self.rx.recv_timeout(wait).ok();
                    }
                }
            }
            if !appends.is_empty() {
                self.last_appends = appends.len();
            }
            if !appends.is_empty() || !puts.is_empty() {
                self.commit(appends, puts);
            }
            for reply in flushes {
                let _ = reply.send(self.sync("flush request"));
            }
        }
        if self.dirty {
            let _ = self.sync("close");
        }
        tracing::debug!("store writer stopped");
    }

    fn poisoned_error(&self) -> Option<Error> {
        self.shared
            .poisoned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|reason| Error::Poisoned {
                reason: reason.clone(),
            })
    }

    /// Flushes and syncs; on failure poisons the store.
    fn sync(&mut self, why: &str) -> Result<()> {
        if let Some(e) = self.poisoned_error() {
            return Err(e);
        }
        let faults = &self.shared.config.faults;
        let r = faults
            .check(FaultPoint::Flush)
            .and_then(|()| self.shared.backend.flush())
            .and_then(|()| faults.check(FaultPoint::Sync))
            .and_then(|()| self.shared.backend.sync_data());
        match r {
            Ok(()) => {
                self.dirty = false;
                Ok(())
            }
            Err(e) => {
                self.shared.poison(format!("{why}: {e}"));
                Err(e)
            }
        }
    }

    fn commit(&mut self, requests: Vec<AppendRequest>, puts: Vec<Put>) {
        let started = Instant::now();
        let span = tracing::debug_span!(
            "group_commit",
            requests = requests.len(),
            events = tracing::field::Empty
        );
        let _enter = span.enter();
        if let Some(e) = self.poisoned_error() {
            for r in requests {
                let _ = r.reply.send(Err(e.clone()));
            }
            return;
        }
        let now = Timestamp::now();
        let mut group = Group {
            batch: Vec::new(),
            heads: HashMap::new(),
            ids: HashMap::new(),
            newest: HashMap::new(),
            first_position: self.next_position,
            next_position: self.next_position,
            records: Vec::new(),
            marks: Vec::new(),
            ts: now.max(self.last_ts),
        };
        let mut replies = Vec::with_capacity(requests.len());
        for r in requests {
            let result = self.prepare(&r.stream, r.expected, r.events, &mut group);
            replies.push((r.reply, result));
        }
        self.index_group(&mut group);
        let mut put_replies = Vec::with_capacity(puts.len());
        for (k, v, r) in puts {
            group.batch.push((k, v));
            put_replies.push(r);
        }
        let written = group.next_position.0 - group.first_position.0;
        span.record("events", written);
        if !group.batch.is_empty() {
            let faults = &self.shared.config.faults;
            let mut r = faults
                .check(FaultPoint::Write)
                .and_then(|()| self.shared.backend.apply(std::mem::take(&mut group.batch)));
            if r.is_ok() {
                match self.shared.config.durability {
                    Durability::Durable => r = self.sync("group commit"),
                    Durability::Periodic { .. } => self.dirty = true,
                }
            }
            if let Err(e) = r {
                self.shared.poison(format!("group commit: {e}"));
                for (reply, result) in replies {
                    let _ = reply.send(result.and(Err(e.clone())));
                }
                for reply in put_replies {
                    let _ = reply.send(Err(e.clone()));
                }
                return;
            }
            if self.heads.len() > HEAD_CACHE_LIMIT {
                self.heads.clear();
            }
            self.heads.extend(group.heads);
            for (id, p) in group.ids {
                if let Some(bucket) = self.ids.get_mut(&format::id_prefix(id)) {
                    bucket.insert(id, p);
                    self.cached_ids += 1;
                }
            }
            if self.cached_ids > ID_CACHE_LIMIT {
                self.ids.clear();
                self.cached_ids = 0;
            }
            self.next_position = group.next_position;
            self.last_ts = group.ts;
            let head = Position(group.next_position.0 - 1);
            self.shared.visible.store(head.0, Ordering::Release);
            self.shared.head_tx.send_replace(head);
        }
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
        for reply in put_replies {
            let _ = reply.send(Ok(()));
        }
        tracing::trace!(
            events = written,
            micros = started.elapsed().as_micros() as u64,
            "group committed"
        );
    }

    /// Writes the group's records as chunks of about `CHUNK_TARGET_BYTES` (one key for many
    /// appends), its runs into the stream index, and its ids into the id index.
    fn index_group(&self, group: &mut Group) {
        let newest = &mut group.newest;
        let records = &group.records;
        let mut buf = Vec::new();
        let mut chunk_start = 0usize;
        // Each stream's runs in this group: (stream, first version, run).
        let mut runs: Vec<(&StreamId, Version, IndexEntry)> = Vec::new();
        for i in 0..records.len() {
            let marks = group.marks.get(i).copied().unwrap_or_default();
            format::encode_record(&records[i], marks, &mut buf);
            let last_of_all = i + 1 == records.len();
            if !(buf.len() >= CHUNK_TARGET_BYTES || last_of_all) {
                continue;
            }
            let chunk = records[chunk_start].position;
            let count = (i + 1 - chunk_start) as u32;
            group
                .batch
                .push((event_key(chunk).to_vec(), format::encode_chunk(count, &buf)));
            buf.clear();
            // Runs: consecutive records of one stream with consecutive versions (one append).
            let mut run_start = chunk_start;
            for j in chunk_start..=i {
                let ends = j == i || {
                    let (a, b) = (&records[j], &records[j + 1]);
                    a.stream != b.stream || b.version.0 != a.version.0 + 1
                };
                if ends {
                    let run = IndexEntry {
                        chunk,
                        first_position: records[run_start].position,
                        count: (j + 1 - run_start) as u32,
                    };
                    runs.push((&records[j].stream, records[run_start].version, run));
                    run_start = j + 1;
                }
            }
            chunk_start = i + 1;
        }
        let mut batch = Vec::new();
        self.index_runs(runs, newest, &mut batch);
        index_ids(records, &mut batch);
        group.batch.extend(batch);
    }

    /// Adds each run to its stream's newest entry while that one has room (rewriting it in
    /// place), or starts a new entry.
    fn index_runs(
        &self,
        runs: Vec<(&StreamId, Version, IndexEntry)>,
        newest: &mut HashMap<StreamId, Option<StreamEntry>>,
        batch: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) {
        let mut open: HashMap<&StreamId, StreamEntry> = HashMap::new();
        for (stream, first, run) in runs {
            if let Some(entry) = open.get_mut(stream) {
                if entry.extendable() {
                    entry.runs.push(run);
                } else {
                    let full = std::mem::replace(entry, StreamEntry::new(first, run));
                    batch.push((stream_key(stream, full.key_version()), full.encode()));
                }
                continue;
            }
            let stored = match newest.remove(stream) {
                Some(known) => Ok(known),
                None => self.shared.last_entry(stream),
            };
            let entry = match stored {
                Ok(Some(mut last)) if last.extendable() && last.last_version().next() == first => {
                    last.runs.push(run);
                    last
                }
                Ok(_) => StreamEntry::new(first, run),
                Err(e) => {
                    // A damaged entry stays as it is (reads of it report it); new runs go
                    // to a new entry.
                    tracing::warn!(%stream, error = %e, "stream index entry unreadable");
                    StreamEntry::new(first, run)
                }
            };
            open.insert(stream, entry);
        }
        for (stream, entry) in open {
            batch.push((stream_key(stream, entry.key_version()), entry.encode()));
        }
    }

    fn head(&mut self, stream: &StreamId, group: &mut Group) -> Result<Version> {
        if let Some(v) = group.heads.get(stream).or_else(|| self.heads.get(stream)) {
            return Ok(*v);
        }
        // The writer sees every stored entry: the head is the newest entry's last version.
        let newest = self.shared.last_entry(stream)?;
        let v = newest
            .as_ref()
            .map_or(Version::NONE, StreamEntry::last_version);
        group.newest.insert(stream.clone(), newest);
        self.heads.insert(stream.clone(), v);
        Ok(v)
    }

    fn lookup_id(&mut self, id: EventId, group: &Group) -> Result<Option<Position>> {
        if let Some(p) = group.ids.get(&id) {
            return Ok(Some(*p));
        }
        if !format::bucketed(id) {
            return self.shared.lookup_id(id);
        }
        let prefix = format::id_prefix(id);
        if let Some(bucket) = self.ids.get(&prefix) {
            return Ok(bucket.get(&id).copied());
        }
        let mut stored = HashMap::new();
        self.shared.scan_bucket(id, &mut |other, p| {
            stored.insert(other, p);
            CONTINUE
        })?;
        let found = stored.get(&id).copied();
        if self.cached_ids + stored.len() > ID_CACHE_LIMIT {
            self.ids.clear();
            self.cached_ids = 0;
        }
        self.cached_ids += stored.len();
        self.ids.insert(prefix, stored);
        Ok(found)
    }

    /// The stored events at `first..first + n` with their places in their appends, from this
    /// group or from storage.
    fn stored(
        &self,
        first: Position,
        n: usize,
        group: &Group,
    ) -> Result<Vec<(RecordedEvent, Option<AppendMarks>)>> {
        if first >= group.first_position {
            let at = usize::try_from(first.0 - group.first_position.0).unwrap_or(usize::MAX);
            return Ok(group
                .records
                .iter()
                .zip(&group.marks)
                .skip(at)
                .take(n)
                .map(|(e, m)| (e.clone(), Some(*m)))
                .collect());
        }
        self.shared.read_all_marked(first, n)
    }

    /// Idempotency: `Some(original result)` when these exact events were appended before, as
    /// one whole append (not a part of one, nor parts of two).
    fn check_ids(
        &mut self,
        stream: &StreamId,
        events: &[EventData],
        group: &Group,
    ) -> Result<Option<AppendResult>> {
        let mut found = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if let Some(p) = self.lookup_id(e.id, group)? {
                found.push((i, p));
            }
        }
        let Some(&(i0, p0)) = found.first() else {
            return Ok(None);
        };
        let consecutive = found.len() == events.len()
            && i0 == 0
            && found.iter().all(|&(i, p)| p.0 == p0.0 + i as u64);
        if consecutive {
            let stored = self.stored(p0, events.len(), group)?;
            let same = stored.len() == events.len()
                && stored
                    .iter()
                    .zip(events)
                    .all(|((s, _), e)| s.stream == *stream && s.same_content(e));
            let marks: Option<Vec<AppendMarks>> = stored.iter().map(|(_, m)| *m).collect();
            // Format-1 records say nothing of their appends: a match is taken as whole, as before.
            let whole = marks.is_none_or(|m| AppendMarks::whole(&m));
            if let (true, true, Some((first, _)), Some((last, _))) =
                (same, whole, stored.first(), stored.last())
            {
                return Ok(Some(AppendResult {
                    first_version: first.version,
                    last_version: last.version,
                    first_position: first.position,
                    last_position: last.position,
                }));
            }
        }
        Err(Error::DuplicateEventId {
            id: events[i0].id,
            position: p0,
        })
    }

    fn prepare(
        &mut self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<EventData>,
        group: &mut Group,
    ) -> Result<AppendResult> {
        if events.is_empty() {
            return Err(Error::InvalidEvent {
                reason: "an append needs at least one event".into(),
            });
        }
        let mut seen = HashSet::with_capacity(events.len());
        for e in &events {
            format::validate_sizes(&e.event_type, &e.metadata, &e.payload)?;
            if !seen.insert(e.id) {
                return Err(Error::InvalidEvent {
                    reason: format!("event id {} appears twice in one append", e.id),
                });
            }
        }
        if let Some(original) = self.check_ids(stream, &events, group)? {
            return Ok(original);
        }
        let actual = self.head(stream, group)?;
        if !expected.accepts(actual) {
            return Err(Error::Conflict {
                stream: stream.clone(),
                expected,
                actual,
            });
        }
        // Stored numbers stay below the largest value (readers use it as "no bound"); a head
        // that leaves no room can only come from damaged bytes.
        let n = events.len() as u64;
        let room = |at: u64| at.checked_add(n).is_some_and(|end| end < u64::MAX);
        if !room(actual.0) {
            return Err(Error::corrupt(
                Position::NONE,
                format!("{stream} is at version {actual}: no room for {n} more events"),
            ));
        }
        if !room(group.next_position.0) {
            return Err(Error::corrupt(
                group.next_position,
                "the log is at the largest position: no room for more events",
            ));
        }
        let first_version = actual.next();
        let first_position = group.next_position;
        let mut records = Vec::with_capacity(events.len());
        for (i, e) in events.into_iter().enumerate() {
            records.push(RecordedEvent {
                position: Position(first_position.0 + i as u64),
                stream: stream.clone(),
                version: Version(first_version.0 + i as u64),
                id: e.id,
                event_type: e.event_type,
                schema_version: e.schema_version,
                recorded_at: group.ts,
                metadata: e.metadata,
                codec: e.codec,
                payload: e.payload,
            });
        }
        let n = records.len();
        for (i, r) in records.iter().enumerate() {
            group.ids.insert(r.id, r.position);
            group.marks.push(AppendMarks::of(i, n));
        }
        let last = &records[records.len() - 1];
        let result = AppendResult {
            first_version,
            last_version: last.version,
            first_position,
            last_position: last.position,
        };
        group.heads.insert(stream.clone(), last.version);
        group.next_position = last.position.next();
        group.records.extend(records);
        Ok(result)
    }
}
