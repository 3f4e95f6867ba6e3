//! `trybuild` tests of the derive macros: passing uses, and every misuse with its expected
//! compiler output (`tests/ui/fail/*.stderr`). Regenerate the `.stderr` files after an
//! intended change with `TRYBUILD=overwrite cargo test --test it derive_ui`.

#[test]
fn derive_ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
