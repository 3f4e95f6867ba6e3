//! The sled 0.34 backend: sled's flush plus an `fdatasync` of its files, and its file lock
//! checked before opening and awaited after closing.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use annals_core::Error;

use super::{Backend, Flow, Visit, lock};

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
