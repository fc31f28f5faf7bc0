//! The run-list search's index, kept by the database so that rows written by any process —
//! another program, a hand-written `INSERT` — are found:
//!
//! - **SQLite**: FTS5 tables with the trigram tokenizer over `job_log_details.message` and
//!   `job_logs.name` (migration `m20261201_000005`), filled in batches behind a high-water
//!   mark. Inserting a detail fires nothing, so writers keep their speed; the rows past the
//!   mark (the *tail*) are read directly by a search, and each logger indexes them in the
//!   background ([`keep_up`]), [`BATCH_ROWS`] per short write transaction. Deletes and
//!   rewrites of indexed rows are mirrored by triggers, so prune keeps the index in step.
//! - **PostgreSQL**: `pg_trgm` GIN indexes on the same columns, built with
//!   `CREATE INDEX CONCURRENTLY` (writers go on meanwhile; a build that was killed leaves an
//!   invalid index, which the next build drops and redoes) and kept by PostgreSQL itself.
//! - **MySQL / MariaDB**: none (MariaDB has no n-gram full-text parser, and a word index
//!   cannot find a substring); the search stays the bounded scan.

use std::sync::Weak;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, TransactionTrait};

use crate::sql::Sql;
use crate::writer::WriterShared;
use crate::{JobLogger, Result};

/// Rows indexed per write transaction on SQLite (about 0.2 s of work: other writers wait
/// at most that long for one batch).
pub(crate) const BATCH_ROWS: u64 = 20_000;

/// Most unindexed rows (past the high-water mark) a SQLite search reads directly; with a
/// longer tail (an upgraded database not indexed yet) the search falls back to the bounded
/// scan until the indexer has caught up.
pub(crate) const MAX_TAIL_ROWS: i64 = 200_000;

/// `(table, text column, FTS5 table)` on SQLite.
pub(crate) const SQLITE_SOURCES: [(&str, &str, &str); 2] = [
    ("job_log_details", "message", "job_log_details_fts"),
    ("job_logs", "name", "job_logs_fts"),
];

/// `(index, table, text column)` on PostgreSQL.
const POSTGRES_INDEXES: [(&str, &str, &str); 2] = [
    ("idx_job_log_details_message_trgm", "job_log_details", "message"),
    ("idx_job_logs_name_trgm", "job_logs", "name"),
];

impl JobLogger {
    /// Builds the run-list search's index for every row not indexed yet, and returns how
    /// many rows it indexed (SQLite) — 0 when there was nothing to do.
    ///
    /// SQLite: batches of [`BATCH_ROWS`] rows, each in its own short transaction, so writers
    /// wait a fraction of a second at a time; resumable (the high-water mark is committed
    /// with each batch). A logger does the same in the background, so calling this is only
    /// needed to have a large upgraded database searchable at once (`sync-app migrate` does).
    /// PostgreSQL: creates the `pg_trgm` extension if it can and the two GIN indexes with
    /// `CREATE INDEX CONCURRENTLY` (minutes on tens of millions of rows; writers are not
    /// blocked), redoing one a killed build left invalid. When the extension cannot be
    /// created (not installed, or not allowed), it logs a warning and the search stays a
    /// bounded scan. MySQL / MariaDB: nothing to do.
    pub async fn build_search_index(&self) -> Result<u64> {
        let db = self.db();
        match db.get_database_backend() {
            DbBackend::Sqlite => {
                let mut total = 0;
                let started = Instant::now();
                let mut said = Instant::now();
                loop {
                    let n = sqlite_step(db, BATCH_ROWS).await?;
                    total += n;
                    if n == 0 {
                        break;
                    }
                    if said.elapsed() >= Duration::from_secs(5) {
                        said = Instant::now();
                        tracing::info!(rows = total, elapsed = ?started.elapsed(), "joblog: building the search index");
                    }
                }
                Ok(total)
            }
            DbBackend::Postgres => {
                let ready = ensure_postgres(db).await?;
                self.inner
                    .search_index_ready
                    .store(ready, std::sync::atomic::Ordering::Relaxed);
                Ok(0)
            }
            _ => Ok(0),
        }
    }

