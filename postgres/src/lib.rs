//! # annals-postgres
//!
//! The annals [`EventStore`] on PostgreSQL, for deployments where several processes share one
//! store. It passes the same conformance suite as the embedded sled store.
//!
//! **Gap-free positions visible in commit order.** Every append transaction first takes one
//! transaction-scoped advisory lock (`pg_advisory_xact_lock`), reads the head position, writes
//! its events at the next positions and moves the head, then commits, which releases the lock.
//! So positions are assigned in commit order and a transaction's rows are visible before the
//! next one can assign a position: no reader can see position n+1 without n. Appends queued in
//! one process share a transaction (group commit).
//!
//! **Subscriptions** are woken by `LISTEN`/`NOTIFY` (the head position is the payload) with a
//! polling fallback; snapshots live in a table. The schema is created and migrated on open
//! (versioned migrations in `annals_migrations`).
//!
//! Not done yet (see the project's issue): projections across processes with advisory-lock
//! leadership, the two-process and failover tests, and benchmarks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use annals_core::{
    AppendResult, CodecId, Direction, Error, EventData, EventId, EventStore, ExpectedVersion,
    Metadata, Position, RecordedEvent, Result, Snapshot, SnapshotStore, StreamId, Timestamp,
    Version, VersionRange,
};
use tokio::sync::{oneshot, watch};
use tokio_postgres::{Client, NoTls, Row};

fn pg(e: tokio_postgres::Error) -> Error {
    Error::Storage(format!("postgres: {e}"))
}

/// Column `i` of `row` as `T`: a typed error, not `Row::get`'s panic, when the table does not
/// hold what this build expects (another schema version, a hand-edited table).
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    row.try_get(i).map_err(pg)
}

/// Migrations, in order; each runs once per schema (recorded in `annals_migrations`).
const MIGRATIONS: &[&str] = &["
    CREATE TABLE {s}.events (
        position BIGINT PRIMARY KEY,
        stream TEXT NOT NULL,
        version BIGINT NOT NULL,
        id UUID NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        schema_version INT NOT NULL,
        recorded_at BIGINT NOT NULL,
        correlation_id UUID,
        causation_id UUID,
        headers JSONB NOT NULL,
        codec SMALLINT NOT NULL,
        payload BYTEA NOT NULL,
        UNIQUE (stream, version)
    );
    CREATE TABLE {s}.streams (stream TEXT PRIMARY KEY, version BIGINT NOT NULL);
    CREATE TABLE {s}.head (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), position BIGINT NOT NULL, recorded_at BIGINT NOT NULL);
    INSERT INTO {s}.head (position, recorded_at) VALUES (0, 0);
    CREATE TABLE {s}.snapshots (
        stream TEXT PRIMARY KEY,
        version BIGINT NOT NULL,
        schema_version INT NOT NULL,
        codec SMALLINT NOT NULL,
        payload BYTEA NOT NULL,
        taken_at BIGINT NOT NULL
    );
"];

/// How to reach the server and which schema to use.
#[derive(Clone, Debug)]
pub struct PgConfig {
    /// A libpq-style connection string, e.g. `host=127.0.0.1 user=postgres dbname=test`.
    pub connect: String,
    /// The schema holding the store's tables (created if missing).
    pub schema: String,
    /// How often subscribers poll the head when no notification arrives.
    pub poll_every: Duration,
}

impl PgConfig {
    /// A config for `connect` and `schema`.
    pub fn new(connect: impl Into<String>, schema: impl Into<String>) -> Self {
        Self {
            connect: connect.into(),
            schema: schema.into(),
            poll_every: Duration::from_millis(500),
        }
    }
}

struct Request {
    stream: StreamId,
    expected: ExpectedVersion,
    events: Vec<EventData>,
    reply: oneshot::Sender<Result<AppendResult>>,
}

struct Inner {
    reader: Client,
    schema: String,
    head: watch::Sender<Position>,
    tx: flume::Sender<Request>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The PostgreSQL event store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

async fn connect(config: &PgConfig) -> Result<(Client, tokio::task::JoinHandle<()>)> {
    let (client, connection) = tokio_postgres::connect(&config.connect, NoTls)
        .await
        .map_err(pg)?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection ended");
        }
    });
    Ok((client, task))
}

fn valid_schema(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::Storage(format!(
            "schema name {name:?} must be lower-case letters, digits and _"
        )))
    }
}

