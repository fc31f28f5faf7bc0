//! The read side used by dashboards: run pages, one run, its details, per-job summaries.

use std::collections::HashMap;
use std::time::Duration;

use sea_orm::DbBackend;

use crate::model::{DETAIL_COLUMNS, RUN_COLUMNS};
use crate::sql::{Sql, like_ci, like_contains};
use crate::{DetailRecord, JobLogger, Result, RunRecord, RunStatus};

/// Which runs to list. All filters are optional and combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs of this job (exact name).
    pub job: Option<String>,
    /// Only runs whose name or any detail contains this text, ignoring case (on SQLite,
    /// ASCII case only; on MySQL, as the column's collation says). It reads the details
    /// of the runs it passes over, so it is not as cheap as the other filters.
    pub text: Option<String>,
}

impl RunFilter {
    /// On MySQL/MariaDB, names the index that serves this filter's keyset page: left to
    /// itself MariaDB range-scans the filtered runs newer than the cursor on deep pages
    /// (a second instead of a millisecond, measured in docs/BENCHMARKS.md).
    fn push_index_hint(&self, q: &mut Sql, backend: DbBackend) {
        if backend != DbBackend::MySql {
            return;
        }
        q.push(match (self.status.is_some(), self.job.is_some()) {
            (true, true) => " FORCE INDEX (idx_job_logs_job_status)",
            (false, true) => " FORCE INDEX (idx_job_logs_job)",
            (true, false) => " FORCE INDEX (idx_job_logs_status)",
            (false, false) => " FORCE INDEX (PRIMARY)",
        });
    }

    fn push_where(&self, q: &mut Sql, backend: DbBackend) {
        q.push(" WHERE 1 = 1");
        if let Some(status) = self.status {
            q.push(" AND status = ").bind(status.code());
        }
        if let Some(job) = &self.job {
            q.push(" AND job = ").bind(job.as_str());
        }
        if let Some(text) = self.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            let pattern = like_contains(text);
            q.push(" AND (name").push(like_ci(backend)).bind(pattern.clone());
            q.push(" ESCAPE '!' OR EXISTS (SELECT 1 FROM job_log_details d WHERE d.job_log_id = job_logs.id AND d.message");
            q.push(like_ci(backend)).bind(pattern).push(" ESCAPE '!'))");
        }
    }
}

/// Where a page starts, in keyset terms (run ids; newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cursor {
    /// The newest runs.
    #[default]
    First,
    /// Runs older than (id below) this id: the next page.
    Before(i64),
    /// Runs newer than (id above) this id: the previous page.
    After(i64),
}

/// One page of runs, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPage {
    /// The runs, newest first, each with its last detail.
    pub runs: Vec<RunListItem>,
    /// Cursor of the page of newer runs, if there are any.
    pub newer: Option<Cursor>,
    /// Cursor of the page of older runs, if there are any.
    pub older: Option<Cursor>,
}

/// A run as the list shows it: the row and its last message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunListItem {
    /// The run.
    pub run: RunRecord,
    /// Its last detail (for a failed run, usually the error).
    pub last_detail: Option<DetailRecord>,
}

/// A count that stops at a cap, so that counting a million rows stays cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CappedCount {
    /// The number of rows, at most the cap.
    pub count: u64,
    /// Whether there are more than `count`.
    pub capped: bool,
}

/// Counts of a job's runs by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Runs not started.
    pub new: u64,
    /// Runs in progress.
    pub processing: u64,
    /// Runs that succeeded.
    pub success: u64,
    /// Runs that failed.
    pub error: u64,
}

impl StatusCounts {
    /// All runs.
    pub fn total(&self) -> u64 {
        self.new + self.processing + self.success + self.error
    }

    fn add(&mut self, status: RunStatus, n: u64) {
        match status {
            RunStatus::New => self.new += n,
            RunStatus::Processing => self.processing += n,
            RunStatus::Success => self.success += n,
            RunStatus::Error => self.error += n,
        }
    }
}

