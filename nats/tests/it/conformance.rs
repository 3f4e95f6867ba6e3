//! The broker conformance suite on JetStream, over the in-memory store and the sled store.

use annals_broker::conformance as suite;
use annals_store::{MemStore, SledStore};

use crate::harness::JetStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_every_event_once() {
    suite::relay_publishes_every_event_once(JetStream::local().await, MemStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_every_event_once_from_sled() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    // Its own prefix: the suite's is taken by the test above.
    suite::republish_is_deduplicated(JetStream::local().await, store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_handles_in_order_and_parks_poison() {
    suite::inbox_handles_in_order_and_parks_poison(JetStream::local().await, MemStore::new()).await;
}
