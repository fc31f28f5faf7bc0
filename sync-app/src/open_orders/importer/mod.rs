//! [`OpenOrdersImporter`]: replaces the `open_orders` table with a new snapshot, atomically,
//! at close to the speed of loading an unindexed table and building its indexes once.
//!
//! 1. **Lock**: one sync per database at a time (SQLite: an exclusive lock on the file
//!    `<database>-sync-lock` beside it; PostgreSQL: `pg_advisory_lock`; MySQL:
//!    `GET_LOCK`), held by the importer's dedicated connection.
//! 2. **Shadow**: whatever a killed sync left (`open_orders_next`; MySQL also
//!    `open_orders_old`) is dropped; `open_orders_next` is created from the live table's own
//!    definition (SQLite: its `CREATE TABLE` text in `sqlite_master`; PostgreSQL: `LIKE …
//!    INCLUDING ALL EXCLUDING INDEXES`; MySQL: `CREATE TABLE … LIKE`, then its secondary
//!    indexes dropped), without secondary indexes.
//! 3. **Stage**: a reader task decodes rows from the source into a bounded channel while
//!    the writer streams them into the shadow table (SQLite, MySQL: multi-row INSERTs sized
//!    to the bind limit, committed every [`CHUNK_ROWS`] rows — and whenever the source
//!    pauses — so that other SQLite writers, such as joblog's run details in the same file,
//!    wait at most one chunk; PostgreSQL: one `COPY … FROM STDIN`). One `Batch i` line per
//!    chunk of [`CHUNK_ROWS`] rows.
//! 4. **Index**: the live table's indexes, read from the catalog (`sqlite_master`,
//!    `pg_index`/`pg_get_indexdef`, `information_schema.STATISTICS`), are built on the
//!    full shadow table, each from sorted keys at once (SQLite and PostgreSQL: under the
//!    temporary names `<name>_next`, PostgreSQL's primary key too; MySQL, where index
//!    names are per table: under their own names, in one `ALTER TABLE`).
//! 5. **Swap**, in one short transaction (no row is copied):
//!    - SQLite: `DROP TABLE open_orders`, `ALTER TABLE open_orders_next RENAME TO
//!      open_orders`, and the indexes get their names back. SQLite has no `ALTER INDEX …
//!      RENAME` and its index names are unique per database, so the shadow's indexes
//!      cannot carry the final names while the old ones exist, and building them under the
//!      final names inside the swap would hold the write lock for the whole index build.
//!      Instead, under `PRAGMA writable_schema`, each `<name>_next` row of `sqlite_master`
//!      gets back the old index's name and its `CREATE INDEX` text byte for byte — the same
//!      index on the same columns of the same (renamed) table, so only the label changes,
//!      never the b-tree (`rootpage`). The DROP and ALTER in the same transaction bump the
//!      schema cookie, so every other connection reloads the schema;
//!      `writable_schema = RESET` reloads the importer's own. A failure rolls it all back.
//!    - PostgreSQL: `DROP TABLE open_orders`, `ALTER TABLE … RENAME`, `ALTER INDEX …
//!      RENAME` / `RENAME CONSTRAINT` back to the old names, and the identity sequence
//!      (`open_orders_next_id_seq`) renamed, so that the next sync finds the same names.
//!      Readers blocked on the table resolve its name again and read the new one.
//!    - MySQL: `RENAME TABLE open_orders TO open_orders_old, open_orders_next TO
//!      open_orders` (atomic), then `DROP TABLE open_orders_old`.
//!
//! Readers see the complete old snapshot until the swap commits and the complete new one
//! after it. A failure anywhere — the source dropping mid-stream, a bad row, a local error,
//! the process killed — happens before the swap or inside its transaction: the old
//! snapshot is untouched, and the shadow table is dropped (now, or by the next sync if the
//! process died).
//!
//! The rows get new ids (1…n in the source's order), as the table is new.

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