impl PgStore {
    /// Connects, creates and migrates the schema, and starts the writer and the listener.
    ///
    /// # Errors
    /// Connection or SQL errors as [`Error::Storage`]; an invalid schema name.
    pub async fn open(config: PgConfig) -> Result<Self> {
        valid_schema(&config.schema)?;
        let s = config.schema.clone();
        let (reader, reader_task) = connect(&config).await?;
        migrate(&reader, &s).await?;
        let (writer, writer_task) = connect(&config).await?;
        let head_now = read_head(&reader, &s).await?;
        let (head, _) = watch::channel(head_now);
        let (tx, rx) = flume::bounded::<Request>(4096);
        let w = Writer {
            client: writer,
            schema: s.clone(),
        };
        let write_task = tokio::spawn(w.run(rx, head.clone()));
        let listen_task = tokio::spawn(listen(config.clone(), head.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                reader,
                schema: s,
                head,
                tx,
                tasks: vec![reader_task, writer_task, write_task, listen_task],
            }),
        })
    }

    /// Drops the store's schema and everything in it (for tests).
    ///
    /// # Errors
    /// SQL errors.
    pub async fn drop_schema(&self) -> Result<()> {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.inner.schema);
        self.inner.reader.batch_execute(&sql).await.map_err(pg)
    }

    fn s(&self) -> &str {
        &self.inner.schema
    }
}

async fn migrate(client: &Client, s: &str) -> Result<()> {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}.annals_migrations (version INT PRIMARY KEY);"
        ))
        .await
        .map_err(pg)?;
    for (i, m) in MIGRATIONS.iter().enumerate() {
        let version = i as i32 + 1;
        // One migration at a time across processes.
        let sql = format!(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtext('{s}.migrations'));
             DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM {s}.annals_migrations WHERE version = {version}) THEN
                 EXECUTE $m${}$m$;
                 INSERT INTO {s}.annals_migrations VALUES ({version});
               END IF;
             END $$;
             COMMIT;",
            m.replace("{s}", s)
        );
        client.batch_execute(&sql).await.map_err(pg)?;
    }
    Ok(())
}

async fn read_head(client: &Client, s: &str) -> Result<Position> {
    let row = client
        .query_one(&format!("SELECT position FROM {s}.head"), &[])
        .await
        .map_err(pg)?;
    Ok(Position(col::<i64>(&row, 0)? as u64))
}

/// Moves the head watch forward on NOTIFY, and polls as a fallback.
async fn listen(config: PgConfig, head: watch::Sender<Position>) {
    use futures_util::StreamExt;
    let channel = format!("annals_{}", config.schema);
    loop {
        let connected = tokio_postgres::connect(&config.connect, NoTls).await;
        let Ok((client, mut connection)) = connected else {
            tokio::time::sleep(config.poll_every).await;
            continue;
        };
        let (ntx, mut nrx) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(m)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notification(n) = m {
                    let _ = ntx.send(n.payload().parse::<u64>().unwrap_or(0));
                }
            }
        });
        if client
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .is_err()
        {
            driver.abort();
            continue;
        }
        loop {
            tokio::select! {
                n = nrx.recv() => match n {
                    Some(p) => { head.send_if_modified(|h| if p > h.0 { h.0 = p; true } else { false }); }
                    None => break,
                },
                () = tokio::time::sleep(config.poll_every) => {
                    match read_head(&client, &config.schema).await {
                        Ok(p) => { head.send_if_modified(|h| if p > *h { *h = p; true } else { false }); }
                        Err(_) => break,
                    }
                }
            }
        }
        driver.abort();
    }
}

struct Writer {
    client: Client,
    schema: String,
}

