//! The repository: loads equal folds under any snapshot policy, time travel, concurrent
//! commands with retries, idempotent commands, metadata, snapshot fallback, upcasting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::domain;

use std::sync::Arc;

use annals::Error;
use annals::prelude::*;
use annals::store::MemDisk;
use annals::testing::given;
use annals::{HistoryEntry, Snapshot, Uuid};
use domain::{Account, AccountCommand, AccountError, AccountEvent};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

// ---- a counter whose commands emit several events, to cross snapshot boundaries ----

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
enum CounterEvent {
    Added { value: u64 },
}

#[derive(Default, Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Counter {
    total: u64,
    count: u64,
    /// Every value in order: makes a dropped or repeated event visible.
    seen: Vec<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("empty command")]
struct Empty;

impl Aggregate for Counter {
    const TYPE: &'static str = "counter";
    type Command = Vec<u64>;
    type Event = CounterEvent;
    type Error = Empty;
    type Services = ();
    fn handle(&self, values: &Vec<u64>, _: &()) -> Result<Vec<CounterEvent>, Empty> {
        if values.is_empty() {
            return Err(Empty);
        }
        Ok(values
            .iter()
            .map(|&value| CounterEvent::Added { value })
            .collect())
    }
    fn apply(&mut self, CounterEvent::Added { value }: &CounterEvent) {
        self.total += value;
        self.count += 1;
        self.seen.push(*value);
    }
}

fn fold(values: &[u64]) -> Counter {
    let mut c = Counter::default();
    for v in values {
        c.apply(&CounterEvent::Added { value: *v });
    }
    c
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if std::env::var_os("ANNALS_STRESS").is_some() { 500 } else { 40 }, failure_persistence: None, ..ProptestConfig::default() })]

    /// load == fold of all events == load under any snapshot policy (cached or not);
    /// load_at(v) == fold of the first v events for every v.
    #[test]
    fn loads_equal_folds_under_any_snapshot_policy(
        commands in proptest::collection::vec(proptest::collection::vec(0u64..1000, 1..7), 1..25),
        every in 0u64..9,
    ) {
        rt().block_on(async {
            let store = MemStore::new();
            let repo = Repository::<Counter, _>::new(store.clone()).snapshot_every(every);
            let mut all = Vec::new();
            for c in &commands {
                repo.execute("c1", c).await.unwrap();
                all.extend_from_slice(c);
            }
            let expected = fold(&all);
            let (state, v) = repo.load("c1").await.unwrap();
            assert_eq!((state, v), (expected.clone(), Version(all.len() as u64)));
            // A fresh repository without a cache reads snapshot + tail from the store.
            for policy in [0, 1, 3, 100] {
                let fresh = Repository::<Counter, _>::new(store.clone()).snapshot_every(policy).cache_capacity(0);
                assert_eq!(fresh.load("c1").await.unwrap().0, expected.clone());
            }
            if every > 0 && all.len() as u64 >= every {
                // Snapshots are written with the store's next write; a flush waits for them.
                store.flush().await.unwrap();
                let snap = store.load_snapshot(&StreamId::new("counter-c1").unwrap()).await.unwrap().unwrap();
                let state: Counter = snap.codec.decode("counter", &snap.payload).unwrap();
                assert_eq!(state, fold(&all[..snap.version.0 as usize]), "a snapshot covers exactly the events up to its version");
            }
            for v in 0..=all.len() {
                let (at, reached) = repo.load_at("c1", Version(v as u64)).await.unwrap();
                assert_eq!(at, fold(&all[..v]));
                assert_eq!(reached, Version(v as u64));
            }
        });
    }
}

/// A multi-event command crossing a snapshot boundary: the snapshot covers exactly the
/// events applied, and a load from it loses nothing.
#[tokio::test]
async fn multi_event_command_crossing_a_snapshot_boundary() {
    let store = MemStore::new();
    let repo = Repository::<Counter, _>::new(store.clone()).snapshot_every(10);
    repo.execute("x", &vec![1; 8]).await.unwrap();
    repo.execute("x", &vec![2, 3, 4, 5, 6]).await.unwrap(); // 9..=13
    // The snapshot is written with the store's next write; a flush waits for it.
    store.flush().await.unwrap();
    let snap = store
        .load_snapshot(&StreamId::new("counter-x").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snap.version, Version(13));
    let fresh = Repository::<Counter, _>::new(store.clone()).cache_capacity(0);
    repo.execute("x", &vec![7]).await.unwrap();
    let (state, v) = fresh.load("x").await.unwrap();
    assert_eq!(v, Version(14));
    assert_eq!(state.seen, vec![1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 7]);
}

