//! A projection worker's configuration: batches, retries, what happens after them.

use std::time::Duration;

/// How failing events are retried.
#[derive(Clone, Debug)]
#[non_exhaustive]
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

impl RetryPolicy {
    /// Sets the number of tries in all (at least 1).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// Sets the wait before the second try.
    pub fn initial_backoff(mut self, initial_backoff: Duration) -> Self {
        self.initial_backoff = initial_backoff;
        self
    }

    /// Sets the longest wait.
    pub fn max_backoff(mut self, max_backoff: Duration) -> Self {
        self.max_backoff = max_backoff;
        self
    }
}

/// What happens to an event that still fails after every retry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Park it (dead-letter record with the error) and go on with the next event.
    #[default]
    Park,
    /// Stop the projection until `resume` (which tries the event again).
    Stop,
}

/// Options of one projection's worker.
#[derive(Clone, Debug)]
#[non_exhaustive]
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

impl ProjectionConfig {
    /// Sets the most events in one batch.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Sets how long a batch may wait to fill once its first event is there.
    pub fn batch_wait(mut self, batch_wait: Duration) -> Self {
        self.batch_wait = batch_wait;
        self
    }

    /// Sets the retries of failing events.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets what happens after the retries.
    pub fn on_failure(mut self, on_failure: FailurePolicy) -> Self {
        self.on_failure = on_failure;
        self
    }
}
