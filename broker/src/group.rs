//! Inboxes that scale out: several processes share one inbox's work while keeping order per
//! stream.
//!
//! The scheme: the relay partitions subjects (`RelayConfig::partitions(n)`, stream → one of
//! `n` partitions by [`partition_of`](crate::subject::partition_of)); each partition is one
//! durable consumer (`<prefix>.<k>.>`), consumed by one process at a time. Processes of an
//! [`InboxGroup`] hold partitions by **leases** ([`Leases`], a key with a time to live in a
//! shared store: a JetStream key-value bucket in `annals-nats`): each registers itself as a
//! member, takes free partitions up to its fair share `ceil(n / members)`, renews its leases
//! every [`InboxGroupConfig::renew_every`] (a third of the lease's time to live, or less), hands
//! back partitions above its share (its inbox for the partition stops first and handles what
//! it has fetched, see [`InboxHandle::shutdown`]), and stops a partition's inbox at once
//! when a renewal fails. A crashed process's leases expire; another takes its partitions,
//! and its inbox first waits for the messages left unacknowledged
//! ([`Consumer::recover`]), so order per stream survives the
//! hand-over.
//!
//! A holder that stalls (a long pause, a slow lease store) must not go on working once its
//! lease may have ended: when the leases know their time to live ([`Leases::ttl`]), each
//! partition's inbox is **fenced** at the instant its lease may end, counted from when the
//! last successful renewal was sent, less a fifth of the time to live. Within a fetch's wait
//! of that instant it fetches nothing, and past it a message is handed back to the broker
//! instead of handled; a renewal moves the fence on.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::cloudevents::IncomingEvent;
use crate::error::BrokerError;
use crate::inbox::{HandleError, Inbox, InboxConfig, InboxHandle, InboxHandler};
use crate::parked::MessageDeadLetters;
use crate::seam::Consumer;

/// Keys with a time to live, held by one holder at a time. Used through generics.
pub trait Leases: Clone + Send + Sync + 'static {
    /// Holds `key` for `holder`: true when it is held by `holder` now (taken, or already
    /// its own and renewed), false when someone else holds it.
    ///
    /// # Errors
    /// The store's errors.
    fn acquire(
        &self,
        key: &str,
        holder: &str,
    ) -> impl Future<Output = Result<bool, BrokerError>> + Send;

    /// Renews `holder`'s lease on `key`: false when it is no longer `holder`'s.
    ///
    /// # Errors
    /// The store's errors.
    fn renew(
        &self,
        key: &str,
        holder: &str,
    ) -> impl Future<Output = Result<bool, BrokerError>> + Send;

    /// Gives `key` up, if `holder` holds it.
    ///
    /// # Errors
    /// The store's errors.
    fn release(
        &self,
        key: &str,
        holder: &str,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// How long a lease lives after its last renewal, when known: the group then stops a
    /// partition's work before its lease can have ended (see [`InboxGroup`]).
    fn ttl(&self) -> Option<Duration> {
        None
    }

    /// The keys under `prefix` held now, with their holders.
    ///
    /// # Errors
    /// The store's errors.
    fn held(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, BrokerError>> + Send;
}

/// A handler shared by the inboxes of several partitions.
impl<H: InboxHandler> InboxHandler for Arc<H> {
    fn handle(
        &self,
        event: &IncomingEvent,
    ) -> impl Future<Output = Result<(), HandleError>> + Send {
        (**self).handle(event)
    }
}

/// An inbox group's options.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct InboxGroupConfig {
    /// The group's name (the leases' key prefix; each partition's inbox is `<name>-<k>`).
    pub name: String,
    /// This process's unique member id.
    pub member: String,
    /// The number of partitions (as the relay's `partitions`).
    pub partitions: u32,
    /// How often leases are renewed and the share is checked (default 1 s; at most a third
    /// of the leases' time to live).
    pub renew_every: Duration,
    /// The options of each partition's inbox (its name is set per partition).
    pub inbox: InboxConfig,
}

