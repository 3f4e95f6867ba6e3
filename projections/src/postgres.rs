//! Projections shared between processes, on PostgreSQL (feature `postgres`).
//!
//! * [`PgLeadership`]: one process at a time runs each projection, by a session-level
//!   advisory lock held on a dedicated connection. When that process dies, its connection
//!   closes, the server releases the lock and a standby process takes over within
//!   [`PgLeadership::retry_every`].
//! * [`PgReadModel`] / [`PgProjector`]: a read model in PostgreSQL tables whose checkpoint
//!   (table `annals_checkpoints` of its schema) moves in the same transaction as the rows a
//!   batch writes. The checkpoint moves by compare-and-set, first in the transaction: a
//!   worker that lost its lease without noticing gets [`ProjectionError::Fenced`] instead of
//!   applying a batch again.
//!
//! The dead-letter list stays in each process's sled database: a process that takes over a
//! projection does not see the events its predecessor parked.

use std::time::Duration;

use annals_core::{Position, RecordedEvent};
use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, Transaction};

use crate::error::{HandlerError, ProjectionError};
use crate::leader::{Leadership, Lease};
use crate::projection::{Checkpoint, Projection};

/// A driver error as a read-model error (the SQLSTATE as `code`, the driver's error as the
/// source; the driver's type stays out of the public API: no `From` impl).
pub(crate) fn pg(e: tokio_postgres::Error) -> ProjectionError {
    let (message, code) = match e.as_db_error() {
        Some(db) => (
            format!("postgres: {} ({})", db.message(), db.code().code()),
            Some(db.code().code().to_owned()),
        ),
        None => (format!("postgres: {e}"), None),
    };
    ProjectionError::ReadModel {
        message,
        code,
        source: Some(std::sync::Arc::new(e)),
    }
}

/// A projector's error from `setup` or `clear` as a read-model error (a driver error keeps
/// its SQLSTATE).
fn projector_err(what: &str, e: HandlerError) -> ProjectionError {
    match e.downcast::<tokio_postgres::Error>() {
        Ok(driver) => pg(*driver),
        Err(other) => ProjectionError::ReadModel {
            message: format!("{what}: {other}"),
            code: None,
            source: Some(std::sync::Arc::from(other)),
        },
    }
}

/// Opens a connection driven by its own task.
pub(crate) async fn connect(connect: &str) -> Result<(Client, JoinHandle<()>), ProjectionError> {
    let (client, connection) = tokio_postgres::connect(connect, NoTls).await.map_err(pg)?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok((client, task))
}

/// Schema names are spliced into SQL, so only plain identifiers are allowed.
pub(crate) fn valid_schema(name: &str) -> Result<(), ProjectionError> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ProjectionError::read_model(format!(
            "schema name {name:?} must be lower-case letters, digits and _"
        )))
    }
}

/// Leadership by PostgreSQL session advisory locks: `pg_try_advisory_lock(hashtext(namespace),
/// hashtext(projection))`, held on one connection per projection.
#[derive(Clone, Debug)]
pub struct PgLeadership {
    connect: String,
    namespace: String,
    retry_every: Duration,
    heartbeat: Duration,
}

impl PgLeadership {
    /// Leadership among every process that uses the same server and `namespace` (use one
    /// namespace per deployment, e.g. the store's schema name).
    pub fn new(connect: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            connect: connect.into(),
            namespace: namespace.into(),
            retry_every: Duration::from_millis(500),
            heartbeat: Duration::from_secs(1),
        }
    }

    /// How often a standby asks for the lock (default 500 ms): the failover delay after the
    /// server notices the leader's connection is gone.
    #[must_use]
    pub fn retry_every(mut self, every: Duration) -> Self {
        self.retry_every = every;
        self
    }

    /// How often the leader checks its lock connection (default 1 s).
    #[must_use]
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }
}

#[async_trait]
impl Leadership for PgLeadership {
    async fn acquire(&self, projection: &str) -> Result<Box<dyn Lease>, ProjectionError> {
        let (client, task) = connect(&self.connect).await?;
        let lease = PgLease {
            client,
            task,
            heartbeat: tokio::time::interval(self.heartbeat),
            timeout: self.heartbeat * 5,
        };
        loop {
            let row = lease
                .client
                .query_one(
                    "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))",
                    &[&self.namespace, &projection],
                )
                .await
                .map_err(pg)?;
            if row.try_get::<_, bool>(0).map_err(pg)? {
                return Ok(Box::new(lease));
            }
            tokio::time::sleep(self.retry_every).await;
        }
    }
}

/// A held advisory lock: its connection, and the task driving it.
struct PgLease {
    client: Client,
    task: JoinHandle<()>,
    heartbeat: tokio::time::Interval,
    timeout: Duration,
}

impl Drop for PgLease {
    fn drop(&mut self) {
        // Closing the connection releases the lock.
        self.task.abort();
    }
}

