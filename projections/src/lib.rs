//! # annals-projections
//!
//! The projection runtime of annals: asynchronous workers that turn the global event log into
//! read models, with checkpoints saved atomically with each read model, retries, a dead-letter
//! list, rebuild by replay and a tantivy full-text read model.
//!
//! This crate is a skeleton so far: it reads events only through
//! [`annals_core::EventStore`], so its runner will work over any store. Until the runtime
//! lands, a read model can follow the log with
//! [`EventStore::subscribe_all`](annals_core::EventStore::subscribe_all).

pub use annals_core::{EventStore, Filter, Position, RecordedEvent, Subscription};
