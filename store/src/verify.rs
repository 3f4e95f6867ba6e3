//! `verify`: walks a whole store and reports every inconsistency with its position.
//!
//! The walk is a few named checks over one key space ([`Backend`]), so it runs the same on a
//! sled directory ([`verify`]) and on an in-memory disk ([`verify_disk`]):
//!
//! 1. [`check_marker`]: the store-format marker is one this build reads;
//! 2. [`Walk::check_log`]: chunks decode, positions are contiguous, versions are contiguous per
//!    stream, and append boundaries (record format 2) open and close in order;
//! 3. [`Walk::check_stream_index`]: every stream-index run names events of its stream with its
//!    versions, and every event is covered by exactly one run;
//! 4. [`Walk::check_ids`]: every event-id entry points at the event with that id, one per event;
//! 5. [`Walk::check_snapshots`]: snapshots decode and name versions their streams have.
//!
//! The report is bounded whatever the store holds: problems about consecutive positions are
//! merged into one range, at most [`MAX_PROBLEMS`] are listed and the rest only counted, and
//! no check iterates over positions the log does not have (a run claiming billions of
//! positions past the log is one problem, found in constant time).

use std::collections::HashMap;
use std::ops::ControlFlow;
#[cfg(feature = "sled")]
use std::path::Path;

use annals_core::{Error, EventId, Position, StreamId, Version};

#[cfg(feature = "sled")]
use crate::backend::SledBackend;
use crate::backend::{Backend, Flow, MemBackend, MemDisk};
use crate::engine::{Marker, read_marker};
use crate::format::{self, AppendMarks, StreamEntry};
use crate::layout::{self, parse_event_key, parse_id_bucket_key, parse_id_key, parse_stream_key};

/// How many problems a report lists; further ones are only counted
/// ([`VerifyReport::omitted`]).
pub const MAX_PROBLEMS: usize = 1000;

/// One problem found by [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// The (first) position concerned (0 when none applies, e.g. a malformed key).
    pub position: Position,
    /// The last position concerned: equal to `position` for a single one, greater for a
    /// range of positions with the same problem.
    pub through: Position,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.through > self.position {
            write!(
                f,
                "positions {}..={}: {}",
                self.position, self.through, self.what
            )
        } else {
            write!(f, "position {}: {}", self.position, self.what)
        }
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Events read.
    pub events: u64,
    /// Chunks read.
    pub chunks: u64,
    /// Distinct streams.
    pub streams: u64,
    /// The store format its marker names (`None`: no marker).
    pub store_format: Option<u8>,
    /// The problems, in the order found, at most [`MAX_PROBLEMS`].
    pub problems: Vec<Problem>,
    /// Problems found beyond the first [`MAX_PROBLEMS`], counted but not listed.
    pub omitted: u64,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.omitted == 0
    }

    /// How many problems were found in all (listed and omitted).
    pub fn problem_count(&self) -> u64 {
        self.problems.len() as u64 + self.omitted
    }

    /// Records a problem about `position ..= through`, merged into the previous one when it
    /// is the same problem about the positions right before.
    fn add(&mut self, position: Position, through: Position, what: String) {
        if let Some(last) = self.problems.last_mut()
            && last.what == what
            && position != Position::NONE
            && last.through.next() == position
        {
            last.through = through;
            return;
        }
        if self.problems.len() >= MAX_PROBLEMS {
            self.omitted += 1;
            return;
        }
        self.problems.push(Problem {
            position,
            through,
            what,
        });
    }

    fn one(&mut self, position: Position, what: String) {
        self.add(position, position, what);
    }
}

/// Walks the store in directory `path` (which must not be open elsewhere): the format
/// marker, every chunk's checksums and framing, contiguous positions, contiguous versions per
/// stream, append boundaries, every event covered by exactly the stream index entry that
/// names it, every event-id entry pointing at its event, and the snapshots.
///
/// It never creates anything: a path without a store is an error.
///
/// # Errors
/// [`Error::Storage`] when `path` holds no store, or any error opening it; damage is reported
/// in the result.
#[cfg(feature = "sled")]
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport, Error> {
    let path = path.as_ref();
    if !crate::is_store_dir(path) {
        return Err(Error::storage(format!("no store in {}", path.display())));
    }
    let backend = SledBackend::open(path, 64 * 1024 * 1024, std::time::Duration::from_secs(1))?;
    Ok(verify_backend(&backend))
}

