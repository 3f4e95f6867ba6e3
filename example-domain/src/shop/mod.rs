//! The shop: orders, stock, payments and shipments as aggregates, and the order process that
//! ties them together — reserve the stock, take the payment (within a deadline), ship, and
//! undo what was done when a step fails. Shared by the `shop` example, the process tests and
//! the `saga` benchmark.
//!
//! An order goes: `Place` (by the customer) → the process reserves the stock → requests the
//! payment and sets the `payment` deadline → the payment gateway captures (or declines) it →
//! the process ships the stock and creates the shipment → confirms the order. A decline
//! releases the stock and cancels the order (compensated); a deadline that passes does the
//! same, and a payment captured after it is refunded; stock that is not there fails the
//! order.

use std::collections::BTreeMap;

use annals::prelude::*;
use serde::{Deserialize, Serialize};

mod books;
mod gateway;
mod process;

pub use books::{Books, books, order_id, place_orders, settle};
pub use gateway::{Gateway, GatewayHandle, Verdict};
pub use process::{OrderProcess, OrderProcessEvent, Phase, ShopCommand, ShopDispatch, ShopInput};

/// The aggregate type names: streams are `<type>-<id>`.
pub mod types {
    /// Orders, by order id.
    pub const ORDER: &str = "order";
    /// Stock, by SKU.
    pub const STOCK: &str = "stock";
    /// Payments, by order id.
    pub const PAYMENT: &str = "payment";
    /// Shipments, by order id.
    pub const SHIPMENT: &str = "shipment";
    /// Order processes, by order id.
    pub const PROCESS: &str = "order-process";
}

/// The name of the payment deadline.
pub const PAYMENT_DEADLINE: &str = "payment";

// ---------------------------------------------------------------------------------------
// Orders

/// Commands on an order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OrderCommand {
    /// The customer places it.
    Place {
        /// What.
        sku: String,
        /// How many.
        qty: u32,
        /// The price, in cents.
        amount: u64,
        /// How long the customer has to pay, in milliseconds.
        payment_window_ms: u64,
    },
    /// Every step succeeded.
    Confirm,
    /// It will not be fulfilled.
    Cancel {
        /// Why.
        reason: String,
    },
}

/// What happened to an order.
#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum OrderEvent {
    /// Placed by the customer.
    OrderPlaced {
        /// What.
        sku: String,
        /// How many.
        qty: u32,
        /// The price, in cents.
        amount: u64,
        /// How long the customer has to pay, in milliseconds.
        payment_window_ms: u64,
    },
    /// Fulfilled.
    OrderConfirmed,
    /// Cancelled.
    OrderCancelled {
        /// Why.
        reason: String,
    },
}

/// Where an order is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Not placed.
    #[default]
    None,
    /// Placed, in progress.
    Placed,
    /// Fulfilled.
    Confirmed,
    /// Cancelled.
    Cancelled,
}

/// An order's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Order {
    /// Where it is.
    pub status: OrderStatus,
    /// What.
    pub sku: String,
    /// How many.
    pub qty: u32,
    /// The price, in cents.
    pub amount: u64,
}

/// A rule of the shop's aggregates that a command broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShopError {
    /// The command does not fit the aggregate's state.
    #[error("{0}")]
    NotNow(&'static str),
    /// Not enough stock.
    #[error("out of stock: {available} available, {wanted} wanted")]
    OutOfStock {
        /// What is there.
        available: u64,
        /// What was asked for.
        wanted: u32,
    },
}

impl Aggregate for Order {
    const TYPE: &'static str = types::ORDER;
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = ShopError;
    type Services = ();

    fn handle(&self, c: &OrderCommand, _: &()) -> Result<Vec<OrderEvent>, ShopError> {
        use OrderStatus as S;
        match (c, self.status) {
            (
                OrderCommand::Place {
                    sku,
                    qty,
                    amount,
                    payment_window_ms,
                },
                S::None,
            ) => Ok(vec![OrderEvent::OrderPlaced {
                sku: sku.clone(),
                qty: *qty,
                amount: *amount,
                payment_window_ms: *payment_window_ms,
            }]),
            (OrderCommand::Place { .. }, _) => Err(ShopError::NotNow("order already placed")),
            (OrderCommand::Confirm, S::Placed) => Ok(vec![OrderEvent::OrderConfirmed]),
            (OrderCommand::Confirm, S::Confirmed) => Ok(vec![]),
            (OrderCommand::Cancel { reason }, S::Placed) => Ok(vec![OrderEvent::OrderCancelled {
                reason: reason.clone(),
            }]),
            (OrderCommand::Cancel { .. }, S::Cancelled) => Ok(vec![]),
            _ => Err(ShopError::NotNow("order is not open")),
        }
    }

