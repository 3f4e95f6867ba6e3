//! A projection worker's configuration: batches, retries, what happens after them.

use std::time::Duration;

/// How failing events are retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries in all (at least 1) before the failure policy applies.
    pub attempts: u32,
    /// Wait before the second try; doubles each time.
    pub initial_backoff: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What happens to an event that still fails after every retry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Park it (dead-letter record with the error) and go on with the next event.
    #[default]
    Park,
    /// Stop the projection until `resume` (which tries the event again).
    Stop,
}

/// Options of one projection's worker.
#[derive(Clone, Debug)]
pub struct ProjectionConfig {
    /// The most events in one batch (one atomic read-model commit).
    pub batch_size: usize,
    /// How long to wait for a batch to fill once its first event is there (0: take what is
    /// there).
    pub batch_wait: Duration,
    /// Retries of failing events.
    pub retry: RetryPolicy,
    /// After the retries.
    pub on_failure: FailurePolicy,
}

impl Default for ProjectionConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            batch_wait: Duration::ZERO,
            retry: RetryPolicy::default(),
            on_failure: FailurePolicy::Park,
        }
    }
}
