//! Leases in a JetStream key-value bucket, for inbox groups: a key per lease whose value is
//! its holder, expiring with the bucket's `max_age` unless renewed.

use std::time::Duration;

use annals_broker::BrokerError;
use annals_broker::group::{Leases, OpenPartition};
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;

use crate::consumer::{ConsumerSettings, JetStreamConsumer};

/// Leases in the key-value bucket `bucket`, each living `ttl` after its last renewal.
#[derive(Clone)]
pub struct NatsLeases {
    store: kv::Store,
    ttl: Duration,
}

impl NatsLeases {
    /// Opens (or creates) the bucket. Every member of a group must use the same bucket and
    /// `ttl`; renew at least three times per `ttl`.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when the server cannot be reached.
    pub async fn open(
        client: async_nats::Client,
        bucket: &str,
        ttl: Duration,
    ) -> Result<Self, BrokerError> {
        let js = jetstream::new(client);
        // The bucket's stream, made by hand with the key-value conventions (async-nats'
        // `create_key_value` asks for account details that a 2.9 server answers in a shape
        // it does not read).
        if js.get_stream(format!("KV_{bucket}")).await.is_err() {
            js.create_stream(jetstream::stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age: ttl,
                duplicate_window: ttl.min(Duration::from_secs(120)),
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: jetstream::stream::DiscardPolicy::New,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| BrokerError::client("creating the lease bucket", e))?;
        }
        let store = js
            .get_key_value(bucket)
            .await
            .map_err(|e| BrokerError::client("opening the lease bucket", e))?;
        Ok(Self { store, ttl })
    }

    async fn current(&self, key: &str) -> Result<Option<kv::Entry>, BrokerError> {
        let entry = self
            .store
            .entry(key)
            .await
            .map_err(|e| BrokerError::client("reading a lease", e))?;
        Ok(entry.filter(|e| e.operation == kv::Operation::Put))
    }
}

impl Leases for NatsLeases {
    async fn acquire(&self, key: &str, holder: &str) -> Result<bool, BrokerError> {
        match self.current(key).await? {
            Some(e) if e.value == holder.as_bytes() => self.renew(key, holder).await,
            Some(_) => Ok(false),
            // Free (never taken, expired or released): take it; a racing taker loses.
            None => Ok(self
                .store
                .create(key, holder.to_owned().into())
                .await
                .is_ok()),
        }
    }

    async fn renew(&self, key: &str, holder: &str) -> Result<bool, BrokerError> {
        match self.current(key).await? {
            Some(e) if e.value == holder.as_bytes() => Ok(self
                .store
                .update(key, holder.to_owned().into(), e.revision)
                .await
                .is_ok()),
            _ => Ok(false),
        }
    }

    async fn release(&self, key: &str, holder: &str) -> Result<(), BrokerError> {
        if let Some(e) = self.current(key).await?
            && e.value == holder.as_bytes()
        {
            self.store
                .delete_expect_revision(key, Some(e.revision))
                .await
                .map_err(|e| BrokerError::client("releasing a lease", e))?;
        }
        Ok(())
    }

    fn ttl(&self) -> Option<Duration> {
        Some(self.ttl)
    }

    async fn held(&self, prefix: &str) -> Result<Vec<(String, String)>, BrokerError> {
        let mut keys = match self.store.keys().await {
            Ok(k) => k,
            Err(e) => return Err(BrokerError::client("listing leases", e)),
        };
        let mut names = Vec::new();
        while let Some(k) = keys.next().await {
            if let Ok(k) = k
                && k.starts_with(prefix)
            {
                names.push(k);
            }
        }
        let mut out = Vec::new();
        for k in names {
            if let Some(e) = self.current(&k).await? {
                out.push((k, String::from_utf8_lossy(&e.value).into_owned()));
            }
        }
        Ok(out)
    }
}

/// Opens the durable consumer `<durable>-<k>` of partition `k` (`<prefix>.<k>.>`) of a
/// JetStream stream, for an inbox group.
#[derive(Clone)]
pub struct JetStreamPartitions {
    client: async_nats::Client,
    settings: ConsumerSettings,
    prefix: String,
}

impl JetStreamPartitions {
    /// The partitions of the relay prefix `prefix` in the stream of `settings`; each
    /// partition's consumer is `settings` with its durable name suffixed and its filter set.
    pub fn new(client: async_nats::Client, settings: ConsumerSettings, prefix: &str) -> Self {
        Self {
            client,
            settings,
            prefix: prefix.to_owned(),
        }
    }
}

impl OpenPartition for JetStreamPartitions {
    type Consumer = JetStreamConsumer;

    async fn open(&self, k: u32) -> Result<JetStreamConsumer, BrokerError> {
        let mut settings = self.settings.clone();
        settings.durable = format!("{}-{k}", settings.durable);
        settings.filter_subject = format!("{}.{k}.>", self.prefix);
        let consumer = JetStreamConsumer::open(self.client.clone(), settings).await?;
        Ok(consumer)
    }
}
