//! Process managers on the shop: the happy path, a declined payment, a deadline that passes
//! (and the late payment refunded), stock that is not there, restarts of the runner, and a
//! property test of random interleavings against a plain model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use annals::Uuid;
use annals::prelude::*;
use annals::process::{
    ManualClock, Outcome, ProcessConfig, ProcessHandle, ProcessRecord, ProcessRunner, ProcessState,
};
use annals::store::MemDisk;
use annals_example_domain::shop::{
    self, OrderCommand, OrderProcess, OrderStatus, PaymentCommand, PaymentStatus, ShopDispatch,
    StockCommand,
};

/// The payment window of the orders in these tests.
const WINDOW: Duration = Duration::from_secs(30);

struct Shop<S: EventStore + SnapshotStore> {
    store: S,
    clock: ManualClock,
    repos: ShopDispatch<S>,
    runner: Option<ProcessHandle<OrderProcess, S>>,
}

impl<S: EventStore + SnapshotStore> Shop<S> {
    async fn open(store: S, clock: ManualClock) -> Self {
        let mut shop = Self {
            repos: ShopDispatch::new(store.clone()),
            store,
            clock,
            runner: None,
        };
        shop.start().await;
        shop
    }

    async fn start(&mut self) {
        let runner = ProcessRunner::new(self.store.clone(), ShopDispatch::new(self.store.clone()))
            .clock(self.clock.clone())
            .config(
                ProcessConfig::new()
                    .workers(4)
                    .checkpoint_every(Duration::from_millis(20)),
            )
            .start()
            .await
            .unwrap();
        self.runner = Some(runner);
    }

    async fn restart(&mut self) {
        if let Some(r) = self.runner.take() {
            r.stop().await.unwrap();
        }
        self.repos = ShopDispatch::new(self.store.clone());
        self.start().await;
    }

    async fn idle(&self) {
        tokio::time::timeout(
            Duration::from_secs(20),
            self.runner.as_ref().unwrap().idle(),
        )
        .await
        .expect("the runner goes idle")
        .unwrap();
    }

    async fn restock(&self, sku: &str, qty: u64) {
        self.repos
            .stock
            .execute(sku, &StockCommand::Restock { qty })
            .await
            .unwrap();
    }

    async fn place(&self, i: usize, sku: &str, qty: u32) {
        let command = OrderCommand::Place {
            sku: sku.into(),
            qty,
            amount: 1000 + 100 * u64::from(qty),
            payment_window_ms: WINDOW.as_millis() as u64,
        };
        self.repos
            .orders
            .execute(&shop::order_id(i), &command)
            .await
            .unwrap();
    }

    /// The gateway's answer, given by hand.
    async fn pay(&self, i: usize, command: PaymentCommand) -> bool {
        self.repos
            .payments
            .execute(&shop::order_id(i), &command)
            .await
            .is_ok()
    }

    async fn outcome(&self, i: usize) -> Option<Outcome> {
        let processes = Repository::<ProcessState<OrderProcess>, S>::new(self.store.clone());
        let (state, _) = processes.load(&shop::order_id(i)).await.unwrap();
        state.outcome().cloned()
    }

    async fn history(&self, i: usize) -> History {
        let processes = Repository::<ProcessState<OrderProcess>, S>::new(self.store.clone());
        processes.history(&shop::order_id(i)).await.unwrap()
    }

    async fn books(&self, n: usize, skus: usize) -> shop::Books {
        shop::books(&self.store, n, skus).await.unwrap()
    }
}

type History = Vec<annals::HistoryEntry<ProcessRecord<OrderProcess>>>;

/// How many records of `history` match.
fn count(history: &History, f: impl Fn(&ProcessRecord<OrderProcess>) -> bool) -> usize {
    history.iter().filter(|h| f(&h.event)).count()
}

async fn mem_shop() -> Shop<MemStore> {
    Shop::open(MemStore::new(), ManualClock::new()).await
}

