//! [`PgDeadLetters`]: the dead-letter list in PostgreSQL, shared by every process that runs
//! a projection, so that events parked by one leader are still listed, retried and
//! discarded after another takes over.

use annals_core::{Position, Timestamp};
use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Row};

use crate::error::ProjectionError;
use crate::parked::{DeadLetters, Parked};
use crate::postgres::{ensure, pg, setup_transaction, valid_schema};

/// Parked events in `<schema>.annals_parked`, one row per (projection, position).
///
/// ```no_run
/// use annals_projections::{PgDeadLetters, ProjectionRunner};
/// # async fn demo(store: impl annals_core::EventStore) -> Result<(), annals_projections::ProjectionError> {
/// let url = "host=127.0.0.1 user=postgres dbname=test";
/// // Every process of the deployment uses the same schema: parked events outlive a leader.
/// let runner = ProjectionRunner::with_dead_letters(store, PgDeadLetters::open(url, "shop").await?);
/// # let _ = runner; Ok(()) }
/// ```
pub struct PgDeadLetters {
    connect: String,
    schema: String,
    client: Mutex<Option<(Client, JoinHandle<()>)>>,
}

const COLUMNS: &str = "projection, position, stream, event_type, error, attempts, parked_at";

fn to_parked(row: &Row) -> Result<Parked, ProjectionError> {
    let position: i64 = row.try_get(1).map_err(pg)?;
    let attempts: i32 = row.try_get(5).map_err(pg)?;
    let (Ok(position), Ok(attempts)) = (u64::try_from(position), u32::try_from(attempts)) else {
        return Err(ProjectionError::read_model(format!(
            "parked row with position {position} and attempts {attempts} out of range"
        )));
    };
    Ok(Parked {
        projection: row.try_get(0).map_err(pg)?,
        position: Position(position),
        stream: row.try_get(2).map_err(pg)?,
        event_type: row.try_get(3).map_err(pg)?,
        error: row.try_get(4).map_err(pg)?,
        attempts,
        parked_at: Timestamp(row.try_get(6).map_err(pg)?),
    })
}

fn position_col(position: Position) -> Result<i64, ProjectionError> {
    i64::try_from(position.0).map_err(|_| ProjectionError::read_model("position beyond i64"))
}

impl PgDeadLetters {
    /// Connects and creates `schema` and its `annals_parked` table if they are missing.
    ///
    /// # Errors
    /// Connection or SQL errors, or an invalid schema name.
    pub async fn open(
        connect: impl Into<String>,
        schema: impl Into<String>,
    ) -> Result<Self, ProjectionError> {
        let schema = schema.into();
        valid_schema(&schema)?;
        let this = Self {
            connect: connect.into(),
            schema,
            client: Mutex::new(None),
        };
        let s = &this.schema;
        let mut slot = this.client.lock().await;
        let (client, _) = ensure(&mut slot, &this.connect).await?;
        let tx = setup_transaction(
            client,
            s,
            &format!(
                "CREATE TABLE IF NOT EXISTS {s}.annals_parked (
                     projection TEXT NOT NULL, position BIGINT NOT NULL, stream TEXT NOT NULL,
                     event_type TEXT NOT NULL, error TEXT NOT NULL, attempts INT NOT NULL,
                     parked_at BIGINT NOT NULL, PRIMARY KEY (projection, position))"
            ),
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        drop(slot);
        Ok(this)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, ProjectionError> {
        let mut slot = self.client.lock().await;
        let (client, _) = ensure(&mut slot, &self.connect).await?;
        client.query(sql, params).await.map_err(pg)
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, ProjectionError> {
        let mut slot = self.client.lock().await;
        let (client, _) = ensure(&mut slot, &self.connect).await?;
        client.execute(sql, params).await.map_err(pg)
    }
}

#[async_trait]
impl DeadLetters for PgDeadLetters {
    async fn park(&self, parked: &Parked) -> Result<(), ProjectionError> {
        let s = &self.schema;
        let attempts = i32::try_from(parked.attempts).unwrap_or(i32::MAX);
        self.execute(
            &format!(
                "INSERT INTO {s}.annals_parked ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (projection, position) DO UPDATE SET stream = EXCLUDED.stream,
                   event_type = EXCLUDED.event_type, error = EXCLUDED.error,
                   attempts = EXCLUDED.attempts, parked_at = EXCLUDED.parked_at"
            ),
            &[
                &parked.projection,
                &position_col(parked.position)?,
                &parked.stream,
                &parked.event_type,
                &parked.error,
                &attempts,
                &parked.parked_at.0,
            ],
        )
        .await?;
        Ok(())
    }

    async fn get(
        &self,
        projection: &str,
        position: Position,
    ) -> Result<Option<Parked>, ProjectionError> {
        let s = &self.schema;
        let rows = self
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM {s}.annals_parked WHERE projection = $1 AND position = $2"
                ),
                &[&projection, &position_col(position)?],
            )
            .await?;
        rows.first().map(to_parked).transpose()
    }

    async fn list(&self, projection: &str) -> Result<Vec<Parked>, ProjectionError> {
        let s = &self.schema;
        let rows = self
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM {s}.annals_parked WHERE projection = $1 ORDER BY position"
                ),
                &[&projection],
            )
            .await?;
        rows.iter().map(to_parked).collect()
    }

    async fn count(&self, projection: &str) -> Result<usize, ProjectionError> {
        let s = &self.schema;
        let rows = self
            .query(
                &format!("SELECT count(*) FROM {s}.annals_parked WHERE projection = $1"),
                &[&projection],
            )
            .await?;
        let n: i64 = match rows.first() {
            Some(row) => row.try_get(0).map_err(pg)?,
            None => 0,
        };
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn remove(&self, projection: &str, position: Position) -> Result<bool, ProjectionError> {
        let s = &self.schema;
        let n = self
            .execute(
                &format!("DELETE FROM {s}.annals_parked WHERE projection = $1 AND position = $2"),
                &[&projection, &position_col(position)?],
            )
            .await?;
        Ok(n > 0)
    }

    async fn clear(&self, projection: &str) -> Result<(), ProjectionError> {
        let s = &self.schema;
        self.execute(
            &format!("DELETE FROM {s}.annals_parked WHERE projection = $1"),
            &[&projection],
        )
        .await?;
        Ok(())
    }
}
