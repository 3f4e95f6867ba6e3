//! The tests that run child processes of this binary (`common::child`, by their full test
//! names, e.g. `crash::crash_child`): SIGKILL cycles of the store, the projections and the
//! search index, and two processes sharing PostgreSQL read models. Kept apart from the `it`
//! binary so that its many parallel tests do not starve the children of CPU.
//!
//! Run one file's tests with a filter: `cargo test --test procs crash::`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;

use annals_example_domain::tickets;

mod crash;
mod orders_example;
mod pg_projections;
mod projection_crash;
mod saga_crash;
mod search_crash;
mod shop_example;
