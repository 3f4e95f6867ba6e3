//! The one error type of the crate.

use std::path::PathBuf;

use crate::committed::Problem;

/// Why a schema could not be checked, or why committed contracts do not hold.
///
/// A schema the checker cannot reason about is an error, never a guess: a keyword it does not
/// know ([`ContractError::Unsupported`]) or a malformed value ([`ContractError::Invalid`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContractError {
    /// The schema uses a construct the checker does not understand.
    #[error("unsupported schema construct `{keyword}` at {pointer}: {reason}")]
    Unsupported {
        /// Where, as a JSON pointer into the schema document (`#/properties/a`).
        pointer: String,
        /// The keyword (or pattern) it does not understand.
        keyword: String,
        /// What the checker understands instead.
        reason: String,
    },
    /// A keyword has a value JSON Schema does not allow (`"type": 5`, `"required": {}`).
    #[error("invalid schema at {pointer}: {reason}")]
    Invalid {
        /// Where, as a JSON pointer into the schema document.
        pointer: String,
        /// What is wrong.
        reason: String,
    },
    /// A `$ref` that does not point into the same document, or points at nothing.
    #[error("unresolved reference {reference:?} at {pointer}")]
    UnresolvedRef {
        /// Where the reference is.
        pointer: String,
        /// The reference as written.
        reference: String,
    },
    /// The schemas nest deeper, or need more comparisons, than the checker allows (a chain of
    /// references that never reaches a schema, or a pathological document).
    #[error("schema too deep or too large to compare at {pointer}")]
    Limit {
        /// Where the limit was reached.
        pointer: String,
    },
    /// An event type name that cannot be a directory name (`/`, `\`, NUL, `.` or `..`).
    #[error("event type {event_type:?} cannot name a schema directory: {reason}")]
    EventTypeName {
        /// The name.
        event_type: String,
        /// Why not.
        reason: &'static str,
    },
    /// Two schemas for one event type, or one version twice in a history.
    #[error("{what} appears twice: {name}")]
    Duplicate {
        /// "event type" or "version".
        what: &'static str,
        /// The event type, or the version.
        name: String,
    },
    /// Reading, writing or listing a schema file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A schema file is not JSON.
    #[error("{}: not JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Checking one event type's schemas failed.
    #[error("event type {event_type:?}: {source}")]
    EventType {
        /// The event type.
        event_type: String,
        /// The cause.
        #[source]
        source: Box<ContractError>,
    },
    /// Committed contracts do not hold: every problem found, at once.
    #[error("{}", problems_text(problems))]
    Broken {
        /// The problems, in event-type order.
        problems: Vec<Problem>,
    },
}

fn problems_text(problems: &[Problem]) -> String {
    let mut s = format!("{} event contract problem(s):", problems.len());
    for p in problems {
        s.push_str("\n  - ");
        s.push_str(&p.to_string());
    }
    s
}

impl ContractError {
    pub(crate) fn unsupported(pointer: &str, keyword: &str, reason: impl Into<String>) -> Self {
        ContractError::Unsupported {
            pointer: pointer.to_owned(),
            keyword: keyword.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(pointer: &str, reason: impl Into<String>) -> Self {
        ContractError::Invalid {
            pointer: pointer.to_owned(),
            reason: reason.into(),
        }
    }
}
