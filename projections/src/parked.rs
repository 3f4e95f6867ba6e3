//! The dead-letter list: events a projection could not apply, parked with their error.
//!
//! The runner reaches it through the [`DeadLetters`] trait: [`ParkedStore`] keeps it in a
//! sled tree beside the read models of one process; `PgDeadLetters` (feature `postgres`)
//! keeps it in PostgreSQL, so parked events survive a leader failover between processes.

use annals_core::{Position, RecordedEvent, Timestamp};
use serde::{Deserialize, Serialize};

use async_trait::async_trait;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::ProjectionError;
#[cfg(feature = "sled")]
use crate::error::sled_err;

/// One parked event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Parked {
    /// The projection that failed on it.
    pub projection: String,
    /// The event's position.
    pub position: Position,
    /// The event's stream.
    pub stream: String,
    /// The event's type.
    pub event_type: String,
    /// The last error text.
    pub error: String,
    /// How many times applying it was tried.
    pub attempts: u32,
    /// When it was parked (or last retried).
    pub parked_at: Timestamp,
}

impl Parked {
    /// The record of `event`, parked now by `projection` after `attempts` tries that ended
    /// in `error`.
    pub fn new(
        projection: impl Into<String>,
        event: &RecordedEvent,
        error: impl Into<String>,
        attempts: u32,
    ) -> Self {
        Self {
            projection: projection.into(),
            position: event.position,
            stream: event.stream.to_string(),
            event_type: event.event_type.clone(),
            error: error.into(),
            attempts,
            parked_at: Timestamp::now(),
        }
    }
}

/// Where parked events live. Stored as a trait object by the runner, hence `async-trait`.
/// Every method is per projection; `park` is durable when it returns (the runner moves the
/// checkpoint past a parked event only after that).
#[async_trait]
pub trait DeadLetters: Send + Sync + 'static {
    /// Records `parked` (replacing an earlier record of the same event), durably.
    async fn park(&self, parked: &Parked) -> Result<(), ProjectionError>;

    /// The parked event of `projection` at `position`.
    async fn get(
        &self,
        projection: &str,
        position: Position,
    ) -> Result<Option<Parked>, ProjectionError>;

    /// Every parked event of `projection`, by position.
    async fn list(&self, projection: &str) -> Result<Vec<Parked>, ProjectionError>;

    /// How many events `projection` has parked.
    async fn count(&self, projection: &str) -> Result<usize, ProjectionError>;

    /// Removes the record; true if there was one.
    async fn remove(&self, projection: &str, position: Position) -> Result<bool, ProjectionError>;

    /// Removes every record of `projection` (when its read model is rebuilt).
    async fn clear(&self, projection: &str) -> Result<(), ProjectionError>;
}

/// A stored parked record.
pub(crate) fn decode(bytes: &[u8]) -> Result<Parked, ProjectionError> {
    let config = bincode::config::standard().with_limit::<{ annals_core::DECODE_LIMIT }>();
    bincode::serde::decode_from_slice(bytes, config)
        .map(|(p, _)| p)
        .map_err(|e| {
            ProjectionError::read_model_caused(format!("undecodable parked record: {e}"), e)
        })
}

/// The dead-letter list in memory, for tests and benchmarks (and runners without sled):
/// gone with its last handle.
#[derive(Clone, Default)]
pub struct MemDeadLetters {
    parked: Arc<Mutex<BTreeMap<(String, Position), Parked>>>,
}

impl MemDeadLetters {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, Position), Parked>> {
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl DeadLetters for MemDeadLetters {
    async fn park(&self, parked: &Parked) -> Result<(), ProjectionError> {
        self.lock()
            .insert((parked.projection.clone(), parked.position), parked.clone());
        Ok(())
    }

    async fn get(
        &self,
        projection: &str,
        position: Position,
    ) -> Result<Option<Parked>, ProjectionError> {
        Ok(self.lock().get(&(projection.to_owned(), position)).cloned())
    }

    async fn list(&self, projection: &str) -> Result<Vec<Parked>, ProjectionError> {
        Ok(self
            .lock()
            .values()
            .filter(|p| p.projection == projection)
            .cloned()
            .collect())
    }

    async fn count(&self, projection: &str) -> Result<usize, ProjectionError> {
        Ok(self
            .lock()
            .keys()
            .filter(|(name, _)| name == projection)
            .count())
    }

    async fn remove(&self, projection: &str, position: Position) -> Result<bool, ProjectionError> {
        Ok(self
            .lock()
            .remove(&(projection.to_owned(), position))
            .is_some())
    }

    async fn clear(&self, projection: &str) -> Result<(), ProjectionError> {
        self.lock().retain(|(name, _), _| name != projection);
        Ok(())
    }
}

/// Runs a sled call that may flush on a blocking thread.
#[cfg(feature = "sled")]
async fn off_executor<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ProjectionError> + Send + 'static,
) -> Result<T, ProjectionError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ProjectionError::read_model(format!("dead-letter task failed: {e}")))?
}

