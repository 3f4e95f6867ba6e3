//! # annals
//!
//! Event sourcing and CQRS for Rust. Domains are modelled as aggregates; events are appended
//! to optimistic-concurrency streams in an embedded [sled](https://docs.rs/sled) store with a
//! gap-free global log, durable acknowledgements and group commit; projections turn the log
//! into read models.
//!
//! This facade re-exports the workspace crates:
//!
//! * [`annals_core`] (everything at the top level): ids, the envelope, the [`EventStore`]
//!   trait, codecs, errors;
//! * [`store`]: [`SledStore`](store::SledStore) and [`MemStore`](store::MemStore);
//! * [`projections`]: the projection runtime.
//!
//! ```
//! use annals::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemStore::new();
//! let stream = StreamId::new("account-1")?;
//! store.append(&stream, ExpectedVersion::NoStream, vec![EventData::json("Opened", &"ada")?]).await?;
//! let mut sub = store.subscribe_all(Position::NONE);
//! let first = sub.next().await.ok_or("store closed")??;
//! assert_eq!(first.event_type, "Opened");
//! # Ok(()) }
//! ```

pub use annals_core::*;

/// The event stores: sled on disk and the in-memory store.
pub mod store {
    pub use annals_store::*;
}

/// The projection runtime.
pub mod projections {
    pub use annals_projections::*;
}

/// The names most programs need.
pub mod prelude {
    pub use crate::store::{Durability, MemStore, SledStore, StoreConfig};
    pub use annals_core::{
        AppendResult, CodecId, Direction, Error, EventData, EventId, EventStore, ExpectedVersion,
        Filter, Metadata, Position, RecordedEvent, StreamId, Subscription, Timestamp, Version,
        VersionRange,
    };
}
