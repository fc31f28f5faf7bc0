//! The `job_schedules` table: registration, the lease, skips, and what a page shows.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbBackend, QueryResult};

use super::Schedule;
use crate::sql::{Sql, db_now, truncate_micros};
use crate::{Result, RunStatus};

/// `db_now(backend)` plus `d`, as an SQL expression.
pub(crate) fn db_now_plus(backend: DbBackend, d: Duration) -> String {
    let micros = i64::try_from(d.as_micros())
        .unwrap_or(i64::MAX / 2)
        .min(100 * 365 * 86_400 * 1_000_000);
    match backend {
        DbBackend::Postgres => format!("(CURRENT_TIMESTAMP + INTERVAL '{micros} microseconds')"),
        DbBackend::MySql => format!("(UTC_TIMESTAMP(6) + INTERVAL {micros} MICROSECOND)"),
        _ => format!(
            "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '+{}.{:06} seconds')",
            micros / 1_000_000,
            micros % 1_000_000
        ),
    }
}

/// A timestamp column (or `db_now` expression) of a row.
pub(crate) fn ts(row: &QueryResult, idx: usize) -> Result<Option<DateTime<Utc>>> {
    if let Ok(v) = row.try_get_by_index::<Option<DateTime<Utc>>>(idx) {
        return Ok(v);
    }
    if let Ok(v) = row.try_get_by_index::<Option<chrono::NaiveDateTime>>(idx) {
        return Ok(v.map(|n| n.and_utc()));
    }
    let text: Option<String> = row.try_get_by_index(idx)?;
    Ok(text.and_then(|t| {
        DateTime::parse_from_rfc3339(&t)
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f").map(|n| n.and_utc())
            })
            .ok()
    }))
}

pub(crate) fn required_ts(row: &QueryResult, idx: usize) -> Result<DateTime<Utc>> {
    ts(row, idx)?.ok_or_else(|| crate::Error::Db(sea_orm::DbErr::Custom(format!("column {idx} is NULL"))))
}

/// The database's clock.
pub(crate) async fn db_time(db: &DatabaseConnection) -> Result<DateTime<Utc>> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(backend, "SELECT ");
    q.push(db_now(backend));
    let row = q
        .one(db)
        .await?
        .ok_or_else(|| crate::Error::Db(sea_orm::DbErr::Custom("no clock row".into())))?;
    required_ts(&row, 0)
}

/// Creates the job's row, or updates its schedule text (keeping `paused` and, unless the
/// schedule changed, `next_run_at`).
pub(crate) async fn register(
    db: &DatabaseConnection,
    job: &str,
    schedule: &Schedule,
    run_at_start: bool,
) -> Result<()> {
    let backend = db.get_database_backend();
    let now = truncate_micros(db_time(db).await?);
    let first = if run_at_start {
        now
    } else {
        schedule.next_after(now).unwrap_or(now)
    };
    let text = schedule.to_string();
    let mut q = Sql::new(
        backend,
        if backend == DbBackend::MySql {
            "INSERT IGNORE INTO job_schedules (job, schedule, paused, next_run_at, skipped_count, updated_at) VALUES ("
        } else {
            "INSERT INTO job_schedules (job, schedule, paused, next_run_at, skipped_count, updated_at) VALUES ("
        },
    );
    q.bind(job)
        .push(", ")
        .bind(text.as_str())
        .push(", ")
        .bind(false)
        .push(", ")
        .bind(first)
        .push(", 0, ")
        .bind(now)
        .push(")");
    if backend != DbBackend::MySql {
        q.push(" ON CONFLICT (job) DO NOTHING");
    }
    if q.execute(db).await? == 1 {
        return Ok(());
    }
    // The row exists: a changed schedule takes effect from now on — except that an
    // occurrence already due (the process was down) still runs once, at once.
    let mut q = Sql::new(backend, "UPDATE job_schedules SET schedule = ");
    q.bind(text.as_str())
        .push(", next_run_at = CASE WHEN next_run_at <= ")
        .bind(now)
        .push(" THEN ")
        .bind(now)
        .push(" ELSE ")
        .bind(schedule.next_after(now).unwrap_or(now))
        .push(" END, updated_at = ")
        .bind(now)
        .push(" WHERE job = ")
        .bind(job)
        .push(" AND schedule <> ")
        .bind(text.as_str());
    q.execute(db).await?;
    Ok(())
}

