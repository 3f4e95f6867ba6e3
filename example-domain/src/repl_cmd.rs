//! The REPL's command language: parsing one line into a [`Cmd`]. Kept apart from the REPL so
//! that tests and the fuzzer can drive it without a store.

use std::time::{Duration, SystemTime};

use annals::Timestamp;

use crate::tickets::TicketCommand;

/// The result of parsing or running a command: an error is a message for the user.
pub type Res<T = ()> = Result<T, String>;

/// Commands, with a one-line example each (shown by `help`).
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "open",
        "open <title> | <body> [| <priority 1-5>]",
        "open Printer jams | The 3rd floor printer jams on A3 | 2",
    ),
    (
        "comment",
        "comment <id> <text>",
        "comment 1 Replaced the roller",
    ),
    ("assign", "assign <id> <name>", "assign 1 ada"),
    ("priority", "priority <id> <1-5>", "priority 1 1"),
    ("close", "close <id> <reason>", "close 1 fixed"),
    ("reopen", "reopen <id>", "reopen 1"),
    (
        "show",
        "show <id> [@v<N> | @<RFC 3339 time> | @-<duration>]",
        "show 1 @v2",
    ),
    ("history", "history <id>", "history 1"),
    (
        "search",
        "search <query> [@<position> | @<time> | @-<duration>]",
        "search printer @12",
    ),
    ("list", "list [status | assignee]", "list status"),
    ("log", "log [N] | log --follow", "log 20"),
    ("projections", "projections", "projections"),
    ("parked", "parked", "parked"),
    (
        "retry",
        "retry <projection> <position>",
        "retry ticket-search 42",
    ),
    ("rebuild", "rebuild <projection>", "rebuild ticket-search"),
    ("seed", "seed <N>", "seed 1000"),
    ("stats", "stats", "stats"),
    ("help", "help", "help"),
    ("quit", "quit", "quit"),
];

/// A point in the past.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum At {
    /// A stream version (`@v<N>`): the ticket as of its N-th event.
    Version(u64),
    /// A global log position (`@<N>`): everything recorded up to that position.
    Position(u64),
    /// A moment (`@<RFC 3339 time>` or `@-<duration>` ago): everything recorded by then.
    Time(Timestamp),
}

/// One parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    /// Run a ticket command on the ticket with this id (empty for `open`, which picks a new id).
    Do(String, TicketCommand),
    /// Show a ticket's state, now or at a point in the past.
    Show(String, Option<At>),
    /// List every event of a ticket, with its metadata.
    History(String),
    /// Full-text search for a query, now or at a point in the past.
    Search(String, Option<At>),
    /// List tickets, optionally grouped by `status` or `assignee`.
    List(Option<String>),
    /// Print the last N events of the store, or (when true) follow new ones as they arrive.
    Log(usize, bool),
    /// Show each projection's checkpoint, lag, parked count and state.
    Projections,
    /// List the events parked by the projections.
    Parked,
    /// Retry the event a projection parked at a position.
    Retry(String, u64),
    /// Rebuild a projection from the start of the log.
    Rebuild(String),
    /// Generate this many tickets.
    Seed(u64),
    /// Print store, session and search-index statistics.
    Stats,
    /// Print the list of commands.
    Help,
    /// Leave the REPL.
    Quit,
}

fn parse_at(s: &str, allow_position: bool) -> Res<At> {
    let s = s.strip_prefix('@').ok_or("a point in time starts with @")?;
    if let Some(v) = s.strip_prefix('v') {
        return v
            .parse()
            .map(At::Version)
            .map_err(|_| format!("bad version {v:?}"));
    }
    if let Some(ago) = s.strip_prefix('-') {
        let d = humantime::parse_duration(ago).map_err(|e| format!("bad duration {ago:?}: {e}"))?;
        let t = SystemTime::now()
            .checked_sub(d)
            .ok_or("duration too long")?;
        return Ok(At::Time(Timestamp::from_system_time(t)));
    }
    if allow_position && !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map(At::Position)
            .map_err(|_| format!("bad position {s:?}"));
    }
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("bad time {s:?} (use RFC 3339, e.g. 2026-11-24T10:00:00Z): {e}"))?;
    // A time stands for the whole of its last written digit: `10:14:51.848Z` is every
    // microsecond up to 10:14:51.848999, so a time the REPL printed (to the millisecond)
    // selects the events recorded in that millisecond.
    let end = t
        .checked_add(precision_of(s).saturating_sub(Duration::from_micros(1)))
        .ok_or("time out of range")?;
    Ok(At::Time(Timestamp::from_system_time(end)))
}

