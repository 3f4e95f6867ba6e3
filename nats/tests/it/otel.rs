//! Traces across services: an event written with a W3C `traceparent` in its metadata is
//! relayed with the header, and the inbox handles it inside a span whose OpenTelemetry
//! parent is that trace context (feature `otel` of annals-broker).

use std::time::Duration;

use annals_broker::{
    HandleError, Inbox, InboxConfig, InboxHandler, IncomingEvent, MemCheckpoints, MemDeadLetters,
    RelayConfig,
};
use annals_broker_conformance::relay_through;
use annals_core::{EventData, EventStore, ExpectedVersion, Metadata, StreamId};
use annals_nats::async_nats::jetstream;
use annals_nats::{ConsumerSettings, JetStreamConsumer, JetStreamPublisher, StreamSettings};
use annals_store::MemStore;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;

use crate::harness::{client, stream_name};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// Opens a span of its own inside the handler (the "handler's work").
struct Traced;

impl InboxHandler for Traced {
    async fn handle(&self, _: &IncomingEvent) -> Result<(), HandleError> {
        let _work = tracing::info_span!("charge_card").entered();
        Ok(())
    }
}

// One thread: the subscriber set for this test sees the inbox's tasks too.
#[tokio::test(flavor = "current_thread")]
async fn the_handler_span_continues_the_publishers_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("annals-test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let client = client().await;
    let prefix = format!("otel-{}", std::process::id());
    let name = stream_name(&prefix);
    let js = jetstream::new(client.clone());
    let _ = js.delete_stream(&name).await;
    let store = MemStore::new();
    let data = EventData::json("OrderPlaced", &1).unwrap().with_metadata(
        Metadata::new().with_header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN}-01")),
    );
    let head = store
        .append(
            &StreamId::new("order-1").unwrap(),
            ExpectedVersion::Any,
            vec![data],
        )
        .await
        .unwrap()
        .last_position;
    relay_through(
        &store,
        JetStreamPublisher::new(client.clone(), StreamSettings::for_prefix(&name, &prefix)),
        MemCheckpoints::new(),
        RelayConfig::new("otel", "orders", &prefix),
        head,
    )
    .await;
    let inbox = Inbox::start(
        JetStreamConsumer::open(client.clone(), ConsumerSettings::new(&name, "otel"))
            .await
            .unwrap(),
        Traced,
        MemDeadLetters::new(),
        InboxConfig::new("otel").fetch_wait(Duration::from_millis(100)),
    );
    inbox
        .wait_for_settled(1, Duration::from_secs(30))
        .await
        .unwrap();
    inbox.shutdown().await;
    let _ = js.delete_stream(&name).await;
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let message = spans
        .iter()
        .find(|s| s.name == "inbox_message")
        .expect("an inbox_message span");
    assert_eq!(message.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(message.parent_span_id.to_string(), PARENT_SPAN);
    let work = spans
        .iter()
        .find(|s| s.name == "charge_card")
        .expect("the handler's span");
    assert_eq!(
        work.span_context.trace_id().to_string(),
        TRACE_ID,
        "one trace across services"
    );
    assert_eq!(work.parent_span_id, message.span_context.span_id());
}
