//! A typed key-value read model (on sled, or in memory) whose writes and checkpoint commit
//! in one atomic batch.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use annals_core::RecordedEvent;
use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(feature = "sled")]
use crate::error::sled_err;
use crate::error::{HandlerError, ProjectionError};
use crate::projection::{Checkpoint, Projection};

const DATA: u8 = b'd';
const CHECKPOINT_KEY: &[u8] = b"c";
/// The sled tree of read model `name` is `kv/<name>`.
#[cfg(feature = "sled")]
const TREE_PREFIX: &str = "kv/";

fn config() -> impl bincode::config::Config {
    // Big-endian fixed-width integers keep integer keys in numeric order.
    bincode::config::standard()
        .with_big_endian()
        .with_fixed_int_encoding()
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ProjectionError> {
    bincode::serde::encode_to_vec(value, config())
        .map_err(|e| ProjectionError::read_model_caused("cannot encode a read-model value", e))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProjectionError> {
    // A limit on what length prefixes may claim: damaged bytes must not abort the process.
    bincode::serde::decode_from_slice(
        bytes,
        bincode::config::standard()
            .with_big_endian()
            .with_fixed_int_encoding()
            .with_limit::<{ annals_core::DECODE_LIMIT }>(),
    )
    .map(|(v, _)| v)
    .map_err(|e| {
        ProjectionError::read_model_caused(format!("undecodable read-model value: {e}"), e)
    })
}

fn data_key<K: Serialize>(key: &K) -> Result<Vec<u8>, ProjectionError> {
    let mut k = vec![DATA];
    k.extend(encode(key)?);
    Ok(k)
}

/// Where a key-value read model's bytes live.
#[derive(Clone)]
enum Backing {
    /// One sled tree (durable).
    #[cfg(feature = "sled")]
    Sled(sled::Tree),
    /// A map in memory (for tests and benchmarks; gone with the last handle).
    Memory(Arc<RwLock<BTreeMap<Vec<u8>, Vec<u8>>>>),
}

type Bytes = BTreeMap<Vec<u8>, Vec<u8>>;

fn read(m: &RwLock<Bytes>) -> RwLockReadGuard<'_, Bytes> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write(m: &RwLock<Bytes>) -> RwLockWriteGuard<'_, Bytes> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

impl Backing {
    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, ProjectionError> {
        match self {
            #[cfg(feature = "sled")]
            Backing::Sled(tree) => match tree.get(key).map_err(sled_err)? {
                Some(v) => decode(&v).map(Some),
                None => Ok(None),
            },
            Backing::Memory(map) => read(map).get(key).map(|v| decode(v)).transpose(),
        }
    }

    fn entries<K: DeserializeOwned, V: DeserializeOwned>(
        &self,
    ) -> Result<Vec<(K, V)>, ProjectionError> {
        let mut out = Vec::new();
        match self {
            #[cfg(feature = "sled")]
            Backing::Sled(tree) => {
                for item in tree.scan_prefix([DATA]) {
                    let (k, v) = item.map_err(sled_err)?;
                    out.push((decode(&k[1..])?, decode(&v)?));
                }
            }
            Backing::Memory(map) => {
                for (k, v) in read(map).range(vec![DATA]..vec![DATA + 1]) {
                    out.push((decode(&k[1..])?, decode(v)?));
                }
            }
        }
        Ok(out)
    }

    fn len(&self) -> usize {
        match self {
            #[cfg(feature = "sled")]
            Backing::Sled(tree) => tree.scan_prefix([DATA]).count(),
            Backing::Memory(map) => read(map).range(vec![DATA]..vec![DATA + 1]).count(),
        }
    }

    /// Applies `writes` and the checkpoint atomically (readers see all of it or none).
    fn commit(
        &self,
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        checkpoint: Vec<u8>,
    ) -> Result<(), ProjectionError> {
        match self {
            #[cfg(feature = "sled")]
            Backing::Sled(tree) => {
                let mut batch = sled::Batch::default();
                for (k, v) in writes {
                    match v {
                        Some(v) => batch.insert(k, v),
                        None => batch.remove(k),
                    }
                }
                batch.insert(CHECKPOINT_KEY, checkpoint);
                tree.apply_batch(batch).map_err(sled_err)
            }
            Backing::Memory(map) => {
                let mut map = write(map);
                for (k, v) in writes {
                    match v {
                        Some(v) => map.insert(k, v),
                        None => map.remove(&k),
                    };
                }
                map.insert(CHECKPOINT_KEY.to_vec(), checkpoint);
                Ok(())
            }
        }
    }

    fn clear(&self) -> Result<(), ProjectionError> {
        match self {
            #[cfg(feature = "sled")]
            Backing::Sled(tree) => tree.clear().map_err(sled_err),
            Backing::Memory(map) => {
                write(map).clear();
                Ok(())
            }
        }
    }

    fn flush(&self) -> Result<(), ProjectionError> {
        match self {
            #[cfg(feature = "sled")]
            Backing::Sled(tree) => tree.flush().map(|_| ()).map_err(sled_err),
            Backing::Memory(_) => Ok(()),
        }
    }
}

/// A typed key-value read model: keys and values are serde types (encoded with bincode,
/// integers big-endian so they sort numerically). Readable at any time, also while its
/// projection writes: every batch of writes lands atomically with its checkpoint.
///
/// [`KvReadModel::open`] keeps it in one sled tree (durable, feature `sled`);
/// [`KvReadModel::in_memory`] in memory, for tests and benchmarks.
///
/// ```
/// use annals_core::{EventData, EventStore, ExpectedVersion, RecordedEvent, StreamId};
/// use annals_projections::*;
///
/// /// Orders per customer (the stream name after `order-` is the customer).
/// struct PerCustomer;
/// impl KvProjector for PerCustomer {
///     type Key = String;
///     type Value = u32;
///     fn name(&self) -> &str { "per-customer" }
///     fn apply(&self, e: &RecordedEvent, kv: &mut KvWriter<'_, String, u32>) -> Result<(), HandlerError> {
///         let customer = e.stream.aggregate_id("order").ok_or("not an order")?.to_owned();
///         let n = kv.get(&customer)?.unwrap_or(0);
///         Ok(kv.put(&customer, &(n + 1))?)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = annals_store::MemStore::new();
/// for customer in ["ada", "bob", "ada"] {
///     let stream = StreamId::new(format!("order-{customer}"))?;
///     store.append(&stream, ExpectedVersion::Any, vec![EventData::json("Placed", &1)?]).await?;
/// }
/// let model = KvReadModel::<String, u32>::in_memory();
/// let mut projection = KvProjection::new(PerCustomer, model.clone());
/// project_to_head(&store, &mut projection, 100).await?;
/// assert_eq!(model.entries()?, vec![("ada".to_string(), 2), ("bob".to_string(), 1)]);
/// # Ok(()) }
/// ```
pub struct KvReadModel<K, V> {
    backing: Backing,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for KvReadModel<K, V> {
    fn clone(&self) -> Self {
        Self {
            backing: self.backing.clone(),
            _types: PhantomData,
        }
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> KvReadModel<K, V> {
    /// Opens (or creates) the read model `name` in `db` (tree `kv/<name>`).
    ///
    /// # Errors
    /// sled errors.
    #[cfg(feature = "sled")]
    pub fn open(db: &sled::Db, name: &str) -> Result<Self, ProjectionError> {
        Ok(Self {
            backing: Backing::Sled(
                db.open_tree(format!("{TREE_PREFIX}{name}"))
                    .map_err(sled_err)?,
            ),
            _types: PhantomData,
        })
    }

    /// A read model in a temporary sled database that disappears when dropped (for
    /// read models as of a position, and tests).
    ///
    /// # Errors
    /// sled errors.
    #[cfg(feature = "sled")]
    pub fn temporary() -> Result<Self, ProjectionError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(sled_err)?;
        Self::open(&db, "temporary")
    }

    /// A read model in memory, empty, gone with its last handle: for tests, benchmarks and
    /// read models as of a position. Same atomicity as on sled.
    pub fn in_memory() -> Self {
        Self {
            backing: Backing::Memory(Arc::default()),
            _types: PhantomData,
        }
    }

    /// The value under `key`.
    ///
    /// # Errors
    /// sled errors, or an undecodable value.
    pub fn get(&self, key: &K) -> Result<Option<V>, ProjectionError> {
        self.backing.get(&data_key(key)?)
    }

    /// Every entry, in key order.
    ///
    /// # Errors
    /// sled errors, or an undecodable entry.
    pub fn entries(&self) -> Result<Vec<(K, V)>, ProjectionError> {
        self.backing.entries()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.backing.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The checkpoint stored with the data.
    ///
    /// # Errors
    /// sled errors, or an undecodable checkpoint.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, ProjectionError> {
        self.backing.get(CHECKPOINT_KEY)
    }

    /// Applies `writes` and the checkpoint in one atomic batch.
    fn commit(
        &self,
        writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        checkpoint: Checkpoint,
    ) -> Result<(), ProjectionError> {
        self.backing.commit(writes, encode(&checkpoint)?)
    }

    /// Removes everything, checkpoint included.
    ///
    /// # Errors
    /// sled errors.
    pub fn clear(&self) -> Result<(), ProjectionError> {
        self.backing.clear()
    }

    /// Flushes the tree to disk (nothing to do in memory).
    ///
    /// # Errors
    /// sled errors.
    pub fn flush(&self) -> Result<(), ProjectionError> {
        self.backing.flush()
    }
}

/// The writes of one batch, readable before they commit.
pub struct KvWriter<'a, K, V> {
    model: &'a KvReadModel<K, V>,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> KvWriter<'_, K, V> {
    /// The value under `key`, as written so far in this batch or stored before it.
    ///
    /// # Errors
    /// sled errors, or an undecodable value.
    pub fn get(&self, key: &K) -> Result<Option<V>, ProjectionError> {
        let k = data_key(key)?;
        match self.pending.get(&k) {
            Some(Some(v)) => decode(v).map(Some),
            Some(None) => Ok(None),
            None => self.model.get(key),
        }
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// An unencodable key or value.
    pub fn put(&mut self, key: &K, value: &V) -> Result<(), ProjectionError> {
        self.pending.insert(data_key(key)?, Some(encode(value)?));
        Ok(())
    }

    /// Removes `key`.
    ///
    /// # Errors
    /// An unencodable key.
    pub fn delete(&mut self, key: &K) -> Result<(), ProjectionError> {
        self.pending.insert(data_key(key)?, None);
        Ok(())
    }
}

#[cfg(feature = "sled")]
/// The key-value read models stored in `db` (by name, as passed to [`KvReadModel::open`],
/// in name order) with their checkpoints (`None`: nothing applied yet): for tools that report on read
/// models without knowing their key and value types.
///
/// # Errors
/// sled errors, or an undecodable checkpoint.
pub fn kv_read_models(db: &sled::Db) -> Result<Vec<(String, Option<Checkpoint>)>, ProjectionError> {
    let mut out = Vec::new();
    for name in db.tree_names() {
        let Some(model) = std::str::from_utf8(&name)
            .ok()
            .and_then(|n| n.strip_prefix(TREE_PREFIX))
        else {
            continue;
        };
        let tree = db.open_tree(&name).map_err(sled_err)?;
        let checkpoint = match tree.get(CHECKPOINT_KEY).map_err(sled_err)? {
            Some(v) => Some(decode(&v)?),
            None => None,
        };
        out.push((model.to_owned(), checkpoint));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The event handler of a key-value projection: turns one event into reads and writes.
pub trait KvProjector: Send + Sync + 'static {
    /// Key type.
    type Key: Serialize + DeserializeOwned + Send + Sync;
    /// Value type.
    type Value: Serialize + DeserializeOwned + Send + Sync;

    /// The projection's name.
    fn name(&self) -> &str;

    /// The projection's version (bump to rebuild).
    fn version(&self) -> u32 {
        1
    }

    /// Applies one event.
    ///
    /// # Errors
    /// Any error (or a message: `Err("...".into())`); the runtime retries, then parks or
    /// stops by policy.
    fn apply(
        &self,
        event: &RecordedEvent,
        kv: &mut KvWriter<'_, Self::Key, Self::Value>,
    ) -> Result<(), HandlerError>;
}

/// A [`Projection`] writing a [`KvReadModel`] through a [`KvProjector`].
pub struct KvProjection<P: KvProjector> {
    projector: P,
    model: KvReadModel<P::Key, P::Value>,
}

impl<P: KvProjector> KvProjection<P> {
    /// The projection of `projector` into `model`.
    pub fn new(projector: P, model: KvReadModel<P::Key, P::Value>) -> Self {
        Self { projector, model }
    }

    /// The read model (a cheap handle).
    pub fn model(&self) -> KvReadModel<P::Key, P::Value> {
        self.model.clone()
    }
}

#[async_trait]
impl<P: KvProjector> Projection for KvProjection<P> {
    fn name(&self) -> &str {
        self.projector.name()
    }

    fn version(&self) -> u32 {
        self.projector.version()
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, ProjectionError> {
        self.model.checkpoint()
    }

    async fn apply(
        &mut self,
        events: &[RecordedEvent],
        checkpoint: Checkpoint,
    ) -> Result<(), ProjectionError> {
        let mut writer = KvWriter {
            model: &self.model,
            pending: BTreeMap::new(),
        };
        for e in events {
            self.projector
                .apply(e, &mut writer)
                .map_err(|err| ProjectionError::handler_caused(e.position, err))?;
        }
        let pending = writer.pending;
        self.model.commit(pending, checkpoint)
    }

    async fn clear(&mut self) -> Result<(), ProjectionError> {
        self.model.clear()
    }
}
