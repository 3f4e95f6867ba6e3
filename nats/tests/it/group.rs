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

/// Leases whose renewals hang while `stall` is set: a member that cannot reach the lease
/// store for longer than a lease lives.
#[derive(Clone)]
struct StallingLeases {
    inner: NatsLeases,
    stall: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl annals_broker::group::Leases for StallingLeases {
    async fn acquire(&self, key: &str, holder: &str) -> Result<bool, annals_broker::BrokerError> {
        self.inner.acquire(key, holder).await
    }

    async fn renew(&self, key: &str, holder: &str) -> Result<bool, annals_broker::BrokerError> {
        if self.stall.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        self.inner.renew(key, holder).await
    }

    async fn release(&self, key: &str, holder: &str) -> Result<(), annals_broker::BrokerError> {
        self.inner.release(key, holder).await
    }

    fn ttl(&self) -> Option<Duration> {
        self.inner.ttl()
    }

    async fn held(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, annals_broker::BrokerError> {
        self.inner.held(prefix).await
    }
}

/// A recorder that takes 5 ms per event (as a handler writing to a database does).
#[derive(Clone)]
struct Slow(Recorder);

impl annals_broker::InboxHandler for Slow {
    async fn handle(
        &self,
        e: &annals_broker::IncomingEvent,
    ) -> Result<(), annals_broker::HandleError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        annals_broker::InboxHandler::handle(&self.0, e).await
    }
}

/// A member whose lease renewals stall past the leases' time to live stops working its
/// partitions before the other member takes them (the fence), so that the two never
/// consume one partition at once: order per stream holds while events keep coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_member_stops_before_its_partitions_move() {
    const BURSTS: usize = 20;
    use annals_broker::group::Leases as _;
    let client = client().await;
    let js = jetstream::new(client.clone());
    let prefix = format!("gstall-{}", std::process::id());
    let name = stream_name(&prefix);
    let bucket = format!("ANNALS_TEST_SLEASES_{}", std::process::id());
    let _ = js.delete_stream(&name).await;
    let _ = js.delete_key_value(&bucket).await;
    let store = MemStore::new();
    let relay = Relay::start(
        store.clone(),
        JetStreamPublisher::new(client.clone(), StreamSettings::for_prefix(&name, &prefix)),
        MemCheckpoints::new(),
        RelayConfig::new("gstall", "test", &prefix).partitions(4),
    );
    let head = fill(&store, "st", 20, 100).await;
    relay.wait_for(head, Duration::from_secs(30)).await.unwrap();
    let recorder = Recorder::default();
    let stall = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let member = |id: &str, stall: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>| {
        let client = client.clone();
        let recorder = recorder.clone();
        let (prefix, name, bucket, id) =
            (prefix.clone(), name.clone(), bucket.clone(), id.to_owned());
        async move {
            let inner = NatsLeases::open(client.clone(), &bucket, Duration::from_millis(1500))
                .await
                .unwrap();
            assert_eq!(inner.ttl(), Some(Duration::from_millis(1500)));
            let leases = StallingLeases {
                inner,
                stall: stall.unwrap_or_default(),
            };
            InboxGroup::start(
                JetStreamPartitions::new(
                    client,
                    ConsumerSettings::new(&name, "stall").ack_wait(Duration::from_secs(2)),
                    &prefix,
                ),
                Slow(recorder),
                MemDeadLetters::new(),
                leases,
                InboxGroupConfig::new("stall", id, 4)
                    .renew_every(Duration::from_millis(200))
                    .inbox(InboxConfig::new("stall").fetch_wait(Duration::from_millis(100))),
            )
        }
    };
    let a = member("a", Some(stall.clone())).await;
    let b = member("b", None).await;
    a.wait_for_partitions(2, Duration::from_secs(20))
        .await
        .unwrap();
    b.wait_for_partitions(2, Duration::from_secs(20))
        .await
        .unwrap();
    // Events keep coming, in bursts of ten per stream, while A stalls and B takes A's
    // partitions.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut last = annals_core::Position::NONE;
            for _ in 0..BURSTS {
                last = fill(&store, "st", 20, 200).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            last
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stall.store(true, std::sync::atomic::Ordering::SeqCst);
    b.wait_for_partitions(4, Duration::from_secs(20))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stall.store(false, std::sync::atomic::Ordering::SeqCst);
    let head = writer.await.unwrap();
    relay.wait_for(head, Duration::from_secs(30)).await.unwrap();
    wait_handled(&recorder, 100 + BURSTS * 200).await;
    check_order(&recorder);
    assert_eq!(handled(&recorder), 100 + BURSTS * 200, "each event once");
    a.shutdown().await;
    b.shutdown().await;
    relay.shutdown().await;
    let _ = js.delete_stream(&name).await;
    let _ = js.delete_key_value(&bucket).await;
}