impl InboxGroupConfig {
    /// A group `name` of `partitions` partitions, this process being `member`.
    pub fn new(name: impl Into<String>, member: impl Into<String>, partitions: u32) -> Self {
        let name = name.into();
        Self {
            inbox: InboxConfig::new(name.clone()),
            name,
            member: member.into(),
            partitions,
            renew_every: Duration::from_secs(1),
        }
    }

    /// Sets how often leases are renewed.
    pub fn renew_every(mut self, every: Duration) -> Self {
        self.renew_every = every;
        self
    }

    /// Sets the options of each partition's inbox.
    pub fn inbox(mut self, inbox: InboxConfig) -> Self {
        self.inbox = inbox;
        self
    }
}

/// Opens the consumer of one partition (`<prefix>.<k>.>`, durable `<name>-<k>`).
pub trait OpenPartition: Send + Sync + 'static {
    /// The consumer.
    type Consumer: Consumer;
    /// Opens the consumer of partition `k`.
    fn open(&self, k: u32) -> impl Future<Output = Result<Self::Consumer, BrokerError>> + Send;
}

/// The partitions a member holds, for its status.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct GroupStatus {
    /// The partitions this member runs now.
    pub partitions: Vec<u32>,
    /// Members seen at the last check.
    pub members: usize,
    /// Messages handled by this member's inboxes since start (stopped ones included).
    pub handled: u64,
}

/// One process's part of an inbox group.
pub struct InboxGroup;

impl InboxGroup {
    /// Starts taking part in the group. Must be called inside a Tokio runtime.
    pub fn start<O, H, D, L>(
        open: O,
        handler: H,
        dead_letters: D,
        leases: L,
        config: InboxGroupConfig,
    ) -> InboxGroupHandle
    where
        O: OpenPartition,
        H: InboxHandler,
        D: MessageDeadLetters,
        L: Leases,
    {
        let (status_tx, status_rx) = watch::channel(GroupStatus::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let span =
            tracing::info_span!("inbox_group", group = %config.name, member = %config.member);
        let member = Member {
            open,
            handler: Arc::new(handler),
            dead_letters,
            leases,
            config,
            running: BTreeMap::new(),
            fences: BTreeMap::new(),
            status: status_tx,
            stop: stop_rx,
            handled_before: 0,
        };
        let join = tokio::spawn(member.run().instrument(span));
        InboxGroupHandle {
            status: status_rx,
            stop: stop_tx,
            join,
        }
    }
}

/// The handle of a member of an inbox group.
pub struct InboxGroupHandle {
    status: watch::Receiver<GroupStatus>,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl InboxGroupHandle {
    /// The partitions it runs now.
    pub fn status(&self) -> GroupStatus {
        self.status.borrow().clone()
    }

    /// Waits until it runs exactly `n` partitions.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] after `timeout`.
    pub async fn wait_for_partitions(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<(), BrokerError> {
        let mut rx = self.status.clone();
        match tokio::time::timeout(timeout, rx.wait_for(|s| s.partitions.len() == n)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(BrokerError::Closed),
            Err(_) => Err(BrokerError::Unavailable {
                message: format!("the member did not reach {n} partitions within {timeout:?}"),
                source: None,
            }),
        }
    }

    /// Stops its inboxes, gives its partitions back and its membership up.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.join.await;
    }
}

struct Member<O, H, D, L> {
    open: O,
    handler: Arc<H>,
    dead_letters: D,
    leases: L,
    config: InboxGroupConfig,
    running: BTreeMap<u32, InboxHandle<Arc<H>, D>>,
    /// The fence of each running partition's inbox (the instant its lease may end).
    fences: BTreeMap<u32, watch::Sender<Instant>>,
    status: watch::Sender<GroupStatus>,
    stop: watch::Receiver<bool>,
    handled_before: u64,
}

impl<O: OpenPartition, H: InboxHandler, D: MessageDeadLetters, L: Leases> Member<O, H, D, L> {
    fn member_key(&self) -> String {
        format!(
            "{}.member.{}",
            self.config.name,
            crate::subject::encode_token(&self.config.member)
        )
    }

