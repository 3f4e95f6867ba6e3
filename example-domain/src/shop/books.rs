//! Placing a run's orders, waiting for them to settle, and the books at the end: every order
//! in exactly one terminal state, the stock and the money reconciled.

use std::collections::BTreeMap;

use annals::Uuid;
use annals::prelude::*;
use annals::process::{Outcome, ProcessHandle, ProcessRecord, ProcessState};

use super::gateway::GatewayHandle;

use super::gateway::unit;
use super::{
    Order, OrderCommand, OrderProcess, OrderStatus, Payment, PaymentEvent, PaymentStatus, Stock,
};

/// The id of the `i`-th order of a run.
pub fn order_id(i: usize) -> String {
    format!("o-{i}")
}

/// The SKU and quantity of the `i`-th order of a run over `skus` SKUs.
fn line(seed: u64, i: usize, skus: usize) -> (String, u32) {
    let u = unit(seed ^ 0x5eed, &order_id(i));
    let sku = (u * skus as f64) as usize % skus.max(1);
    let qty = 1 + (unit(seed, &format!("qty-{i}")) * 3.0) as u32;
    (format!("sku-{sku}"), qty)
}

/// Places orders `0..n` (`in_flight` at a time), each with a command id derived from its
/// number, so that placing them again (after a crash) places none twice.
///
/// # Errors
/// The first store error.
pub async fn place_orders<S: EventStore + SnapshotStore>(
    orders: &Repository<Order, S>,
    n: usize,
    skus: usize,
    payment_window_ms: u64,
    seed: u64,
    in_flight: usize,
) -> Result<(), annals::Error> {
    let mut next = 0usize;
    let mut running = tokio::task::JoinSet::new();
    while next < n || !running.is_empty() {
        while next < n && running.len() < in_flight.max(1) {
            let (sku, qty) = line(seed, next, skus);
            let id = order_id(next);
            let command = OrderCommand::Place {
                sku,
                qty,
                amount: 1000 + 100 * u64::from(qty),
                payment_window_ms,
            };
            let ctx = CommandContext::new().with_command_id(Uuid::new_v5(
                &Uuid::NAMESPACE_URL,
                format!("annals:shop:place:{seed}:{id}").as_bytes(),
            ));
            let orders = orders.clone();
            running.spawn(async move {
                match orders.execute_with(&id, &command, &ctx).await {
                    Ok(_) | Err(RepositoryError::Domain(_)) => Ok(()),
                    Err(RepositoryError::Store(e)) => Err(e),
                    Err(e) => Err(annals::Error::storage(e.to_string())),
                }
            });
            next += 1;
        }
        if let Some(done) = running.join_next().await {
            done.map_err(|e| annals::Error::storage(format!("order task: {e}")))??;
        }
    }
    Ok(())
}

/// Waits (at most `limit`) until nothing moves any more: every event handled by the runner,
/// every payment answered by the gateway (late ones too). Returns whether it settled.
///
/// # Errors
/// The runner stopped.
pub async fn settle<S: EventStore + SnapshotStore>(
    store: &S,
    runner: &ProcessHandle<OrderProcess, S>,
    gateway: &GatewayHandle,
    limit: std::time::Duration,
) -> Result<bool, annals::process::ProcessError> {
    let until = std::time::Instant::now() + limit;
    let pause = std::time::Duration::from_millis(20);
    while std::time::Instant::now() < until {
        let left = until.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, runner.idle()).await {
            Ok(r) => r?,
            Err(_) => return Ok(false),
        }
        let head = store.head_position();
        if gateway.answered(head) {
            // Twice, a moment apart: an answer may be about to land.
            tokio::time::sleep(pause).await;
            if store.head_position() == head && gateway.answered(head) {
                return Ok(true);
            }
        }
        tokio::time::sleep(pause).await;
    }
    Ok(false)
}

/// The books of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Books {
    /// Orders placed.
    pub orders: usize,
    /// Orders whose process completed.
    pub completed: usize,
    /// Orders whose process compensated.
    pub compensated: usize,
    /// Of those, because the payment deadline passed.
    pub timed_out: usize,
    /// Orders whose process failed.
    pub failed: usize,
    /// Orders whose process has not ended.
    pub running: usize,
    /// Money captured, in cents.
    pub captured: u64,
    /// Money refunded, in cents.
    pub refunded: u64,
    /// The price of the completed orders, in cents.
    pub sold: u64,
    /// Late payments refunded.
    pub late_refunds: usize,
    /// Units received, free, held and shipped, over every SKU.
    pub stock: (u64, u64, u64, u64),
    /// What must never happen, even in the middle of a run: a deadline fired twice, a
    /// process ended twice, a payment captured twice, stock created or lost.
    pub violations: Vec<String>,
    /// What does not add up at the end of a run (an order still running, units still held,
    /// money kept for a cancelled order, ...).
    pub problems: Vec<String>,
}