    fn apply(&mut self, e: &OrderEvent) {
        match e {
            OrderEvent::OrderPlaced {
                sku, qty, amount, ..
            } => {
                self.status = OrderStatus::Placed;
                self.sku = sku.clone();
                self.qty = *qty;
                self.amount = *amount;
            }
            OrderEvent::OrderConfirmed => self.status = OrderStatus::Confirmed,
            OrderEvent::OrderCancelled { .. } => self.status = OrderStatus::Cancelled,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Stock

/// Commands on the stock of one SKU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StockCommand {
    /// Units arrive.
    Restock {
        /// How many.
        qty: u64,
    },
    /// Hold units for an order.
    Reserve {
        /// The order.
        order: String,
        /// How many.
        qty: u32,
    },
    /// Give an order's units back.
    Release {
        /// The order.
        order: String,
    },
    /// Send an order's units out.
    Ship {
        /// The order.
        order: String,
    },
}

/// What happened to the stock of one SKU.
#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum StockEvent {
    /// Units arrived.
    Restocked {
        /// How many.
        qty: u64,
    },
    /// Units held for an order.
    StockReserved {
        /// The order.
        order: String,
        /// How many.
        qty: u32,
    },
    /// An order's units given back.
    StockReleased {
        /// The order.
        order: String,
        /// How many.
        qty: u32,
    },
    /// An order's units sent out.
    StockShipped {
        /// The order.
        order: String,
        /// How many.
        qty: u32,
    },
}

/// The stock of one SKU.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stock {
    /// Units free to reserve.
    pub available: u64,
    /// Units held, by order.
    pub reserved: BTreeMap<String, u32>,
    /// Units sent out.
    pub shipped: u64,
    /// Every unit that ever arrived.
    pub received: u64,
}

impl Aggregate for Stock {
    const TYPE: &'static str = types::STOCK;
    type Command = StockCommand;
    type Event = StockEvent;
    type Error = ShopError;
    type Services = ();

    fn handle(&self, c: &StockCommand, _: &()) -> Result<Vec<StockEvent>, ShopError> {
        match c {
            StockCommand::Restock { qty } => Ok(vec![StockEvent::Restocked { qty: *qty }]),
            StockCommand::Reserve { order, qty } => {
                if self.reserved.contains_key(order) {
                    return Ok(vec![]);
                }
                if self.available < u64::from(*qty) {
                    return Err(ShopError::OutOfStock {
                        available: self.available,
                        wanted: *qty,
                    });
                }
                Ok(vec![StockEvent::StockReserved {
                    order: order.clone(),
                    qty: *qty,
                }])
            }
            StockCommand::Release { order } => match self.reserved.get(order) {
                Some(qty) => Ok(vec![StockEvent::StockReleased {
                    order: order.clone(),
                    qty: *qty,
                }]),
                None => Ok(vec![]),
            },
            StockCommand::Ship { order } => match self.reserved.get(order) {
                Some(qty) => Ok(vec![StockEvent::StockShipped {
                    order: order.clone(),
                    qty: *qty,
                }]),
                None => Err(ShopError::NotNow("nothing reserved for the order")),
            },
        }
    }

