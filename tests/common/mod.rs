//! Helpers shared by the integration tests: the model-based test driver.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::HashMap;

pub mod child;
pub mod projections;

use annals::prelude::*;
use annals::store::MemDisk;
use annals::{Error, StreamAppend};
use proptest::prelude::*;

/// One step of a model-based test.
#[derive(Clone, Debug)]
pub enum Op {
    /// Append `n` fresh events to stream `stream` with an expectation relative to the model.
    Append { stream: u8, expect: Expect, n: u8 },
    /// Append to several streams at once (`append_many`): each part `(stream, expect, n)`
    /// relative to the model's head as left by the parts before it.
    AppendMany { parts: Vec<(u8, Expect, u8)> },
    /// Re-send an earlier append (by index modulo the number made so far) with `Any`.
    Retry { which: usize },
    /// Read a stream's versions `start..=end` in a direction with a limit.
    ReadStream {
        stream: u8,
        start: u8,
        end: u8,
        backward: bool,
        limit: u8,
    },
    /// Read `$all` from a position with a limit.
    ReadAll { from: u8, limit: u8 },
    /// Subscribe from a position and read up to the head.
    Subscribe { from: u8 },
    /// Close and reopen the store (for `MemStore`: with a simulated power loss).
    Restart,
}

/// The expected-version mode of an `Append`, relative to the model's head.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    Any,
    NoStream,
    StreamExists,
    /// `Exact(model head + delta)`, `delta` in -1..=1.
    Exact(i8),
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, expect(), 1u8..5).prop_map(|(stream, expect, n)| Op::Append { stream, expect, n }),
        2 => proptest::collection::vec((0u8..4, expect(), 1u8..4), 1..4)
            .prop_map(|parts| Op::AppendMany { parts }),
        1 => any::<usize>().prop_map(|which| Op::Retry { which }),
        2 => (0u8..4, 0u8..12, 0u8..12, any::<bool>(), 0u8..8)
            .prop_map(|(stream, start, end, backward, limit)| Op::ReadStream { stream, start, end, backward, limit }),
        2 => (0u8..40, 0u8..12).prop_map(|(from, limit)| Op::ReadAll { from, limit }),
        1 => (0u8..40).prop_map(|from| Op::Subscribe { from }),
        1 => Just(Op::Restart),
    ]
}

impl Expect {
    fn at(self, head: u64) -> ExpectedVersion {
        match self {
            Expect::Any => ExpectedVersion::Any,
            Expect::NoStream => ExpectedVersion::NoStream,
            Expect::StreamExists => ExpectedVersion::StreamExists,
            Expect::Exact(d) => {
                ExpectedVersion::Exact(Version(head.saturating_add_signed(i64::from(d))))
            }
        }
    }
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        Just(Expect::Any),
        Just(Expect::NoStream),
        Just(Expect::StreamExists),
        (-1i8..=1).prop_map(Expect::Exact),
    ]
}

/// A store under test that can be restarted.
pub enum Subject {
    Sled {
        dir: tempfile::TempDir,
        store: Option<SledStore>,
    },
    Mem {
        disk: MemDisk,
        store: Option<MemStore>,
    },
}

impl Subject {
    pub fn sled() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        Subject::Sled {
            dir,
            store: Some(store),
        }
    }

    pub fn mem() -> Self {
        let disk = MemDisk::new();
        let store = MemStore::open(disk.clone()).unwrap();
        Subject::Mem {
            disk,
            store: Some(store),
        }
    }

    fn restart(&mut self) {
        match self {
            Subject::Sled { dir, store } => {
                drop(store.take());
                *store = Some(SledStore::open(dir.path()).unwrap());
            }
            Subject::Mem { disk, store } => {
                drop(store.take());
                assert!(disk.crash(), "disk still open after the store was dropped");
                *store = Some(MemStore::open(disk.clone()).unwrap());
            }
        }
    }
}

