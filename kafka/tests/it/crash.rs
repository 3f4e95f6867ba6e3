//! The conformance suite's crash scenarios on Kafka: the relay SIGKILLed at random
//! moments (every event at least once, in order per subject: Kafka does not
//! de-duplicate), and the inbox SIGKILLed between handling and acknowledging (every message
//! takes effect exactly once: the handler's dedup record is in the effect's append).

use annals_broker_conformance::crash;
use annals_store::SledStore;

use crate::harness::Kafka;

fn open(dir: &std::path::Path) -> SledStore {
    SledStore::open(dir).unwrap()
}

#[test]
fn inbox_crash_child() {
    crash::inbox_crash_child(async || Kafka::local(), open);
}

#[test]
fn inbox_sigkilled_between_handling_and_ack() {
    crash::inbox_sigkilled_between_handling_and_ack(
        async || Kafka::local(),
        open,
        "inbox-crash",
        "crash::inbox_crash_child",
    );
}

#[test]
fn relay_crash_child() {
    crash::relay_crash_child(async || Kafka::local(), open);
}

#[test]
fn relay_sigkilled_at_random_moments() {
    crash::relay_sigkilled_at_random_moments(
        async || Kafka::local(),
        open,
        async |s: SledStore| s.close().await.unwrap(),
        "relay-crash",
        "crash::relay_crash_child",
    );
}
