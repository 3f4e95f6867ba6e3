//! The narrow key-value interface the engine runs on, and its two implementations: sled on
//! disk (`sled.rs`, feature `sled`), and a stricter in-memory map (`mem.rs`).

use std::ops::ControlFlow;
use std::sync::{Mutex, MutexGuard};

use annals_core::Error;

mod mem;
#[cfg(feature = "sled")]
mod sled;

pub(crate) use mem::MemBackend;
pub use mem::MemDisk;
#[cfg(feature = "sled")]
pub(crate) use sled::SledBackend;

/// What a scan callback returns: go on or stop.
pub(crate) type Flow = ControlFlow<()>;

/// The visitor of [`Backend::scan`]: gets each key and value, says whether to go on.
pub(crate) type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> Result<Flow, Error>;

/// An ordered key space with atomic batches and an explicit two-step sync.
pub(crate) trait Backend: Send + Sync + 'static {
    /// A value read (shared, not copied, where the engine allows).
    type Bytes: AsRef<[u8]>;
    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Self::Bytes>, Error>;
    /// Visits the keys in `lo..=hi` in order (or reverse order) until `f` says stop.
    fn scan(&self, lo: &[u8], hi: &[u8], reverse: bool, f: Visit<'_>) -> Result<(), Error>;
    /// Writes all pairs atomically: after a crash, all or none are present.
    fn apply(&self, batch: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), Error>;
    /// Writes buffered data to the operating system (sled's `flush`).
    fn flush(&self) -> Result<(), Error>;
    /// Makes flushed data survive a power loss (`fdatasync`).
    fn sync_data(&self) -> Result<(), Error>;
    /// Bytes used on disk (0 in memory).
    #[cfg_attr(not(feature = "sled"), allow(dead_code))]
    fn size_on_disk(&self) -> Result<u64, Error>;
}

/// A lock that a panicking holder did not leave unusable.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-updated (every
    // critical section is a single map operation), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