/// Rows per staged chunk (one `Batch i` line each; on SQLite and MySQL at most one
/// transaction each).
pub const CHUNK_ROWS: u64 = sink::CHUNK_ROWS;

/// Where an import's progress goes: a joblog run, the terminal's progress bar, or anything
/// else (tests collect the lines).
///
/// The importer reports each step once through [`step`](Progress::step), as numbers; by
/// default its line ([`Step::line`]) goes to [`info`](Progress::info), so a run's details read
/// `Fetched 12,000 rows so far (8,000 rows/s)`, `Batch 2 (10,000 rows, 20,000 staged)`, …
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
    /// A chunk of [`CHUNK_ROWS`] rows (the last one may be smaller) is in the shadow table.
    Batch {
        /// Its number, from 1.
        index: u64,
        /// Rows in this chunk.
        rows: u64,
        /// Rows staged so far.
        staged: u64,
    },
    /// Every row is read and staged.
    Fetched {
        /// Rows read.
        rows: u64,
        /// Time to read and stage them.
        elapsed: Duration,
    },
    /// An index of the shadow table is built (`index` 0: the builds begin): for a progress
    /// bar; no line.
    Indexing {
        /// Indexes built so far.
        index: u64,
        /// How many there are.
        indexes: u64,
    },
    /// Every index of the shadow table is built.
    Indexed {
        /// How many.
        indexes: u64,
        /// Rows in the shadow table.
        rows: u64,
        /// Time to build them.
        elapsed: Duration,
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
    /// The line a run records for this step (`Batch 2 (10,000 rows, 20,000 staged)`);
    /// `None` for [`Step::Reading`] and [`Step::Indexing`], which only feed progress bars.
    #[must_use]
    pub fn line(&self) -> Option<String> {
        Some(match *self {
            Step::Reading { .. } | Step::Indexing { .. } => return None,
            Step::Fetching { rows, elapsed } => {
                format!(
                    "Fetched {} rows so far ({} rows/s)",
                    count(rows),
                    rate(rows, elapsed)
                )
            }
            Step::Batch { index, rows, staged } => {
                format!("Batch {index} ({} rows, {} staged)", count(rows), count(staged))
            }
            Step::Fetched { rows, elapsed } => {
                format!("Fetched {} open orders in {}", count(rows), duration(elapsed))
            }
            Step::Indexed {
                indexes,
                rows,
                elapsed,
            } => format!(
                "Indexed the new snapshot ({} rows, {indexes} index{}) in {}",
                count(rows),
                if indexes == 1 { "" } else { "es" },
                duration(elapsed)
            ),
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
    /// Chunks of [`CHUNK_ROWS`] rows staged (`Batch i` lines).
    pub batches: u64,
    /// Time to read and stage every row.
    pub fetch_time: Duration,
    /// Time to build the indexes of the new snapshot.
    pub index_time: Duration,
    /// Time of the swap transaction.
    pub replace_time: Duration,
    /// The `synced_at` stamped on every row (when the import began).
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

    /// Stages every row of `rows` into a shadow table, indexes it, then swaps it in as the
    /// new `open_orders` in one short transaction. On any error nothing changes.
    pub async fn replace<S>(&self, rows: S, progress: &dyn Progress) -> Result<ImportStats, ImportError>
    where
        S: Stream<Item = Result<OpenOrder, SourceError>> + Send,
    {
        let mut sink = Sink::open(&self.db).await.map_err(|source| ImportError::Local {
            step: "opening a connection",
            source,
        })?;
        let result = run(&mut sink, rows, progress).await;
        // Rolls back and drops the shadow table after a failure, releases the sync lock;
        // the connection goes back to the pool, or is closed if that fails. (If this
        // future is dropped instead, `Sink`'s Drop closes the connection.)
        sink.close(result.is_err()).await;
        result
    }
}

async fn run<S>(sink: &mut Sink, rows: S, progress: &dyn Progress) -> Result<ImportStats, ImportError>
where
    S: Stream<Item = Result<OpenOrder, SourceError>> + Send,
{
    let local = |step| move |source| ImportError::Local { step, source };
    let started = Instant::now();
    sink.lock()
        .await
        .map_err(local("waiting for another sync to finish"))?;
    sink.create_shadow()
        .await
        .map_err(local("creating the shadow table open_orders_next"))?;

    // Stage: a reader decodes the source (tiberius) into a bounded channel while the
    // writer stages the previous batches. Batches never straddle a chunk.
    let synced_at = Utc::now();
    let batch_rows = sink.batch_rows() as u64;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<OpenOrder>>(4);
    let produce = async move {
        let mut rows = std::pin::pin!(rows);
        let mut read = 0u64;
        let mut batch = Vec::with_capacity(batch_rows as usize);
        while let Some(item) = rows.next().await {
            match item {
                Ok(order) => batch.push(order),
                Err(source) => return Err(ImportError::Source { rows: read, source }),
            }
            read += 1;
            if batch.len() as u64 == batch_rows || read.is_multiple_of(CHUNK_ROWS) {
                progress.step(Step::Reading {
                    rows: read,
                    elapsed: started.elapsed(),
                });
                let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_rows as usize));
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
    let batches = std::sync::atomic::AtomicU64::new(0);
    let on_chunk = |index: u64, rows: u64, staged: u64| {
        batches.store(index, std::sync::atomic::Ordering::Relaxed);
        progress.step(Step::Batch { index, rows, staged });
    };
    let consume = sink.stage(rx, synced_at, &report, &on_chunk);
    let (read, staged) = tokio::join!(produce, consume);
    // A source error first: the writer only stopped because the reader did.
    read?;
    let fetched = staged.map_err(local("staging rows into open_orders_next"))?;
    let fetch_time = started.elapsed();
    progress.step(Step::Fetched {
        rows: fetched,
        elapsed: fetch_time,
    });
    if fetched == 0 {
        progress.warn("Source returned 0 rows: open_orders will be empty".into());
    }

    // Index the shadow table.
    let indexes = sink.index_count();
    let index_started = Instant::now();
    progress.step(Step::Indexing { index: 0, indexes });
    let on_index = |index: u64| progress.step(Step::Indexing { index, indexes });
    sink.build_indexes(&on_index)
        .await
        .map_err(local("indexing open_orders_next"))?;
    let index_time = index_started.elapsed();
    progress.step(Step::Indexed {
        indexes,
        rows: fetched,
        elapsed: index_time,
    });

    // Swap.
    let previous = sink.count_live().await.map_err(local("counting open_orders"))?;
    let swap_started = Instant::now();
    sink.swap().await.map_err(local("replacing open_orders"))?;
    let replace_time = swap_started.elapsed();
    progress.step(Step::Replaced {
        rows: fetched,
        previous,
        elapsed: replace_time,
    });
    Ok(ImportStats {
        fetched,
        inserted: fetched,
        previous,
        batches: batches.into_inner(),
        fetch_time,
        index_time,
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
                Step::Batch {
                    index: 2,
                    rows: 10_000,
                    staged: 20_000,
                },
                Some("Batch 2 (10,000 rows, 20,000 staged)"),
            ),
            (Step::Indexing { index: 3, indexes: 7 }, None),
            (
                Step::Indexed {
                    indexes: 7,
                    rows: 25_000,
                    elapsed: Duration::from_millis(850),
                },
                Some("Indexed the new snapshot (25,000 rows, 7 indexes) in 850ms"),
            ),
            (
                Step::Indexed {
                    indexes: 1,
                    rows: 1_500,
                    elapsed: Duration::from_millis(850),
                },
                Some("Indexed the new snapshot (1,500 rows, 1 index) in 850ms"),
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