#[tokio::test]
async fn an_order_goes_through_every_step() {
    let shop = mem_shop().await;
    shop.restock("sku-0", 5).await;
    shop.place(0, "sku-0", 2).await;
    shop.idle().await;
    let (payment, _) = shop.repos.payments.load("o-0").await.unwrap();
    assert_eq!(payment.status, PaymentStatus::Requested);
    assert!(shop.pay(0, PaymentCommand::Capture).await);
    shop.idle().await;
    assert_eq!(shop.outcome(0).await, Some(Outcome::Completed));
    let (order, _) = shop.repos.orders.load("o-0").await.unwrap();
    assert_eq!(order.status, OrderStatus::Confirmed);
    let books = shop.books(1, 1).await;
    assert!(books.reconcile(), "{books:#?}");
    assert_eq!((books.completed, books.stock.3, books.sold), (1, 2, 1200));
    // The payment deadline was cancelled, not fired.
    shop.clock.advance(WINDOW * 2);
    shop.idle().await;
    let history = shop.history(0).await;
    let cancelled = count(&history, |r| {
        matches!(r, ProcessRecord::DeadlineCancelled { .. })
    });
    let fired = count(&history, |r| {
        matches!(r, ProcessRecord::DeadlineFired { .. })
    });
    assert_eq!((cancelled, fired), (1, 0));
    // Every record of the process carries its correlation id; the commands' events too.
    let pid = annals::process::process_uuid("order-process", "o-0");
    assert!(
        history
            .iter()
            .all(|h| h.metadata.correlation_id == Some(pid))
    );
    let shipped = shop.repos.stock.history("sku-0").await.unwrap();
    assert_eq!(shipped.last().unwrap().metadata.correlation_id, Some(pid));
}

#[tokio::test]
async fn a_declined_payment_releases_the_stock_and_cancels_the_order() {
    let shop = mem_shop().await;
    shop.restock("sku-0", 5).await;
    shop.place(0, "sku-0", 3).await;
    shop.idle().await;
    assert!(
        shop.pay(
            0,
            PaymentCommand::Decline {
                reason: "no funds".into()
            }
        )
        .await
    );
    shop.idle().await;
    match shop.outcome(0).await {
        Some(Outcome::Compensated { reason }) => assert!(reason.contains("declined"), "{reason}"),
        other => panic!("expected compensated, got {other:?}"),
    }
    let (stock, _) = shop.repos.stock.load("sku-0").await.unwrap();
    assert_eq!((stock.available, stock.reserved.len()), (5, 0));
    let (order, _) = shop.repos.orders.load("o-0").await.unwrap();
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert!(shop.books(1, 1).await.reconcile());
}

#[tokio::test]
async fn a_passed_deadline_compensates_and_a_late_payment_is_refunded() {
    let mut shop = mem_shop().await;
    shop.restock("sku-0", 5).await;
    shop.place(0, "sku-0", 1).await;
    shop.idle().await;
    // Not yet: a restart in between keeps the deadline (it is in the store).
    shop.clock.advance(WINDOW / 2);
    shop.restart().await;
    shop.idle().await;
    assert_eq!(shop.outcome(0).await, None);
    shop.clock.advance(WINDOW);
    shop.idle().await;
    match shop.outcome(0).await {
        Some(Outcome::Compensated { reason }) => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("expected compensated, got {other:?}"),
    }
    // The payment comes after all: refunded.
    assert!(shop.pay(0, PaymentCommand::Capture).await);
    shop.idle().await;
    let (payment, _) = shop.repos.payments.load("o-0").await.unwrap();
    assert_eq!(payment.status, PaymentStatus::Refunded);
    let books = shop.books(1, 1).await;
    assert!(books.reconcile(), "{books:#?}");
    assert_eq!((books.timed_out, books.late_refunds), (1, 1));
    // It fired once, however often the runner restarts.
    shop.restart().await;
    shop.clock.advance(WINDOW * 3);
    shop.idle().await;
    let history = shop.history(0).await;
    let fired = count(&history, |r| {
        matches!(r, ProcessRecord::DeadlineFired { .. })
    });
    assert_eq!(fired, 1);
}

#[tokio::test]
async fn missing_stock_fails_the_order() {
    let shop = mem_shop().await;
    shop.restock("sku-0", 1).await;
    shop.place(0, "sku-0", 2).await;
    shop.idle().await;
    match shop.outcome(0).await {
        Some(Outcome::Failed { reason }) => assert!(reason.contains("out of stock"), "{reason}"),
        other => panic!("expected failed, got {other:?}"),
    }
    let books = shop.books(1, 1).await;
    assert!(books.reconcile(), "{books:#?}");
    // The process's history says why, step by step: the command, its rejection, the end.
    let history = shop.history(0).await;
    let types: Vec<&str> = history.iter().map(|h| h.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "process.Received",
            "Started",
            "process.CommandIssued",
            "process.CommandRejected",
            "Undoing",
            "process.CommandIssued",
            "process.Ended"
        ]
    );
}

