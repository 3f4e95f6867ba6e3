//! Key-value projections written against a domain's event type: the handler gets decoded
//! (and upcast) events instead of raw records.

use std::sync::Arc;

use annals_core::{DomainEvent, RecordedEvent};
use annals_projections::{HandlerError, KvProjector, KvWriter};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::upcast::Upcasters;

/// The handler of a key-value projection over one domain's events. Wrap it in [`Decoded`] to
/// use it as a [`KvProjector`] (events of other types are skipped; stored events of an older
/// schema version go through the upcasters first).
///
/// ```
/// use annals::prelude::*;
/// use annals::projections::{Decoded, HandlerError, KvEventProjector, KvProjection, KvReadModel, KvWriter, project_to_head};
///
/// #[derive(DomainEvent, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
/// enum AccountEvent {
///     Deposited { amount: u64 },
///     Withdrawn { amount: u64 },
/// }
///
/// /// The balance of every account.
/// struct Balances;
/// impl KvEventProjector for Balances {
///     type Event = AccountEvent;
///     type Key = String;
///     type Value = u64;
///     fn name(&self) -> &str { "balances" }
///     fn apply(&self, event: AccountEvent, envelope: &RecordedEvent, kv: &mut KvWriter<'_, String, u64>) -> Result<(), HandlerError> {
///         let account = envelope.stream.to_string();
///         let balance = kv.get(&account)?.unwrap_or(0);
///         let balance = match event {
///             AccountEvent::Deposited { amount } => balance + amount,
///             AccountEvent::Withdrawn { amount } => balance.checked_sub(amount).ok_or("overdrawn")?,
///         };
///         Ok(kv.put(&account, &balance)?)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemStore::new();
/// let a = StreamId::new("account-a")?;
/// store.append(&a, ExpectedVersion::Any, vec![
///     AccountEvent::Deposited { amount: 10 }.to_event_data()?,
///     AccountEvent::Withdrawn { amount: 3 }.to_event_data()?,
///     EventData::json("SomethingElse", &1)?, // not an account event: skipped
/// ]).await?;
/// let model = KvReadModel::<String, u64>::in_memory();
/// let mut projection = KvProjection::new(Decoded::new(Balances), model.clone());
/// project_to_head(&store, &mut projection, 100).await?;
/// assert_eq!(model.get(&"account-a".to_string())?, Some(7));
/// # Ok(()) }
/// ```
pub trait KvEventProjector: Send + Sync + 'static {
    /// The domain's event type.
    type Event: DomainEvent;
    /// Key type.
    type Key: Serialize + DeserializeOwned + Send + Sync;
    /// Value type.
    type Value: Serialize + DeserializeOwned + Send + Sync;

    /// The projection's name.
    fn name(&self) -> &str;

    /// The projection's version (bump to rebuild).
    fn version(&self) -> u32 {
        1
    }

    /// Applies one decoded event; `envelope` is the stored record (stream, position,
    /// metadata).
    ///
    /// # Errors
    /// Any error (or a message: `Err("...".into())`); the runtime retries, then parks or
    /// stops by policy.
    fn apply(
        &self,
        event: Self::Event,
        envelope: &RecordedEvent,
        kv: &mut KvWriter<'_, Self::Key, Self::Value>,
    ) -> Result<(), HandlerError>;
}

/// A [`KvEventProjector`] as a [`KvProjector`]: decodes each event of its domain (upcast to
/// the current schema version) and skips the others. An event of the domain that does not
/// decode is a handler error (retried, then parked or stopped by policy).
pub struct Decoded<P> {
    projector: P,
    upcasters: Arc<Upcasters>,
}

impl<P: KvEventProjector> Decoded<P> {
    /// `projector` with no upcasters.
    pub fn new(projector: P) -> Self {
        Self {
            projector,
            upcasters: Arc::new(Upcasters::new()),
        }
    }

    /// Upcasts stored events of older schema versions with `upcasters` before decoding.
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = Arc::new(upcasters);
        self
    }

    /// The wrapped projector.
    pub fn projector(&self) -> &P {
        &self.projector
    }
}

impl<P: KvEventProjector> KvProjector for Decoded<P> {
    type Key = P::Key;
    type Value = P::Value;

    fn name(&self) -> &str {
        self.projector.name()
    }

    fn version(&self) -> u32 {
        self.projector.version()
    }

    fn apply(
        &self,
        event: &RecordedEvent,
        kv: &mut KvWriter<'_, P::Key, P::Value>,
    ) -> Result<(), HandlerError> {
        if P::Event::current_schema_version(&event.event_type).is_none() {
            return Ok(());
        }
        let decoded = self.upcasters.decode::<P::Event>(event)?;
        self.projector.apply(decoded, event, kv)
    }
}