    /// Whether a search can use the index now: on SQLite, when the unindexed tail is short;
    /// on PostgreSQL, when both GIN indexes exist and are valid (remembered once true).
    pub(crate) async fn search_index_usable(&self) -> Result<bool> {
        let db = self.db();
        match db.get_database_backend() {
            DbBackend::Sqlite => {
                let q = Sql::new(
                    DbBackend::Sqlite,
                    "SELECT (SELECT COALESCE(MAX(id), 0) FROM job_log_details) \
                     - (SELECT indexed_upto FROM joblog_search_index WHERE source = 'job_log_details'), \
                     (SELECT COALESCE(MAX(id), 0) FROM job_logs) \
                     - (SELECT indexed_upto FROM joblog_search_index WHERE source = 'job_logs')",
                );
                // Not migrated to the index yet: no table, no index.
                let Ok(Some(row)) = q.one(db).await else {
                    return Ok(false);
                };
                let details: Option<i64> = row.try_get_by_index(0)?;
                let runs: Option<i64> = row.try_get_by_index(1)?;
                Ok(matches!((details, runs), (Some(d), Some(r)) if d <= MAX_TAIL_ROWS && r <= MAX_TAIL_ROWS))
            }
            DbBackend::Postgres => {
                use std::sync::atomic::Ordering;
                if self.inner.search_index_ready.load(Ordering::Relaxed) {
                    return Ok(true);
                }
                let ready = postgres_indexes_valid(db).await?;
                if ready {
                    self.inner.search_index_ready.store(true, Ordering::Relaxed);
                }
                Ok(ready)
            }
            _ => Ok(false),
        }
    }
}

/// Indexes up to `batch` rows of each source past its high-water mark, in one transaction
/// per source; returns how many rows it indexed.
pub(crate) async fn sqlite_step(db: &DatabaseConnection, batch: u64) -> Result<u64> {
    let mut total = 0;
    for (table, column, fts) in SQLITE_SOURCES {
        let txn = db.begin().await?;
        let result: Result<u64> = async {
            // A write first, so the transaction holds the write lock before it reads the mark
            // (no other writer can add or delete rows between the read and the insert).
            txn.execute_unprepared(&format!(
                "UPDATE joblog_search_index SET indexed_upto = indexed_upto WHERE source = '{table}'"
            ))
            .await?;
            let q = Sql::new(
                DbBackend::Sqlite,
                &format!(
                    "SELECT indexed_upto, (SELECT MAX(id) FROM (SELECT id FROM {table} \
                     WHERE id > indexed_upto ORDER BY id LIMIT {batch})) \
                     FROM joblog_search_index WHERE source = '{table}'"
                ),
            );
            let Some(row) = q.one(&txn).await? else {
                return Ok(0);
            };
            let from: i64 = row.try_get_by_index(0)?;
            let Some(upto) = row.try_get_by_index::<Option<i64>>(1)? else {
                return Ok(0);
            };
            let mut insert = Sql::new(
                DbBackend::Sqlite,
                &format!("INSERT INTO {fts} (rowid, {column}) SELECT id, {column} FROM {table} WHERE id > "),
            );
            insert.bind(from).push(" AND id <= ").bind(upto);
            let n = insert.execute(&txn).await?;
            let mut mark = Sql::new(
                DbBackend::Sqlite,
                "UPDATE joblog_search_index SET indexed_upto = ",
            );
            mark.bind(upto).push(&format!(" WHERE source = '{table}'"));
            mark.execute(&txn).await?;
            Ok(n)
        }
        .await;
        match result {
            Ok(n) => {
                txn.commit().await?;
                total += n;
            }
            Err(e) => {
                crate::writer::rollback(txn).await;
                return Err(e);
            }
        }
    }
    Ok(total)
}

/// The background indexer of a SQLite logger: indexes new rows about once a second, and a
/// backlog batch after batch with a pause of twice each batch's time between them, so that
/// writers get at least two thirds of the write lock while it catches up. Ends with the
/// logger.
pub(crate) async fn keep_up(shared: Weak<WriterShared>) {
    const IDLE: Duration = Duration::from_secs(1);
    let mut pause = IDLE;
    loop {
        tokio::time::sleep(pause).await;
        let Some(shared) = shared.upgrade() else { return };
        let started = Instant::now();
        pause = match sqlite_step(&shared.db, BATCH_ROWS).await {
            Ok(n) if n >= BATCH_ROWS => (started.elapsed() * 2).max(Duration::from_millis(20)),
            Ok(_) => IDLE,
            Err(e) => {
                // Not migrated yet, or the database is away: try again later.
                tracing::debug!(error = %e, "joblog: search index not updated");
                IDLE * 5
            }
        };
    }
}

/// First key of the session advisory lock that one builder of the PostgreSQL search indexes
/// holds; the second is `hashtext(current_schema())`, so schemas build independently
/// (advisory locks are already per database).
#[cfg(feature = "postgres")]
const PG_BUILD_LOCK: i32 = 741_115_026;

