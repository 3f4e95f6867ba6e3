//! JetStream specifics of the relay: a stream with incompatible settings is a typed error at
//! start.

use std::time::Duration;

use annals_broker::{BrokerError, MemCheckpoints, Publisher, Relay, RelayConfig, RelayState};
use annals_nats::async_nats::jetstream;
use annals_nats::{JetStreamPublisher, StreamSettings};
use annals_store::MemStore;

use crate::harness::{client, stream_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_stream_is_a_typed_error() {
    let client = client().await;
    let js = jetstream::new(client.clone());
    let prefix = "incompatible";
    let name = stream_name(prefix);
    let _ = js.delete_stream(&name).await;
    js.create_stream(jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("{prefix}.>")],
        duplicate_window: Duration::from_secs(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let publisher = JetStreamPublisher::new(client, StreamSettings::for_prefix(&name, prefix));
    match publisher.prepare().await {
        Err(BrokerError::Incompatible { name: n, reason }) => {
            assert_eq!(n, name);
            assert!(reason.contains("duplicate window"), "{reason}");
        }
        other => panic!("expected Incompatible, got {other:?}"),
    }
    let relay = Relay::start(
        MemStore::new(),
        publisher,
        MemCheckpoints::new(),
        RelayConfig::new("incompatible", "test", prefix),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !matches!(relay.status().state, RelayState::Failed { .. }) {
        assert!(std::time::Instant::now() < deadline, "{:?}", relay.status());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    relay.shutdown().await;
    js.delete_stream(&name).await.unwrap();
}