/// [`verify`] on an in-memory disk (which must not be open in a store).
///
/// # Errors
/// [`Error::Locked`] when a store has the disk open.
pub fn verify_disk(disk: &MemDisk) -> Result<VerifyReport, Error> {
    let backend = MemBackend::open(disk.clone())?;
    Ok(verify_backend(&backend))
}

/// Every check, in order, over one key space.
pub(crate) fn verify_backend<B: Backend>(backend: &B) -> VerifyReport {
    let mut walk = Walk {
        backend,
        report: VerifyReport::default(),
        streams: HashMap::new(),
        names: Vec::new(),
        events: HashMap::new(),
        log_end: Position::NONE,
    };
    match check_marker(backend) {
        Ok(format) => walk.report.store_format = format,
        Err(what) => {
            // An unknown format cannot be interpreted: report that alone.
            walk.report.one(Position::NONE, what);
            return walk.report;
        }
    }
    walk.check_log();
    walk.check_stream_index();
    walk.check_ids();
    walk.check_snapshots();
    walk.report
}

/// The format the marker names, when this build reads it; a problem otherwise (no marker on
/// a store with data, or a format it does not know).
fn check_marker<B: Backend>(backend: &B) -> Result<Option<u8>, String> {
    match read_marker(backend) {
        Ok(Marker::Reads(f)) => Ok(Some(f)),
        Ok(Marker::Unknown(v)) => Err(format!(
            "unknown store format marker {v:?}; this build reads formats {:?}",
            layout::STORE_FORMATS_READ
        )),
        Ok(Marker::Missing { empty: true }) => {
            Err("no store format marker: not an annals store".into())
        }
        Ok(Marker::Missing { empty: false }) => Err("store has data but no format marker".into()),
        Err(e) => Err(format!("cannot read the store format marker: {e}")),
    }
}

/// What the log check remembers of one event for the index checks.
#[derive(Clone, Copy)]
struct Slot {
    stream: u32,
    version: Version,
    id: EventId,
    /// How many stream-index runs cover it.
    covered: u32,
}

/// One verification: the report so far and what the log check learned.
struct Walk<'a, B> {
    backend: &'a B,
    report: VerifyReport,
    /// Each stream's number (into `names`) and head.
    streams: HashMap<StreamId, (u32, Version)>,
    names: Vec<StreamId>,
    events: HashMap<Position, Slot>,
    /// The position after the last event read.
    log_end: Position,
}

/// What [`Walk::scan`] hands each key and value to.
type Visitor<'v, W> = &'v mut dyn FnMut(&mut W, &[u8], &[u8]);

const GO_ON: Flow = ControlFlow::Continue(());
const STOP: Flow = ControlFlow::Break(());

