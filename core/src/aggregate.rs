//! The write model: [`Aggregate`], [`DomainEvent`] and [`Command`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::CodecId;
use crate::envelope::EventData;
use crate::error::Error;

/// A domain event type: knows the type name and schema version of each of its values, and
/// how to encode and decode just its payload.
///
/// Usually derived with `#[derive(DomainEvent)]`: for an enum, each variant is one event type
/// (named after the variant unless `#[event(name = "...")]` says otherwise) whose payload is
/// the variant's fields, so variants can be reordered or added without touching stored
/// events.
///
/// By hand, for event types defined in a crate that must not depend on annals (a shared
/// contracts crate with serde only): implement it in the crate that does, on a newtype, with
/// the same layout the derive uses — one event type per variant, the payload the variant's
/// fields.
///
/// ```
/// use annals_core::{CodecId, DomainEvent, Error};
/// use serde::{Deserialize, Serialize};
///
/// // In the contracts crate: plain serde types.
/// #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
/// pub struct Placed { pub order: String, pub total: u64 }
/// #[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
/// pub struct Cancelled { pub order: String }
///
/// // In the service: the event type annals stores.
/// #[derive(Debug, Clone, PartialEq)]
/// enum OrderEvent {
///     Placed(Placed),
///     Cancelled(Cancelled),
/// }
///
/// impl DomainEvent for OrderEvent {
///     fn event_type(&self) -> &'static str {
///         match self {
///             OrderEvent::Placed(_) => "Placed",
///             OrderEvent::Cancelled(_) => "Cancelled",
///         }
///     }
///     fn schema_version(&self) -> u32 {
///         1
///     }
///     fn event_types() -> &'static [(&'static str, u32)] {
///         &[("Placed", 1), ("Cancelled", 1)]
///     }
///     fn encode_payload(&self, codec: CodecId) -> Result<Vec<u8>, Error> {
///         match self {
///             OrderEvent::Placed(p) => codec.encode("Placed", p),
///             OrderEvent::Cancelled(c) => codec.encode("Cancelled", c),
///         }
///     }
///     fn decode_payload(event_type: &str, codec: CodecId, bytes: &[u8]) -> Result<Self, Error> {
///         match event_type {
///             "Placed" => codec.decode(event_type, bytes).map(OrderEvent::Placed),
///             "Cancelled" => codec.decode(event_type, bytes).map(OrderEvent::Cancelled),
///             other => Err(Error::unknown_event_type(other, "OrderEvent")),
///         }
///     }
/// }
///
/// let e = OrderEvent::Placed(Placed { order: "o-1".into(), total: 30 });
/// let data = e.to_event_data()?;
/// assert_eq!(data.event_type, "Placed");
/// let back = OrderEvent::decode_payload("Placed", data.codec, &data.payload)?;
/// assert_eq!(back, e);
/// # Ok::<(), Error>(())
/// ```
pub trait DomainEvent: Sized + Send + Sync + 'static {
    /// The type name of this event, e.g. `"Deposited"`.
    fn event_type(&self) -> &'static str;

    /// The schema version this build writes for this event.
    fn schema_version(&self) -> u32;

    /// Every event type name this type can hold, with the schema version this build writes.
    fn event_types() -> &'static [(&'static str, u32)];

    /// Encodes the payload (for an enum: the variant's fields) with `codec`.
    ///
    /// # Errors
    /// [`Error::Codec`] when serde fails.
    fn encode_payload(&self, codec: CodecId) -> Result<Vec<u8>, Error>;

    /// Decodes a payload of `event_type` written at the current schema version.
    ///
    /// # Errors
    /// [`Error::Codec`] for an unknown event type or undecodable bytes.
    fn decode_payload(event_type: &str, codec: CodecId, bytes: &[u8]) -> Result<Self, Error>;

    /// The schema version this build writes for `event_type`, if it is one of this type's.
    fn current_schema_version(event_type: &str) -> Option<u32> {
        Self::event_types()
            .iter()
            .find(|(t, _)| *t == event_type)
            .map(|(_, v)| *v)
    }

    /// The event as [`EventData`] with the default codec and a fresh id.
    ///
    /// # Errors
    /// [`Error::Codec`] when serde fails.
    fn to_event_data(&self) -> Result<EventData, Error> {
        let codec = CodecId::default();
        Ok(
            EventData::from_bytes(self.event_type(), codec, self.encode_payload(codec)?)
                .with_schema_version(self.schema_version()),
        )
    }
}

/// A command: names the aggregate instance it is for. Derive it with `#[derive(Command)]` and
/// `#[command(id)]` on the field holding the id.
pub trait Command: Send + Sync {
    /// The id of the target aggregate instance (the part after `<type>-` in its stream id).
    fn aggregate_id(&self) -> String;
}

/// A consistency boundary: decides on commands and evolves by events.
///
/// `handle` is pure and synchronous: it looks at the current state and returns the events
/// the command causes (or a domain error); `apply` folds one event into the state and must not
/// fail. State is serializable so that it can be snapshotted.
pub trait Aggregate:
    Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The aggregate type name: the prefix of its streams (`<TYPE>-<id>`).
    const TYPE: &'static str;

    /// The schema version of the serialized state; snapshots of another version are ignored
    /// (and the aggregate replayed) after it changes.
    const SNAPSHOT_VERSION: u32 = 1;

    /// The commands it accepts.
    type Command: Send + Sync;
    /// The events it emits and applies.
    type Event: DomainEvent;
    /// Domain errors (rules the command broke). Kept apart from store errors.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Whatever `handle` may consult besides the state (clocks, lookups); `()` if nothing.
    type Services: Send + Sync;

    /// Decides what `command` causes.
    ///
    /// # Errors
    /// The domain rule the command broke.
    fn handle(
        &self,
        command: &Self::Command,
        services: &Self::Services,
    ) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);
}
