//! The conformance suite against `MemStore` and `SledStore`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use annals::store::{MemDisk, MemStore, SledStore};
use annals_conformance::{Harness, conformance_tests};

/// In-memory stores on a `MemDisk` that outlives each store.
#[derive(Default)]
struct Mem {
    disk: Option<MemDisk>,
}

impl Harness for Mem {
    type Store = MemStore;
    async fn fresh(&mut self) -> MemStore {
        let disk = MemDisk::new();
        self.disk = Some(disk.clone());
        MemStore::open(disk).unwrap()
    }
    async fn reopen(&mut self, store: MemStore) -> MemStore {
        drop(store);
        let disk = self.disk.clone().unwrap();
        // Everything acknowledged was synced, so a power loss must lose nothing.
        assert!(disk.crash());
        MemStore::open(disk).unwrap()
    }
}

/// sled stores in a temporary directory.
#[derive(Default)]
struct Sled {
    dir: Option<tempfile::TempDir>,
}

impl Harness for Sled {
    type Store = SledStore;
    async fn fresh(&mut self) -> SledStore {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        self.dir = Some(dir);
        s
    }
    async fn reopen(&mut self, store: SledStore) -> SledStore {
        let path = store.path().to_path_buf();
        drop(store);
        SledStore::open(path).unwrap()
    }
}

conformance_tests!(mem, Mem::default());
conformance_tests!(sled, Sled::default());
