//! Projections across processes on the local PostgreSQL server (127.0.0.1:5432, database
//! `test`): two OS processes append to the same streams with optimistic concurrency while
//! both run the same PostgreSQL read model under `PgLeadership` — no lost, duplicated or
//! out-of-order event, exactly one active worker; and a standby takes over when the leader
//! is SIGKILLed. Each test uses its own schema and drops it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use crate::common;

use std::collections::HashSet;
use std::io::Write;
use std::process::{Child, ChildStdin};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use annals::Error;
use annals::prelude::*;
use annals::projections::tokio_postgres::Transaction;
use annals::projections::*;
use annals_postgres::{PgConfig, PgStore};

const PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
/// Set in a child process: the schema it works in.
const CHILD_VAR: &str = "ANNALS_PG_PROJECTION_CHILD";
/// Set in a child process: successful appends per writer task (4 tasks).
const APPENDS_VAR: &str = "ANNALS_PG_CHILD_APPENDS";

/// Records every event it is given, with the process that applied it.
struct Seen {
    schema: String,
}

impl PgProjector for Seen {
    fn name(&self) -> &str {
        "seen"
    }

    async fn setup(&self, tx: &Transaction<'_>) -> Result<(), HandlerError> {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {}.seen (seq BIGSERIAL PRIMARY KEY, position BIGINT NOT NULL,
               stream TEXT NOT NULL, version BIGINT NOT NULL, pid INT NOT NULL)",
            self.schema
        ))
        .await?;
        Ok(())
    }

    async fn apply(&self, tx: &Transaction<'_>, e: &RecordedEvent) -> Result<(), HandlerError> {
        tx.execute(
            &format!(
                "INSERT INTO {}.seen (position, stream, version, pid) VALUES ($1, $2, $3, $4)",
                self.schema
            ),
            &[
                &(e.position.0 as i64),
                &e.stream.as_str(),
                &(e.version.0 as i64),
                &(std::process::id() as i32),
            ],
        )
        .await?;
        Ok(())
    }

    async fn clear(&self, tx: &Transaction<'_>) -> Result<(), HandlerError> {
        tx.batch_execute(&format!("DELETE FROM {}.seen", self.schema))
            .await?;
        Ok(())
    }
}

/// Asserts that the read model holds positions `1..=head`, each once, in the order applied.
fn assert_each_once_in_order(rows: &[(u64, i32)], head: u64) {
    let positions: Vec<u64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(
        positions,
        (1..=head).collect::<Vec<_>>(),
        "each event once, in order"
    );
}

/// A runtime for a parent test; `None` in a child process, which runs only
/// `pg_projection_child`.
fn parent_runtime() -> Option<tokio::runtime::Runtime> {
    if std::env::var(CHILD_VAR).is_ok() {
        None
    } else {
        Some(runtime())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn config() -> ProjectionConfig {
    ProjectionConfig::default().batch_size(20)
}

/// The child: opens the store, runs the `seen` projection under leadership, prints `READY`,
/// its worker state on every change (`STATE …`), appends with 4 tasks if asked (`ACK <id>`
/// per acked event, then `APPENDED`), and on a line on stdin prints `FINAL <state>` and
/// exits.
#[test]
fn pg_projection_child() {
    let Ok(schema) = std::env::var(CHILD_VAR) else {
        return;
    };
    // End the test harness's "test ... " line, so that every line below is the child's own.
    println!();
    let appends: usize = std::env::var(APPENDS_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    runtime().block_on(async move {
        let store = PgStore::open(PgConfig::new(PG, &schema)).await.unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let runner = ProjectionRunner::new(store.clone(), &db)
            .unwrap()
            .with_leadership(
                PgLeadership::new(PG, &schema).retry_every(Duration::from_millis(100)),
            );
        let model = seen_model(&schema).await;
        let handle = runner.start(Box::new(model), config()).unwrap();
        let watcher = handle.clone();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let state = watcher.state();
                if last.as_ref() != Some(&state) {
                    println!("STATE {state:?}");
                    last = Some(state);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        println!("READY");
        let mut tasks = Vec::new();
        for t in 0..4usize {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let (mut acked, mut conflicts, mut i) = (0, 0, 0usize);
                while acked < appends {
                    let stream = StreamId::new(format!("acct-{}", (t + i) % 5)).unwrap();
                    let head = store.stream_head(&stream).await.unwrap();
                    let expected = head.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                    let events: Vec<EventData> = (0..1 + i % 2)
                        .map(|j| {
                            EventData::json(
                                "Deposited",
                                &format!("{}-{t}-{i}-{j}", std::process::id()),
                            )
                            .unwrap()
                        })
                        .collect();
                    let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
                    match store.append(&stream, expected, events).await {
                        Ok(_) => {
                            for id in ids {
                                println!("ACK {id}");
                            }
                            acked += 1;
                        }
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("append failed: {e}"),
                    }
                    i += 1;
                }
                conflicts
            }));
        }
        let mut conflicts = 0;
        for t in tasks {
            conflicts += t.await.unwrap();
        }
        println!("CONFLICTS {conflicts}");
        println!("APPENDED");
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)
        })
        .await;
        println!("FINAL {:?}", handle.state());
        runner.shutdown().await;
    });
}

