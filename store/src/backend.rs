//! The narrow key-value interface the engine runs on, and its two implementations: sled on
//! disk, and a stricter in-memory map.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use annals_core::Error;

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
    fn size_on_disk(&self) -> Result<u64, Error>;
}

fn sled_err(e: sled::Error) -> Error {
    match e {
        sled::Error::Io(io) => io.into(),
        sled::Error::Corruption { at, .. } => {
            Error::storage(format!("sled reports corruption at {at:?}"))
        }
        other => Error::storage_caused("sled", other),
    }
}

/// sled 0.34 on disk. `flush` is sled's flush (which ends in `sync_file_range` on Linux and
/// so survives neither a power loss nor a crash of the disk's cache); `sync_data` adds the
/// `fdatasync` of sled's data file and of any blob files sled wrote for large values.
///
/// sled locks its data file (`db`, with `flock`) while it is open, and releases the lock from
/// its background threads a moment after the last handle is dropped. [`SledBackend::open`]
/// checks the lock itself first, so a store open elsewhere is [`Error::Locked`] (not text to
/// match), and dropping a backend waits until sled has let go of the lock, so that the store
/// can be opened again right away.
pub(crate) struct SledBackend {
    // Dropped first (fields drop in order), then `released` waits for sled's lock to go.
    db: sled::Db,
    data_file: File,
    dir: PathBuf,
    synced_blobs: Mutex<HashSet<std::ffi::OsString>>,
    _released: LockReleased,
}

/// Waits, when dropped, until sled's lock on the data file is free (at most two seconds).
struct LockReleased {
    data_file: PathBuf,
}

impl Drop for LockReleased {
    fn drop(&mut self) {
        if let Ok(false) = wait_unlocked(&self.data_file, std::time::Duration::from_secs(2)) {
            tracing::warn!(path = %self.data_file.display(), "sled still holds its lock after close");
        }
    }
}

