//! Two services that talk through a broker — NATS JetStream, RabbitMQ or Kafka, by flag:
//! **orders** and **billing**, each with its own embedded store, outbox relay and
//! idempotent inbox.
//!
//! An order placed in orders is published (`OrderPlaced`), billing's inbox charges it
//! (`PaymentCaptured`, with the order's correlation id and the incoming event as its
//! causation), billing's relay publishes the payment, and orders' inbox confirms the order
//! (`OrderConfirmed`). Every hop is printed with its correlation and causation ids.
//!
//! ```text
//! cargo run --example orders -- --orders 20                  # JetStream (the default)
//! cargo run --example orders -- --orders 20 --broker amqp    # RabbitMQ
//! cargo run --example orders -- --orders 20 --broker kafka   # Kafka
//! ```
//!
//! * `nats`: NATS with JetStream on 127.0.0.1:4222 (`nats-server -js`; `ANNALS_NATS_URL`
//!   for another server). The streams `ANNALS_EXAMPLE_ORDERS` and `ANNALS_EXAMPLE_BILLING`
//!   are created afresh on every run.
//! * `amqp`: RabbitMQ on 127.0.0.1:5672 as guest (`ANNALS_AMQP_URL` for another server).
//!   Each run uses its own exchanges and quorum queues (named after the process id, deleted
//!   by RabbitMQ ten minutes after their last consumer).
//! * `kafka`: the cluster at `ANNALS_KAFKA_BOOTSTRAP`, or — when it is not set — librdkafka's
//!   mock cluster inside the example. Each run uses its own topics.
//!
//! It ends by itself with a summary and exit code 0 when every order was paid and confirmed.

// A program: it talks to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use annals::prelude::*;
use annals::{RecordedEvent, Uuid};
use annals_broker::{
    Consumer, FileCheckpoints, HandleError, Inbox, InboxConfig, InboxHandler, IncomingEvent,
    Publisher, Relay, RelayConfig, StoreDeadLetters, command_id_for,
};
use annals_nats::async_nats::{self, jetstream};
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

/// The broker the services talk through.
#[derive(Clone, Copy, Debug)]
enum Broker {
    Nats,
    Amqp,
    Kafka,
}

fn parse_args() -> Result<(u64, Broker), String> {
    let mut args = std::env::args().skip(1);
    let (mut n, mut broker) = (5, Broker::Nats);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--orders" => {
                n = args
                    .next()
                    .ok_or("--orders needs a number")?
                    .parse()
                    .map_err(|e| format!("--orders: {e}"))?;
            }
            "--broker" => {
                broker = match args.next().as_deref() {
                    Some("nats") => Broker::Nats,
                    Some("amqp") => Broker::Amqp,
                    Some("kafka") => Broker::Kafka,
                    other => return Err(format!("--broker nats|amqp|kafka, not {other:?}")),
                };
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; use --orders N [--broker nats|amqp|kafka]"
                ));
            }
        }
    }
    Ok((n, broker))
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

type Failure = Box<dyn std::error::Error>;

