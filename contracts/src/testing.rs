//! Test helpers: assertions that panic with the readable list of what is wrong.
//!
//! They are for tests, where a panic is the failure report; the library itself never panics.

use std::path::Path;

use serde_json::Value;

use crate::{EventSchema, Incompatibility, Mode, Report, check, check_committed};

/// Asserts that `new` is compatible with `old` under `mode`.
///
/// ```
/// use annals_contracts::{Mode, testing::assert_compatible};
/// let v1 = serde_json::json!({"type": "integer", "format": "uint8", "minimum": 0, "maximum": 255});
/// let v2 = serde_json::json!({"type": "integer", "format": "uint64", "minimum": 0});
/// assert_compatible(&v1, &v2, Mode::Backward); // u8 widened to u64
/// ```
///
/// # Panics
/// With every incompatibility found, one per line, or when a schema cannot be read.
// A test helper: panicking is how it reports.
#[allow(clippy::panic)]
#[track_caller]
pub fn assert_compatible(old: &Value, new: &Value, mode: Mode) {
    match check(old, new, mode) {
        Ok(found) if found.is_empty() => {}
        Ok(found) => panic!(
            "not {mode} compatible, {} incompatibilit{}:\n{}",
            found.len(),
            if found.len() == 1 { "y" } else { "ies" },
            lines(&found)
        ),
        Err(e) => panic!("cannot check compatibility: {e}"),
    }
}

/// Asserts that `new` is *not* compatible with `old` under `mode`, and returns what was
/// found (to match on).
///
/// ```
/// use annals_contracts::{IncompatibilityKind, Mode, testing::assert_incompatible};
/// let v1 = serde_json::json!({"type": "integer", "format": "uint64", "minimum": 0});
/// let v2 = serde_json::json!({"type": "integer", "format": "uint8", "minimum": 0, "maximum": 255});
/// let found = assert_incompatible(&v1, &v2, Mode::Backward); // u64 narrowed to u8
/// assert!(matches!(&found[0].kind, IncompatibilityKind::LimitNarrowed { keyword, .. } if keyword == "maximum"));
/// ```
///
/// # Panics
/// When they are compatible, or a schema cannot be read.
// A test helper: panicking is how it reports.
#[allow(clippy::panic)]
#[track_caller]
pub fn assert_incompatible(old: &Value, new: &Value, mode: Mode) -> Vec<Incompatibility> {
    match check(old, new, mode) {
        Ok(found) if found.is_empty() => panic!("unexpectedly {mode} compatible"),
        Ok(found) => found,
        Err(e) => panic!("cannot check compatibility: {e}"),
    }
}

/// Asserts that the committed schemas in `dir` hold for `schemas` under `mode` (see
/// [`check_committed`]), and returns the report.
///
/// # Panics
/// With every problem found (and how to fix it), or the error.
// A test helper: panicking is how it reports.
#[allow(clippy::panic)]
#[track_caller]
pub fn assert_committed(dir: impl AsRef<Path>, schemas: &[EventSchema], mode: Mode) -> Report {
    match check_committed(dir.as_ref(), schemas, mode) {
        Ok(report) => report,
        Err(e) => panic!("event contracts in {}: {e}", dir.as_ref().display()),
    }
}

fn lines(found: &[Incompatibility]) -> String {
    found
        .iter()
        .map(|f| format!("  - {f}"))
        .collect::<Vec<_>>()
        .join("\n")
}
