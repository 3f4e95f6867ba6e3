//! The shop: orders, stock, payments and shipments as aggregates on the embedded store, and
//! one order process (a process manager) that reserves the stock, takes the payment within
//! a deadline, ships and confirms — and compensates when the payment is declined or late
//! (a late payment is refunded) or the stock is not there.
//!
//! ```text
//! cargo run --example shop                                  # 200 orders
//! cargo run --example shop -- --orders 1000 --failure-rate 0.2
//! cargo run --example shop -- --orders 20 --inspect o-3     # one process's history
//! cargo run --example shop -- --nats                        # payments as a service apart
//! ```
//!
//! With `--nats` the payments (the payment aggregate and the gateway) are a service of their
//! own with a store of its own, talking to the shop over NATS JetStream (127.0.0.1:4222, or
//! `ANNALS_NATS_URL`) with `annals-broker` and `annals-nats`: the order process's payment
//! commands go out through its outbox (its `CommandIssued` records, published by a relay)
//! to the payments service's idempotent inbox, which executes them with their command ids;
//! the payment events (and any rejection) come back through the payments service's relay to
//! the shop's inbox, which takes them into the shop's store, where the process hears them.
//! The JetStream streams `ANNALS_SHOP_ORDERS` and `ANNALS_SHOP_PAYMENTS` are created afresh
//! on every run.
//!
//! Flags: `--orders N` (200), `--skus N` (5), `--stock N` units per SKU (about 90% of what
//! the orders ask for, so some fail), `--failure-rate F` share of payments declined (0.1),
//! `--late-rate F` share of payments that come after the deadline (0.05),
//! `--payment-window-ms N` (500), `--in-flight N` orders placed at a time (64), `--seed N`,
//! `--data DIR` (a fresh temporary directory by default), `--inspect ORDER`.
//!
//! The run ends by itself: a summary (completed / compensated / timed out / failed, the
//! stock and the money reconciled) and exit code 0 when every order reached a terminal state
//! and the books reconcile, 1 otherwise.

// A program: it talks to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::Uuid;
use annals::prelude::*;
use annals::process::{ProcessConfig, ProcessRunner, SystemClock};
use annals_example_domain::shop::{
    self, Gateway, GatewayHandle, Order, ShopDispatch, StockCommand,
};