/// The reaction and the commands' events land together: the process's record and the stock
/// reservation are one `append_many`, at adjacent positions.
#[tokio::test]
async fn a_reaction_lands_in_one_atomic_append() {
    let shop = mem_shop().await;
    shop.restock("sku-0", 5).await;
    shop.place(0, "sku-0", 1).await;
    shop.idle().await;
    let log = shop.store.read_all(Position::NONE, 100).await.unwrap();
    let reserved = log
        .iter()
        .find(|e| e.event_type == "StockReserved")
        .unwrap();
    let before = &log[reserved.position.0 as usize - 2];
    assert_eq!(before.stream.as_str(), "order-process-o-0");
    assert_eq!(before.event_type, "process.CommandIssued");
    // Its id derives from the process and the step.
    let issued: ProcessRecord<OrderProcess> =
        ProcessRecord::decode_payload(&before.event_type, before.codec, &before.payload).unwrap();
    let ProcessRecord::CommandIssued(c) = issued else {
        panic!("{issued:?}")
    };
    assert_eq!(reserved.id, annals::event_id_for(c.command_id, 0));
    let _ = Uuid::nil();
}

/// A command carried by the outbox to another service and rejected there: the rejection
/// comes back as an event, and the process compensates (once, however often it comes).
#[tokio::test]
async fn a_rejection_from_another_service_reaches_the_process() {
    use annals::process::RemoteCommand;
    use annals_example_domain::shop::ShopCommand;
    let store = MemStore::new();
    let runner = ProcessRunner::new(
        store.clone(),
        ShopDispatch::new(store.clone()).with_remote_payments(),
    )
    .clock(ManualClock::new())
    .start()
    .await
    .unwrap();
    let repos = ShopDispatch::new(store.clone());
    repos
        .stock
        .execute("sku-0", &StockCommand::Restock { qty: 3 })
        .await
        .unwrap();
    let place = OrderCommand::Place {
        sku: "sku-0".into(),
        qty: 2,
        amount: 1200,
        payment_window_ms: 30_000,
    };
    repos.orders.execute("o-0", &place).await.unwrap();
    runner.idle().await.unwrap();
    // The payment request is in the outbox, not in a payment stream.
    let payment = StreamId::new("payment-o-0").unwrap();
    assert_eq!(store.stream_head(&payment).await.unwrap(), None);
    let filter = annals::process::outbox_filter("order-process");
    let outbox = store
        .read_all_filtered(Position::NONE, 10, &filter)
        .await
        .unwrap();
    let sent: Vec<RemoteCommand<ShopCommand>> = outbox
        .iter()
        .filter_map(|e| {
            RemoteCommand::decode(&e.stream, &e.event_type, e.codec, &e.payload).unwrap()
        })
        .filter(|c: &RemoteCommand<ShopCommand>| matches!(c.command, ShopCommand::Payment { .. }))
        .collect();
    assert_eq!(sent.len(), 1);
    // The other service refuses it; its rejection is taken into this store (twice).
    let reply = sent[0].rejection("card unknown").unwrap();
    let stream = sent[0].reply_stream().unwrap();
    for _ in 0..2 {
        store
            .append(&stream, ExpectedVersion::Any, vec![reply.clone()])
            .await
            .unwrap();
    }
    runner.idle().await.unwrap();
    let (state, _) = runner.processes().load("o-0").await.unwrap();
    match state.outcome() {
        Some(Outcome::Compensated { reason }) => {
            assert!(reason.contains("card unknown"), "{reason}")
        }
        other => panic!("expected compensated, got {other:?}"),
    }
    let (stock, _) = repos.stock.load("sku-0").await.unwrap();
    assert_eq!((stock.available, stock.reserved.len()), (3, 0));
    let history = runner.processes().history("o-0").await.unwrap();
    let rejected = count(&history, |r| {
        matches!(r, ProcessRecord::CommandRejected { .. })
    });
    assert_eq!(rejected, 1);
}

