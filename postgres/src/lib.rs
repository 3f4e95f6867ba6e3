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
//! one process share a transaction (group commit) that costs one pipelined round trip while
//! no other process has appended since, two otherwise (see the `writer` module).
//!
//! **Subscriptions** are woken by `LISTEN`/`NOTIFY` (the head position is the payload) with a
//! polling fallback; snapshots live in a table. The schema is created and migrated on open
//! (versioned migrations in `annals_migrations`). Lost connections are reopened.
//!
//! Projections across processes (one active worker per projection, checkpoints in the read
//! model's transaction) are in `annals-projections` with its `postgres` feature.
//!
//! ```no_run
//! use annals_core::{EventData, EventStore, ExpectedVersion, StreamId};
//! use annals_postgres::{PgConfig, PgStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::open(PgConfig::new("host=127.0.0.1 user=postgres dbname=test", "bank")).await?;
//! let stream = StreamId::new("account-1")?;
//! let r = store.append(&stream, ExpectedVersion::NoStream, vec![EventData::json("Opened", &"alice")?]).await?;
//! assert_eq!(r.first_version.0, 1);
//! # Ok(()) }
//! ```

mod rows;
mod schema;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use annals_core::{
    AppendResult, CodecId, Direction, Error, EventData, EventId, EventStore, ExpectedVersion,
    Latest, Position, RecordedEvent, Result, Snapshot, SnapshotStore, StreamAppend, StreamId,
    Timestamp, Version, VersionRange,
};
use tokio::sync::{Mutex, oneshot, watch};
use tokio_postgres::{Client, NoTls, Statement};

use rows::{COLUMNS, col, count_col, pg, to_event};
use writer::{Request, Writer};

/// How to reach the server and which schema to use.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PgConfig {
    /// A libpq-style connection string, e.g. `host=127.0.0.1 user=postgres dbname=test`.
    pub connect: String,
    /// The schema holding the store's tables (created if missing).
    pub schema: String,
    /// How often subscribers poll the head when no notification arrives.
    pub poll_every: Duration,
    /// Connections for reads (at least 1); reads are spread over them.
    pub readers: usize,
    /// How long the writer may wait for a group to fill up to the size of the previous one
    /// before it commits (default 250 µs; zero: never wait). Raises throughput when a steady
    /// set of callers append; adds at most this much latency.
    pub linger: Duration,
}

impl PgConfig {
    /// A config for `connect` and `schema`: two reader connections, polling every 500 ms,
    /// lingering up to 250 µs for fuller groups.
    pub fn new(connect: impl Into<String>, schema: impl Into<String>) -> Self {
        Self {
            connect: connect.into(),
            schema: schema.into(),
            poll_every: Duration::from_millis(500),
            readers: 2,
            linger: Duration::from_micros(250),
        }
    }

    /// Sets how often subscribers poll the head when no notification arrives.
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    /// Sets the number of reader connections (at least 1).
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers;
        self
    }

    /// Sets how long the writer may wait for a fuller group ([`PgConfig::linger`]).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }
}

/// One reader connection that is reopened when it breaks.
struct Pooled {
    client: Mutex<Option<Arc<Reader>>>,
}

/// A reader connection with the store's read statements prepared once, when it opens (not on
/// every call).
struct Reader {
    client: Client,
    forward: Statement,
    backward: Statement,
    all: Statement,
    stream_head: Statement,
    event: Statement,
    save_snapshot: Statement,
    load_snapshot: Statement,
    after_snapshot: Statement,
}

impl Reader {
    async fn open(config: &PgConfig) -> Result<Self> {
        let (client, _) = connect(config).await?;
        let s = &config.schema;
        let prepare = |sql: String| {
            let client = &client;
            async move { client.prepare(&sql).await.map_err(pg) }
        };
        let range = |order: &str| {
            format!(
                "SELECT {COLUMNS} FROM {s}.events WHERE stream = $1 AND version BETWEEN $2 AND $3 ORDER BY version {order} LIMIT $4"
            )
        };
        Ok(Self {
            forward: prepare(range("ASC")).await?,
            backward: prepare(range("DESC")).await?,
            all: prepare(format!(
                "SELECT {COLUMNS} FROM {s}.events WHERE position >= $1 ORDER BY position LIMIT $2"
            ))
            .await?,
            stream_head: prepare(format!("SELECT version FROM {s}.streams WHERE stream = $1"))
                .await?,
            event: prepare(format!("SELECT {COLUMNS} FROM {s}.events WHERE id = $1")).await?,
            save_snapshot: prepare(format!(
                "INSERT INTO {s}.snapshots (stream, version, schema_version, codec, payload, taken_at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (stream) DO UPDATE SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version,
                   codec = EXCLUDED.codec, payload = EXCLUDED.payload, taken_at = EXCLUDED.taken_at"
            ))
            .await?,
            load_snapshot: prepare(format!(
                "SELECT version, schema_version, codec, payload, taken_at FROM {s}.snapshots WHERE stream = $1"
            ))
            .await?,
            // One statement (one MVCC snapshot): the snapshot row, then the events after
            // its version; event columns first (as `to_event` reads them), then the
            // snapshot's, each side NULL in the other's rows.
            after_snapshot: prepare(format!(
                "WITH s AS (SELECT version, schema_version, codec, payload, taken_at
                            FROM {s}.snapshots WHERE stream = $1)
                 SELECT NULL::bigint, NULL::text, NULL::bigint, NULL::uuid, NULL::text, NULL::int,
                        NULL::bigint, NULL::uuid, NULL::uuid, NULL::jsonb, NULL::smallint, NULL::bytea,
                        s.version, s.schema_version, s.codec, s.payload, s.taken_at, 0 AS kind FROM s
                 UNION ALL
                 (SELECT {COLUMNS}, NULL::bigint, NULL::int, NULL::smallint, NULL::bytea, NULL::bigint, 1
                  FROM {s}.events WHERE stream = $1
                    AND version > COALESCE((SELECT version FROM s), 0)
                  ORDER BY version LIMIT $2)"
            ))
            .await?,
            client,
        })
    }
}