#[async_trait]
impl Lease for PgLease {
    async fn lost(&mut self) {
        loop {
            if self.task.is_finished() || self.client.is_closed() {
                return;
            }
            self.heartbeat.tick().await;
            let ping = tokio::time::timeout(self.timeout, self.client.simple_query("SELECT 1"));
            if !matches!(ping.await, Ok(Ok(_))) {
                return;
            }
        }
    }
}

/// A read model's handler: writes rows through the batch's transaction. Used through
/// generics by [`PgReadModel`].
pub trait PgProjector: Send + Sync + 'static {
    /// The projection's unique, stable name.
    fn name(&self) -> &str;

    /// Bump when the handler changes meaning: the runner rebuilds the read model.
    fn version(&self) -> u32 {
        1
    }

    /// Creates the read model's tables if they are missing (runs on open, serialized between
    /// processes).
    fn setup(&self, tx: &Transaction<'_>) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Applies one event.
    ///
    /// # Errors
    /// Any error (a driver error through `?`, or a message): the batch rolls back and the
    /// runtime retries, then parks or stops by policy.
    fn apply(
        &self,
        tx: &Transaction<'_>,
        event: &RecordedEvent,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Deletes every row of the read model (for rebuilds).
    fn clear(&self, tx: &Transaction<'_>) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// A read model in PostgreSQL: batches and their checkpoint in one transaction, the
/// checkpoint moved by compare-and-set. Implements [`Projection`] for the runner.
pub struct PgReadModel<P> {
    projector: P,
    connect: String,
    schema: String,
    client: Option<(Client, JoinHandle<()>)>,
    /// A second connection for [`Projection::checkpoint`], which takes `&self`.
    reader: tokio::sync::Mutex<Option<(Client, JoinHandle<()>)>>,
    /// The stored checkpoint position as last read or written (`Some(None)`: no row);
    /// `None`: unknown, read before the next batch.
    known: Option<Option<Position>>,
}

impl<P> Drop for PgReadModel<P> {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.client {
            task.abort();
        }
        if let Some((_, task)) = self.reader.get_mut() {
            task.abort();
        }
    }
}

/// A transaction that sets up tables in `schema`: serialized between processes by an
/// advisory lock on `<schema>.setup`, with the schema created and `ddl` run. Commit it after
/// any further setup.
pub(crate) async fn setup_transaction<'a>(
    client: &'a mut Client,
    schema: &str,
    ddl: &str,
) -> Result<Transaction<'a>, ProjectionError> {
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("{schema}.setup")],
    )
    .await
    .map_err(pg)?;
    tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}; {ddl}"))
        .await
        .map_err(pg)?;
    Ok(tx)
}

/// The connection in `slot`, reopened if it was lost; `true` when it was reopened.
pub(crate) async fn ensure<'a>(
    slot: &'a mut Option<(Client, JoinHandle<()>)>,
    url: &str,
) -> Result<(&'a mut Client, bool), ProjectionError> {
    let alive = matches!(slot, Some((c, _)) if !c.is_closed());
    if !alive {
        if let Some((_, task)) = slot.take() {
            task.abort();
        }
        *slot = Some(connect(url).await?);
    }
    match slot {
        Some((c, _)) => Ok((c, !alive)),
        None => Err(ProjectionError::read_model("postgres: no connection")),
    }
}

/// A checkpoint row (`position, version`).
fn to_checkpoint(row: &tokio_postgres::Row) -> Result<Checkpoint, ProjectionError> {
    let position = row.try_get::<_, i64>(0).map_err(pg)?;
    let version = row.try_get::<_, i32>(1).map_err(pg)?;
    match (u64::try_from(position), u32::try_from(version)) {
        (Ok(p), Ok(v)) => Ok(Checkpoint {
            position: Position(p),
            version: v,
        }),
        _ => Err(ProjectionError::read_model(format!(
            "checkpoint row ({position}, {version}) out of range"
        ))),
    }
}

