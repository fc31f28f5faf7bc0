//! `SyncOpenOrdersJob`: one sync of the ERP's open orders into `open_orders`, logged step
//! by step as a joblog run.

use std::time::Instant;

use anyhow::Context;
use joblog::format::{count, duration, rate};
use joblog::{DatabaseConnection, JobLogger, RunHandle};

use crate::erp::ErpSource;
use crate::metrics::SyncMetrics;
use crate::open_orders::importer::{NoProgress, Step};
use crate::open_orders::{ImportStats, OpenOrdersImporter, Progress};

/// The job's name in `job_logs.job`.
pub const JOB_NAME: &str = "SyncOpenOrdersJob";

/// The sync job: a source, the query that returns the open orders, and the importer.
#[derive(Debug, Clone)]
pub struct SyncOpenOrdersJob {
    source: ErpSource,
    query: String,
    importer: OpenOrdersImporter,
    metrics: Option<SyncMetrics>,
}

/// Shortens a query for the log: one line, at most `max` characters.
fn one_line(query: &str, max: usize) -> String {
    let flat = query.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}

impl SyncOpenOrdersJob {
    /// A job reading `query` from `source` into the `open_orders` table of `db`.
    pub fn new(source: ErpSource, query: impl Into<String>, db: DatabaseConnection) -> Self {
        Self {
            source,
            query: query.into(),
            importer: OpenOrdersImporter::new(db),
            metrics: None,
        }
    }

    /// Records each successful sync's row counts on `metrics` (`sync_open_orders_rows`).
    #[must_use]
    pub fn with_metrics(mut self, metrics: SyncMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Runs one sync as a joblog run of [`JOB_NAME`]: processing, the steps, then success,
    /// or error with the whole cause chain. Returns the statistics or that error.
    pub async fn run(&self, logger: &JobLogger) -> anyhow::Result<ImportStats> {
        self.run_watched(logger, &NoProgress).await
    }

    /// [`run`](Self::run), with every line and step of the import also handed to `watcher`
    /// (`sync-app sync` draws its progress bar from them).
    pub async fn run_watched(
        &self,
        logger: &JobLogger,
        watcher: &dyn Progress,
    ) -> anyhow::Result<ImportStats> {
        logger
            .run(JOB_NAME, |run| async move {
                self.execute_watched(&run, watcher).await
            })
            .await
    }

    /// The steps, logged on `run` (which the caller started and will finish).
    pub async fn execute(&self, run: &RunHandle) -> anyhow::Result<ImportStats> {
        self.execute_watched(run, &NoProgress).await
    }

    /// [`execute`](Self::execute), with the import's lines and steps also handed to `watcher`.
    pub async fn execute_watched(
        &self,
        run: &RunHandle,
        watcher: &dyn Progress,
    ) -> anyhow::Result<ImportStats> {
        let started = Instant::now();
        run.detail(format!("Connecting to SQL Server {}...", self.source.label()));
        let (conn, info) = self
            .source
            .connect()
            .await
            .with_context(|| format!("connecting to SQL Server {}", self.source.label()))?;
        run.detail(format!(
            "Connected to SQL Server {} in {}",
            info.addr,
            duration(info.elapsed)
        ));
        run.detail(format!("Fetching open orders: {}", one_line(&self.query, 160)));
        let rows = conn.spawn_open_orders(self.query.clone());
        let stats = self
            .importer
            .replace(rows, &Watched { run, watcher })
            .await
            .context("syncing open orders")?;
        let elapsed = started.elapsed();
        if let Some(metrics) = &self.metrics {
            metrics.synced(&stats);
        }
        run.detail(format!(
            "Sync completed: {} rows fetched, {} rows inserted, {} ({} rows/s)",
            count(stats.fetched),
            count(stats.inserted),
            duration(elapsed),
            rate(stats.inserted, elapsed)
        ));
        Ok(stats)
    }
}

/// The run's progress (its details) and a watcher's, together.
struct Watched<'a> {
    run: &'a RunHandle,
    watcher: &'a dyn Progress,
}

impl Progress for Watched<'_> {
    fn info(&self, message: String) {
        self.watcher.info(message.clone());
        self.run.info(message);
    }
    fn warn(&self, message: String) {
        self.watcher.warn(message.clone());
        Progress::warn(self.run, message);
    }
    fn step(&self, step: Step) {
        self.watcher.step(step);
        self.run.step(step);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line() {
        assert_eq!(
            super::one_line("SELECT a,\n   b FROM v", 100),
            "SELECT a, b FROM v"
        );
        assert_eq!(super::one_line("SELECT abcdef", 6), "SELECT…");
    }
}
