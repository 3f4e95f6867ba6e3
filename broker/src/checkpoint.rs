//! Where a relay keeps its checkpoint: the position through which every event it relays
//! was acknowledged by the broker.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use annals_core::Position;

use crate::error::BrokerError;
use crate::subject::encode_token;

/// A relay's stored checkpoint. Used through generics (`impl Future + Send`).
pub trait RelayCheckpoints: Send + Sync + 'static {
    /// The stored checkpoint of relay `name` ([`Position::NONE`] when there is none).
    ///
    /// # Errors
    /// The storage's errors.
    fn load(&self, name: &str) -> impl Future<Output = Result<Position, BrokerError>> + Send;

    /// Stores `position` as the checkpoint of relay `name`, durably.
    ///
    /// # Errors
    /// The storage's errors.
    fn save(
        &self,
        name: &str,
        position: Position,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;
}

/// Checkpoints in memory (tests, benchmarks): gone with the last clone.
#[derive(Clone, Default)]
pub struct MemCheckpoints {
    map: Arc<Mutex<HashMap<String, Position>>>,
}

impl MemCheckpoints {
    /// No checkpoints.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RelayCheckpoints for MemCheckpoints {
    async fn load(&self, name: &str) -> Result<Position, BrokerError> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map.get(name).copied().unwrap_or(Position::NONE))
    }

    async fn save(&self, name: &str, position: Position) -> Result<(), BrokerError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(name.to_owned(), position);
        Ok(())
    }
}

/// Checkpoints in files of one directory (beside an embedded store): one file per relay,
/// `<name>.checkpoint`, replaced atomically (write, `fsync`, rename, `fsync` of the
/// directory) on a blocking thread. The file holds `annals-relay-checkpoint 1 <position>`.
#[derive(Clone, Debug)]
pub struct FileCheckpoints {
    dir: PathBuf,
}

const MAGIC: &str = "annals-relay-checkpoint 1";

impl FileCheckpoints {
    /// Checkpoints in `dir` (created when missing, on first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}.checkpoint", encode_token(name)))
    }
}

fn io(what: &str) -> impl Fn(std::io::Error) -> BrokerError + '_ {
    move |e| BrokerError::Store(annals_core::Error::storage_caused(what.to_owned(), e))
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        BrokerError::Store(annals_core::Error::storage(format!("checkpoint task: {e}")))
    })?
}

impl RelayCheckpoints for FileCheckpoints {
    async fn load(&self, name: &str) -> Result<Position, BrokerError> {
        let path = self.path(name);
        blocking(move || {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Position::NONE),
                Err(e) => return Err(io("reading a relay checkpoint")(e)),
            };
            let position = text
                .trim_end()
                .strip_prefix(MAGIC)
                .and_then(|rest| rest.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    BrokerError::Store(annals_core::Error::storage(format!(
                        "{} is not a relay checkpoint",
                        path.display()
                    )))
                })?;
            Ok(Position(position))
        })
        .await
    }

    async fn save(&self, name: &str, position: Position) -> Result<(), BrokerError> {
        let (dir, path) = (self.dir.clone(), self.path(name));
        blocking(move || {
            std::fs::create_dir_all(&dir).map_err(io("creating the checkpoint directory"))?;
            let tmp = path.with_extension("checkpoint.tmp");
            std::fs::write(&tmp, format!("{MAGIC} {}\n", position.0))
                .map_err(io("writing a relay checkpoint"))?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io("syncing a relay checkpoint"))?;
            std::fs::rename(&tmp, &path).map_err(io("replacing a relay checkpoint"))?;
            std::fs::File::open(&dir)
                .and_then(|f| f.sync_all())
                .map_err(io("syncing the checkpoint directory"))?;
            Ok(())
        })
        .await
    }
}
