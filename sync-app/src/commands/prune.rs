//! `sync-app prune [DAYS]`: retention.

use std::time::Duration;

use anyhow::Context;
use joblog::PruneOptions;

use crate::configuration::Settings;
use crate::database;

/// `sync-app prune [DAYS]`: deletes finished runs older than `days` days.
pub async fn prune(settings: &Settings, days: u64) -> anyhow::Result<()> {
    let logger = database::open(&settings.database_url).await?;
    let stats = logger
        .prune(&PruneOptions {
            older_than: Some(Duration::from_secs(days * 86_400)),
            keep_last: None,
        })
        .await
        .context("pruning old runs")?;
    println!(
        "pruned {} runs, {} details and {} sent alerts older than {days} days",
        stats.runs, stats.details, stats.alerts
    );
    Ok(())
}
