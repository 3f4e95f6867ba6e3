//! Arbitrary and mutated bytes through the envelope and payload decoders (the stored-record
//! decoders have their own property tests in `store/src/format.rs`): never a panic, always a
//! value or a typed error. 5,000 cases by default, 100,000 with `ANNALS_STRESS=1`; the
//! `fuzz/` crate runs the same decoders under libFuzzer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::tickets;

use annals::{CodecId, DomainEvent, Error};
use proptest::prelude::*;
use tickets::TicketEvent;

fn cases() -> u32 {
    if std::env::var_os("ANNALS_STRESS").is_some() {
        100_000
    } else {
        5_000
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_payloads_decode_or_error(
        codec in 0u8..4,
        ty in prop::sample::select(vec!["Opened", "Commented", "Assigned", "PriorityChanged", "Closed", "Reopened", "Nope"]),
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        match TicketEvent::decode_payload(ty, CodecId(codec), &bytes) {
            Ok(e) => prop_assert_eq!(e.event_type(), ty),
            Err(e) => prop_assert!(matches!(e, Error::Codec { .. }), "{e:?}"),
        }
    }

    #[test]
    fn mutated_payloads_decode_or_error(
        n in 0u64..1000,
        codec in prop::sample::select(vec![CodecId::BINCODE, CodecId::JSON]),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let event = tickets::generated(n);
        let mut bytes = event.encode_payload(codec).unwrap();
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if let Some(c) = cut {
            let len = c.index(bytes.len());
            bytes.truncate(len);
        }
        if let Err(e) = TicketEvent::decode_payload("Opened", codec, &bytes) {
            prop_assert!(matches!(e, Error::Codec { .. }), "{e:?}");
        }
    }
}

/// Under `ANNALS_STRESS=1`, with a nightly toolchain present, every libFuzzer target runs for
/// 30 seconds (`fuzz/run.sh 30`) and must find no crash. Skipped otherwise.
#[test]
fn fuzz_targets_under_stress() {
    if std::env::var_os("ANNALS_STRESS").is_none() {
        return;
    }
    let nightly = std::process::Command::new("cargo")
        .args(["+nightly", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !nightly {
        eprintln!("no nightly toolchain: fuzz targets skipped");
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/run.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .arg("30")
        .status()
        .unwrap();
    assert!(status.success(), "fuzz/run.sh found a crash");
}