/// Time travel by timestamp agrees with the recorded timestamps.
#[tokio::test]
async fn load_as_of_follows_recorded_timestamps() {
    let store = MemStore::new();
    let repo = Repository::<Counter, _>::new(store.clone());
    let mut stamps = Vec::new();
    for i in 0..6u64 {
        repo.execute("t", &vec![i]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    for e in store
        .read_stream(
            &StreamId::new("counter-t").unwrap(),
            VersionRange::ALL,
            Direction::Forward,
            100,
        )
        .await
        .unwrap()
    {
        stamps.push(e.recorded_at);
    }
    assert_eq!(
        repo.load_as_of("t", Timestamp(stamps[0].0 - 1))
            .await
            .unwrap()
            .1,
        Version::NONE
    );
    for (i, t) in stamps.iter().enumerate() {
        let (state, v) = repo.load_as_of("t", *t).await.unwrap();
        assert_eq!(v, Version(i as u64 + 1));
        assert_eq!(state, fold(&(0..=i as u64).collect::<Vec<_>>()));
    }
}

/// 8 tasks deposit concurrently on one account with retries: balance == sum of accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_apply_each_accepted_command_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let repo = Repository::<Account, _>::new(store.clone()).retries(3);
    repo.execute(
        "a",
        &AccountCommand::Open {
            account: "a".into(),
            owner: "ada".into(),
        },
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        // Separate repositories (separate caches), as in separate request handlers.
        let repo = Repository::<Account, _>::new(store.clone()).retries(3);
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0;
            let mut conflicts = 0;
            for i in 0..25u64 {
                let amount = t * 100 + i + 1;
                match repo
                    .execute(
                        "a",
                        &AccountCommand::Deposit {
                            account: "a".into(),
                            amount,
                        },
                    )
                    .await
                {
                    Ok(_) => accepted += amount,
                    Err(RepositoryError::Store(Error::Conflict { .. })) => conflicts += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            (accepted, conflicts)
        }));
    }
    let mut sum = 0;
    for t in tasks {
        sum += t.await.unwrap().0;
    }
    let (state, _) = Repository::<Account, _>::new(store.clone())
        .cache_capacity(0)
        .load("a")
        .await
        .unwrap();
    assert_eq!(state.balance, sum);
    assert_eq!(
        repo.load("a").await.unwrap().0.balance,
        sum,
        "a stale cache catches up on load"
    );
}

/// Re-executing a command with the same id returns the first result and appends nothing,
/// even when deciding again would now fail.
#[tokio::test]
async fn idempotent_commands() {
    let store = MemStore::new();
    let repo = Repository::<Account, _>::new(store.clone());
    let open = CommandContext::new().with_command_id(Uuid::now_v7());
    let open_a = AccountCommand::Open {
        account: "a".into(),
        owner: "ada".into(),
    };
    let first = repo.execute_with("a", &open_a, &open).await.unwrap();
    let again = repo.execute_with("a", &open_a, &open).await.unwrap();
    assert!(again.replayed && !first.replayed);
    assert_eq!(again.events, first.events);
    assert_eq!(again.append, first.append);
    let dep = CommandContext::new().with_command_id(Uuid::now_v7());
    let cmd = AccountCommand::Deposit {
        account: "a".into(),
        amount: 5,
    };
    repo.execute_with("a", &cmd, &dep).await.unwrap();
    repo.execute_with("a", &cmd, &dep).await.unwrap();
    // Through another repository (no shared cache) too.
    Repository::<Account, _>::new(store.clone())
        .execute_with("a", &cmd, &dep)
        .await
        .unwrap();
    assert_eq!(store.head_position(), Position(2));
    assert_eq!(repo.load("a").await.unwrap().0.balance, 5);
    // Without a command id, the same command appends again.
    repo.execute("a", &cmd).await.unwrap();
    assert_eq!(repo.load("a").await.unwrap().0.balance, 10);
}

/// Correlation, causation and headers end up in every event's metadata.
#[tokio::test]
async fn metadata_propagates_to_every_event() {
    let store = MemStore::new();
    let repo = Repository::<Counter, _>::new(store.clone());
    let cid = Uuid::now_v7();
    let corr = Uuid::now_v7();
    let ctx = CommandContext::new().with_command_id(cid).with_metadata(
        Metadata::new()
            .with_correlation_id(corr)
            .with_header("user", "ada"),
    );
    repo.execute_with("m", &vec![1, 2, 3], &ctx).await.unwrap();
    let history: Vec<HistoryEntry<CounterEvent>> = repo.history("m").await.unwrap();
    assert_eq!(history.len(), 3);
    for (i, h) in history.iter().enumerate() {
        assert_eq!(h.metadata.correlation_id, Some(corr));
        assert_eq!(
            h.metadata.causation_id,
            Some(cid),
            "causation defaults to the command id"
        );
        assert_eq!(
            h.metadata.headers.get("user").map(String::as_str),
            Some("ada")
        );
        assert_eq!(h.id, annals::event_id_for(cid, i));
        assert_eq!(h.version, Version(i as u64 + 1));
    }
}

