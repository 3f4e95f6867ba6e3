//! The two-services example end to end: `examples/orders` places orders in the orders
//! service, billing charges them through JetStream, orders confirms them; the example checks
//! the correlation and causation chains itself and exits 0 only when all reconcile.

use std::process::Command;

/// `target/<profile>/examples/orders`, built by `cargo test` beside this binary.
fn example() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join("orders");
    path.is_file().then_some(path)
}

#[test]
fn two_services_end_to_end() {
    let Some(path) = example() else {
        panic!("examples/orders is not built (cargo test builds it)");
    };
    let out = Command::new(path)
        .args(["--orders", "25"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains("placed 25 / paid 25 / confirmed 25 / reconciled 25"),
        "{summary}"
    );
    assert!(summary.contains("all reconciled"), "{summary}");
    assert_eq!(stdout.matches(" <- PaymentCaptured").count(), 25);
    assert_eq!(stdout.matches(" <- OrderPlaced").count(), 25);
}
