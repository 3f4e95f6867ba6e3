//! The broker conformance suite on RabbitMQ, over the in-memory store and the sled store.

use annals_broker_conformance as suite;
use annals_store::{MemStore, SledStore};

use crate::harness::Rabbit;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_every_event_once() {
    suite::relay_publishes_every_event_once(Rabbit::local(), MemStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republished_events_arrive_again_in_order_from_sled() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    suite::republish_is_deduplicated(Rabbit::local(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_handles_in_order_and_parks_poison() {
    suite::inbox_handles_in_order_and_parks_poison(Rabbit::local(), MemStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_nak_mode_redelivers() {
    suite::inbox_nak_mode_redelivers(Rabbit::local(), MemStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_stopped_mid_fetch_hands_messages_back() {
    suite::inbox_stopped_mid_fetch_hands_messages_back(Rabbit::local(), MemStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_and_inbox_ride_out_an_outage() {
    suite::relay_and_inbox_ride_out_an_outage(Rabbit::behind_a_proxy(), MemStore::new()).await;
}
