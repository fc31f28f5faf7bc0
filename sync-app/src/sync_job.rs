//! `SyncOpenOrdersJob`: one sync of the ERP's open orders into `open_orders`, logged step
//! by step as a joblog run.

use std::time::Instant;

use anyhow::Context;
use joblog::{DatabaseConnection, JobLogger, RunHandle};

use crate::erp::ErpSource;
use crate::open_orders::importer::thousands;
use crate::open_orders::{ImportStats, OpenOrdersImporter};

/// The job's name in `job_logs.job`.
pub const JOB_NAME: &str = "SyncOpenOrdersJob";

/// The sync job: a source, the query that returns the open orders, and the importer.
#[derive(Debug, Clone)]
pub struct SyncOpenOrdersJob {
    source: ErpSource,
    query: String,
    importer: OpenOrdersImporter,
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
        }
    }

    /// Runs one sync as a joblog run of [`JOB_NAME`]: processing, the steps, then success,
    /// or error with the whole cause chain. Returns the statistics or that error.
    pub async fn run(&self, logger: &JobLogger) -> anyhow::Result<ImportStats> {
        logger
            .run(JOB_NAME, |run| async move { self.execute(&run).await })
            .await
    }

    /// The steps, logged on `run` (which the caller started and will finish).
    pub async fn execute(&self, run: &RunHandle) -> anyhow::Result<ImportStats> {
        let started = Instant::now();
        run.detail(format!("Connecting to SQL Server {}...", self.source.label()));
        let (conn, info) = self
            .source
            .connect()
            .await
            .with_context(|| format!("connecting to SQL Server {}", self.source.label()))?;
        run.detail(format!(
            "Connected to SQL Server {} in {} ms",
            info.addr,
            info.elapsed.as_millis()
        ));
        run.detail(format!("Fetching open orders: {}", one_line(&self.query, 160)));
        let rows = conn.spawn_open_orders(self.query.clone());
        let stats = self
            .importer
            .replace(rows, run)
            .await
            .context("syncing open orders")?;
        let secs = started.elapsed().as_secs_f64();
        run.detail(format!(
            "Sync completed: {} rows fetched, {} rows inserted, {:.1} s ({} rows/s)",
            thousands(stats.fetched),
            thousands(stats.inserted),
            secs,
            thousands(if secs > 0.0 {
                (stats.inserted as f64 / secs) as u64
            } else {
                stats.inserted
            })
        ));
        Ok(stats)
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
