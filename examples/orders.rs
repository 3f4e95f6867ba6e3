//! Two services that talk through NATS JetStream: **orders** and **billing**, each with its
//! own embedded store, outbox relay and idempotent inbox.
//!
//! An order placed in orders is published (`OrderPlaced`), billing's inbox charges it
//! (`PaymentCaptured`, with the order's correlation id and the incoming event as its
//! causation), billing's relay publishes the payment, and orders' inbox confirms the order
//! (`OrderConfirmed`). Every hop is printed with its correlation and causation ids.
//!
//! ```text
//! cargo run --example orders -- --orders 20
//! ```
//!
//! Needs NATS with JetStream on 127.0.0.1:4222 (`nats-server -js`; set `ANNALS_NATS_URL` for
//! another server). The example's JetStream streams (`ANNALS_EXAMPLE_ORDERS`,
//! `ANNALS_EXAMPLE_BILLING`) are created afresh on every run. It ends by itself with a
//! summary and exit code 0 when every order was paid and confirmed.

// A program: it talks to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use annals::prelude::*;
use annals::{RecordedEvent, Uuid};
use annals_broker::{
    FileCheckpoints, HandleError, Inbox, InboxConfig, InboxHandler, IncomingEvent, Relay,
    RelayConfig, StoreDeadLetters, command_id_for,
};
use annals_nats::async_nats::{self, jetstream};
use annals_nats::{ConsumerSettings, JetStreamConsumer, JetStreamPublisher, StreamSettings};
use serde::{Deserialize, Serialize};

// ---- the orders service's domain ----

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
enum OrderEvent {
    OrderPlaced { amount: u64 },
    OrderConfirmed { payment: String },
}

#[derive(Clone, Debug)]
enum OrderCommand {
    Place { amount: u64 },
    Confirm { payment: String },
}

#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error("the order exists already")]
    Exists,
    #[error("no such order")]
    Unknown,
}

#[derive(Default, Clone, Serialize, Deserialize)]
struct Order {
    amount: Option<u64>,
    payment: Option<String>,
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    fn handle(&self, command: &OrderCommand, _: &()) -> Result<Vec<OrderEvent>, OrderError> {
        match command {
            OrderCommand::Place { amount } if self.amount.is_none() => {
                Ok(vec![OrderEvent::OrderPlaced { amount: *amount }])
            }
            OrderCommand::Place { .. } => Err(OrderError::Exists),
            OrderCommand::Confirm { .. } if self.amount.is_none() => Err(OrderError::Unknown),
            // Confirming twice changes nothing.
            OrderCommand::Confirm { .. } if self.payment.is_some() => Ok(vec![]),
            OrderCommand::Confirm { payment } => Ok(vec![OrderEvent::OrderConfirmed {
                payment: payment.clone(),
            }]),
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::OrderPlaced { amount } => self.amount = Some(*amount),
            OrderEvent::OrderConfirmed { payment } => self.payment = Some(payment.clone()),
        }
    }
}

// ---- the billing service's domain ----

#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
enum PaymentEvent {
    PaymentCaptured { order: String, amount: u64 },
}

#[derive(Debug, thiserror::Error)]
#[error("the payment is captured already")]
struct AlreadyPaid;

#[derive(Default, Clone, Serialize, Deserialize)]
struct Payment {
    captured: bool,
}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = (String, u64);
    type Event = PaymentEvent;
    type Error = AlreadyPaid;
    type Services = ();

    fn handle(
        &self,
        (order, amount): &(String, u64),
        _: &(),
    ) -> Result<Vec<PaymentEvent>, AlreadyPaid> {
        if self.captured {
            return Err(AlreadyPaid);
        }
        Ok(vec![PaymentEvent::PaymentCaptured {
            order: order.clone(),
            amount: *amount,
        }])
    }

    fn apply(&mut self, _: &PaymentEvent) {
        self.captured = true;
    }
}

// ---- the inboxes ----

/// The last 8 hex digits of an id (the random end of a UUID v7).
fn short(id: Option<Uuid>) -> String {
    id.map_or_else(
        || "-".into(),
        |u| {
            let s = u.simple().to_string();
            s[s.len() - 8..].to_owned()
        },
    )
}