macro_rules! with_store {
    ($subject:expr, $s:ident => $body:expr) => {
        match $subject {
            Subject::Sled { store, .. } => {
                let $s = store.as_ref().unwrap();
                $body
            }
            Subject::Mem { store, .. } => {
                let $s = store.as_ref().unwrap();
                $body
            }
        }
    };
}

struct ModelEvent {
    stream: StreamId,
    version: Version,
    data: EventData,
}

/// Runs `ops` against `subject` and a plain in-memory model; panics on any disagreement.
pub async fn run(mut subject: Subject, ops: &[Op]) {
    let mut log: Vec<ModelEvent> = Vec::new();
    let mut heads: HashMap<StreamId, u64> = HashMap::new();
    let mut appends: Vec<(StreamId, Vec<EventData>, AppendResult)> = Vec::new();
    let streams: Vec<StreamId> = (0..4)
        .map(|i| StreamId::new(format!("m-{i}")).unwrap())
        .collect();
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Append { stream, expect, n } => {
                let s = &streams[*stream as usize];
                let head = heads.get(s).copied().unwrap_or(0);
                let expected = expect.at(head);
                let events: Vec<EventData> = (0..*n)
                    .map(|i| {
                        EventData::json(format!("T{}", i % 2), &format!("{step}-{i}")).unwrap()
                    })
                    .collect();
                let got = with_store!(&subject, st => st.append(s, expected, events.clone()).await);
                if expected.accepts(Version(head)) {
                    let r = got.unwrap_or_else(|e| panic!("step {step}: {op:?} failed: {e}"));
                    assert_eq!(
                        r.first_position,
                        Position(log.len() as u64 + 1),
                        "step {step}"
                    );
                    assert_eq!(r.first_version, Version(head + 1), "step {step}");
                    for (i, d) in events.iter().enumerate() {
                        log.push(ModelEvent {
                            stream: s.clone(),
                            version: Version(head + 1 + i as u64),
                            data: d.clone(),
                        });
                    }
                    heads.insert(s.clone(), head + u64::from(*n));
                    appends.push((s.clone(), events, r));
                } else {
                    match got {
                        Err(Error::Conflict { actual, .. }) => {
                            assert_eq!(actual, Version(head), "step {step}")
                        }
                        other => panic!("step {step}: {op:?} should conflict, got {other:?}"),
                    }
                }
            }
            Op::AppendMany { parts } => {
                // The model decides the parts in order on a copy of the heads.
                let mut after = heads.clone();
                let mut failed = None;
                let mut decided = Vec::new();
                for (i, (stream, expect, n)) in parts.iter().enumerate() {
                    let s = &streams[*stream as usize];
                    let head = after.get(s).copied().unwrap_or(0);
                    let expected = expect.at(head);
                    let events: Vec<EventData> = (0..*n)
                        .map(|j| EventData::json("M", &format!("{step}-{i}-{j}")).unwrap())
                        .collect();
                    if failed.is_none() && !expected.accepts(Version(head)) {
                        failed = Some((s.clone(), head));
                    }
                    after.insert(s.clone(), head + u64::from(*n));
                    decided.push((
                        s.clone(),
                        head,
                        StreamAppend::new(s.clone(), expected, events),
                    ));
                }
                let request = decided.iter().map(|(_, _, p)| p.clone()).collect();
                let got = with_store!(&subject, st => st.append_many(request).await);
                match failed {
                    Some((s, head)) => match got {
                        Err(Error::Conflict { stream, actual, .. }) => {
                            assert_eq!((stream, actual), (s, Version(head)), "step {step}")
                        }
                        other => panic!("step {step}: {op:?} should conflict, got {other:?}"),
                    },
                    None => {
                        let results =
                            got.unwrap_or_else(|e| panic!("step {step}: {op:?} failed: {e}"));
                        for ((s, head, p), r) in decided.into_iter().zip(results) {
                            assert_eq!(r.first_position, Position(log.len() as u64 + 1));
                            assert_eq!(r.first_version, Version(head + 1), "step {step}");
                            for (i, d) in p.events.iter().enumerate() {
                                log.push(ModelEvent {
                                    stream: s.clone(),
                                    version: Version(head + 1 + i as u64),
                                    data: d.clone(),
                                });
                            }
                            appends.push((s, p.events, r));
                        }
                        heads = after;
                    }
                }
            }
            Op::Retry { which } => {
                if appends.is_empty() {
                    continue;
                }
                let (s, events, original) = appends[which % appends.len()].clone();
                let got =
                    with_store!(&subject, st => st.append(&s, ExpectedVersion::Any, events).await)
                        .unwrap();
                assert_eq!(
                    got, original,
                    "step {step}: a retried append returns the original result"
                );
            }
            Op::ReadStream {
                stream,
                start,
                end,
                backward,
                limit,
            } => {
                let s = &streams[*stream as usize];
                let range = VersionRange::from(u64::from(*start)..=u64::from(*end));
                let dir = if *backward {
                    Direction::Backward
                } else {
                    Direction::Forward
                };
                let got = with_store!(&subject, st => st.read_stream(s, range, dir, *limit as usize).await).unwrap();
                let mut want: Vec<(u64, &ModelEvent)> = log
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.stream == *s && range.contains(e.version))
                    .map(|(i, e)| (i as u64 + 1, e))
                    .collect();
                if *backward {
                    want.reverse();
                }
                want.truncate(*limit as usize);
                check(step, &got, &want);
            }
            Op::ReadAll { from, limit } => {
                let got = with_store!(&subject, st => st.read_all(Position(u64::from(*from)), *limit as usize).await).unwrap();
                let want: Vec<(u64, &ModelEvent)> = log
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (i as u64 + 1, e))
                    .filter(|(p, _)| *p >= u64::from(*from))
                    .take(*limit as usize)
                    .collect();
                check(step, &got, &want);
            }
            Op::Subscribe { from } => {
                let head = log.len() as u64;
                let start = u64::from(*from).max(1);
                let mut got = Vec::new();
                if start <= head {
                    with_store!(&subject, st => {
                        let mut sub = st.subscribe_all(Position(u64::from(*from)));
                        while (got.len() as u64) < head - start + 1 {
                            got.push(sub.next().await.unwrap().unwrap());
                        }
                    });
                }
                let want: Vec<(u64, &ModelEvent)> = log
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (i as u64 + 1, e))
                    .filter(|(p, _)| *p >= start)
                    .collect();
                check(step, &got, &want);
            }
            Op::Restart => subject.restart(),
        }
        let head = with_store!(&subject, st => st.head_position());
        assert_eq!(
            head,
            Position(log.len() as u64),
            "step {step}: head position"
        );
    }
    for (s, h) in &heads {
        let got = with_store!(&subject, st => st.stream_head(s).await).unwrap();
        assert_eq!(got, Some(Version(*h)));
    }
}

fn check(step: usize, got: &[RecordedEvent], want: &[(u64, &ModelEvent)]) {
    assert_eq!(got.len(), want.len(), "step {step}: count");
    for (g, (p, w)) in got.iter().zip(want) {
        assert_eq!(g.position, Position(*p), "step {step}");
        assert_eq!(g.stream, w.stream, "step {step}");
        assert_eq!(g.version, w.version, "step {step}");
        assert!(g.same_content(&w.data), "step {step}: content");
    }
}

/// Runs `ops` against both stores.
pub fn run_both(ops: &[Op]) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(Subject::mem(), ops));
    rt.block_on(run(Subject::sled(), ops));
}

/// Cases per proptest: more with `ANNALS_STRESS=1`.
pub fn cases(default: u32, stress: u32) -> u32 {
    if std::env::var_os("ANNALS_STRESS").is_some() {
        stress
    } else {
        default
    }
}
