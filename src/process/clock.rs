//! The runner's clock: the system's, or a [`ManualClock`] that tests move by hand so that no
//! test sleeps for a real deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use annals_core::Timestamp;
use tokio::sync::watch;

/// Tells the time and waits for it.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;

    /// Resolves at or after `at` (at once if it has passed).
    fn sleep_until(&self, at: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, at: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let wait = u64::try_from(at.0.saturating_sub(Timestamp::now().0)).unwrap_or(0);
        Box::pin(tokio::time::sleep(Duration::from_micros(wait)))
    }
}

/// A clock that moves only when told to: for tests of deadlines.
///
/// ```
/// use annals::process::{Clock, ManualClock};
/// use std::time::Duration;
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(clock.now().0 - t0.0, 30_000_000);
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock standing at the system's time now.
    pub fn new() -> Self {
        Self::at(Timestamp::now())
    }

    /// A clock standing at `t`.
    pub fn at(t: Timestamp) -> Self {
        Self {
            now: Arc::new(watch::Sender::new(t)),
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        self.now
            .send_modify(|t| *t = Timestamp(t.0.saturating_add(micros)));
    }

    /// Sets the clock to `t` (a clock may go back, as system clocks do).
    pub fn set(&self, t: Timestamp) {
        self.now.send_replace(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // Ends when the time has come (or the clock is gone: nothing will move it).
            let _ = rx.wait_for(|now| *now >= at).await;
        })
    }
}
