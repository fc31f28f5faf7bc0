//! Per-job summaries for a jobs monitor: counts by status, last run, last success, p50 /
//! p95 of recent durations and the newest runs for a sparkline — in a fixed number of
//! statements, none of which reads every run.

use std::collections::HashMap;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, QueryResult};

use crate::model::{RUN_COLUMNS, RunRecord};
use crate::query::MAX_PAGE_SIZE;
use crate::sql::Sql;
use crate::{JobLogger, Result, RunStatus};

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

/// One of a job's newest runs, as a sparkline draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentRun {
    /// `job_logs.id`.
    pub id: i64,
    /// Where the run is.
    pub status: RunStatus,
    /// How long it took, once it has finished (`finished_at` − `started_at`, or −
    /// `created_at` for a run finished straight from new). Milliseconds are the finest
    /// unit on SQLite, microseconds elsewhere.
    pub duration: Option<Duration>,
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
    /// Its newest runs, newest first: as many as [`JobLogger::job_summaries_with`] was
    /// asked for (none from [`JobLogger::job_summaries`]).
    pub recent: Vec<RecentRun>,
}

/// Successful runs per job that the duration percentiles are taken over.
const PERCENTILE_WINDOW: u64 = 200;
/// Jobs served by one statement of [`JobLogger::job_summaries_with`]: each job adds four
/// terms to a `UNION ALL`, and SQLite allows at most 500 terms in one compound statement
/// (`SQLITE_MAX_COMPOUND_SELECT`).
const JOBS_PER_STATEMENT: usize = 125;

/// Which part of a job's summary a row of the `UNION ALL` is: column 12 of each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The newest run, every column.
    LastRun = 0,
    /// The newest successful run, every column.
    LastSuccess = 1,
    /// One of the newest runs: id, job, status and duration only.
    Recent = 2,
    /// The median duration of the newest successful runs: job and duration only.
    P50 = 3,
    /// Their 95th percentile.
    P95 = 4,
    /// Both (one or two runs in the window).
    P50AndP95 = 5,
    /// SQLite: every duration of the window, as one comma-separated text in column 1.
    Durations = 6,
}

impl Part {
    const ALL: [Part; 7] = [
        Self::LastRun,
        Self::LastSuccess,
        Self::Recent,
        Self::P50,
        Self::P95,
        Self::P50AndP95,
        Self::Durations,
    ];

    fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|p| *p as i64 == code)
    }
}

/// An integer literal every backend reads back as a 64-bit integer.
fn bigint(backend: DbBackend, n: i64) -> String {
    match backend {
        DbBackend::MySql => format!("CAST({n} AS SIGNED)"),
        _ => format!("CAST({n} AS BIGINT)"),
    }
}

/// The run's duration in microseconds, computed by the database (NULL until it has
/// finished), so that no timestamps need decoding.
fn duration_micros(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => {
            "CAST(EXTRACT(EPOCH FROM (finished_at - COALESCE(started_at, created_at))) * 1000000 AS BIGINT)"
        }
        DbBackend::MySql => "TIMESTAMPDIFF(MICROSECOND, COALESCE(started_at, created_at), finished_at)",
        // julianday() reads the RFC 3339 text sqlx writes (and SQLite's own forms), to the
        // millisecond; rounding keeps 20 s from coming back as 19.999999 s.
        _ => {
            "CAST(ROUND((julianday(finished_at) - julianday(COALESCE(started_at, created_at))) \
             * 86400000.0) AS INTEGER) * 1000"
        }
    }
}

