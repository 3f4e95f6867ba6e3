//! annals-nats against the real server: the broker conformance suite on JetStream (the
//! local NATS on 127.0.0.1:4222, which `.ci/run` makes sure is running), over the in-memory
//! and the sled store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;
mod server;

mod broker_restart;
mod conformance;
mod group;
mod group_procs;
mod inbox_crash;
mod otel;
mod relay;
mod relay_crash;
