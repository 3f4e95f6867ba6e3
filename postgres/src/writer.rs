//! The writer: queued appends of this process share one transaction (group commit).
//!
//! Positions are gap-free and become visible in commit order because an append can only
//! commit positions `head + 1 ..` of the committed head: two transactions that start from the
//! same head both insert position `head + 1`, and the primary key lets only one commit.
//!
//! Every writer takes one transaction-scoped advisory lock before it writes, so appends of
//! all processes are serialized.
//!
//! **Fast path** (one round trip). The writer remembers the head it last committed and the
//! versions of the streams it has seen. Every append moves the head, so while the head is
//! what the writer remembers, so is every stream. A group is decided against that memory and
//! written by one pipelined transaction (`BEGIN`, the lock, one statement that inserts the
//! events and sets the stream versions, the head and the notification, `COMMIT`); if another
//! process appended in between, the insert of `head + 1` fails on the primary key, the
//! transaction rolls back, and the group goes the slow way. Streams not in memory are read
//! first, without a lock: a read that saw a newer head than remembered also ends in that
//! failure. A conflict, or a duplicate event id, is always confirmed by the slow path.
//!
//! **Slow path** (two round trips): the first pipelines `BEGIN`, the lock, the head, the
//! stored ids and the stream versions; the second pipelines the same write statement and
//! `COMMIT`.
//!
//! Statements are prepared once per connection. A lost connection is reopened for the next
//! group, and any failure forgets what the writer remembered.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use annals_core::{
    AppendMarks, AppendResult, Error, EventData, EventId, Position, RecordedEvent, Result,
    StreamAppend, StreamId, Timestamp, Version,
};
use futures_util::future::{join, join4, join5};
use tokio::sync::{oneshot, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};

use crate::PgConfig;
use crate::rows::{COLUMNS, col, count_col, mark_column, marks_of, pg, to_event};

/// One queued append: one stream's (`append`) or several streams' at once (`append_many`).
pub(crate) struct Request {
    pub(crate) parts: Vec<StreamAppend>,
    /// A result per part.
    pub(crate) reply: oneshot::Sender<Result<Vec<AppendResult>>>,
}

impl Request {
    fn streams(&self) -> impl Iterator<Item = &StreamId> {
        self.parts.iter().map(|p| &p.stream)
    }
}

/// The most appends in one transaction.
const MAX_GROUP: usize = 512;

/// The most stream versions the writer remembers; past it, it forgets them all.
const MAX_REMEMBERED: usize = 100_000;

/// What the writer knows of the committed state: the head (position, time) and stream
/// versions (`Version::NONE` for a stream known not to exist), all as of that head.
#[derive(Default)]
struct Memory {
    head: Option<(u64, i64)>,
    streams: HashMap<StreamId, Version>,
}

impl Memory {
    fn forget(&mut self) {
        self.head = None;
        self.streams.clear();
    }

    fn learn(&mut self, head: u64, ts: i64, streams: HashMap<StreamId, Version>) {
        if self.streams.len() + streams.len() > MAX_REMEMBERED {
            self.streams.clear();
        }
        self.head = Some((head, ts));
        self.streams.extend(streams);
    }
}

