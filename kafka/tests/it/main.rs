//! annals-kafka against a real Kafka-protocol broker: librdkafka's mock cluster, started in
//! the test process (crash tests' children connect to their parent's). The broker
//! conformance suite, and what is Kafka's own (partition revocation, the dead-letter topic).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod conformance;
mod crash;
mod kafka;