/// Time travel over a process: its state before the payment.
#[tokio::test]
async fn a_process_can_be_loaded_at_an_earlier_version() {
    let shop = mem_shop().await;
    shop.restock("sku-0", 5).await;
    shop.place(0, "sku-0", 1).await;
    shop.idle().await;
    assert!(shop.pay(0, PaymentCommand::Capture).await);
    shop.idle().await;
    let processes = shop.runner.as_ref().unwrap().processes();
    let (now, version) = processes.load("o-0").await.unwrap();
    assert_eq!(now.state.phase, shop::Phase::Done);
    let (then, _) = processes.load_at("o-0", Version(4)).await.unwrap();
    assert_eq!(then.state.phase, shop::Phase::Reserving);
    assert!(version > Version(4));
}

/// A sled store, a runner restarted between every step and the store reopened: the same
/// books.
#[tokio::test]
async fn restarts_of_runner_and_store_lose_and_repeat_nothing() {
    let disk = MemDisk::new();
    let clock = ManualClock::new();
    let mut shop = Shop::open(MemStore::open(disk.clone()).unwrap(), clock.clone()).await;
    shop.restock("sku-0", 3).await;
    for i in 0..4 {
        shop.place(i, if i < 3 { "sku-0" } else { "sku-1" }, 1)
            .await;
    }
    shop.idle().await;
    shop.restart().await;
    assert!(shop.pay(0, PaymentCommand::Capture).await);
    assert!(
        shop.pay(1, PaymentCommand::Decline { reason: "x".into() })
            .await
    );
    // The store goes down with the runner (a simulated power loss) and comes back.
    shop.runner.take().unwrap().stop().await.unwrap();
    drop(shop);
    assert!(disk.crash(), "every handle of the store is gone");
    let mut shop = Shop::open(MemStore::open(disk.clone()).unwrap(), clock.clone()).await;
    shop.idle().await;
    clock.advance(WINDOW * 2);
    shop.idle().await;
    shop.restart().await;
    shop.idle().await;
    let books = shop.books(4, 2).await;
    assert!(books.reconcile(), "{books:#?}");
    assert_eq!(
        (
            books.completed,
            books.compensated,
            books.timed_out,
            books.failed
        ),
        (1, 2, 1, 1)
    );
}

// ---- the property test: random interleavings against a plain model ----

