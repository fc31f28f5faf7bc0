//! The writer's statements.

use sea_orm::{ConnectionTrait, DatabaseTransaction};

use super::{DetailRow, FinishRow};
use crate::sql::{Sql, bind_limit, db_now};
use crate::{Error, Result, RunStatus};

/// Most message bytes in one INSERT statement (MySQL's `max_allowed_packet` is 16 MiB by
/// default on MariaDB and 64 MiB on MySQL; stay well below).
const MAX_STATEMENT_BYTES: usize = 4 << 20;

/// Multi-row inserts, each as large as the backend's bind limit and the byte budget allow.
pub(crate) async fn insert_details(db: &impl ConnectionTrait, details: &[&DetailRow]) -> Result<()> {
    const COLS: usize = 4;
    let backend = db.get_database_backend();
    let max_rows = bind_limit(backend) / COLS;
    let mut rest = details;
    while !rest.is_empty() {
        let mut rows = 0;
        let mut bytes = 0;
        while rows < rest.len()
            && rows < max_rows
            && (rows == 0 || bytes + rest[rows].message.len() <= MAX_STATEMENT_BYTES)
        {
            bytes += rest[rows].message.len();
            rows += 1;
        }
        let (chunk, tail) = rest.split_at(rows);
        rest = tail;
        let mut q = Sql::new(
            backend,
            "INSERT INTO job_log_details (job_log_id, level, message, created_at) VALUES ",
        );
        for (i, d) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            q.bind(d.run_id)
                .push(", ")
                .bind(d.level.as_str())
                .push(", ")
                .bind(d.message.as_str())
                .push(", ")
                .bind(d.at)
                .push(")");
        }
        q.execute(db).await?;
    }
    Ok(())
}

/// What ending a run did.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Finished {
    Applied,
    /// It had already ended (e.g. reaped as abandoned): nothing changed.
    AlreadyEnded(RunStatus),
    /// The run does not exist.
    Missing,
}

impl Finished {
    pub(crate) fn into_result(self, f: &FinishRow) -> Result<()> {
        match self {
            Finished::Applied => Ok(()),
            Finished::AlreadyEnded(from) => Err(Error::InvalidTransition {
                run_id: f.run_id,
                from,
                to: f.status,
            }),
            Finished::Missing => Err(Error::RunNotFound(f.run_id)),
        }
    }
}

/// Ends a run unless it has ended already.
pub(crate) async fn apply_finish(db: &impl ConnectionTrait, f: &FinishRow) -> Result<Finished> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(backend, "UPDATE job_logs SET status = ");
    q.bind(f.status.code())
        .push(", finished_at = ")
        .bind(f.at)
        .push(", updated_at = ")
        .bind(f.at)
        .push(", started_at = COALESCE(started_at, created_at), error = ")
        .bind(f.error.clone())
        .push(" WHERE id = ")
        .bind(f.run_id)
        .push(" AND status IN (0, 1)");
    if q.execute(db).await? == 1 {
        return Ok(Finished::Applied);
    }
    let mut q = Sql::new(backend, "SELECT status, finished_at FROM job_logs WHERE id = ");
    q.bind(f.run_id);
    let Some(row) = q.one(db).await? else {
        return Ok(Finished::Missing);
    };
    let status = RunStatus::from_code(row.try_get_by_index::<i16>(0)?).unwrap_or(RunStatus::Error);
    let finished_at: Option<chrono::DateTime<chrono::Utc>> = row.try_get_by_index(1)?;
    if status == f.status && finished_at == Some(f.at) {
        // Our own earlier attempt committed although its COMMIT reported a failure (the
        // connection dropped during it): this is the same finish, already applied.
        return Ok(Finished::Applied);
    }
    Ok(Finished::AlreadyEnded(status))
}

/// Rolls back at once rather than leaving it to `Drop`, which only queues the rollback
/// until the connection is next used: meanwhile an idle pooled SQLite connection would
/// keep the write lock and every other writer would wait out its busy timeout.
pub(crate) async fn rollback(txn: DatabaseTransaction) {
    if let Err(e) = txn.rollback().await {
        tracing::warn!(error = %e, "joblog: rollback failed");
    }
}

/// Sets `heartbeat_at` of open runs to the database's clock (so that hosts with skewed
/// clocks cannot reap each other's live runs).
pub(crate) async fn refresh_heartbeats(db: &impl ConnectionTrait, ids: &[i64]) -> Result<()> {
    let backend = db.get_database_backend();
    for chunk in ids.chunks(1000) {
        let mut q = Sql::new(backend, "UPDATE job_logs SET heartbeat_at = ");
        q.push(db_now(backend))
            .push(" WHERE status IN (0, 1) AND id IN ")
            .bind_list(chunk);
        q.execute(db).await?;
    }
    Ok(())
}
