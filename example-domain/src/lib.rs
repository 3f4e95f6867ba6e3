//! The example domains of annals, in one small crate shared by the examples, the
//! integration tests, the benchmarks and the fuzz targets:
//!
//! * [`bank`]: bank accounts (open, deposit, withdraw, close) — the `bank` example, the W1
//!   and W2 benchmarks, the repository tests;
//! * [`tickets`]: support tickets with a search read model and a list read model — the REPL,
//!   the search tests and benchmarks;
//! * [`shop`]: orders, stock, payments, shipments and the order process (a process manager
//!   with compensation and a payment deadline) — the `shop` example, the process tests and
//!   the `saga` benchmark;
//! * [`repl_cmd`]: the REPL's command language, parsed apart from the REPL so that tests and
//!   the fuzzer drive it without a store.

pub mod bank;
pub mod repl_cmd;
pub mod shop;
pub mod tickets;
