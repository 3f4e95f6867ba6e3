//! `annals` — the ops tool over a data directory (the REPL's layout: `DIR/store` holds the
//! event store and `DIR/read-models` the read models; a directory that is itself a store
//! works too).
//!
//! ```text
//! annals --data DIR streams | read <stream> | tail [-n N] [--follow] | projections | parked
//!        | verify | export [--out FILE] | import <FILE>
//! annals schema check <OLD.json> <NEW.json> [--mode MODE]
//! annals schema check --dir DIR [--mode MODE]
//! ```
// A program: it prints.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use annals::VersionRange;
use annals::contracts::{Mode, check, check_history, load_dir, read_schema};
use annals::prelude::*;
use annals::projections::{ParkedStore, kv_read_models, search_checkpoint};
use annals::store::{StoreConfig, is_store_dir, verify};
use annals_cli::{Batcher, Line, parse_line};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "annals",
    version,
    about = "Inspect, verify, export and import an annals data directory; check event schemas"
)]
struct Cli {
    /// The data directory.
    #[arg(long, short, default_value = "annals-data")]
    data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every stream with its version.
    Streams,
    /// The events of one stream.
    Read {
        /// The stream id, e.g. ticket-1.
        stream: String,
    },
    /// The last events of the global log.
    Tail {
        /// How many.
        #[arg(short, default_value_t = 20)]
        n: usize,
        /// Keep printing new events (Ctrl-C to stop).
        #[arg(long, short)]
        follow: bool,
    },
    /// Checkpoints and lag of the read models.
    Projections,
    /// Parked (dead-letter) events of every projection.
    Parked,
    /// Walk the whole store: checksums, contiguous positions and versions, index consistency.
    Verify,
    /// Every event as JSON lines (payloads as base64; JSON payloads also decoded).
    Export {
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Append the events of an export to the store (new positions and times).
    Import {
        /// The JSON-lines file.
        file: PathBuf,
        /// Create a new store (in DIR/store) when DIR holds none.
        #[arg(long)]
        create: bool,
    },
    /// Event contracts: the JSON Schemas of event payloads (no data directory needed).
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Whether NEW is compatible with OLD, or, with --dir, whether each event type's
    /// committed versions are. Exit code 0: compatible; 1: incompatible (each
    /// incompatibility printed); 2: a file or schema could not be read.
    Check {
        /// The old version's schema file.
        #[arg(required_unless_present = "dir", conflicts_with = "dir")]
        old: Option<PathBuf>,
        /// The new version's schema file.
        #[arg(required_unless_present = "dir", conflicts_with = "dir")]
        new: Option<PathBuf>,
        /// A schema directory, `<event type>/v<N>.json`: each version against the one
        /// before it, or against every earlier one in a transitive mode.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// backward (new readers read old data), forward (old readers read new data),
        /// full (both), or backward-transitive, forward-transitive, full-transitive.
        #[arg(long, default_value = "backward")]
        mode: Mode,
    },
}

fn store_dir(data: &Path) -> PathBuf {
    let nested = data.join("store");
    if nested.is_dir() {
        nested
    } else {
        data.to_path_buf()
    }
}

/// The store of `data`, which must exist: no command creates one by accident.
fn existing_store_dir(data: &Path) -> Result<PathBuf, String> {
    let dir = store_dir(data);
    if is_store_dir(&dir) {
        Ok(dir)
    } else {
        Err(format!("no store in {}", data.display()))
    }
}

fn open_store(data: &Path) -> Result<SledStore, String> {
    let dir = existing_store_dir(data)?;
    SledStore::open_existing(&dir, StoreConfig::default())
        .map_err(|e| format!("cannot open {}: {e}", dir.display()))
}

fn print_event(out: &mut dyn Write, e: &RecordedEvent) -> std::io::Result<()> {
    writeln!(
        out,
        "@{:<7} {:<24} v{:<5} {:<18} {}",
        e.position, e.stream, e.version, e.event_type, e.id
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    let io = |e: std::io::Error| e.to_string();
    let st = |e: annals::Error| e.to_string();
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Schema {
            command:
                SchemaCommand::Check {
                    old,
                    new,
                    dir,
                    mode,
                },
        } => return schema_check(&mut out, old.zip(new), dir, mode),
        Command::Streams => {
            let store = open_store(&cli.data)?;
            for (s, v) in store.streams().map_err(st)? {
                writeln!(out, "{s:<32} v{v}").map_err(io)?;
            }
        }
        Command::Read { stream } => {
            let store = open_store(&cli.data)?;
            let s = StreamId::new(stream).map_err(st)?;
            let mut next = Version::FIRST;
            loop {
                let page = store
                    .read_stream(
                        &s,
                        VersionRange::new(next, Version::MAX),
                        Direction::Forward,
                        4096,
                    )
                    .await
                    .map_err(st)?;
                if page.is_empty() && next == Version::FIRST {
                    return Err(format!("no stream {s}"));
                }
                for e in &page {
                    print_event(&mut out, e).map_err(io)?;
                    next = e.version.next();
                }
                if page.len() < 4096 {
                    break;
                }
            }
        }
        Command::Tail { n, follow } => {
            let store = open_store(&cli.data)?;
            let head = store.head_position();
            let from = Position((head.0 + 1).saturating_sub(n as u64).max(1));
            for e in store.read_all(from, n).await.map_err(st)? {
                print_event(&mut out, &e).map_err(io)?;
            }
            if follow {
                out.flush().map_err(io)?;
                let mut sub = store.subscribe_all(head.next());
                loop {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => break,
                        e = sub.next() => match e {
                            Some(e) => {
                                print_event(&mut out, &e.map_err(st)?).map_err(io)?;
                                out.flush().map_err(io)?;
                            }
                            None => break,
                        },
                    }
                }
            }
        }
        Command::Projections | Command::Parked => {
            let store = open_store(&cli.data)?;
            let head = store.head_position();
            let rm = cli.data.join("read-models");
            if !is_store_dir(&rm) {
                writeln!(out, "no read models in {}", rm.display()).map_err(io)?;
                return Ok(ExitCode::SUCCESS);
            }
            let db = annals::projections::sled::Config::new()
                .path(&rm)
                .open()
                .map_err(|e| format!("cannot open {}: {e}", rm.display()))?;
            if matches!(cli.command, Command::Projections) {
                let models = kv_read_models(&db).map_err(|e| e.to_string())?;
                for (model, cp) in models {
                    let cp = cp.unwrap_or_default();
                    writeln!(
                        out,
                        "{model:<20} checkpoint {:<8} version {:<3} lag {}",
                        cp.position,
                        cp.version,
                        head.0.saturating_sub(cp.position.0)
                    )
                    .map_err(io)?;
                }
                let search =
                    search_checkpoint(cli.data.join("search")).map_err(|e| e.to_string())?;
                if let Some((generation, cp)) = search {
                    let cp = cp.unwrap_or_default();
                    writeln!(
                        out,
                        "{:<20} checkpoint {:<8} version {:<3} lag {} (index generation {generation})",
                        "search",
                        cp.position,
                        cp.version,
                        head.0.saturating_sub(cp.position.0)
                    )
                    .map_err(io)?;
                }
            } else {
                let parked = ParkedStore::open(&db).map_err(|e| e.to_string())?;
                let all = parked.all().map_err(|e| e.to_string())?;
                if all.is_empty() {
                    writeln!(out, "no parked events").map_err(io)?;
                }
                for p in all {
                    writeln!(
                        out,
                        "{} @{} {} {} attempts={} {}",
                        p.projection, p.position, p.stream, p.event_type, p.attempts, p.error
                    )
                    .map_err(io)?;
                }
            }
        }
        Command::Verify => {
            let dir = existing_store_dir(&cli.data)?;
            let report = verify(&dir).map_err(st)?;
            for p in &report.problems {
                writeln!(out, "problem at {p}").map_err(io)?;
            }
            if report.omitted > 0 {
                writeln!(out, "... and {} more problem(s)", report.omitted).map_err(io)?;
            }
            writeln!(
                out,
                "{} events, {} streams, {} chunks, {} problem(s)",
                report.events,
                report.streams,
                report.chunks,
                report.problem_count()
            )
            .map_err(io)?;
            if !report.ok() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Export { out: file } => {
            let store = open_store(&cli.data)?;
            let mut sink: Box<dyn Write> = match file {
                Some(f) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(&f).map_err(io)?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout())),
            };
            let mut next = Position::FIRST;
            loop {
                let page = store.read_all(next, 4096).await.map_err(st)?;
                let Some(last) = page.last() else { break };
                next = last.position.next();
                for e in page {
                    let line = Line::of(e);
                    serde_json::to_writer(&mut sink, &line).map_err(|e| e.to_string())?;
                    sink.write_all(b"\n").map_err(io)?;
                }
            }
            sink.flush().map_err(io)?;
        }
        Command::Import { file, create } => {
            // Into an existing store, or (with --create) a new one in the REPL's layout.
            let target = match existing_store_dir(&cli.data) {
                Ok(dir) => dir,
                Err(_) if create => cli.data.join("store"),
                Err(e) => return Err(format!("{e} (pass --create to make one)")),
            };
            let store = SledStore::open(&target).map_err(st)?;
            let reader = std::io::BufReader::new(
                std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?,
            );
            let mut batcher = Batcher::new(1000);
            let mut imported = 0u64;
            for (n, line) in reader.lines().enumerate() {
                let line = line.map_err(io)?;
                let Some(event) = parse_line(&line).map_err(|e| format!("line {}: {e}", n + 1))?
                else {
                    continue;
                };
                if let Some(append) = batcher.push(event) {
                    imported += import_append(&store, append).await?;
                }
            }
            if let Some(append) = batcher.take() {
                imported += import_append(&store, append).await?;
            }
            store.flush().await.map_err(st)?;
            writeln!(
                out,
                "imported {imported} events; head @{}",
                store.head_position()
            )
            .map_err(io)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `annals schema check`: two files, or every event type of a directory.
fn schema_check(
    out: &mut dyn Write,
    files: Option<(PathBuf, PathBuf)>,
    dir: Option<PathBuf>,
    mode: Mode,
) -> Result<ExitCode, String> {
    let io = |e: std::io::Error| e.to_string();
    let mut incompatible = 0usize;
    if let Some(dir) = dir {
        let all = load_dir(&dir).map_err(|e| e.to_string())?;
        if all.is_empty() {
            return Err(format!(
                "no schemas in {} (expected <event type>/v<N>.json)",
                dir.display()
            ));
        }
        for (event_type, versions) in &all {
            let found = check_history(versions, mode).map_err(|e| format!("{event_type}: {e}"))?;
            let listed: Vec<String> = versions.iter().map(|(v, _)| format!("v{v}")).collect();
            if found.is_empty() {
                writeln!(out, "{event_type:<24} {} ok", listed.join(" ")).map_err(io)?;
            }
            for f in &found {
                writeln!(out, "{event_type:<24} {f}").map_err(io)?;
            }
            incompatible += found.len();
        }
        writeln!(
            out,
            "{} event type(s), {incompatible} incompatibilit{} ({mode})",
            all.len(),
            if incompatible == 1 { "y" } else { "ies" }
        )
        .map_err(io)?;
    } else if let Some((old, new)) = files {
        let old = read_schema(&old).map_err(|e| e.to_string())?;
        let new = read_schema(&new).map_err(|e| e.to_string())?;
        let found = check(&old, &new, mode).map_err(|e| e.to_string())?;
        for f in &found {
            writeln!(out, "{f}").map_err(io)?;
        }
        incompatible = found.len();
        if found.is_empty() {
            writeln!(out, "compatible ({mode})").map_err(io)?;
        } else {
            writeln!(
                out,
                "{incompatible} incompatibilit{} ({mode})",
                if incompatible == 1 { "y" } else { "ies" }
            )
            .map_err(io)?;
        }
    }
    Ok(if incompatible == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Appends one run of a stream's events, expecting the stream at the version before them
/// (so a re-import of the same file is idempotent: same ids, original result).
async fn import_append(
    store: &SledStore,
    (stream, before, events): annals_cli::Append,
) -> Result<u64, String> {
    let n = events.len() as u64;
    store
        .append(&stream, ExpectedVersion::Exact(before), events)
        .await
        .map_err(|e| format!("importing {stream} at v{}: {e}", before.next()))?;
    Ok(n)
}
