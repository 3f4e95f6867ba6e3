//! The PostgreSQL store's tests, in one binary: the conformance suite and two writers on one
//! schema. They use the local server (127.0.0.1:5432, database `test`, trust auth); each test
//! has its own schema and drops it afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod conformance;
mod writers;
