//! The error type of the broker bridge.

use annals_core::Source;

/// What can go wrong relaying events to a broker or consuming them from one.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker cannot be reached, or did not answer in time. Transient: the relay and
    /// the inbox retry with backoff.
    #[error("broker unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The client's error, when there is one.
        #[source]
        source: Option<Source>,
    },
    /// The broker refused a message or a request (it will refuse it again).
    #[error("broker refused: {message}")]
    Refused {
        /// What the broker said.
        message: String,
        /// The client's error, when there is one.
        #[source]
        source: Option<Source>,
    },
    /// The destination exists with settings the relay cannot work with (checked at start).
    #[error("destination {name:?} is incompatible: {reason}")]
    Incompatible {
        /// The destination (a JetStream stream, a topic, ...).
        name: String,
        /// Which setting is wrong, and what it must be.
        reason: String,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The local event store failed.
    #[error(transparent)]
    Store(#[from] annals_core::Error),
    /// The relay, inbox or consumer has shut down.
    #[error("shut down")]
    Closed,
}

impl BrokerError {
    /// An `Unavailable` error caused by `source`.
    pub fn unavailable(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BrokerError::Unavailable {
            message: message.into(),
            source: Some(std::sync::Arc::new(source)),
        }
    }

    /// An `Unavailable` error of a broker client failing at `what` (the message is
    /// `<what>: <source>`).
    pub fn client(what: &str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::unavailable(format!("{what}: {source}"), source)
    }

    /// A `Refused` error caused by `source`.
    pub fn refused(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BrokerError::Refused {
            message: message.into(),
            source: Some(std::sync::Arc::new(source)),
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            BrokerError::Unavailable { .. } => true,
            BrokerError::Store(e) => !matches!(
                e,
                annals_core::Error::Corrupt { .. } | annals_core::Error::Poisoned { .. }
            ),
            _ => false,
        }
    }
}