/// Waits at most `wait` until no one holds the data file's lock: `Ok(true)` when it is free
/// (or there is no data file yet), `Ok(false)` when it is still held. A probe's own lock goes
/// with its file handle.
fn wait_unlocked(data_file: &Path, wait: std::time::Duration) -> std::io::Result<bool> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let file = match File::open(data_file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

impl SledBackend {
    pub(crate) fn open(
        dir: &Path,
        cache_bytes: u64,
        lock_wait: std::time::Duration,
    ) -> Result<Self, Error> {
        if !wait_unlocked(&dir.join("db"), lock_wait)? {
            return Err(Error::Locked {
                what: dir.display().to_string(),
                source: None,
            });
        }
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .flush_every_ms(None)
            .open()
            .map_err(sled_err)?;
        let released = LockReleased {
            data_file: dir.join("db"),
        };
        let data_file = File::open(dir.join("db"))?;
        Ok(Self {
            db,
            data_file,
            dir: dir.to_path_buf(),
            synced_blobs: Mutex::new(HashSet::new()),
            _released: released,
        })
    }

    /// sled writes values that do not fit its segments to files under `blobs/` and never
    /// fsyncs them; sync any new ones and the directory.
    fn sync_blobs(&self) -> Result<(), Error> {
        let blobs = self.dir.join("blobs");
        let Ok(entries) = std::fs::read_dir(&blobs) else {
            return Ok(());
        };
        let mut synced = lock(&self.synced_blobs);
        let mut any = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if synced.contains(&name) {
                continue;
            }
            match File::open(entry.path()) {
                Ok(f) => f.sync_data()?,
                // sled removes blobs it no longer needs; a vanished one needs no sync.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
            synced.insert(name);
            any = true;
        }
        if any {
            File::open(&blobs)?.sync_all()?;
        }
        Ok(())
    }
}

impl Backend for SledBackend {
    type Bytes = sled::IVec;

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, Error> {
        self.db.get(key).map_err(sled_err)
    }

    fn scan(&self, lo: &[u8], hi: &[u8], reverse: bool, f: Visit<'_>) -> Result<(), Error> {
        if lo > hi {
            return Ok(());
        }
        let range = self.db.range(lo..=hi);
        let mut visit = |item: sled::Result<(sled::IVec, sled::IVec)>| -> Result<Flow, Error> {
            let (k, v) = item.map_err(sled_err)?;
            f(&k, &v)
        };
        if reverse {
            for item in range.rev() {
                if visit(item)?.is_break() {
                    break;
                }
            }
        } else {
            for item in range {
                if visit(item)?.is_break() {
                    break;
                }
            }
        }
        Ok(())
    }

    fn apply(&self, batch: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), Error> {
        let mut b = sled::Batch::default();
        for (k, v) in batch {
            b.insert(k, v);
        }
        self.db.apply_batch(b).map_err(sled_err)
    }

    fn flush(&self) -> Result<(), Error> {
        self.db.flush().map(|_| ()).map_err(sled_err)
    }

    fn sync_data(&self) -> Result<(), Error> {
        self.data_file.sync_data()?;
        self.sync_blobs()
    }

    fn size_on_disk(&self) -> Result<u64, Error> {
        self.db.size_on_disk().map_err(sled_err)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-updated (every
    // critical section is a single map operation), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A key written since the last sync, and the value it had before (`None`: absent).
type UnsyncedWrite = (Vec<u8>, Option<Arc<[u8]>>);

#[derive(Default)]
struct MemData {
    /// Everything written, as sled would show it to readers.
    map: BTreeMap<Vec<u8>, Arc<[u8]>>,
    /// Keys applied since the last `sync_data`, each with the value it had before (`None`:
    /// absent): [`MemDisk::crash`] puts those back.
    unsynced: Vec<UnsyncedWrite>,
    /// Whether `flush` ran since the last `apply`.
    flushed: bool,
}

/// The "disk" of an in-memory store: survives the store being closed and reopened, and can
/// lose everything not yet synced with [`MemDisk::crash`].
#[derive(Clone, Default)]
pub struct MemDisk {
    data: Arc<Mutex<MemData>>,
    open: Arc<AtomicBool>,
}

impl MemDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops every write that was not synced, as a power loss would. Refused (returns
    /// `false`) while a store is open on this disk.
    pub fn crash(&self) -> bool {
        if self.open.load(Ordering::SeqCst) {
            return false;
        }
        let mut d = lock(&self.data);
        let writes = std::mem::take(&mut d.unsynced);
        for (k, before) in writes.into_iter().rev() {
            match before {
                Some(v) => d.map.insert(k, v),
                None => d.map.remove(&k),
            };
        }
        true
    }

    /// How many written keys are not yet synced.
    pub fn unsynced_keys(&self) -> usize {
        lock(&self.data).unsynced.len()
    }

    /// Replaces the value of a key: for corruption tests.
    #[doc(hidden)]
    pub fn overwrite(&self, key: &[u8], value: &[u8]) {
        lock(&self.data).map.insert(key.to_vec(), value.into());
    }

    /// Reads the value of a key: for corruption tests.
    #[doc(hidden)]
    pub fn read(&self, key: &[u8]) -> Option<Vec<u8>> {
        lock(&self.data).map.get(key).map(|v| v.to_vec())
    }
}

/// The in-memory backend. Stricter than sled where it can be: it refuses to open a disk that
/// another store has open, refuses to overwrite an existing event or id key (the log is
/// append-only) and any stream-index entry except by one that only adds runs to it, refuses
/// `sync_data` without a `flush` first, and [`MemDisk::crash`] loses exactly what was not
/// synced.
pub(crate) struct MemBackend {
    disk: MemDisk,
}

impl MemBackend {
    pub(crate) fn open(disk: MemDisk) -> Result<Self, Error> {
        if disk.open.swap(true, Ordering::SeqCst) {
            return Err(Error::Locked {
                what: "MemDisk".into(),
                source: None,
            });
        }
        Ok(Self { disk })
    }
}

impl Drop for MemBackend {
    fn drop(&mut self) {
        self.disk.open.store(false, Ordering::SeqCst);
    }
}

/// The only overwrites of log keys the engine may make: a format-3 stream-index entry
/// rewritten with runs added.
fn check_overwrite(key: &[u8], old: &[u8], new: &[u8]) -> Result<(), Error> {
    let refuse = || {
        Err(Error::storage(format!(
            "MemStore: the log is append-only, refusing to overwrite key {key:?}"
        )))
    };
    match key.first() {
        Some(b'e' | b'i') => refuse(),
        Some(b's') => {
            let Some((_, version)) = crate::layout::parse_stream_key(key) else {
                return refuse();
            };
            let decode = |b| crate::format::StreamEntry::decode(version, b, "MemStore check");
            match (decode(old), decode(new)) {
                (Ok(old), Ok(new)) if new.extends(&old) => Ok(()),
                _ => refuse(),
            }
        }
        _ => Ok(()),
    }
}

impl Backend for MemBackend {
    type Bytes = Arc<[u8]>;

    fn get(&self, key: &[u8]) -> Result<Option<Arc<[u8]>>, Error> {
        Ok(lock(&self.disk.data).map.get(key).cloned())
    }

    fn scan(&self, lo: &[u8], hi: &[u8], reverse: bool, f: Visit<'_>) -> Result<(), Error> {
        if lo > hi {
            return Ok(());
        }
        // Copy the range out in pages so that the callback never runs under the lock.
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let page: Vec<(Vec<u8>, Arc<[u8]>)> = {
                let d = lock(&self.disk.data);
                let range = d.map.range::<[u8], _>((
                    std::ops::Bound::Included(lo),
                    std::ops::Bound::Included(hi),
                ));
                if reverse {
                    range
                        .rev()
                        .filter(|(k, _)| {
                            cursor.as_ref().is_none_or(|c| k.as_slice() < c.as_slice())
                        })
                        .take(64)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                } else {
                    range
                        .filter(|(k, _)| {
                            cursor.as_ref().is_none_or(|c| k.as_slice() > c.as_slice())
                        })
                        .take(64)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                }
            };
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            cursor = Some(last.clone());
            for (k, v) in &page {
                if f(k, v)?.is_break() {
                    return Ok(());
                }
            }
        }
    }

    fn apply(&self, batch: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), Error> {
        let mut d = lock(&self.disk.data);
        for (k, v) in &batch {
            if let Some(old) = d.map.get(k) {
                check_overwrite(k, old, v)?;
            }
        }
        for (k, v) in batch {
            let before = d.map.insert(k.clone(), v.into());
            d.unsynced.push((k, before));
        }
        d.flushed = false;
        Ok(())
    }

    fn flush(&self) -> Result<(), Error> {
        lock(&self.disk.data).flushed = true;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), Error> {
        let mut d = lock(&self.disk.data);
        if !d.flushed && !d.unsynced.is_empty() {
            return Err(Error::storage("MemStore: sync_data without flush"));
        }
        d.unsynced.clear();
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, Error> {
        Ok(0)
    }
}