/// The unit of the last digit of an RFC 3339 time: a second without a fraction, 1 ms for
/// three fractional digits, 1 µs (the store's resolution) for six or more.
fn precision_of(s: &str) -> Duration {
    let digits = s.split_once('.').map_or(0, |(_, frac)| {
        frac.bytes().take_while(u8::is_ascii_digit).count()
    });
    let digits = u32::try_from(digits.min(6)).unwrap_or(6);
    Duration::from_micros(10u64.pow(6 - digits))
}

fn id_arg(s: Option<&str>) -> Res<String> {
    let id = s.ok_or("missing ticket id")?;
    if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("bad ticket id {id:?}"));
    }
    Ok(id.to_owned())
}

fn priority_arg(s: &str) -> Res<u8> {
    s.trim()
        .parse()
        .map_err(|_| format!("bad priority {:?} (1-5)", s.trim()))
}

/// Parses one line; `Ok(None)` for a blank line.
pub fn parse(line: &str) -> Res<Option<Cmd>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let mut args = rest.split_whitespace();
    let tail_after_id = |rest: &str| {
        rest.split_once(char::is_whitespace)
            .map(|(_, t)| t.trim().to_owned())
            .unwrap_or_default()
    };
    let cmd = match word {
        "open" => {
            let mut parts = rest.split('|').map(str::trim);
            let title = parts.next().unwrap_or_default().to_owned();
            let body = parts.next().unwrap_or_default().to_owned();
            let priority = parts.next().map_or(Ok(3), priority_arg)?;
            Cmd::Do(
                String::new(),
                TicketCommand::Open {
                    title,
                    body,
                    priority,
                },
            )
        }
        "comment" => Cmd::Do(
            id_arg(args.next())?,
            TicketCommand::Comment {
                text: tail_after_id(rest),
            },
        ),
        "assign" => Cmd::Do(
            id_arg(args.next())?,
            TicketCommand::Assign {
                to: tail_after_id(rest),
            },
        ),
        "priority" => {
            let id = id_arg(args.next())?;
            Cmd::Do(
                id,
                TicketCommand::ChangePriority {
                    priority: priority_arg(args.next().ok_or("missing priority")?)?,
                },
            )
        }
        "close" => Cmd::Do(
            id_arg(args.next())?,
            TicketCommand::Close {
                reason: tail_after_id(rest),
            },
        ),
        "reopen" => Cmd::Do(id_arg(args.next())?, TicketCommand::Reopen),
        "show" => {
            let id = id_arg(args.next())?;
            Cmd::Show(id, args.next().map(|a| parse_at(a, false)).transpose()?)
        }
        "history" => Cmd::History(id_arg(args.next())?),
        "search" => {
            let (query, at) = match rest.rsplit_once(char::is_whitespace) {
                Some((q, a)) if a.starts_with('@') => (q.trim(), Some(parse_at(a, true)?)),
                _ if rest.starts_with('@') => return Err("missing query".into()),
                _ => (rest, None),
            };
            if query.is_empty() {
                return Err("missing query".into());
            }
            Cmd::Search(query.to_owned(), at)
        }
        "list" => match args.next() {
            None => Cmd::List(None),
            Some(by @ ("status" | "assignee")) => Cmd::List(Some(by.to_owned())),
            Some(other) => return Err(format!("list by status or assignee, not {other:?}")),
        },
        "log" => match args.next() {
            None => Cmd::Log(10, false),
            Some("--follow" | "-f") => Cmd::Log(10, true),
            Some(n) => Cmd::Log(n.parse().map_err(|_| format!("bad count {n:?}"))?, false),
        },
        "projections" => Cmd::Projections,
        "parked" => Cmd::Parked,
        "retry" => {
            let name = args.next().ok_or("missing projection name")?.to_owned();
            let p = args.next().ok_or("missing position")?;
            Cmd::Retry(name, p.parse().map_err(|_| format!("bad position {p:?}"))?)
        }
        "rebuild" => Cmd::Rebuild(args.next().ok_or("missing projection name")?.to_owned()),
        "seed" => {
            let n = args.next().ok_or("missing count")?;
            let n: u64 = n.parse().map_err(|_| format!("bad count {n:?}"))?;
            if n > 1_000_000 {
                return Err("seed at most 1,000,000 tickets at a time".into());
            }
            Cmd::Seed(n)
        }
        "stats" => Cmd::Stats,
        "help" | "?" => Cmd::Help,
        "quit" | "exit" => Cmd::Quit,
        other => return Err(format!("unknown command {other:?}; type help")),
    };
    Ok(Some(cmd))
}