impl<B: Backend> Walk<'_, B> {
    /// Scans `lo..=hi`, handing each pair to `f`; a read error ends the scan as a problem.
    fn scan(&mut self, lo: &[u8], hi: &[u8], what: &str, f: Visitor<'_, Self>) {
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut from = lo.to_vec();
        // Pages of keys, so that `f` may read the backend itself.
        loop {
            pairs.clear();
            let r = self.backend.scan(&from, hi, false, &mut |k, v| {
                pairs.push((k.to_vec(), v.to_vec()));
                Ok(if pairs.len() >= 256 { STOP } else { GO_ON })
            });
            if let Err(e) = r {
                self.report
                    .one(Position::NONE, format!("cannot read the {what}: {e}"));
                return;
            }
            let Some((last, _)) = pairs.last() else {
                return;
            };
            let mut next = last.clone();
            next.push(0);
            let full = pairs.len() >= 256;
            for (k, v) in std::mem::take(&mut pairs) {
                f(self, &k, &v);
            }
            if !full {
                return;
            }
            from = next;
        }
    }

    /// The log: chunks in key order, positions contiguous, versions contiguous per stream,
    /// and (record format 2) every append's events contiguous, opened and closed.
    fn check_log(&mut self) {
        // `None`: take whatever the next key is (after a chunk that could not be read).
        let mut expect = Some(Position::FIRST);
        // The append the previous record left open (it was not its append's last).
        let mut open: Option<(u32, Version)> = None;
        let (lo, hi) = (
            layout::event_key(Position::NONE),
            layout::event_key(Position::MAX),
        );
        self.scan(&lo, &hi, "log", &mut |walk, k, v| {
            let Some(first) = parse_event_key(k) else {
                walk.report
                    .one(Position::NONE, format!("malformed event key {k:?}"));
                return;
            };
            walk.report.chunks += 1;
            match expect {
                Some(e) if first > e => walk.report.add(
                    e,
                    Position(first.0 - 1),
                    "positions missing from the log".into(),
                ),
                Some(e) if first < e => walk.report.one(
                    first,
                    format!("chunk starts at {first}, inside the one before (next is {e})"),
                ),
                _ => {}
            }
            match format::decode_chunk_marks(v, first) {
                Ok(records) => {
                    for (r, marks) in records {
                        open = walk.record(r.position, &r.stream, r.version, r.id, marks, open);
                    }
                    expect = Some(walk.log_end);
                }
                Err(e) => {
                    let position = match &e {
                        Error::Corrupt { position, .. } => *position,
                        _ => first,
                    };
                    walk.report.one(position, e.to_string());
                    open = None;
                    expect = None;
                }
            }
        });
        if let Some((stream, version)) = open {
            let what = format!(
                "the log ends inside an append of {} (after v{version})",
                self.name(stream)
            );
            self.report.one(self.log_end, what);
        }
        self.report.streams = self.streams.len() as u64;
    }

    /// Checks one record of the log; returns the append it leaves open.
    fn record(
        &mut self,
        position: Position,
        stream: &StreamId,
        version: Version,
        id: EventId,
        marks: Option<AppendMarks>,
        open: Option<(u32, Version)>,
    ) -> Option<(u32, Version)> {
        if !self.streams.contains_key(stream) {
            let number = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
            self.names.push(stream.clone());
            self.streams.insert(stream.clone(), (number, Version::NONE));
        }
        let (number, head) = self.streams.get_mut(stream)?;
        let number = *number;
        let jumped = (version != head.next()).then_some(*head);
        *head = version;
        if let Some(head) = jumped {
            let what = format!("{stream} jumps from version {head} to {version}");
            self.report.one(position, what);
        }
        self.report.events += 1;
        self.log_end = position.next();
        self.events.insert(
            position,
            Slot {
                stream: number,
                version,
                id,
                covered: 0,
            },
        );
        let marks = marks?;
        match open {
            Some((s, v)) if s != number || v.next() != version || marks.first => {
                let what = format!("an append of {} breaks off after v{v}", self.name(s));
                self.report.one(position, what);
            }
            None if !marks.first => self.report.one(
                position,
                format!("{stream} v{version} continues an append that never began"),
            ),
            _ => {}
        }
        (!marks.last).then_some((number, version))
    }

    fn name(&self, number: u32) -> &str {
        self.names
            .get(number as usize)
            .map_or("?", StreamId::as_str)
    }

    /// The stream index: every run names events of its stream with its versions, and every
    /// event is covered exactly once.
    fn check_stream_index(&mut self) {
        let (lo, hi) = ([layout::STREAMS], [layout::STREAMS, 0xff]);
        self.scan(&lo, &hi, "stream index", &mut |walk, k, v| {
            let Some((name, key_version)) = parse_stream_key(k) else {
                walk.report
                    .one(Position::NONE, format!("malformed stream index key {k:?}"));
                return;
            };
            let name = String::from_utf8_lossy(name).into_owned();
            let what = format!("index entry of {name} at version {key_version}");
            match StreamEntry::decode(key_version, v, &what) {
                Ok(entry) => walk.entry(&name, &entry),
                Err(e) => walk.report.one(Position::NONE, e.to_string()),
            }
        });
        // Every event covered exactly once; report runs of consecutive positions together.
        let mut wrong: Vec<(Position, u32)> = self
            .events
            .iter()
            .filter(|(_, s)| s.covered != 1)
            .map(|(p, s)| (*p, s.covered))
            .collect();
        wrong.sort_unstable();
        for (p, n) in wrong {
            let what = format!("covered by {n} stream index entries instead of 1");
            self.report.one(p, what);
        }
    }

    /// Checks the runs of one decoded entry of stream `name` against the log.
    fn entry(&mut self, name: &str, entry: &StreamEntry) {
        let number = StreamId::new(name)
            .ok()
            .and_then(|s| self.streams.get(&s))
            .map(|(n, _)| *n);
        for (first_version, run) in entry.runs_with_versions() {
            // Decoded runs end below `Position::MAX` and within one chunk's `u32` count.
            let last = run.last_position();
            let inside_end = Position(last.0.min(self.log_end.0.saturating_sub(1)));
            let mut p = run.first_position;
            while p <= inside_end {
                let version = Version(first_version.0 + (p.0 - run.first_position.0));
                match self.events.get_mut(&p) {
                    Some(slot) if Some(slot.stream) == number && slot.version == version => {
                        slot.covered = slot.covered.saturating_add(1);
                    }
                    Some(slot) => {
                        let (s, v) = (slot.stream, slot.version);
                        let what = format!(
                            "index says {name} v{version}, the log has {} v{v}",
                            self.name(s)
                        );
                        self.report.one(p, what);
                    }
                    // A position in a gap of the log (reported by the log check).
                    None => {
                        let what =
                            format!("index entry of {name} names a position missing from the log");
                        self.report.one(p, what);
                    }
                }
                p = p.next();
            }
            if last >= self.log_end {
                let from = run.first_position.max(self.log_end);
                let what = format!("index entry of {name} points past the log");
                self.report.add(from, last, what);
            }
        }
    }

    /// Event ids: every entry points at the event with that id, one entry per event.
    fn check_ids(&mut self) {
        let mut ids = 0u64;
        let (lo, hi) = ([layout::IDS], [layout::IDS, 0xff]);
        self.scan(&lo, &hi, "id index", &mut |walk, k, v| {
            let entries = match (parse_id_key(k), parse_id_bucket_key(k)) {
                (Some(id), _) => format::decode_id_entry(v, id).map(|p| vec![(id, p)]),
                (None, Some(prefix)) => format::decode_id_bucket(v).and_then(|entries| {
                    if entries
                        .iter()
                        .all(|(id, _)| format::bucketed(*id) && format::id_prefix(*id) == prefix)
                    {
                        Ok(entries)
                    } else {
                        Err(Error::corrupt(
                            Position::NONE,
                            format!("id bucket {k:?} holds an id of another prefix"),
                        ))
                    }
                }),
                (None, None) => Err(Error::corrupt(
                    Position::NONE,
                    format!("malformed id key {k:?}"),
                )),
            };
            let entries = match entries {
                Ok(e) => e,
                Err(e) => {
                    walk.report.one(Position::NONE, e.to_string());
                    return;
                }
            };
            for (id, p) in entries {
                match walk.events.get(&p) {
                    Some(slot) if slot.id == id => ids += 1,
                    Some(_) => walk
                        .report
                        .one(p, format!("id index of {id} points at another event")),
                    None => walk
                        .report
                        .one(p, format!("id index of {id} points past the log")),
                }
            }
        });
        let events = self.report.events;
        if ids != events {
            self.report.one(
                Position::NONE,
                format!("{events} events but {ids} id index entries"),
            );
        }
    }

    /// Snapshots decode and name a version their stream has.
    fn check_snapshots(&mut self) {
        let (lo, hi) = ([layout::SNAPSHOTS], [layout::SNAPSHOTS, 0xff]);
        self.scan(&lo, &hi, "snapshots", &mut |walk, k, v| {
            let name = String::from_utf8_lossy(k.get(1..).unwrap_or_default()).into_owned();
            match format::decode_snapshot(v) {
                Ok(s) => {
                    let head = StreamId::new(name.as_str())
                        .ok()
                        .and_then(|id| walk.streams.get(&id))
                        .map_or(Version::NONE, |(_, head)| *head);
                    if s.version > head {
                        walk.report.one(
                            Position::NONE,
                            format!(
                                "snapshot of {name} at v{} is past the stream's v{head}",
                                s.version
                            ),
                        );
                    }
                }
                Err(e) => walk
                    .report
                    .one(Position::NONE, format!("snapshot of {name}: {e}")),
            }
        });
    }
}
