//! The order process and the dispatch of its commands to the shop's aggregates.

use std::time::Duration;

use annals::prelude::*;
use annals::process::{Decision, Dispatch, DispatchError, Process, Routed, Trigger, Work};
use serde::{Deserialize, Serialize};

use super::{
    Order, OrderCommand, OrderEvent, PAYMENT_DEADLINE, Payment, PaymentCommand, PaymentEvent,
    Shipment, ShipmentCommand, Stock, StockCommand, StockEvent, types,
};

/// The commands the order process sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ShopCommand {
    /// To the stock of `sku`.
    Stock {
        /// The SKU.
        sku: String,
        /// The command.
        command: StockCommand,
    },
    /// To the order's payment.
    Payment {
        /// The order.
        order: String,
        /// The command.
        command: PaymentCommand,
    },
    /// To the order's shipment.
    Shipment {
        /// The order.
        order: String,
        /// The command.
        command: ShipmentCommand,
    },
    /// To the order.
    Order {
        /// The order.
        order: String,
        /// The command.
        command: OrderCommand,
    },
}

/// What the order process hears.
#[derive(Clone, Debug, PartialEq)]
pub enum ShopInput {
    /// The order was placed.
    Placed {
        /// The order.
        order: String,
        /// How long the customer has to pay.
        payment_window: Duration,
        /// What.
        sku: String,
        /// How many.
        qty: u32,
        /// The price, in cents.
        amount: u64,
    },
    /// Its stock was reserved.
    Reserved,
    /// Its payment was captured.
    Captured,
    /// Its payment was declined.
    Declined {
        /// Why.
        reason: String,
    },
    /// Its shipment was created.
    Shipped,
}

/// The order process's own events.
#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum OrderProcessEvent {
    /// Started for an order.
    Started {
        /// The order.
        order: String,
        /// How long the customer has to pay, in milliseconds.
        payment_window_ms: u64,
        /// What.
        sku: String,
        /// How many.
        qty: u32,
        /// The price, in cents.
        amount: u64,
    },
    /// The stock is held.
    StockHeld,
    /// The money is taken.
    Paid,
    /// The process is undoing (why).
    Undoing {
        /// Why.
        reason: String,
    },
    /// A payment captured after the process had given up: refunded.
    LatePaymentRefunded,
    /// The parcel is out.
    Shipped,
}

/// Where an order process is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Not started.
    #[default]
    New,
    /// Waiting for the stock.
    Reserving,
    /// Waiting for the payment.
    Paying,
    /// Waiting for the shipment.
    Shipping,
    /// Confirmed.
    Done,
    /// Undone (or failed).
    Undone,
}

/// The order process: reserve, pay (within the order's payment window), ship, confirm;
/// compensate on the way.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OrderProcess {
    /// Where it is.
    pub phase: Phase,
    /// The order's id.
    pub order: String,
    /// What.
    pub sku: String,
    /// How many.
    pub qty: u32,
    /// The price, in cents.
    pub amount: u64,
    /// How long the customer has to pay, in milliseconds.
    pub payment_window_ms: u64,
    /// Refunds of late payments issued.
    pub refunds: u32,
}

impl OrderProcess {
    fn stock(&self, command: StockCommand) -> ShopCommand {
        ShopCommand::Stock {
            sku: self.sku.clone(),
            command,
        }
    }

    fn payment(&self, command: PaymentCommand) -> ShopCommand {
        ShopCommand::Payment {
            order: self.order.clone(),
            command,
        }
    }

    fn order(&self, command: OrderCommand) -> ShopCommand {
        ShopCommand::Order {
            order: self.order.clone(),
            command,
        }
    }

    /// Releases the stock and cancels the order.
    fn undo(&self, reason: &str) -> Decision<Self> {
        Decision::new()
            .record(OrderProcessEvent::Undoing {
                reason: reason.to_owned(),
            })
            .cancel(PAYMENT_DEADLINE)
            .send(self.stock(StockCommand::Release {
                order: self.order.clone(),
            }))
            .send(self.order(OrderCommand::Cancel {
                reason: reason.to_owned(),
            }))
            .compensated(reason)
    }
}

