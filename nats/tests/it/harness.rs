//! The JetStream harness of the conformance suite.

use annals_broker::Headers;
use annals_broker_conformance::BrokerHarness;
use annals_nats::async_nats::jetstream;
use annals_nats::{
    ConsumerSettings, JetStreamConsumer, JetStreamPublisher, StreamSettings, async_nats,
};

/// The shared local server.
pub(crate) const NATS: &str = "127.0.0.1:4222";

pub(crate) async fn client() -> async_nats::Client {
    async_nats::connect(NATS)
        .await
        .expect("NATS with JetStream on 127.0.0.1:4222 (.ci/run starts it)")
}

/// The stream of a test prefix: `ANNALS_TEST_<PREFIX>` (one per prefix; each test uses its
/// own prefix).
pub(crate) fn stream_name(prefix: &str) -> String {
    format!(
        "ANNALS_TEST_{}",
        prefix.replace(['-', '.'], "_").to_uppercase()
    )
}

/// JetStream on a server: the shared one, or one of the test's own that it can kill and
/// restart.
pub(crate) struct JetStream {
    pub(crate) client: async_nats::Client,
    server: Option<std::sync::Mutex<crate::server::NatsServer>>,
}

impl JetStream {
    pub(crate) async fn local() -> Self {
        Self {
            client: client().await,
            server: None,
        }
    }

    /// A server of its own (`None` when `nats-server` is not installed).
    pub(crate) async fn own_server() -> Option<Self> {
        let server = crate::server::NatsServer::start()?;
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(server.url())
            .await
            .unwrap();
        Some(Self {
            client,
            server: Some(std::sync::Mutex::new(server)),
        })
    }
}

impl BrokerHarness for JetStream {
    type Publisher = JetStreamPublisher;
    type Consumer = JetStreamConsumer;

    async fn publisher(&self, prefix: &str) -> JetStreamPublisher {
        let js = jetstream::new(self.client.clone());
        let name = stream_name(prefix);
        // A stream left by an earlier run goes: the test starts empty. The new one exists
        // before any consumer opens.
        let _ = js.delete_stream(&name).await;
        let publisher = self.publisher_again(prefix).await;
        annals_broker::Publisher::prepare(&publisher).await.unwrap();
        publisher
    }

    async fn publisher_again(&self, prefix: &str) -> JetStreamPublisher {
        JetStreamPublisher::new(
            self.client.clone(),
            StreamSettings::for_prefix(stream_name(prefix), prefix),
        )
    }

    async fn quick_consumer(&self, prefix: &str, name: &str) -> JetStreamConsumer {
        JetStreamConsumer::open(
            self.client.clone(),
            ConsumerSettings::new(stream_name(prefix), name)
                .ack_wait(std::time::Duration::from_millis(500)),
        )
        .await
        .unwrap()
    }

    async fn consumer(&self, prefix: &str, name: &str) -> JetStreamConsumer {
        JetStreamConsumer::open(
            self.client.clone(),
            ConsumerSettings::new(stream_name(prefix), name),
        )
        .await
        .unwrap()
    }

    async fn set_down(&self, down: bool) -> bool {
        let Some(server) = &self.server else {
            return false;
        };
        let mut server = server.lock().unwrap();
        if down {
            server.kill();
        } else {
            server.restart();
        }
        true
    }

    async fn stored(&self, prefix: &str) -> Vec<(String, Headers)> {
        stored(&self.client, &stream_name(prefix)).await
    }
}

/// Every message of JetStream stream `name`, in order: (subject, headers).
pub(crate) async fn stored(client: &async_nats::Client, name: &str) -> Vec<(String, Headers)> {
    let js = jetstream::new(client.clone());
    let mut stream = js.get_stream(name).await.unwrap();
    let info = stream.info().await.unwrap().clone();
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let Ok(m) = stream.get_raw_message(seq).await else {
            continue;
        };
        let mut headers = Headers::new();
        for (k, v) in m.headers.iter() {
            if let Some(v) = v.first() {
                headers.insert(k.to_string(), v.as_str().to_owned());
            }
        }
        out.push((m.subject.to_string(), headers));
    }
    out
}
