//! The conformance suite against the local PostgreSQL server (127.0.0.1:5432, database
//! `test`, trust auth). Each test uses its own schema and drops it afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use annals_conformance::conformance_tests;
use common::Pg;

conformance_tests!(postgres, Pg::default());
