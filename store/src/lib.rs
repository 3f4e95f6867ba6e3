//! # annals-store
//!
//! Event stores for annals:
//!
//! * [`SledStore`]: the embedded store on sled 0.34. One writer thread owns appends and does
//!   *group commit*: it drains every queued append, checks each one's expected version,
//!   assigns contiguous global positions, writes the whole group as one atomic sled batch,
//!   flushes and `fdatasync`s once, and only then acknowledges the callers and wakes
//!   subscribers. Many durable appends share one flush, so throughput grows with concurrency.
//! * [`MemStore`]: the same engine on an in-memory "disk" ([`MemDisk`]) that is *stricter*
//!   than sled: it refuses overwrites of log keys, refuses an `fdatasync` without a flush, and
//!   can simulate a power loss that drops exactly what was not synced.
//!
//! Both implement [`annals_core::EventStore`] and pass the same conformance suite.
//!
//! ```
//! use annals_core::{Direction, EventData, EventStore, ExpectedVersion, StreamId, VersionRange};
//! use annals_store::SledStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = SledStore::open(dir.path())?;
//! let stream = StreamId::new("account-1")?;
//! let r = store
//!     .append(&stream, ExpectedVersion::NoStream, vec![EventData::json("Opened", &"ada")?])
//!     .await?;
//! assert_eq!(r.last_version.0, 1);
//! let events = store.read_stream(&stream, VersionRange::ALL, Direction::Forward, 100).await?;
//! assert_eq!(events[0].decode::<String>()?, "ada");
//! # Ok(()) }
//! ```
//!
//! ## Durability
//!
//! [`Durability::Durable`] (the default) acknowledges an append only after its bytes are on
//! disk. [`Durability::Periodic`] acknowledges after the write and flushes on a timer: faster,
//! and documented to lose up to one interval of acknowledged appends on a crash.
//!
//! After any failed write, flush or sync the store is *poisoned*: it acknowledges nothing
//! more and answers [`Error::Poisoned`](annals_core::Error::Poisoned). Reopen it to recover
//! every event acknowledged before the failure.

mod backend;
mod config;
mod engine;
// The byte layouts are not public API: these modules are public only for the fixture
// tests, the fuzz targets and the seed-corpus tool, and may change in any release (the
// stored bytes they describe do not: see docs/format.md).
#[doc(hidden)]
pub mod format;
#[doc(hidden)]
pub mod layout;
mod verify;

#[cfg(feature = "sled")]
pub use verify::verify;
pub use verify::{MAX_PROBLEMS, Problem, VerifyReport, verify_disk};

#[cfg(feature = "sled")]
use std::path::{Path, PathBuf};

use annals_core::{
    AppendResult, Direction, EventData, EventId, EventStore, ExpectedVersion, Position,
    RecordedEvent, Result, Snapshot, SnapshotStore, StreamAppend, StreamId, Version, VersionRange,
};
use tokio::sync::watch;

pub use backend::MemDisk;
pub use config::{Durability, FaultPlan, FaultPoint, StoreConfig};
#[cfg(feature = "sled")]
/// The sled this crate is built with (sled 0.34.7), for tools that read a store's or a read
/// model's trees directly without a dependency of their own.
pub use sled;

use backend::MemBackend;
#[cfg(feature = "sled")]
use backend::SledBackend;
use engine::Engine;

/// Implements `EventStore` and the common inherent methods by delegating to the engine.
macro_rules! delegate_store {
    ($ty:ty) => {
        impl $ty {
            /// Flushes and syncs everything written so far. Appends in
            /// [`Durability::Durable`] mode are already durable when acknowledged; in
            /// [`Durability::Periodic`] mode this makes every acknowledged append durable.
            ///
            /// # Errors
            /// An I/O error (the store is poisoned afterwards) or `Closed`.
            pub async fn flush(&self) -> Result<()> {
                self.engine.flush().await
            }

            /// Flushes, then lets go of this handle without blocking the calling thread:
            /// when it was the last one, this returns once the store is closed (queued
            /// appends written, the writer stopped, the files released), so the store can be
            /// opened again right away. Dropping the last handle does the same, but blocks
            /// the thread that drops it.
            ///
            /// # Errors
            /// As [`Self::flush`]; the handle is let go of either way.
            pub async fn close(self) -> Result<()> {
                let flushed = self.engine.flush().await;
                self.engine.close().await?;
                flushed
            }

            /// Every stream with its current version, in name order (walks the stream index).
            ///
            /// # Errors
            /// Storage errors or a damaged index entry.
            pub fn streams(&self) -> Result<Vec<(StreamId, Version)>> {
                self.engine.streams()
            }

            /// `Some(reason)` when a failed write poisoned the store and it refuses writes.
            pub fn poisoned(&self) -> Option<String> {
                self.engine.poisoned()
            }
        }

        impl SnapshotStore for $ty {
            async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<()> {
                self.engine
                    .put(
                        layout::snapshot_key(stream),
                        format::encode_snapshot(&snapshot),
                    )
                    .await
            }

            async fn queue_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<()> {
                self.engine
                    .put_soon(
                        layout::snapshot_key(stream),
                        format::encode_snapshot(&snapshot),
                    )
                    .await
            }

            async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
                match self.engine.get(&layout::snapshot_key(stream))? {
                    Some(bytes) => format::decode_snapshot(&bytes).map(Some),
                    None => Ok(None),
                }
            }
        }

        impl EventStore for $ty {
            async fn append(
                &self,
                stream: &StreamId,
                expected: ExpectedVersion,
                events: Vec<EventData>,
            ) -> Result<AppendResult> {
                self.engine.append(stream, expected, events).await
            }

            async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
                self.engine.append_many(appends).await
            }

            async fn read_stream(
                &self,
                stream: &StreamId,
                range: VersionRange,
                direction: Direction,
                limit: usize,
            ) -> Result<Vec<RecordedEvent>> {
                self.engine.read_stream(stream, range, direction, limit)
            }

            async fn read_all(&self, from: Position, limit: usize) -> Result<Vec<RecordedEvent>> {
                self.engine.read_all(from, limit)
            }

            async fn stream_head(&self, stream: &StreamId) -> Result<Option<Version>> {
                self.engine.stream_head(stream)
            }

            async fn read_event(&self, id: EventId) -> Result<Option<RecordedEvent>> {
                self.engine.read_event(id)
            }

            fn head_position(&self) -> Position {
                self.engine.head_position()
            }

            fn watch_head(&self) -> watch::Receiver<Position> {
                self.engine.watch_head()
            }
        }
    };
}

