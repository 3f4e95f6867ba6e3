//! The shop example end to end: on the embedded store, and with the payments as a service
//! apart over NATS JetStream. The example exits 0 only when every order ended once and the
//! books reconcile.

use std::process::Command;

/// `target/<profile>/examples/shop`, built by `cargo test` beside this binary.
fn example() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("shop");
    assert!(
        path.is_file(),
        "examples/shop is not built (cargo test builds it)"
    );
    path
}

fn run(args: &[&str]) -> String {
    let out = Command::new(example()).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("the books reconcile"), "{stdout}");
    stdout
}

#[test]
fn the_shop_settles_on_the_embedded_store() {
    let out = run(&[
        "--orders",
        "150",
        "--failure-rate",
        "0.2",
        "--inspect",
        "o-1",
    ]);
    assert!(out.contains("running 0"), "{out}");
    assert!(out.contains("process order-process-o-1"), "{out}");
    assert!(out.contains("correlation"), "{out}");
}

#[test]
fn the_shop_settles_with_payments_over_jetstream() {
    let out = run(&["--nats", "--orders", "60"]);
    assert!(out.contains("payments service"), "{out}");
    assert!(out.contains("running 0"), "{out}");
}
