//! # annals-contracts
//!
//! Event contracts: what the payload of each event type looks like at each version, as a
//! JSON Schema, and whether a new version can still be read by — and can still read — the
//! others. `docs/contracts.md` in the repository is the guide; this is the reference.
//!
//! * [`EventSchema`]: one event type at one version, with its schema. A `DomainEvent` type
//!   lists its own with [`EventContracts::event_schemas`], which `#[derive(DomainEvent)]`
//!   implements when asked (`#[event(schemas)]`, the facade's `contracts` feature).
//! * [`check`] and [`check_history`]: the compatibility checker, in the usual registry
//!   [`Mode`]s (backward, forward, full, and their transitive forms). The result is a list
//!   of [`Incompatibility`]s, each with its JSON-pointer path and a [`IncompatibilityKind`]
//!   to match on.
//! * [`check_committed`]: the schemas the code generates against the files committed under
//!   `<dir>/<event type>/v<N>.json`, like format fixtures: a changed shape without a version
//!   bump fails, and so does an incompatible new version.
//! * [`testing::assert_compatible`] for tests.
//!
//! Why JSON Schema: events are serde types, and `schemars` derives a JSON Schema from the
//! same serde attributes that decide their encoding; the schema describes the payload's
//! serde data model as JSON — byte for byte what the JSON codec stores and the relay
//! publishes with `content-type: application/json`. (An Avro schema would describe an Avro
//! encoding that annals never writes.) Payloads stored with bincode have the same shape, but
//! bincode is positional: its readers need the exact shape of the version written, which is
//! why a changed shape must get a new version (and stored events an upcaster).
//!
//! ```
//! use annals_contracts::{EventSchema, Mode, check, schema_of};
//!
//! #[derive(schemars::JsonSchema)]
//! struct DepositedV1 { amount: u64 }
//! #[derive(schemars::JsonSchema)]
//! struct DepositedV2 { amount: u64, note: Option<String> }
//!
//! let v1 = EventSchema::new("Deposited", 1, schema_of::<DepositedV1>());
//! let v2 = EventSchema::new("Deposited", 2, schema_of::<DepositedV2>());
//! // An optional field: new readers read old events, old readers read new ones.
//! assert!(check(&v1.schema, &v2.schema, Mode::Full)?.is_empty());
//! assert!(check(&v2.schema, &v1.schema, Mode::Full)?.is_empty()); // and dropping it again
//! #[derive(schemars::JsonSchema)]
//! struct DepositedV3 { note: Option<String> }
//! let v3 = EventSchema::new("Deposited", 3, schema_of::<DepositedV3>());
//! assert!(!check(&v2.schema, &v3.schema, Mode::Forward)?.is_empty()); // v2 readers need `amount`
//! # Ok::<(), annals_contracts::ContractError>(())
//! ```

mod committed;
mod compat;
mod error;
mod model;
pub mod testing;

use annals_core::DomainEvent;
use serde_json::Value;

pub use committed::{
    Committed, Problem, Report, WRITE_ENV, check_committed, load_dir, read_schema, schema_file,
    shape, to_stable_json,
};
pub use compat::{
    Direction, Incompatibility, IncompatibilityKind, Mode, UnknownMode, VersionIncompatibility,
    accepts, check, check_history,
};
pub use error::ContractError;
/// The `schemars` this crate generates schemas with (payload types implement its
/// `JsonSchema`).
pub use schemars;

/// One event type at one schema version, with the JSON Schema of its payload.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EventSchema {
    /// The event type name, as stored.
    pub event_type: String,
    /// The schema version (1 or more).
    pub version: u32,
    /// The JSON Schema (draft 2020-12 as generated) of the payload.
    pub schema: Value,
}

impl EventSchema {
    /// An event type's schema at a version.
    pub fn new(event_type: impl Into<String>, version: u32, schema: Value) -> Self {
        Self {
            event_type: event_type.into(),
            version,
            schema,
        }
    }

    /// The path of its file below a schema directory: `<event type>/v<N>.json`.
    ///
    /// # Errors
    /// [`ContractError::EventTypeName`] for a name that cannot be a directory name.
    pub fn file(&self) -> Result<String, ContractError> {
        schema_file(&self.event_type, self.version)
    }
}

/// A [`DomainEvent`] type that knows the schema of each of its event types at the version it
/// writes. Derived with `#[derive(DomainEvent)]` and `#[event(schemas)]`.
pub trait EventContracts: DomainEvent {
    /// One [`EventSchema`] per event type of [`DomainEvent::event_types`], in that order.
    fn event_schemas() -> Vec<EventSchema>;
}

/// The JSON Schema of `T`, generated the one way every schema of annals is (draft 2020-12,
/// `Option<T>` as "`T` or null" and not required, named types under `$defs`), as a
/// [`Value`].
pub fn schema_of<T: schemars::JsonSchema + ?Sized>() -> Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}
