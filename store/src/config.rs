//! Store configuration: durability mode, group sizes, sled's cache, fault injection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use annals_core::Error;

/// When an append is acknowledged relative to the disk.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum Durability {
    /// The default: an append returns only after its whole group is flushed and
    /// `fdatasync`ed. A `kill -9` or power loss right after the ack loses nothing. Readers and
    /// subscribers see an event only once it is durable.
    #[default]
    Durable,
    /// Appends are acknowledged once written to the store's memory and flushed to disk every
    /// `every` (and on close). **A crash can lose the appends of the last interval** — up to
    /// `every` of acknowledged work; atomicity and the gap-free log still hold (what survives
    /// is a prefix of the log). Readers see events as soon as they are acknowledged.
    Periodic {
        /// How often to flush.
        every: Duration,
    },
}

/// Options of a store. `StoreConfig::default()` is durable with sensible limits.
///
/// ```
/// use std::time::Duration;
/// use annals_store::{Durability, SledStore, StoreConfig};
///
/// let dir = tempfile::tempdir()?;
/// // Acknowledge once written, sync every 10 ms: faster, and a crash loses at most the
/// // last 10 ms of acknowledged appends.
/// let config = StoreConfig::default()
///     .durability(Durability::Periodic { every: Duration::from_millis(10) })
///     .cache_bytes(16 << 20)
///     .lock_wait(Duration::ZERO);
/// let store = SledStore::open_with(dir.path(), config)?;
/// # drop(store);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StoreConfig {
    /// Durability mode (default [`Durability::Durable`]).
    pub durability: Durability,
    /// Capacity of the append queue; callers wait when it is full (backpressure).
    pub queue_capacity: usize,
    /// The most events written in one group commit.
    pub max_group_events: usize,
    /// sled's page cache in bytes (default 64 MiB). This bounds most of the store's memory.
    pub cache_bytes: u64,
    /// In `Durable` mode, how long the writer may wait for a group to fill up to the size of
    /// the previous one before it commits (default 250 µs; zero: never wait). Raises
    /// throughput when a steady set of callers append; adds at most this much latency.
    pub linger: std::time::Duration,
    /// How long opening a sled store waits for a lock that another handle holds before it
    /// answers `Error::Locked` (default 1 s; zero: answer at once). sled releases its lock
    /// from background threads a moment after its last handle goes, so a store opened right
    /// after a raw sled handle on the same directory was dropped needs the moment. The wait
    /// blocks the opening thread: from async code use `SledStore::open_async`.
    pub lock_wait: std::time::Duration,
    /// Fault injection for tests.
    #[doc(hidden)]
    pub faults: FaultPlan,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Durable,
            queue_capacity: 4096,
            max_group_events: 8192,
            cache_bytes: 64 * 1024 * 1024,
            linger: std::time::Duration::from_micros(250),
            lock_wait: std::time::Duration::from_secs(1),
            faults: FaultPlan::default(),
        }
    }
}

impl StoreConfig {
    /// Sets the durability mode.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets how long opening waits for another handle's lock ([`StoreConfig::lock_wait`]).
    pub fn lock_wait(mut self, wait: std::time::Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Sets sled's cache capacity in bytes.
    pub fn cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Sets how long the writer may wait for a fuller group ([`StoreConfig::linger`]).
    pub fn linger(mut self, linger: std::time::Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Sets the capacity of the append queue ([`StoreConfig::queue_capacity`]).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Sets the most events in one group commit ([`StoreConfig::max_group_events`]).
    pub fn max_group_events(mut self, events: usize) -> Self {
        self.max_group_events = events;
        self
    }

    /// Sets the fault injection plan (tests only).
    #[doc(hidden)]
    pub fn faults(mut self, faults: FaultPlan) -> Self {
        self.faults = faults;
        self
    }
}

/// Which step of a group commit a fault hits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum FaultPoint {
    /// The atomic batch write.
    Write,
    /// sled's flush.
    Flush,
    /// The `fdatasync`.
    Sync,
}

/// Makes the N-th call (1-based) of a group-commit step fail with an I/O error, to test that
/// the store poisons itself instead of acknowledging.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    rules: Vec<(FaultPoint, u64)>,
    counters: Arc<[AtomicU64; 3]>,
}

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Fail the `nth` call (1-based) of `point`.
    pub fn fail(mut self, point: FaultPoint, nth: u64) -> Self {
        self.rules.push((point, nth));
        self
    }

    pub(crate) fn check(&self, point: FaultPoint) -> Result<(), Error> {
        if self.rules.is_empty() {
            return Ok(());
        }
        let idx = match point {
            FaultPoint::Write => 0,
            FaultPoint::Flush => 1,
            FaultPoint::Sync => 2,
        };
        let n = self.counters[idx].fetch_add(1, Ordering::SeqCst) + 1;
        if self.rules.iter().any(|&(p, k)| p == point && k == n) {
            return Err(
                std::io::Error::other(format!("injected fault: {point:?} call {n}")).into(),
            );
        }
        Ok(())
    }
}
