//! sync-app: pulls open orders from an ERP's SQL Server into a local database every
//! 5 minutes, logs each step with joblog and serves the run pages.
//!
//! So far only the database commands exist (`migrate`, `prune`); `serve`, `sync`, `demo`
//! and `fake-erp` arrive with the sync-app issue.

use sync_app::configuration;

use std::time::Duration;

use anyhow::{Context, bail};
use joblog::{JobLogger, PruneOptions};

use configuration::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = Settings::from_env().context("invalid configuration")?;
    tracing::debug!(?settings, "configuration");
    let url = settings.database_url.clone();
    match args.first().map(String::as_str) {
        Some("migrate") => {
            let logger = JobLogger::connect(&url)
                .await
                .context("connecting to DATABASE_URL")?;
            logger.migrate().await.context("running joblog migrations")?;
            println!("migrations applied");
        }
        Some("prune") => {
            let days: u64 = match args.get(1) {
                Some(d) => d.parse().context("prune takes a number of days")?,
                None => 30,
            };
            let logger = JobLogger::connect(&url)
                .await
                .context("connecting to DATABASE_URL")?;
            logger.migrate().await.context("running joblog migrations")?;
            let stats = logger
                .prune(&PruneOptions {
                    older_than: Some(Duration::from_secs(days * 86_400)),
                    keep_last: None,
                })
                .await
                .context("pruning old runs")?;
            println!(
                "pruned {} runs and {} details older than {days} days",
                stats.runs, stats.details
            );
        }
        Some(cmd @ ("serve" | "sync" | "demo" | "fake-erp")) => {
            bail!("`sync-app {cmd}` is not available yet (tracked in the sync-app issue)")
        }
        _ => bail!("usage: sync-app <migrate|prune [DAYS]|serve|sync|demo|fake-erp>"),
    }
    Ok(())
}
