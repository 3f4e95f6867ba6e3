//! The relay SIGKILLed at random moments, on JetStream (the conformance suite's crash
//! scenario): the stream holds every event of the log exactly once, in order per subject.

use annals_broker_conformance::crash;
use annals_store::SledStore;

use crate::harness::JetStream;

fn open(dir: &std::path::Path) -> SledStore {
    SledStore::open(dir).unwrap()
}

#[test]
fn relay_crash_child() {
    crash::relay_crash_child(JetStream::local, open);
}

#[test]
fn relay_sigkilled_at_random_moments() {
    crash::relay_sigkilled_at_random_moments(
        JetStream::local,
        open,
        async |s: SledStore| s.close().await.unwrap(),
        &format!("crash-{}", std::process::id()),
        "relay_crash::relay_crash_child",
    );
}
