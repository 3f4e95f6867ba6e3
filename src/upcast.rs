//! Upcasting: turning stored events of an old schema version into the current one on read.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use annals_core::{CodecId, DomainEvent, Error, RecordedEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;

type Step = Arc<dyn Fn(CodecId, &[u8]) -> Result<Vec<u8>, Error> + Send + Sync>;

/// Upcasters registered per (event type, from version): each moves a payload one version
/// forward. Applied on every read path of the [`Repository`](crate::Repository) (load,
/// history) and, through [`Upcasters::upcast_to`], by subscribers and projections.
///
/// ```
/// use annals::Upcasters;
/// #[derive(serde::Deserialize)]
/// struct DepositedV1 { cents: u64 }
/// #[derive(serde::Serialize)]
/// struct DepositedV2 { amount: u64, currency: String }
///
/// let upcasters = Upcasters::new().add("Deposited", 1, |old: DepositedV1| DepositedV2 {
///     amount: old.cents,
///     currency: "EUR".into(),
/// });
/// # let _ = upcasters;
/// ```
#[derive(Clone, Default)]
pub struct Upcasters {
    steps: HashMap<(String, u32), Step>,
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<_> = self.steps.keys().collect();
        keys.sort();
        f.debug_struct("Upcasters").field("steps", &keys).finish()
    }
}

impl Upcasters {
    /// No upcasters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a typed step: payloads of `event_type` at `from_version` decode as `Old`
    /// (with the codec they were stored with) and are re-encoded from `f(old)` as version
    /// `from_version + 1`.
    pub fn add<Old, New, F>(self, event_type: &str, from_version: u32, f: F) -> Self
    where
        Old: DeserializeOwned,
        New: Serialize,
        F: Fn(Old) -> New + Send + Sync + 'static,
    {
        let name = event_type.to_owned();
        self.add_raw(event_type, from_version, move |codec, bytes| {
            let old: Old = codec.decode(&name, bytes)?;
            codec.encode(&name, &f(old))
        })
    }

    /// Registers a step over raw payload bytes.
    pub fn add_raw<F>(mut self, event_type: &str, from_version: u32, f: F) -> Self
    where
        F: Fn(CodecId, &[u8]) -> Result<Vec<u8>, Error> + Send + Sync + 'static,
    {
        self.steps
            .insert((event_type.to_owned(), from_version), Arc::new(f));
        self
    }

    /// Moves `event` forward to schema version `target`.
    ///
    /// # Errors
    /// [`Error::Codec`] when a step is missing or fails, or the event is newer than `target`.
    pub fn upcast_to(&self, mut event: RecordedEvent, target: u32) -> Result<RecordedEvent, Error> {
        if event.schema_version > target {
            return Err(Error::Codec {
                action: annals_core::CodecAction::Decode,
                event_type: event.event_type.clone(),
                reason: format!(
                    "schema version {} at position {} is newer than this build's {target}",
                    event.schema_version, event.position
                ),
            });
        }
        while event.schema_version < target {
            let key = (event.event_type.clone(), event.schema_version);
            let Some(step) = self.steps.get(&key) else {
                return Err(Error::Codec {
                    action: annals_core::CodecAction::Decode,
                    event_type: event.event_type.clone(),
                    reason: format!(
                        "no upcaster from schema version {} (position {}) towards {target}",
                        event.schema_version, event.position
                    ),
                });
            };
            event.payload = step(event.codec, &event.payload)?;
            event.schema_version += 1;
        }
        Ok(event)
    }

    /// Decodes a stored event into `E`, upcasting it first when it is of an older schema
    /// version than this build writes.
    ///
    /// # Errors
    /// [`Error::Codec`] for unknown event types, missing upcasters or undecodable payloads.
    pub fn decode<E: DomainEvent>(&self, event: &RecordedEvent) -> Result<E, Error> {
        let Some(current) = E::current_schema_version(&event.event_type) else {
            return Err(Error::unknown_event_type(
                &event.event_type,
                std::any::type_name::<E>(),
            ));
        };
        if event.schema_version == current {
            return E::decode_payload(&event.event_type, event.codec, &event.payload);
        }
        let up = self.upcast_to(event.clone(), current)?;
        E::decode_payload(&up.event_type, up.codec, &up.payload)
    }
}