/// Creates `pg_trgm` and the GIN indexes (concurrently); whether the search can use them.
///
/// Two `CREATE INDEX CONCURRENTLY` on one table deadlock (each waits for the other's
/// transaction to end), so one process builds at a time: the builder holds a session
/// advisory lock on its own connection, and a process that does not get it at once goes on
/// with the search's bounded scan until the indexes are valid. It never *waits* for the
/// lock: a waiting statement holds a snapshot, which the builder's `CONCURRENTLY` would in
/// turn wait for.
#[cfg(feature = "postgres")]
async fn ensure_postgres(db: &DatabaseConnection) -> Result<bool> {
    if let Err(e) = db
        .execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        .await
    {
        // Two processes creating it at once: one fails on the catalog's unique key.
        if !postgres_has_trgm(db).await? {
            tracing::warn!(
                error = %e,
                "joblog: cannot create the pg_trgm extension; the run-list search stays a bounded scan \
                 (as a superuser: CREATE EXTENSION pg_trgm)"
            );
            return Ok(false);
        }
    }
    if postgres_indexes_valid(db).await? {
        return Ok(true);
    }
    let mut conn = db
        .get_postgres_connection_pool()
        .acquire()
        .await
        .map_err(sqlx_err)?;
    let got: bool =
        sea_orm::sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))")
            .bind(PG_BUILD_LOCK)
            .fetch_one(&mut *conn)
            .await
            .map_err(sqlx_err)?;
    if !got {
        tracing::debug!("joblog: another process is building the search indexes");
        return Ok(false);
    }
    let built = build_postgres_indexes(&mut conn).await;
    let unlocked = sea_orm::sqlx::query("SELECT pg_advisory_unlock($1, hashtext(current_schema()))")
        .bind(PG_BUILD_LOCK)
        .execute(&mut *conn)
        .await;
    if unlocked.is_err() {
        // A connection still holding the lock must not go back to the pool.
        drop(conn.detach());
    } else {
        // Back to the pool before the check below (a host may give joblog one connection).
        drop(conn);
    }
    built?;
    postgres_indexes_valid(db).await
}

#[cfg(not(feature = "postgres"))]
async fn ensure_postgres(_db: &DatabaseConnection) -> Result<bool> {
    Ok(false)
}

/// Builds each missing GIN index, dropping first one a killed build left invalid (no other
/// joblog process builds meanwhile: the caller holds [`PG_BUILD_LOCK`]).
#[cfg(feature = "postgres")]
async fn build_postgres_indexes(conn: &mut sea_orm::sqlx::PgConnection) -> Result<()> {
    use sea_orm::sqlx::AssertSqlSafe;
    for (index, table, column) in POSTGRES_INDEXES {
        let valid: Option<bool> = sea_orm::sqlx::query_scalar(
            "SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid \
             WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = $1",
        )
        .bind(index)
        .fetch_optional(&mut *conn)
        .await
        .map_err(sqlx_err)?;
        match valid {
            Some(true) => continue,
            Some(false) => {
                tracing::info!(
                    index,
                    "joblog: dropping an invalid search index left by an interrupted build"
                );
                sea_orm::sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {index}"
                )))
                .execute(&mut *conn)
                .await
                .map_err(sqlx_err)?;
            }
            None => {}
        }
        let started = Instant::now();
        // The names are this module's constants, not input.
        sea_orm::sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} ON {table} USING gin ({column} gin_trgm_ops)"
        )))
        .execute(&mut *conn)
        .await
        .map_err(sqlx_err)?;
        tracing::debug!(index, elapsed = ?started.elapsed(), "joblog: search index built");
    }
    Ok(())
}

#[cfg(feature = "postgres")]
fn sqlx_err(e: sea_orm::sqlx::Error) -> crate::Error {
    sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(e))).into()
}

#[cfg(feature = "postgres")]
async fn postgres_has_trgm(db: &DatabaseConnection) -> Result<bool> {
    let q = Sql::new(
        DbBackend::Postgres,
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm')",
    );
    Ok(match q.one(db).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => false,
    })
}

/// Whether both GIN indexes exist (in the current schema) and are valid.
async fn postgres_indexes_valid(db: &DatabaseConnection) -> Result<bool> {
    let mut q = Sql::new(
        DbBackend::Postgres,
        "SELECT COUNT(*) FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid \
         WHERE c.relnamespace = current_schema()::regnamespace AND i.indisvalid AND c.relname IN ",
    );
    q.push("(")
        .bind(POSTGRES_INDEXES[0].0)
        .push(", ")
        .bind(POSTGRES_INDEXES[1].0)
        .push(")");
    Ok(match q.one(db).await? {
        Some(row) => row.try_get_by_index::<i64>(0)? == POSTGRES_INDEXES.len() as i64,
        None => false,
    })
}