fn decode<E: DomainEvent>(e: &RecordedEvent) -> Result<E, annals::Error> {
    E::decode_payload(&e.event_type, e.codec, &e.payload)
}

impl Process for OrderProcess {
    const TYPE: &'static str = types::PROCESS;
    type Event = OrderProcessEvent;
    type Input = ShopInput;
    type Command = ShopCommand;

    fn route(e: &RecordedEvent) -> Result<Option<Routed<ShopInput>>, annals::Error> {
        if let Some(order) = e.stream.aggregate_id(types::ORDER) {
            return Ok(match decode::<OrderEvent>(e)? {
                OrderEvent::OrderPlaced {
                    sku,
                    qty,
                    amount,
                    payment_window_ms,
                } => Some(Routed::start(
                    order,
                    ShopInput::Placed {
                        order: order.to_owned(),
                        payment_window: Duration::from_millis(payment_window_ms),
                        sku,
                        qty,
                        amount,
                    },
                )),
                _ => None,
            });
        }
        if e.stream.aggregate_id(types::STOCK).is_some() {
            return Ok(match decode::<StockEvent>(e)? {
                StockEvent::StockReserved { order, .. } => {
                    Some(Routed::to(order, ShopInput::Reserved))
                }
                _ => None,
            });
        }
        if let Some(order) = e.stream.aggregate_id(types::PAYMENT) {
            return Ok(match decode::<PaymentEvent>(e)? {
                PaymentEvent::PaymentCaptured { .. } => {
                    Some(Routed::to(order, ShopInput::Captured))
                }
                PaymentEvent::PaymentDeclined { reason } => {
                    Some(Routed::to(order, ShopInput::Declined { reason }))
                }
                _ => None,
            });
        }
        if let Some(order) = e.stream.aggregate_id(types::SHIPMENT) {
            return Ok(Some(Routed::to(order, ShopInput::Shipped)));
        }
        Ok(None)
    }

    fn react(&self, trigger: &Trigger<Self>) -> Decision<Self> {
        match (trigger, self.phase) {
            (
                Trigger::Event(ShopInput::Placed {
                    order,
                    payment_window,
                    sku,
                    qty,
                    amount,
                }),
                Phase::New,
            ) => {
                let started = OrderProcessEvent::Started {
                    order: order.clone(),
                    payment_window_ms: u64::try_from(payment_window.as_millis())
                        .unwrap_or(u64::MAX),
                    sku: sku.clone(),
                    qty: *qty,
                    amount: *amount,
                };
                let reserve = ShopCommand::Stock {
                    sku: sku.clone(),
                    command: StockCommand::Reserve {
                        order: order.clone(),
                        qty: *qty,
                    },
                };
                Decision::new().record(started).send(reserve)
            }
            (Trigger::Event(ShopInput::Reserved), Phase::Reserving) => Decision::new()
                .record(OrderProcessEvent::StockHeld)
                .send(self.payment(PaymentCommand::Request {
                    amount: self.amount,
                }))
                .deadline(
                    PAYMENT_DEADLINE,
                    Duration::from_millis(self.payment_window_ms),
                ),
            (Trigger::Event(ShopInput::Captured), Phase::Paying) => Decision::new()
                .record(OrderProcessEvent::Paid)
                .cancel(PAYMENT_DEADLINE)
                .send(self.stock(StockCommand::Ship {
                    order: self.order.clone(),
                }))
                .send(ShopCommand::Shipment {
                    order: self.order.clone(),
                    command: ShipmentCommand::Create {
                        sku: self.sku.clone(),
                        qty: self.qty,
                    },
                }),
            // The money came after the process gave up: give it back.
            (Trigger::Event(ShopInput::Captured), Phase::Undone) => Decision::new()
                .record(OrderProcessEvent::LatePaymentRefunded)
                .send(self.payment(PaymentCommand::Refund)),
            (Trigger::Event(ShopInput::Declined { reason }), Phase::Paying) => {
                self.undo(&format!("payment declined: {reason}"))
            }
            (Trigger::Deadline { name }, Phase::Paying) if name == PAYMENT_DEADLINE => {
                self.undo("payment timed out")
            }
            (Trigger::Event(ShopInput::Shipped), Phase::Shipping) => Decision::new()
                .record(OrderProcessEvent::Shipped)
                .send(self.order(OrderCommand::Confirm))
                .complete(),
            // The payment service refused the request itself.
            (
                Trigger::Rejected {
                    command: ShopCommand::Payment { .. },
                    reason,
                    ..
                },
                Phase::Paying,
            ) => self.undo(&format!("payment refused: {reason}")),
            (
                Trigger::Rejected {
                    command: ShopCommand::Stock { .. },
                    reason,
                    ..
                },
                Phase::Reserving,
            ) => {
                let reason = format!("stock: {reason}");
                Decision::new()
                    .record(OrderProcessEvent::Undoing {
                        reason: reason.clone(),
                    })
                    .send(self.order(OrderCommand::Cancel {
                        reason: reason.clone(),
                    }))
                    .fail(reason)
            }
            _ => Decision::new(),
        }
    }

