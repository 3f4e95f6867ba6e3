//! Model-based property test: random sequences of append / retry / read / subscribe / restart
//! against both stores and a plain in-memory model. Shrunk failures are kept as named tests in
//! `tests/00_regression.rs`. `ANNALS_STRESS=1` runs many more cases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::cases(128, 5000),
        max_shrink_iters: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn stores_agree_with_the_model(ops in proptest::collection::vec(common::op(), 1..40)) {
        common::run_both(&ops);
    }
}
