//! An inbox group over processes: two child processes share the partitions of a partitioned
//! relay; one is SIGKILLed mid-work and the other takes its partitions once their leases
//! expire. Every event is handled once (the handler is idempotent by event id) and, per
//! stream, in order across the hand-over — checked in one PostgreSQL table whose sequence
//! orders what both processes did.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use annals_broker::{
    HandleError, InboxConfig, InboxGroup, InboxGroupConfig, InboxHandler, IncomingEvent,
    MemCheckpoints, MemDeadLetters, Relay, RelayConfig,
};
use annals_broker_conformance::fill;
use annals_core::EventStore;
use annals_nats::async_nats::jetstream;
use annals_nats::{
    ConsumerSettings, JetStreamPartitions, JetStreamPublisher, NatsLeases, StreamSettings,
};
use annals_store::MemStore;

use crate::harness::{client, stream_name};

const PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
const VAR: &str = "ANNALS_GROUP_CHILD";

/// Records each event once, in the order handled, with the process that handled it.
struct Record {
    client: tokio_postgres::Client,
    table: String,
}

impl InboxHandler for Record {
    async fn handle(&self, e: &IncomingEvent) -> Result<(), HandleError> {
        self.client
            .execute(
                &format!(
                    "INSERT INTO {} (id, stream, version, pid) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO NOTHING",
                    self.table
                ),
                &[
                    &e.id.as_uuid().to_string(),
                    &e.stream.as_str(),
                    &(e.version.0 as i64),
                    &(std::process::id() as i32),
                ],
            )
            .await
            .map_err(HandleError::retry)?;
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(())
    }
}

/// `ANNALS_GROUP_CHILD=<stream>,<prefix>,<bucket>,<table>,<member>`: runs a member until
/// killed.
#[test]
fn group_member_child() {
    let Ok(spec) = std::env::var(VAR) else {
        return;
    };
    let parts: Vec<String> = spec.split(',').map(str::to_owned).collect();
    let [stream, prefix, bucket, table, member] = parts.as_slice() else {
        panic!("bad {VAR}: {spec}");
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let (pg, conn) = tokio_postgres::connect(PG, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let client = client().await;
        let leases = NatsLeases::open(client.clone(), bucket, Duration::from_millis(1500))
            .await
            .unwrap();
        let group = InboxGroup::start(
            JetStreamPartitions::new(
                client,
                ConsumerSettings::new(stream, "ledger").ack_wait(Duration::from_secs(2)),
                prefix,
            ),
            Record {
                client: pg,
                table: table.clone(),
            },
            MemDeadLetters::new(),
            leases,
            InboxGroupConfig::new("ledger", member, 4)
                .renew_every(Duration::from_millis(200))
                .inbox(InboxConfig::new("ledger").fetch_wait(Duration::from_millis(100))),
        );
        println!("STARTED");
        tokio::time::sleep(Duration::from_secs(120)).await;
        group.shutdown().await;
    });
}

fn spawn(spec: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "group_procs::group_member_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(VAR, spec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_partitions_and_survive_a_kill() {
    let pid = std::process::id();
    let client = client().await;
    let js = jetstream::new(client.clone());
    let prefix = format!("gproc-{pid}");
    let name = stream_name(&prefix);
    let bucket = format!("ANNALS_TEST_GLEASES_{pid}");
    let table = format!("annals_group_seen_{pid}");
    let _ = js.delete_stream(&name).await;
    let _ = js.delete_key_value(&bucket).await;
    let (pg, conn) = tokio_postgres::connect(PG, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    pg.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (seq BIGSERIAL PRIMARY KEY, id TEXT UNIQUE NOT NULL,
           stream TEXT NOT NULL, version BIGINT NOT NULL, pid INT NOT NULL)"
    ))
    .await
    .unwrap();
    let store = MemStore::new();
    let relay = Relay::start(
        store.clone(),
        JetStreamPublisher::new(client.clone(), StreamSettings::for_prefix(&name, &prefix)),
        MemCheckpoints::new(),
        RelayConfig::new("gproc", "test", &prefix).partitions(4),
    );
    // The stream must exist before the members open their consumers.
    let first = fill(&store, "ledger", 20, 200).await;
    relay
        .wait_for(first, Duration::from_secs(30))
        .await
        .unwrap();
    let spec = |m: &str| format!("{name},{prefix},{bucket},{table},{m}");
    let mut a = spawn(&spec("a"));
    let mut b = spawn(&spec("b"));
    async fn count(pg: &tokio_postgres::Client, q: String) -> i64 {
        pg.query_one(&q, &[]).await.unwrap().get::<_, i64>(0)
    }
    // Both at work, then A dies mid-work.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pids = count(&pg, format!("SELECT count(DISTINCT pid) FROM {table}")).await;
        if pids == 2 {
            break;
        }
        fill(&store, "ledger", 20, 20).await;
        assert!(Instant::now() < deadline, "both members never worked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    let head = fill(&store, "ledger", 20, 300).await;
    relay.wait_for(head, Duration::from_secs(30)).await.unwrap();
    let total = store
        .read_all(annals_core::Position::NONE, usize::MAX)
        .await
        .unwrap()
        .len() as i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&pg, format!("SELECT count(*) FROM {table}")).await < total {
        assert!(
            Instant::now() < deadline,
            "not every event was handled after the kill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.kill().unwrap();
    b.wait().unwrap();
    relay.shutdown().await;
    // Per stream, the versions in the order both processes recorded them.
    let rows = pg
        .query(
            &format!("SELECT stream, version, pid FROM {table} ORDER BY seq"),
            &[],
        )
        .await
        .unwrap();
    let mut last: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut pids = std::collections::HashSet::new();
    for r in &rows {
        let (stream, version, p): (String, i64, i32) = (r.get(0), r.get(1), r.get(2));
        pids.insert(p);
        let prev = last.insert(stream.clone(), version).unwrap_or(0);
        assert!(version > prev, "{stream}: version {version} after {prev}");
    }
    assert_eq!(rows.len() as i64, total, "each event once");
    assert_eq!(pids.len(), 2, "both processes handled events");
    pg.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    let _ = js.delete_stream(&name).await;
    let _ = js.delete_key_value(&bucket).await;
}