/// The writer's connection and its prepared statements.
struct Conn {
    client: Client,
    task: tokio::task::JoinHandle<()>,
    lock: Statement,
    head: Statement,
    ids: Statement,
    streams: Statement,
    /// A group's writes in one statement: the events, the stream versions, the head and the
    /// notification.
    write: Statement,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Conn {
    async fn open(config: &PgConfig) -> Result<Self> {
        let (client, task) = crate::connect(config).await?;
        let s = &config.schema;
        let prepare = |sql: String| {
            let client = &client;
            async move { client.prepare(&sql).await.map_err(pg) }
        };
        Ok(Self {
            lock: prepare(format!(
                "SELECT pg_advisory_xact_lock(hashtext('{s}.append'))"
            ))
            .await?,
            head: prepare(format!("SELECT position, recorded_at FROM {s}.head")).await?,
            ids: prepare(format!(
                "SELECT {COLUMNS}, append_mark FROM {s}.events WHERE id = ANY($1)"
            ))
            .await?,
            streams: prepare(format!(
                "SELECT stream, version FROM {s}.streams WHERE stream = ANY($1)"
            ))
            .await?,
            write: prepare(write_sql(s)).await?,
            client,
            task,
        })
    }
}

/// The statement behind [`Conn::write`]: `$1..=$12` are the event columns (in [`COLUMNS`]
/// order), `$13`/`$14` the written streams and their new versions, `$15`/`$16` the new head
/// and its time, `$17` the notification payload, `$18` the events' append marks.
fn write_sql(s: &str) -> String {
    let types = [
        "bigint", "text", "bigint", "uuid", "text", "int", "bigint", "uuid", "uuid", "jsonb",
        "smallint", "bytea",
    ];
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", i + 1))
        .collect();
    format!(
        "WITH ins AS (INSERT INTO {s}.events ({COLUMNS}, append_mark)
                      SELECT * FROM UNNEST({}, $18::smallint[])),
              up AS (INSERT INTO {s}.streams (stream, version)
                     SELECT * FROM UNNEST($13::text[], $14::bigint[])
                     ON CONFLICT (stream) DO UPDATE SET version = EXCLUDED.version),
              h AS (UPDATE {s}.head SET position = $15, recorded_at = $16)
         SELECT pg_notify('annals_{s}', $17)",
        arrays.join(", ")
    )
}

pub(crate) struct Writer {
    config: PgConfig,
    conn: Option<Conn>,
    memory: Memory,
}

impl Writer {
    pub(crate) fn new(config: PgConfig) -> Self {
        Self {
            config,
            conn: None,
            memory: Memory::default(),
        }
    }

    pub(crate) async fn run(mut self, rx: flume::Receiver<Request>, head: watch::Sender<Position>) {
        let mut backoff = Duration::from_millis(10);
        let mut last_len = 1;
        while let Ok(first) = rx.recv_async().await {
            let group = collect(&rx, first, last_len, self.config.linger).await;
            last_len = group.len();
            let conn = match self.conn.take() {
                Some(c) if !c.client.is_closed() => c,
                _ => match Conn::open(&self.config).await {
                    Ok(c) => {
                        backoff = Duration::from_millis(10);
                        c
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "postgres writer cannot connect");
                        for r in group {
                            let _ = r.reply.send(Err(e.clone()));
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                },
            };
            let span = tracing::debug_span!("append_group", appends = group.len());
            let outcome =
                tracing::Instrument::instrument(commit(&conn, &mut self.memory, &group), span)
                    .await;
            match outcome {
                Ok((results, new_head)) => {
                    crate::advance(&head, new_head);
                    for (r, result) in group.into_iter().zip(results) {
                        let _ = r.reply.send(result);
                    }
                }
                Err(e) => {
                    self.memory.forget();
                    // Whether COMMIT ran is unknown when the connection broke: appenders
                    // retry with the same event ids, which is idempotent.
                    let _ = conn.client.batch_execute("ROLLBACK").await;
                    tracing::warn!(error = %e, "append group failed");
                    for r in group {
                        let _ = r.reply.send(Err(e.clone()));
                    }
                }
            }
            self.conn = Some(conn);
        }
    }
}

/// The group starting with `first`: whatever else is queued, and, when that is fewer appends
/// than the previous group had, what arrives within `linger` — the previous group's
/// appenders are about to send their next append, and one transaction for all of them costs
/// less than two.
async fn collect(
    rx: &flume::Receiver<Request>,
    first: Request,
    last_len: usize,
    linger: Duration,
) -> Vec<Request> {
    let mut group = vec![first];
    let started = std::time::Instant::now();
    while group.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(r) => group.push(r),
            Err(_) if group.len() < last_len && started.elapsed() < linger => {
                tokio::task::yield_now().await;
            }
            Err(_) => break,
        }
    }
    group
}

