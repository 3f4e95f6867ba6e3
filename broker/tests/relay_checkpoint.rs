//! The relay's checkpoint never passes an event that was not acknowledged: the relay on a
//! broker that acknowledges at once, checked at every checkpoint save.
//!
//! Regression (found by the RabbitMQ relay crash test): with nothing in flight, the relay
//! moved its acknowledged position to the subscription's read position, past events the
//! subscription had read ahead but not handed out yet; a crash after that checkpoint lost
//! them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals_broker::{
    BrokerError, OutgoingMessage, Publisher, Relay, RelayCheckpoints, RelayConfig, cloudevents,
};
use annals_core::{EventData, EventStore, ExpectedVersion, Position, StreamId};
use annals_store::MemStore;

/// Acknowledges every message at once, remembering its position.
#[derive(Clone, Default)]
struct Instant {
    published: Arc<Mutex<BTreeSet<u64>>>,
}

impl Publisher for Instant {
    type Ack = std::future::Ready<Result<(), BrokerError>>;

    async fn prepare(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn publish(&self, message: OutgoingMessage) -> Result<Self::Ack, BrokerError> {
        let position: u64 = message.headers[cloudevents::POSITION].parse().unwrap();
        self.published.lock().unwrap().insert(position);
        Ok(std::future::ready(Ok(())))
    }
}

/// Checks, at each save, that every position up to the checkpoint was published.
#[derive(Clone)]
struct Watching {
    published: Arc<Mutex<BTreeSet<u64>>>,
    saves: Arc<Mutex<u64>>,
    violations: Arc<Mutex<Vec<String>>>,
}

impl RelayCheckpoints for Watching {
    async fn load(&self, _: &str) -> Result<Position, BrokerError> {
        Ok(Position::NONE)
    }

    async fn save(&self, _: &str, position: Position) -> Result<(), BrokerError> {
        *self.saves.lock().unwrap() += 1;
        let published = self.published.lock().unwrap();
        if let Some(missing) = (1..=position.0).find(|p| !published.contains(p)) {
            self.violations.lock().unwrap().push(format!(
                "checkpoint {} saved before {missing} was published",
                position.0
            ));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_never_passes_an_unacknowledged_event() {
    let store = MemStore::new();
    let mut head = Position::NONE;
    for i in 0..3000 {
        let stream = StreamId::new(format!("s-{}", i % 7)).unwrap();
        head = store
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![EventData::json("E", &i).unwrap()],
            )
            .await
            .unwrap()
            .last_position;
    }
    let publisher = Instant::default();
    let checkpoints = Watching {
        published: Arc::clone(&publisher.published),
        saves: Arc::default(),
        violations: Arc::default(),
    };
    let relay = Relay::start(
        store,
        publisher.clone(),
        checkpoints.clone(),
        RelayConfig::new("watch", "test", "t")
            .max_in_flight(1)
            .checkpoint_every(Duration::ZERO),
    );
    relay.wait_for(head, Duration::from_secs(60)).await.unwrap();
    relay.shutdown().await;
    let violations = checkpoints.violations.lock().unwrap();
    assert!(
        violations.is_empty(),
        "{} of {} saves: {:?}",
        violations.len(),
        checkpoints.saves.lock().unwrap(),
        &violations[..violations.len().min(3)]
    );
    assert_eq!(publisher.published.lock().unwrap().len(), 3000);
}
