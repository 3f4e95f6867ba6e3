//! Drives the real `repl` example binary through a scripted session covering every command —
//! time travel and search-as-of included — and asserts on its output; then restarts it on the
//! same data directory. The command parser is tested on its own too, with arbitrary input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::repl_cmd;

use repl_cmd::{At, COMMANDS, Cmd, parse};

/// `cargo test` builds the examples next to the test binaries: target/<profile>/examples.
fn repl_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let bin = profile_dir
        .join("examples")
        .join(format!("repl{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "build the example first: {}", bin.display());
    bin
}

fn session(data: &std::path::Path, script: &str) -> String {
    let mut child = Command::new(repl_binary())
        .args(["--data", data.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "repl failed: {stderr}\n{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stdout
}

fn expect(out: &str, needle: &str) {
    assert!(out.contains(needle), "expected {needle:?} in:\n{out}");
}

#[test]
fn scripted_session_covers_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let script = "\
help
open Printer jams | The 3rd floor printer jams on A3 paper | 2
open VPN drops | vpn disconnects every hour
comment 1 Replaced the roller
assign 1 ada
priority 1 1
show 1
show 1 @v2
show 1 @-1h
show 1 @2000-01-01T00:00:00Z
history 1
search roller
search printer @1
search roller @2
search printer @-1h
close 1 fixed
close 1 again
reopen 1
reopen 2
list
list status
list assignee
log 3
log --follow
projections
parked
retry ticket-search 1
seed 40
stats
rebuild ticket-search
rebuild nope
search printer
show nope
frobnicate
show 1 @yesterday
priority 1 9
open  | no title
quit
show 1
";
    let out = session(dir.path(), script);
    expect(&out, "annals repl — data in");
    expect(&out, "e.g. open Printer jams");
    expect(&out, "opened ticket 1 (v1, @1)");
    expect(&out, "opened ticket 2 (v1, @2)");
    // show now and time travel
    expect(
        &out,
        "ticket 1 (v4): Printer jams\n  status: open  priority: 1  assignee: ada",
    );
    expect(
        &out,
        "ticket 1 (v2): Printer jams\n  status: open  priority: 2  assignee: -",
    );
    expect(&out, "error: ticket 1 did not exist then");
    // history with metadata
    expect(&out, "v3   @4");
    expect(&out, "Assigned { to: \"ada\" }");
    expect(&out, "via=repl");
    // search now and as of a position
    expect(&out, "1 hit(s)\n  #1");
    expect(&out, "[roller]");
    expect(&out, "1 hit(s) (as of @1)");
    expect(&out, "0 hit(s) (as of @2)");
    expect(&out, "0 hit(s) (as of @0)");
    // domain rules
    expect(&out, "updated ticket 1 (v5, @6)");
    expect(&out, "error: rejected: ticket is closed");
    expect(&out, "updated ticket 1 (v6, @7)");
    expect(&out, "error: rejected: ticket is not closed");
    // read models
    expect(&out, "open (2)");
    expect(&out, "ada (1)");
    expect(&out, "ticket-1     v6   Reopened");
    expect(&out, "following $all from @8");
    expect(&out, "ticket-list    checkpoint 7");
    expect(&out, "ticket-search  checkpoint 7");
    expect(&out, "no parked events");
    expect(&out, "error: no parked event at position 1");
    expect(&out, "seeded 40 tickets");
    expect(&out, "streams (tickets): 42");
    expect(&out, "search index: 42 documents, lag 0");
    expect(&out, "rebuilt ticket-search to @");
    expect(&out, "error: no projection \"nope\"");
    expect(&out, "error: no ticket nope");
    expect(&out, "error: unknown command \"frobnicate\"; type help");
    expect(&out, "error: bad time \"yesterday\"");
    expect(&out, "error: rejected: priority must be 1 (highest) to 5");
    expect(&out, "error: rejected: title must not be empty");
    // `quit` ends the session: the line after it never runs.
    assert_eq!(out.matches("ticket 1 (v6)").count(), 0);

    // Restart on the same data: everything is still there; projections resume.
    let again = session(
        dir.path(),
        "show 1\nlist status\nprojections\nsearch roller\n",
    );
    expect(&again, "ticket 1 (v6): Printer jams");
    expect(&again, "status: open");
    expect(&again, "ticket-search  checkpoint");
    expect(&again, "[roller]");
}

/// Regression (issue 14.7): `history` prints times to the millisecond while the store keeps
/// microseconds, so `show 1 @<the time printed for v2>` showed v1 and v1's own printed time
/// said "did not exist then". A time now stands for the whole of its last written digit.
#[test]
fn a_printed_time_selects_that_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = session(
        dir.path(),
        "open Printer jams | jams on A3 | 2\ncomment 1 Replaced the roller\ncomment 1 Again\nhistory 1\nquit\n",
    );
    let times: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with('v') && l.contains(" @"))
        .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
        .collect();
    assert_eq!(times.len(), 3, "{out}");
    let script: String = times
        .iter()
        .map(|t| format!("show 1 @{t}\nsearch roller @{t}\n"))
        .collect();
    let out = session(dir.path(), &format!("{script}quit\n"));
    for v in 1..=3 {
        expect(&out, &format!("ticket 1 (v{v})"));
    }
    assert!(!out.contains("did not exist then"), "{out}");
    // As of v1's time the comment was not there; as of v2's it was.
    expect(&out, "0 hit(s) (as of @1)");
    expect(&out, "1 hit(s) (as of @2)");
}