/// Each request's results and the head after the group.
type Outcome = (Vec<Result<Vec<AppendResult>>>, Position);

/// Commits one group: the fast path when the writer's memory allows, else the slow path.
async fn commit(conn: &Conn, memory: &mut Memory, group: &[Request]) -> Result<Outcome> {
    if let Some(outcome) = fast(conn, memory, group).await? {
        return Ok(outcome);
    }
    memory.forget();
    slow(conn, memory, group).await
}

/// The fast path; `None` when the group must take the slow path.
async fn fast(conn: &Conn, memory: &mut Memory, group: &[Request]) -> Result<Option<Outcome>> {
    let Some((head, head_ts)) = memory.head else {
        return Ok(None);
    };
    let c = &conn.client;
    let mut missing: Vec<&str> = group
        .iter()
        .flat_map(Request::streams)
        .filter(|s| !memory.streams.contains_key(*s))
        .map(StreamId::as_str)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        let rows = c.query(&conn.streams, &[&missing]).await.map_err(pg)?;
        let mut found = stream_versions(&rows)?;
        for name in missing {
            if let Ok(stream) = StreamId::new(name) {
                let v = found.remove(&stream).unwrap_or(Version::NONE);
                memory.streams.insert(stream, v);
            }
        }
    }
    let mut heads: HashMap<StreamId, Version> = group
        .iter()
        .flat_map(Request::streams)
        .filter_map(|s| Some((s.clone(), *memory.streams.get(s)?)))
        .collect();
    let ts = Timestamp::now().0.max(head_ts);
    let mut decided = Decided::new(head + 1);
    let results = decided.run(group, HashMap::new(), &mut heads, ts);
    // A conflict or a duplicate id decided from memory is confirmed under the lock.
    if results.iter().any(|r| {
        matches!(
            r,
            Err(Error::Conflict { .. } | Error::DuplicateEventId { .. })
        )
    }) {
        return Ok(None);
    }
    if decided.pending.is_empty() {
        return Ok(Some((results, Position(head))));
    }
    let writes = Writes::of(&decided, ts)?;
    // One round trip: the lock orders this with every other writer (and keeps a slow path
    // under the lock from ever losing a position to it).
    let (begin, lock, written, commit) = join4(
        c.batch_execute("BEGIN"),
        c.execute(&conn.lock, &[]),
        c.query_one(&conn.write, &writes.params()),
        c.batch_execute("COMMIT"),
    )
    .await;
    begin.map_err(pg)?;
    lock.map_err(pg)?;
    // After a failed statement, COMMIT ends the aborted transaction with a rollback.
    commit.map_err(pg)?;
    match written {
        Ok(_) => {
            memory.learn(writes.head(), ts, heads);
            Ok(Some((results, Position(writes.head()))))
        }
        // Another writer moved the head (or the id is stored): the transaction rolled back;
        // decide again from what is stored.
        Err(e) if e.code().is_some_and(retry_slow) => {
            tracing::debug!(error = %e, "fast append path fell back");
            Ok(None)
        }
        Err(e) => Err(pg(e)),
    }
}

/// Errors after which the slow path decides the group again: a position or an event id
/// already stored.
fn retry_slow(code: &SqlState) -> bool {
    code == &SqlState::UNIQUE_VIOLATION
}

