//! The kill-cycle harness shared by the crash tests: run one test of this binary as a child
//! process, wait for its `READY` line, let it work, SIGKILL it, collect what it printed.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::panic
)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A xorshift step: cheap reproducible randomness without a dependency.
pub fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// In a child process started with `var` set: the directory it names and a two-worker
/// runtime to work in; `None` in the parent (the child test then returns at once).
pub fn child_setup(var: &str) -> Option<(std::path::PathBuf, tokio::runtime::Runtime)> {
    let dir = std::env::var_os(var)?;
    Some((std::path::PathBuf::from(dir), runtime()))
}

/// A two-worker runtime, as the machine has two cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts test `name` of this test binary as a child process with `envs` set, stdin and
/// stdout piped; returns it and the lines it prints (read on a thread).
pub fn spawn_test(name: &str, envs: &[(&str, &OsStr)]) -> (Child, mpsc::Receiver<String>) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The child's first line can follow libtest's "test <name> ... " on one line.
            let line = match line
                .strip_prefix("test ")
                .and_then(|rest| rest.split_once(" ... "))
            {
                Some((_, own)) if !own.is_empty() && !own.starts_with("ok") => own.to_owned(),
                _ => line,
            };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Runs test `name` of this test binary with `var` set to `dir`, waits (at most 30 s) for it
/// to print a line ending in `READY`, lets it run for `run_for`, SIGKILLs it and returns every
/// line it printed after `READY`. If it never gets ready, prints its threads (gdb) and fails.
pub fn run_and_kill(
    name: &str,
    var: &str,
    dir: &Path,
    run_for: Duration,
    cycle: usize,
) -> Vec<String> {
    let (mut child, rx) = spawn_test(name, &[(var, dir.as_os_str())]);
    // (libtest prints its own lines first.)
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.ends_with("READY") => break,
            Ok(_) => {}
            Err(e) => {
                let _ = Command::new("gdb")
                    .args([
                        "-p",
                        &child.id().to_string(),
                        "-batch",
                        "-ex",
                        "thread apply all bt 30",
                    ])
                    .stdout(Stdio::inherit())
                    .status();
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!("cycle {cycle}: child did not start ({e}, {status})");
            }
        }
    }
    std::thread::sleep(run_for);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Until the reader thread has seen the end of the dead child's output.
    rx.iter().collect()
}

/// Kill cycles: runs test `name` (with `var` set to `dir`) `cycles` times, each killed after
/// `min_ms` plus a random share of `spread_ms` milliseconds, and calls `after(cycle, lines)`
/// with what it printed after `READY`, to check what it left behind.
pub fn kill_cycles(
    name: &str,
    var: &str,
    dir: &Path,
    cycles: usize,
    (min_ms, spread_ms): (u64, u64),
    mut after: impl FnMut(usize, Vec<String>),
) {
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ u64::from(std::process::id());
    for cycle in 0..cycles {
        let run_for = Duration::from_millis(min_ms + next(&mut seed) % spread_ms.max(1));
        let lines = run_and_kill(name, var, dir, run_for, cycle);
        after(cycle, lines);
    }
}

/// Opens a sled database that a killed or just-closed process may still be releasing.
pub fn open_sled(path: &Path) -> sled::Db {
    for _ in 0..300 {
        if let Ok(db) = sled::open(path) {
            return db;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    sled::open(path).unwrap()
}

/// The read-model database of a crash test's data directory (`DIR/rm`).
pub fn open_read_models(dir: &Path) -> sled::Db {
    open_sled(&dir.join("rm"))
}