    fn apply(&mut self, e: &StockEvent) {
        match e {
            StockEvent::Restocked { qty } => {
                self.available += qty;
                self.received += qty;
            }
            StockEvent::StockReserved { order, qty } => {
                self.available = self.available.saturating_sub(u64::from(*qty));
                self.reserved.insert(order.clone(), *qty);
            }
            StockEvent::StockReleased { order, qty } => {
                self.reserved.remove(order);
                self.available += u64::from(*qty);
            }
            StockEvent::StockShipped { order, qty } => {
                self.reserved.remove(order);
                self.shipped += u64::from(*qty);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Payments

/// Commands on an order's payment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PaymentCommand {
    /// Ask the gateway to take the money.
    Request {
        /// How much, in cents.
        amount: u64,
    },
    /// The gateway took it.
    Capture,
    /// The gateway refused.
    Decline {
        /// Why.
        reason: String,
    },
    /// Give the money back.
    Refund,
}

/// What happened to a payment.
#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum PaymentEvent {
    /// Requested from the gateway.
    PaymentRequested {
        /// How much, in cents.
        amount: u64,
    },
    /// Taken.
    PaymentCaptured {
        /// How much, in cents.
        amount: u64,
    },
    /// Refused.
    PaymentDeclined {
        /// Why.
        reason: String,
    },
    /// Given back.
    PaymentRefunded {
        /// How much, in cents.
        amount: u64,
    },
}

/// Where a payment is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentStatus {
    /// Not requested.
    #[default]
    None,
    /// Waiting for the gateway.
    Requested,
    /// Taken.
    Captured,
    /// Refused.
    Declined,
    /// Taken and given back.
    Refunded,
}

/// An order's payment.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Payment {
    /// Where it is.
    pub status: PaymentStatus,
    /// How much, in cents.
    pub amount: u64,
}

impl Aggregate for Payment {
    const TYPE: &'static str = types::PAYMENT;
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = ShopError;
    type Services = ();

    fn handle(&self, c: &PaymentCommand, _: &()) -> Result<Vec<PaymentEvent>, ShopError> {
        use PaymentStatus as S;
        match (c, self.status) {
            (PaymentCommand::Request { amount }, S::None) => {
                Ok(vec![PaymentEvent::PaymentRequested { amount: *amount }])
            }
            (PaymentCommand::Request { .. }, _) => Ok(vec![]),
            (PaymentCommand::Capture, S::Requested) => Ok(vec![PaymentEvent::PaymentCaptured {
                amount: self.amount,
            }]),
            (PaymentCommand::Decline { reason }, S::Requested) => {
                Ok(vec![PaymentEvent::PaymentDeclined {
                    reason: reason.clone(),
                }])
            }
            (PaymentCommand::Refund, S::Captured) => Ok(vec![PaymentEvent::PaymentRefunded {
                amount: self.amount,
            }]),
            (PaymentCommand::Refund, S::Refunded) => Ok(vec![]),
            _ => Err(ShopError::NotNow("payment is not waiting for that")),
        }
    }

    fn apply(&mut self, e: &PaymentEvent) {
        match e {
            PaymentEvent::PaymentRequested { amount } => {
                self.status = PaymentStatus::Requested;
                self.amount = *amount;
            }
            PaymentEvent::PaymentCaptured { .. } => self.status = PaymentStatus::Captured,
            PaymentEvent::PaymentDeclined { .. } => self.status = PaymentStatus::Declined,
            PaymentEvent::PaymentRefunded { .. } => self.status = PaymentStatus::Refunded,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shipments

/// Commands on an order's shipment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ShipmentCommand {
    /// Hand the parcel to the carrier.
    Create {
        /// What.
        sku: String,
        /// How many.
        qty: u32,
    },
}

/// What happened to a shipment.
#[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ShipmentEvent {
    /// Handed to the carrier.
    ShipmentCreated {
        /// What.
        sku: String,
        /// How many.
        qty: u32,
    },
}

/// An order's shipment.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Shipment {
    /// Whether it was created.
    pub created: bool,
}

impl Aggregate for Shipment {
    const TYPE: &'static str = types::SHIPMENT;
    type Command = ShipmentCommand;
    type Event = ShipmentEvent;
    type Error = ShopError;
    type Services = ();

    fn handle(&self, c: &ShipmentCommand, _: &()) -> Result<Vec<ShipmentEvent>, ShopError> {
        match c {
            ShipmentCommand::Create { .. } if self.created => Ok(vec![]),
            ShipmentCommand::Create { sku, qty } => Ok(vec![ShipmentEvent::ShipmentCreated {
                sku: sku.clone(),
                qty: *qty,
            }]),
        }
    }

    fn apply(&mut self, e: &ShipmentEvent) {
        match e {
            ShipmentEvent::ShipmentCreated { .. } => self.created = true,
        }
    }
}
