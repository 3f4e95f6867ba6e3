//! The RabbitMQ harness of the conformance suite.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use annals_amqp::lapin::options::{
    BasicAckOptions, BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use annals_amqp::lapin::{self, Connection, ConnectionProperties};
use annals_amqp::{AmqpConsumer, AmqpPublisher, ExchangeSettings, QueueKind, QueueSettings};
use annals_broker::Headers;
use annals_broker_conformance::BrokerHarness;

/// The shared local server.
pub(crate) const URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Test queues go away ten minutes after their last consumer (and the audit queues, which
/// never have one, ten minutes after they were declared).
pub(crate) const EXPIRES: Duration = Duration::from_secs(600);

pub(crate) async fn connect() -> Connection {
    Connection::connect(URI, ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672 (guest/guest)")
}

/// The variable that gives a crash test's child its parent's run id.
const RUN_VAR: &str = "ANNALS_AMQP_TEST_RUN";

/// This run's id: the test process's (a crash test's child inherits its parent's).
fn run() -> String {
    std::env::var(RUN_VAR).unwrap_or_else(|_| std::process::id().to_string())
}

/// Names unique to this run, so that runs never share a queue.
pub(crate) fn exchange_name(prefix: &str) -> String {
    format!("annals-test.{}.{prefix}", run())
}

pub(crate) fn queue_name(prefix: &str, name: &str) -> String {
    format!("{}.{name}", exchange_name(prefix))
}

/// RabbitMQ, with an audit queue per prefix that keeps a copy of everything published.
/// The relay and the inbox reach it directly, or through a proxy that can cut them off.
#[derive(Default)]
pub(crate) struct Rabbit {
    seen: Mutex<HashMap<String, Vec<(String, Headers)>>>,
    proxy: Option<crate::proxy::Proxy>,
}

impl Rabbit {
    pub(crate) fn local() -> Self {
        Self::default()
    }

    /// The relay and the inbox connect through a proxy (the audit queue is read directly).
    pub(crate) fn behind_a_proxy() -> Self {
        Self {
            proxy: Some(crate::proxy::Proxy::start("127.0.0.1:5672")),
            ..Self::default()
        }
    }

    /// The server as the relay and the inbox reach it.
    fn uri(&self) -> String {
        match &self.proxy {
            Some(p) => format!("amqp://guest:guest@127.0.0.1:{}/%2f", p.port()),
            None => URI.to_owned(),
        }
    }
}

pub(crate) fn audit(prefix: &str) -> QueueSettings {
    QueueSettings::new(
        URI,
        exchange_name(prefix),
        queue_name(prefix, "audit"),
        prefix,
    )
    .kind(QueueKind::Classic)
    .single_active_consumer(false)
    .expires(EXPIRES)
}

impl BrokerHarness for Rabbit {
    type Publisher = AmqpPublisher;
    type Consumer = AmqpConsumer;
    const DEDUPLICATES: bool = false;

    async fn publisher(&self, prefix: &str) -> AmqpPublisher {
        let conn = connect().await;
        let channel = conn.create_channel().await.unwrap();
        let _ = channel
            .queue_delete(
                queue_name(prefix, "audit").as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await;
        let _ = channel
            .exchange_delete(
                exchange_name(prefix).as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
        let _ = conn.close(200, "bye".into()).await;
        self.publisher_again(prefix).await
    }

    async fn publisher_again(&self, prefix: &str) -> AmqpPublisher {
        AmqpPublisher::new(
            ExchangeSettings::new(self.uri(), exchange_name(prefix)).bind(audit(prefix)),
        )
    }

    async fn set_down(&self, down: bool) -> bool {
        match &self.proxy {
            Some(p) => {
                p.set_down(down);
                true
            }
            None => false,
        }
    }

    fn child_env(&self) -> Vec<(String, String)> {
        vec![(RUN_VAR.to_owned(), run())]
    }

    async fn consumer(&self, prefix: &str, name: &str) -> AmqpConsumer {
        AmqpConsumer::open(
            QueueSettings::new(
                self.uri(),
                exchange_name(prefix),
                queue_name(prefix, name),
                prefix,
            )
            .expires(EXPIRES),
        )
        .await
        .unwrap()
    }

    async fn stored(&self, prefix: &str) -> Vec<(String, Headers)> {
        let conn = connect().await;
        let channel = conn.create_channel().await.unwrap();
        let mut fresh = Vec::new();
        loop {
            let got = channel
                .basic_get(
                    queue_name(prefix, "audit").as_str().into(),
                    BasicGetOptions::default(),
                )
                .await;
            let m = match got {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => panic!("reading the audit queue: {e}"),
            };
            let headers = annals_amqp_headers(&m.delivery);
            fresh.push((m.delivery.routing_key.as_str().to_owned(), headers));
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
        let _ = conn.close(200, "bye".into()).await;
        let mut seen = self.seen.lock().unwrap();
        let all = seen.entry(prefix.to_owned()).or_default();
        all.extend(fresh);
        all.clone()
    }
}

/// The headers of a raw delivery, as annals reads them.
fn annals_amqp_headers(d: &lapin::message::Delivery) -> Headers {
    let mut out = Headers::new();
    if let Some(t) = d.properties.headers() {
        for (k, v) in t.inner() {
            if let lapin::types::AMQPValue::LongString(s) = v {
                out.insert(
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(s.as_bytes()).into_owned(),
                );
            }
        }
    }
    out
}
