//! Inboxes that scale out: two members of an inbox group share four partitions of a
//! partitioned relay, each stream's messages handled once and in order; when one member
//! leaves, the other takes its partitions and goes on, order kept.

use std::time::{Duration, Instant};

use annals_broker::{
    InboxConfig, InboxGroup, InboxGroupConfig, MemCheckpoints, MemDeadLetters, Relay, RelayConfig,
};
use annals_broker_conformance::{Recorder, fill};
use annals_nats::async_nats::jetstream;
use annals_nats::{
    ConsumerSettings, JetStreamPartitions, JetStreamPublisher, NatsLeases, StreamSettings,
};
use annals_store::MemStore;

use crate::harness::{client, stream_name};

fn handled(r: &Recorder) -> usize {
    r.handled.lock().unwrap().values().map(Vec::len).sum()
}

async fn wait_handled(r: &Recorder, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while handled(r) < n {
        assert!(Instant::now() < deadline, "handled {} of {n}", handled(r));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn check_order(r: &Recorder) {
    for (stream, versions) in r.handled.lock().unwrap().iter() {
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{stream} in order: {versions:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_share_partitions_and_hand_over() {
    let client = client().await;
    let js = jetstream::new(client.clone());
    let prefix = format!("group-{}", std::process::id());
    let name = stream_name(&prefix);
    let bucket = format!("ANNALS_TEST_LEASES_{}", std::process::id());
    let _ = js.delete_stream(&name).await;
    let _ = js.delete_key_value(&bucket).await;
    let store = MemStore::new();
    let relay = Relay::start(
        store.clone(),
        JetStreamPublisher::new(client.clone(), StreamSettings::for_prefix(&name, &prefix)),
        MemCheckpoints::new(),
        RelayConfig::new("group", "test", &prefix).partitions(4),
    );
    let head = fill(&store, "acct", 20, 400).await;
    relay.wait_for(head, Duration::from_secs(30)).await.unwrap();

    let recorder = Recorder::default();
    let member = |id: &str| {
        let client = client.clone();
        let recorder = recorder.clone();
        let (prefix, name, bucket, id) =
            (prefix.clone(), name.clone(), bucket.clone(), id.to_owned());
        async move {
            let leases = NatsLeases::open(client.clone(), &bucket, Duration::from_millis(1500))
                .await
                .unwrap();
            let partitions = JetStreamPartitions::new(
                client,
                ConsumerSettings::new(&name, "billing").ack_wait(Duration::from_secs(2)),
                &prefix,
            );
            InboxGroup::start(
                partitions,
                recorder,
                MemDeadLetters::new(),
                leases,
                InboxGroupConfig::new("billing", id, 4)
                    .renew_every(Duration::from_millis(200))
                    .inbox(InboxConfig::new("billing").fetch_wait(Duration::from_millis(100))),
            )
        }
    };
    let a = member("a").await;
    let b = member("b").await;
    a.wait_for_partitions(2, Duration::from_secs(20))
        .await
        .unwrap();
    b.wait_for_partitions(2, Duration::from_secs(20))
        .await
        .unwrap();
    wait_handled(&recorder, 400).await;
    check_order(&recorder);
    // Statuses refresh with each lease check.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (sa, sb) = loop {
        let (sa, sb) = (a.status(), b.status());
        if (sa.handled > 0 && sb.handled > 0) || Instant::now() > deadline {
            break (sa, sb);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        sa.handled > 0 && sb.handled > 0,
        "both did work: {sa:?} {sb:?}"
    );
    let mut all: Vec<u32> = sa
        .partitions
        .iter()
        .chain(&sb.partitions)
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(all, vec![0, 1, 2, 3], "each partition run by one member");

    // A leaves; B takes everything and goes on.
    a.shutdown().await;
    b.wait_for_partitions(4, Duration::from_secs(20))
        .await
        .unwrap();
    let head = fill(&store, "acct", 20, 200).await;
    relay.wait_for(head, Duration::from_secs(30)).await.unwrap();
    wait_handled(&recorder, 600).await;
    check_order(&recorder);
    assert_eq!(handled(&recorder), 600, "each event once");
    b.shutdown().await;
    relay.shutdown().await;
    let _ = js.delete_stream(&name).await;
    let _ = js.delete_key_value(&bucket).await;
}
