//! The relay's side: publish with acknowledgement to a JetStream stream.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use annals_broker::{BrokerError, OutgoingMessage, Publisher};
use async_nats::jetstream::{self, message::PublishMessage};

use crate::to_nats_headers;

/// The JetStream stream a relay publishes to.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StreamSettings {
    /// The stream's name, e.g. `ORDERS`.
    pub name: String,
    /// The subjects it takes, e.g. `["orders.>"]`.
    pub subjects: Vec<String>,
    /// The duplicate window for a stream the relay creates, and the least it accepts in one
    /// that exists (default 2 minutes).
    pub duplicate_window: Duration,
}

impl StreamSettings {
    /// The stream `name` taking every subject under `prefix` (`<prefix>.>`).
    pub fn for_prefix(name: impl Into<String>, prefix: &str) -> Self {
        Self {
            name: name.into(),
            subjects: vec![format!("{prefix}.>")],
            duplicate_window: Duration::from_secs(120),
        }
    }

    /// Sets the duplicate window.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    fn config(&self) -> jetstream::stream::Config {
        jetstream::stream::Config {
            name: self.name.clone(),
            subjects: self.subjects.clone(),
            duplicate_window: self.duplicate_window,
            storage: jetstream::stream::StorageType::File,
            retention: jetstream::stream::RetentionPolicy::Limits,
            num_replicas: 1,
            ..Default::default()
        }
    }

    /// Why an existing stream's configuration cannot take the relay's messages.
    fn incompatibility(&self, found: &jetstream::stream::Config) -> Option<String> {
        if found.no_ack {
            return Some("it does not acknowledge publishes (no_ack)".into());
        }
        if found.duplicate_window < self.duplicate_window {
            return Some(format!(
                "its duplicate window is {:?}, less than {:?}",
                found.duplicate_window, self.duplicate_window
            ));
        }
        for s in &self.subjects {
            if !found.subjects.iter().any(|f| f == s) {
                return Some(format!(
                    "it does not take subject {s:?} (its subjects: {:?})",
                    found.subjects
                ));
            }
        }
        None
    }
}

/// Publishes to JetStream. Cheap to clone.
#[derive(Clone)]
pub struct JetStreamPublisher {
    js: jetstream::Context,
    stream: StreamSettings,
}

impl JetStreamPublisher {
    /// A publisher on `client` into the stream `stream`.
    pub fn new(client: async_nats::Client, stream: StreamSettings) -> Self {
        Self {
            js: jetstream::new(client),
            stream,
        }
    }

    /// The JetStream context.
    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }
}

/// The acknowledgement of one JetStream publish.
pub struct JetStreamAck {
    inner: Pin<
        Box<
            dyn Future<
                    Output = Result<
                        jetstream::publish::PublishAck,
                        jetstream::context::PublishError,
                    >,
                > + Send,
        >,
    >,
}

impl Future for JetStreamAck {
    type Output = Result<(), BrokerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx).map(|r| {
            r.map(|_| ())
                .map_err(|e| BrokerError::client("publish acknowledgement", e))
        })
    }
}

impl Publisher for JetStreamPublisher {
    type Ack = JetStreamAck;

    async fn prepare(&self) -> Result<(), BrokerError> {
        match self.js.get_stream(&self.stream.name).await {
            Ok(mut stream) => {
                let info = stream
                    .info()
                    .await
                    .map_err(|e| BrokerError::client("reading the stream's configuration", e))?;
                match self.stream.incompatibility(&info.config) {
                    Some(reason) => Err(BrokerError::Incompatible {
                        name: self.stream.name.clone(),
                        reason,
                    }),
                    None => Ok(()),
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(js)
                        if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                self.js
                    .create_stream(self.stream.config())
                    .await
                    .map_err(|e| BrokerError::client("creating the stream", e))?;
                tracing::info!(stream = %self.stream.name, "created the JetStream stream");
                Ok(())
            }
            Err(e) => Err(BrokerError::client("looking up the stream", e)),
        }
    }

    async fn publish(&self, message: OutgoingMessage) -> Result<JetStreamAck, BrokerError> {
        let publish = PublishMessage::build()
            .payload(message.payload.into())
            .headers(to_nats_headers(&message.headers))
            .message_id(message.id);
        let ack = self
            .js
            .send_publish(message.subject, publish)
            .await
            .map_err(|e| BrokerError::client("publish", e))?;
        Ok(JetStreamAck {
            inner: ack.into_future(),
        })
    }
}
