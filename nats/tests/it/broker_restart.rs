//! The broker killed and restarted mid-relay: nothing is lost, order is kept, and the relay
//! goes on by itself.

use std::time::Duration;

use annals_broker::{MemCheckpoints, Relay, RelayConfig};
use annals_broker_conformance::{check_exactly_once_in_order, fill};
use annals_core::{EventStore, Position};
use annals_nats::{JetStreamPublisher, StreamSettings, async_nats};
use annals_store::MemStore;

use crate::harness::stored;
use crate::server::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_and_restarted_mid_relay() {
    let Some(mut server) = NatsServer::start() else {
        eprintln!("skipped: nats-server is not installed");
        return;
    };
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(server.url())
        .await
        .unwrap();
    let store = MemStore::new();
    let prefix = "restart";
    let publisher = JetStreamPublisher::new(
        client.clone(),
        StreamSettings::for_prefix("RESTART", prefix),
    );
    let config = RelayConfig::new("restart", "test", prefix)
        .max_in_flight(64)
        .backoff(Duration::from_millis(20), Duration::from_millis(200));
    let relay = Relay::start(store.clone(), publisher, MemCheckpoints::new(), config);
    // Events keep coming while the broker goes down and comes back.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for round in 0..20 {
                fill(&store, &format!("r{round}"), 5, 100).await;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    relay
        .wait_for(Position(300), Duration::from_secs(30))
        .await
        .unwrap();
    server.kill();
    // Written while the broker is down: they cannot be acknowledged.
    let outage_head = fill(&store, "outage", 5, 100).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = relay.status();
    server.restart();
    writer.await.unwrap();
    let head = store.head_position();
    relay.wait_for(head, Duration::from_secs(60)).await.unwrap();
    let after = relay.status();
    relay.shutdown().await;
    assert!(
        during.acked < outage_head && during.lag > 0,
        "nothing written during the outage counts as published: {during:?}"
    );
    assert_eq!(after.acked, head);
    let events = store.read_all(Position::NONE, usize::MAX).await.unwrap();
    check_exactly_once_in_order(&events, &stored(&client, "RESTART").await);
}
