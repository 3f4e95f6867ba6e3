//! The shop under SIGKILL: a child process places 1,000 orders and runs the order process
//! and the payment gateway (random declines and late payments, short payment windows so
//! that deadlines pass while it is down); the parent kills it at random moments, checks
//! after every kill what must always hold (no deadline fired twice, no process ended twice,
//! no payment captured twice, no stock created or lost), and at the end lets it settle:
//! every order in exactly one terminal state and the books reconciled. More cycles under
//! `ANNALS_STRESS`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::Uuid;
use annals::prelude::*;
use annals::process::{ProcessConfig, ProcessHandle, ProcessRunner, SystemClock};
use annals_example_domain::shop::{
    self, Gateway, GatewayHandle, OrderProcess, ShopDispatch, StockCommand,
};

use crate::common;

const DIR_VAR: &str = "ANNALS_SAGA_CRASH_DIR";
const ORDERS: usize = 1000;
const SKUS: usize = 4;
const WINDOW_MS: u64 = 150;

async fn start(store: &SledStore) -> (ProcessHandle<OrderProcess, SledStore>, GatewayHandle) {
    let repos = ShopDispatch::new(store.clone());
    for k in 0..SKUS {
        let ctx = CommandContext::new().with_command_id(Uuid::new_v5(
            &Uuid::NAMESPACE_URL,
            format!("saga-crash-restock-{k}").as_bytes(),
        ));
        repos
            .stock
            .execute_with(
                &format!("sku-{k}"),
                &StockCommand::Restock { qty: 450 },
                &ctx,
            )
            .await
            .unwrap();
    }
    let runner = ProcessRunner::new(store.clone(), ShopDispatch::new(store.clone()))
        .config(
            ProcessConfig::new()
                .workers(16)
                .checkpoint_every(Duration::from_millis(30)),
        )
        .start()
        .await
        .unwrap();
    let gateway = Gateway::default()
        .rates(0.15, 0.1)
        .late_by(Duration::from_millis(WINDOW_MS * 2))
        .seed(7)
        .start(store.clone(), Arc::new(SystemClock));
    (runner, gateway)
}

async fn place(store: &SledStore) {
    let orders = Repository::new(store.clone());
    shop::place_orders(&orders, ORDERS, SKUS, WINDOW_MS, 7, 64)
        .await
        .unwrap();
}

/// The child: runs the shop until it is killed.
#[test]
fn saga_child() {
    let Some((dir, rt)) = common::child::child_setup(DIR_VAR) else {
        return;
    };
    rt.block_on(async {
        let config = StoreConfig::default().lock_wait(Duration::from_secs(10));
        let store = SledStore::open_async(dir.join("store"), config)
            .await
            .unwrap();
        let (_runner, _gateway) = start(&store).await;
        println!("READY");
        place(&store).await;
        std::future::pending::<()>().await;
    });
}

#[test]
fn the_shop_survives_sigkill_at_random_moments() {
    let stress = std::env::var_os("ANNALS_STRESS").is_some();
    let cycles = if stress { 150 } else { 30 };
    let dir = tempfile::tempdir().unwrap();
    let rt = common::child::runtime();
    let started = Instant::now();
    let mut events = 0;
    common::child::kill_cycles(
        "saga_crash::saga_child",
        DIR_VAR,
        dir.path(),
        cycles,
        (60, 400),
        |cycle, _| {
            rt.block_on(async {
                let config = StoreConfig::default().lock_wait(Duration::from_secs(10));
                let store = SledStore::open_async(dir.path().join("store"), config)
                    .await
                    .unwrap();
                let books = shop::books(&store, ORDERS, SKUS).await.unwrap();
                assert!(
                    books.violations.is_empty(),
                    "cycle {cycle}: {:?}",
                    books.violations
                );
                let head = store.head_position().0;
                assert!(head >= events, "cycle {cycle}: the log shrank");
                events = head;
                store.close().await.unwrap();
            });
        },
    );
    // The last run is not killed: it settles.
    let books = rt.block_on(async {
        let store = SledStore::open(dir.path().join("store")).unwrap();
        let (runner, gateway) = start(&store).await;
        place(&store).await;
        let settled = shop::settle(&store, &runner, &gateway, Duration::from_secs(120))
            .await
            .unwrap();
        assert!(settled, "the shop settles after the last kill");
        gateway.stop().await;
        runner.stop().await.unwrap();
        let books = shop::books(&store, ORDERS, SKUS).await.unwrap();
        store.close().await.unwrap();
        books
    });
    assert!(books.reconcile(), "{books:#?}");
    println!(
        "saga crash cycles: {cycles}; orders {}: completed {}, compensated {} (timed out {}), failed {}; \
         late refunds {}; captured {} refunded {} sold {}; events {}; secs {:.1}",
        books.orders,
        books.completed,
        books.compensated,
        books.timed_out,
        books.failed,
        books.late_refunds,
        books.captured,
        books.refunded,
        books.sold,
        events,
        started.elapsed().as_secs_f64()
    );
}
