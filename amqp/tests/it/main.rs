//! annals-amqp against the real server: the broker conformance suite on RabbitMQ (the local
//! server on 127.0.0.1:5672, guest/guest), and what is RabbitMQ's own (dead-lettering).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;
mod proxy;

mod conformance;
mod crash;
mod dead_letter;
