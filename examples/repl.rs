//! The annals REPL: support tickets on the embedded sled store, with a ticket list and a
//! full-text search index kept by background projections, and time travel.
//!
//! ```text
//! cargo run --release --example repl [-- --data DIR]
//! ```
//!
//! Type `help` for the commands. When stdin is not a terminal it reads one command per line
//! and prints plain text, so scripts can drive it.

// A program: it talks to the terminal.
#![allow(clippy::print_stderr, clippy::print_stdout)]

use annals_example_domain::{repl_cmd, tickets};

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use annals::prelude::*;
use annals::projections::{
    KvProjection, KvReadModel, ProjectionConfig, ProjectionHandle, ProjectionRunner, SearchConfig,
    SearchIndex, SearchProjection,
};
use rustyline::completion::Completer;
use rustyline::{Context, Helper, Highlighter, Hinter, Validator};
use tickets::{Ticket, TicketCommand, TicketList, TicketRow, TicketSearch};

use repl_cmd::{At, COMMANDS, Cmd, Res, parse};

fn fmt_time(t: Timestamp) -> String {
    humantime::format_rfc3339_millis(t.to_system_time()).to_string()
}

struct App {
    store: SledStore,
    repo: Repository<Ticket, SledStore>,
    runner: ProjectionRunner<SledStore>,
    list: KvReadModel<String, TicketRow>,
    search: SearchIndex,
    search_handle: ProjectionHandle,
    data: PathBuf,
    next_id: AtomicU64,
    tty: bool,
    started: Instant,
    start_head: Position,
}

const WAIT: Duration = Duration::from_secs(10);