struct Inner {
    config: PgConfig,
    readers: Vec<Pooled>,
    next_reader: AtomicUsize,
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

/// Opens a connection and spawns its driver task (which ends when the connection does).
pub(crate) async fn connect(config: &PgConfig) -> Result<(Client, tokio::task::JoinHandle<()>)> {
    let (client, connection) = tokio_postgres::connect(&config.connect, NoTls)
        .await
        .map_err(pg)?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "postgres connection ended");
        }
    });
    // Every statement of the store is an index probe or an index range. A generic plan
    // cached while a table was small would stay a sequential scan as it grows, so those are
    // off; and JIT compilation (triggered by the cost estimates that makes) would cost more
    // than any of these short statements.
    client
        .batch_execute("SET enable_seqscan = off; SET jit = off")
        .await
        .map_err(pg)?;
    Ok((client, task))
}

impl PgStore {
    /// Connects, creates and migrates the schema, and starts the writer and the listener.
    ///
    /// # Errors
    /// Connection or SQL errors as [`Error::Storage`]; an invalid schema name.
    pub async fn open(config: PgConfig) -> Result<Self> {
        schema::valid_schema(&config.schema)?;
        let (first, _) = connect(&config).await?;
        schema::migrate(&first, &config.schema).await?;
        let head_now = read_head(&first, &config.schema).await?;
        drop(first);
        let mut readers = Vec::new();
        for _ in 0..config.readers.max(1) {
            let reader = Reader::open(&config).await?;
            readers.push(Pooled {
                client: Mutex::new(Some(Arc::new(reader))),
            });
        }
        let (head, _) = watch::channel(head_now);
        let (tx, rx) = flume::bounded::<Request>(4096);
        let write_task = tokio::spawn(Writer::new(config.clone()).run(rx, head.clone()));
        let listen_task = tokio::spawn(listen(config.clone(), head.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                readers,
                next_reader: AtomicUsize::new(0),
                head,
                tx,
                tasks: vec![write_task, listen_task],
            }),
        })
    }

    /// Every acknowledged append is already committed (the writer acknowledges after
    /// `COMMIT`, with the server's `synchronous_commit`): there is nothing to flush. Here so
    /// that code written against the embedded store's `flush` works unchanged.
    ///
    /// # Errors
    /// None today; reserved for a store that buffers.
    pub async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Lets go of this handle; when it was the last one, the writer and the notification
    /// listener stop and every connection closes. Appends in flight when the last handle goes
    /// are not acknowledged (their transactions commit or roll back as a whole).
    ///
    /// # Errors
    /// None today.
    pub async fn close(self) -> Result<()> {
        drop(self);
        Ok(())
    }

    /// Drops the store's schema and everything in it (for tests).
    ///
    /// # Errors
    /// SQL errors.
    pub async fn drop_schema(&self) -> Result<()> {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.s());
        let reader = self.reader().await?;
        reader.client.batch_execute(&sql).await.map_err(pg)?;
        // The readers' statements name the dropped tables: open them anew next time.
        for slot in &self.inner.readers {
            *slot.client.lock().await = None;
        }
        Ok(())
    }

    /// The config the store was opened with.
    pub fn config(&self) -> &PgConfig {
        &self.inner.config
    }

    fn s(&self) -> &str {
        &self.inner.config.schema
    }

    /// The next reader connection, reopened (and its statements prepared) if it broke.
    async fn reader(&self) -> Result<Arc<Reader>> {
        let readers = &self.inner.readers;
        let i = self.inner.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        let mut slot = readers[i].client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(c.clone());
        }
        let c = Arc::new(Reader::open(&self.inner.config).await?);
        *slot = Some(c.clone());
        Ok(c)
    }
}

async fn read_head(client: &Client, s: &str) -> Result<Position> {
    let row = client
        .query_one(&format!("SELECT position FROM {s}.head"), &[])
        .await
        .map_err(pg)?;
    Ok(Position(count_col(&row, 0)?))
}

