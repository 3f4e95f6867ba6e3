//! The shop: orders, stock, payments and shipments as aggregates on the embedded store, and
//! one order process (a process manager) that reserves the stock, takes the payment within
//! a deadline, ships and confirms — and compensates when the payment is declined or late
//! (a late payment is refunded) or the stock is not there.
//!
//! ```text
//! cargo run --example shop                                  # 200 orders
//! cargo run --example shop -- --orders 1000 --failure-rate 0.2
//! cargo run --example shop -- --orders 20 --inspect o-3     # one process's history
//! ```
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
use annals_example_domain::shop::{self, Gateway, ShopDispatch, StockCommand};

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
            "--help" | "-h" => {
                return Err("flags: --orders N --skus N --stock N --failure-rate F \
                    --late-rate F --payment-window-ms N --in-flight N --seed N --data DIR \
                    --inspect ORDER"
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

    let clock = Arc::new(SystemClock);
    let runner = ProcessRunner::new(store.clone(), ShopDispatch::new(store.clone()))
        .config(ProcessConfig::new().workers(32))
        .start()
        .await?;
    let window = Duration::from_millis(args.window_ms);
    let gateway = Gateway::default()
        .rates(args.failure_rate, args.late_rate)
        .late_by(window * 2)
        .seed(args.seed)
        .start(store.clone(), clock);

    let started = Instant::now();
    shop::place_orders(
        &repos.orders,
        args.orders,
        args.skus,
        args.window_ms,
        args.seed,
        args.in_flight,
    )
    .await?;
    let placed = started.elapsed();

    // Until nothing moves: every event handled, every payment answered (late ones too).
    let limit = Duration::from_secs(120) + window * 4;
    if !shop::settle(&store, &runner, &gateway, limit).await? {
        eprintln!("the run did not settle within {limit:?}");
    }
    let settled = started.elapsed();
    gateway.stop().await;
    runner.stop().await?;

    let books = shop::books(&store, args.orders, args.skus).await?;
    println!(
        "placed {} orders in {:.2?}; all settled after {:.2?} ({:.0} orders/s)",
        args.orders,
        placed,
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