impl<P: PgProjector> PgReadModel<P> {
    /// Connects, creates `schema` and its checkpoint table if missing, and runs the
    /// projector's [`PgProjector::setup`].
    ///
    /// # Errors
    /// Connection or SQL errors, an invalid schema name, or the setup's error.
    pub async fn open(
        connect: impl Into<String>,
        schema: impl Into<String>,
        projector: P,
    ) -> Result<Self, ProjectionError> {
        let schema = schema.into();
        valid_schema(&schema)?;
        let mut model = Self {
            projector,
            connect: connect.into(),
            schema,
            client: None,
            reader: tokio::sync::Mutex::new(None),
            known: None,
        };
        let s = model.schema.clone();
        let (client, _) = ensure(&mut model.client, &model.connect).await?;
        let tx = setup_transaction(
            client,
            &s,
            &format!(
                "CREATE TABLE IF NOT EXISTS {s}.annals_checkpoints (
                     name TEXT PRIMARY KEY, position BIGINT NOT NULL, version INT NOT NULL)"
            ),
        )
        .await?;
        model
            .projector
            .setup(&tx)
            .await
            .map_err(|e| projector_err("setup", e))?;
        tx.commit().await.map_err(pg)?;
        Ok(model)
    }

    /// The projector.
    pub fn projector(&self) -> &P {
        &self.projector
    }

    /// Applies a batch and moves the checkpoint by compare-and-set, in one transaction;
    /// `reapply`: events at or below the stored checkpoint, which stays.
    async fn apply_batch(
        &mut self,
        events: &[RecordedEvent],
        checkpoint: Checkpoint,
        reapply: bool,
    ) -> Result<(), ProjectionError> {
        let (client, reopened) = ensure(&mut self.client, &self.connect).await?;
        if reopened {
            self.known = None;
        }
        let expected = match self.known {
            Some(k) => k,
            None => {
                let row = client
                    .query_opt(&checkpoint_sql(&self.schema), &[&self.projector.name()])
                    .await
                    .map_err(pg)?;
                row.as_ref()
                    .map(to_checkpoint)
                    .transpose()?
                    .map(|c| c.position)
            }
        };
        self.known = Some(expected);
        let fenced = |expected: Option<Position>| ProjectionError::Fenced {
            projection: self.projector.name().to_owned(),
            expected: expected.unwrap_or(Position::NONE),
        };
        // Events at or below the stored checkpoint are applied already (by another worker,
        // or by a commit whose outcome this one never heard) — unless this is a re-apply of
        // a parked event, which was skipped, not applied; it keeps the checkpoint where the
        // store has it.
        let stale = match (events.first(), expected) {
            (Some(first), Some(at)) if reapply => checkpoint.position != at || first.position > at,
            (Some(first), Some(at)) => first.position <= at,
            _ => false,
        };
        if stale {
            self.known = None;
            return Err(fenced(expected));
        }
        let s = self.schema.clone();
        let name = self.projector.name().to_owned();
        let position = i64::try_from(checkpoint.position.0)
            .map_err(|_| ProjectionError::read_model("checkpoint beyond i64"))?;
        let version = i32::try_from(checkpoint.version)
            .map_err(|_| ProjectionError::read_model("projection version beyond i32"))?;
        let Some((client, _)) = &mut self.client else {
            return Err(ProjectionError::read_model("postgres: no connection"));
        };
        let tx = client.transaction().await.map_err(pg)?;
        // The compare-and-set goes first: it locks the checkpoint row, so a second worker
        // waits here and then fails, before any of its handler's writes.
        let moved = match expected {
            Some(at) => {
                let at = i64::try_from(at.0).unwrap_or(i64::MAX);
                tx.execute(
                    &format!(
                        "UPDATE {s}.annals_checkpoints SET position = $2, version = $3
                         WHERE name = $1 AND position = $4"
                    ),
                    &[&name, &position, &version, &at],
                )
                .await
                .map_err(pg)?
            }
            None => tx
                .execute(
                    &format!(
                        "INSERT INTO {s}.annals_checkpoints (name, position, version)
                         VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING"
                    ),
                    &[&name, &position, &version],
                )
                .await
                .map_err(pg)?,
        };
        if moved != 1 {
            drop(tx);
            self.known = None;
            return Err(fenced(expected));
        }
        for e in events {
            self.projector
                .apply(&tx, e)
                .await
                .map_err(|err| ProjectionError::handler_caused(e.position, err))?;
        }
        // If COMMIT's outcome is unknown, read the checkpoint again before the next batch.
        self.known = None;
        tx.commit().await.map_err(pg)?;
        self.known = Some(Some(checkpoint.position));
        Ok(())
    }
}

/// Reads one projection's checkpoint row.
fn checkpoint_sql(schema: &str) -> String {
    format!("SELECT position, version FROM {schema}.annals_checkpoints WHERE name = $1")
}

#[async_trait]
impl<P: PgProjector> Projection for PgReadModel<P> {
    fn name(&self) -> &str {
        self.projector.name()
    }

    fn version(&self) -> u32 {
        self.projector.version()
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, ProjectionError> {
        let mut reader = self.reader.lock().await;
        let (client, _) = ensure(&mut reader, &self.connect).await?;
        let row = client
            .query_opt(&checkpoint_sql(&self.schema), &[&self.projector.name()])
            .await
            .map_err(pg)?;
        row.as_ref().map(to_checkpoint).transpose()
    }

    async fn apply(
        &mut self,
        events: &[RecordedEvent],
        checkpoint: Checkpoint,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(events, checkpoint, false).await
    }

    async fn reapply(
        &mut self,
        events: &[RecordedEvent],
        checkpoint: Checkpoint,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(events, checkpoint, true).await
    }

    async fn clear(&mut self) -> Result<(), ProjectionError> {
        let s = self.schema.clone();
        let name = self.projector.name().to_owned();
        self.known = None;
        let (client, _) = ensure(&mut self.client, &self.connect).await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            &format!("DELETE FROM {s}.annals_checkpoints WHERE name = $1"),
            &[&name],
        )
        .await
        .map_err(pg)?;
        self.projector
            .clear(&tx)
            .await
            .map_err(|e| projector_err("clear", e))?;
        tx.commit().await.map_err(pg)?;
        self.known = Some(None);
        Ok(())
    }
}
