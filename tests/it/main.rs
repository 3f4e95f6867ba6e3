//! The integration tests, one module per file, in one test binary (one link of sled,
//! tantivy and tokio instead of one per file). The tests that kill or run child processes
//! are in the `procs` binary beside it.
//!
//! Run one file's tests with a filter: `cargo test --test it repository::`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;

// The example domains the tests share.
use annals_example_domain::bank as domain;
use annals_example_domain::{repl_cmd, tickets};

// `regression` first: the named regressions of earlier shrunk failures.
mod regression;

mod conformance;
mod corruption;
mod decoders;
mod derive_ui;
mod faults;
mod fixtures;
mod model;
mod process;
mod projections;
mod repl;
mod repository;
mod search;
