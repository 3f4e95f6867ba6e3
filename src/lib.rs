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
//! * [`projections`]: the projection runtime;
//! * [`process`]: process managers (sagas) with compensation and durable deadlines.
//!
//! ```
//! use annals::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
//! enum CounterEvent {
//!     Incremented { by: u64 },
//! }
//!
//! #[derive(Default, Clone, Serialize, Deserialize)]
//! struct Counter {
//!     value: u64,
//! }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("cannot increment by zero")]
//! struct Zero;
//!
//! impl Aggregate for Counter {
//!     const TYPE: &'static str = "counter";
//!     type Command = u64;
//!     type Event = CounterEvent;
//!     type Error = Zero;
//!     type Services = ();
//!     fn handle(&self, by: &u64, _: &()) -> Result<Vec<CounterEvent>, Zero> {
//!         if *by == 0 { return Err(Zero) }
//!         Ok(vec![CounterEvent::Incremented { by: *by }])
//!     }
//!     fn apply(&mut self, CounterEvent::Incremented { by }: &CounterEvent) {
//!         self.value += by;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemStore::new(); // or SledStore::open("data")?
//! let counters = Repository::<Counter, _>::new(store.clone()).snapshot_every(100);
//! counters.execute("c1", &5).await?;
//! counters.execute("c1", &2).await?;
//! assert!(matches!(counters.execute("c1", &0).await, Err(RepositoryError::Domain(Zero))));
//!
//! let (now, version) = counters.load("c1").await?;
//! assert_eq!((now.value, version), (7, Version(2)));
//! let (then, _) = counters.load_at("c1", Version(1)).await?; // time travel
//! assert_eq!(then.value, 5);
//!
//! // Every event is in the global log, in commit order, for projections.
//! let mut sub = store.subscribe_all(Position::NONE);
//! let first = sub.next().await.ok_or("store closed")??;
//! assert_eq!(first.event_type, "Incremented");
//! # Ok(()) }
//! ```

pub use annals_core::*;
/// Derives `DomainEvent` (one event type per variant, payload = the variant's fields;
/// `#[event(name = "..")]`, `#[event(version = N)]`; `#[event(schemas)]` on the type for its
/// payloads' JSON Schemas, see `annals::contracts`, feature `contracts`)
/// and `Command` (`#[command(id)]` names the field holding the aggregate id).
///
/// ```
/// use annals::{Command, DomainEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// enum AccountEvent {
///     Opened { owner: String },
///     #[event(version = 2)]
///     Deposited { amount: u64 },
///     #[event(name = "Withdrawn")]
///     Withdrew { amount: u64 },
/// }
///
/// #[derive(Command)]
/// struct Deposit {
///     #[command(id)]
///     account: String,
///     amount: u64,
/// }
///
/// let e = AccountEvent::Withdrew { amount: 3 };
/// assert_eq!(e.event_type(), "Withdrawn");
/// assert_eq!(AccountEvent::Deposited { amount: 1 }.schema_version(), 2);
/// let cmd = Deposit { account: "a-1".into(), amount: 5 };
/// assert_eq!(cmd.aggregate_id(), "a-1");
/// # let _ = cmd.amount;
/// ```
pub use annals_derive::{Command, DomainEvent};

mod event_projector;
pub mod process;
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

    pub use crate::__annals_with_contracts as with_contracts;
    #[cfg(feature = "contracts")]
    pub use annals_contracts as contracts;
    #[cfg(feature = "contracts")]
    pub use annals_contracts::schemars;

    /// The error for an event type the derived type does not know.
    pub fn unknown_event_type(event_type: &str, for_type: &str) -> Error {
        Error::unknown_event_type(event_type, for_type)
    }
}

/// What `#[event(schemas)]` expands into: the tokens as they are with the `contracts`
/// feature, an error naming the feature without it.
#[cfg(feature = "contracts")]
#[doc(hidden)]
#[macro_export]
macro_rules! __annals_with_contracts {
    ($($t:tt)*) => { $($t)* };
}

/// What `#[event(schemas)]` expands into: the tokens as they are with the `contracts`
/// feature, an error naming the feature without it.
#[cfg(not(feature = "contracts"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __annals_with_contracts {
    ($($t:tt)*) => {
        ::core::compile_error!(
            "`#[event(schemas)]` needs the `contracts` feature of annals: \
             annals = { ..., features = [\"contracts\"] }"
        );
    };
}

