//! `saga`: orders per second through the whole order process (reserve, pay, ship, confirm)
//! on the embedded store with durable acks, 64 orders in flight, beside W1's C=8 commands
//! per second in the same run. Each order is about six commands and two dozen events (the
//! aggregates' and the process's own records).
//!
//! ```text
//! cargo bench --bench workloads -- saga [--commands ORDERS] [--concurrency IN_FLIGHT]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use annals::prelude::*;
use annals::process::{ProcessConfig, ProcessRunner, SystemClock};
use annals_example_domain::shop::{self, Gateway, OrderCommand, ShopDispatch, StockCommand};
use tokio::sync::Semaphore;

use super::{Args, line, w1_commands};

pub(crate) async fn saga(args: &Args) {
    let orders = args.commands.unwrap_or(4000);
    let in_flight = args.concurrency.unwrap_or(64);

    // W1 at C=8, in the same process, on a store of its own.
    let w1_commands_n = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let (secs, w1_rate) = w1_commands(store, 8, 10_000, w1_commands_n, args).await;
    line(
        "annals-sled",
        "w1",
        w1_commands_n,
        secs,
        ",\"concurrency\":8,\"accounts\":10000,\"cache\":true",
    );

    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let repos = ShopDispatch::new(store.clone());
    let skus = 16;
    for k in 0..skus {
        repos
            .stock
            .execute(&format!("sku-{k}"), &StockCommand::Restock { qty: 1 << 40 })
            .await
            .unwrap();
    }
    let runner = ProcessRunner::new(store.clone(), ShopDispatch::new(store.clone()))
        .config(ProcessConfig::new().workers(64))
        .start()
        .await
        .unwrap();
    let gateway = Gateway::default()
        .rates(0.0, 0.0)
        .start(store.clone(), Arc::new(SystemClock));

    // Keeps `in_flight` orders in the process: a new one is placed when one is confirmed.
    let permits = Arc::new(Semaphore::new(in_flight));
    let confirmed = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (permits, confirmed) = (Arc::clone(&permits), Arc::clone(&confirmed));
        let mut sub = store.subscribe_filtered(
            store.head_position().next(),
            Filter::event_types(["OrderConfirmed", "OrderCancelled"]),
        );
        tokio::spawn(async move {
            while let Some(Ok(_)) = sub.next().await {
                permits.add_permits(1);
                if confirmed.fetch_add(1, Ordering::AcqRel) + 1 == orders {
                    return;
                }
            }
        })
    };
    let started = Instant::now();
    for i in 0..orders {
        permits.acquire().await.unwrap().forget();
        let orders = repos.orders.clone();
        tokio::spawn(async move {
            let command = OrderCommand::Place {
                sku: format!("sku-{}", i % skus),
                qty: 1,
                amount: 1000,
                payment_window_ms: 60_000,
            };
            orders.execute(&shop::order_id(i), &command).await.unwrap();
        });
    }
    tokio::time::timeout(Duration::from_secs(600), watcher)
        .await
        .expect("every order settles")
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let events = store.head_position().0;
    gateway.stop().await;
    runner.stop().await.unwrap();
    let books = shop::books(&store, orders, skus).await.unwrap();
    assert!(books.reconcile(), "{:?}", books.problems);
    assert_eq!(books.completed, orders);
    let rate = orders as f64 / secs;
    let target = 0.5 * w1_rate / 6.0;
    line(
        "annals-sled",
        "saga",
        orders,
        secs,
        &format!(
            ",\"in_flight\":{in_flight},\"events\":{events},\"w1_c8_commands_per_sec\":{w1_rate:.0},\"target_orders_per_sec\":{target:.0},\"ratio_to_target\":{:.2}",
            rate / target
        ),
    );
}
