//! A bank account driven through the repository: commands, a rejected command, time travel,
//! history and snapshots.
//!
//! ```text
//! cargo run --example bank [-- DATA_DIR]
//! ```

use annals_example_domain::bank as domain;

use std::io::Write;

use annals::prelude::*;
use domain::{Account, AccountCommand};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map_or_else(
        || std::env::temp_dir().join("annals-bank"),
        std::path::PathBuf::from,
    );
    let store = SledStore::open(&dir)?;
    let repo = Repository::<Account, _>::new(store.clone()).snapshot_every(100);
    let mut out = std::io::stdout().lock();
    let id = format!("acc-{}", store.head_position().0);
    let ctx = CommandContext::new().with_metadata(Metadata::new().with_header("user", "example"));

    repo.execute_command_with(
        &AccountCommand::Open {
            account: id.clone(),
            owner: "ada".into(),
        },
        &ctx,
    )
    .await?;
    for amount in [100, 250, 50] {
        repo.execute_command_with(
            &AccountCommand::Deposit {
                account: id.clone(),
                amount,
            },
            &ctx,
        )
        .await?;
    }
    let before_withdrawal = Timestamp::now();
    repo.execute_command_with(
        &AccountCommand::Withdraw {
            account: id.clone(),
            amount: 120,
        },
        &ctx,
    )
    .await?;
    match repo
        .execute_command_with(
            &AccountCommand::Withdraw {
                account: id.clone(),
                amount: 10_000,
            },
            &ctx,
        )
        .await
    {
        Err(RepositoryError::Domain(e)) => writeln!(out, "rejected as expected: {e}")?,
        other => writeln!(out, "unexpected: {other:?}")?,
    }

    let (now, v) = repo.load(&id).await?;
    writeln!(out, "{id} now (v{v}): balance {}", now.balance)?;
    let (then, v2) = repo.load_at(&id, Version(2)).await?;
    writeln!(out, "{id} at v2 (v{v2}): balance {}", then.balance)?;
    let (asof, v3) = repo.load_as_of(&id, before_withdrawal).await?;
    writeln!(
        out,
        "{id} before the withdrawal (v{v3}): balance {}",
        asof.balance
    )?;
    writeln!(out, "history:")?;
    for h in repo.history(&id).await? {
        writeln!(
            out,
            "  v{} @{} {:?} {:?}",
            h.version, h.position, h.event, h.metadata.headers
        )?;
    }
    Ok(())
}