/// What one poll reads of a job's row, with the database's clock of the same statement.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) paused: bool,
    pub(crate) next_run_at: DateTime<Utc>,
    pub(crate) lease_free: bool,
    pub(crate) run_now: bool,
    pub(crate) skipped_count: i64,
    pub(crate) now: DateTime<Utc>,
}

pub(crate) async fn load_state(db: &DatabaseConnection, job: &str) -> Result<Option<State>> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(
        backend,
        "SELECT paused, next_run_at, lease_owner, lease_expires_at, run_now_requested_at, skipped_count, ",
    );
    q.push(db_now(backend))
        .push(" FROM job_schedules WHERE job = ")
        .bind(job);
    let Some(row) = q.one(db).await? else {
        return Ok(None);
    };
    let now = required_ts(&row, 6)?;
    let owner: Option<String> = row.try_get_by_index(2)?;
    let expires = ts(&row, 3)?;
    Ok(Some(State {
        paused: row.try_get_by_index(0)?,
        next_run_at: required_ts(&row, 1)?,
        lease_free: owner.is_none() || expires.is_none_or(|e| e < now),
        run_now: ts(&row, 4)?.is_some(),
        skipped_count: row.try_get_by_index(5)?,
        now,
    }))
}

/// The one conditional UPDATE that takes the lease; the database decides the race.
/// `next` replaces a due `next_run_at` (a "run now" of a job not yet due keeps it).
pub(crate) async fn try_acquire(
    db: &DatabaseConnection,
    job: &str,
    owner: &str,
    lease: Duration,
    next: DateTime<Utc>,
) -> Result<bool> {
    let backend = db.get_database_backend();
    let now = db_now(backend);
    let mut q = Sql::new(backend, "UPDATE job_schedules SET lease_owner = ");
    q.bind(owner)
        .push(", lease_expires_at = ")
        .push(&db_now_plus(backend, lease))
        .push(", run_now_requested_at = NULL, next_run_at = CASE WHEN next_run_at <= ")
        .push(now)
        .push(" THEN ")
        .bind(truncate_micros(next))
        .push(" ELSE next_run_at END, updated_at = ")
        .push(now)
        .push(" WHERE job = ")
        .bind(job)
        .push(" AND (lease_owner IS NULL OR lease_expires_at < ")
        .push(now)
        .push(") AND ((NOT paused AND next_run_at <= ")
        .push(now)
        .push(") OR run_now_requested_at IS NOT NULL)");
    Ok(q.execute(db).await? == 1)
}

/// Extends the lease; `false` if this owner no longer holds it.
pub(crate) async fn renew(db: &DatabaseConnection, job: &str, owner: &str, lease: Duration) -> Result<bool> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(backend, "UPDATE job_schedules SET lease_expires_at = ");
    q.push(&db_now_plus(backend, lease))
        .push(", updated_at = ")
        .push(db_now(backend))
        .push(" WHERE job = ")
        .bind(job)
        .push(" AND lease_owner = ")
        .bind(owner);
    Ok(q.execute(db).await? == 1)
}

/// Counts one skipped occurrence of a job that is due while a live holder still runs it,
/// and moves `next_run_at` on. A compare-and-set on `skipped_count`: of several
/// instances that see the same due time, one counts it.
pub(crate) async fn record_skip(
    db: &DatabaseConnection,
    job: &str,
    seen_count: i64,
    next: DateTime<Utc>,
) -> Result<bool> {
    let backend = db.get_database_backend();
    let now = db_now(backend);
    let mut q = Sql::new(
        backend,
        "UPDATE job_schedules SET skipped_count = skipped_count + 1, last_skipped_at = ",
    );
    q.push(now)
        .push(", next_run_at = ")
        .bind(truncate_micros(next))
        .push(", updated_at = ")
        .push(now)
        .push(" WHERE job = ")
        .bind(job)
        .push(" AND skipped_count = ")
        .bind(seen_count)
        .push(" AND NOT paused AND next_run_at <= ")
        .push(now)
        .push(" AND lease_owner IS NOT NULL AND lease_expires_at >= ")
        .push(now);
    Ok(q.execute(db).await? == 1)
}

