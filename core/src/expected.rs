//! [`ExpectedVersion`]: the optimistic-concurrency condition of an append.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::Version;

/// What the caller believes about a stream's version when appending to it.
///
/// With [`ExpectedVersion::Exact`], at most one of any set of concurrent appends succeeds; the
/// others fail with [`Error::Conflict`](crate::Error::Conflict).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No condition: append whatever the stream's version.
    Any,
    /// The stream must not exist yet (have no events).
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's version must be exactly this. `Exact(Version::NONE)` is the same as
    /// [`ExpectedVersion::NoStream`].
    Exact(Version),
}

impl ExpectedVersion {
    /// Whether a stream at `actual` satisfies this expectation.
    pub fn accepts(self, actual: Version) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == Version::NONE,
            ExpectedVersion::StreamExists => actual > Version::NONE,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }

    /// The version the stream had before the append, if this expectation names one.
    pub fn exact(self) -> Option<Version> {
        match self {
            ExpectedVersion::NoStream => Some(Version::NONE),
            ExpectedVersion::Exact(v) => Some(v),
            ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts() {
        use ExpectedVersion::*;
        assert!(Any.accepts(Version(0)) && Any.accepts(Version(9)));
        assert!(NoStream.accepts(Version(0)) && !NoStream.accepts(Version(1)));
        assert!(!StreamExists.accepts(Version(0)) && StreamExists.accepts(Version(3)));
        assert!(Exact(Version(3)).accepts(Version(3)) && !Exact(Version(3)).accepts(Version(2)));
        assert!(Exact(Version(0)).accepts(Version(0)));
    }
}
