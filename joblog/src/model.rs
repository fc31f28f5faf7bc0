//! Rows as the query side returns them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::QueryResult;

use crate::{Level, Result, RunStatus};

/// The columns of `job_logs` that [`RunRecord`] is read from, in its order.
pub(crate) const RUN_COLUMNS: &str = "id, name, job, status, host, pid, error, created_at, \
     updated_at, started_at, finished_at, heartbeat_at";

/// One row of `job_logs`: one run of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// `job_logs.id`.
    pub id: i64,
    /// The unique timestamp name, `YYYYMMDD_HHMMSS[_n]`.
    pub name: String,
    /// The job's name, e.g. `SyncOpenOrdersJob`.
    pub job: String,
    /// Where the run is.
    pub status: RunStatus,
    /// The host that ran it.
    pub host: Option<String>,
    /// The process id that ran it.
    pub pid: Option<i64>,
    /// The error message of a failed run.
    pub error: Option<String>,
    /// When the run was created (`start()`).
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
    /// When it began processing (or, for a run finished straight from new, its creation).
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// The last sign of life from the process running it.
    pub heartbeat_at: Option<DateTime<Utc>>,
}

impl RunRecord {
    pub(crate) fn from_row(row: &QueryResult) -> Result<Self> {
        let code: i16 = row.try_get_by_index(3)?;
        Ok(Self {
            id: row.try_get_by_index(0)?,
            name: row.try_get_by_index(1)?,
            job: row.try_get_by_index(2)?,
            // An unknown code can only come from outside joblog; show it as an error.
            status: RunStatus::from_code(code).unwrap_or(RunStatus::Error),
            host: row.try_get_by_index(4)?,
            pid: row.try_get_by_index(5)?,
            error: row.try_get_by_index(6)?,
            created_at: row.try_get_by_index(7)?,
            updated_at: row.try_get_by_index(8)?,
            started_at: row.try_get_by_index(9)?,
            finished_at: row.try_get_by_index(10)?,
            heartbeat_at: row.try_get_by_index(11)?,
        })
    }

    /// How long the run took; for a run still going, how long it has been going until `now`.
    pub fn duration_at(&self, now: DateTime<Utc>) -> Option<Duration> {
        let start = self.started_at.unwrap_or(self.created_at);
        let end = self.finished_at.unwrap_or(now);
        (end - start).to_std().ok()
    }

    /// How long a finished run took (`None` while it is still going).
    pub fn duration(&self) -> Option<Duration> {
        self.finished_at.and(self.duration_at(Utc::now()))
    }
}

/// One row of `job_log_details`: one message of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailRecord {
    /// `job_log_details.id`; details are ordered by it.
    pub id: i64,
    /// The run it belongs to.
    pub job_log_id: i64,
    /// info, warn or error.
    pub level: Level,
    /// The message text.
    pub message: String,
    /// When the message was written by the job (not when it reached the database).
    pub created_at: DateTime<Utc>,
}

/// The columns of `job_log_details` that [`DetailRecord`] is read from, in its order.
pub(crate) const DETAIL_COLUMNS: &str = "id, job_log_id, level, message, created_at";

impl DetailRecord {
    pub(crate) fn from_row(row: &QueryResult) -> Result<Self> {
        let level: String = row.try_get_by_index(2)?;
        Ok(Self {
            id: row.try_get_by_index(0)?,
            job_log_id: row.try_get_by_index(1)?,
            level: level.parse().unwrap_or_default(),
            message: row.try_get_by_index(3)?,
            created_at: row.try_get_by_index(4)?,
        })
    }
}