/// Gives the lease back and records the run's outcome.
pub(crate) async fn release(
    db: &DatabaseConnection,
    job: &str,
    owner: &str,
    run_id: Option<i64>,
    started_at: DateTime<Utc>,
    status: RunStatus,
) -> Result<bool> {
    let backend = db.get_database_backend();
    let now = db_now(backend);
    let mut q = Sql::new(
        backend,
        "UPDATE job_schedules SET lease_owner = NULL, lease_expires_at = NULL, last_run_id = ",
    );
    q.bind(run_id)
        .push(", last_run_at = ")
        .bind(truncate_micros(started_at))
        .push(", last_status = ")
        .bind(status.code());
    if status == RunStatus::Success {
        q.push(", last_success_at = ").push(now);
    }
    q.push(", updated_at = ")
        .push(now)
        .push(" WHERE job = ")
        .bind(job)
        .push(" AND lease_owner = ")
        .bind(owner);
    Ok(q.execute(db).await? == 1)
}

/// Sets `run_now_requested_at` (see [`ScheduledJobs::run_now`](super::ScheduledJobs::run_now)).
pub(crate) async fn request_run_now(db: &DatabaseConnection, job: &str) -> Result<bool> {
    set_flag(db, job, "run_now_requested_at = ", None).await
}

/// Sets `paused` (see [`ScheduledJobs::pause`](super::ScheduledJobs::pause)).
pub(crate) async fn pause_job(db: &DatabaseConnection, job: &str) -> Result<bool> {
    set_flag(db, job, "paused = ", Some(true)).await
}

/// Clears `paused`, collapsing missed occurrences into one (see
/// [`ScheduledJobs::resume`](super::ScheduledJobs::resume)).
pub(crate) async fn resume_job(db: &DatabaseConnection, job: &str) -> Result<bool> {
    set_flag(db, job, "paused = ", Some(false)).await
}

async fn set_flag(db: &DatabaseConnection, job: &str, set: &str, paused: Option<bool>) -> Result<bool> {
    let backend = db.get_database_backend();
    let now = db_now(backend);
    let mut q = Sql::new(backend, "UPDATE job_schedules SET ");
    q.push(set);
    match paused {
        Some(p) => {
            q.bind(p);
        }
        None => {
            q.push(now);
        }
    }
    if paused == Some(false) {
        // One catch-up at most: a due time long past becomes "due now".
        q.push(", next_run_at = CASE WHEN next_run_at < ")
            .push(now)
            .push(" THEN ")
            .push(now)
            .push(" ELSE next_run_at END");
    }
    // `updated_at` always changes, so MySQL's "rows changed" count is 1 for an existing row.
    q.push(", updated_at = ")
        .push(&db_now_plus(backend, Duration::from_micros(1)))
        .push(" WHERE job = ")
        .bind(job);
    Ok(q.execute(db).await? == 1)
}

