//! The benchmark workloads (W1–W5, soak; defined in BENCHMARKS.md), each printing one JSON line per run.
//!
//! ```text
//! cargo bench --bench workloads -- w5 [--concurrency C] [--batch B] [--system annals-sled|sled-floor] [--events N]
//! ```
//!
//! Without `--system`, W5 runs `sled-floor` and `annals-sled` back to back in one process and
//! reports the ratio; without `--concurrency`/`--batch` it runs C ∈ {1, 8, 64} × B ∈ {1, 100}.
//!
//! ```text
//! cargo bench --bench workloads -- soak [--minutes M] [--projections all|kv|none]
//! ```
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

/// mimalloc: glibc's per-thread arenas fragment under this mix of threads (tokio workers,
/// sled, tantivy's indexer), and a long run's RSS then mostly measures fragmentation
/// (BENCHMARKS.md, soak). Applications choose their allocator; this is the benchmark's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use annals::prelude::*;
use annals::store::format;

use annals_example_domain::bank as domain;

use domain::{Account, AccountCommand, AccountEvent};

use annals_example_domain::tickets;

struct Args {
    workload: String,
    concurrency: Option<usize>,
    batch: Option<usize>,
    system: Option<String>,
    events: Option<usize>,
    repeat: usize,
    commands: Option<usize>,
    minutes: f64,
    /// Soak: which projections run (`all`, `kv`, `none`).
    projections: String,
    /// sled-memory: keys spread over the key space instead of in order.
    spread: bool,
    /// W1: run with the repository's aggregate cache off (every command loads from the store).
    no_cache: bool,
    /// W1: the repository's snapshot policy (0: none).
    snapshot_every: u64,
    /// Soak: cycle over this many tickets (rounded up to a multiple of 8) instead of opening
    /// a new one for every round.
    streams: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        workload: String::new(),
        concurrency: None,
        batch: None,
        system: None,
        events: None,
        repeat: 1,
        commands: None,
        minutes: 1.0,
        projections: "all".into(),
        spread: false,
        no_cache: false,
        snapshot_every: 0,
        streams: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--bench" => {}
            "--concurrency" | "-c" => {
                args.concurrency = Some(
                    value("--concurrency")?
                        .parse()
                        .map_err(|e| format!("--concurrency: {e}"))?,
                )
            }
            "--batch" | "-b" => {
                args.batch = Some(
                    value("--batch")?
                        .parse()
                        .map_err(|e| format!("--batch: {e}"))?,
                )
            }
            "--events" => {
                args.events = Some(
                    value("--events")?
                        .parse()
                        .map_err(|e| format!("--events: {e}"))?,
                )
            }
            "--system" => args.system = Some(value("--system")?),
            "--projections" => args.projections = value("--projections")?,
            "--spread" => args.spread = true,
            "--no-cache" => args.no_cache = true,
            "--snapshot-every" => {
                args.snapshot_every = value("--snapshot-every")?
                    .parse()
                    .map_err(|e| format!("--snapshot-every: {e}"))?
            }
            "--streams" => {
                args.streams = Some(
                    value("--streams")?
                        .parse()
                        .map_err(|e| format!("--streams: {e}"))?,
                )
            }
            "--minutes" => {
                args.minutes = value("--minutes")?
                    .parse()
                    .map_err(|e| format!("--minutes: {e}"))?
            }
            "--commands" => {
                args.commands = Some(
                    value("--commands")?
                        .parse()
                        .map_err(|e| format!("--commands: {e}"))?,
                )
            }
            "--repeat" => {
                args.repeat = value("--repeat")?
                    .parse()
                    .map_err(|e| format!("--repeat: {e}"))?
            }
            w if !w.starts_with('-') && args.workload.is_empty() => args.workload = w.to_string(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[path = "workloads/brokers.rs"]
mod brokers;
#[path = "workloads/saga.rs"]
mod saga;

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match args.workload.as_str() {
        "w5" | "" => rt.block_on(w5(&args)),
        "w1" => rt.block_on(w1(&args)),
        "w2" => rt.block_on(w2(&args)),
        "w3" => rt.block_on(w3(&args)),
        "w4" => rt.block_on(w4(&args)),
        "soak" => rt.block_on(soak(&args)),
        "sled-memory" => sled_memory(&args),
        "relay" => rt.block_on(brokers::relay(&args)),
        "e2e" => rt.block_on(brokers::e2e(&args)),
        "saga" => rt.block_on(saga::saga(&args)),
        other => {
            eprintln!(
                "unknown workload {other:?}; known: w1, w2, w3, w4, w5, soak, sled-memory, relay, e2e"
            );
            std::process::exit(2);
        }
    }
}

/// A realistic ~150-byte event.
fn event(task: usize, i: usize) -> EventData {
    #[derive(serde::Serialize)]
    struct Deposited {
        account: String,
        amount: u64,
        reference: String,
    }
    EventData::encode(
        "Deposited",
        &Deposited {
            account: format!("account-{task}"),
            amount: i as u64,
            reference: format!("transfer reference {i:08} from the bench"),
        },
    )
    .unwrap()
}

fn line(system: &str, workload: &str, ops: usize, secs: f64, extra: &str) {
    println!(
        "{{\"system\":\"{system}\",\"workload\":\"{workload}\",\"ops\":{ops},\"secs\":{secs:.3},\"ops_per_sec\":{:.0}{extra}}}",
        ops as f64 / secs
    );
}

async fn w5(args: &Args) {
    let cs = args.concurrency.map_or(vec![1, 8, 64], |c| vec![c]);
    let bs = args.batch.map_or(vec![1, 100], |b| vec![b]);
    for &b in &bs {
        for &c in &cs {
            let events = args.events.unwrap_or(if b == 1 {
                (3000 * c).min(60_000)
            } else {
                200_000
            });
            let per_task = (events / c / b).max(1);
            let total = per_task * c * b;
            let extra = format!(",\"concurrency\":{c},\"batch\":{b}");
            // Runs alternate floor and annals so both see the same machine weather; the
            // summary line has the medians and the median of the per-run ratios.
            let (mut floors, mut ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..args.repeat.max(1) {
                let mut floor = None;
                if args.system.as_deref().is_none_or(|s| s == "sled-floor") {
                    let secs = sled_floor(c, b, per_task).await;
                    line("sled-floor", "w5", total, secs, &extra);
                    floor = Some(total as f64 / secs);
                    floors.push(total as f64 / secs);
                }
                if args.system.as_deref() == Some("annals-postgres") {
                    let secs = annals_postgres(c, b, per_task).await;
                    line("annals-postgres", "w5", total, secs, &extra);
                }
                if args.system.as_deref().is_none_or(|s| s == "annals-sled") {
                    let secs = annals_sled(c, b, per_task).await;
                    let rate = total as f64 / secs;
                    ours.push(rate);
                    let ratio = floor.map_or(String::new(), |f| {
                        ratios.push(rate / f);
                        format!(",\"ratio_to_floor\":{:.2}", rate / f)
                    });
                    line("annals-sled", "w5", total, secs, &format!("{extra}{ratio}"));
                }
            }
            if args.repeat > 1 {
                println!(
                    "{{\"summary\":\"w5\",\"concurrency\":{c},\"batch\":{b},\"runs\":{},\"median_floor\":{:.0},\"median_annals\":{:.0},\"median_ratio\":{:.2}}}",
                    args.repeat,
                    median(&mut floors),
                    median(&mut ours),
                    median(&mut ratios)
                );
            }
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn annals_sled(c: usize, b: usize, per_task: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    append_tasks(store, c, b, per_task).await
}

/// The PostgreSQL store in a fresh schema of the local server (dropped afterwards).
async fn postgres_store(tag: &str) -> annals_postgres::PgStore {
    let schema = format!("annals_bench_{tag}_{}", std::process::id());
    let config = annals_postgres::PgConfig::new(PG, &schema);
    let store = annals_postgres::PgStore::open(config.clone())
        .await
        .unwrap();
    store.drop_schema().await.unwrap();
    annals_postgres::PgStore::open(config).await.unwrap()
}

const PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

async fn annals_postgres(c: usize, b: usize, per_task: usize) -> f64 {
    let store = postgres_store("w5").await;
    let secs = append_tasks(store.clone(), c, b, per_task).await;
    store.drop_schema().await.unwrap();
    secs
}

/// C tasks, each appending `per_task` batches of B events to its own stream with `Exact(v)`.
async fn append_tasks<S: EventStore>(store: S, c: usize, b: usize, per_task: usize) -> f64 {
    let batches: Vec<Vec<Vec<EventData>>> = (0..c)
        .map(|t| {
            (0..per_task)
                .map(|i| (0..b).map(|j| event(t, i * b + j)).collect())
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (t, mine) in batches.into_iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new(format!("account-{t}")).unwrap();
            let mut v = 0;
            for batch in mine {
                let r = store
                    .append(&stream, ExpectedVersion::Exact(Version(v)), batch)
                    .await
                    .unwrap();
                v = r.last_version.0;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed().as_secs_f64()
}

type FloorReq = (Vec<Vec<u8>>, tokio::sync::oneshot::Sender<()>);

/// The least any sled layout can do under durable acks: one key per event holding its
/// encoded record, every queued batch in one `apply_batch` + `flush` + `fdatasync`.
async fn sled_floor(c: usize, b: usize, per_task: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .flush_every_ms(None)
        .open()
        .unwrap();
    let file = File::open(dir.path().join("db")).unwrap();
    let (tx, rx) = flume::bounded::<FloorReq>(4096);
    let writer = std::thread::spawn(move || floor_writer(&db, &file, &rx));
    let stream = StreamId::new("account-0").unwrap();
    let batches: Vec<Vec<Vec<Vec<u8>>>> = (0..c)
        .map(|t| {
            (0..per_task)
                .map(|i| (0..b).map(|j| record(&stream, t, i * b + j)).collect())
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mine in batches {
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            for batch in mine {
                let (reply, done) = tokio::sync::oneshot::channel();
                tx.send_async((batch, reply)).await.unwrap();
                done.await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    drop(tx);
    writer.join().unwrap();
    let _ = Path::new(dir.path());
    secs
}

fn record(stream: &StreamId, t: usize, i: usize) -> Vec<u8> {
    let e = event(t, i);
    let r = RecordedEvent::new(
        Position(i as u64 + 1),
        stream.clone(),
        Version(i as u64 + 1),
        Timestamp::now(),
        EventData::new(e.id, e.event_type, 1, e.codec, e.metadata, e.payload),
    );
    let mut out = Vec::new();
    format::encode_record(&r, format::AppendMarks::of(0, 1), &mut out);
    out
}

fn floor_writer(db: &sled::Db, file: &File, rx: &flume::Receiver<FloorReq>) {
    let mut key = 0u64;
    let counter = Arc::new(());
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let mut batch = sled::Batch::default();
        for (records, _) in &mut group {
            for r in records.drain(..) {
                key += 1;
                batch.insert(&key.to_be_bytes(), r);
            }
        }
        db.apply_batch(batch).unwrap();
        db.flush().unwrap();
        file.sync_data().unwrap();
        for (_, reply) in group {
            let _ = reply.send(());
        }
    }
    drop(counter);
}

/// W1: open 10,000 accounts, then deposit round-robin through the full command path (load,
/// decide, append) with C concurrent tasks, durable acks. The `sled-floor` line is W5's
/// floor at B=1 and the same C, run in the same process for the ratio.
async fn w1(args: &Args) {
    let accounts = 10_000usize;
    let commands = args.commands.unwrap_or(100_000);
    for c in args.concurrency.map_or(vec![1, 8, 64], |c| vec![c]) {
        let floor_events = (3000 * c).min(60_000);
        let per_task = floor_events / c;
        let floor_secs = sled_floor(c, 1, per_task).await;
        let floor_rate = (per_task * c) as f64 / floor_secs;
        line(
            "sled-floor",
            "w5",
            per_task * c,
            floor_secs,
            &format!(",\"concurrency\":{c},\"batch\":1"),
        );

        if args.system.as_deref() == Some("annals-postgres") {
            let store = postgres_store("w1").await;
            let (secs, rate) = w1_commands(store.clone(), c, accounts, commands, args).await;
            store.drop_schema().await.unwrap();
            line(
                "annals-postgres",
                "w1",
                commands,
                secs,
                &format!(
                    ",\"concurrency\":{c},\"accounts\":{accounts},\"commands_per_sec\":{rate:.0},\"cache\":{}",
                    !args.no_cache
                ),
            );
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let (secs, rate) = w1_commands(store, c, accounts, commands, args).await;
        line(
            "annals-sled",
            "w1",
            commands,
            secs,
            &format!(
                ",\"concurrency\":{c},\"accounts\":{accounts},\"ratio_to_floor_b1\":{:.2},\"cache\":{},\"snapshot_every\":{}",
                rate / floor_rate,
                !args.no_cache,
                args.snapshot_every
            ),
        );
    }
}

/// Opens the accounts, then times the deposits; returns (secs, commands/s).
async fn w1_commands<S: EventStore + SnapshotStore>(
    store: S,
    c: usize,
    accounts: usize,
    commands: usize,
    args: &Args,
) -> (f64, f64) {
    {
        let cache = if args.no_cache { 0 } else { accounts * 2 };
        let repo = Repository::<Account, _>::new(store.clone())
            .cache_capacity(cache)
            .snapshot_every(args.snapshot_every);
        run_commands(&repo, c, accounts, |i| AccountCommand::Open {
            account: format!("{i}"),
            owner: "bench".into(),
        })
        .await;
        let started = Instant::now();
        run_commands(&repo, c, commands, |i| AccountCommand::Deposit {
            account: format!("{}", i % accounts),
            amount: 1 + i as u64 % 100,
        })
        .await;
        let secs = started.elapsed().as_secs_f64();
        (secs, commands as f64 / secs)
    }
}

async fn run_commands<S: EventStore + SnapshotStore>(
    repo: &Repository<Account, S>,
    c: usize,
    n: usize,
    make: impl Fn(usize) -> AccountCommand,
) {
    let commands: Vec<Vec<AccountCommand>> = (0..c)
        .map(|t| (t..n).step_by(c).map(&make).collect())
        .collect();
    let mut tasks = Vec::new();
    for mine in commands {
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            let ctx = CommandContext::new();
            for cmd in mine {
                repo.execute_command_with(&cmd, &ctx).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// W2: one account with 10,050 events; 100 full loads without a snapshot, and 100 with the
/// latest snapshot of an every-100-events policy (at version 10,000, 50 events behind).
/// `--system annals-postgres` runs it on the PostgreSQL store.
async fn w2(args: &Args) {
    if args.system.as_deref() == Some("annals-postgres") {
        let store = postgres_store("w2").await;
        w2_on(store.clone(), "annals-postgres").await;
        store.drop_schema().await.unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    w2_on(store, "annals-sled").await;
}

async fn w2_on<S: EventStore + SnapshotStore>(store: S, system: &str) {
    let stream = StreamId::new("account-w2").unwrap();
    let mut version = Version::NONE;
    let append = |events: Vec<AccountEvent>| {
        let store = store.clone();
        let stream = stream.clone();
        async move {
            let data = events.iter().map(|e| e.to_event_data().unwrap()).collect();
            store
                .append(&stream, ExpectedVersion::Any, data)
                .await
                .unwrap()
        }
    };
    append(vec![AccountEvent::Opened {
        owner: "bench".into(),
    }])
    .await;
    for b in 0..100u64 {
        let n = if b == 99 { 99 } else { 100 };
        version = append(
            (0..n)
                .map(|i| AccountEvent::Deposited { amount: i + 1 })
                .collect(),
        )
        .await
        .last_version;
    }
    assert_eq!(version, Version(10_000));
    append(
        (0..50)
            .map(|i| AccountEvent::Deposited { amount: i + 1 })
            .collect(),
    )
    .await;

    // No snapshot exists yet: full replays.
    let repo = Repository::<Account, _>::new(store.clone()).cache_capacity(0);
    let mut times = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let (state, v) = repo.load("w2").await.unwrap();
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(v, Version(10_050));
        assert!(state.balance > 0);
    }
    report_loads(system, "no-snapshot", &mut times);
    // The snapshot an every-100 policy leaves: at version 10,000, 50 events behind.
    let (at, v) = repo.load_at("w2", Version(10_000)).await.unwrap();
    let snapshot = annals::Snapshot::new(
        v,
        1,
        CodecId::BINCODE,
        CodecId::BINCODE.encode("account", &at).unwrap(),
        Timestamp::now(),
    );
    store.save_snapshot(&stream, snapshot).await.unwrap();
    let repo = repo.snapshot_every(100);
    let mut times = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let (_, v) = repo.load("w2").await.unwrap();
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(v, Version(10_050));
    }
    report_loads(system, "snapshot-every-100", &mut times);
}

fn report_loads(system: &str, variant: &str, times: &mut [f64]) {
    let total: f64 = times.iter().sum();
    let med = median(times);
    println!(
        "{{\"system\":\"{system}\",\"workload\":\"w2\",\"variant\":\"{variant}\",\"ops\":{},\"secs\":{total:.4},\"ops_per_sec\":{:.0},\"median_ms_per_load\":{:.4}}}",
        times.len(),
        times.len() as f64 / total,
        med * 1000.0
    );
}

/// W3: W1's events (10,000 `Opened`, then 100,000 `Deposited` round-robin, one append per
/// command) replayed in global order into an in-memory fold and into the KV read model.
async fn w3(args: &Args) {
    use annals::projections::{
        Decoded, HandlerError, KvEventProjector, KvProjection, KvReadModel, KvWriter, project_until,
    };
    use std::collections::HashMap;

    let accounts = 10_000usize;
    let commands = args.commands.unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    // Written like W1 at concurrency C (default 8): one append per command, so group
    // commits (and chunks) hold about C events.
    let c = args.concurrency.unwrap_or(8);
    let mut tasks = Vec::new();
    for t in 0..c {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..accounts).step_by(c) {
                let s = StreamId::new(format!("account-{i}")).unwrap();
                let e = AccountEvent::Opened {
                    owner: "bench".into(),
                }
                .to_event_data()
                .unwrap();
                store
                    .append(&s, ExpectedVersion::Any, vec![e])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks.drain(..) {
        t.await.unwrap();
    }
    for t in 0..c {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..commands).step_by(c) {
                let s = StreamId::new(format!("account-{}", i % accounts)).unwrap();
                let e = AccountEvent::Deposited {
                    amount: 1 + i as u64 % 100,
                }
                .to_event_data()
                .unwrap();
                store
                    .append(&s, ExpectedVersion::Any, vec![e])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = accounts + commands;
    assert_eq!(store.head_position(), Position(total as u64));

    for _ in 0..args.repeat.max(1) {
        let started = Instant::now();
        let mut balances: HashMap<StreamId, u64> = HashMap::with_capacity(accounts);
        let mut next = Position::FIRST;
        let mut n = 0usize;
        loop {
            let page = store.read_all(next, 4096).await.unwrap();
            let Some(last) = page.last() else { break };
            next = last.position.next();
            for e in &page {
                let event =
                    AccountEvent::decode_payload(&e.event_type, e.codec, &e.payload).unwrap();
                let b = balances.entry(e.stream.clone()).or_default();
                if let AccountEvent::Deposited { amount } = event {
                    *b += amount;
                }
                n += 1;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(n, total);
        line(
            "annals-sled",
            "w3",
            n,
            secs,
            ",\"target\":\"in-memory fold\"",
        );
    }

    struct Balances;
    impl KvEventProjector for Balances {
        type Event = AccountEvent;
        type Key = String;
        type Value = u64;
        fn name(&self) -> &str {
            "balances"
        }
        fn apply(
            &self,
            event: AccountEvent,
            e: &RecordedEvent,
            kv: &mut KvWriter<'_, String, u64>,
        ) -> Result<(), HandlerError> {
            let key = e.stream.to_string();
            let b = kv.get(&key)?.unwrap_or(0);
            let add = match event {
                AccountEvent::Deposited { amount } => amount,
                _ => 0,
            };
            Ok(kv.put(&key, &(b + add))?)
        }
    }
    let rm_dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(rm_dir.path()).open().unwrap();
    let model = KvReadModel::<String, u64>::open(&db, "balances").unwrap();
    let mut projection = KvProjection::new(Decoded::new(Balances), model.clone());
    let started = Instant::now();
    let reached = project_until(&store, &mut projection, Position(total as u64), 1000)
        .await
        .unwrap();
    model.flush().unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(reached, Position(total as u64));
    assert_eq!(model.len(), accounts);
    line(
        "annals-sled",
        "w3",
        total,
        secs,
        ",\"target\":\"kv read model\",\"batch\":1000",
    );
}

/// W4: index 100,000 ticket events (title + ~100-word body) into the tantivy read model
/// (events/s); then, with appends arriving at a steady rate, the lag from append ack to
/// searchable (p50, p99).
async fn w4(args: &Args) {
    use annals::projections::{
        ProjectionConfig, ProjectionRunner, SearchConfig, SearchProjection, project_until,
    };
    use std::time::Duration;

    let n = args.commands.unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("store")).unwrap();
    for chunk in (0..n as u64).collect::<Vec<_>>().chunks(500) {
        let mut tasks = Vec::new();
        for &i in chunk {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let s = StreamId::new(format!("ticket-t{i}")).unwrap();
                store
                    .append(
                        &s,
                        ExpectedVersion::NoStream,
                        vec![tickets::data(&tickets::generated(i))],
                    )
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    let config = SearchConfig::default()
        .commit_every_events(20_000)
        .commit_every(Duration::from_secs(5));
    let mut projection = SearchProjection::open(
        tickets::TicketSearch::default(),
        dir.path().join("search"),
        config,
    )
    .unwrap();
    let started = Instant::now();
    project_until(&store, &mut projection, store.head_position(), 1000)
        .await
        .unwrap();
    annals::projections::Projection::commit(&mut projection)
        .await
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(projection.index().num_docs(), n as u64);
    line(
        "annals-sled",
        "w4",
        n,
        secs,
        ",\"phase\":\"index\",\"threads\":1",
    );
    drop(projection);

    // Live: a steady rate of appends, each timed from ack until searchable.
    let rate = 500u64;
    let count = 2_000u64;
    let db = sled::Config::new().temporary(true).open().unwrap();
    let config = SearchConfig::default()
        .commit_every_events(10_000)
        .commit_every(Duration::from_millis(50));
    let projection = SearchProjection::open(
        tickets::TicketSearch::default(),
        dir.path().join("search"),
        config,
    )
    .unwrap();
    let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
    let h = runner
        .start(Box::new(projection), ProjectionConfig::default())
        .unwrap();
    h.wait_for(store.head_position(), Duration::from_secs(60))
        .await
        .unwrap();
    let mut lags = Vec::new();
    let mut waits = Vec::new();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    for i in 0..count {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let id = n as u64 + i;
        let s = StreamId::new(format!("ticket-t{id}")).unwrap();
        let r = store
            .append(
                &s,
                ExpectedVersion::NoStream,
                vec![tickets::data(&tickets::generated(id))],
            )
            .await
            .unwrap();
        let acked = Instant::now();
        let h = h.clone();
        waits.push(tokio::spawn(async move {
            h.wait_for(r.last_position, Duration::from_secs(30))
                .await
                .unwrap();
            acked.elapsed().as_secs_f64()
        }));
        if waits.len() >= 64 {
            for w in waits.drain(..) {
                lags.push(w.await.unwrap());
            }
        }
    }
    for w in waits {
        lags.push(w.await.unwrap());
    }
    runner.shutdown().await;
    lags.sort_by(f64::total_cmp);
    let p = |q: f64| lags[((lags.len() as f64 - 1.0) * q) as usize] * 1000.0;
    println!(
        "{{\"system\":\"annals-sled\",\"workload\":\"w4\",\"phase\":\"lag\",\"ops\":{count},\"rate_per_sec\":{rate},\"p50_ms\":{:.1},\"p99_ms\":{:.1},\"max_ms\":{:.1}}}",
        p(0.5),
        p(0.99),
        p(1.0)
    );
}

/// A field of /proc/self/status in bytes (0 where unavailable): `VmRSS` is the resident
/// set, `RssAnon` the heap part, `RssFile` mapped files (tantivy's mmapped segments, which the
/// kernel can reclaim).
fn proc_status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn rss_bytes() -> u64 {
    proc_status_bytes("VmRSS:")
}

/// sled alone: `--events N` (default 4M) 150-byte values under 8-byte keys in one tree with
/// a 64 MiB cache; RSS every 500,000 keys. Separates sled's own memory per stored key from
/// annals' (BENCHMARKS.md, soak).
fn sled_memory(args: &Args) {
    // `--events N` 150-byte records, `--batch B` of them per key (B = 1: one key per record),
    // keys in order or, with `--spread`, spread over the key space like stream-index keys.
    let n = args.events.unwrap_or(4_000_000) as u64;
    let per_key = args.batch.unwrap_or(1).max(1) as u64;
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(64 << 20)
        .open()
        .unwrap();
    let tree = db.open_tree("events").unwrap();
    let value = vec![7u8; 150 * per_key as usize];
    for i in 0..=n {
        if i % 500_000 == 0 {
            db.flush().unwrap();
            println!(
                "{{\"workload\":\"sled-memory\",\"records\":{i},\"records_per_key\":{per_key},\"spread\":{},\"rss_mib\":{:.1}}}",
                args.spread,
                rss_bytes() as f64 / 1_048_576.0
            );
        }
        if i % per_key == 0 {
            let key = if args.spread {
                i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            } else {
                i
            };
            tree.insert(key.to_be_bytes(), value.as_slice()).unwrap();
        }
    }
}

/// Soak: 8 durable writers (ticket commands through the repository) and 3 projections (a KV
/// list, a KV per-account balance and the search index) for `--minutes M`; every 10 s one
/// JSON line with throughput, RSS, per-projection lag and parked count. `--streams N` makes
/// the writers cycle over N tickets (reopening, assigning, reprioritising, closing) instead of
/// opening a new ticket each round, so the number and size of aggregates, read-model rows and
/// search documents stay bounded while the log grows.
async fn soak(args: &Args) {
    use annals::projections::{
        HandlerError, KvProjection, KvProjector, KvReadModel, KvWriter, ProjectionConfig,
        ProjectionRunner, SearchConfig, SearchProjection,
    };
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    struct Counts;
    impl KvProjector for Counts {
        type Key = String;
        type Value = u64;
        fn name(&self) -> &str {
            "event-counts"
        }
        fn apply(
            &self,
            e: &RecordedEvent,
            kv: &mut KvWriter<'_, String, u64>,
        ) -> Result<(), HandlerError> {
            let n = kv.get(&e.event_type)?.unwrap_or(0);
            Ok(kv.put(&e.event_type, &(n + 1))?)
        }
    }

    let dir = tempfile::tempdir().unwrap();
    // sled's page cache bounds most of the store's memory: 64 MiB here (StoreConfig::cache_bytes).
    let store = SledStore::open_with(
        dir.path().join("store"),
        StoreConfig::default().cache_bytes(64 << 20),
    )
    .unwrap();
    let db = sled::Config::new()
        .path(dir.path().join("rm"))
        .cache_capacity(32 << 20)
        .open()
        .unwrap();
    let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
    if args.projections != "none" {
        let list = KvReadModel::open(&db, "ticket-list").unwrap();
        runner
            .start(
                Box::new(KvProjection::new(tickets::TicketList, list)),
                ProjectionConfig::default(),
            )
            .unwrap();
        let counts = KvReadModel::open(&db, "event-counts").unwrap();
        runner
            .start(
                Box::new(KvProjection::new(Counts, counts)),
                ProjectionConfig::default(),
            )
            .unwrap();
    }
    if args.projections == "all" {
        let search = SearchProjection::open(
            tickets::TicketSearch::default(),
            dir.path().join("search"),
            SearchConfig::default(),
        )
        .unwrap();
        runner
            .start(Box::new(search), ProjectionConfig::default())
            .unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let repo = Repository::<tickets::Ticket, _>::new(store.clone()).snapshot_every(50);
    let mut writers = Vec::new();
    // A multiple of 8 keeps each writer on its own tickets.
    let cycle = args.streams.map(|s| s.max(1).div_ceil(8) * 8);
    for t in 0..8u64 {
        let repo = repo.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let ctx = CommandContext::new();
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n = k * 8 + t;
                let id = format!("s{}", cycle.map_or(n, |c| n % c));
                let tickets::TicketEvent::Opened {
                    title,
                    body,
                    priority,
                } = tickets::generated(n)
                else {
                    continue;
                };
                if cycle.is_some_and(|c| n >= c) {
                    // Back to a ticket of an earlier round: reopen it if it was closed (the
                    // domain refuses to reopen an open one; that is fine here).
                    let _ = repo
                        .execute_with(&id, &tickets::TicketCommand::Reopen, &ctx)
                        .await;
                } else {
                    repo.execute_with(
                        &id,
                        &tickets::TicketCommand::Open {
                            title,
                            body,
                            priority,
                        },
                        &ctx,
                    )
                    .await
                    .unwrap();
                }
                for c in 0..(n % 4) {
                    // Cycling over tickets, commands that replace state rather than add to it
                    // (comments would grow each ticket, its search document and its row).
                    let command = match cycle {
                        None => tickets::TicketCommand::Comment {
                            text: format!("follow-up {c} on {}", tickets::WORDS[(n % 36) as usize]),
                        },
                        Some(_) if c % 2 == 0 => tickets::TicketCommand::Assign {
                            to: tickets::WORDS[((n + c) % 36) as usize].to_string(),
                        },
                        Some(_) => tickets::TicketCommand::ChangePriority {
                            priority: (1 + (n + c) % 5) as u8,
                        },
                    };
                    repo.execute_with(&id, &command, &ctx).await.unwrap();
                }
                if n.is_multiple_of(3) {
                    repo.execute_with(
                        &id,
                        &tickets::TicketCommand::Close {
                            reason: "done".into(),
                        },
                        &ctx,
                    )
                    .await
                    .unwrap();
                }
                k += 1;
            }
        }));
    }
    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let started = Instant::now();
    let mut last = (Instant::now(), store.head_position());
    let mut max_rss = 0u64;
    let mut max_anon = 0u64;
    let mut max_lag = 0u64;
    let mut rates = Vec::new();
    while started.elapsed() < total {
        tokio::time::sleep(
            Duration::from_secs(10).min(
                total
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_millis(1)),
            ),
        )
        .await;
        let now = (Instant::now(), store.head_position());
        let rate = (now.1.0 - last.1.0) as f64 / (now.0 - last.0).as_secs_f64();
        rates.push(rate);
        last = now;
        let rss = rss_bytes();
        let anon = proc_status_bytes("RssAnon:");
        let file = proc_status_bytes("RssFile:");
        max_rss = max_rss.max(rss);
        max_anon = max_anon.max(anon);
        let mut lags = String::new();
        let mut parked = 0;
        for h in runner.handles() {
            let s = h.status().await.unwrap();
            max_lag = max_lag.max(s.lag);
            parked += s.parked;
            lags.push_str(&format!("\"{}\":{},", s.name, s.lag));
        }
        lags.pop();
        println!(
            "{{\"workload\":\"soak\",\"t_secs\":{:.0},\"events\":{},\"events_per_sec\":{rate:.0},\"rss_mib\":{:.1},\"rss_anon_mib\":{:.1},\"rss_file_mib\":{:.1},\"lag\":{{{lags}}},\"parked\":{parked}}}",
            started.elapsed().as_secs_f64(),
            now.1,
            rss as f64 / 1_048_576.0,
            anon as f64 / 1_048_576.0,
            file as f64 / 1_048_576.0
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let head = store.head_position();
    for h in runner.handles() {
        h.wait_for(head, Duration::from_secs(120)).await.unwrap();
    }
    runner.shutdown().await;
    println!(
        "{{\"workload\":\"soak\",\"summary\":true,\"minutes\":{},\"events\":{},\"median_events_per_sec\":{:.0},\"max_rss_mib\":{:.1},\"max_rss_anon_mib\":{:.1},\"max_lag\":{max_lag},\"disk_mib\":{:.1}}}",
        args.minutes,
        head,
        median(&mut rates),
        max_rss as f64 / 1_048_576.0,
        max_anon as f64 / 1_048_576.0,
        store.size_on_disk().unwrap_or(0) as f64 / 1_048_576.0
    );
}