#[cfg(feature = "sled")]
/// The embedded event store on sled 0.34. Cheap to clone; all clones share one store. The
/// store closes (finishing queued appends and flushing) when the last clone is dropped.
#[derive(Clone)]
pub struct SledStore {
    engine: Engine<SledBackend>,
    path: PathBuf,
}

#[cfg(feature = "sled")]
impl SledStore {
    /// Opens (or creates) the store in directory `path` with the default, durable config.
    ///
    /// # Errors
    /// [`Error::Locked`](annals_core::Error::Locked) when another handle or process has the
    /// store open; [`Error::IncompatibleFormat`](annals_core::Error::IncompatibleFormat) for a
    /// store format this build does not read; `Corrupt` if the last stored chunk is damaged;
    /// I/O or sled errors otherwise.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, StoreConfig::default())
    }

    /// Opens (or creates) the store in directory `path`.
    ///
    /// # Errors
    /// As [`SledStore::open`].
    pub fn open_with(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path)?;
        // A store closed through annals has released sled's lock by the time its last handle
        // is dropped (the backend waits for it); a raw sled handle releases it a moment later,
        // which `lock_wait` covers.
        let backend = SledBackend::open(&path, config.cache_bytes, config.lock_wait)?;
        let engine = Engine::open(backend, config, "sled")?;
        Ok(Self { engine, path })
    }

    /// [`SledStore::open_with`] on a thread of its own, so that waiting for a lock
    /// ([`StoreConfig::lock_wait`]) and opening sled never block an async executor thread.
    ///
    /// # Errors
    /// As [`SledStore::open`].
    pub async fn open_async(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        engine::on_own_thread("annals-open", move || Self::open_with(path, config)).await?
    }

    /// Opens the store in directory `path` only if one is there: unlike [`SledStore::open`]
    /// it never creates a store (for tools that inspect an existing one).
    ///
    /// # Errors
    /// [`Error::Storage`](annals_core::Error::Storage) when `path` holds no store; otherwise
    /// as [`SledStore::open`].
    pub fn open_existing(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self> {
        let path = path.as_ref();
        if !is_store_dir(path) {
            return Err(annals_core::Error::storage(format!(
                "no store in {}",
                path.display()
            )));
        }
        Self::open_with(path, config)
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the store uses on disk.
    ///
    /// # Errors
    /// I/O errors from sled.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.engine.size_on_disk()
    }
}

#[cfg(feature = "sled")]
delegate_store!(SledStore);

/// An in-memory event store held to the same contract as [`SledStore`], on a [`MemDisk`]
/// that outlives it (so tests can close, "crash" and reopen).
#[derive(Clone)]
pub struct MemStore {
    engine: Engine<MemBackend>,
    disk: MemDisk,
}

impl MemStore {
    /// A store on a fresh, empty disk.
    pub fn new() -> Self {
        let disk = MemDisk::new();
        match Self::open(disk) {
            Ok(s) => s,
            // See `unreachable_store`: only a failure to spawn a thread gets here.
            Err(e) => unreachable_store(e),
        }
    }

    /// Opens a store on `disk` (which keeps what earlier stores on it synced).
    ///
    /// # Errors
    /// `Storage` when another store has `disk` open.
    pub fn open(disk: MemDisk) -> Result<Self> {
        Self::open_with(disk, StoreConfig::default())
    }

    /// Opens a store on `disk` with `config`.
    ///
    /// # Errors
    /// As [`MemStore::open`].
    pub fn open_with(disk: MemDisk, config: StoreConfig) -> Result<Self> {
        let backend = MemBackend::open(disk.clone())?;
        let engine = Engine::open(backend, config, "mem")?;
        Ok(Self { engine, disk })
    }

    /// The disk this store runs on.
    pub fn disk(&self) -> &MemDisk {
        &self.disk
    }
}

#[cfg(feature = "sled")]
/// Whether directory `path` holds a sled store (its data file), without touching it.
pub fn is_store_dir(path: &Path) -> bool {
    path.join("db").is_file()
}

/// Unreachable by user data or stored bytes: on a fresh `MemDisk` nothing is open, there is
/// no stored format to check and the in-memory backend's reads and writes cannot fail, so
/// `Engine::open` can only fail when the OS refuses to start the writer thread — the same
/// condition under which `std::thread::spawn` itself panics. (`MemStore::open` returns that
/// error instead, for callers who want it.)
#[allow(clippy::panic)]
fn unreachable_store(e: annals_core::Error) -> ! {
    panic!("cannot start an in-memory store: {e}")
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

delegate_store!(MemStore);