/// Moves the head watch forward to `p`, never back (the writer, notifications and polls
/// race).
pub(crate) fn advance(head: &watch::Sender<Position>, p: Position) {
    head.send_if_modified(|h| {
        let newer = p > *h;
        if newer {
            *h = p;
        }
        newer
    });
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
                    Some(p) => advance(&head, Position(p)),
                    None => break,
                },
                () = tokio::time::sleep(config.poll_every) => {
                    match read_head(&client, &config.schema).await {
                        Ok(p) => advance(&head, p),
                        Err(_) => break,
                    }
                }
            }
        }
        driver.abort();
    }
}

impl PgStore {
    /// Queues the parts of one append for the writer and waits for their results.
    async fn write(&self, parts: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        let span = tracing::debug_span!(
            "append",
            streams = parts.len(),
            events = parts.iter().map(|p| p.events.len()).sum::<usize>()
        );
        let (reply, rx) = oneshot::channel();
        let req = Request { parts, reply };
        tracing::Instrument::instrument(
            async move {
                self.inner
                    .tx
                    .send_async(req)
                    .await
                    .map_err(|_| Error::Closed)?;
                rx.await.map_err(|_| Error::Closed)?
            },
            span,
        )
        .await
    }
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
        let parts = vec![StreamAppend::new(stream.clone(), expected, events)];
        let results = self.write(parts).await?;
        // One part, one result.
        results.into_iter().next().ok_or(Error::Closed)
    }

    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        if appends.is_empty() {
            return Err(Error::InvalidEvent {
                reason: "append_many needs at least one append".into(),
            });
        }
        self.write(appends).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        range: VersionRange,
        direction: Direction,
        n: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let start = range.start.0.max(1).min(i64::MAX as u64) as i64;
        let end = range.end.0.min(i64::MAX as u64) as i64;
        if n == 0 || start > end {
            return Ok(Vec::new());
        }
        let reader = self.reader().await?;
        let statement = match direction {
            Direction::Forward => &reader.forward,
            Direction::Backward => &reader.backward,
        };
        let rows = reader
            .client
            .query(statement, &[&stream.as_str(), &start, &end, &limit(n)])
            .await
            .map_err(pg)?;
        rows.iter().map(to_event).collect()
    }

    async fn read_all(&self, from: Position, n: usize) -> Result<Vec<RecordedEvent>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let from = from.0.max(1).min(i64::MAX as u64) as i64;
        let reader = self.reader().await?;
        let rows = reader
            .client
            .query(&reader.all, &[&from, &limit(n)])
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
        let reader = self.reader().await?;
        let row = reader
            .client
            .query_opt(&reader.stream_head, &[&stream.as_str()])
            .await
            .map_err(pg)?;
        row.map(|r| count_col(&r, 0).map(Version)).transpose()
    }

    async fn read_event(&self, id: EventId) -> Result<Option<RecordedEvent>> {
        let reader = self.reader().await?;
        let row = reader
            .client
            .query_opt(&reader.event, &[id.as_uuid()])
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
        let version = i64::try_from(snapshot.version.0)
            .map_err(|_| Error::storage("snapshot version beyond BIGINT"))?;
        let reader = self.reader().await?;
        reader
            .client
            .execute(
                &reader.save_snapshot,
                &[
                    &stream.as_str(),
                    &version,
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
        let reader = self.reader().await?;
        let row = reader
            .client
            .query_opt(&reader.load_snapshot, &[&stream.as_str()])
            .await
            .map_err(pg)?;
        row.as_ref().map(|r| snapshot_at(r, 0)).transpose()
    }

    /// One statement: one round trip, and the snapshot and the events from one database
    /// snapshot (the events follow exactly the snapshot returned).
    async fn load_latest(&self, stream: &StreamId, limit: usize) -> Result<Latest> {
        let reader = self.reader().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = reader
            .client
            .query(&reader.after_snapshot, &[&stream.as_str(), &limit])
            .await
            .map_err(pg)?;
        let mut snapshot = Ok(None);
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            if col::<i32>(row, 17)? == 0 {
                snapshot = snapshot_at(row, 12).map(Some);
            } else {
                events.push(to_event(row)?);
            }
        }
        Ok(Latest::new(snapshot, events))
    }
}

/// A snapshot's columns (version, schema_version, codec, payload, taken_at) from column
/// `at` of `row` on.
fn snapshot_at(row: &tokio_postgres::Row, at: usize) -> Result<Snapshot> {
    let codec: i16 = col(row, at + 2)?;
    Ok(Snapshot::new(
        Version(count_col(row, at)?),
        col::<i32>(row, at + 1)? as u32,
        CodecId(
            u8::try_from(codec)
                .map_err(|_| Error::corrupt(Position::NONE, "invalid snapshot codec"))?,
        ),
        col(row, at + 3)?,
        Timestamp(col(row, at + 4)?),
    ))
}
