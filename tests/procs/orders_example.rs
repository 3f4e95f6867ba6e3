//! The two-services example end to end, on each broker: `examples/orders` places orders in
//! the orders service, billing charges them through JetStream, RabbitMQ or Kafka (the mock
//! cluster), orders confirms them; the example checks the correlation and causation chains
//! itself and exits 0 only when all reconcile.

use std::process::Command;

/// `target/<profile>/examples/orders`, built by `cargo test` beside this binary.
fn example() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join("orders");
    path.is_file().then_some(path)
}

fn two_services_end_to_end(broker: &str) {
    let Some(path) = example() else {
        panic!("examples/orders is not built (cargo test builds it)");
    };
    let out = Command::new(path)
        .args(["--orders", "25", "--broker", broker])
        .env_remove("ANNALS_KAFKA_BOOTSTRAP")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{broker}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains("placed 25 / paid 25 / confirmed 25 / reconciled 25"),
        "{broker}: {summary}"
    );
    assert!(summary.contains("all reconciled"), "{broker}: {summary}");
    assert_eq!(
        stdout.matches(" <- PaymentCaptured").count(),
        25,
        "{broker}"
    );
    assert_eq!(stdout.matches(" <- OrderPlaced").count(), 25, "{broker}");
}

#[test]
fn two_services_end_to_end_on_jetstream() {
    two_services_end_to_end("nats");
}

#[test]
fn two_services_end_to_end_on_rabbitmq() {
    two_services_end_to_end("amqp");
}

#[test]
fn two_services_end_to_end_on_kafka() {
    two_services_end_to_end("kafka");
}