/// An undecodable snapshot, or one of another schema version, is ignored: the aggregate is
/// replayed.
#[tokio::test]
async fn bad_snapshots_fall_back_to_replay() {
    let store = MemStore::new();
    // Snapshots written here by hand: the repository has no policy of its own, so it is told
    // to read them.
    let repo = Repository::<Counter, _>::new(store.clone())
        .cache_capacity(0)
        .load_snapshots(true);
    repo.execute("s", &vec![1, 2, 3]).await.unwrap();
    let stream = StreamId::new("counter-s").unwrap();
    let garbage = Snapshot::new(
        Version(3),
        1,
        CodecId::BINCODE,
        vec![0xff; 3],
        Timestamp::now(),
    );
    store.save_snapshot(&stream, garbage).await.unwrap();
    assert_eq!(repo.load("s").await.unwrap().0, fold(&[1, 2, 3]));
    let wrong_total = Counter {
        total: 999,
        count: 3,
        seen: vec![],
    };
    let old = Snapshot::new(
        Version(3),
        7,
        CodecId::BINCODE,
        CodecId::BINCODE.encode("counter", &wrong_total).unwrap(),
        Timestamp::now(),
    );
    store.save_snapshot(&stream, old).await.unwrap();
    assert_eq!(
        repo.load("s").await.unwrap().0,
        fold(&[1, 2, 3]),
        "old schema version ignored"
    );
    // A good snapshot is used (proved by a deliberately different state).
    let mut good = store.load_snapshot(&stream).await.unwrap().unwrap();
    good.schema_version = 1;
    store.save_snapshot(&stream, good).await.unwrap();
    assert_eq!(repo.load("s").await.unwrap().0.total, 999);
    // Without a snapshot policy (and not told otherwise), loads skip the snapshot read.
    let plain = Repository::<Counter, _>::new(store.clone()).cache_capacity(0);
    assert_eq!(plain.load("s").await.unwrap().0, fold(&[1, 2, 3]));
}

// ---- upcasting ----

/// The stored shape of `Deposited` at schema version 1.
#[derive(Serialize, Deserialize)]
struct DepositedV1 {
    cents: u64,
}

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
enum WalletEvent {
    #[event(version = 2)]
    Deposited { amount: u64, currency: String },
}

#[derive(Default, Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Wallet {
    amounts: Vec<(u64, String)>,
}

impl Aggregate for Wallet {
    const TYPE: &'static str = "wallet";
    type Command = ();
    type Event = WalletEvent;
    type Error = Empty;
    type Services = ();
    fn handle(&self, _: &(), _: &()) -> Result<Vec<WalletEvent>, Empty> {
        Ok(vec![])
    }
    fn apply(&mut self, WalletEvent::Deposited { amount, currency }: &WalletEvent) {
        self.amounts.push((*amount, currency.clone()));
    }
}

fn upcasters() -> Upcasters {
    #[derive(Serialize)]
    struct DepositedV2 {
        amount: u64,
        currency: String,
    }
    Upcasters::new().add("Deposited", 1, |old: DepositedV1| DepositedV2 {
        amount: old.cents,
        currency: "EUR".into(),
    })
}