/// A child process and every line it has printed so far.
struct Proc {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(schema: &str, appends: usize) -> Self {
        let appends = appends.to_string();
        let (mut child, lines) = common::child::spawn_test(
            "pg_projections::pg_projection_child",
            &[
                (CHILD_VAR, schema.as_ref()),
                (APPENDS_VAR, appends.as_ref()),
            ],
        );
        let stdin = child.stdin.take().unwrap();
        Proc {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits (at most `within`) for a line equal to `want`.
    fn wait_line(&mut self, want: &str, within: Duration) {
        let deadline = Instant::now() + within;
        if self.seen.iter().any(|l| l == want) {
            return;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line == want;
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(e) => panic!(
                    "child {} did not print {want:?} ({e}); printed {:?}",
                    self.child.id(),
                    self.seen.iter().rev().take(5).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Asks the child to stop (it prints its final state and exits).
    fn ask_to_stop(&mut self) {
        let _ = self.stdin.write_all(b"STOP\n");
        let _ = self.stdin.flush();
    }

    /// Asks the child to stop; returns every line it printed.
    fn stop(mut self) -> Vec<String> {
        self.ask_to_stop();
        assert!(self.child.wait().unwrap().success(), "child failed");
        self.seen.extend(self.lines.iter());
        self.seen
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

/// The `seen` read model in `schema`.
async fn seen_model(schema: &str) -> PgReadModel<Seen> {
    let seen = Seen {
        schema: schema.to_owned(),
    };
    PgReadModel::open(PG, schema, seen).await.unwrap()
}

/// A fresh schema: the store in it, and a plain client for checks.
async fn fresh(tag: &str) -> (String, PgStore, annals::projections::tokio_postgres::Client) {
    let schema = format!("annals_pgp_{tag}_{}", std::process::id());
    let store = PgStore::open(PgConfig::new(PG, &schema)).await.unwrap();
    store.drop_schema().await.unwrap();
    let store = PgStore::open(PgConfig::new(PG, &schema)).await.unwrap();
    let (client, conn) = annals::projections::tokio_postgres::connect(
        PG,
        annals::projections::tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    (schema, store, client)
}

/// Waits until the `seen` checkpoint reaches `head`.
async fn caught_up(client: &annals::projections::tokio_postgres::Client, schema: &str, head: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = client
            .query_opt(
                &format!("SELECT position FROM {schema}.annals_checkpoints WHERE name = 'seen'"),
                &[],
            )
            .await
            .unwrap();
        let at = row.map_or(0, |r| r.get::<_, i64>(0) as u64);
        if at >= head {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "read model stuck at {at} of {head}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `seen` rows in the order they were applied: (position, pid).
async fn applied(
    client: &annals::projections::tokio_postgres::Client,
    schema: &str,
) -> Vec<(u64, i32)> {
    client
        .query(
            &format!("SELECT position, pid FROM {schema}.seen ORDER BY seq"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i32>(1)))
        .collect()
}

/// How many sessions hold the leadership lock of `seen` in `schema`'s namespace.
async fn lock_holders(client: &annals::projections::tokio_postgres::Client, schema: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
               AND classid::bigint = (hashtext($1)::bigint & 4294967295)
               AND objid::bigint = (hashtext('seen')::bigint & 4294967295)",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0)
}

#[test]
fn two_processes_append_and_share_one_projection() {
    let Some(rt) = parent_runtime() else {
        return;
    };
    let (schema, store, client) = rt.block_on(fresh("two"));
    let mut a = Proc::spawn(&schema, 25);
    let mut b = Proc::spawn(&schema, 25);
    a.wait_line("APPENDED", Duration::from_secs(120));
    b.wait_line("APPENDED", Duration::from_secs(120));
    let stored = rt
        .block_on(store.read_all(Position::NONE, usize::MAX))
        .unwrap();
    let head = stored.len() as u64;
    rt.block_on(caught_up(&client, &schema, head));
    assert_eq!(rt.block_on(lock_holders(&client, &schema)), 1, "one leader");
    let (pid_a, pid_b) = (a.pid(), b.pid());
    // Both report their state before either exits (a leader leaving would let the other
    // take over before it reports).
    a.ask_to_stop();
    b.ask_to_stop();
    let lines: Vec<String> = a.stop().into_iter().chain(b.stop()).collect();

    // The store: every acked event once, positions and versions contiguous.
    let acked: HashSet<String> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ACK ").map(str::to_owned))
        .collect();
    let ids: HashSet<String> = stored.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids.len(), stored.len(), "no event stored twice");
    assert_eq!(ids, acked, "exactly the acked events are stored");
    annals_conformance::check_contiguous(&stored);
    let conflicts: u64 = lines
        .iter()
        .filter_map(|l| l.strip_prefix("CONFLICTS ")?.parse::<u64>().ok())
        .sum();
    assert!(conflicts > 0, "the writers raced");

    // The read model: every position once, in order, by one process.
    let rows = rt.block_on(applied(&client, &schema));
    assert_each_once_in_order(&rows, head);
    let pids: HashSet<i32> = rows.iter().map(|r| r.1).collect();
    assert_eq!(pids.len(), 1, "one active worker");
    assert!(pids.contains(&pid_a) || pids.contains(&pid_b));
    let finals: Vec<&String> = lines.iter().filter(|l| l.starts_with("FINAL ")).collect();
    assert_eq!(finals.len(), 2);
    assert_eq!(
        finals
            .iter()
            .filter(|l| l.as_str() == "FINAL Running")
            .count(),
        1,
        "{finals:?}"
    );
    assert_eq!(
        finals
            .iter()
            .filter(|l| l.as_str() == "FINAL Standby")
            .count(),
        1,
        "{finals:?}"
    );
    println!("two processes: {head} events, {conflicts} conflicts, one leader");
    rt.block_on(store.drop_schema()).unwrap();
}

#[test]
fn a_standby_takes_over_when_the_leader_is_killed() {
    let Some(rt) = parent_runtime() else {
        return;
    };
    let (schema, store, client) = rt.block_on(fresh("failover"));
    let mut leader = Proc::spawn(&schema, 0);
    leader.wait_line("STATE Running", Duration::from_secs(60));
    let mut standby = Proc::spawn(&schema, 0);
    standby.wait_line("STATE Standby", Duration::from_secs(60));
    let appender = {
        let store = store.clone();
        rt.spawn(async move {
            for i in 0..400u32 {
                let stream = StreamId::new(format!("acct-{}", i % 7)).unwrap();
                let e = EventData::json("Deposited", &i).unwrap();
                store
                    .append(&stream, ExpectedVersion::Any, vec![e])
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // Kill the leader while it is applying.
    rt.block_on(caught_up(&client, &schema, 50));
    let leader_pid = leader.pid();
    leader.kill();
    let killed = Instant::now();
    standby.wait_line("STATE Running", Duration::from_secs(30));
    let took = killed.elapsed();
    rt.block_on(appender).unwrap();
    let head = rt
        .block_on(store.read_all(Position::NONE, usize::MAX))
        .unwrap()
        .len() as u64;
    assert_eq!(head, 400);
    rt.block_on(caught_up(&client, &schema, head));
    let standby_pid = standby.pid();
    let lines = standby.stop();
    assert!(lines.iter().any(|l| l == "FINAL Running"));

    let rows = rt.block_on(applied(&client, &schema));
    assert_each_once_in_order(&rows, head);
    // The leader's rows, then the standby's: one hand-over.
    let switch = rows.iter().position(|r| r.1 != leader_pid).unwrap();
    assert!(switch >= 50, "the leader applied the first 50");
    assert!(
        rows[switch..].iter().all(|r| r.1 == standby_pid),
        "then only the standby"
    );
    println!(
        "failover: took over {took:?} after the kill, at position {}",
        switch + 1
    );
    rt.block_on(store.drop_schema()).unwrap();
}

/// Two read models on one checkpoint (a worker that lost its lease without noticing, and
/// the new leader): the stale one is fenced off, nothing is applied twice.
#[test]
fn a_stale_worker_is_fenced_off() {
    let Some(rt) = parent_runtime() else {
        return;
    };
    rt.block_on(async {
        let (schema, store, client) = fresh("fence").await;
        let stream = StreamId::new("acct-1").unwrap();
        for i in 0..4u32 {
            let e = EventData::json("Deposited", &i).unwrap();
            store
                .append(&stream, ExpectedVersion::Any, vec![e])
                .await
                .unwrap();
        }
        let events = store.read_all(Position::NONE, usize::MAX).await.unwrap();
        let (mut old, mut new) = (seen_model(&schema).await, seen_model(&schema).await);
        let cp = |p: u64| Checkpoint::at(Position(p), 1);
        assert_eq!(old.checkpoint().await.unwrap(), None);
        old.apply(&events[..2], cp(2)).await.unwrap();
        // The new worker starts from the stored checkpoint and goes on.
        assert_eq!(new.checkpoint().await.unwrap(), Some(cp(2)));
        new.apply(&events[2..3], cp(3)).await.unwrap();
        // The old one still believes it is at 2: compare-and-set fails, nothing written.
        match old.apply(&events[2..4], cp(4)).await {
            Err(ProjectionError::Fenced { expected, .. }) => assert_eq!(expected, Position(2)),
            other => panic!("expected Fenced, got {other:?}"),
        }
        // Having read the checkpoint again, it refuses events at or below it.
        match old.apply(&events[2..4], cp(4)).await {
            Err(ProjectionError::Fenced { expected, .. }) => assert_eq!(expected, Position(3)),
            other => panic!("expected Fenced, got {other:?}"),
        }
        new.apply(&events[3..4], cp(4)).await.unwrap();
        assert_each_once_in_order(&applied(&client, &schema).await, 4);
        store.drop_schema().await.unwrap();
    });
}

/// Two runners without leadership on one PostgreSQL read model: they race for every batch,
/// the checkpoint's compare-and-set fences the loser, which reads the checkpoint again — every
/// event is still applied once and in order.
#[test]
fn racing_workers_without_leadership_apply_each_event_once() {
    let Some(rt) = parent_runtime() else {
        return;
    };
    rt.block_on(async {
        let (schema, store, client) = fresh("race").await;
        let mut runners = Vec::new();
        for _ in 0..2 {
            let db = sled::Config::new().temporary(true).open().unwrap();
            let runner = ProjectionRunner::new(store.clone(), &db).unwrap();
            let model = seen_model(&schema).await;
            let config = ProjectionConfig::default().batch_size(7);
            runner.start(Box::new(model), config).unwrap();
            runners.push((runner, db));
        }
        for i in 0..300u32 {
            let stream = StreamId::new(format!("acct-{}", i % 5)).unwrap();
            let e = EventData::json("Deposited", &i).unwrap();
            store
                .append(&stream, ExpectedVersion::Any, vec![e])
                .await
                .unwrap();
        }
        caught_up(&client, &schema, 300).await;
        for (runner, _) in &runners {
            runner.shutdown().await;
        }
        assert_each_once_in_order(&applied(&client, &schema).await, 300);
        store.drop_schema().await.unwrap();
    });
}

/// Fails on `Poison` events until `fixed` is set; records the positions it applied.
struct Picky {
    schema: String,
    fixed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PgProjector for Picky {
    fn name(&self) -> &str {
        "picky"
    }

    async fn setup(&self, tx: &Transaction<'_>) -> Result<(), HandlerError> {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {}.picky (position BIGINT PRIMARY KEY)",
            self.schema
        ))
        .await?;
        Ok(())
    }

    async fn apply(&self, tx: &Transaction<'_>, e: &RecordedEvent) -> Result<(), HandlerError> {
        if e.event_type == "Poison" && !self.fixed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(format!("cannot take the poison at {}", e.position).into());
        }
        tx.execute(
            &format!("INSERT INTO {}.picky (position) VALUES ($1)", self.schema),
            &[&(e.position.0 as i64)],
        )
        .await?;
        Ok(())
    }

    async fn clear(&self, tx: &Transaction<'_>) -> Result<(), HandlerError> {
        tx.batch_execute(&format!("DELETE FROM {}.picky", self.schema))
            .await?;
        Ok(())
    }
}

/// Parked events live in PostgreSQL (`PgDeadLetters`): the event one leader parked is
/// listed by the process that takes over, which retries it after the fix.
#[test]
fn parked_events_survive_a_leader_failover() {
    let Some(rt) = parent_runtime() else {
        return;
    };
    rt.block_on(async {
        let (schema, store, client) = fresh("parked").await;
        let fixed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let quick = ProjectionConfig::default().retry(
            RetryPolicy::default()
                .attempts(2)
                .initial_backoff(Duration::from_millis(1)),
        );
        let runner = || async {
            let leadership =
                PgLeadership::new(PG, schema.as_str()).retry_every(Duration::from_millis(50));
            let parked = PgDeadLetters::open(PG, schema.as_str()).await.unwrap();
            let runner = ProjectionRunner::with_dead_letters(store.clone(), parked)
                .with_leadership(leadership);
            let picky = Picky {
                schema: schema.clone(),
                fixed: fixed.clone(),
            };
            let model = PgReadModel::open(PG, schema.as_str(), picky).await.unwrap();
            let handle = runner.start(Box::new(model), quick.clone()).unwrap();
            (runner, handle)
        };
        let (first, first_handle) = runner().await;
        let mut last = Position::NONE;
        for ty in ["Ok", "Poison", "Ok"] {
            last = store
                .append(
                    &StreamId::new("order-1").unwrap(),
                    ExpectedVersion::Any,
                    vec![EventData::json(ty, &1).unwrap()],
                )
                .await
                .unwrap()
                .last_position;
        }
        first_handle
            .wait_for(last, Duration::from_secs(30))
            .await
            .unwrap();
        let parked = first_handle.parked().await.unwrap();
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].position, Position(2));
        assert!(parked[0].error.contains("cannot take the poison"));
        assert!(matches!(
            first_handle
                .wait_for_applied(Position(2), Duration::from_secs(1))
                .await,
            Err(ProjectionError::Parked { .. })
        ));
        // The leader goes; a new process leads and still knows the parked event.
        first.shutdown().await;
        let (second, second_handle) = runner().await;
        // A standby shows the leader's checkpoint: wait until this one leads.
        let deadline = Instant::now() + Duration::from_secs(30);
        while second_handle.state() != WorkerState::Running {
            assert!(Instant::now() < deadline, "the new process never led");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        second_handle
            .wait_for(last, Duration::from_secs(30))
            .await
            .unwrap();
        let status = second_handle.status().await.unwrap();
        assert_eq!((status.parked, status.checkpoint), (1, last));
        fixed.store(true, std::sync::atomic::Ordering::SeqCst);
        second_handle.retry_parked(Position(2)).await.unwrap();
        assert!(second_handle.parked().await.unwrap().is_empty());
        let rows: Vec<i64> = client
            .query(
                &format!("SELECT position FROM {schema}.picky ORDER BY position"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(rows, vec![1, 2, 3]);
        second.shutdown().await;
        store.drop_schema().await.unwrap();
    });
}
