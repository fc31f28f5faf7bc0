//! [`OpenOrdersImporter`]: replaces the `open_orders` table with a new snapshot, atomically.
//!
//! 1. **Stage**: rows stream from the source into a temporary table on one dedicated
//!    connection (SQLite: multi-row INSERTs sized to its bind limit; PostgreSQL: `COPY …
//!    FROM STDIN`; MySQL: multi-row INSERTs sized to its bind limit), while the source is
//!    still being read. `open_orders` is not touched; other writers (joblog's details on
//!    SQLite) are not held up, since a temporary table takes no lock on the main database.
//! 2. **Swap**: one transaction deletes the old rows and copies the staged ones across in
//!    batches (`Batch i/n (k rows)`), then commits. Readers see the old snapshot until
//!    the commit and the new complete one after it.
//!
//! A failure anywhere — the source dropping mid-stream, a bad row, a local error, the
//! process killed — ends before the commit: the temporary table disappears with its
//! connection (or is dropped) and the previous snapshot is untouched.

mod sink;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use joblog::{DatabaseConnection, RunHandle};
use sea_orm::sqlx;

use crate::erp::SourceError;
use crate::open_orders::OpenOrder;
use sink::Sink;

/// Rows per batch of the swap step (one `Batch i/n` line each).
pub const SWAP_BATCH_ROWS: u64 = 10_000;

/// Where progress lines go: a joblog run, or anything else (tests collect them).
pub trait Progress: Send + Sync {
    /// An informational line.
    fn info(&self, message: String);
    /// A warning line.
    fn warn(&self, message: String);
}

impl Progress for RunHandle {
    fn info(&self, message: String) {
        self.detail(message);
    }
    fn warn(&self, message: String) {
        RunHandle::warn(self, message);
    }
}

/// Discards progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn info(&self, _: String) {}
    fn warn(&self, _: String) {}
}

/// Why an import failed. In every case the previous snapshot is intact.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading the source failed (connection, query, a bad row).
    #[error("the source failed after {rows} rows; open_orders was left as it was")]
    Source {
        /// Rows read before the failure.
        rows: u64,
        /// The cause.
        #[source]
        source: SourceError,
    },
    /// The local database failed.
    #[error("the local database failed while {step}; open_orders was left as it was")]
    Local {
        /// What was being done.
        step: &'static str,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
}

/// What an import did.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportStats {
    /// Rows read from the source.
    pub fetched: u64,
    /// Rows now in `open_orders`.
    pub inserted: u64,
    /// Rows the previous snapshot had.
    pub previous: u64,
    /// Batches of the swap step.
    pub batches: u64,
    /// Time to read and stage every row.
    pub fetch_time: Duration,
    /// Time of the swap transaction.
    pub replace_time: Duration,
    /// The `synced_at` stamped on every row.
    pub synced_at: DateTime<Utc>,
}

/// Replaces `open_orders` with what a source stream yields.
#[derive(Debug, Clone)]
pub struct OpenOrdersImporter {
    db: DatabaseConnection,
}

impl OpenOrdersImporter {
    /// An importer writing through `db` (SQLite, PostgreSQL or MySQL). The tables must
    /// exist (`SyncAppMigrator`).
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Stages every row of `rows`, then swaps them in as the new `open_orders` in one
    /// transaction. On any error nothing changes.
    pub async fn replace<S>(&self, rows: S, progress: &dyn Progress) -> Result<ImportStats, ImportError>
    where
        S: Stream<Item = Result<OpenOrder, SourceError>> + Send,
    {
        let mut sink = Sink::open(&self.db).await.map_err(|source| ImportError::Local {
            step: "opening a connection",
            source,
        })?;
        let result = run(&mut sink, rows, progress).await;
        if result.is_ok() {
            // Back to the pool without its staging table.
            sink.close().await;
        }
        // On an error the connection may sit in a failed transaction or COPY (MySQL keeps
        // a transaction open after a failed statement): dropping `sink` closes it.
        result
    }
}

async fn run<S>(sink: &mut Sink, rows: S, progress: &dyn Progress) -> Result<ImportStats, ImportError>
where
    S: Stream<Item = Result<OpenOrder, SourceError>> + Send,
{
    let local = |step| move |source| ImportError::Local { step, source };
    sink.create_staging()
        .await
        .map_err(local("creating the staging table"))?;

    // Stage: the source is read (decoded by tiberius) while the previous batch is written.
    let started = Instant::now();
    let batch_rows = sink.batch_rows();
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<OpenOrder>>(2);
    let produce = async move {
        let mut rows = std::pin::pin!(rows);
        let mut read = 0u64;
        let mut batch = Vec::with_capacity(batch_rows);
        while let Some(item) = rows.next().await {
            match item {
                Ok(order) => batch.push(order),
                Err(source) => return Err(ImportError::Source { rows: read, source }),
            }
            read += 1;
            if batch.len() == batch_rows {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_rows));
                if tx.send(full).await.is_err() {
                    return Ok(read); // the writer failed; its error is reported
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        Ok(read)
    };
    let report = |staged: u64| {
        let secs = started.elapsed().as_secs_f64();
        progress.info(format!(
            "Fetched {} rows so far ({} rows/s)",
            thousands(staged),
            thousands(rate(staged, secs))
        ));
    };
    let consume = sink.stage(rx, &report);
    let (read, staged) = tokio::join!(produce, consume);
    read?;
    let fetched = staged.map_err(local("staging rows"))?;
    let fetch_time = started.elapsed();
    progress.info(format!(
        "Fetched {} open orders in {:.1} s",
        thousands(fetched),
        fetch_time.as_secs_f64()
    ));
    if fetched == 0 {
        progress.warn("Source returned 0 rows: open_orders will be empty".into());
    }

    // Swap.
    let synced_at = Utc::now();
    let batches = fetched.div_ceil(SWAP_BATCH_ROWS);
    progress.info(format!(
        "Replacing open_orders in one transaction ({} rows, {} batch{})",
        thousands(fetched),
        batches,
        if batches == 1 { "" } else { "es" }
    ));
    let swap_started = Instant::now();
    let on_batch = |i: u64, k: u64| {
        progress.info(format!("Batch {i}/{batches} ({} rows)", thousands(k)));
    };
    let (previous, inserted) = sink
        .swap(fetched, SWAP_BATCH_ROWS, synced_at, &on_batch)
        .await
        .map_err(local("replacing open_orders"))?;
    let replace_time = swap_started.elapsed();
    progress.info(format!(
        "Replaced open_orders: {} rows (previous snapshot: {} rows) in {:.1} s",
        thousands(inserted),
        thousands(previous),
        replace_time.as_secs_f64()
    ));
    Ok(ImportStats {
        fetched,
        inserted,
        previous,
        batches,
        fetch_time,
        replace_time,
        synced_at,
    })
}

fn rate(rows: u64, secs: f64) -> u64 {
    if secs > 0.0 {
        (rows as f64 / secs) as u64
    } else {
        rows
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1000), "1,000");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
    }
}
