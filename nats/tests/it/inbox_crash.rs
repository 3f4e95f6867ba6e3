//! The inbox SIGKILLed between handling and acknowledging, on JetStream (the conformance
//! suite's crash scenario): every message takes effect exactly once, in order per stream.

use annals_broker_conformance::crash;
use annals_store::SledStore;

use crate::harness::JetStream;

fn open(dir: &std::path::Path) -> SledStore {
    SledStore::open(dir).unwrap()
}

#[test]
fn inbox_crash_child() {
    crash::inbox_crash_child(JetStream::local, open);
}

#[test]
fn inbox_sigkilled_between_handling_and_ack() {
    crash::inbox_sigkilled_between_handling_and_ack(
        JetStream::local,
        open,
        &format!("inbox-crash-{}", std::process::id()),
        "inbox_crash::inbox_crash_child",
    );
}