/// The slow path: reads and writes under the advisory lock, in two round trips.
async fn slow(conn: &Conn, memory: &mut Memory, group: &[Request]) -> Result<Outcome> {
    let c = &conn.client;
    let ids: Vec<uuid::Uuid> = group
        .iter()
        .flat_map(|r| &r.parts)
        .flat_map(|p| p.events.iter().map(|e| *e.id.as_uuid()))
        .collect();
    let names: Vec<&str> = group
        .iter()
        .flat_map(Request::streams)
        .map(StreamId::as_str)
        .collect();
    // Round trip 1. Statements run in order on the server, so the reads see the state under
    // the lock.
    let (begin, lock, head, stored_rows, stream_rows) = join5(
        c.batch_execute("BEGIN"),
        c.execute(&conn.lock, &[]),
        c.query_one(&conn.head, &[]),
        c.query(&conn.ids, &[&ids]),
        c.query(&conn.streams, &[&names]),
    )
    .await;
    begin.map_err(pg)?;
    lock.map_err(pg)?;
    let head = head.map_err(pg)?;
    let old_head = count_col(&head, 0)?;
    let ts = Timestamp::now().0.max(col::<i64>(&head, 1)?);
    let mut stored: Stored = HashMap::new();
    for row in stored_rows.map_err(pg)? {
        let e = to_event(&row)?;
        let marks = marks_of(col(&row, 12)?);
        stored.insert(e.id, (e, marks));
    }
    let mut heads = stream_versions(&stream_rows.map_err(pg)?)?;
    for stream in group.iter().flat_map(Request::streams) {
        heads.entry(stream.clone()).or_insert(Version::NONE);
    }
    let mut decided = Decided::new(old_head + 1);
    let results = decided.run(group, stored, &mut heads, ts);
    if decided.pending.is_empty() {
        c.batch_execute("COMMIT").await.map_err(pg)?;
        memory.learn(old_head, ts, heads);
        return Ok((results, Position(old_head)));
    }
    let writes = Writes::of(&decided, ts)?;
    // Round trip 2. If the write fails the transaction is aborted and COMMIT rolls it back,
    // so both results are checked.
    let (written, commit) = join(
        c.query_one(&conn.write, &writes.params()),
        c.batch_execute("COMMIT"),
    )
    .await;
    written.map_err(pg)?;
    commit.map_err(pg)?;
    memory.learn(writes.head(), ts, heads);
    Ok((results, Position(writes.head())))
}

/// `(stream, version)` rows as a map.
fn stream_versions(rows: &[tokio_postgres::Row]) -> Result<HashMap<StreamId, Version>> {
    let mut heads = HashMap::new();
    for row in rows {
        let name: String = col(row, 0)?;
        if let Ok(stream) = StreamId::new(name) {
            heads.insert(stream, Version(count_col(row, 1)?));
        }
    }
    Ok(heads)
}

/// Stored events by id, each with its place in its append (`None`: not recorded, a row
/// older than the `append_mark` column).
type Stored = HashMap<EventId, (RecordedEvent, Option<AppendMarks>)>;

/// A group decided against a known state: the events to insert (with their places in their
/// appends) and the next position.
struct Decided {
    pending: Vec<RecordedEvent>,
    marks: Vec<AppendMarks>,
    next: u64,
}

impl Decided {
    fn new(next: u64) -> Self {
        Self {
            pending: Vec::new(),
            marks: Vec::new(),
            next,
        }
    }

    /// Decides every append of `group` in order against `stored` ids and stream `heads`
    /// (both updated as appends are taken).
    fn run(
        &mut self,
        group: &[Request],
        mut stored: Stored,
        heads: &mut HashMap<StreamId, Version>,
        ts: i64,
    ) -> Vec<Result<Vec<AppendResult>>> {
        group
            .iter()
            .map(|r| self.prepare_all(r, &mut stored, heads, ts))
            .collect()
    }

    /// Decides the parts of one request all or nothing: when a part fails, what the parts
    /// before it took is given back.
    fn prepare_all(
        &mut self,
        r: &Request,
        stored: &mut Stored,
        heads: &mut HashMap<StreamId, Version>,
        ts: i64,
    ) -> Result<Vec<AppendResult>> {
        let (pending, next) = (self.pending.len(), self.next);
        let mut before: Vec<(&StreamId, Option<Version>)> = Vec::new();
        let mut results = Vec::with_capacity(r.parts.len());
        for part in &r.parts {
            before.push((&part.stream, heads.get(&part.stream).copied()));
            match prepare(part, stored, heads, self, ts) {
                Ok(result) => results.push(result),
                Err(e) => {
                    for event in self.pending.drain(pending..) {
                        stored.remove(&event.id);
                    }
                    self.marks.truncate(pending);
                    self.next = next;
                    // Newest first, so a stream in two parts gets its first value back.
                    for (stream, version) in before.into_iter().rev() {
                        match version {
                            Some(v) => heads.insert(stream.clone(), v),
                            None => heads.remove(stream),
                        };
                    }
                    return Err(e);
                }
            }
        }
        Ok(results)
    }
}