struct Args {
    orders: usize,
    skus: usize,
    stock: Option<u64>,
    failure_rate: f64,
    late_rate: f64,
    window_ms: u64,
    in_flight: usize,
    seed: u64,
    data: Option<std::path::PathBuf>,
    inspect: Option<String>,
    nats: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        orders: 200,
        skus: 5,
        stock: None,
        failure_rate: 0.1,
        late_rate: 0.05,
        window_ms: 500,
        in_flight: 64,
        seed: 1,
        data: None,
        inspect: None,
        nats: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
        match flag.as_str() {
            "--orders" => a.orders = value()?.parse().map_err(|e| bad(&e))?,
            "--skus" => a.skus = value()?.parse::<usize>().map_err(|e| bad(&e))?.max(1),
            "--stock" => a.stock = Some(value()?.parse().map_err(|e| bad(&e))?),
            "--failure-rate" => a.failure_rate = value()?.parse().map_err(|e| bad(&e))?,
            "--late-rate" => a.late_rate = value()?.parse().map_err(|e| bad(&e))?,
            "--payment-window-ms" => a.window_ms = value()?.parse().map_err(|e| bad(&e))?,
            "--in-flight" => a.in_flight = value()?.parse().map_err(|e| bad(&e))?,
            "--seed" => a.seed = value()?.parse().map_err(|e| bad(&e))?,
            "--data" => a.data = Some(value()?.into()),
            "--inspect" => a.inspect = Some(value()?),
            "--nats" => a.nats = true,
            "--help" | "-h" => {
                return Err("flags: --orders N --skus N --stock N --failure-rate F \
                    --late-rate F --payment-window-ms N --in-flight N --seed N --data DIR \
                    --inspect ORDER --nats"
                    .into());
            }
            other => return Err(format!("unknown flag {other} (try --help)")),
        }
    }
    if !(0.0..=1.0).contains(&(a.failure_rate + a.late_rate)) {
        return Err("--failure-rate plus --late-rate must lie in 0..=1".into());
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<bool, Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = args
        .data
        .clone()
        .unwrap_or_else(|| temp.path().join("shop"));
    let store = SledStore::open_async(&dir, StoreConfig::default()).await?;
    println!(
        "shop: {} orders on the sled store in {}",
        args.orders,
        dir.display()
    );

    // Stock: about 90% of what the orders ask for (two units each on average).
    let per_sku = args
        .stock
        .unwrap_or_else(|| (args.orders as u64 * 2 * 9 / 10 / args.skus as u64).max(1));
    let repos = ShopDispatch::new(store.clone());
    for k in 0..args.skus {
        let ctx = CommandContext::new().with_command_id(Uuid::new_v5(
            &Uuid::NAMESPACE_URL,
            format!("annals:shop:restock:{}:{k}", args.seed).as_bytes(),
        ));
        repos
            .stock
            .execute_with(
                &format!("sku-{k}"),
                &StockCommand::Restock { qty: per_sku },
                &ctx,
            )
            .await?;
    }

    let started = Instant::now();
    let settled = if args.nats {
        nats::run(&args, &store, &dir).await?
    } else {
        local(&args, &store).await?
    };
    let books = shop::books(&store, args.orders, args.skus).await?;
    let _ = started;
    println!(
        "{} orders settled after {:.2?} ({:.0} orders/s)",
        args.orders,
        settled,
        args.orders as f64 / settled.as_secs_f64()
    );
    println!(
        "completed {}, compensated {} (payment timed out {}, declined {}), failed {} (out of stock), running {}",
        books.completed,
        books.compensated,
        books.timed_out,
        books.compensated - books.timed_out,
        books.failed,
        books.running
    );
    println!(
        "money: captured {} - refunded {} (late payments refunded: {}) = {}; completed orders sold {}",
        cents(books.captured),
        cents(books.refunded),
        books.late_refunds,
        cents(books.captured.saturating_sub(books.refunded)),
        cents(books.sold)
    );
    let (received, free, held, shipped) = books.stock;
    println!("stock: received {received} = free {free} + held {held} + shipped {shipped}");
    for v in &books.violations {
        println!("VIOLATION: {v}");
    }
    for p in &books.problems {
        println!("PROBLEM: {p}");
    }

    if let Some(order) = &args.inspect {
        inspect(&store, order).await?;
    }
    let ok = books.reconcile();
    println!(
        "{}",
        if ok {
            "every order ended once; the books reconcile"
        } else {
            "the books do NOT reconcile"
        }
    );
    store.close().await?;
    Ok(ok)
}

/// Every service on the one store: payment commands are decided with the reaction.
async fn local(args: &Args, store: &SledStore) -> Result<Duration, Box<dyn std::error::Error>> {
    let store = store.clone();
    let repos = ShopDispatch::new(store.clone());
    let runner = ProcessRunner::new(store.clone(), ShopDispatch::new(store.clone()))
        .config(ProcessConfig::new().workers(32))
        .start()
        .await?;
    let gateway = gateway(args, &store);
    let started = Instant::now();
    place(args, &repos.orders).await?;
    // Until nothing moves: every event handled, every payment answered (late ones too).
    let limit = settle_limit(args);
    if !shop::settle(&store, &runner, &gateway, limit).await? {
        eprintln!("the run did not settle within {limit:?}");
    }
    let settled = started.elapsed();
    gateway.stop().await;
    runner.stop().await?;
    Ok(settled)
}

/// The payment gateway the flags describe, answering the requests in `store`.
fn gateway(args: &Args, store: &SledStore) -> GatewayHandle {
    Gateway::default()
        .rates(args.failure_rate, args.late_rate)
        .late_by(Duration::from_millis(args.window_ms) * 2)
        .seed(args.seed)
        .start(store.clone(), Arc::new(SystemClock))
}

/// Places the run's orders.
async fn place(args: &Args, orders: &Repository<Order, SledStore>) -> Result<(), annals::Error> {
    shop::place_orders(
        orders,
        args.orders,
        args.skus,
        args.window_ms,
        args.seed,
        args.in_flight,
    )
    .await
}

