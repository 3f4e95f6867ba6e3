//! The writer thread: it takes appends off the queue in groups and commits each group in
//! three steps — *prepare* (idempotency, optimistic concurrency, positions and versions, the
//! encoded chunks and index entries), *write* (one atomic batch, then flush and sync in
//! `Durable` mode) and *publish* (caches, the visible head, the replies).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::oneshot;

use annals_core::{
    AppendResult, Error, EventData, EventId, ExpectedVersion, Position, RecordedEvent, Result,
    StreamAppend, StreamId, Timestamp, Version,
};

use super::{AppendRequest, CONTINUE, HEAD_CACHE_LIMIT, ID_CACHE_LIMIT, Msg, Put, Shared};
use crate::backend::Backend;
use crate::config::{Durability, FaultPoint};
use crate::format::{
    self, AppendMarks, CHUNK_TARGET_BYTES, ID_BUCKET_MAX, ID_PREFIX, IndexEntry, StreamEntry,
};
use crate::layout::{self, event_key, id_key, stream_key};

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

/// Who waits for an append's results.
type AppendReply = oneshot::Sender<Result<Vec<AppendResult>>>;
/// Who waits for a put (a key outside the log) to be written.
type PutReply = oneshot::Sender<Result<()>>;

/// A prepared group, with the replies owed to its appends (and their results so far) and to
/// its puts.
type Prepared = (
    Group,
    Vec<(AppendReply, Result<Vec<AppendResult>>)>,
    Vec<PutReply>,
);

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

pub(super) struct Writer<B> {
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
    /// A writer for a store whose log ends at `head`, written at `last_ts`.
    pub(super) fn new(
        shared: Arc<Shared<B>>,
        rx: flume::Receiver<Msg>,
        head: Position,
        last_ts: Timestamp,
    ) -> Self {
        Self {
            shared,
            rx,
            heads: HashMap::new(),
            ids: HashMap::new(),
            cached_ids: 0,
            next_position: head.next(),
            last_ts,
            dirty: false,
            last_appends: 1,
        }
    }

    /// Takes messages off the queue until every handle is gone, committing them in groups.
    pub(super) fn run(&mut self) {
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
                        events += r.events();
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

    /// Commits one group: prepare, write, publish. Every request gets its reply: its own
    /// result when the group is durable, the failure when it is not (and the store is then
    /// poisoned).
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
            for (_, _, reply) in puts {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
        let (mut group, replies, put_replies) = self.prepare_group(requests, puts);
        let written = group.next_position.0 - group.first_position.0;
        span.record("events", written);
        if let Err(e) = self.write(&mut group) {
            self.shared.poison(format!("group commit: {e}"));
            for (reply, result) in replies {
                let _ = reply.send(result.and(Err(e.clone())));
            }
            for reply in put_replies {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
        self.publish(group);
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

    /// Step 1: decides every append of the group in order (each against the ones before it)
    /// and encodes what is to be written: chunks, stream-index entries, id entries, and the
    /// keys outside the log (snapshots) that ride along.
    fn prepare_group(&mut self, requests: Vec<AppendRequest>, puts: Vec<Put>) -> Prepared {
        let mut group = Group {
            batch: Vec::new(),
            heads: HashMap::new(),
            ids: HashMap::new(),
            newest: HashMap::new(),
            first_position: self.next_position,
            next_position: self.next_position,
            records: Vec::new(),
            marks: Vec::new(),
            ts: Timestamp::now().max(self.last_ts),
        };
        let mut replies = Vec::with_capacity(requests.len());
        for r in requests {
            let result = self.prepare_all(r.parts, &mut group);
            replies.push((r.reply, result));
        }
        self.index_group(&mut group);
        let mut put_replies = Vec::with_capacity(puts.len());
        for (k, v, r) in puts {
            group.batch.push((k, v));
            put_replies.push(r);
        }
        (group, replies, put_replies)
    }

    /// Step 2: writes the group as one atomic batch, then (in `Durable` mode) flushes and
    /// syncs it. Nothing is visible or acknowledged yet.
    fn write(&mut self, group: &mut Group) -> Result<()> {
        if group.batch.is_empty() {
            return Ok(());
        }
        self.shared
            .config
            .faults
            .check(FaultPoint::Write)
            .and_then(|()| self.shared.backend.apply(std::mem::take(&mut group.batch)))?;
        match self.shared.config.durability {
            Durability::Durable => self.sync("group commit"),
            Durability::Periodic { .. } => {
                self.dirty = true;
                Ok(())
            }
        }
    }

    /// Step 3: the group is written: the writer's caches learn it, and readers and
    /// subscribers see its events (the visible head moves).
    fn publish(&mut self, group: Group) {
        if group.next_position == group.first_position {
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
                return Ok(Some(AppendResult::new(
                    first.version,
                    last.version,
                    first.position,
                    last.position,
                )));
            }
        }
        Err(Error::DuplicateEventId {
            id: events[i0].id,
            position: p0,
        })
    }

    /// Decides the parts of one request (one `append`, or one `append_many`) all or nothing:
    /// when a part fails, what the parts before it added to the group is taken out again.
    fn prepare_all(
        &mut self,
        parts: Vec<StreamAppend>,
        group: &mut Group,
    ) -> Result<Vec<AppendResult>> {
        let records = group.records.len();
        let marks = group.marks.len();
        let next_position = group.next_position;
        let mut heads: Vec<(StreamId, Option<Version>)> = Vec::new();
        let mut results = Vec::with_capacity(parts.len());
        for part in parts {
            heads.push((part.stream.clone(), group.heads.get(&part.stream).copied()));
            match self.prepare(&part.stream, part.expected, part.events, group) {
                Ok(r) => results.push(r),
                Err(e) => {
                    for r in group.records.drain(records..) {
                        group.ids.remove(&r.id);
                    }
                    group.marks.truncate(marks);
                    group.next_position = next_position;
                    // Restored newest first, so a stream in two parts gets its first value.
                    for (stream, before) in heads.into_iter().rev() {
                        match before {
                            Some(v) => group.heads.insert(stream, v),
                            None => group.heads.remove(&stream),
                        };
                    }
                    return Err(e);
                }
            }
        }
        Ok(results)
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
            records.push(RecordedEvent::new(
                Position(first_position.0 + i as u64),
                stream.clone(),
                Version(first_version.0 + i as u64),
                group.ts,
                EventData::new(
                    e.id,
                    e.event_type,
                    e.schema_version,
                    e.codec,
                    e.metadata,
                    e.payload,
                ),
            ));
        }
        let n = records.len();
        for (i, r) in records.iter().enumerate() {
            group.ids.insert(r.id, r.position);
            group.marks.push(AppendMarks::of(i, n));
        }
        let last = &records[records.len() - 1];
        let result = AppendResult::new(first_version, last.version, first_position, last.position);
        group.heads.insert(stream.clone(), last.version);
        group.next_position = last.position.next();
        group.records.extend(records);
        Ok(result)
    }
}
