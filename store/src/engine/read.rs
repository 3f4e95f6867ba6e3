//! The read half of the engine, used by readers and the writer alike: the log by position,
//! streams through their index entries, stream heads, and event ids. Every read is bounded by
//! a position (the published head for readers, none for the writer).

use annals_core::{
    Direction, Error, EventId, Position, RecordedEvent, Result, StreamId, Version, VersionRange,
};

use super::{BREAK, CONTINUE, Shared};
use crate::backend::{Backend, Flow};
use crate::format::{self, AppendMarks, IndexEntry, StreamEntry};
use crate::layout::{self, event_key, id_key, parse_event_key, parse_stream_key, stream_key};

impl<B: Backend> Shared<B> {
    pub(super) fn chunk(&self, first: Position) -> Result<Vec<RecordedEvent>> {
        match self.backend.get(&event_key(first))? {
            Some(v) => format::decode_chunk(v.as_ref(), first),
            None => Err(Error::corrupt(
                first,
                "the stream index names a chunk that is missing",
            )),
        }
    }

    /// Events from `from` on, at most `limit`, none past `bound`; checks there is no hole.
    pub(super) fn read_all(
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
    pub(super) fn read_all_marked(
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
    pub(super) fn read_log<T>(
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

    pub(super) fn entry(stream: &StreamId, k: &[u8], v: &[u8]) -> Result<StreamEntry> {
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
    pub(super) fn checked_chunk(
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
    pub(super) fn floor_key(&self, stream: &StreamId, version: Version) -> Result<Vec<u8>> {
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

    pub(super) fn read_stream(
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
    pub(super) fn stream_head(
        &self,
        stream: &StreamId,
        bound: Position,
    ) -> Result<Option<Version>> {
        let mut head = None;
        self.newest_first(stream, &mut |entry| {
            // The newest entries may be all past `bound` (a group not visible yet).
            head = entry.last_version_within(bound);
            if head.is_some() { BREAK } else { CONTINUE }
        })?;
        Ok(head)
    }

    /// `stream`'s newest index entry (whatever its positions), if the stream exists.
    pub(super) fn last_entry(&self, stream: &StreamId) -> Result<Option<StreamEntry>> {
        let mut last = None;
        self.newest_first(stream, &mut |entry| {
            last = Some(entry);
            BREAK
        })?;
        Ok(last)
    }

    /// Visits `stream`'s index entries, newest first, until `f` says stop.
    pub(super) fn newest_first(
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
    pub(super) fn lookup_id(&self, id: EventId) -> Result<Option<Position>> {
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
    pub(super) fn scan_bucket(
        &self,
        id: EventId,
        f: &mut dyn FnMut(EventId, Position) -> Flow,
    ) -> Result<()> {
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

    pub(super) fn poison(&self, reason: String) {
        tracing::error!(%reason, "store poisoned: refusing further writes");
        let mut p = self.poisoned.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none() {
            *p = Some(reason);
        }
    }
}
