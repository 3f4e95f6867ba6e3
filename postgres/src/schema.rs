//! The store's tables and their versioned migrations.

use annals_core::{Error, Result};
use tokio_postgres::Client;

use crate::rows::pg;

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
", "
    -- Where each event sits in the append that stored it: bit 1 its first event, bit 2 its
    -- last. NULL in rows written before this migration (their appends are not known).
    ALTER TABLE {s}.events ADD COLUMN append_mark SMALLINT;
"];

/// Schema names are spliced into SQL, so only plain identifiers are allowed.
pub(crate) fn valid_schema(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::storage(format!(
            "schema name {name:?} must be lower-case letters, digits and _"
        )))
    }
}

/// Creates the schema if missing and runs the migrations it has not had, one process at a
/// time (under a transaction-scoped advisory lock).
pub(crate) async fn migrate(client: &Client, s: &str) -> Result<()> {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}.annals_migrations (version INT PRIMARY KEY);"
        ))
        .await
        .map_err(pg)?;
    for (i, m) in MIGRATIONS.iter().enumerate() {
        let version = i as i32 + 1;
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
        if let Err(e) = client.batch_execute(&sql).await {
            // Leave the connection usable: the failed script left its transaction open.
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(pg(e));
        }
    }
    Ok(())
}
