//! The in-memory backend and its [`MemDisk`], stricter than sled.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use annals_core::Error;

use super::{Backend, Visit, lock};

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