fn hop(to: &str, e: &IncomingEvent) {
    println!(
        "{:>8} <- {:<16} {:<12} correlation {} causation {} (event {})",
        to,
        e.event_type,
        e.stream,
        short(e.metadata.correlation_id),
        short(e.metadata.causation_id),
        short(Some(*e.id.as_uuid()))
    );
}

/// A repository error as an inbox outcome: rejections are parked, the rest retried.
fn outcome<E: std::fmt::Display>(
    r: Result<(), annals::RepositoryError<E>>,
) -> Result<(), HandleError> {
    match r {
        Ok(()) => Ok(()),
        Err(annals::RepositoryError::Domain(e)) => Err(HandleError::reject(e.to_string())),
        Err(annals::RepositoryError::Store(e)) => Err(e.into()),
        Err(e) => Err(HandleError::retry(e.to_string())),
    }
}

/// Billing charges every placed order.
struct Charge {
    payments: Repository<Payment, SledStore>,
}

impl InboxHandler for Charge {
    async fn handle(&self, e: &IncomingEvent) -> Result<(), HandleError> {
        let Ok(OrderEvent::OrderPlaced { amount }) =
            OrderEvent::decode_payload(&e.event_type, e.codec, &e.payload)
        else {
            return Ok(()); // not for billing
        };
        hop("billing", e);
        let order = e.stream.to_string();
        let ctx = CommandContext::new()
            .with_command_id(command_id_for("billing", e))
            .with_metadata(e.caused_metadata());
        outcome(
            self.payments
                .execute_with(&order, &(order.clone(), amount), &ctx)
                .await
                .map(|_| ()),
        )
    }
}

/// Orders confirms every paid order.
struct Confirm {
    orders: Repository<Order, SledStore>,
}

impl InboxHandler for Confirm {
    async fn handle(&self, e: &IncomingEvent) -> Result<(), HandleError> {
        let Ok(PaymentEvent::PaymentCaptured { order, .. }) =
            PaymentEvent::decode_payload(&e.event_type, e.codec, &e.payload)
        else {
            return Ok(());
        };
        hop("orders", e);
        let id = StreamId::new(order)
            .ok()
            .and_then(|s| s.aggregate_id(Order::TYPE).map(str::to_owned))
            .ok_or_else(|| HandleError::reject("a payment for something that is not an order"))?;
        let ctx = CommandContext::new()
            .with_command_id(command_id_for("orders", e))
            .with_metadata(e.caused_metadata());
        let payment = e.stream.to_string();
        outcome(
            self.orders
                .execute_with(&id, &OrderCommand::Confirm { payment }, &ctx)
                .await
                .map(|_| ()),
        )
    }
}

// ---- wiring ----

fn parse_orders() -> Result<u64, String> {
    let mut args = std::env::args().skip(1);
    let mut n = 5;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--orders" => {
                n = args
                    .next()
                    .ok_or("--orders needs a number")?
                    .parse()
                    .map_err(|e| format!("--orders: {e}"))?;
            }
            other => return Err(format!("unknown argument {other:?}; use --orders N")),
        }
    }
    Ok(n)
}

