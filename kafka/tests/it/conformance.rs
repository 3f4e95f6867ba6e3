//! The broker conformance suite on Kafka (librdkafka's mock cluster).

use annals_broker_conformance as suite;
use annals_store::{MemStore, SledStore};

use crate::harness::Kafka;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_every_event_once() {
    suite::relay_publishes_every_event_once(Kafka::local(), MemStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republished_events_arrive_again_in_order_from_sled() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    suite::republish_is_deduplicated(Kafka::local(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_handles_in_order_and_parks_poison() {
    suite::inbox_handles_in_order_and_parks_poison(Kafka::local(), MemStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_nak_mode_redelivers() {
    suite::inbox_nak_mode_redelivers(Kafka::local(), MemStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_stopped_mid_fetch_hands_messages_back() {
    suite::inbox_stopped_mid_fetch_hands_messages_back(Kafka::local(), MemStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_and_inbox_ride_out_an_outage() {
    // A cluster of its own: taking the brokers down must not take them from other tests.
    suite::relay_and_inbox_ride_out_an_outage(Kafka::own_cluster(), MemStore::new()).await;
}