mod model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// One step.
    #[derive(Clone, Debug)]
    pub(super) enum Op {
        Place {
            order: usize,
            qty: u32,
        },
        Capture {
            order: usize,
        },
        Decline {
            order: usize,
        },
        /// Moves the clock by this many seconds.
        Advance {
            secs: u64,
        },
        /// Stops the runner (saving its checkpoint) and starts a new one.
        Restart,
        /// Drops the runner and the store without waiting, loses every unsynced write
        /// (a simulated power loss), reopens both.
        Crash,
    }

    pub(super) fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..5, 1u32..4).prop_map(|(order, qty)| Op::Place { order, qty }),
            3 => (0usize..5).prop_map(|order| Op::Capture { order }),
            2 => (0usize..5).prop_map(|order| Op::Decline { order }),
            2 => (0u64..45).prop_map(|secs| Op::Advance { secs }),
            1 => Just(Op::Restart),
            1 => Just(Op::Crash),
        ]
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Phase {
        Paying,
        Done,
        Undone,
    }

    #[derive(Clone, Debug)]
    struct MOrder {
        qty: u32,
        phase: Phase,
        payment: PaymentStatus,
        due: u64,
        outcome: &'static str,
    }

    /// The plain model: what the shop settles to after each step.
    #[derive(Default)]
    pub(super) struct Model {
        free: u64,
        shipped: u64,
        now: u64,
        orders: BTreeMap<usize, MOrder>,
    }

    impl Model {
        fn new(stock: u64) -> Self {
            Self {
                free: stock,
                ..Self::default()
            }
        }

        fn step(&mut self, op: &Op) {
            match *op {
                Op::Place { order, qty } => {
                    if self.orders.contains_key(&order) {
                        return;
                    }
                    let o = if self.free >= u64::from(qty) {
                        self.free -= u64::from(qty);
                        MOrder {
                            qty,
                            phase: Phase::Paying,
                            payment: PaymentStatus::Requested,
                            due: self.now + WINDOW.as_secs(),
                            outcome: "",
                        }
                    } else {
                        MOrder {
                            qty,
                            phase: Phase::Undone,
                            payment: PaymentStatus::None,
                            due: 0,
                            outcome: "failed",
                        }
                    };
                    self.orders.insert(order, o);
                }
                Op::Capture { order } => {
                    let Some(o) = self.orders.get_mut(&order) else {
                        return;
                    };
                    if o.payment != PaymentStatus::Requested {
                        return;
                    }
                    o.payment = PaymentStatus::Captured;
                    match o.phase {
                        Phase::Paying => {
                            o.phase = Phase::Done;
                            o.outcome = "completed";
                            self.shipped += u64::from(o.qty);
                        }
                        Phase::Undone => o.payment = PaymentStatus::Refunded,
                        Phase::Done => {}
                    }
                }
                Op::Decline { order } => {
                    let Some(o) = self.orders.get_mut(&order) else {
                        return;
                    };
                    if o.payment != PaymentStatus::Requested {
                        return;
                    }
                    o.payment = PaymentStatus::Declined;
                    if o.phase == Phase::Paying {
                        o.phase = Phase::Undone;
                        o.outcome = "compensated";
                        self.free += u64::from(o.qty);
                    }
                }
                Op::Advance { secs } => {
                    self.now += secs;
                    for o in self.orders.values_mut() {
                        if o.phase == Phase::Paying && o.due <= self.now {
                            o.phase = Phase::Undone;
                            o.outcome = "compensated";
                            self.free += u64::from(o.qty);
                        }
                    }
                }
                Op::Restart | Op::Crash => {}
            }
        }
    }

    const STOCK: u64 = 6;

    pub(super) async fn run(ops: &[Op]) {
        let disk = MemDisk::new();
        let clock = ManualClock::at(annals::Timestamp::now());
        let mut shop = Shop::open(MemStore::open(disk.clone()).unwrap(), clock.clone()).await;
        shop.restock("sku-0", STOCK).await;
        let mut model = Model::new(STOCK);
        for (step, op) in ops.iter().enumerate() {
            match *op {
                Op::Place { order, qty } => {
                    let command = OrderCommand::Place {
                        sku: "sku-0".into(),
                        qty,
                        amount: 1000 + 100 * u64::from(qty),
                        payment_window_ms: WINDOW.as_millis() as u64,
                    };
                    let _ = shop
                        .repos
                        .orders
                        .execute(&shop::order_id(order), &command)
                        .await;
                }
                Op::Capture { order } => {
                    shop.pay(order, PaymentCommand::Capture).await;
                }
                Op::Decline { order } => {
                    let decline = PaymentCommand::Decline {
                        reason: "no".into(),
                    };
                    shop.pay(order, decline).await;
                }
                Op::Advance { secs } => clock.advance(Duration::from_secs(secs)),
                Op::Restart => shop.restart().await,
                Op::Crash => {
                    drop(shop);
                    let mut waited = 0;
                    while !disk.crash() {
                        assert!(waited < 500, "step {step}: the store never closed");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        waited += 1;
                    }
                    let store = MemStore::open(disk.clone()).unwrap();
                    shop = Shop::open(store, clock.clone()).await;
                }
            }
            shop.idle().await;
            model.step(op);
            check(&shop, &model, step, op).await;
        }
    }

    async fn check(shop: &Shop<MemStore>, model: &Model, step: usize, op: &Op) {
        let at = format!("step {step} ({op:?})");
        for (&i, want) in &model.orders {
            let got = shop.outcome(i).await;
            let kind = got.as_ref().map_or("", Outcome::kind);
            assert_eq!(kind, want.outcome, "{at}: o-{i}");
            let (payment, _) = shop.repos.payments.load(&shop::order_id(i)).await.unwrap();
            assert_eq!(payment.status, want.payment, "{at}: payment of o-{i}");
        }
        let (stock, _) = shop.repos.stock.load("sku-0").await.unwrap();
        let got = (stock.available, stock.shipped);
        assert_eq!(got, (model.free, model.shipped), "{at}: stock");
        let n = model.orders.keys().max().map_or(0, |m| m + 1);
        let books = shop.books(n, 1).await;
        assert!(books.violations.is_empty(), "{at}: {:?}", books.violations);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: crate::common::cases(24, 500),
        max_shrink_iters: 500,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    #[test]
    fn the_shop_agrees_with_a_plain_model(ops in proptest::collection::vec(model::op(), 1..30)) {
        crate::common::child::runtime().block_on(model::run(&ops));
    }
}