    fn apply(&mut self, e: &OrderProcessEvent) {
        match e {
            OrderProcessEvent::Started {
                order,
                payment_window_ms,
                sku,
                qty,
                amount,
            } => {
                self.phase = Phase::Reserving;
                self.order = order.clone();
                self.payment_window_ms = *payment_window_ms;
                self.sku = sku.clone();
                self.qty = *qty;
                self.amount = *amount;
            }
            OrderProcessEvent::StockHeld => self.phase = Phase::Paying,
            OrderProcessEvent::Paid => self.phase = Phase::Shipping,
            OrderProcessEvent::Undoing { .. } => self.phase = Phase::Undone,
            OrderProcessEvent::LatePaymentRefunded => self.refunds += 1,
            OrderProcessEvent::Shipped => self.phase = Phase::Done,
        }
    }
}

/// The shop's aggregates, for the order process to send its commands to.
pub struct ShopDispatch<S> {
    /// Orders.
    pub orders: Repository<Order, S>,
    /// Stock.
    pub stock: Repository<Stock, S>,
    /// Payments.
    pub payments: Repository<Payment, S>,
    /// Shipments.
    pub shipments: Repository<Shipment, S>,
    /// Payments are another service's: payment commands are left to the outbox (the
    /// process's `CommandIssued` records) instead of decided here.
    pub remote_payments: bool,
}

impl<S: EventStore + SnapshotStore> ShopDispatch<S> {
    /// Repositories over `store`.
    pub fn new(store: S) -> Self {
        Self {
            orders: Repository::new(store.clone()),
            stock: Repository::new(store.clone()),
            payments: Repository::new(store.clone()),
            shipments: Repository::new(store),
            remote_payments: false,
        }
    }

    /// Leaves payment commands to another service (see [`Self::remote_payments`]).
    pub fn with_remote_payments(mut self) -> Self {
        self.remote_payments = true;
        self
    }
}

impl<S: EventStore + SnapshotStore> Dispatch<OrderProcess> for ShopDispatch<S> {
    async fn dispatch(&self, command: &ShopCommand, work: &mut Work) -> Result<(), DispatchError> {
        match command {
            ShopCommand::Stock { sku, command } => {
                self.stock.decide_into(work, sku, command).await?;
            }
            // Carried by the outbox: the `CommandIssued` record lands with the reaction.
            ShopCommand::Payment { .. } if self.remote_payments => {}
            ShopCommand::Payment { order, command } => {
                self.payments.decide_into(work, order, command).await?;
            }
            ShopCommand::Shipment { order, command } => {
                self.shipments.decide_into(work, order, command).await?;
            }
            ShopCommand::Order { order, command } => {
                self.orders.decide_into(work, order, command).await?;
            }
        }
        Ok(())
    }
}
