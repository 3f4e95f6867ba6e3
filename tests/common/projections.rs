//! A key-value projection shared by the projection tests and the projection crash test.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use annals::prelude::*;
use annals::projections::*;

/// Per stream: (events applied, last version applied, sum of payload numbers). Applying an
/// event twice or skipping one breaks `count == last_version`.
pub struct PerStream {
    pub name: &'static str,
    pub version: u32,
    /// When set, events of type "Poison" fail.
    pub poison: Arc<AtomicBool>,
    pub calls: Arc<AtomicUsize>,
}

impl PerStream {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            version: 1,
            poison: Arc::new(AtomicBool::new(false)),
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl KvProjector for PerStream {
    type Key = String;
    type Value = (u64, u64, u64);
    fn name(&self) -> &str {
        self.name
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn apply(
        &self,
        e: &RecordedEvent,
        kv: &mut KvWriter<'_, String, (u64, u64, u64)>,
    ) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if e.event_type == "Poison" && self.poison.load(Ordering::SeqCst) {
            return Err(format!("cannot handle poison at {}", e.position).into());
        }
        let n: u64 = e.decode().unwrap_or(0);
        let key = e.stream.to_string();
        let (count, _, sum) = kv.get(&key)?.unwrap_or_default();
        Ok(kv.put(&key, &(count + 1, e.version.0, sum + n))?)
    }
}

pub fn temp_db() -> sled::Db {
    sled::Config::new().temporary(true).open().unwrap()
}

/// The read model rebuilt from scratch up to `until`.
pub async fn rebuilt<S: EventStore>(store: &S, until: Position) -> Vec<(String, (u64, u64, u64))> {
    let model = KvReadModel::temporary().unwrap();
    let mut p = KvProjection::new(PerStream::new("rebuild"), model.clone());
    project_until(store, &mut p, until, 100).await.unwrap();
    model.entries().unwrap()
}

pub fn check_once(entries: &[(String, (u64, u64, u64))]) {
    for (stream, (count, last, _)) in entries {
        assert_eq!(
            count, last,
            "{stream}: events applied {count} times vs version {last}"
        );
    }
}

/// Opens the `PerStream` read model `name` in `db` and checks it against the store: nothing
/// applied twice, and equal to a rebuild up to its own checkpoint. Returns the model.
pub async fn check_kv_against_rebuild<S: EventStore>(
    store: &S,
    db: &sled::Db,
    name: &str,
    context: &str,
) -> KvReadModel<String, (u64, u64, u64)> {
    let model = KvReadModel::<String, (u64, u64, u64)>::open(db, name).unwrap();
    let entries = model.entries().unwrap();
    check_once(&entries);
    let cp = model
        .checkpoint()
        .unwrap()
        .map_or(Position::NONE, |c| c.position);
    assert_eq!(
        entries,
        rebuilt(store, cp).await,
        "{context}: read model != rebuild at its checkpoint {cp}"
    );
    model
}