#[cfg(feature = "sled")]
#[async_trait]
impl DeadLetters for ParkedStore {
    async fn park(&self, parked: &Parked) -> Result<(), ProjectionError> {
        let (this, parked) = (self.clone(), parked.clone());
        off_executor(move || this.put(&parked)).await
    }

    async fn get(
        &self,
        projection: &str,
        position: Position,
    ) -> Result<Option<Parked>, ProjectionError> {
        ParkedStore::get(self, projection, position)
    }

    async fn list(&self, projection: &str) -> Result<Vec<Parked>, ProjectionError> {
        ParkedStore::list(self, projection)
    }

    async fn count(&self, projection: &str) -> Result<usize, ProjectionError> {
        Ok(ParkedStore::count(self, projection))
    }

    async fn remove(&self, projection: &str, position: Position) -> Result<bool, ProjectionError> {
        let (this, projection) = (self.clone(), projection.to_owned());
        off_executor(move || ParkedStore::remove(&this, &projection, position)).await
    }

    async fn clear(&self, projection: &str) -> Result<(), ProjectionError> {
        let (this, projection) = (self.clone(), projection.to_owned());
        off_executor(move || ParkedStore::clear(&this, &projection)).await
    }
}

/// Parked events of every projection, in a sled tree (`annals/parked`).
#[cfg(feature = "sled")]
#[derive(Clone)]
pub struct ParkedStore {
    tree: sled::Tree,
}

#[cfg(feature = "sled")]
fn key(projection: &str, position: Position) -> Vec<u8> {
    let mut k = projection.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&position.0.to_be_bytes());
    k
}

#[cfg(feature = "sled")]
fn prefix(projection: &str) -> Vec<u8> {
    let mut k = projection.as_bytes().to_vec();
    k.push(0);
    k
}

#[cfg(feature = "sled")]
impl ParkedStore {
    /// Opens the dead-letter tree of `db`.
    ///
    /// # Errors
    /// sled errors.
    pub fn open(db: &sled::Db) -> Result<Self, ProjectionError> {
        Ok(Self {
            tree: db.open_tree("annals/parked").map_err(sled_err)?,
        })
    }

    /// Records `parked` (replacing an earlier record of the same event), durably.
    ///
    /// # Errors
    /// sled errors.
    pub fn put(&self, parked: &Parked) -> Result<(), ProjectionError> {
        let bytes = bincode::serde::encode_to_vec(parked, bincode::config::standard())
            .map_err(|e| ProjectionError::read_model_caused("cannot encode a parked record", e))?;
        self.tree
            .insert(key(&parked.projection, parked.position), bytes)
            .map_err(sled_err)?;
        self.tree.flush().map_err(sled_err)?;
        Ok(())
    }

    /// The parked event of `projection` at `position`.
    ///
    /// # Errors
    /// sled errors, or an undecodable record.
    pub fn get(
        &self,
        projection: &str,
        position: Position,
    ) -> Result<Option<Parked>, ProjectionError> {
        match self.tree.get(key(projection, position)).map_err(sled_err)? {
            Some(v) => decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Every parked event of `projection`, by position.
    ///
    /// # Errors
    /// sled errors, or an undecodable record.
    pub fn list(&self, projection: &str) -> Result<Vec<Parked>, ProjectionError> {
        self.tree
            .scan_prefix(prefix(projection))
            .map(|item| decode(&item.map_err(sled_err)?.1))
            .collect()
    }

    /// Every parked event of every projection.
    ///
    /// # Errors
    /// sled errors, or an undecodable record.
    pub fn all(&self) -> Result<Vec<Parked>, ProjectionError> {
        self.tree
            .iter()
            .map(|item| decode(&item.map_err(sled_err)?.1))
            .collect()
    }

    /// How many events `projection` has parked.
    pub fn count(&self, projection: &str) -> usize {
        self.tree.scan_prefix(prefix(projection)).count()
    }

    /// Removes the record; true if there was one.
    ///
    /// # Errors
    /// sled errors.
    pub fn remove(&self, projection: &str, position: Position) -> Result<bool, ProjectionError> {
        let existed = self
            .tree
            .remove(key(projection, position))
            .map_err(sled_err)?
            .is_some();
        self.tree.flush().map_err(sled_err)?;
        Ok(existed)
    }

    /// Removes every record of `projection` (when its read model is rebuilt).
    ///
    /// # Errors
    /// sled errors.
    pub fn clear(&self, projection: &str) -> Result<(), ProjectionError> {
        for item in self.tree.scan_prefix(prefix(projection)) {
            self.tree
                .remove(item.map_err(sled_err)?.0)
                .map_err(sled_err)?;
        }
        Ok(())
    }
}