async fn all(store: &SledStore) -> Result<Vec<RecordedEvent>, annals::Error> {
    store.read_all(Position::NONE, usize::MAX).await
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let n = parse_orders()?;
    let url = std::env::var("ANNALS_NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
    let client = async_nats::connect(&url)
        .await
        .map_err(|e| format!("cannot reach NATS at {url} (start `nats-server -js`): {e}"))?;
    let js = jetstream::new(client.clone());
    let (orders_stream, billing_stream) = ("ANNALS_EXAMPLE_ORDERS", "ANNALS_EXAMPLE_BILLING");
    for s in [orders_stream, billing_stream] {
        let _ = js.delete_stream(s).await; // a fresh run
    }
    let dir = tempfile::tempdir()?;
    let orders_store = SledStore::open(dir.path().join("orders/store"))?;
    let billing_store = SledStore::open(dir.path().join("billing/store"))?;
    let orders = Repository::<Order, _>::new(orders_store.clone());
    let payments = Repository::<Payment, _>::new(billing_store.clone());

    // Each service: a relay of its own events, and an inbox for the other's.
    let orders_publisher = JetStreamPublisher::new(
        client.clone(),
        StreamSettings::for_prefix(orders_stream, "example.orders"),
    );
    let billing_publisher = JetStreamPublisher::new(
        client.clone(),
        StreamSettings::for_prefix(billing_stream, "example.billing"),
    );
    let orders_relay = Relay::start(
        orders_store.clone(),
        orders_publisher,
        FileCheckpoints::new(dir.path().join("orders/checkpoints")),
        RelayConfig::new("orders-outbox", "orders", "example.orders")
            .filter(Filter::stream_prefix("order-")),
    );
    let billing_relay = Relay::start(
        billing_store.clone(),
        billing_publisher,
        FileCheckpoints::new(dir.path().join("billing/checkpoints")),
        RelayConfig::new("billing-outbox", "billing", "example.billing")
            .filter(Filter::stream_prefix("payment-")),
    );
    // The relays create the streams; the inboxes' consumers need them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while js.get_stream(orders_stream).await.is_err()
        || js.get_stream(billing_stream).await.is_err()
    {
        if Instant::now() > deadline {
            return Err("the relays did not create their JetStream streams".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let billing_inbox = Inbox::start(
        JetStreamConsumer::open(
            client.clone(),
            ConsumerSettings::new(orders_stream, "billing"),
        )
        .await?,
        Charge { payments },
        StoreDeadLetters::new(billing_store.clone()),
        InboxConfig::new("billing"),
    );
    let orders_inbox = Inbox::start(
        JetStreamConsumer::open(
            client.clone(),
            ConsumerSettings::new(billing_stream, "orders"),
        )
        .await?,
        Confirm {
            orders: orders.clone(),
        },
        StoreDeadLetters::new(orders_store.clone()),
        InboxConfig::new("orders"),
    );

    let started = Instant::now();
    for i in 1..=n {
        let ctx = CommandContext::new().with_command_id(Uuid::now_v7());
        let done = orders
            .execute_with(
                &i.to_string(),
                &OrderCommand::Place { amount: 100 * i },
                &ctx,
            )
            .await?;
        println!(
            "{:>8} -> OrderPlaced      order-{:<6} correlation {} (command)",
            "orders",
            i,
            short(ctx.command_id)
        );
        let _ = done;
    }
    // Wait until every order is confirmed.
    let deadline = Instant::now() + Duration::from_secs(30 + n);
    let confirmed = loop {
        let confirmed = all(&orders_store)
            .await?
            .iter()
            .filter(|e| e.event_type == "OrderConfirmed")
            .count() as u64;
        if confirmed >= n || Instant::now() > deadline {
            break confirmed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = started.elapsed();
    let parked = billing_inbox.parked().await?.len() + orders_inbox.parked().await?.len();
    billing_inbox.shutdown().await;
    orders_inbox.shutdown().await;
    orders_relay.shutdown().await;
    billing_relay.shutdown().await;

    // Reconcile: every order placed, paid once and confirmed, with one correlation id per
    // order and each event caused by the one before.
    let order_events = all(&orders_store).await?;
    let billing_events = all(&billing_store).await?;
    let placed: Vec<_> = order_events
        .iter()
        .filter(|e| e.event_type == "OrderPlaced")
        .collect();
    let paid: Vec<_> = billing_events
        .iter()
        .filter(|e| e.event_type == "PaymentCaptured")
        .collect();
    let mut reconciled = 0;
    for p in &placed {
        let payment = paid
            .iter()
            .find(|e| e.metadata.causation_id == Some(*p.id.as_uuid()));
        let confirm = payment.and_then(|pay| {
            order_events.iter().find(|e| {
                e.event_type == "OrderConfirmed"
                    && e.metadata.causation_id == Some(*pay.id.as_uuid())
            })
        });
        if let (Some(pay), Some(c)) = (payment, confirm)
            && pay.metadata.correlation_id == p.metadata.correlation_id
            && c.metadata.correlation_id == p.metadata.correlation_id
        {
            reconciled += 1;
        }
    }
    let ok = placed.len() as u64 == n
        && paid.len() as u64 == n
        && confirmed == n
        && reconciled == n
        && parked == 0;
    println!(
        "\nsummary: placed {} / paid {} / confirmed {} / reconciled {} (correlation and causation chains) / parked {parked} in {:.2?}: {}",
        placed.len(),
        paid.len(),
        confirmed,
        reconciled,
        took,
        if ok {
            "all reconciled"
        } else {
            "NOT RECONCILED"
        }
    );
    orders_store.close().await?;
    billing_store.close().await?;
    Ok(ok)
}
