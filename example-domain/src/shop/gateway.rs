//! A stand-in for the payment provider: it answers each payment request — captures it,
//! declines it, or captures it late (after the order's payment window) — as a seeded hash of
//! the order id decides, so a run can be repeated.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use annals::Uuid;
use annals::prelude::*;
use annals::process::Clock;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Payment, PaymentCommand, types};

/// What the gateway does with a payment request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Takes the money at once.
    Capture,
    /// Refuses.
    Decline,
    /// Takes the money, but only after [`Gateway::late_by`].
    Late,
}

/// The payment gateway's behaviour.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Gateway {
    /// The share of requests declined (0..=1).
    pub decline_rate: f64,
    /// The share of requests captured late (0..=1).
    pub late_rate: f64,
    /// How late a late capture comes.
    pub late_by: Duration,
    /// The seed of the verdicts.
    pub seed: u64,
}

impl Default for Gateway {
    fn default() -> Self {
        Self {
            decline_rate: 0.1,
            late_rate: 0.05,
            late_by: Duration::from_secs(1),
            seed: 1,
        }
    }
}

/// A number in `0..1` from `seed` and `text` (SplitMix64 over FNV-1a).
pub(crate) fn unit(seed: u64, text: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Gateway {
    /// Sets the decline and late rates.
    pub fn rates(mut self, decline: f64, late: f64) -> Self {
        self.decline_rate = decline;
        self.late_rate = late;
        self
    }

    /// Sets how late a late capture comes.
    pub fn late_by(mut self, d: Duration) -> Self {
        self.late_by = d;
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// What the gateway does with the payment of `order`.
    pub fn verdict(&self, order: &str) -> Verdict {
        let u = unit(self.seed, order);
        if u < self.decline_rate {
            Verdict::Decline
        } else if u < self.decline_rate + self.late_rate {
            Verdict::Late
        } else {
            Verdict::Capture
        }
    }

    /// Starts answering the payment requests in `store` (all of them, from the start of the
    /// log: an answer given before is given again with the same command id, which stores
    /// nothing twice).
    pub fn start<S: EventStore + SnapshotStore>(
        self,
        store: S,
        clock: Arc<dyn Clock>,
    ) -> GatewayHandle {
        let pending = Arc::new(AtomicUsize::new(0));
        let (read_tx, read_rx) = watch::channel(Position::NONE);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(follow(
            self,
            store,
            clock,
            Arc::clone(&pending),
            read_tx,
            stop_rx,
        ));
        GatewayHandle {
            pending,
            read: read_rx,
            stop: stop_tx,
            task,
        }
    }
}

/// The running gateway.
pub struct GatewayHandle {
    pending: Arc<AtomicUsize>,
    read: watch::Receiver<Position>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl GatewayHandle {
    /// Whether every request up to `head` is read and answered.
    pub fn answered(&self, head: Position) -> bool {
        *self.read.borrow() >= head && self.pending.load(Ordering::Acquire) == 0
    }

    /// Answers still to come.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Stops it.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

async fn follow<S: EventStore + SnapshotStore>(
    gateway: Gateway,
    store: S,
    clock: Arc<dyn Clock>,
    pending: Arc<AtomicUsize>,
    read: watch::Sender<Position>,
    mut stop: watch::Receiver<bool>,
) {
    let payments = Repository::<Payment, S>::new(store.clone());
    let mut sub = store.subscribe_all(Position::NONE);
    loop {
        let next = tokio::select! {
            _ = stop.changed() => return,
            next = sub.next() => next,
        };
        let event = match next {
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "gateway cannot read the log");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            None => return,
        };
        let order = match event.stream.aggregate_id(types::PAYMENT) {
            Some(order) if event.event_type == "PaymentRequested" => order,
            _ => {
                read.send_replace(event.position);
                continue;
            }
        };
        let order = order.to_owned();
        let verdict = gateway.verdict(&order);
        let command_id = Uuid::new_v5(event.id.as_uuid(), b"gateway");
        let command = match verdict {
            Verdict::Decline => PaymentCommand::Decline {
                reason: "card refused".into(),
            },
            Verdict::Capture | Verdict::Late => PaymentCommand::Capture,
        };
        let wait = match verdict {
            Verdict::Late => {
                let micros = i64::try_from(gateway.late_by.as_micros()).unwrap_or(i64::MAX);
                Some(clock.sleep_until(Timestamp(clock.now().0.saturating_add(micros))))
            }
            _ => None,
        };
        pending.fetch_add(1, Ordering::AcqRel);
        let payments = payments.clone();
        let pending = Arc::clone(&pending);
        let mut stopped = stop.clone();
        tokio::spawn(async move {
            if let Some(wait) = wait {
                tokio::select! {
                    () = wait => {}
                    _ = stopped.changed() => {
                        pending.fetch_sub(1, Ordering::AcqRel);
                        return;
                    }
                }
            }
            let ctx = CommandContext::new().with_command_id(command_id);
            let mut backoff = Duration::from_millis(10);
            for _ in 0..20 {
                match payments.execute_with(&order, &command, &ctx).await {
                    Ok(_) | Err(RepositoryError::Domain(_)) => break,
                    Err(e) => {
                        tracing::warn!(%order, error = %e, "gateway cannot answer; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
            }
            pending.fetch_sub(1, Ordering::AcqRel);
        });
        read.send_replace(event.position);
    }
}