// ---- the command parser ----

#[test]
fn a_time_covers_its_last_written_digit() {
    let at = |s: &str| match parse(&format!("show 1 @{s}")) {
        Ok(Some(Cmd::Show(_, Some(At::Time(t))))) => t.0,
        other => panic!("{s}: {other:?}"),
    };
    let base = at("2026-11-24T10:14:51.000000Z");
    assert_eq!(at("2026-11-24T10:14:51Z"), base + 999_999);
    assert_eq!(at("2026-11-24T10:14:51.848Z"), base + 848_999);
    assert_eq!(at("2026-11-24T10:14:51.8Z"), base + 899_999);
    assert_eq!(at("2026-11-24T10:14:51.848123Z"), base + 848_123);
    assert_eq!(at("2026-11-24T10:14:51.848123999Z"), base + 848_123);
    assert_eq!(at("2026-11-24T10:14:50Z"), base - 1);
}

#[test]
fn parses_every_command_and_rejects_bad_input() {
    for (_, _, example) in COMMANDS {
        assert!(parse(example).is_ok(), "{example}");
    }
    assert!(matches!(
        parse("show 1 @v3"),
        Ok(Some(Cmd::Show(_, Some(At::Version(3)))))
    ));
    assert!(matches!(
        parse("show 1 @-5m"),
        Ok(Some(Cmd::Show(_, Some(At::Time(_)))))
    ));
    assert!(matches!(
        parse("show 1 @2026-11-24T10:00:00Z"),
        Ok(Some(Cmd::Show(_, Some(At::Time(_)))))
    ));
    assert!(
        matches!(parse("search a b @12"), Ok(Some(Cmd::Search(q, Some(At::Position(12))))) if q == "a b")
    );
    for bad in [
        "frobnicate",
        "show",
        "show 1 @yesterday",
        "show 1 @v",
        "priority 1 x",
        "log x",
        "seed -1",
        "search @3",
        "list colour",
        "retry x",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
    assert_eq!(parse("   "), Ok(None));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
        if std::env::var_os("ANNALS_STRESS").is_some() { 100_000 } else { 5_000 }
    ))]

    /// Any line — arbitrary text, or a command word with arbitrary arguments — parses into
    /// a command or a typed error, never a panic.
    #[test]
    fn any_line_parses_or_errors(
        word in proptest::sample::select(COMMANDS.iter().map(|c| c.0).collect::<Vec<_>>()),
        rest in ".{0,60}",
        raw in proptest::collection::vec(proptest::prelude::any::<char>(), 0..80),
    ) {
        let _ = parse(&format!("{word} {rest}"));
        let _ = parse(&raw.into_iter().collect::<String>());
    }
}