/// One row of `job_schedules` with what a monitoring page needs computed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ScheduleRecord {
    /// The job's name.
    pub job: String,
    /// The stored schedule (`every 300000ms`, `cron */5 * * * * Europe/Berlin`).
    pub schedule: String,
    /// The schedule in words, if the stored text could be parsed.
    pub description: Option<String>,
    /// Paused: no new runs start.
    pub paused: bool,
    /// When the job is next due.
    pub next_run_at: DateTime<Utc>,
    /// The `job_logs.id` of the last finished run.
    pub last_run_id: Option<i64>,
    /// When the last finished run started.
    pub last_run_at: Option<DateTime<Utc>>,
    /// How the last finished run ended.
    pub last_status: Option<RunStatus>,
    /// When a run last ended in success.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Who holds the lease (`host:pid:random`), while a run goes on.
    pub lease_owner: Option<String>,
    /// When the lease runs out unless renewed.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// A live holder is running the job now.
    pub running: bool,
    /// A "run now" waiting to be picked up.
    pub run_now_requested_at: Option<DateTime<Utc>>,
    /// Occurrences skipped because the previous run was still going on.
    pub skipped_count: i64,
    /// When an occurrence was last skipped.
    pub last_skipped_at: Option<DateTime<Utc>>,
    /// Last change of the row.
    pub updated_at: DateTime<Utc>,
    /// The gap between two due times (for cron: between the next two occurrences).
    pub interval: Option<Duration>,
    /// Occurrences due since the last success (0 when all is well; capped at 10,000).
    pub missed: u64,
    /// The last success is older than the configured number of intervals (or there has
    /// been a run but never a success).
    pub overdue: bool,
    /// The last failure to deliver one of the job's alerts to its webhook, while it lasts
    /// (cleared by the next delivery that works).
    pub alert_error: Option<String>,
    /// When that failure happened.
    pub alert_error_at: Option<DateTime<Utc>>,
}

/// Every scheduled job, ordered by name (see [`ScheduledJobs::schedules_with`](super::ScheduledJobs::schedules_with)).
pub(crate) async fn schedules_with(
    db: &DatabaseConnection,
    overdue_after_intervals: u32,
) -> Result<Vec<ScheduleRecord>> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(
        backend,
        "SELECT s.job, s.schedule, s.paused, s.next_run_at, s.last_run_id, s.last_run_at, s.last_status, \
         s.last_success_at, s.lease_owner, s.lease_expires_at, s.run_now_requested_at, s.skipped_count, \
         s.last_skipped_at, s.updated_at, a.error, a.error_at, ",
    );
    q.push(db_now(backend))
        .push(" FROM job_schedules s LEFT JOIN job_alert_states a ON a.job = s.job ORDER BY s.job");
    let mut out = Vec::new();
    for row in q.all(db).await? {
        let now = required_ts(&row, 16)?;
        let text: String = row.try_get_by_index(1)?;
        let parsed = Schedule::parse(&text).ok();
        let last_run_at = ts(&row, 5)?;
        let last_success_at = ts(&row, 7)?;
        let lease_owner: Option<String> = row.try_get_by_index(8)?;
        let lease_expires_at = ts(&row, 9)?;
        let interval = parsed.as_ref().map(|s| s.interval_at(now));
        let missed = match (&parsed, last_success_at) {
            (Some(s), Some(since)) => s.count_between(since, now, 10_000),
            _ => 0,
        };
        let overdue = match (interval, last_success_at) {
            (Some(iv), Some(since)) => (now - since)
                .to_std()
                .is_ok_and(|age| age > iv.saturating_mul(overdue_after_intervals.max(1))),
            (_, None) => last_run_at.is_some(),
            (None, Some(_)) => false,
        };
        out.push(ScheduleRecord {
            job: row.try_get_by_index(0)?,
            description: parsed.as_ref().map(Schedule::describe),
            schedule: text,
            paused: row.try_get_by_index(2)?,
            next_run_at: required_ts(&row, 3)?,
            last_run_id: row.try_get_by_index(4)?,
            last_run_at,
            last_status: row
                .try_get_by_index::<Option<i16>>(6)?
                .and_then(RunStatus::from_code),
            last_success_at,
            running: lease_owner.is_some() && lease_expires_at.is_some_and(|e| e >= now),
            lease_owner,
            lease_expires_at,
            run_now_requested_at: ts(&row, 10)?,
            skipped_count: row.try_get_by_index(11)?,
            last_skipped_at: ts(&row, 12)?,
            updated_at: required_ts(&row, 13)?,
            interval,
            missed,
            overdue,
            alert_error: row.try_get_by_index(14)?,
            alert_error_at: ts(&row, 15)?,
        });
    }
    Ok(out)
}
