//! The inbox's dead-letter list: messages that could not be handled, with the reason, to
//! list, retry after a fix, or discard.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use annals_core::{
    Direction, EventData, EventStore, ExpectedVersion, StreamId, Timestamp, VersionRange,
};
use serde::{Deserialize, Serialize};

use crate::error::BrokerError;
use crate::seam::Headers;
use crate::subject::encode_token;

/// One parked message: everything needed to handle it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ParkedMessage {
    /// The inbox that parked it.
    pub inbox: String,
    /// Its id: the event id, or `seq-<n>` (the broker's sequence) when it had none.
    pub id: String,
    /// The subject it came on.
    pub subject: String,
    /// Its headers.
    pub headers: Headers,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Why it was parked.
    pub error: String,
    /// How many times handling it was tried.
    pub attempts: u32,
    /// When it was parked.
    pub parked_at: Timestamp,
}

impl ParkedMessage {
    /// A record of a message parked now.
    pub fn new(
        inbox: impl Into<String>,
        id: impl Into<String>,
        subject: impl Into<String>,
        headers: Headers,
        payload: Vec<u8>,
        error: impl Into<String>,
    ) -> Self {
        Self {
            inbox: inbox.into(),
            id: id.into(),
            subject: subject.into(),
            headers,
            payload,
            error: error.into(),
            attempts: 0,
            parked_at: Timestamp::now(),
        }
    }

    /// Sets the number of attempts.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }
}

/// Where an inbox parks messages. Used through generics (`impl Future + Send`).
pub trait MessageDeadLetters: Clone + Send + Sync + 'static {
    /// Records `parked` (replacing a record of the same inbox and id), durably.
    ///
    /// # Errors
    /// The storage's errors.
    fn park(&self, parked: &ParkedMessage) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// The parked messages of `inbox`, oldest first.
    ///
    /// # Errors
    /// The storage's errors.
    fn list(
        &self,
        inbox: &str,
    ) -> impl Future<Output = Result<Vec<ParkedMessage>, BrokerError>> + Send;

    /// Removes the record of `id`; true if there was one.
    ///
    /// # Errors
    /// The storage's errors.
    fn remove(
        &self,
        inbox: &str,
        id: &str,
    ) -> impl Future<Output = Result<bool, BrokerError>> + Send;
}

/// Parked messages in memory (tests): gone with the last clone.
#[derive(Clone, Default)]
pub struct MemDeadLetters {
    map: Arc<Mutex<BTreeMap<(String, String), ParkedMessage>>>,
}

impl MemDeadLetters {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }
}

impl MessageDeadLetters for MemDeadLetters {
    async fn park(&self, parked: &ParkedMessage) -> Result<(), BrokerError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.insert((parked.inbox.clone(), parked.id.clone()), parked.clone());
        Ok(())
    }

    async fn list(&self, inbox: &str) -> Result<Vec<ParkedMessage>, BrokerError> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.values().filter(|p| p.inbox == inbox).cloned().collect();
        v.sort_by_key(|p| p.parked_at);
        Ok(v)
    }

    async fn remove(&self, inbox: &str, id: &str) -> Result<bool, BrokerError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map.remove(&(inbox.to_owned(), id.to_owned())).is_some())
    }
}

/// Parked messages as events in the service's own store, stream `annals-inbox-<inbox>`
/// (`MessageParked` and `ParkedMessageRemoved`, JSON): durable wherever the store is, shared
/// by every process on a shared store (PostgreSQL), and needing no storage of its own. The
/// stream is not an aggregate of the domain: filter it out of projections that should not
/// see it (its prefix is `annals-inbox-`).
#[derive(Clone)]
pub struct StoreDeadLetters<S> {
    store: S,
}

/// The prefix of the dead-letter streams of [`StoreDeadLetters`].
pub const DEAD_LETTER_STREAM_PREFIX: &str = "annals-inbox-";

#[derive(Serialize, Deserialize)]
struct Removed {
    id: String,
}

impl<S: EventStore> StoreDeadLetters<S> {
    /// Parked messages in `store`.
    pub fn new(store: S) -> Self {
        Self { store }
    }

    fn stream(inbox: &str) -> Result<StreamId, BrokerError> {
        Ok(StreamId::new(format!(
            "{DEAD_LETTER_STREAM_PREFIX}{}",
            encode_token(inbox)
        ))?)
    }

    async fn current(&self, inbox: &str) -> Result<BTreeMap<String, ParkedMessage>, BrokerError> {
        const PAGE: usize = 1024;
        let stream = Self::stream(inbox)?;
        let mut out = BTreeMap::new();
        let mut from = annals_core::Version::FIRST;
        loop {
            let page = self
                .store
                .read_stream(
                    &stream,
                    VersionRange::new(from, annals_core::Version::MAX),
                    Direction::Forward,
                    PAGE,
                )
                .await?;
            for e in &page {
                match e.event_type.as_str() {
                    "MessageParked" => {
                        let p: ParkedMessage = e.decode()?;
                        out.insert(p.id.clone(), p);
                    }
                    "ParkedMessageRemoved" => {
                        let r: Removed = e.decode()?;
                        out.remove(&r.id);
                    }
                    _ => {}
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => from = last.version.next(),
                _ => return Ok(out),
            }
        }
    }
}

impl<S: EventStore> MessageDeadLetters for StoreDeadLetters<S> {
    async fn park(&self, parked: &ParkedMessage) -> Result<(), BrokerError> {
        let data = EventData::json("MessageParked", parked)?;
        self.store
            .append(
                &Self::stream(&parked.inbox)?,
                ExpectedVersion::Any,
                vec![data],
            )
            .await?;
        Ok(())
    }

    async fn list(&self, inbox: &str) -> Result<Vec<ParkedMessage>, BrokerError> {
        let mut v: Vec<_> = self.current(inbox).await?.into_values().collect();
        v.sort_by_key(|p| p.parked_at);
        Ok(v)
    }

    async fn remove(&self, inbox: &str, id: &str) -> Result<bool, BrokerError> {
        if !self.current(inbox).await?.contains_key(id) {
            return Ok(false);
        }
        let data = EventData::json("ParkedMessageRemoved", &Removed { id: id.to_owned() })?;
        self.store
            .append(&Self::stream(inbox)?, ExpectedVersion::Any, vec![data])
            .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn cycle<D: MessageDeadLetters>(d: D) {
        let p = |id: &str| {
            ParkedMessage::new(
                "billing",
                id,
                "orders.order.order-1",
                Headers::new(),
                vec![1],
                "boom",
            )
        };
        d.park(&p("a")).await.unwrap();
        d.park(&p("b").with_attempts(3)).await.unwrap();
        d.park(&p("a").with_attempts(2)).await.unwrap(); // replaces
        let list = d.list("billing").await.unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list.iter().find(|p| p.id == "a").unwrap().attempts, 2);
        assert!(d.list("other").await.unwrap().is_empty());
        assert!(d.remove("billing", "a").await.unwrap());
        assert!(!d.remove("billing", "a").await.unwrap());
        assert_eq!(d.list("billing").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn dead_letters_in_memory_and_in_the_store() {
        cycle(MemDeadLetters::new()).await;
        let store = annals_store::MemStore::new();
        cycle(StoreDeadLetters::new(store.clone())).await;
        // Durable where the store is: a new handle sees the same list.
        assert_eq!(
            StoreDeadLetters::new(store)
                .list("billing")
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
