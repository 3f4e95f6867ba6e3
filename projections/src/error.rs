//! The error type of the projection runtime.

use std::time::Duration;

use annals_core::Position;

/// What can go wrong running projections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// A handler failed on an event. The runtime retries it with backoff, then parks it or
    /// stops, by policy.
    #[error("projection handler failed at position {position:?}: {message}")]
    Handler {
        /// The event that failed, when known.
        position: Option<Position>,
        /// The handler's message (its error's `Display`).
        message: String,
        /// The handler's error, when it returned one.
        #[source]
        source: Option<annals_core::Source>,
    },
    /// The read model's storage failed (retried like a handler failure).
    #[error("read model storage: {message}")]
    ReadModel {
        /// What failed.
        message: String,
        /// The SQLSTATE of a PostgreSQL error (`"40001"` for a serialization failure, ...).
        code: Option<String>,
        /// The storage engine's error (sled, tantivy, PostgreSQL), when there is one.
        #[source]
        source: Option<annals_core::Source>,
    },
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] annals_core::Error),
    /// `wait_for` gave up: the projection had not reached `position` after `waited`.
    #[error(
        "projection {projection} did not reach position {position} within {waited:?} (at {reached})"
    )]
    Timeout {
        /// The projection waited on.
        projection: String,
        /// The position waited for.
        position: Position,
        /// Where it was when the time ran out.
        reached: Position,
        /// How long it waited.
        waited: Duration,
    },
    /// The projection stopped after a failure (policy `Stop`); `resume` retries.
    #[error("projection {projection} stopped: {reason}")]
    Stopped {
        /// The projection.
        projection: String,
        /// The failure that stopped it.
        reason: String,
    },
    /// `wait_for` reached the position, but by parking the event there (dead-letter list)
    /// rather than applying it: its effect is not in the read model.
    #[error("projection {projection} parked the event at position {position}: {error}")]
    Parked {
        /// The projection.
        projection: String,
        /// The parked event's position.
        position: Position,
        /// The error it was parked with.
        error: String,
    },
    /// No parked event at that position for that projection.
    #[error("no parked event at position {0}")]
    NotParked(Position),
    /// A projection of that name is already running.
    #[error("a projection named {0:?} is already running")]
    AlreadyRunning(String),
    /// A search query could not be parsed (or names an unknown field). Show `reason` to the
    /// user.
    #[error("bad query {query:?}: {reason}")]
    Query {
        /// The query text.
        query: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The worker has shut down.
    #[error("projection worker has shut down")]
    Closed,
    /// Another worker moved the checkpoint of a read model shared between processes since
    /// this one read it; the batch was rolled back. The runner reads the checkpoint again
    /// (and, with leadership, stands by); outside the runner, read
    /// [`Projection::checkpoint`](crate::Projection::checkpoint) again before applying more.
    #[error("projection {projection}: another worker moved the checkpoint from {expected}")]
    Fenced {
        /// The projection.
        projection: String,
        /// The checkpoint this worker expected to move from.
        expected: Position,
    },
    /// This process does not run the projection now (another process leads it): send
    /// reset, rebuild and retry to the leading process, or try again later.
    #[error("projection {0} is run by another process now")]
    NotLeader(String),
}

/// What a projection handler returns when it fails: any error (`?` converts one), or a
/// message (`Err("no such account".into())`). The runtime keeps it as the
/// [`ProjectionError::Handler`]'s source, retries, then parks or stops by policy.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl ProjectionError {
    /// A handler error at `position` with a message and no cause.
    pub fn handler(position: Position, message: impl Into<String>) -> Self {
        ProjectionError::Handler {
            position: Some(position),
            message: message.into(),
            source: None,
        }
    }

    /// A handler error at `position` caused by `error`.
    pub fn handler_caused(position: Position, error: HandlerError) -> Self {
        ProjectionError::Handler {
            position: Some(position),
            message: error.to_string(),
            source: Some(std::sync::Arc::from(error)),
        }
    }

    /// The SQLSTATE code of a PostgreSQL read-model error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ProjectionError::ReadModel { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

impl ProjectionError {
    /// A `ReadModel` error with a message and no cause.
    pub fn read_model(message: impl Into<String>) -> Self {
        ProjectionError::ReadModel {
            message: message.into(),
            code: None,
            source: None,
        }
    }

    /// A `ReadModel` error caused by `source`.
    pub fn read_model_caused(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        ProjectionError::ReadModel {
            message: message.into(),
            code: None,
            source: Some(std::sync::Arc::new(source)),
        }
    }
}

#[cfg(feature = "sled")]
/// A sled error of a read model or the dead-letter list (sled's type stays out of the public
/// API: no `From` impl).
pub(crate) fn sled_err(e: sled::Error) -> ProjectionError {
    ProjectionError::read_model_caused(format!("sled: {e}"), e)
}