/// What a dashboard shows about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    /// The job's name.
    pub job: String,
    /// Its newest run.
    pub last_run: Option<RunRecord>,
    /// Its newest successful run.
    pub last_success: Option<RunRecord>,
    /// Its runs by status.
    pub counts: StatusCounts,
    /// Median duration of its recent successful runs.
    pub p50: Option<Duration>,
    /// 95th percentile duration of its recent successful runs.
    pub p95: Option<Duration>,
}

/// Successful runs per job that the duration percentiles are taken over.
const PERCENTILE_WINDOW: u64 = 200;
/// Page sizes are clamped to this.
pub const MAX_PAGE_SIZE: u64 = 500;

impl JobLogger {
    /// One page of runs, newest first, with keyset pagination: every page costs an index
    /// range scan of `limit` rows, however deep it is. `limit` is clamped to 1..=500.
    pub async fn list_runs(&self, filter: &RunFilter, cursor: Cursor, limit: u64) -> Result<RunPage> {
        let db = self.db();
        let backend = db.get_database_backend();
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let select = |q: &mut Sql| {
            q.push(&format!("SELECT {RUN_COLUMNS} FROM job_logs"));
            filter.push_index_hint(q, backend);
            filter.push_where(q, backend);
        };
        let mut q = Sql::new(backend, "");
        match cursor {
            Cursor::First => {
                select(&mut q);
                q.push(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
            }
            Cursor::Before(before) => {
                // The page, plus the first run at or above the cursor in the same round
                // trip: it tells whether a newer page exists, so a deep page costs the
                // same two queries as the first one.
                q.push("SELECT * FROM (");
                select(&mut q);
                q.push(" AND id < ").bind(before);
                q.push(&format!(
                    " ORDER BY id DESC LIMIT {}) page UNION ALL SELECT * FROM (",
                    limit + 1
                ));
                select(&mut q);
                q.push(" AND id >= ")
                    .bind(before)
                    .push(" ORDER BY id ASC LIMIT 1) newer");
            }
            Cursor::After(after) => {
                select(&mut q);
                q.push(" AND id > ").bind(after);
                q.push(&format!(" ORDER BY id ASC LIMIT {}", limit + 1));
            }
        }
        let mut runs = q
            .all(db)
            .await?
            .iter()
            .map(RunRecord::from_row)
            .collect::<Result<Vec<_>>>()?;
        let mut newer = None;
        if let Cursor::Before(before) = cursor {
            // A UNION promises no order: put the page back in its own.
            runs.sort_unstable_by_key(|r| std::cmp::Reverse(r.id));
            if let Some(pos) = runs.iter().position(|r| r.id >= before) {
                runs.remove(pos);
                // Back to the runs above this page (an empty page: above the cursor).
                newer = Some(Cursor::After(
                    runs.first().map_or(before.saturating_sub(1), |r| r.id),
                ));
            }
        }
        let more = runs.len() as u64 > limit;
        runs.truncate(limit as usize);
        let older = match cursor {
            Cursor::After(after) => {
                runs.reverse();
                if more {
                    newer = runs.first().map(|r| Cursor::After(r.id));
                }
                Some(
                    runs.last()
                        .map_or(Cursor::Before(after.saturating_add(1)), |r| Cursor::Before(r.id)),
                )
            }
            _ => more.then(|| runs.last().map(|r| Cursor::Before(r.id))).flatten(),
        };
        let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
        let mut last = self.last_details(&ids).await?;
        let runs = runs
            .into_iter()
            .map(|run| RunListItem {
                last_detail: last.remove(&run.id),
                run,
            })
            .collect();
        Ok(RunPage { runs, newer, older })
    }

    /// The last detail of each of `run_ids`.
    async fn last_details(&self, run_ids: &[i64]) -> Result<HashMap<i64, DetailRecord>> {
        if run_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let db = self.db();
        let mut q = Sql::new(
            db.get_database_backend(),
            // A correlated MAX per run: one index probe each on (job_log_id, id). (A GROUP BY
            // over the runs' details reads all of them on PostgreSQL and SQLite.)
            &format!(
                "SELECT {DETAIL_COLUMNS} FROM job_log_details WHERE id IN \
                 (SELECT (SELECT MAX(x.id) FROM job_log_details x WHERE x.job_log_id = r.id) \
                 FROM job_logs r WHERE r.id IN "
            ),
        );
        q.bind_list(run_ids).push(")");
        q.all(db)
            .await?
            .iter()
            .map(|row| DetailRecord::from_row(row).map(|d| (d.job_log_id, d)))
            .collect()
    }

    /// How many runs match `filter`, counting at most `cap` of them.
    pub async fn count_runs(&self, filter: &RunFilter, cap: u64) -> Result<CappedCount> {
        let db = self.db();
        let backend = db.get_database_backend();
        let mut q = Sql::new(backend, "SELECT COUNT(*) FROM (SELECT id FROM job_logs");
        filter.push_where(&mut q, backend);
        q.push(&format!(" LIMIT {}) capped", cap.saturating_add(1)));
        let n: i64 = match q.one(db).await? {
            Some(row) => row.try_get_by_index(0)?,
            None => 0,
        };
        let n = n.max(0) as u64;
        Ok(CappedCount {
            count: n.min(cap),
            capped: n > cap,
        })
    }

    /// One run by id.
    pub async fn get_run(&self, id: i64) -> Result<Option<RunRecord>> {
        let db = self.db();
        let mut q = Sql::new(
            db.get_database_backend(),
            &format!("SELECT {RUN_COLUMNS} FROM job_logs WHERE id = "),
        );
        q.bind(id);
        q.one(db).await?.as_ref().map(RunRecord::from_row).transpose()
    }

    /// A run's details in the order they were written, after detail id `after` (the live
    /// tail: pass the last id seen), at most `limit` (clamped to 1..=10,000).
    pub async fn details(&self, run_id: i64, after: Option<i64>, limit: u64) -> Result<Vec<DetailRecord>> {
        let db = self.db();
        let mut q = Sql::new(
            db.get_database_backend(),
            &format!("SELECT {DETAIL_COLUMNS} FROM job_log_details WHERE job_log_id = "),
        );
        q.bind(run_id);
        if let Some(after) = after {
            q.push(" AND id > ").bind(after);
        }
        q.push(&format!(" ORDER BY id ASC LIMIT {}", limit.clamp(1, 10_000)));
        q.all(db).await?.iter().map(DetailRecord::from_row).collect()
    }

    /// The last `limit` (clamped to 1..=10,000) details of a run written before detail id
    /// `before`, in write order: the page before a page that starts at `before`.
    pub async fn details_before(&self, run_id: i64, before: i64, limit: u64) -> Result<Vec<DetailRecord>> {
        let db = self.db();
        let mut q = Sql::new(
            db.get_database_backend(),
            &format!("SELECT {DETAIL_COLUMNS} FROM job_log_details WHERE job_log_id = "),
        );
        q.bind(run_id).push(" AND id < ").bind(before);
        q.push(&format!(" ORDER BY id DESC LIMIT {}", limit.clamp(1, 10_000)));
        let mut details = q
            .all(db)
            .await?
            .iter()
            .map(DetailRecord::from_row)
            .collect::<Result<Vec<_>>>()?;
        details.reverse();
        Ok(details)
    }

    /// How many details a run has.
    pub async fn detail_count(&self, run_id: i64) -> Result<u64> {
        let db = self.db();
        let mut q = Sql::new(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM job_log_details WHERE job_log_id = ",
        );
        q.bind(run_id);
        let n: i64 = match q.one(db).await? {
            Some(row) => row.try_get_by_index(0)?,
            None => 0,
        };
        Ok(n.max(0) as u64)
    }

    /// The names of all jobs that have runs, sorted.
    pub async fn jobs(&self) -> Result<Vec<String>> {
        let db = self.db();
        // A skip scan of the (job, id) index: one probe per distinct job. (PostgreSQL
        // answers DISTINCT with a full scan: 100+ ms at a million runs.)
        let q = Sql::new(
            db.get_database_backend(),
            "WITH RECURSIVE jobs (job) AS (SELECT MIN(job) FROM job_logs \
             UNION ALL SELECT (SELECT MIN(l.job) FROM job_logs l WHERE l.job > jobs.job) FROM jobs \
             WHERE jobs.job IS NOT NULL) SELECT job FROM jobs WHERE job IS NOT NULL ORDER BY job",
        );
        q.all(db)
            .await?
            .iter()
            .map(|r| Ok(r.try_get_by_index(0)?))
            .collect()
    }

    /// Per job: last run, last success, counts by status, p50 / p95 duration of its
    /// recent successful runs.
    pub async fn job_summaries(&self) -> Result<Vec<JobSummary>> {
        let db = self.db();
        let backend = db.get_database_backend();
        let mut counts: Vec<(String, StatusCounts)> = Vec::new();
        let q = Sql::new(
            backend,
            "SELECT job, status, COUNT(*) FROM job_logs GROUP BY job, status ORDER BY job",
        );
        for row in q.all(db).await? {
            let job: String = row.try_get_by_index(0)?;
            let status = RunStatus::from_code(row.try_get_by_index::<i16>(1)?).unwrap_or(RunStatus::Error);
            let n: i64 = row.try_get_by_index(2)?;
            if counts.last().is_none_or(|(j, _)| *j != job) {
                counts.push((job, StatusCounts::default()));
            }
            if let Some((_, c)) = counts.last_mut() {
                c.add(status, n.max(0) as u64);
            }
        }
        let mut out = Vec::with_capacity(counts.len());
        for (job, counts) in counts {
            let last_run = self.newest_of(&job, None).await?;
            let last_success = self.newest_of(&job, Some(RunStatus::Success)).await?;
            let mut q = Sql::new(
                backend,
                "SELECT started_at, finished_at FROM job_logs WHERE job = ",
            );
            q.bind(job.as_str())
                .push(" AND status = ")
                .bind(RunStatus::Success.code())
                .push(&format!(" ORDER BY id DESC LIMIT {PERCENTILE_WINDOW}"));
            let mut durations = Vec::new();
            for row in q.all(db).await? {
                let start: Option<chrono::DateTime<chrono::Utc>> = row.try_get_by_index(0)?;
                let end: Option<chrono::DateTime<chrono::Utc>> = row.try_get_by_index(1)?;
                if let (Some(s), Some(e)) = (start, end) {
                    durations.extend((e - s).to_std().ok());
                }
            }
            durations.sort_unstable();
            out.push(JobSummary {
                job,
                last_run,
                last_success,
                counts,
                p50: percentile(&durations, 50),
                p95: percentile(&durations, 95),
            });
        }
        Ok(out)
    }

    async fn newest_of(&self, job: &str, status: Option<RunStatus>) -> Result<Option<RunRecord>> {
        let db = self.db();
        let mut q = Sql::new(
            db.get_database_backend(),
            &format!("SELECT {RUN_COLUMNS} FROM job_logs WHERE job = "),
        );
        q.bind(job);
        if let Some(status) = status {
            q.push(" AND status = ").bind(status.code());
        }
        q.push(" ORDER BY id DESC LIMIT 1");
        q.one(db).await?.as_ref().map(RunRecord::from_row).transpose()
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: usize) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_secs).collect();
        assert_eq!(percentile(&d, 50), Some(Duration::from_secs(50)));
        assert_eq!(percentile(&d, 95), Some(Duration::from_secs(95)));
        assert_eq!(percentile(&d[..1], 95), Some(Duration::from_secs(1)));
        assert_eq!(percentile(&[], 50), None);
    }
}