impl App {
    async fn open(data: &Path, tty: bool) -> Res<Self> {
        let err = |e: &dyn std::fmt::Display| format!("cannot open {}: {e}", data.display());
        let store = SledStore::open(data.join("store")).map_err(|e| err(&e))?;
        let db = sled::open(data.join("read-models")).map_err(|e| err(&e))?;
        let list = KvReadModel::open(&db, "ticket-list").map_err(|e| err(&e))?;
        let config = SearchConfig::default().commit_every(Duration::from_millis(20));
        let search = SearchProjection::open(TicketSearch::default(), data.join("search"), config)
            .map_err(|e| err(&e))?;
        let index = search.index();
        let runner = ProjectionRunner::new(store.clone(), &db).map_err(|e| err(&e))?;
        runner
            .start(
                Box::new(KvProjection::new(TicketList, list.clone())),
                ProjectionConfig::default(),
            )
            .map_err(|e| err(&e))?;
        let search_handle = runner
            .start(Box::new(search), ProjectionConfig::default())
            .map_err(|e| err(&e))?;
        let max_id = list
            .entries()
            .map_err(|e| err(&e))?
            .iter()
            .filter_map(|(k, _)| k.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let repo = Repository::<Ticket, _>::new(store.clone()).snapshot_every(50);
        let start_head = store.head_position();
        Ok(Self {
            store,
            repo,
            runner,
            list,
            search: index,
            search_handle,
            data: data.to_path_buf(),
            next_id: AtomicU64::new(max_id + 1),
            tty,
            started: Instant::now(),
            start_head,
        })
    }

    async fn run(&self, cmd: Cmd, out: &mut dyn Write) -> Res<bool> {
        let w = |e: std::io::Error| e.to_string();
        match cmd {
            Cmd::Quit => return Ok(false),
            Cmd::Help => {
                writeln!(out, "commands (example after each):").map_err(w)?;
                for (_, usage, example) in COMMANDS {
                    writeln!(out, "  {usage:<58} e.g. {example}").map_err(w)?;
                }
            }
            Cmd::Do(id, command) => self.execute(id, command, out).await?,
            Cmd::Show(id, at) => self.show(&id, at, out).await?,
            Cmd::History(id) => {
                let history = self.repo.history(&id).await.map_err(|e| e.to_string())?;
                if history.is_empty() {
                    return Err(format!("no ticket {id}"));
                }
                for h in history {
                    let m = &h.metadata;
                    let mut meta = Vec::new();
                    if let Some(c) = m.correlation_id {
                        meta.push(format!("correlation={c}"));
                    }
                    meta.extend(m.headers.iter().map(|(k, v)| format!("{k}={v}")));
                    writeln!(
                        out,
                        "v{:<3} @{:<6} {}  {:?}  {}",
                        h.version,
                        h.position,
                        fmt_time(h.recorded_at),
                        h.event,
                        meta.join(" ")
                    )
                    .map_err(w)?;
                }
            }
            Cmd::Search(query, at) => self.search(&query, at, out).await?,
            Cmd::List(by) => self.list(by.as_deref(), out)?,
            Cmd::Log(n, follow) => self.log(n, follow, out).await?,
            Cmd::Projections => {
                for h in self.runner.handles() {
                    let s = h.status().await.map_err(|e| e.to_string())?;
                    writeln!(
                        out,
                        "{:<14} checkpoint {:<7} lag {:<6} parked {:<3} {:?}",
                        s.name, s.checkpoint, s.lag, s.parked, s.state
                    )
                    .map_err(w)?;
                }
            }
            Cmd::Parked => {
                let mut any = false;
                for h in self.runner.handles() {
                    for p in h.parked().await.map_err(|e| e.to_string())? {
                        any = true;
                        writeln!(
                            out,
                            "{} @{} {} {} attempts={} {}",
                            p.projection, p.position, p.stream, p.event_type, p.attempts, p.error
                        )
                        .map_err(w)?;
                    }
                }
                if !any {
                    writeln!(out, "no parked events").map_err(w)?;
                }
            }
            Cmd::Retry(name, position) => {
                let h = self
                    .runner
                    .get(&name)
                    .ok_or(format!("no projection {name:?}"))?;
                h.retry_parked(Position(position))
                    .await
                    .map_err(|e| e.to_string())?;
                writeln!(out, "retried {name} @{position}: applied").map_err(w)?;
            }
            Cmd::Rebuild(name) => self.rebuild(&name, out).await?,
            Cmd::Seed(n) => self.seed(n, out).await?,
            Cmd::Stats => self.stats(out)?,
        }
        Ok(true)
    }

    async fn execute(&self, id: String, command: TicketCommand, out: &mut dyn Write) -> Res {
        let ctx = CommandContext::new()
            .with_command_id(annals::Uuid::now_v7())
            .with_metadata(Metadata::new().with_header("via", "repl"));
        let opening = matches!(command, TicketCommand::Open { .. });
        let id = if opening {
            self.next_id.fetch_add(1, Ordering::SeqCst).to_string()
        } else {
            id
        };
        let done = self
            .repo
            .execute_with(&id, &command, &ctx)
            .await
            .map_err(|e| match e {
                RepositoryError::Domain(d) => format!("rejected: {d}"),
                other => other.to_string(),
            })?;
        if let Some(a) = done.append {
            // Read your writes: the list and the index show the change before the prompt returns.
            for h in self.runner.handles() {
                h.wait_for(a.last_position, WAIT)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let what = if opening { "opened" } else { "updated" };
            writeln!(
                out,
                "{what} ticket {id} (v{}, @{})",
                done.version, a.last_position
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn show(&self, id: &str, at: Option<At>, out: &mut dyn Write) -> Res {
        let (t, v) = match at {
            None => self.repo.load(id).await,
            Some(At::Version(v)) => self.repo.load_at(id, Version(v)).await,
            Some(At::Time(t)) => self.repo.load_as_of(id, t).await,
            Some(At::Position(_)) => return Err("show takes @v<N> or a time".into()),
        }
        .map_err(|e| e.to_string())?;
        if v == Version::NONE {
            return Err(match at {
                None => format!("no ticket {id}"),
                Some(_) => format!("ticket {id} did not exist then"),
            });
        }
        let w = |e: std::io::Error| e.to_string();
        writeln!(out, "ticket {id} (v{v}): {}", t.title).map_err(w)?;
        writeln!(
            out,
            "  status: {}  priority: {}  assignee: {}",
            t.status.as_str(),
            t.priority,
            t.assignee.as_deref().unwrap_or("-")
        )
        .map_err(w)?;
        if !t.body.is_empty() {
            writeln!(out, "  body: {}", t.body).map_err(w)?;
        }
        for c in &t.comments {
            writeln!(out, "  comment: {c}").map_err(w)?;
        }
        if let Some(r) = &t.close_reason {
            writeln!(out, "  closed: {r}").map_err(w)?;
        }
        Ok(())
    }

    /// The last position recorded at or before `t` (timestamps never decrease along the log).
    async fn position_at(&self, t: Timestamp) -> Res<Position> {
        let (mut lo, mut hi) = (0u64, self.store.head_position().0);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let e = self
                .store
                .read_all(Position(mid), 1)
                .await
                .map_err(|e| e.to_string())?;
            match e.first() {
                Some(e) if e.recorded_at <= t => lo = mid,
                _ => hi = mid - 1,
            }
        }
        Ok(Position(lo))
    }

    async fn search(&self, query: &str, at: Option<At>, out: &mut dyn Write) -> Res {
        let (hits, note) = match at {
            None => (
                self.search.search(query, 10).map_err(|e| e.to_string())?,
                String::new(),
            ),
            Some(at) => {
                let position = match at {
                    At::Position(p) => Position(p.min(self.store.head_position().0)),
                    At::Time(t) => self.position_at(t).await?,
                    At::Version(_) => return Err("search takes @<position> or a time".into()),
                };
                // The read model as it was then: an index built up to that position.
                let index = SearchProjection::as_of(
                    &self.store,
                    TicketSearch::default(),
                    position,
                    SearchConfig::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
                (
                    index.search(query, 10).map_err(|e| e.to_string())?,
                    format!(" (as of @{position})"),
                )
            }
        };
        let w = |e: std::io::Error| e.to_string();
        writeln!(out, "{} hit(s){note}", hits.len()).map_err(w)?;
        for h in hits {
            let field = |name: &str| {
                h.fields
                    .get(name)
                    .and_then(|v| v.get(0))
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned()
            };
            let snippet = h.snippet.replace("<b>", "[").replace("</b>", "]");
            writeln!(
                out,
                "  #{:<6} {:>6.2}  [{}] {}  — {}",
                h.id,
                h.score,
                field("status"),
                field("title"),
                snippet.replace('\n', " ")
            )
            .map_err(w)?;
        }
        Ok(())
    }

    fn list(&self, by: Option<&str>, out: &mut dyn Write) -> Res {
        let rows = self.list.entries().map_err(|e| e.to_string())?;
        let w = |e: std::io::Error| e.to_string();
        let mut groups: BTreeMap<String, Vec<(String, TicketRow)>> = BTreeMap::new();
        for (id, row) in rows {
            let key = match by {
                Some("status") => row.status.clone(),
                Some(_) => row
                    .assignee
                    .clone()
                    .unwrap_or_else(|| "(unassigned)".into()),
                None => String::new(),
            };
            groups.entry(key).or_default().push((id, row));
        }
        if groups.is_empty() {
            writeln!(out, "no tickets").map_err(w)?;
        }
        for (key, mut rows) in groups {
            rows.sort_by_key(|(id, _)| id.parse::<u64>().unwrap_or(u64::MAX));
            if by.is_some() {
                writeln!(out, "{key} ({})", rows.len()).map_err(w)?;
            }
            for (id, r) in rows.iter().take(50) {
                writeln!(
                    out,
                    "  #{id:<6} p{} {:<7} {:<10} {}",
                    r.priority,
                    r.status,
                    r.assignee.as_deref().unwrap_or("-"),
                    r.title
                )
                .map_err(w)?;
            }
            if rows.len() > 50 {
                writeln!(out, "  … {} more", rows.len() - 50).map_err(w)?;
            }
        }
        Ok(())
    }

    async fn log(&self, n: usize, follow: bool, out: &mut dyn Write) -> Res {
        let head = self.store.head_position();
        let from = Position((head.0 + 1).saturating_sub(n as u64).max(1));
        let print = |e: &RecordedEvent, out: &mut dyn Write| {
            writeln!(
                out,
                "@{:<6} {} {:<12} v{:<3} {}",
                e.position,
                fmt_time(e.recorded_at),
                e.stream,
                e.version,
                e.event_type
            )
            .map_err(|e| e.to_string())
        };
        if !follow {
            for e in self
                .store
                .read_all(from, n)
                .await
                .map_err(|e| e.to_string())?
            {
                print(&e, out)?;
            }
            return Ok(());
        }
        writeln!(out, "following $all from @{} (Ctrl-C to stop)", head.next())
            .map_err(|e| e.to_string())?;
        let mut sub = self.store.subscribe_all(head.next());
        let until = if self.tty {
            None
        } else {
            Some(tokio::time::Instant::now() + Duration::from_secs(2))
        };
        loop {
            let next = async {
                match until {
                    Some(t) => tokio::time::timeout_at(t, sub.next()).await.ok().flatten(),
                    None => sub.next().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                e = next => match e {
                    Some(e) => print(&e.map_err(|e| e.to_string())?, out)?,
                    None => break,
                },
            }
        }
        Ok(())
    }

    async fn rebuild(&self, name: &str, out: &mut dyn Write) -> Res {
        let h = self
            .runner
            .get(name)
            .ok_or(format!("no projection {name:?}; see projections"))?;
        let bar = if self.tty {
            indicatif::ProgressBar::new(self.store.head_position().0)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let b = bar.clone();
        let started = Instant::now();
        let reached = h
            .rebuild(Some(Box::new(move |p| {
                b.set_length(p.target.0);
                b.set_position(p.position.0);
            })))
            .await
            .map_err(|e| e.to_string())?;
        bar.finish_and_clear();
        writeln!(
            out,
            "rebuilt {name} to @{reached} in {:.2}s",
            started.elapsed().as_secs_f64()
        )
        .map_err(|e| e.to_string())
    }

    async fn seed(&self, n: u64, out: &mut dyn Write) -> Res {
        let bar = if self.tty {
            indicatif::ProgressBar::new(n)
        } else {
            indicatif::ProgressBar::hidden()
        };
        let people = ["ada", "grace", "linus", "barbara", "ken"];
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let per = n.div_ceil(8);
        for t in 0..8u64 {
            let repo = self.repo.clone();
            let bar = bar.clone();
            let first = self.next_id.fetch_add(per, Ordering::SeqCst);
            tasks.spawn(async move {
                let ctx =
                    CommandContext::new().with_metadata(Metadata::new().with_header("via", "seed"));
                for k in 0..per {
                    if t * per + k >= n {
                        break;
                    }
                    let num = first + k;
                    let id = num.to_string();
                    let tickets::TicketEvent::Opened {
                        title,
                        body,
                        priority,
                    } = tickets::generated(num)
                    else {
                        continue;
                    };
                    repo.execute_with(
                        &id,
                        &TicketCommand::Open {
                            title,
                            body: body.chars().take(300).collect(),
                            priority,
                        },
                        &ctx,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    if num.is_multiple_of(3) {
                        let to = people[(num % 5) as usize].to_owned();
                        repo.execute_with(&id, &TicketCommand::Assign { to }, &ctx)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    if num.is_multiple_of(4) {
                        let text = format!("looked at it, {}", tickets::WORDS[(num % 36) as usize]);
                        repo.execute_with(&id, &TicketCommand::Comment { text }, &ctx)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    if num.is_multiple_of(5) {
                        repo.execute_with(
                            &id,
                            &TicketCommand::Close {
                                reason: "resolved".into(),
                            },
                            &ctx,
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    }
                    bar.inc(1);
                }
                Ok::<(), String>(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.map_err(|e| e.to_string())??;
        }
        bar.finish_and_clear();
        let head = self.store.head_position();
        for h in self.runner.handles() {
            h.wait_for(head, Duration::from_secs(120))
                .await
                .map_err(|e| e.to_string())?;
        }
        writeln!(
            out,
            "seeded {n} tickets in {:.2}s (head @{head})",
            started.elapsed().as_secs_f64()
        )
        .map_err(|e| e.to_string())
    }

    fn stats(&self, out: &mut dyn Write) -> Res {
        let head = self.store.head_position();
        let tickets = self.list.len();
        let disk = dir_size(&self.data);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let appended = head.0 - self.start_head.0;
        let w = |e: std::io::Error| e.to_string();
        writeln!(
            out,
            "events: {}  streams (tickets): {tickets}  on disk: {:.1} MiB",
            head.0,
            disk as f64 / 1_048_576.0
        )
        .map_err(w)?;
        writeln!(
            out,
            "this session: {appended} events in {secs:.0}s ({:.0} events/s)",
            appended as f64 / secs
        )
        .map_err(w)?;
        writeln!(
            out,
            "search index: {} documents, lag {}",
            self.search.num_docs(),
            self.search_handle.lag()
        )
        .map_err(w)?;
        Ok(())
    }
}

fn dir_size(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Tab completion of command names.
#[derive(Helper, Hinter, Highlighter, Validator)]
struct Names;

impl Completer for Names {
    type Candidate = String;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let word = &line[..pos];
        if word.contains(char::is_whitespace) {
            return Ok((pos, vec![]));
        }
        Ok((
            0,
            COMMANDS
                .iter()
                .filter(|(n, _, _)| n.starts_with(word))
                .map(|(n, _, _)| (*n).to_owned())
                .collect(),
        ))
    }
}

fn default_data_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/annals/repl"),
        None => std::env::temp_dir().join("annals-repl"),
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut data = default_data_dir();
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--data", Some(d)) => data = PathBuf::from(d),
            _ => {
                eprintln!("usage: repl [--data DIR]");
                std::process::exit(2);
            }
        }
    }
    let tty = std::io::stdin().is_terminal();
    let app = match App::open(&data, tty).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "annals repl — data in {} — {} events — type help",
        data.display(),
        app.store.head_position()
    );
    if tty {
        interactive(&app, &data).await;
    } else {
        scripted(&app).await;
    }
    app.runner.shutdown().await;
    if let Err(e) = app.store.flush().await {
        eprintln!("error flushing the store: {e}");
    }
}

async fn handle(app: &App, line: &str) -> bool {
    let mut out = std::io::stdout();
    match parse(line) {
        Ok(None) => true,
        Ok(Some(cmd)) => match app.run(cmd, &mut out).await {
            Ok(go_on) => go_on,
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                true
            }
        },
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            true
        }
    }
}

async fn interactive(app: &App, data: &Path) {
    let mut rl = match rustyline::Editor::<Names, rustyline::history::DefaultHistory>::new() {
        Ok(rl) => rl,
        Err(e) => {
            eprintln!("cannot start line editing ({e}); reading plain lines");
            return scripted(app).await;
        }
    };
    rl.set_helper(Some(Names));
    let history = data.join("history.txt");
    let _ = rl.load_history(&history);
    loop {
        // rustyline blocks; run it off the async workers.
        let (back, line) = tokio::task::block_in_place(|| {
            let line = rl.readline("annals> ");
            (rl, line)
        });
        rl = back;
        match line {
            Ok(line) => {
                let _ = rl.add_history_entry(line.as_str());
                if !handle(app, &line).await {
                    break;
                }
            }
            Err(
                rustyline::error::ReadlineError::Interrupted | rustyline::error::ReadlineError::Eof,
            ) => break,
            Err(e) => {
                eprintln!("error: {e}");
                break;
            }
        }
    }
    let _ = rl.save_history(&history);
}

async fn scripted(app: &App) {
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        match tokio::task::block_in_place(|| stdin.read_line(&mut line)) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if !handle(app, &line).await {
                    break;
                }
            }
        }
    }
}