/// How long a run may take to settle once its orders are placed.
fn settle_limit(args: &Args) -> Duration {
    Duration::from_secs(120) + Duration::from_millis(args.window_ms) * 4
}

fn cents(c: u64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

/// Prints the history of the process of `order`, with correlation and causation ids.
async fn inspect(store: &SledStore, order: &str) -> Result<(), Box<dyn std::error::Error>> {
    use annals::process::ProcessState;
    let processes = Repository::<ProcessState<shop::OrderProcess>, _>::new(store.clone());
    let history = processes.history(order).await?;
    println!("\nprocess order-process-{order}: {} records", history.len());
    let short = |id: Option<Uuid>| id.map_or("-".to_owned(), |u| u.to_string()[..8].to_owned());
    for h in &history {
        println!(
            "  v{:<3} @{:<6} {}  correlation {} causation {}  {:?}",
            h.version.0,
            h.position.0,
            h.event_type,
            short(h.metadata.correlation_id),
            short(h.metadata.causation_id),
            h.event
        );
    }
    let (state, _) = processes.load(order).await?;
    match state.outcome() {
        Some(o) => println!("  ended: {o:?}"),
        None => println!("  still running ({:?})", state.state.phase),
    }
    Ok(())
}

/// Payments as a service apart, over NATS JetStream.
mod nats {
    use super::*;
    use annals::Error;
    use annals::process::{REMOTE_REJECTION, RemoteCommand, outbox_filter};
    use annals_broker::{
        FileCheckpoints, HandleError, Inbox, InboxConfig, InboxHandler, IncomingEvent, Publisher,
        Relay, RelayConfig, StoreDeadLetters,
    };
    use annals_example_domain::shop::{OrderProcess, Payment, ShopCommand};
    use annals_nats::async_nats::{self, jetstream};
    use annals_nats::{ConsumerSettings, JetStreamConsumer, JetStreamPublisher, StreamSettings};

    /// The payments service's inbox: executes the order process's payment commands.
    struct ExecutePayments {
        store: SledStore,
        payments: Repository<Payment, SledStore>,
    }

    impl InboxHandler for ExecutePayments {
        async fn handle(&self, e: &IncomingEvent) -> Result<(), HandleError> {
            let Some(sent) =
                RemoteCommand::<ShopCommand>::decode(&e.stream, &e.event_type, e.codec, &e.payload)
                    .map_err(|err| HandleError::reject(err.to_string()))?
            else {
                return Ok(());
            };
            let ShopCommand::Payment { order, command } = &sent.command else {
                return Ok(()); // not for payments
            };
            let ctx = CommandContext::new()
                .with_command_id(sent.command_id)
                .with_metadata(e.caused_metadata());
            match self.payments.execute_with(order, command, &ctx).await {
                Ok(_) => Ok(()),
                Err(RepositoryError::Domain(why)) => {
                    // The rejection goes back to the process through this service's outbox.
                    let reply = sent
                        .rejection(why.to_string())
                        .map_err(HandleError::retry)?;
                    let stream = sent.reply_stream().map_err(HandleError::retry)?;
                    self.store
                        .append(&stream, ExpectedVersion::Any, vec![reply])
                        .await
                        .map(|_| ())
                        .map_err(HandleError::retry)
                }
                Err(e) => Err(HandleError::retry(e)),
            }
        }
    }

    /// The shop's inbox: takes the payments service's events into the shop's store (same
    /// stream, same event id: taking one in twice stores it once), where the process hears
    /// them.
    struct Import {
        store: SledStore,
    }

    impl InboxHandler for Import {
        async fn handle(&self, e: &IncomingEvent) -> Result<(), HandleError> {
            match self
                .store
                .append(&e.stream, ExpectedVersion::Any, vec![e.to_data()])
                .await
            {
                Ok(_) => Ok(()),
                Err(Error::DuplicateEventId { .. }) => Ok(()),
                Err(err) => Err(HandleError::retry(err)),
            }
        }
    }

    pub(super) async fn run(
        args: &Args,
        shop_store: &SledStore,
        dir: &std::path::Path,
    ) -> Result<Duration, Box<dyn std::error::Error>> {
        let url = std::env::var("ANNALS_NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
        let client = async_nats::connect(&url)
            .await
            .map_err(|e| format!("cannot reach NATS at {url} (start `nats-server -js`): {e}"))?;
        let js = jetstream::new(client.clone());
        let (orders_js, payments_js) = ("ANNALS_SHOP_ORDERS", "ANNALS_SHOP_PAYMENTS");
        for s in [orders_js, payments_js] {
            let _ = js.delete_stream(s).await; // a fresh run
        }
        let shop_pub = JetStreamPublisher::new(
            client.clone(),
            StreamSettings::for_prefix(orders_js, "shop.orders"),
        );
        let payments_pub = JetStreamPublisher::new(
            client.clone(),
            StreamSettings::for_prefix(payments_js, "shop.payments"),
        );
        shop_pub.prepare().await?;
        payments_pub.prepare().await?;
        let payments_in =
            JetStreamConsumer::open(client.clone(), ConsumerSettings::new(orders_js, "payments"))
                .await?;
        let shop_in =
            JetStreamConsumer::open(client.clone(), ConsumerSettings::new(payments_js, "shop"))
                .await?;

        let root = dir.parent().unwrap_or(dir).to_path_buf();
        let payments_store =
            SledStore::open_async(root.join("payments"), StoreConfig::default()).await?;
        println!(
            "payments service: its own store in {}",
            root.join("payments").display()
        );

        // The shop: the order process, payments left to the outbox.
        let runner = ProcessRunner::new(
            shop_store.clone(),
            ShopDispatch::new(shop_store.clone()).with_remote_payments(),
        )
        .config(ProcessConfig::new().workers(32))
        .start()
        .await?;
        let shop_relay = Relay::start(
            shop_store.clone(),
            shop_pub,
            FileCheckpoints::new(root.join("shop-checkpoints")),
            RelayConfig::new("shop-outbox", "shop", "shop.orders").filter(outbox_filter(
                <OrderProcess as annals::process::Process>::TYPE,
            )),
        );
        let shop_inbox = Inbox::start(
            shop_in,
            Import {
                store: shop_store.clone(),
            },
            StoreDeadLetters::new(shop_store.clone()),
            InboxConfig::new("shop"),
        );

        // The payments service: its inbox, its gateway, its outbox.
        let payments_inbox = Inbox::start(
            payments_in,
            ExecutePayments {
                store: payments_store.clone(),
                payments: Repository::new(payments_store.clone()),
            },
            StoreDeadLetters::new(payments_store.clone()),
            InboxConfig::new("payments"),
        );
        let gateway = gateway(args, &payments_store);
        let payments_relay = Relay::start(
            payments_store.clone(),
            payments_pub,
            FileCheckpoints::new(root.join("payments-checkpoints")),
            RelayConfig::new("payments-outbox", "payments", "shop.payments").filter(
                Filter::event_types([
                    "PaymentRequested",
                    "PaymentCaptured",
                    "PaymentDeclined",
                    "PaymentRefunded",
                    REMOTE_REJECTION,
                ]),
            ),
        );

        let started = Instant::now();
        place(args, &Repository::new(shop_store.clone())).await?;
        // Until nothing moves in either service (late payments included).
        let until = Instant::now() + settle_limit(args);
        let mut quiet = 0;
        let mut last = (Position::NONE, Position::NONE);
        while quiet < 5 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let heads = (shop_store.head_position(), payments_store.head_position());
            let still = heads == last
                && gateway.answered(heads.1)
                && runner.status().handled >= heads.0
                && shop_relay.status().acked >= heads.0
                && payments_relay.status().acked >= heads.1;
            quiet = if still { quiet + 1 } else { 0 };
            last = heads;
        }
        if quiet < 5 {
            eprintln!("the run did not settle in time");
        }
        let settled = started.elapsed();
        gateway.stop().await;
        runner.stop().await?;
        payments_inbox.shutdown().await;
        shop_inbox.shutdown().await;
        shop_relay.shutdown().await;
        payments_relay.shutdown().await;
        println!(
            "payments service: {} events in its store",
            payments_store.head_position().0
        );
        payments_store.close().await?;
        Ok(settled)
    }
}