/// Committed bytes of a version-1 event decode into the current type on every read path.
#[tokio::test]
async fn old_event_versions_are_upcast_on_every_read_path() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upcast/deposited-v1.bin");
    if std::env::var_os("ANNALS_WRITE_FIXTURES").is_some() {
        std::fs::write(
            &path,
            CodecId::BINCODE
                .encode("Deposited", &DepositedV1 { cents: 1234 })
                .unwrap(),
        )
        .unwrap();
    }
    let v1 = std::fs::read(&path).unwrap();
    let store = MemStore::new();
    let stream = StreamId::new("wallet-w").unwrap();
    let old = EventData::from_bytes("Deposited", CodecId::BINCODE, v1).with_schema_version(1);
    let current = WalletEvent::Deposited {
        amount: 5,
        currency: "USD".into(),
    }
    .to_event_data()
    .unwrap();
    store
        .append(&stream, ExpectedVersion::NoStream, vec![old, current])
        .await
        .unwrap();

    let repo = Repository::<Wallet, _>::new(store.clone()).upcasters(upcasters());
    let (w, _) = repo.load("w").await.unwrap();
    assert_eq!(
        w.amounts,
        vec![(1234, "EUR".to_string()), (5, "USD".to_string())]
    );
    let h = repo.history("w").await.unwrap();
    assert_eq!(
        h[0].event,
        WalletEvent::Deposited {
            amount: 1234,
            currency: "EUR".into()
        }
    );
    // Subscriptions (the projections' path) decode through the same upcasters.
    let up = Arc::new(upcasters());
    let mut sub = store.subscribe_all(Position::NONE);
    let e = sub.next().await.unwrap().unwrap();
    assert_eq!(
        up.decode::<WalletEvent>(&e).unwrap(),
        WalletEvent::Deposited {
            amount: 1234,
            currency: "EUR".into()
        }
    );
    // Without the upcaster, a typed error, not a panic or a wrong value.
    let bare = Repository::<Wallet, _>::new(store.clone());
    assert!(matches!(
        bare.load("w").await,
        Err(RepositoryError::Store(Error::Codec { .. }))
    ));
}

// ---- the test kit ----

#[test]
fn test_kit_given_when_then() {
    given::<Account>([AccountEvent::Opened {
        owner: "ada".into(),
    }])
    .when(AccountCommand::Deposit {
        account: "a".into(),
        amount: 5,
    })
    .then_expect([AccountEvent::Deposited { amount: 5 }]);
    given::<Account>([
        AccountEvent::Opened {
            owner: "ada".into(),
        },
        AccountEvent::Deposited { amount: 5 },
    ])
    .when(AccountCommand::Withdraw {
        account: "a".into(),
        amount: 9,
    })
    .then_expect_error(AccountError::InsufficientFunds {
        balance: 5,
        wanted: 9,
    });
    given::<Account>([])
        .when(AccountCommand::Deposit {
            account: "a".into(),
            amount: 1,
        })
        .then_expect_error_matching(|e| *e == AccountError::NotOpen);
    let state = given::<Account>([])
        .when(AccountCommand::Open {
            account: "a".into(),
            owner: "bo".into(),
        })
        .then_expect([AccountEvent::Opened { owner: "bo".into() }]);
    assert_eq!(state.owner.as_deref(), Some("bo"));
}

#[test]
#[should_panic(expected = "expected events")]
fn test_kit_reports_wrong_events() {
    given::<Account>([AccountEvent::Opened {
        owner: "ada".into(),
    }])
    .when(AccountCommand::Deposit {
        account: "a".into(),
        amount: 5,
    })
    .then_expect([AccountEvent::Deposited { amount: 6 }]);
}

/// Commands name their aggregate through the derive.
#[tokio::test]
async fn execute_command_uses_the_derived_id() {
    let disk = MemDisk::new();
    let store = MemStore::open(disk).unwrap();
    let repo = Repository::<Account, _>::new(store.clone());
    repo.execute_command(&AccountCommand::Open {
        account: "z9".into(),
        owner: "ada".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        store
            .stream_head(&StreamId::new("account-z9").unwrap())
            .await
            .unwrap(),
        Some(Version(1))
    );
}

// ---- two repositories over one store (two processes on PostgreSQL are exactly this) ----

/// A switch: `On` is a no-op when it is on, `UseOn` is rejected when it is off.
#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
enum SwitchEvent {
    TurnedOn,
    Toggled,
    Used,
}

#[derive(Clone, Debug, PartialEq)]
enum SwitchCommand {
    On,
    Toggle,
    UseOn,
}

#[derive(Default, Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Switch {
    on: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("the switch is off")]
struct Off;

impl Aggregate for Switch {
    const TYPE: &'static str = "switch";
    type Command = SwitchCommand;
    type Event = SwitchEvent;
    type Error = Off;
    type Services = ();
    fn handle(&self, cmd: &SwitchCommand, _: &()) -> Result<Vec<SwitchEvent>, Off> {
        match cmd {
            SwitchCommand::On if self.on => Ok(vec![]),
            SwitchCommand::On => Ok(vec![SwitchEvent::TurnedOn]),
            SwitchCommand::Toggle => Ok(vec![SwitchEvent::Toggled]),
            SwitchCommand::UseOn if self.on => Ok(vec![SwitchEvent::Used]),
            SwitchCommand::UseOn => Err(Off),
        }
    }
    fn apply(&mut self, e: &SwitchEvent) {
        match e {
            SwitchEvent::TurnedOn => self.on = true,
            SwitchEvent::Toggled => self.on = !self.on,
            SwitchEvent::Used => {}
        }
    }
}

