//! Appends events to the embedded sled store and reads them back: per stream, from the
//! global log, and through a subscription.
//!
//! ```text
//! cargo run --release --example quickstart [-- DATA_DIR]
//! ```

use annals::Error;
use annals::prelude::*;

#[derive(serde::Serialize, serde::Deserialize, Debug)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrew { amount: u64 },
}

impl AccountEvent {
    fn name(&self) -> &'static str {
        match self {
            AccountEvent::Opened { .. } => "Opened",
            AccountEvent::Deposited { .. } => "Deposited",
            AccountEvent::Withdrew { .. } => "Withdrew",
        }
    }

    fn data(&self) -> Result<EventData, Error> {
        EventData::encode(self.name(), self)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map_or_else(
        || std::env::temp_dir().join("annals-quickstart"),
        std::path::PathBuf::from,
    );
    let store = SledStore::open(&dir)?;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    writeln!(
        out,
        "store: {} (head position {})",
        dir.display(),
        store.head_position()
    )?;

    // Each run opens a new account; `NoStream` makes a second opening of the same one fail.
    let n = store.head_position().0;
    let stream = StreamId::for_aggregate("account", n)?;
    let opened = store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![
                AccountEvent::Opened {
                    owner: "ada".into(),
                }
                .data()?,
            ],
        )
        .await?;
    let more = vec![
        AccountEvent::Deposited { amount: 100 }.data()?,
        AccountEvent::Withdrew { amount: 30 }.data()?,
    ];
    let r = store
        .append(
            &stream,
            ExpectedVersion::Exact(opened.last_version),
            more.clone(),
        )
        .await?;
    writeln!(
        out,
        "appended to {stream}: versions {}..={}, positions {}..={}",
        opened.first_version, r.last_version, opened.first_position, r.last_position
    )?;

    // A retry of the same events (same ids) is idempotent: the original result, nothing new.
    let again = store.append(&stream, ExpectedVersion::Any, more).await?;
    assert_eq!(again, r);

    // Optimistic concurrency: a stale expected version is a typed conflict.
    match store
        .append(
            &stream,
            ExpectedVersion::Exact(Version(1)),
            vec![AccountEvent::Deposited { amount: 1 }.data()?],
        )
        .await
    {
        Err(Error::Conflict {
            expected, actual, ..
        }) => writeln!(
            out,
            "conflict as expected: wanted {expected}, stream is at {actual}"
        )?,
        other => writeln!(out, "unexpected: {other:?}")?,
    }

    writeln!(out, "\n{stream}, newest first:")?;
    for e in store
        .read_stream(&stream, VersionRange::ALL, Direction::Backward, 10)
        .await?
    {
        let event: AccountEvent = e.decode()?;
        writeln!(out, "  v{} @{} {:?}", e.version, e.position, event)?;
    }

    writeln!(out, "\n$all (last 5):")?;
    let head = store.head_position();
    let mut sub = store.subscribe_all(Position(head.0.saturating_sub(4)));
    while let Some(e) = sub.next().await {
        let e = e?;
        writeln!(
            out,
            "  @{} {} v{} {}",
            e.position, e.stream, e.version, e.event_type
        )?;
        if e.position >= head {
            break;
        }
    }
    Ok(())
}