/// The shop on PostgreSQL: every reaction an `append_many` there; a restart between steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_settles_on_postgres() {
    use annals_postgres::{PgConfig, PgStore};
    const PG: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
    let schema = format!("annals_shop_{}", std::process::id());
    let store = PgStore::open(PgConfig::new(PG, &schema)).await.unwrap();
    store.drop_schema().await.unwrap();
    let store = PgStore::open(PgConfig::new(PG, &schema)).await.unwrap();
    let mut shop = Shop::open(store.clone(), ManualClock::new()).await;
    // Which orders get the stock must not depend on the order the workers take them in:
    // sku-1 has none.
    shop.restock("sku-0", 12).await;
    for i in 0..8 {
        shop.place(i, if i < 6 { "sku-0" } else { "sku-1" }, 2)
            .await;
    }
    shop.idle().await;
    shop.restart().await;
    for i in 0..3 {
        assert!(shop.pay(i, PaymentCommand::Capture).await);
    }
    assert!(
        shop.pay(
            3,
            PaymentCommand::Decline {
                reason: "no".into()
            }
        )
        .await
    );
    shop.idle().await;
    shop.clock.advance(WINDOW * 2);
    shop.idle().await;
    assert!(shop.pay(4, PaymentCommand::Capture).await); // late: refunded
    shop.idle().await;
    let books = shop.books(8, 2).await;
    assert!(books.reconcile(), "{books:#?}");
    assert_eq!(
        (
            books.completed,
            books.compensated,
            books.timed_out,
            books.failed,
            books.late_refunds
        ),
        (3, 3, 2, 2, 1)
    );
    shop.runner.take().unwrap().stop().await.unwrap();
    store.drop_schema().await.unwrap();
}

/// An event no reaction can be made to (its key makes no stream id) is skipped and counted;
/// the runner goes on with the next.
#[tokio::test]
async fn an_event_that_makes_no_process_is_skipped() {
    let shop = mem_shop().await;
    shop.restock("sku-0", 5).await;
    // `order-<id>` is a valid stream; `order-process-<id>` is longer than 256 bytes.
    let long = "x".repeat(245);
    let place = OrderCommand::Place {
        sku: "sku-0".into(),
        qty: 1,
        amount: 1100,
        payment_window_ms: 30_000,
    };
    shop.repos.orders.execute(&long, &place).await.unwrap();
    shop.place(0, "sku-0", 1).await;
    shop.idle().await;
    assert!(shop.pay(0, PaymentCommand::Capture).await);
    shop.idle().await;
    assert_eq!(shop.outcome(0).await, Some(Outcome::Completed));
    assert_eq!(shop.runner.as_ref().unwrap().status().skipped, 1);
}

/// Two runners on one store (say, two instances of a service by mistake): both react to
/// every event, one `append_many` wins each race, the other conflicts, reloads and finds
/// the event handled. Every order still ends once, every deadline fires once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_on_one_store_act_once() {
    let store = MemStore::new();
    let clock = ManualClock::new();
    let shop = Shop::open(store.clone(), clock.clone()).await;
    let mut other = Shop::open(store.clone(), clock.clone()).await;
    shop.restock("sku-0", 100).await;
    for i in 0..20 {
        shop.place(i, "sku-0", 1).await;
    }
    shop.idle().await;
    other.idle().await;
    for i in 0..10 {
        assert!(shop.pay(i, PaymentCommand::Capture).await);
    }
    shop.idle().await;
    other.idle().await;
    clock.advance(WINDOW * 2);
    shop.idle().await;
    other.idle().await;
    let books = shop.books(20, 1).await;
    assert!(books.reconcile(), "{books:#?}");
    assert_eq!((books.completed, books.timed_out), (10, 10));
    for i in 10..20 {
        let history = shop.history(i).await;
        let fired = count(&history, |r| {
            matches!(r, ProcessRecord::DeadlineFired { .. })
        });
        assert_eq!(fired, 1, "o-{i}");
    }
    other.runner.take().unwrap().stop().await.unwrap();
}