impl Books {
    /// Every order ended and everything adds up.
    pub fn reconcile(&self) -> bool {
        self.running == 0 && self.problems.is_empty() && self.violations.is_empty()
    }
}

/// Reads the books of orders `0..n` over `skus` SKUs.
///
/// # Errors
/// Store errors.
pub async fn books<S: EventStore + SnapshotStore>(
    store: &S,
    n: usize,
    skus: usize,
) -> Result<Books, annals::Error> {
    let orders = Repository::<Order, S>::new(store.clone()).cache_capacity(0);
    let payments = Repository::<Payment, S>::new(store.clone()).cache_capacity(0);
    let stock = Repository::<Stock, S>::new(store.clone()).cache_capacity(0);
    let processes =
        Repository::<ProcessState<OrderProcess>, S>::new(store.clone()).cache_capacity(0);
    let mut b = Books {
        orders: n,
        ..Books::default()
    };
    let mut shipped_for: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..n {
        let id = order_id(i);
        let (order, _) = orders.load(&id).await.map_err(store_error)?;
        let (payment, _) = payments.load(&id).await.map_err(store_error)?;
        let history = processes.history(&id).await.map_err(store_error)?;
        let state = processes.load(&id).await.map_err(store_error)?.0;
        let fired = history
            .iter()
            .filter(|h| matches!(h.event, ProcessRecord::DeadlineFired { .. }))
            .count();
        if fired > 1 {
            b.violations
                .push(format!("{id}: the payment deadline fired {fired} times"));
        }
        let ended = history
            .iter()
            .filter(|h| matches!(h.event, ProcessRecord::Ended(_)))
            .count();
        if ended > 1 {
            b.violations.push(format!("{id}: ended {ended} times"));
        }
        let payment_events = store
            .read_stream(
                &StreamId::for_aggregate(super::types::PAYMENT, &id)?,
                VersionRange::ALL,
                Direction::Forward,
                1024,
            )
            .await?;
        let captures = payment_events
            .iter()
            .filter(|e| e.event_type == "PaymentCaptured")
            .count();
        if captures > 1 {
            b.violations
                .push(format!("{id}: payment captured {captures} times"));
        }
        for e in &payment_events {
            match PaymentEvent::decode_payload(&e.event_type, e.codec, &e.payload)? {
                PaymentEvent::PaymentCaptured { amount } => b.captured += amount,
                PaymentEvent::PaymentRefunded { amount } => b.refunded += amount,
                _ => {}
            }
        }
        b.late_refunds += state.state.refunds as usize;
        match state.outcome() {
            None => {
                b.running += 1;
                b.problems
                    .push(format!("{id}: still running ({:?})", state.state.phase));
            }
            Some(Outcome::Completed) => {
                b.completed += 1;
                b.sold += order.amount;
                *shipped_for.entry(order.sku.clone()).or_default() += u64::from(order.qty);
                if order.status != OrderStatus::Confirmed {
                    b.problems
                        .push(format!("{id}: completed but {:?}", order.status));
                }
                if payment.status != PaymentStatus::Captured {
                    b.problems
                        .push(format!("{id}: completed but payment {:?}", payment.status));
                }
            }
            Some(o) => {
                if let Outcome::Compensated { reason } = o {
                    b.compensated += 1;
                    if reason.contains("timed out") {
                        b.timed_out += 1;
                    }
                } else {
                    b.failed += 1;
                }
                if order.status != OrderStatus::Cancelled {
                    b.problems
                        .push(format!("{id}: {} but {:?}", o.kind(), order.status));
                }
                if payment.status == PaymentStatus::Captured {
                    b.problems
                        .push(format!("{id}: {} but the money was kept", o.kind()));
                }
            }
        }
    }
    for k in 0..skus {
        let sku = format!("sku-{k}");
        let (s, _) = stock.load(&sku).await.map_err(store_error)?;
        let held: u64 = s.reserved.values().map(|q| u64::from(*q)).sum();
        b.stock.0 += s.received;
        b.stock.1 += s.available;
        b.stock.2 += held;
        b.stock.3 += s.shipped;
        if s.received != s.available + held + s.shipped {
            b.violations.push(format!("{sku}: units created or lost"));
        }
        if held > 0 {
            b.problems.push(format!("{sku}: {held} units still held"));
        }
        let want = shipped_for.get(&sku).copied().unwrap_or(0);
        if s.shipped != want {
            b.problems.push(format!(
                "{sku}: shipped {} units, completed orders took {want}",
                s.shipped
            ));
        }
    }
    if b.captured - b.refunded.min(b.captured) != b.sold {
        b.problems.push(format!(
            "money: captured {} - refunded {} != sold {}",
            b.captured, b.refunded, b.sold
        ));
    }
    Ok(b)
}

fn store_error<E: std::fmt::Display>(e: RepositoryError<E>) -> annals::Error {
    match e {
        RepositoryError::Store(e) => e,
        other => annals::Error::storage(other.to_string()),
    }
}