/// The run columns a light row carries: id, job and status; NULL for the rest, each as
/// `CASE WHEN 1 = 0 THEN col END` so that it keeps the column's type and the `UNION ALL`'s
/// columns line up on PostgreSQL (a bare NULL in a subquery would be `text`).
fn light_columns() -> String {
    RUN_COLUMNS
        .split(',')
        .map(str::trim)
        .map(|c| match c {
            "id" | "job" | "status" => c.to_owned(),
            _ => format!("CASE WHEN 1 = 0 THEN {c} END AS {c}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl JobLogger {
    /// Per job: last run, last success, counts by status, p50 / p95 duration of its
    /// recent successful runs. Two statements, whatever the number of jobs (see
    /// [`job_summaries_with`](Self::job_summaries_with)).
    pub async fn job_summaries(&self) -> Result<Vec<JobSummary>> {
        self.job_summaries_with(0).await
    }

    /// [`job_summaries`](Self::job_summaries), each with its `recent_runs` newest runs
    /// (clamped to 0..=500) in [`JobSummary::recent`], for a dashboard's sparklines.
    ///
    /// A constant number of statements serves every job, and none reads every run: one
    /// reads the runs per job and status from `job_run_counts` (kept by triggers as runs
    /// start, change status and are pruned, in the same transaction); one more reads, for
    /// each job, a `UNION ALL` of four index range scans — its newest run and newest
    /// success (every column), its newest runs (id, status and the duration the database
    /// computes; no timestamps to decode), and p50 / p95 of its newest 200 successes
    /// (ranked by the database; on SQLite the 200 durations come as one text) — so a
    /// dashboard costs the same two round trips for one job as for a hundred. (Past 125
    /// jobs, one more statement per 125: SQLite's limit on the terms of one compound
    /// statement.)
    pub async fn job_summaries_with(&self, recent_runs: u64) -> Result<Vec<JobSummary>> {
        let db = self.db();
        let counts = run_counts(db).await?;
        let recent_runs = recent_runs.min(MAX_PAGE_SIZE);
        let mut parts: HashMap<String, Parts> = HashMap::with_capacity(counts.len());
        for chunk in counts.chunks(JOBS_PER_STATEMENT) {
            let jobs: Vec<&str> = chunk.iter().map(|(job, _)| job.as_str()).collect();
            for row in summary_rows(db, &jobs, recent_runs).await? {
                let job: String = row.try_get_by_index(2)?;
                parts.entry(job).or_default().add(&row)?;
            }
        }
        Ok(counts
            .into_iter()
            .map(|(job, counts)| {
                let parts = parts.remove(&job).unwrap_or_default();
                parts.summary(job, counts, recent_runs as usize)
            })
            .collect())
    }
}

/// Runs per job and status, from `job_run_counts` (kept by triggers on `job_logs`,
/// migration m20261201_000006): a row per job and status, not a count of every run.
async fn run_counts(db: &impl ConnectionTrait) -> Result<Vec<(String, StatusCounts)>> {
    let q = Sql::new(
        db.get_database_backend(),
        "SELECT job, status, runs FROM job_run_counts WHERE runs > 0 ORDER BY job",
    );
    let mut counts: Vec<(String, StatusCounts)> = Vec::new();
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
    Ok(counts)
}

/// One statement: for each job, the four parts of its summary (see [`Part`]). Each row
/// is `RUN_COLUMNS`, then the part, then the duration in microseconds.
async fn summary_rows(
    db: &impl ConnectionTrait,
    jobs: &[&str],
    recent_runs: u64,
) -> Result<Vec<QueryResult>> {
    let backend = db.get_database_backend();
    let micros = duration_micros(backend);
    let success = RunStatus::Success.code();
    let mut q = Sql::new(backend, "");
    let mut term = 0;
    let mut add = |q: &mut Sql, job: &str, part: Part, columns: &str, success_only: bool, limit: u64| {
        if term > 0 {
            q.push(" UNION ALL ");
        }
        q.push(&format!(
            "SELECT * FROM (SELECT {columns}, {}, {micros} FROM job_logs WHERE job = ",
            bigint(backend, part as i64)
        ))
        .bind(job);
        if success_only {
            q.push(" AND status = ").bind(success);
        }
        q.push(&format!(" ORDER BY id DESC LIMIT {limit}) t{term}"));
        term += 1;
    };
    let light = light_columns();
    for job in jobs {
        add(&mut q, job, Part::LastRun, RUN_COLUMNS, false, 1);
        add(&mut q, job, Part::LastSuccess, RUN_COLUMNS, true, 1);
        if recent_runs > 0 {
            add(&mut q, job, Part::Recent, &light, false, recent_runs);
        }
    }
    for job in jobs {
        q.push(" UNION ALL ");
        if backend == DbBackend::Sqlite {
            durations(&mut q, job, term);
        } else {
            percentiles(&mut q, job, &light, term);
        }
        term += 1;
    }
    q.all(db).await
}

/// SQLite's term instead of [`percentiles`]: the durations of the job's newest
/// [`PERCENTILE_WINDOW`] successful runs in one `group_concat` text, ranked here. (SQLite's
/// window functions cost three times the read of the window itself; one text per job also
/// spares decoding 200 rows.)
fn durations(q: &mut Sql, job: &str, term: usize) {
    let micros = duration_micros(DbBackend::Sqlite);
    q.push("SELECT * FROM (SELECT NULL, group_concat(micros), ")
        .bind(job)
        .push(&format!(
            ", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, {}, NULL \
             FROM (SELECT {micros} AS micros FROM job_logs WHERE job = ",
            Part::Durations as i64
        ))
        .bind(job)
        .push(" AND status = ")
        .bind(RunStatus::Success.code())
        .push(&format!(
            " ORDER BY id DESC LIMIT {PERCENTILE_WINDOW}) m) t{term}"
        ));
}

/// One term of [`summary_rows`]: the nearest-rank p50 and p95 of the durations of the
/// job's newest [`PERCENTILE_WINDOW`] successful runs, ranked by the database (window
/// functions), so that one or two rows come back instead of 200. Rank `ceil(p · n / 100)`
/// of the `n` durations that are not negative, as `(p · n + 99) / 100` in integers.
fn percentiles(q: &mut Sql, job: &str, light: &str, term: usize) {
    let backend = q.backend();
    let micros = duration_micros(backend);
    let div = if backend == DbBackend::MySql {
        " DIV "
    } else {
        " / "
    };
    let code = |p: Part| bigint(backend, p as i64);
    q.push(&format!(
        "SELECT * FROM (SELECT {RUN_COLUMNS}, CASE WHEN rn = r50 AND rn = r95 THEN {} \
         WHEN rn = r50 THEN {} ELSE {} END, micros FROM (SELECT m.*, \
         ROW_NUMBER() OVER (ORDER BY micros) AS rn, \
         (50 * COUNT(*) OVER () + 99){div}100 AS r50, (95 * COUNT(*) OVER () + 99){div}100 AS r95 \
         FROM (SELECT {light}, {micros} AS micros FROM job_logs WHERE job = ",
        code(Part::P50AndP95),
        code(Part::P50),
        code(Part::P95)
    ))
    .bind(job)
    .push(" AND status = ")
    .bind(RunStatus::Success.code())
    .push(&format!(
        " ORDER BY id DESC LIMIT {PERCENTILE_WINDOW}) m WHERE micros >= 0) w \
         WHERE rn = r50 OR rn = r95) t{term}"
    ));
}

/// A job's rows of [`summary_rows`], as they arrive (a `UNION ALL` promises no order).
#[derive(Default)]
struct Parts {
    last_run: Option<RunRecord>,
    last_success: Option<RunRecord>,
    recent: Vec<RecentRun>,
    p50: Option<Duration>,
    p95: Option<Duration>,
}

impl Parts {
    fn add(&mut self, row: &QueryResult) -> Result<()> {
        let code: i64 = row.try_get_by_index(12)?;
        let micros: Option<i64> = row.try_get_by_index(13)?;
        // A negative duration (a clock set back, a hand-edited row) has no length to show.
        let duration = micros
            .and_then(|m| u64::try_from(m).ok())
            .map(Duration::from_micros);
        match Part::from_code(code) {
            Some(Part::LastRun) => self.last_run = Some(RunRecord::from_row(row)?),
            Some(Part::LastSuccess) => self.last_success = Some(RunRecord::from_row(row)?),
            Some(Part::Recent) => {
                let status: i16 = row.try_get_by_index(3)?;
                self.recent.push(RecentRun {
                    id: row.try_get_by_index(0)?,
                    // An unknown code can only come from outside joblog; show it as an error.
                    status: RunStatus::from_code(status).unwrap_or(RunStatus::Error),
                    duration,
                });
            }
            Some(Part::P50) => self.p50 = duration,
            Some(Part::P95) => self.p95 = duration,
            Some(Part::P50AndP95) => (self.p50, self.p95) = (duration, duration),
            Some(Part::Durations) => {
                let text: Option<String> = row.try_get_by_index(1)?;
                let mut window: Vec<Duration> = text
                    .iter()
                    .flat_map(|t| t.split(','))
                    .filter_map(|m| m.trim().parse::<u64>().ok())
                    .map(Duration::from_micros)
                    .collect();
                window.sort_unstable();
                self.p50 = percentile(&window, 50);
                self.p95 = percentile(&window, 95);
            }
            None => {}
        }
        Ok(())
    }

    fn summary(mut self, job: String, counts: StatusCounts, recent_runs: usize) -> JobSummary {
        self.recent.sort_unstable_by_key(|r| std::cmp::Reverse(r.id));
        self.recent.truncate(recent_runs);
        JobSummary {
            job,
            last_run: self.last_run,
            last_success: self.last_success,
            counts,
            p50: self.p50,
            p95: self.p95,
            recent: self.recent,
        }
    }
}

/// Nearest-rank percentile of sorted values (the rank the other backends compute in SQL).
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
        // The rank the SQL computes, (p · n + 99) / 100 in integers, is the same.
        for n in 1..=200usize {
            for p in [50, 95] {
                assert_eq!(
                    (p * n + 99) / 100,
                    (p * n).div_ceil(100).max(1),
                    "n = {n}, p = {p}"
                );
            }
        }
    }

    #[test]
    fn parts_round_trip_their_codes() {
        for p in Part::ALL {
            assert_eq!(Part::from_code(p as i64), Some(p));
        }
        assert_eq!(Part::from_code(7), None);
    }

    #[test]
    fn light_rows_line_up_with_run_columns() {
        let light = light_columns();
        assert_eq!(light.split(", ").count(), RUN_COLUMNS.split(',').count());
        assert!(light.starts_with("id, CASE WHEN 1 = 0 THEN name END AS name, job, status, "));
    }
}
