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
use joblog::format::{count, duration, rate};
use joblog::{DatabaseConnection, RunHandle};
use sea_orm::sqlx;

use crate::erp::SourceError;
use crate::open_orders::OpenOrder;
use sink::Sink;

/// Rows per batch of the swap step (one `Batch i/n` line each).
pub const SWAP_BATCH_ROWS: u64 = 10_000;

/// Where an import's progress goes: a joblog run, the terminal's progress bar, or anything
/// else (tests collect the lines).
///
/// The importer reports each step once through [`step`](Progress::step), as numbers; by
/// default its line ([`Step::line`]) goes to [`info`](Progress::info), so a run's details read
/// `Fetched 12,000 rows so far (8,000 rows/s)`, `Batch 2/5 (10,000 rows)`, …
pub trait Progress: Send + Sync {
    /// An informational line.
    fn info(&self, message: String);
    /// A warning line.
    fn warn(&self, message: String);
    /// A step of the import, as numbers. The default writes its line, if it has one.
    fn step(&self, step: Step) {
        if let Some(line) = step.line() {
            self.info(line);
        }
    }
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

/// One step of an import, as numbers (what a progress bar draws); [`Step::line`] is the
/// detail a run records for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Rows read from the source so far: reported at every staged batch, for a progress
    /// bar; no line.
    Reading {
        /// Rows read.
        rows: u64,
        /// Since the import started.
        elapsed: Duration,
    },
    /// Rows staged so far, every few seconds while the source is still being read.
    Fetching {
        /// Rows staged.
        rows: u64,
        /// Since the import started.
        elapsed: Duration,
    },
    /// Every row is read and staged.
    Fetched {
        /// Rows read.
        rows: u64,
        /// Time to read and stage them.
        elapsed: Duration,
    },
    /// The swap transaction begins.
    Replacing {
        /// Rows to copy.
        rows: u64,
        /// Batches they are copied in.
        batches: u64,
    },
    /// A batch of the swap is copied.
    Batch {
        /// Its number, from 1.
        index: u64,
        /// How many batches there are.
        batches: u64,
        /// Rows in this batch.
        rows: u64,
    },
    /// The swap committed.
    Replaced {
        /// Rows now in `open_orders`.
        rows: u64,
        /// Rows the previous snapshot had.
        previous: u64,
        /// Time of the swap transaction.
        elapsed: Duration,
    },
}

impl Step {
    /// The line a run records for this step (`Batch 2/5 (10,000 rows)`); `None` for
    /// [`Step::Reading`], which only feeds progress bars.
    #[must_use]
    pub fn line(&self) -> Option<String> {
        Some(match *self {
            Step::Reading { .. } => return None,
            Step::Fetching { rows, elapsed } => {
                format!(
                    "Fetched {} rows so far ({} rows/s)",
                    count(rows),
                    rate(rows, elapsed)
                )
            }
            Step::Fetched { rows, elapsed } => {
                format!("Fetched {} open orders in {}", count(rows), duration(elapsed))
            }
            Step::Replacing { rows, batches } => format!(
                "Replacing open_orders in one transaction ({} rows, {batches} batch{})",
                count(rows),
                if batches == 1 { "" } else { "es" }
            ),
            Step::Batch { index, batches, rows } => {
                format!("Batch {index}/{batches} ({} rows)", count(rows))
            }
            Step::Replaced {
                rows,
                previous,
                elapsed,
            } => format!(
                "Replaced open_orders: {} rows (previous snapshot: {} rows) in {}",
                count(rows),
                count(previous),
                duration(elapsed)
            ),
        })
    }
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
    /// exist (`open_orders::SyncAppMigrator`).
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
                progress.step(Step::Reading {
                    rows: read,
                    elapsed: started.elapsed(),
                });
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
        progress.step(Step::Fetching {
            rows: staged,
            elapsed: started.elapsed(),
        });
    };
    let consume = sink.stage(rx, &report);
    let (read, staged) = tokio::join!(produce, consume);
    read?;
    let fetched = staged.map_err(local("staging rows"))?;
    let fetch_time = started.elapsed();
    progress.step(Step::Fetched {
        rows: fetched,
        elapsed: fetch_time,
    });
    if fetched == 0 {
        progress.warn("Source returned 0 rows: open_orders will be empty".into());
    }

    // Swap.
    let synced_at = Utc::now();
    let batches = fetched.div_ceil(SWAP_BATCH_ROWS);
    progress.step(Step::Replacing {
        rows: fetched,
        batches,
    });
    let swap_started = Instant::now();
    let on_batch = |index: u64, rows: u64| {
        progress.step(Step::Batch { index, batches, rows });
    };
    let (previous, inserted) = sink
        .swap(fetched, SWAP_BATCH_ROWS, synced_at, &on_batch)
        .await
        .map_err(local("replacing open_orders"))?;
    let replace_time = swap_started.elapsed();
    progress.step(Step::Replaced {
        rows: inserted,
        previous,
        elapsed: replace_time,
    });
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Step;

    #[test]
    fn step_lines_are_the_run_details() {
        let lines = [
            (
                Step::Reading {
                    rows: 5,
                    elapsed: Duration::from_secs(1),
                },
                None,
            ),
            (
                Step::Fetching {
                    rows: 24_000,
                    elapsed: Duration::from_secs(3),
                },
                Some("Fetched 24,000 rows so far (8,000 rows/s)"),
            ),
            (
                Step::Fetched {
                    rows: 25_000,
                    elapsed: Duration::from_millis(3_210),
                },
                Some("Fetched 25,000 open orders in 3.21s"),
            ),
            (
                Step::Replacing {
                    rows: 25_000,
                    batches: 3,
                },
                Some("Replacing open_orders in one transaction (25,000 rows, 3 batches)"),
            ),
            (
                Step::Replacing {
                    rows: 1_500,
                    batches: 1,
                },
                Some("Replacing open_orders in one transaction (1,500 rows, 1 batch)"),
            ),
            (
                Step::Batch {
                    index: 2,
                    batches: 3,
                    rows: 10_000,
                },
                Some("Batch 2/3 (10,000 rows)"),
            ),
            (
                Step::Replaced {
                    rows: 25_000,
                    previous: 0,
                    elapsed: Duration::from_millis(850),
                },
                Some("Replaced open_orders: 25,000 rows (previous snapshot: 0 rows) in 850ms"),
            ),
        ];
        for (step, want) in lines {
            assert_eq!(step.line().as_deref(), want, "{step:?}");
        }
    }
}