/// Event contracts (feature `contracts`): the JSON Schema of each event type's payload at
/// each version, the compatibility checker, committed-schema checks (`docs/contracts.md`).
///
/// `#[derive(DomainEvent)]` with `#[event(schemas)]` implements
/// [`EventContracts`](contracts::EventContracts): for an enum, each variant's schema is
/// derived from its fields (their types implement `schemars::JsonSchema`); for a struct, the
/// struct itself must implement `JsonSchema`.
///
/// ```
/// use annals::DomainEvent;
/// use annals::contracts::{EventContracts, Mode, check};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(DomainEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
/// #[event(schemas)]
/// enum AccountEvent {
///     Opened { owner: String },
///     #[event(version = 2)]
///     Deposited { amount: u64, note: Option<String> },
///     Closed,
/// }
///
/// let schemas = AccountEvent::event_schemas();
/// assert_eq!(schemas.len(), 3);
/// assert_eq!((schemas[1].event_type.as_str(), schemas[1].version), ("Deposited", 2));
/// assert_eq!(schemas[1].file()?, "Deposited/v2.json");
/// // The payload of `Deposited` is `{"amount": .., "note": ..}`; `note` may be left out.
/// assert_eq!(schemas[1].schema["required"], serde_json::json!(["amount"]));
/// // `Closed` has no fields: its payload is `null`.
/// assert_eq!(schemas[2].schema["type"], "null");
///
/// // v1 of Deposited had no note: v2 reads it, and v1 readers ignore the note.
/// let v1 = serde_json::json!({"type": "object",
///     "properties": {"amount": {"type": "integer", "format": "uint64", "minimum": 0}},
///     "required": ["amount"]});
/// assert!(check(&v1, &schemas[1].schema, Mode::Full)?.is_empty());
/// # Ok::<(), annals::contracts::ContractError>(())
/// ```
///
/// An event struct is its own payload, so it implements `JsonSchema` itself; without it the
/// derive does not compile:
///
/// ```compile_fail
/// #[derive(annals::DomainEvent, serde::Serialize, serde::Deserialize)]
/// #[event(schemas)]
/// struct PriceChanged {
///     cents: u64,
/// }
/// ```
#[cfg(feature = "contracts")]
pub mod contracts {
    pub use annals_contracts::*;
}

/// The event stores: sled on disk and the in-memory store.
pub mod store {
    pub use annals_store::*;
}

/// The projection runtime, and projectors written against a domain's event type
/// ([`KvEventProjector`](projections::KvEventProjector) with [`Decoded`](projections::Decoded)).
pub mod projections {
    pub use crate::event_projector::{Decoded, KvEventProjector};
    pub use annals_projections::*;
}

/// The PostgreSQL event store (feature `postgres`).
#[cfg(feature = "postgres")]
pub mod postgres {
    pub use annals_postgres::*;
}

/// The names most programs need. It takes no name a domain commonly gives its own types: a
/// glob import of it beside a glob import of a domain with its own `Command` and `Error`
/// types is fine.
///
/// ```
/// use annals::prelude::*;
/// mod domain {
///     pub enum Command { Open }
///     #[derive(Debug)]
///     pub struct Error;
/// }
/// use domain::*;
/// let _ = Command::Open;
/// let _: Result<(), Error> = Err(Error);
/// let _: Result<(), annals::Error> = Ok(()); // the store's error, by its path
/// ```
pub mod prelude {
    #[cfg(feature = "sled")]
    pub use crate::store::SledStore;
    pub use crate::store::{Durability, MemStore, StoreConfig};
    pub use crate::{CommandContext, Executed, Repository, RepositoryError, Upcasters};
    // `Command` (the trait) comes in unnamed, for its methods: a domain's own `Command` or
    // `Error` type must not clash with a glob import of the prelude (write `annals::Error`
    // for the store's error). The `Command` derive macro keeps its name.
    pub use annals_core::Command as _;
    pub use annals_core::{
        Aggregate, AppendResult, CodecId, Direction, DomainEvent, EventData, EventId, EventStore,
        ExpectedVersion, Filter, Metadata, Position, RecordedEvent, SnapshotStore, StreamId,
        Subscription, Timestamp, Version, VersionRange,
    };
    pub use annals_derive::{Command, DomainEvent};
}

/// The README's Rust examples, compiled and run as doc tests.
#[cfg(all(doctest, feature = "sled"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The Rust examples of `docs/processes.md`, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/processes.md")]
pub struct ProcessesDoctests;

/// The Rust examples of `docs/contracts.md`, compiled and run as doc tests.
#[cfg(all(doctest, feature = "contracts"))]
#[doc = include_str!("../docs/contracts.md")]
pub struct ContractsDoctests;
