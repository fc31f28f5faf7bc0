//! Keeping the tables honest and small: the reaper and retention.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::sql::{Sql, db_now_minus, now};
use sea_orm::{ConnectionTrait, DatabaseTransaction};

use crate::writer::{DetailRow, insert_details, rollback};
use crate::{JobLogger, Level, Result, RunStatus};

/// What [`JobLogger::prune`] removes. Only finished runs are ever pruned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Remove runs created longer ago than this.
    pub older_than: Option<Duration>,
    /// Per job, keep only the newest this many runs.
    pub keep_last: Option<u64>,
}

/// What [`JobLogger::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneStats {
    /// Runs deleted.
    pub runs: u64,
    /// Details deleted.
    pub details: u64,
    /// Alerts deleted: delivered (or given up) and older than `older_than`.
    pub alerts: u64,
}

/// Runs deleted per statement, and details per statement: small enough that no
/// statement holds a lock for long (SQLite has one writer for the whole file).
const RUN_BATCH: usize = 200;
const DETAIL_BATCH: usize = 5_000;

impl JobLogger {
    /// Marks runs whose process died as error: every new or processing run whose last
    /// heartbeat (or creation) is older than `stale_after`, except the runs this logger
    /// itself is keeping alive. Each gets an error detail saying it was abandoned.
    /// Call it at start-up and periodically, with `stale_after` several heartbeat
    /// intervals long. Returns the ids of the runs it ended.
    pub async fn reap_stale(&self, stale_after: Duration) -> Result<Vec<i64>> {
        let db = self.db();
        let backend = db.get_database_backend();
        let at = now();
        // Heartbeats are written with the database's clock; the cutoff uses it too.
        let cutoff = db_now_minus(backend, stale_after);
        let mut q = Sql::new(
            backend,
            "SELECT id, host, pid, COALESCE(heartbeat_at, created_at), job FROM job_logs WHERE status IN (0, 1) \
             AND COALESCE(heartbeat_at, created_at) < ",
        );
        q.push(&cutoff).push(" ORDER BY id LIMIT 10000");
        let rows = q.all(db).await?;
        let mut reaped = Vec::new();
        for row in rows {
            let id: i64 = row.try_get_by_index(0)?;
            if self.inner.shared.live().contains(&id) {
                continue;
            }
            let host: Option<String> = row.try_get_by_index(1)?;
            let pid: Option<i64> = row.try_get_by_index(2)?;
            let seen: DateTime<Utc> = row.try_get_by_index(3)?;
            let job: String = row.try_get_by_index(4)?;
            let message = format!(
                "abandoned: no heartbeat since {} from host {} (pid {}); the process running it is presumed dead",
                seen.format("%Y-%m-%d %H:%M:%S UTC"),
                host.as_deref().unwrap_or("unknown"),
                pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
            );
            let txn = sea_orm::TransactionTrait::begin(db).await?;
            let ended = match end_abandoned(&txn, id, &message, at, &cutoff).await {
                Ok(ended) => ended,
                Err(e) => {
                    rollback(txn).await;
                    return Err(e);
                }
            };
            txn.commit().await?;
            if ended {
                self.inner.metrics.run_finished(&job, RunStatus::Error, None);
                reaped.push(id);
            }
        }
        if !reaped.is_empty() {
            tracing::warn!(count = reaped.len(), ids = ?reaped, "joblog: reaped abandoned runs");
        }
        Ok(reaped)
    }

