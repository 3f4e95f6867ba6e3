//! The relay's side: persistent messages with publisher confirms to a topic exchange.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use annals_broker::{BrokerError, OutgoingMessage, Publisher};
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use tokio::sync::Mutex;

use crate::consumer::{QueueSettings, declare_queue};
use crate::{is_precondition_failed, open_channel, routing_key, short, to_table};

/// What the relay does with a message no queue is bound to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unroutable {
    /// A publish error: the relay retries with backoff until a queue takes it (default).
    #[default]
    Retry,
    /// Counts as published: nobody has to see it.
    Drop,
}

/// The RabbitMQ server and topic exchange a relay publishes to.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExchangeSettings {
    /// The server, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub uri: String,
    /// The topic exchange, declared durable when missing.
    pub exchange: String,
    /// Queues the relay declares and binds when it prepares (consumers declare theirs too).
    pub queues: Vec<QueueSettings>,
    /// What an unroutable message is.
    pub unroutable: Unroutable,
}

impl ExchangeSettings {
    /// The topic exchange `exchange` on the server at `uri`.
    pub fn new(uri: impl Into<String>, exchange: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            exchange: exchange.into(),
            queues: Vec::new(),
            unroutable: Unroutable::Retry,
        }
    }

    /// Also declares and binds `queue` when the relay prepares, so that no event is
    /// published before the queue that must receive it exists.
    pub fn bind(mut self, queue: QueueSettings) -> Self {
        self.queues.push(queue);
        self
    }

    /// Sets what an unroutable message is.
    pub fn unroutable(mut self, unroutable: Unroutable) -> Self {
        self.unroutable = unroutable;
        self
    }
}

/// Declares `exchange` as a durable topic exchange: [`BrokerError::Incompatible`] when it
/// exists as something else.
pub(crate) async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), BrokerError> {
    let name = short("exchange", exchange)?;
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    match channel
        .exchange_declare(name, ExchangeKind::Topic, options, FieldTable::default())
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_precondition_failed(&e) => Err(BrokerError::Incompatible {
            name: exchange.to_owned(),
            reason: format!("it exists with other settings than a durable topic exchange ({e})"),
        }),
        Err(e) => Err(BrokerError::client("declaring the exchange", e)),
    }
}

/// A live connection and its confirm-mode channel.
struct Link {
    connection: Connection,
    channel: Channel,
}

/// Publishes to a RabbitMQ topic exchange. Cheap to clone (clones share one connection,
/// opened on first use and again after it broke).
#[derive(Clone)]
pub struct AmqpPublisher {
    settings: Arc<ExchangeSettings>,
    link: Arc<Mutex<Option<Link>>>,
}

impl AmqpPublisher {
    /// A publisher with `settings`; connects on first use.
    pub fn new(settings: ExchangeSettings) -> Self {
        Self {
            settings: Arc::new(settings),
            link: Arc::new(Mutex::new(None)),
        }
    }

    /// The confirm-mode channel, connecting (and declaring the exchange) when there is no
    /// live one.
    async fn channel(&self) -> Result<Channel, BrokerError> {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_ref()
            && l.connection.status().connected()
            && l.channel.status().connected()
        {
            return Ok(l.channel.clone());
        }
        *link = None;
        let (connection, channel) = open_channel(&self.settings.uri, "annals-relay").await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| BrokerError::client("enabling publisher confirms", e))?;
        declare_exchange(&channel, &self.settings.exchange).await?;
        *link = Some(Link {
            connection,
            channel: channel.clone(),
        });
        Ok(channel)
    }

    /// Forgets the connection, so that the next use opens a new one.
    async fn reset(&self) {
        *self.link.lock().await = None;
    }
}

/// The confirmation of one publish.
pub struct AmqpAck {
    inner: Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>>,
}

impl Future for AmqpAck {
    type Output = Result<(), BrokerError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl Publisher for AmqpPublisher {
    type Ack = AmqpAck;

    async fn prepare(&self) -> Result<(), BrokerError> {
        // A fresh connection: the exchange is declared (and checked) on it.
        self.reset().await;
        let channel = match self.channel().await {
            Ok(c) => c,
            Err(e) => {
                self.reset().await;
                return Err(e);
            }
        };
        for queue in &self.settings.queues {
            if let Err(e) = declare_queue(&channel, &self.settings.exchange, queue).await {
                self.reset().await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn publish(&self, message: OutgoingMessage) -> Result<AmqpAck, BrokerError> {
        let channel = self.channel().await?;
        let exchange = short("exchange", &self.settings.exchange)?;
        let key = ShortString::try_new(routing_key(&message.subject))
            .map_err(|e| BrokerError::Config(format!("routing key: {e}")))?;
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(to_table(&message.headers));
        if let Ok(id) = ShortString::try_new(message.id.as_str()) {
            props = props.with_message_id(id);
        }
        if let Some(ct) = message
            .headers
            .get(annals_broker::cloudevents::CONTENT_TYPE)
            && let Ok(ct) = ShortString::try_new(ct.as_str())
        {
            props = props.with_content_type(ct);
        }
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = match channel
            .basic_publish(exchange, key, options, &message.payload, props)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                self.reset().await;
                return Err(BrokerError::client("publish", e));
            }
        };
        let unroutable = self.settings.unroutable;
        let subject = message.subject;
        let this = self.clone();
        Ok(AmqpAck {
            inner: Box::pin(async move {
                match confirm.await {
                    Ok(Confirmation::Ack(None)) => Ok(()),
                    Ok(Confirmation::Ack(Some(returned))) => match unroutable {
                        Unroutable::Drop => Ok(()),
                        Unroutable::Retry => Err(BrokerError::Unavailable {
                            message: format!(
                                "no queue is bound for {subject:?} ({} {})",
                                returned.reply_code, returned.reply_text
                            ),
                            source: None,
                        }),
                    },
                    Ok(Confirmation::Nack(_)) => Err(BrokerError::Unavailable {
                        message: format!("RabbitMQ did not store the message for {subject:?}"),
                        source: None,
                    }),
                    Ok(Confirmation::NotRequested) => Err(BrokerError::Unavailable {
                        message: "the channel is not in confirm mode".into(),
                        source: None,
                    }),
                    Err(e) => {
                        this.reset().await;
                        Err(BrokerError::client("publish confirmation", e))
                    }
                }
            }),
        })
    }
}
