//! The broker conformance suite on JetStream, over the in-memory store and the sled store.

use annals_broker_conformance as suite;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_nak_mode_redelivers() {
    suite::inbox_nak_mode_redelivers(JetStream::local().await, MemStore::new()).await;
}

/// The same suite over the PostgreSQL store (the relay and inbox reach stores only through
/// the core trait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_and_relay_over_postgres() {
    let schema = format!("annals_nats_{}", std::process::id());
    let config = annals_postgres::PgConfig::new(
        "host=127.0.0.1 port=5432 user=postgres dbname=test",
        &schema,
    );
    let store = annals_postgres::PgStore::open(config.clone())
        .await
        .unwrap();
    store.drop_schema().await.unwrap();
    let store = annals_postgres::PgStore::open(config).await.unwrap();
    suite::inbox_handles_in_order_and_parks_poison_under(
        JetStream::local().await,
        store.clone(),
        "conf-pg",
    )
    .await;
    store.drop_schema().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_stopped_mid_fetch_hands_messages_back() {
    suite::inbox_stopped_mid_fetch_hands_messages_back(JetStream::local().await, MemStore::new())
        .await;
}

/// On a server of the test's own, killed and restarted mid-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_and_inbox_ride_out_an_outage() {
    let Some(h) = JetStream::own_server().await else {
        eprintln!("skipped: nats-server is not installed");
        return;
    };
    suite::relay_and_inbox_ride_out_an_outage(h, MemStore::new()).await;
}