impl Writer {
    async fn run(mut self, rx: flume::Receiver<Request>, head: watch::Sender<Position>) {
        while let Ok(first) = rx.recv_async().await {
            let mut group = vec![first];
            while group.len() < 512 {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            match self.commit(&mut group).await {
                Ok((results, new_head)) => {
                    head.send_if_modified(|h| {
                        if new_head > *h {
                            *h = new_head;
                            true
                        } else {
                            false
                        }
                    });
                    for (r, result) in group.into_iter().zip(results) {
                        let _ = r.reply.send(result);
                    }
                }
                Err(e) => {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    for r in group {
                        let _ = r.reply.send(Err(Error::Storage(e.to_string())));
                    }
                }
            }
        }
    }

    /// One transaction for the whole group, with a fixed number of round trips: lock + head,
    /// the ids and stream versions the group touches, one multi-row insert, one upsert.
    async fn commit(
        &mut self,
        group: &mut [Request],
    ) -> Result<(Vec<Result<AppendResult>>, Position)> {
        let s = self.schema.clone();
        let tx = self.client.transaction().await.map_err(pg)?;
        tx.execute(
            &format!("SELECT pg_advisory_xact_lock(hashtext('{s}.append'))"),
            &[],
        )
        .await
        .map_err(pg)?;
        let row = tx
            .query_one(&format!("SELECT position, recorded_at FROM {s}.head"), &[])
            .await
            .map_err(pg)?;
        let mut next = col::<i64>(&row, 0)? as u64 + 1;
        let ts = Timestamp::now().0.max(col::<i64>(&row, 1)?);
        let ids: Vec<uuid::Uuid> = group
            .iter()
            .flat_map(|r| r.events.iter().map(|e| *e.id.as_uuid()))
            .collect();
        let mut stored: HashMap<EventId, RecordedEvent> = HashMap::new();
        for row in tx
            .query(
                &format!("SELECT {COLUMNS} FROM {s}.events WHERE id = ANY($1)"),
                &[&ids],
            )
            .await
            .map_err(pg)?
        {
            let e = to_event(&row)?;
            stored.insert(e.id, e);
        }
        let names: Vec<&str> = group.iter().map(|r| r.stream.as_str()).collect();
        let mut heads: HashMap<StreamId, Version> = HashMap::new();
        for row in tx
            .query(
                &format!("SELECT stream, version FROM {s}.streams WHERE stream = ANY($1)"),
                &[&names],
            )
            .await
            .map_err(pg)?
        {
            let name: String = col(&row, 0)?;
            if let Ok(stream) = StreamId::new(name) {
                heads.insert(stream, Version(col::<i64>(&row, 1)? as u64));
            }
        }
        let mut pending: Vec<RecordedEvent> = Vec::new();
        let mut results = Vec::with_capacity(group.len());
        for r in group.iter_mut() {
            let events = std::mem::take(&mut r.events);
            let result = prepare(
                r,
                events,
                &mut stored,
                &mut heads,
                &mut pending,
                &mut next,
                ts,
            );
            results.push(result);
        }
        if !pending.is_empty() {
            let mut positions = Vec::new();
            let mut streams = Vec::new();
            let mut versions = Vec::new();
            let mut event_ids = Vec::new();
            let mut types = Vec::new();
            let mut schema_versions = Vec::new();
            let mut times = Vec::new();
            let mut correlations = Vec::new();
            let mut causations = Vec::new();
            let mut headers = Vec::new();
            let mut codecs = Vec::new();
            let mut payloads = Vec::new();
            for e in &pending {
                positions.push(e.position.0 as i64);
                streams.push(e.stream.as_str());
                versions.push(e.version.0 as i64);
                event_ids.push(*e.id.as_uuid());
                types.push(e.event_type.as_str());
                schema_versions.push(e.schema_version as i32);
                times.push(ts);
                correlations.push(e.metadata.correlation_id);
                causations.push(e.metadata.causation_id);
                headers.push(
                    serde_json::to_value(&e.metadata.headers)
                        .map_err(|e| Error::Storage(e.to_string()))?,
                );
                codecs.push(i16::from(e.codec.0));
                payloads.push(e.payload.as_slice());
            }
            tx.execute(
                &format!(
                    "INSERT INTO {s}.events (position, stream, version, id, event_type, schema_version, recorded_at,
                       correlation_id, causation_id, headers, codec, payload)
                     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::int[],
                       $7::bigint[], $8::uuid[], $9::uuid[], $10::jsonb[], $11::smallint[], $12::bytea[])"
                ),
                &[&positions, &streams, &versions, &event_ids, &types, &schema_versions, &times, &correlations, &causations, &headers, &codecs, &payloads],
            )
            .await
            .map_err(pg)?;
            // The new head of every stream written: its last pending event.
            let mut changed: HashMap<&str, i64> = HashMap::new();
            for e in &pending {
                changed.insert(e.stream.as_str(), e.version.0 as i64);
            }
            let names: Vec<&str> = changed.keys().copied().collect();
            let heads: Vec<i64> = changed.values().copied().collect();
            tx.execute(
                &format!(
                    "INSERT INTO {s}.streams (stream, version) SELECT * FROM UNNEST($1::text[], $2::bigint[])
                     ON CONFLICT (stream) DO UPDATE SET version = EXCLUDED.version"
                ),
                &[&names, &heads],
            )
            .await
            .map_err(pg)?;
            let head = next - 1;
            tx.execute(
                &format!("UPDATE {s}.head SET position = $1, recorded_at = $2"),
                &[&(head as i64), &ts],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                &format!("SELECT pg_notify('annals_{s}', $1)"),
                &[&head.to_string()],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        Ok((results, Position(next - 1)))
    }
}

/// Checks one append against what is stored (and what this group already took), and queues
/// its events.
fn prepare(
    r: &Request,
    events: Vec<EventData>,
    stored: &mut HashMap<EventId, RecordedEvent>,
    heads: &mut HashMap<StreamId, Version>,
    pending: &mut Vec<RecordedEvent>,
    next: &mut u64,
    ts: i64,
) -> Result<AppendResult> {
    if events.is_empty() {
        return Err(Error::InvalidEvent {
            reason: "an append needs at least one event".into(),
        });
    }
    let mut seen = HashSet::new();
    for e in &events {
        validate(e)?;
        if !seen.insert(e.id) {
            return Err(Error::InvalidEvent {
                reason: format!("event id {} appears twice in one append", e.id),
            });
        }
    }
    // Idempotency: the same events again give the original result.
    if let Some((i0, first)) = events
        .iter()
        .enumerate()
        .find_map(|(i, e)| stored.get(&e.id).map(|f| (i, f)))
    {
        let p0 = first.position.0;
        let identical = i0 == 0
            && events.iter().enumerate().all(|(i, e)| {
                stored.get(&e.id).is_some_and(|f| {
                    f.stream == r.stream && f.same_content(e) && f.position.0 == p0 + i as u64
                })
            });
        if let (true, Some(a), Some(b)) = (
            identical,
            stored.get(&events[0].id),
            stored.get(&events[events.len() - 1].id),
        ) {
            return Ok(AppendResult {
                first_version: a.version,
                last_version: b.version,
                first_position: a.position,
                last_position: b.position,
            });
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
    let first_position = Position(*next);
    let first_version = actual.next();
    let n = events.len() as u64;
    for (i, data) in events.into_iter().enumerate() {
        let e = RecordedEvent {
            position: Position(*next),
            stream: r.stream.clone(),
            version: Version(first_version.0 + i as u64),
            id: data.id,
            event_type: data.event_type,
            schema_version: data.schema_version,
            recorded_at: Timestamp(ts),
            metadata: data.metadata,
            codec: data.codec,
            payload: data.payload,
        };
        *next += 1;
        stored.insert(e.id, e.clone());
        pending.push(e);
    }
    let last_version = Version(first_version.0 + n - 1);
    heads.insert(r.stream.clone(), last_version);
    Ok(AppendResult {
        first_version,
        last_version,
        first_position,
        last_position: Position(first_position.0 + n - 1),
    })
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

const COLUMNS: &str = "position, stream, version, id, event_type, schema_version, recorded_at, correlation_id, causation_id, headers, codec, payload";

fn to_event(row: &Row) -> Result<RecordedEvent> {
    let position = Position(col::<i64>(row, 0)? as u64);
    let corrupt = |what: &str| Error::corrupt(position, what.to_owned());
    let stream = StreamId::new(col::<String>(row, 1)?).map_err(|_| corrupt("invalid stream id"))?;
    let headers: serde_json::Value = col(row, 9)?;
    let headers = serde_json::from_value(headers).map_err(|_| corrupt("invalid headers"))?;
    let codec: i16 = col(row, 10)?;
    Ok(RecordedEvent {
        position,
        stream,
        version: Version(col::<i64>(row, 2)? as u64),
        id: EventId::from_uuid(col(row, 3)?),
        event_type: col(row, 4)?,
        schema_version: col::<i32>(row, 5)? as u32,
        recorded_at: Timestamp(col(row, 6)?),
        metadata: Metadata {
            correlation_id: col(row, 7)?,
            causation_id: col(row, 8)?,
            headers,
        },
        codec: CodecId(u8::try_from(codec).map_err(|_| corrupt("invalid codec"))?),
        payload: col(row, 11)?,
    })
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl EventStore for PgStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<EventData>,
    ) -> Result<AppendResult> {
        let (reply, rx) = oneshot::channel();
        let req = Request {
            stream: stream.clone(),
            expected,
            events,
            reply,
        };
        self.inner
            .tx
            .send_async(req)
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
        direction: Direction,
        n: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let order = match direction {
            Direction::Forward => "ASC",
            Direction::Backward => "DESC",
        };
        let start = range.start.0.max(1).min(i64::MAX as u64) as i64;
        let end = range.end.0.min(i64::MAX as u64) as i64;
        if n == 0 || start > end {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM {}.events WHERE stream = $1 AND version BETWEEN $2 AND $3 ORDER BY version {order} LIMIT $4",
            self.s()
        );
        let rows = self
            .inner
            .reader
            .query(&sql, &[&stream.as_str(), &start, &end, &limit(n)])
            .await
            .map_err(pg)?;
        rows.iter().map(to_event).collect()
    }

    async fn read_all(&self, from: Position, n: usize) -> Result<Vec<RecordedEvent>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let from = from.0.max(1).min(i64::MAX as u64) as i64;
        let sql = format!(
            "SELECT {COLUMNS} FROM {}.events WHERE position >= $1 ORDER BY position LIMIT $2",
            self.s()
        );
        let rows = self
            .inner
            .reader
            .query(&sql, &[&from, &limit(n)])
            .await
            .map_err(pg)?;
        let events: Vec<RecordedEvent> = rows.iter().map(to_event).collect::<Result<_>>()?;
        for (i, e) in events.iter().enumerate() {
            if e.position.0 != from as u64 + i as u64 {
                return Err(Error::corrupt(
                    Position(from as u64 + i as u64),
                    "position missing from the log",
                ));
            }
        }
        Ok(events)
    }

    async fn stream_head(&self, stream: &StreamId) -> Result<Option<Version>> {
        let sql = format!("SELECT version FROM {}.streams WHERE stream = $1", self.s());
        let row = self
            .inner
            .reader
            .query_opt(&sql, &[&stream.as_str()])
            .await
            .map_err(pg)?;
        row.map(|r| col::<i64>(&r, 0).map(|v| Version(v as u64)))
            .transpose()
    }

    async fn read_event(&self, id: EventId) -> Result<Option<RecordedEvent>> {
        let sql = format!("SELECT {COLUMNS} FROM {}.events WHERE id = $1", self.s());
        let row = self
            .inner
            .reader
            .query_opt(&sql, &[id.as_uuid()])
            .await
            .map_err(pg)?;
        row.as_ref().map(to_event).transpose()
    }

    fn head_position(&self) -> Position {
        *self.inner.head.borrow()
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        self.inner.head.subscribe()
    }
}

impl SnapshotStore for PgStore {
    async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<()> {
        let sql = format!(
            "INSERT INTO {}.snapshots (stream, version, schema_version, codec, payload, taken_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (stream) DO UPDATE SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version,
               codec = EXCLUDED.codec, payload = EXCLUDED.payload, taken_at = EXCLUDED.taken_at",
            self.s()
        );
        self.inner
            .reader
            .execute(
                &sql,
                &[
                    &stream.as_str(),
                    &(snapshot.version.0 as i64),
                    &(snapshot.schema_version as i32),
                    &i16::from(snapshot.codec.0),
                    &snapshot.payload,
                    &snapshot.taken_at.0,
                ],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        let sql = format!(
            "SELECT version, schema_version, codec, payload, taken_at FROM {}.snapshots WHERE stream = $1",
            self.s()
        );
        let Some(row) = self
            .inner
            .reader
            .query_opt(&sql, &[&stream.as_str()])
            .await
            .map_err(pg)?
        else {
            return Ok(None);
        };
        let codec: i16 = col(&row, 2)?;
        Ok(Some(Snapshot {
            version: Version(col::<i64>(&row, 0)? as u64),
            schema_version: col::<i32>(&row, 1)? as u32,
            codec: CodecId(
                u8::try_from(codec)
                    .map_err(|_| Error::corrupt(Position::NONE, "invalid snapshot codec"))?,
            ),
            payload: col(&row, 3)?,
            taken_at: Timestamp(col(&row, 4)?),
        }))
    }
}