    /// Deletes finished runs older than `older_than` and/or beyond the newest `keep_last`
    /// of each job, with their details, in small batches.
    pub async fn prune(&self, options: &PruneOptions) -> Result<PruneStats> {
        let mut stats = PruneStats::default();
        // An age too large to subtract from now means "nothing is that old".
        let cutoff = options
            .older_than
            .and_then(|age| chrono::Duration::from_std(age).ok())
            .and_then(|age| now().checked_sub_signed(age));
        if let Some(cutoff) = cutoff {
            self.prune_where(
                |q| {
                    q.push(" AND created_at < ").bind(cutoff);
                },
                &mut stats,
            )
            .await?;
        }
        if let Some(age) = options.older_than {
            // Alerts that went out (or were given up), as old as the runs pruned. Their
            // times are the database's clock: compared with it.
            let db = self.db();
            let backend = db.get_database_backend();
            let mut q = Sql::new(
                backend,
                "DELETE FROM job_alerts WHERE (delivered_at IS NOT NULL OR given_up_at IS NOT NULL) AND created_at < ",
            );
            q.push(&db_now_minus(backend, age));
            stats.alerts = q.execute(db).await?;
        }
        if let Some(keep) = options.keep_last {
            for job in self.jobs().await? {
                let db = self.db();
                let mut q = Sql::new(db.get_database_backend(), "SELECT id FROM job_logs WHERE job = ");
                q.bind(job.as_str())
                    .push(&format!(" ORDER BY id DESC LIMIT 1 OFFSET {keep}"));
                let Some(row) = q.one(db).await? else { continue };
                let first_pruned: i64 = row.try_get_by_index(0)?;
                self.prune_where(
                    |q| {
                        q.push(" AND job = ")
                            .bind(job.as_str())
                            .push(" AND id <= ")
                            .bind(first_pruned);
                    },
                    &mut stats,
                )
                .await?;
            }
        }
        Ok(stats)
    }

    async fn prune_where(&self, condition: impl Fn(&mut Sql), stats: &mut PruneStats) -> Result<()> {
        let db = self.db();
        let backend = db.get_database_backend();
        loop {
            let mut q = Sql::new(backend, "SELECT id FROM job_logs WHERE status IN (2, 3)");
            condition(&mut q);
            q.push(&format!(" ORDER BY id LIMIT {RUN_BATCH}"));
            let ids: Vec<i64> = q
                .all(db)
                .await?
                .iter()
                .map(|r| r.try_get_by_index(0))
                .collect::<Result<_, _>>()?;
            if ids.is_empty() {
                return Ok(());
            }
            loop {
                let mut q = Sql::new(backend, "SELECT id FROM job_log_details WHERE job_log_id IN ");
                q.bind_list(&ids).push(&format!(" LIMIT {DETAIL_BATCH}"));
                let detail_ids: Vec<i64> = q
                    .all(db)
                    .await?
                    .iter()
                    .map(|r| r.try_get_by_index(0))
                    .collect::<Result<_, _>>()?;
                if detail_ids.is_empty() {
                    break;
                }
                let mut q = Sql::new(backend, "DELETE FROM job_log_details WHERE id IN ");
                q.bind_list(&detail_ids);
                stats.details += q.execute(db).await?;
            }
            let mut q = Sql::new(backend, "DELETE FROM job_logs WHERE status IN (2, 3) AND id IN ");
            q.bind_list(&ids);
            stats.runs += q.execute(db).await?;
        }
    }
}

/// Ends one abandoned run with its error detail; `false` if it was no longer stale.
async fn end_abandoned(
    txn: &DatabaseTransaction,
    id: i64,
    message: &str,
    at: DateTime<Utc>,
    cutoff: &str,
) -> Result<bool> {
    let mut q = Sql::new(txn.get_database_backend(), "UPDATE job_logs SET status = ");
    q.bind(RunStatus::Error.code())
        .push(", finished_at = ")
        .bind(at)
        .push(", updated_at = ")
        .bind(at)
        .push(", started_at = COALESCE(started_at, created_at), error = ")
        .bind(message)
        .push(" WHERE id = ")
        .bind(id)
        .push(" AND status IN (0, 1) AND COALESCE(heartbeat_at, created_at) < ")
        .push(cutoff);
    if q.execute(txn).await? != 1 {
        return Ok(false);
    }
    let detail = DetailRow {
        run_id: id,
        level: Level::Error,
        message: message.to_owned(),
        at,
    };
    insert_details(txn, &[&detail]).await?;
    Ok(true)
}
