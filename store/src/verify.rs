//! `verify`: walks a whole sled store and reports every inconsistency with its position.

use std::collections::HashMap;
use std::path::Path;

use annals_core::{Error, EventId, Position, StreamId, Version};

use crate::format::{self, StreamEntry};
use crate::layout::{self, parse_event_key, parse_id_bucket_key, parse_id_key, parse_stream_key};

/// One problem found by [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The position concerned (0 when none applies, e.g. a malformed key).
    pub position: Position,
    /// What is wrong.
    pub what: String,
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Events read.
    pub events: u64,
    /// Chunks read.
    pub chunks: u64,
    /// Distinct streams.
    pub streams: u64,
    /// Every problem, in the order found.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Walks the store in `path` (which must not be open elsewhere): every chunk's checksums and
/// framing, contiguous positions, contiguous versions per stream, every event covered by
/// exactly the stream index entry that names it, and every event-id entry pointing at its
/// event.
///
/// # Errors
/// Only when the store cannot be opened at all; damage is reported in the result.
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport, Error> {
    let db = sled::Config::new()
        .path(path.as_ref())
        .open()
        .map_err(|e| Error::Storage(e.to_string()))?;
    let mut report = VerifyReport::default();
    let problem = |report: &mut VerifyReport, position: Position, what: String| {
        report.problems.push(Problem { position, what });
    };
    // 1. The log: chunks in key order, positions contiguous, versions contiguous per stream.
    let mut expect = Position::FIRST;
    let mut heads: HashMap<StreamId, Version> = HashMap::new();
    // position -> (stream, version, id) for the index checks.
    let mut events: HashMap<Position, (StreamId, Version, EventId)> = HashMap::new();
    for item in db.range(layout::event_key(Position::NONE)..=layout::event_key(Position::MAX)) {
        let (k, v) = match item {
            Ok(kv) => kv,
            Err(e) => {
                problem(&mut report, expect, format!("cannot read the log: {e}"));
                break;
            }
        };
        let Some(first) = parse_event_key(&k) else {
            problem(
                &mut report,
                Position::NONE,
                format!("malformed event key {k:?}"),
            );
            continue;
        };
        report.chunks += 1;
        if first != expect {
            problem(
                &mut report,
                expect,
                format!("positions {expect}..{} are missing", first.0),
            );
        }
        match format::decode_chunk(&v, first) {
            Ok(records) => {
                for r in records {
                    let head = heads.entry(r.stream.clone()).or_default();
                    if r.version != head.next() {
                        problem(
                            &mut report,
                            r.position,
                            format!("{} jumps from version {head} to {}", r.stream, r.version),
                        );
                    }
                    *head = r.version;
                    expect = r.position.next();
                    report.events += 1;
                    events.insert(r.position, (r.stream, r.version, r.id));
                }
            }
            Err(Error::Corrupt { position, reason }) => {
                problem(&mut report, position, reason);
                // Skip to after what the key says: the next chunk key tells where to go on.
                expect = Position::NONE;
            }
            Err(e) => problem(&mut report, first, e.to_string()),
        }
        if expect == Position::NONE {
            expect = Position(first.0 + 1);
            // Accept whatever the next chunk key is without another "missing" report.
            if let Ok(Some((next, _))) = db.get_gt(k)
                && let Some(p) = parse_event_key(&next)
            {
                expect = p;
            }
        }
    }
    report.streams = heads.len() as u64;
    // 2. The stream index: every entry names a run that exists, and every event is covered.
    let mut covered: HashMap<Position, u32> = HashMap::new();
    for item in db.scan_prefix([layout::STREAMS]) {
        let Ok((k, v)) = item else {
            problem(
                &mut report,
                Position::NONE,
                "cannot read the stream index".into(),
            );
            break;
        };
        let Some((name, key_version)) = parse_stream_key(&k) else {
            problem(
                &mut report,
                Position::NONE,
                format!("malformed stream index key {k:?}"),
            );
            continue;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let what = format!("index entry of {name} at version {key_version}");
        let entry = match StreamEntry::decode(key_version, &v, &what) {
            Ok(e) => e,
            Err(e) => {
                problem(&mut report, Position::NONE, e.to_string());
                continue;
            }
        };
        let covers = entry.runs_with_versions().flat_map(|(first, run)| {
            (0..u64::from(run.count))
                .map(move |i| (Position(run.first_position.0 + i), Version(first.0 + i)))
        });
        for (p, version) in covers {
            match events.get(&p) {
                Some((s, v, _)) if s.as_str() == name && *v == version => {
                    *covered.entry(p).or_default() += 1
                }
                Some((s, v, _)) => problem(
                    &mut report,
                    p,
                    format!("index says {name} v{version}, the log has {s} v{v}"),
                ),
                None => problem(
                    &mut report,
                    p,
                    format!("index entry of {name} v{version} points past the log"),
                ),
            }
        }
    }
    let mut uncovered: Vec<Position> = events
        .keys()
        .filter(|p| covered.get(p) != Some(&1))
        .copied()
        .collect();
    uncovered.sort();
    for p in uncovered {
        let n = covered.get(&p).copied().unwrap_or(0);
        problem(
            &mut report,
            p,
            format!("covered by {n} stream index entries instead of 1"),
        );
    }
    // 3. Event ids.
    let mut ids = 0u64;
    for item in db.scan_prefix([layout::IDS]) {
        let Ok((k, v)) = item else {
            problem(
                &mut report,
                Position::NONE,
                "cannot read the id index".into(),
            );
            break;
        };
        let entries = match (parse_id_key(&k), parse_id_bucket_key(&k)) {
            (Some(id), _) => format::decode_id_entry(&v, id).map(|p| vec![(id, p)]),
            (None, Some(prefix)) => format::decode_id_bucket(&v).and_then(|entries| {
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
                problem(&mut report, Position::NONE, e.to_string());
                continue;
            }
        };
        for (id, p) in entries {
            match events.get(&p) {
                Some((_, _, stored)) if *stored == id => ids += 1,
                Some(_) => problem(
                    &mut report,
                    p,
                    format!("id index of {id} points at another event"),
                ),
                None => problem(
                    &mut report,
                    p,
                    format!("id index of {id} points past the log"),
                ),
            }
        }
    }
    let events = report.events;
    if ids != events {
        problem(
            &mut report,
            Position::NONE,
            format!("{events} events but {ids} id index entries"),
        );
    }
    Ok(report)
}