async fn run() -> Result<bool, Failure> {
    let (n, broker) = parse_args()?;
    match broker {
        Broker::Nats => {
            let url = std::env::var("ANNALS_NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
            let client = async_nats::connect(&url).await.map_err(|e| {
                format!("cannot reach NATS at {url} (start `nats-server -js`): {e}")
            })?;
            let js = jetstream::new(client.clone());
            let (orders, billing) = ("ANNALS_EXAMPLE_ORDERS", "ANNALS_EXAMPLE_BILLING");
            for s in [orders, billing] {
                let _ = js.delete_stream(s).await; // a fresh run
            }
            use annals_nats::{
                ConsumerSettings, JetStreamConsumer, JetStreamPublisher, StreamSettings,
            };
            let publisher = |stream: &str, prefix: &str| {
                JetStreamPublisher::new(client.clone(), StreamSettings::for_prefix(stream, prefix))
            };
            let (orders_pub, billing_pub) = (
                publisher(orders, "example.orders"),
                publisher(billing, "example.billing"),
            );
            // The streams exist before the consumers open.
            orders_pub.prepare().await?;
            billing_pub.prepare().await?;
            let consumer = |stream: &str, name: &str| {
                JetStreamConsumer::open(client.clone(), ConsumerSettings::new(stream, name))
            };
            let billing_in = consumer(orders, "billing").await?;
            let orders_in = consumer(billing, "orders").await?;
            two_services(n, orders_pub, billing_pub, billing_in, orders_in).await
        }
        Broker::Amqp => {
            use annals_amqp::{AmqpConsumer, AmqpPublisher, ExchangeSettings, QueueSettings};
            let uri = std::env::var("ANNALS_AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
            let run = std::process::id();
            let (orders, billing) = (
                format!("annals-example.{run}.orders"),
                format!("annals-example.{run}.billing"),
            );
            // Each service's queue is declared (and bound) before anything is published.
            let queue = |exchange: &str, name: &str, prefix: &str| {
                QueueSettings::new(&uri, exchange, format!("{exchange}.{name}"), prefix)
                    .expires(Duration::from_secs(600))
            };
            let billing_q = queue(&orders, "billing", "example.orders");
            let orders_q = queue(&billing, "orders", "example.billing");
            let billing_in = AmqpConsumer::open(billing_q.clone())
                .await
                .map_err(|e| format!("cannot reach RabbitMQ at {uri}: {e}"))?;
            let orders_in = AmqpConsumer::open(orders_q.clone()).await?;
            let orders_pub =
                AmqpPublisher::new(ExchangeSettings::new(&uri, &orders).bind(billing_q));
            let billing_pub =
                AmqpPublisher::new(ExchangeSettings::new(&uri, &billing).bind(orders_q));
            two_services(n, orders_pub, billing_pub, billing_in, orders_in).await
        }
        Broker::Kafka => {
            use annals_kafka::{ConsumerSettings, KafkaConsumer, KafkaPublisher, TopicSettings};
            // A cluster of one's own when none is given: librdkafka's mock cluster, kept on a
            // thread of its own for the life of the example.
            let bootstrap = match std::env::var("ANNALS_KAFKA_BOOTSTRAP") {
                Ok(b) => b,
                Err(_) => {
                    let (tx, rx) = std::sync::mpsc::channel();
                    std::thread::spawn(move || {
                        match annals_kafka::rdkafka::mocking::MockCluster::new(1) {
                            Ok(cluster) => {
                                let _ = tx.send(Ok(cluster.bootstrap_servers()));
                                for topic in ["annals-example.orders", "annals-example.billing"] {
                                    let _ = cluster.create_topic(topic, 3, 1);
                                }
                                loop {
                                    std::thread::park();
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e.to_string()));
                            }
                        }
                    });
                    println!("(no ANNALS_KAFKA_BOOTSTRAP: librdkafka's mock cluster, in-process)");
                    rx.recv()??
                }
            };
            let (orders, billing) = ("annals-example.orders", "annals-example.billing");
            let orders_pub = KafkaPublisher::new(TopicSettings::new(&bootstrap, orders))?;
            let billing_pub = KafkaPublisher::new(TopicSettings::new(&bootstrap, billing))?;
            let group = |name: &str| format!("{name}-{}", std::process::id());
            let billing_in =
                KafkaConsumer::open(ConsumerSettings::new(&bootstrap, orders, group("billing")))
                    .await?;
            let orders_in =
                KafkaConsumer::open(ConsumerSettings::new(&bootstrap, billing, group("orders")))
                    .await?;
            two_services(n, orders_pub, billing_pub, billing_in, orders_in).await
        }
    }
}

/// Runs both services over the broker of `orders_pub` / `billing_pub` (each service's
/// outbox) and `billing_in` / `orders_in` (each service's inbox, on the other's events).
async fn two_services<P: Publisher, C: Consumer>(
    n: u64,
    orders_pub: P,
    billing_pub: P,
    billing_in: C,
    orders_in: C,
) -> Result<bool, Failure> {
    let dir = tempfile::tempdir()?;
    let orders_store = SledStore::open(dir.path().join("orders/store"))?;
    let billing_store = SledStore::open(dir.path().join("billing/store"))?;
    let orders = Repository::<Order, _>::new(orders_store.clone());
    let payments = Repository::<Payment, _>::new(billing_store.clone());

    // Each service: a relay of its own events, and an inbox for the other's.
    let orders_relay = Relay::start(
        orders_store.clone(),
        orders_pub,
        FileCheckpoints::new(dir.path().join("orders/checkpoints")),
        RelayConfig::new("orders-outbox", "orders", "example.orders")
            .filter(Filter::stream_prefix("order-")),
    );
    let billing_relay = Relay::start(
        billing_store.clone(),
        billing_pub,
        FileCheckpoints::new(dir.path().join("billing/checkpoints")),
        RelayConfig::new("billing-outbox", "billing", "example.billing")
            .filter(Filter::stream_prefix("payment-")),
    );
    let billing_inbox = Inbox::start(
        billing_in,
        Charge { payments },
        StoreDeadLetters::new(billing_store.clone()),
        InboxConfig::new("billing"),
    );
    let orders_inbox = Inbox::start(
        orders_in,
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