/// A decided group's writes as the parameters of [`Conn::write`]: the pending events one
/// array per column, the written streams' new versions, the new head.
struct Writes<'a> {
    positions: Vec<i64>,
    streams: Vec<&'a str>,
    versions: Vec<i64>,
    ids: Vec<uuid::Uuid>,
    types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    times: Vec<i64>,
    correlations: Vec<Option<uuid::Uuid>>,
    causations: Vec<Option<uuid::Uuid>>,
    headers: Vec<serde_json::Value>,
    codecs: Vec<i16>,
    payloads: Vec<&'a [u8]>,
    /// Streams written and their new versions, sorted by name so that concurrent writers
    /// lock stream rows in one order.
    stream_names: Vec<&'a str>,
    stream_versions: Vec<i64>,
    head: i64,
    ts: i64,
    notification: String,
    marks: Vec<i16>,
}

/// A statement parameter.
type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

impl<'a> Writes<'a> {
    fn of(decided: &'a Decided, ts: i64) -> Result<Self> {
        let pending = &decided.pending;
        let column = |f: fn(&RecordedEvent) -> i64| pending.iter().map(f).collect::<Vec<_>>();
        let headers = pending
            .iter()
            .map(|e| {
                serde_json::to_value(&e.metadata.headers)
                    .map_err(|e| Error::storage_caused("headers as JSON", e))
            })
            .collect::<Result<_>>()?;
        let mut heads: HashMap<&str, i64> = HashMap::new();
        for e in pending {
            heads.insert(e.stream.as_str(), e.version.0 as i64);
        }
        let mut heads: Vec<(&str, i64)> = heads.into_iter().collect();
        heads.sort_unstable();
        let (stream_names, stream_versions) = heads.into_iter().unzip();
        let head = decided.next - 1;
        Ok(Self {
            positions: column(|e| e.position.0 as i64),
            streams: pending.iter().map(|e| e.stream.as_str()).collect(),
            versions: column(|e| e.version.0 as i64),
            ids: pending.iter().map(|e| *e.id.as_uuid()).collect(),
            types: pending.iter().map(|e| e.event_type.as_str()).collect(),
            schema_versions: pending.iter().map(|e| e.schema_version as i32).collect(),
            times: column(|e| e.recorded_at.0),
            correlations: pending.iter().map(|e| e.metadata.correlation_id).collect(),
            causations: pending.iter().map(|e| e.metadata.causation_id).collect(),
            headers,
            codecs: pending.iter().map(|e| i16::from(e.codec.0)).collect(),
            payloads: pending.iter().map(|e| e.payload.as_slice()).collect(),
            stream_names,
            stream_versions,
            head: head as i64,
            ts,
            notification: head.to_string(),
            marks: decided.marks.iter().map(|m| mark_column(*m)).collect(),
        })
    }

    /// The new head position.
    fn head(&self) -> u64 {
        self.head as u64
    }

    /// `$1..=$18` of [`write_sql`].
    fn params(&self) -> [Param<'_>; 18] {
        [
            &self.positions,
            &self.streams,
            &self.versions,
            &self.ids,
            &self.types,
            &self.schema_versions,
            &self.times,
            &self.correlations,
            &self.causations,
            &self.headers,
            &self.codecs,
            &self.payloads,
            &self.stream_names,
            &self.stream_versions,
            &self.head,
            &self.ts,
            &self.notification,
            &self.marks,
        ]
    }
}

