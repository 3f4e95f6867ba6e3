//! # annals-broker
//!
//! Services that talk through a broker. An event-driven system is several services that
//! react to each other's events; the hard parts are publishing what was committed — all of
//! it, once, in order — and consuming it so that a redelivered message never takes effect
//! twice. This crate does both ends, written once over a small broker seam:
//!
//! * [`seam`]: the two traits a broker implements — [`Publisher`] (publish with
//!   acknowledgement) and [`Consumer`]/[`Delivery`] (pull, ack, nak, terminate). NATS
//!   JetStream is the first implementation (`annals-nats`).
//! * [`relay`]: the **outbox relay** — follows the global log of any [`EventStore`] from a
//!   stored checkpoint ([`checkpoint`]) and publishes each event, pipelined, acknowledged
//!   before the checkpoint moves, in order per subject ([`subject`]).
//! * [`inbox`]: the **idempotent inbox** — hands each message to a handler in order per
//!   subject, retries transient failures, parks poison messages ([`parked`]).
//! * [`cloudevents`]: the wire format, CloudEvents 1.0 in binary mode over headers.
//! * [`group`]: inboxes that scale out over several processes (partitioned subjects, one
//!   consumer per partition, partitions held by leases).
//!
//! The crate depends on `annals-core` only: the relay and the inbox work over any store
//! (sled, PostgreSQL, memory).
//!
//! [`EventStore`]: annals_core::EventStore

pub mod checkpoint;
pub mod cloudevents;
mod error;
pub mod group;
pub mod inbox;
pub mod parked;
pub mod relay;
pub mod seam;
pub mod subject;

pub use checkpoint::{FileCheckpoints, MemCheckpoints, RelayCheckpoints};
pub use cloudevents::{IncomingEvent, MappingError};
pub use error::BrokerError;
pub use group::{
    GroupStatus, InboxGroup, InboxGroupConfig, InboxGroupHandle, Leases, OpenPartition,
};
pub use inbox::{
    HandleError, Inbox, InboxConfig, InboxHandle, InboxHandler, InboxStatus, RetryMode,
    command_id_for,
};
pub use parked::{MemDeadLetters, MessageDeadLetters, ParkedMessage, StoreDeadLetters};
pub use relay::{Relay, RelayConfig, RelayHandle, RelayState, RelayStatus};
pub use seam::{Consumer, Delivery, Headers, OutgoingMessage, Publisher};