/// Regression (issue 14.6): repository A decided on the state it had cached while B (another
/// repository, another process) had changed the aggregate; a rejection or an empty decision
/// is validated by no append, so A answered from stale state. Every outcome must be the one
/// the current state gives.
async fn two_repositories_decide_on_current_state<S: EventStore + SnapshotStore>(store: S) {
    let a = Repository::<Switch, _>::new(store.clone());
    let b = Repository::<Switch, _>::new(store.clone());
    let ctx = CommandContext::new();
    let run = |repo: &Repository<Switch, S>, cmd: SwitchCommand| {
        let repo = repo.clone();
        let ctx = ctx.clone();
        async move { repo.execute_with("1", &cmd, &ctx).await }
    };
    assert_eq!(
        run(&a, SwitchCommand::On).await.unwrap().version,
        Version(1)
    );
    // B turns it off; A's cache still says on, where `On` would be a no-op.
    run(&b, SwitchCommand::Toggle).await.unwrap();
    let done = run(&a, SwitchCommand::On).await.unwrap();
    assert_eq!(
        (done.version, done.events.len()),
        (Version(3), 1),
        "{done:?}"
    );
    // B turns it off again; A's cache says on, where `UseOn` appends (and conflicts).
    run(&b, SwitchCommand::Toggle).await.unwrap();
    assert!(matches!(
        run(&a, SwitchCommand::UseOn).await,
        Err(RepositoryError::Domain(Off))
    ));
    // B turns it on; A's cache says off, where `UseOn` is rejected.
    run(&b, SwitchCommand::Toggle).await.unwrap();
    let done = run(&a, SwitchCommand::UseOn).await.unwrap();
    assert_eq!(done.version, Version(6));
    // And an empty decision on current state is still empty.
    let done = run(&a, SwitchCommand::On).await.unwrap();
    assert!(done.events.is_empty() && done.version == Version(6));
    assert_eq!(
        b.load("1").await.unwrap(),
        (Switch { on: true }, Version(6))
    );
}

#[tokio::test]
async fn two_repositories_on_the_memory_store() {
    two_repositories_decide_on_current_state(MemStore::new()).await;
}

#[tokio::test]
async fn two_repositories_on_the_sled_store() {
    let dir = tempfile::tempdir().unwrap();
    two_repositories_decide_on_current_state(SledStore::open(dir.path()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_repositories_on_the_postgres_store() {
    use annals_postgres::{PgConfig, PgStore};
    const PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
    let schema = format!("annals_repo2_{}", std::process::id());
    let store = PgStore::open(PgConfig::new(PG, &schema)).await.unwrap();
    store.drop_schema().await.unwrap();
    let store = PgStore::open(PgConfig::new(PG, &schema)).await.unwrap();
    two_repositories_decide_on_current_state(store.clone()).await;
    store.drop_schema().await.unwrap();
}

/// `Executed::attempts` counts the decisions a command took (conflict retries are visible),
/// and the aggregate id comes back from a stream id.
#[tokio::test]
async fn executed_counts_attempts_and_stream_ids_give_aggregate_ids() {
    let store = MemStore::new();
    let a = Repository::<Switch, _>::new(store.clone());
    let b = Repository::<Switch, _>::new(store.clone());
    let ctx = CommandContext::new();
    assert_eq!(
        a.execute_with("1", &SwitchCommand::Toggle, &ctx)
            .await
            .unwrap()
            .attempts,
        1
    );
    // B moves the stream on; A's cached version conflicts once, then A decides again.
    b.execute_with("1", &SwitchCommand::Toggle, &ctx)
        .await
        .unwrap();
    let done = a
        .execute_with("1", &SwitchCommand::Toggle, &ctx)
        .await
        .unwrap();
    assert_eq!((done.attempts, done.version), (2, Version(3)));
    // A replayed command id: no decision at all.
    let once = CommandContext::new().with_command_id(Uuid::now_v7());
    a.execute_with("1", &SwitchCommand::Toggle, &once)
        .await
        .unwrap();
    let again = a
        .execute_with("1", &SwitchCommand::Toggle, &once)
        .await
        .unwrap();
    assert!(again.replayed && again.attempts == 0);

    let stream = a.stream_id("1").unwrap();
    assert_eq!(
        Repository::<Switch, MemStore>::aggregate_id(&stream),
        Some("1")
    );
    let other = StreamId::new("account-1").unwrap();
    assert_eq!(Repository::<Switch, MemStore>::aggregate_id(&other), None);
    assert_eq!(
        StreamId::new("switch-").unwrap().aggregate_id("switch"),
        None
    );
}
