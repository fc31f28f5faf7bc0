//! `sync-app sync`: one sync now, its details on the terminal as they are written.

use joblog::format::{count, duration};

use crate::configuration::Settings;
use crate::database;
use crate::open_orders::Progress;
use crate::open_orders::importer::NoProgress;
use crate::telemetry::Terminal;

use super::{job, reap, shutdown_signal, source};

/// `sync-app sync`: one sync now. `Ok(true)` on success; on failure the cause chain is
/// printed and `Ok(false)` returned (exit code 1). The run's details reach the terminal as
/// they are written (see [`crate::telemetry`]); on a terminal a progress bar shows the rows,
/// the rate and the batch.
pub async fn sync(settings: &Settings, terminal: &Terminal) -> anyhow::Result<bool> {
    let source = source(settings)?;
    let logger = database::open(&settings.database_url).await?;
    reap(&logger).await;
    let job = job(settings, source, &logger);
    let signal = shutdown_signal();
    let bar = terminal.sync_progress();
    let watcher: &dyn Progress = match &bar {
        Some(bar) => bar,
        None => &NoProgress,
    };
    let result = {
        let sync = job.run_watched(&logger, watcher);
        tokio::pin!(sync);
        tokio::pin!(signal);
        tokio::select! {
            r = &mut sync => r,
            () = &mut signal => {
                tracing::warn!(
                    "stopping: the running sync gets up to {} to finish",
                    duration(settings.shutdown_grace)
                );
                match tokio::time::timeout(settings.shutdown_grace, &mut sync).await {
                    Ok(r) => r,
                    // Dropping `sync` records the run as error ("cancelled").
                    Err(_) => Err(anyhow::anyhow!(
                        "stopped by a signal; the sync did not finish within SHUTDOWN_GRACE ({})",
                        duration(settings.shutdown_grace)
                    )),
                }
            }
        }
    };
    drop(bar);
    if let Err(e) = logger.flush().await {
        tracing::warn!(error = %e, "some log lines could not be written");
    }
    match result {
        Ok(stats) => {
            println!(
                "sync succeeded: {} rows fetched, {} inserted (previous snapshot {} rows)",
                count(stats.fetched),
                count(stats.inserted),
                count(stats.previous)
            );
            Ok(true)
        }
        Err(e) => {
            eprintln!("sync failed: {e:#}");
            Ok(false)
        }
    }
}