    fn partition_key(&self, k: u32) -> String {
        format!("{}.partition.{k}", self.config.name)
    }

    async fn run(mut self) {
        let mut stop = self.stop.clone();
        loop {
            if let Err(e) = self.check().await {
                tracing::warn!(error = %e, "inbox group check failed");
            }
            self.publish();
            tokio::select! {
                _ = tokio::time::sleep(self.config.renew_every) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        let owned: Vec<u32> = self.running.keys().copied().collect();
        for k in owned {
            self.hand_back(k).await;
        }
        let _ = self
            .leases
            .release(&self.member_key(), &self.config.member)
            .await;
        self.publish();
    }

    fn publish(&self) {
        let handled = self.handled_before
            + self
                .running
                .values()
                .map(|i| i.status().handled)
                .sum::<u64>();
        self.status.send_modify(|s| {
            s.partitions = self.running.keys().copied().collect();
            s.handled = handled;
        });
    }

    /// Stops partition `k`'s inbox.
    async fn stop_partition(&mut self, k: u32) {
        self.fences.remove(&k);
        if let Some(inbox) = self.running.remove(&k) {
            self.handled_before += inbox.status().handled;
            inbox.shutdown().await;
        }
    }

    /// The instant a lease renewed by a request sent at `sent` may end, less a margin.
    fn fence_from(&self, sent: Instant) -> Instant {
        match self.leases.ttl() {
            Some(ttl) => sent + ttl.saturating_sub(ttl / 5),
            // Unknown: not fenced (a century on).
            None => sent + Duration::from_secs(100 * 365 * 24 * 3600),
        }
    }

    /// Stops partition `k`'s inbox and releases its lease.
    async fn hand_back(&mut self, k: u32) {
        self.stop_partition(k).await;
        let _ = self
            .leases
            .release(&self.partition_key(k), &self.config.member)
            .await;
    }

    async fn check(&mut self) -> Result<(), BrokerError> {
        let me = self.config.member.clone();
        self.leases.acquire(&self.member_key(), &me).await?;
        // Renew what it runs; stop what it lost.
        let owned: Vec<u32> = self.running.keys().copied().collect();
        for k in owned {
            let sent = Instant::now();
            if self.leases.renew(&self.partition_key(k), &me).await? {
                let fence = self.fence_from(sent);
                if let Some(f) = self.fences.get(&k) {
                    f.send_replace(fence);
                }
            } else {
                tracing::warn!(partition = k, "lost the lease; stopping the partition");
                self.stop_partition(k).await;
            }
        }
        let members = self
            .leases
            .held(&format!("{}.member.", self.config.name))
            .await?
            .len()
            .max(1);
        self.status.send_modify(|s| s.members = members);
        let n = self.config.partitions.max(1);
        let share = (n as usize).div_ceil(members);
        // Above the share: hand the highest back (another member takes them).
        while self.running.len() > share {
            let Some(&k) = self.running.keys().next_back() else {
                break;
            };
            tracing::info!(partition = k, share, "handing a partition back");
            self.hand_back(k).await;
        }
        // Below it: take free partitions.
        for k in 0..n {
            if self.running.len() >= share {
                break;
            }
            let sent = Instant::now();
            if self.running.contains_key(&k)
                || !self.leases.acquire(&self.partition_key(k), &me).await?
            {
                continue;
            }
            let (fence, fenced) = watch::channel(self.fence_from(sent));
            match self.open.open(k).await {
                Ok(consumer) => {
                    let mut inbox = self.config.inbox.clone();
                    inbox.name = format!("{}-{k}", self.config.name);
                    let handle = Inbox::start_fenced(
                        consumer,
                        Arc::clone(&self.handler),
                        self.dead_letters.clone(),
                        inbox,
                        Some(fenced),
                    );
                    tracing::info!(partition = k, "running a partition");
                    self.running.insert(k, handle);
                    self.fences.insert(k, fence);
                }
                Err(e) => {
                    let _ = self.leases.release(&self.partition_key(k), &me).await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
