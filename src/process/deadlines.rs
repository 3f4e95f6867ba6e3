//! The runner's table of pending deadlines and its checkpoint.
//!
//! The table is what the deadline records of the process streams say, as far as the runner
//! has read the log: a `DeadlineSet` puts an entry in (or moves it), a `DeadlineCancelled` or
//! `DeadlineFired` takes it out. The checkpoint stores the table beside the position up to
//! which every event was handled; after a restart the runner reads the log again from there,
//! and applying the records read since (again) gives the same table, so no deadline is lost
//! and none is fired twice (the process's own state decides whether one still is due).

use std::collections::{BTreeSet, HashMap, HashSet};

use annals_core::{CodecId, Error, Position, Snapshot, StreamId, Timestamp, Version};
use serde::{Deserialize, Serialize};

/// A deadline of one process: (process key, name).
pub(super) type DeadlineKey = (String, String);

/// Pending deadlines, by due time.
#[derive(Default, Debug)]
pub(super) struct Deadlines {
    due: HashMap<DeadlineKey, Timestamp>,
    by_time: BTreeSet<(Timestamp, DeadlineKey)>,
    /// Handed to a worker and not yet reported back.
    firing: HashSet<DeadlineKey>,
}

impl Deadlines {
    pub(super) fn set(&mut self, key: DeadlineKey, due: Timestamp) {
        if let Some(old) = self.due.insert(key.clone(), due) {
            self.by_time.remove(&(old, key.clone()));
        }
        self.by_time.insert((due, key));
    }

    pub(super) fn remove(&mut self, key: &DeadlineKey) {
        if let Some(old) = self.due.remove(key) {
            self.by_time.remove(&(old, key.clone()));
        }
    }

    /// The earliest due time of a deadline not being fired.
    pub(super) fn next_due(&self) -> Option<Timestamp> {
        self.by_time
            .iter()
            .find(|(_, k)| !self.firing.contains(k))
            .map(|(t, _)| *t)
    }

    /// The deadlines due at `now` and not being fired: they are marked as being fired.
    pub(super) fn take_due(&mut self, now: Timestamp) -> Vec<(DeadlineKey, Timestamp)> {
        let due: Vec<(DeadlineKey, Timestamp)> = self
            .by_time
            .iter()
            .take_while(|(t, _)| *t <= now)
            .filter(|(_, k)| !self.firing.contains(k))
            .map(|(t, k)| (k.clone(), *t))
            .collect();
        for (k, _) in &due {
            self.firing.insert(k.clone());
        }
        due
    }

    /// A worker is done with deadline `key` (due at `due`): if it did not fire it (the
    /// process had cancelled or moved it), an entry still at `due` goes.
    pub(super) fn fired(&mut self, key: &DeadlineKey, due: Timestamp, fired: bool) {
        self.firing.remove(key);
        if !fired && self.due.get(key) == Some(&due) {
            self.remove(key);
        }
    }

    pub(super) fn firing(&self) -> usize {
        self.firing.len()
    }

    pub(super) fn len(&self) -> usize {
        self.due.len()
    }
}

/// What the runner saves: the position up to which every event was handled, and the table.
#[derive(Serialize, Deserialize, Default)]
pub(super) struct Checkpoint {
    pub(super) position: u64,
    pub(super) deadlines: Vec<(String, String, Timestamp)>,
}

/// The schema version of [`Checkpoint`]'s encoding.
const CHECKPOINT_VERSION: u32 = 1;

/// The stream whose snapshot slot holds the checkpoint of processes of type `process_type`
/// (a stream with no events: it is not in the log).
pub(super) fn checkpoint_stream(process_type: &str) -> Result<StreamId, Error> {
    StreamId::new(format!("annals.process-checkpoint.{process_type}"))
}

impl Checkpoint {
    pub(super) fn of(position: Position, table: &Deadlines) -> Self {
        Self {
            position: position.0,
            deadlines: table
                .due
                .iter()
                .map(|((k, n), t)| (k.clone(), n.clone(), *t))
                .collect(),
        }
    }

    pub(super) fn to_snapshot(&self) -> Result<Snapshot, Error> {
        let payload = CodecId::BINCODE.encode("process checkpoint", self)?;
        Ok(Snapshot::new(
            Version(self.position),
            CHECKPOINT_VERSION,
            CodecId::BINCODE,
            payload,
            Timestamp::now(),
        ))
    }

    /// The checkpoint in `snapshot`; an unreadable one is reported and read as none (the
    /// runner then reads the whole log again, which is safe: every reaction is idempotent).
    pub(super) fn from_snapshot(snapshot: Option<Snapshot>) -> (Self, Deadlines) {
        let decoded = match snapshot {
            None => Ok(Self::default()),
            Some(s) if s.schema_version != CHECKPOINT_VERSION => Err(format!(
                "checkpoint schema version {} is not {CHECKPOINT_VERSION}",
                s.schema_version
            )),
            Some(s) => s
                .codec
                .decode::<Self>("process checkpoint", &s.payload)
                .map_err(|e| e.to_string()),
        };
        let checkpoint = decoded.unwrap_or_else(|reason| {
            tracing::warn!(%reason, "process checkpoint unreadable; reading the log from the start");
            Self::default()
        });
        let mut table = Deadlines::default();
        for (k, n, t) in &checkpoint.deadlines {
            table.set((k.clone(), n.clone()), *t);
        }
        (checkpoint, table)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(k: &str) -> DeadlineKey {
        (k.to_owned(), "payment".to_owned())
    }

    #[test]
    fn a_deadline_is_handed_out_once_until_reported() {
        let mut t = Deadlines::default();
        t.set(key("a"), Timestamp(10));
        t.set(key("b"), Timestamp(20));
        t.set(key("a"), Timestamp(30)); // moved
        assert_eq!(t.next_due(), Some(Timestamp(20)));
        assert_eq!(t.take_due(Timestamp(25)), vec![(key("b"), Timestamp(20))]);
        assert!(t.take_due(Timestamp(25)).is_empty(), "b is being fired");
        assert_eq!(t.next_due(), Some(Timestamp(30)));
        t.fired(&key("b"), Timestamp(20), false);
        assert_eq!((t.len(), t.firing()), (1, 0));
        let (c, back) =
            Checkpoint::from_snapshot(Some(Checkpoint::of(Position(7), &t).to_snapshot().unwrap()));
        assert_eq!((c.position, back.len()), (7, 1));
        assert_eq!(back.next_due(), Some(Timestamp(30)));
    }
}
