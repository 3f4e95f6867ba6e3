//! Benchmark workloads of DESIGN.md, each printing one JSON line per run.
//!
//! ```text
//! cargo bench --bench workloads -- w5 [--concurrency C] [--batch B] [--system annals-sled|sled-floor] [--events N]
//! ```
//!
//! Without `--system`, W5 runs `sled-floor` and `annals-sled` back to back in one process and
//! reports the ratio; without `--concurrency`/`--batch` it runs C ∈ {1, 8, 64} × B ∈ {1, 100}.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use annals::prelude::*;
use annals::store::format;

struct Args {
    workload: String,
    concurrency: Option<usize>,
    batch: Option<usize>,
    system: Option<String>,
    events: Option<usize>,
    repeat: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        workload: String::new(),
        concurrency: None,
        batch: None,
        system: None,
        events: None,
        repeat: 1,
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
        other => {
            eprintln!("unknown workload {other:?}; known: w5");
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
    let r = RecordedEvent {
        position: Position(i as u64 + 1),
        stream: stream.clone(),
        version: Version(i as u64 + 1),
        id: e.id,
        event_type: e.event_type,
        schema_version: 1,
        recorded_at: Timestamp::now(),
        metadata: e.metadata,
        codec: e.codec,
        payload: e.payload,
    };
    let mut out = Vec::new();
    format::encode_record(&r, &mut out);
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