/// Checks one append against what is stored (and what this group already took), and queues
/// its events.
fn prepare(
    r: &StreamAppend,
    stored: &mut Stored,
    heads: &mut HashMap<StreamId, Version>,
    decided: &mut Decided,
    ts: i64,
) -> Result<AppendResult> {
    let events = &r.events;
    if events.is_empty() {
        return Err(Error::InvalidEvent {
            reason: "an append needs at least one event".into(),
        });
    }
    let mut seen = HashSet::new();
    for e in events {
        validate(e)?;
        if !seen.insert(e.id) {
            return Err(Error::InvalidEvent {
                reason: format!("event id {} appears twice in one append", e.id),
            });
        }
    }
    // Idempotency: the same events again, as one whole append, give the original result.
    if let Some((i0, (first, _))) = events
        .iter()
        .enumerate()
        .find_map(|(i, e)| stored.get(&e.id).map(|f| (i, f)))
    {
        let p0 = first.position.0;
        let identical = i0 == 0
            && events.iter().enumerate().all(|(i, e)| {
                stored.get(&e.id).is_some_and(|(f, _)| {
                    f.stream == r.stream
                        && f.same_content(e)
                        && Some(f.position.0) == p0.checked_add(i as u64)
                })
            });
        // Rows older than the marks say nothing of their appends: taken as whole, as before.
        let marks: Option<Vec<AppendMarks>> = events
            .iter()
            .map(|e| stored.get(&e.id).and_then(|(_, m)| *m))
            .collect();
        let whole = marks.is_none_or(|m| AppendMarks::whole(&m));
        if let (true, true, Some((a, _)), Some((b, _))) = (
            identical,
            whole,
            stored.get(&events[0].id),
            stored.get(&events[events.len() - 1].id),
        ) {
            return Ok(AppendResult::new(
                a.version, b.version, a.position, b.position,
            ));
        }
        return Err(Error::DuplicateEventId {
            id: first.id,
            position: first.position,
        });
    }
    let actual = heads.get(&r.stream).copied().unwrap_or(Version::NONE);
    if !r.expected.accepts(actual) {
        return Err(Error::Conflict {
            stream: r.stream.clone(),
            expected: r.expected,
            actual,
        });
    }
    // Positions and versions are BIGINTs: refuse an append that would pass `i64::MAX` (only
    // damaged rows put a head there).
    let n = events.len() as u64;
    let room = |at: u64| at.checked_add(n).is_some_and(|end| end <= i64::MAX as u64);
    if !room(actual.0) || !room(decided.next) {
        return Err(Error::corrupt(
            Position(decided.next),
            format!(
                "{} at version {actual}: no room for {n} more events",
                r.stream
            ),
        ));
    }
    let first_position = Position(decided.next);
    let first_version = actual.next();
    for (i, data) in events.iter().enumerate() {
        let marks = AppendMarks::of(i, events.len());
        let e = RecordedEvent::new(
            Position(decided.next),
            r.stream.clone(),
            Version(first_version.0 + i as u64),
            Timestamp(ts),
            data.clone(),
        );
        decided.next += 1;
        stored.insert(e.id, (e.clone(), Some(marks)));
        decided.pending.push(e);
        decided.marks.push(marks);
    }
    let last_version = Version(first_version.0 + n - 1);
    heads.insert(r.stream.clone(), last_version);
    Ok(AppendResult::new(
        first_version,
        last_version,
        first_position,
        Position(first_position.0 + n - 1),
    ))
}

fn validate(e: &EventData) -> Result<()> {
    let bad = |reason: String| Err(Error::InvalidEvent { reason });
    if e.event_type.is_empty()
        || e.event_type.len() > annals_core::MAX_EVENT_TYPE_LEN
        || e.event_type.chars().any(char::is_control)
    {
        return bad(format!("bad event type {:?}", e.event_type));
    }
    if e.payload.len() > 16 * 1024 * 1024 {
        return bad(format!(
            "payload of {} bytes is larger than the limit of 16 MiB",
            e.payload.len()
        ));
    }
    Ok(())
}
