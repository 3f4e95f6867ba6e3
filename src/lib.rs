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
pub use annals_derive::{Command, DomainEvent};

mod repository;
pub mod testing;
mod upcast;

pub use repository::{
    CommandContext, Executed, HistoryEntry, Repository, RepositoryError, event_id_for,
};
pub use upcast::Upcasters;

/// Paths the derive macros expand to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use annals_core::{CodecId, Command, DomainEvent, Error};
    pub use serde;

    /// The error for an event type the derived type does not know.
    pub fn unknown_event_type(event_type: &str, for_type: &str) -> Error {
        Error::unknown_event_type(event_type, for_type)
    }
}

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
    pub use crate::{CommandContext, Executed, Repository, RepositoryError, Upcasters};
    pub use annals_core::{
        Aggregate, AppendResult, CodecId, Command, Direction, DomainEvent, Error, EventData,
        EventId, EventStore, ExpectedVersion, Filter, Metadata, Position, RecordedEvent,
        SnapshotStore, StreamId, Subscription, Timestamp, Version, VersionRange,
    };
    pub use annals_derive::{Command, DomainEvent};
}
