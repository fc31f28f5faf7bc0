//! The read side, as a dashboard uses it: run pages, one run, its details, per-job
//! summaries. The queries are [`JobLogger`]'s methods (`list_runs`, `count_runs`,
//! `search_runs`, `get_run`, `details`, `job_summaries`, …); this module holds what they
//! take and return.
//!
//! Text search reads details, so it is bounded for pages open to anyone who can reach
//! them: [`JobLogger::search_runs`] refuses terms shorter than [`MIN_SEARCH_CHARS`] or
//! longer than [`MAX_SEARCH_CHARS`], reads the details of at most [`SearchBudget::runs`]
//! runs per call (one statement, no count), and lets the database stop it after
//! [`SearchBudget::time`]. [`SearchPage::end`] says which bound it met and the page's
//! cursors continue past the runs it covered.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, RuntimeErr, TransactionTrait};

pub use crate::model::{DetailRecord, RunRecord};

use crate::model::{DETAIL_COLUMNS, RUN_COLUMNS};
use crate::sql::{Sql, like_ci, like_contains};
use crate::{JobLogger, Result, RunStatus};

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
        self.push_where_within(q, backend, None, false);
    }

    /// [`push_where`](Self::push_where), with the details the text filter reads limited to
    /// runs inside `within` (the search window past a cursor): PostgreSQL turns the `EXISTS`
    /// into one hashed scan of the whole details table otherwise, however small the window.
    ///
    /// `per_run` (PostgreSQL): the details are checked run by run, newest first, never by
    /// the planner's alternative of one hashed set of every matching line. `OFFSET 0` keeps
    /// the `EXISTS` from being turned into that set, which for a term in very many lines
    /// (`Job started`) means reading all of them through the trigram index to fill a page
    /// the newest runs fill at once (`cargo bench -p joblog --bench search`: 118 → 8 ms for
    /// `Job started` at 1 M details).
    fn push_where_within(&self, q: &mut Sql, backend: DbBackend, within: Option<Cursor>, per_run: bool) {
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
            q.push(" ESCAPE '!' OR EXISTS (SELECT 1 FROM job_log_details d WHERE d.job_log_id = job_logs.id");
            if let Some(cursor) = within {
                // The window's runs lie between the cursor and the window's edge (`w`).
                match cursor {
                    Cursor::After(after) => {
                        q.push(" AND d.job_log_id > ").bind(after);
                        q.push(" AND d.job_log_id <= (SELECT edge FROM w)");
                    }
                    Cursor::Before(before) => {
                        q.push(" AND d.job_log_id < ").bind(before);
                        q.push(" AND d.job_log_id >= (SELECT edge FROM w)");
                    }
                    Cursor::First => {
                        q.push(" AND d.job_log_id >= (SELECT edge FROM w)");
                    }
                }
            }
            q.push(" AND d.message")
                .push(like_ci(backend))
                .bind(pattern)
                .push(" ESCAPE '!'");
            if per_run && backend == DbBackend::Postgres {
                q.push(" OFFSET 0");
            }
            q.push("))");
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

/// Page sizes are clamped to this.
pub const MAX_PAGE_SIZE: u64 = 500;

pub use crate::summaries::{JobSummary, RecentRun, StatusCounts};

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
}

/// Shortest text [`JobLogger::search_runs`] searches for, in characters: a shorter one
/// matches nearly every line and makes every search read the most details it may.
pub const MIN_SEARCH_CHARS: usize = 3;
/// Longest text [`JobLogger::search_runs`] searches for, in characters.
pub const MAX_SEARCH_CHARS: usize = 200;

/// Why a search text was refused, with nothing searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SearchTermError {
    /// Shorter than `min` characters.
    TooShort {
        /// [`MIN_SEARCH_CHARS`].
        min: usize,
    },
    /// Longer than `max` characters.
    TooLong {
        /// [`MAX_SEARCH_CHARS`].
        max: usize,
    },
}

impl fmt::Display for SearchTermError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { min } => write!(f, "search for at least {min} characters"),
            Self::TooLong { max } => write!(f, "search for at most {max} characters"),
        }
    }
}

impl std::error::Error for SearchTermError {}

/// Whether `text` (trimmed) is a search term [`JobLogger::search_runs`] accepts.
pub fn check_search_text(text: &str) -> Result<(), SearchTermError> {
    match text.trim().chars().count() {
        n if n < MIN_SEARCH_CHARS => Err(SearchTermError::TooShort {
            min: MIN_SEARCH_CHARS,
        }),
        n if n > MAX_SEARCH_CHARS => Err(SearchTermError::TooLong {
            max: MAX_SEARCH_CHARS,
        }),
        _ => Ok(()),
    }
}

/// How much work one text search may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchBudget {
    /// Most runs whose details one search reads: the newest past the cursor among those
    /// that pass the status and job filters (clamped to at least 1). This bounds the work
    /// on every backend whatever the term.
    pub runs: u64,
    /// Longest the search statement may run before the database stops it
    /// (`statement_timeout` on PostgreSQL, `max_statement_time` on MariaDB,
    /// `MAX_EXECUTION_TIME` on MySQL, a progress handler on SQLite): the bound for runs
    /// with very many details.
    pub time: Duration,
    /// Whether the search may use the database's search index (SQLite FTS5, PostgreSQL
    /// `pg_trgm`): a term matching at most [`MAX_COUNTED_LINES`] lines is then found, counted
    /// and paged exactly whatever the table's size. `false` scans as above (what MySQL /
    /// MariaDB always do); benchmarks compare the two.
    pub index: bool,
}

impl Default for SearchBudget {
    /// 20,000 runs (about 100 ms on SQLite at ten details a run), 2 seconds, and the index.
    fn default() -> Self {
        Self {
            runs: 20_000,
            time: Duration::from_secs(2),
            index: true,
        }
    }
}

/// How a text search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SearchEnd {
    /// Every run in the page's direction was searched, or the page filled up.
    Complete,
    /// The budget's runs were searched without filling the page: the page shows what they
    /// held, and its `older` cursor (`newer` when paging back) continues past them.
    WindowEnd {
        /// How many runs were searched.
        runs: u64,
    },
    /// The database stopped the search after the budget's time: nothing from the runs it
    /// was searching is shown, and the page's `older` cursor (`newer` when paging back)
    /// skips past them.
    TimedOut {
        /// The time budget.
        after: Duration,
    },
    /// The term was refused: nothing was searched.
    Refused(SearchTermError),
}

/// One page of a text search, and how the search ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    /// The matching runs found, newest first, with cursors to continue.
    pub page: RunPage,
    /// Whether the search covered everything it could, or which bound stopped it.
    pub end: SearchEnd,
    /// How many runs match the whole filter, when the search index counted them: at most
    /// [`MAX_COUNTED_LINES`] lines and names matched. `None` when more matched (the page
    /// then comes from the bounded scan, which finds the newest of many matches at once),
    /// or when the database has no search index (MySQL / MariaDB, or one still building).
    pub matches: Option<u64>,
}

/// Most matching lines (details and run names) the search index collects to count the
/// matching runs and page through them exactly; a term that matches more is common, and
/// its newest matches are found by reading the newest runs' details instead.
pub const MAX_COUNTED_LINES: u64 = 5_000;

/// How MySQL-protocol servers take a time limit: 0 not known yet, 1 MariaDB's
/// `SET STATEMENT max_statement_time`, 2 MySQL's `MAX_EXECUTION_TIME` hint. Learnt from the
/// first search (a syntax error switches), kept for the process.
static MYSQL_TIME_LIMIT: AtomicU8 = AtomicU8::new(0);

/// How the search statement carries its time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeLimit {
    /// Set outside the statement (PostgreSQL, SQLite).
    Outside,
    /// `SET STATEMENT max_statement_time = … FOR` (MariaDB).
    MariaDb,
    /// `SELECT /*+ MAX_EXECUTION_TIME(…) */` (MySQL).
    MySql,
}

/// Columns of [`RUN_COLUMNS`]; the search statement adds the window's edge and size after them.
fn run_column_count() -> usize {
    RUN_COLUMNS.split(',').count()
}

impl JobLogger {
    /// One page of runs matching `filter`, its text searched within `budget`: the text
    /// variant of [`list_runs`](Self::list_runs), for pages anyone may call.
    ///
    /// Without text it is `list_runs`. With text it refuses a term outside
    /// [`MIN_SEARCH_CHARS`]..=[`MAX_SEARCH_CHARS`] characters without a query; otherwise
    /// it sends one statement, which reads the details of at most `budget.runs` runs past
    /// the cursor and finds up to `limit` + 1 matches among them (so it knows whether
    /// there are more, without a count), under the database's own timeout. Then one
    /// statement reads the shown runs' last details. Keyset cursors as `list_runs`.
    pub async fn search_runs(
        &self,
        filter: &RunFilter,
        cursor: Cursor,
        limit: u64,
        budget: SearchBudget,
    ) -> Result<SearchPage> {
        let text = filter.text.as_deref().map_or("", str::trim);
        if text.is_empty() {
            return Ok(SearchPage {
                page: self.list_runs(filter, cursor, limit).await?,
                end: SearchEnd::Complete,
                matches: None,
            });
        }
        if let Err(e) = check_search_text(text) {
            return Ok(SearchPage {
                page: RunPage {
                    runs: Vec::new(),
                    newer: None,
                    older: None,
                },
                end: SearchEnd::Refused(e),
                matches: None,
            });
        }
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        if budget.index {
            if let Some(found) = self.indexed_matches(text, budget.time).await? {
                return self.page_of_matches(filter, cursor, limit, &found).await;
            }
        }
        let window = budget.runs.max(1);
        let ascending = matches!(cursor, Cursor::After(_));
        // After the index declined (a term in more lines than it counts), the newest runs
        // are checked one by one: they fill the page soonest.
        let Some(rows) = self
            .search_statement(filter, cursor, limit, window, budget.time, budget.index)
            .await?
        else {
            // Stopped by the database: step past the window so the user can go on.
            let (edge, n) = self.search_window(filter, cursor, window).await?;
            let past = (n >= window).then_some(edge).flatten();
            let (newer, older) = if ascending {
                (past.map(Cursor::After), cursor_after_as_older(cursor))
            } else {
                (cursor_before_as_newer(cursor), past.map(Cursor::Before))
            };
            return Ok(SearchPage {
                page: RunPage {
                    runs: Vec::new(),
                    newer,
                    older,
                },
                end: SearchEnd::TimedOut { after: budget.time },
                matches: None,
            });
        };
        let extra = run_column_count();
        let (mut edge, mut n) = (None, 0u64);
        let mut runs = Vec::new();
        for row in &rows {
            edge = row.try_get_by_index::<Option<i64>>(extra)?;
            n = row
                .try_get_by_index::<Option<i64>>(extra + 1)?
                .unwrap_or(0)
                .max(0) as u64;
            if row.try_get_by_index::<Option<i64>>(0)?.is_some() {
                runs.push(RunRecord::from_row(row)?);
            }
        }
        // A join promises no order.
        if ascending {
            runs.sort_unstable_by_key(|r| r.id);
        } else {
            runs.sort_unstable_by_key(|r| std::cmp::Reverse(r.id));
        }
        let more = runs.len() as u64 > limit;
        runs.truncate(limit as usize);
        let window_full = n >= window;
        // Past the page: the next match when the page filled, else past the window.
        let onward = if more {
            runs.last().map(|r| r.id)
        } else if window_full {
            edge
        } else {
            None
        };
        let (newer, older) = if ascending {
            runs.reverse();
            let older = match cursor {
                Cursor::After(after) => Some(
                    runs.last()
                        .map_or(Cursor::Before(after.saturating_add(1)), |r| Cursor::Before(r.id)),
                ),
                _ => None,
            };
            (onward.map(Cursor::After), older)
        } else {
            // A deeper page came from newer runs: going back is always offered.
            let newer = match cursor {
                Cursor::Before(before) => Some(Cursor::After(
                    runs.first().map_or(before.saturating_sub(1), |r| r.id),
                )),
                _ => None,
            };
            (newer, onward.map(Cursor::Before))
        };
        let end = if !more && window_full {
            SearchEnd::WindowEnd { runs: window }
        } else {
            SearchEnd::Complete
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
        Ok(SearchPage {
            page: RunPage { runs, newer, older },
            end,
            matches: None,
        })
    }

    /// Through the search index: the ids of the runs whose name or any detail contains
    /// `text` (the same case rule as the scan), when at most [`MAX_COUNTED_LINES`] lines
    /// match. `None` when more match, when the database has no usable index, or when the
    /// lookup ran past `time` (PostgreSQL) — the caller then scans.
    async fn indexed_matches(&self, text: &str, time: Duration) -> Result<Option<Vec<i64>>> {
        let db = self.db();
        let backend = db.get_database_backend();
        // pg_trgm finds trigrams only in words: a term with no letter or digit would read
        // the whole index.
        if backend == DbBackend::Postgres && !text.chars().any(char::is_alphanumeric) {
            return Ok(None);
        }
        if !self.search_index_usable().await? {
            return Ok(None);
        }
        let pattern = like_contains(text);
        let cap = MAX_COUNTED_LINES + 1;
        let rows = match backend {
            DbBackend::Sqlite => {
                // The index finds candidates (trigrams, folding case beyond ASCII); LIKE
                // keeps exactly what the scan would; the tail past the mark is read as is.
                let phrase = format!("\"{}\"", text.replace('"', "\"\""));
                let mut q = Sql::new(backend, "SELECT id FROM (");
                for (i, (table, column, fts)) in crate::search_index::SQLITE_SOURCES.into_iter().enumerate() {
                    let id = if table == "job_logs" { "id" } else { "job_log_id" };
                    if i > 0 {
                        q.push(" UNION ALL ");
                    }
                    q.push(&format!(
                        "SELECT t.{id} AS id FROM {fts} f CROSS JOIN {table} t ON t.id = f.rowid \
                         WHERE f.{column} MATCH "
                    ))
                    .bind(phrase.clone())
                    .push(&format!(" AND t.{column} LIKE "))
                    .bind(pattern.clone())
                    .push(" ESCAPE '!'");
                    q.push(&format!(
                        " UNION ALL SELECT {id} AS id FROM {table} WHERE id > \
                         (SELECT indexed_upto FROM joblog_search_index WHERE source = '{table}') \
                         AND {column} LIKE "
                    ))
                    .bind(pattern.clone())
                    .push(" ESCAPE '!'");
                }
                q.push(&format!(") LIMIT {cap}"));
                q.all(db).await?
            }
            DbBackend::Postgres => {
                let mut q = Sql::new(
                    backend,
                    "SELECT id FROM (SELECT job_log_id AS id FROM job_log_details WHERE message ILIKE ",
                );
                q.bind(pattern.clone())
                    .push(" ESCAPE '!' UNION ALL SELECT id FROM job_logs WHERE name ILIKE ")
                    .bind(pattern.clone())
                    .push(&format!(" ESCAPE '!') m LIMIT {cap}"));
                let millis = time.as_millis().clamp(1, u128::from(u32::MAX));
                let txn = db.begin().await?;
                txn.execute_unprepared(&format!(
                    "{PG_SEARCH_SESSION}; SET LOCAL statement_timeout = {millis}"
                ))
                .await?;
                // A term in very many lines (`Job started`): the trigram index would build a
                // bitmap of every line holding it — seconds at ten million details — only
                // to find more than the cap. The planner's estimate (its statistics sample
                // tried against the pattern) says so in a millisecond; the scan then fills
                // the page from the newest runs at once.
                if postgres_estimated_lines(&txn, &pattern).await? > cap {
                    txn.rollback().await?;
                    return Ok(None);
                }
                match q.all(&txn).await {
                    Ok(rows) => {
                        txn.commit().await?;
                        rows
                    }
                    Err(crate::Error::Db(e)) if is_timeout(&e) => {
                        txn.rollback().await?;
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => return Ok(None),
        };
        if rows.len() as u64 >= cap {
            return Ok(None);
        }
        let mut ids = rows
            .iter()
            .map(|row| row.try_get_by_index::<i64>(0))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        ids.sort_unstable();
        ids.dedup();
        Ok(Some(ids))
    }

    /// The page at `cursor` among the runs `found` (sorted ids) that pass the status and
    /// job filters, with exact cursors and count: every match is known.
    async fn page_of_matches(
        &self,
        filter: &RunFilter,
        cursor: Cursor,
        limit: u64,
        found: &[i64],
    ) -> Result<SearchPage> {
        let db = self.db();
        let backend = db.get_database_backend();
        // The matches that pass the other filters, ascending.
        let mut matching = Vec::with_capacity(found.len());
        if filter.status.is_none() && filter.job.is_none() {
            matching.extend_from_slice(found);
        } else {
            let rest = RunFilter {
                text: None,
                ..filter.clone()
            };
            for chunk in found.chunks(1000) {
                let mut q = Sql::new(backend, "SELECT id FROM job_logs");
                rest.push_where(&mut q, backend);
                q.push(" AND id IN ").bind_list(chunk);
                for row in q.all(db).await? {
                    matching.push(row.try_get_by_index::<i64>(0)?);
                }
            }
            matching.sort_unstable();
        }
        let limit = limit as usize;
        let page_ids: Vec<i64> = match cursor {
            Cursor::First => matching.iter().rev().take(limit).copied().collect(),
            Cursor::Before(before) => matching
                .iter()
                .rev()
                .filter(|&&id| id < before)
                .take(limit)
                .copied()
                .collect(),
            Cursor::After(after) => {
                let mut ids: Vec<i64> = matching
                    .iter()
                    .filter(|&&id| id > after)
                    .take(limit)
                    .copied()
                    .collect();
                ids.reverse();
                ids
            }
        };
        // page_ids is newest first. Cursors only where more matches lie.
        let (newest, oldest) = match (page_ids.first(), page_ids.last()) {
            (Some(&newest), Some(&oldest)) => (newest, oldest),
            _ => match cursor {
                Cursor::Before(before) => (before.saturating_sub(1), before),
                Cursor::After(after) => (after, after.saturating_add(1)),
                Cursor::First => (i64::MAX, i64::MAX),
            },
        };
        let newer = matching
            .last()
            .filter(|&&id| id > newest)
            .map(|_| Cursor::After(newest));
        let older = matching
            .first()
            .filter(|&&id| id < oldest)
            .map(|_| Cursor::Before(oldest));
        let mut runs = Vec::with_capacity(page_ids.len());
        if !page_ids.is_empty() {
            let mut q = Sql::new(
                backend,
                &format!("SELECT {RUN_COLUMNS} FROM job_logs WHERE id IN "),
            );
            q.bind_list(&page_ids);
            for row in q.all(db).await? {
                runs.push(RunRecord::from_row(&row)?);
            }
            runs.sort_unstable_by_key(|r| std::cmp::Reverse(r.id));
        }
        let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
        let mut last = self.last_details(&ids).await?;
        let runs = runs
            .into_iter()
            .map(|run| RunListItem {
                last_detail: last.remove(&run.id),
                run,
            })
            .collect();
        Ok(SearchPage {
            page: RunPage { runs, newer, older },
            end: SearchEnd::Complete,
            matches: Some(matching.len() as u64),
        })
    }

    /// The search statement's rows (the matches, then the window's edge and size on every
    /// row), or `None` when the database stopped it at `time`.
    async fn search_statement(
        &self,
        filter: &RunFilter,
        cursor: Cursor,
        limit: u64,
        window: u64,
        time: Duration,
        per_run: bool,
    ) -> Result<Option<Vec<QueryResult>>> {
        let db = self.db();
        let backend = db.get_database_backend();
        let millis = time.as_millis().clamp(1, u128::from(u32::MAX));
        let statement = |flavor| search_sql(filter, cursor, limit, window, backend, flavor, millis, per_run);
        match backend {
            DbBackend::Postgres => {
                let q = statement(TimeLimit::Outside);
                let txn = db.begin().await?;
                txn.execute_unprepared(&format!(
                    "{PG_SEARCH_SESSION}; SET LOCAL statement_timeout = {millis}"
                ))
                .await?;
                match q.all(&txn).await {
                    Ok(rows) => {
                        txn.commit().await?;
                        Ok(Some(rows))
                    }
                    Err(crate::Error::Db(e)) if is_timeout(&e) => {
                        txn.rollback().await?;
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
            DbBackend::MySql => {
                let mut flavor = match MYSQL_TIME_LIMIT.load(Ordering::Relaxed) {
                    2 => TimeLimit::MySql,
                    _ => TimeLimit::MariaDb,
                };
                for attempt in 0..2 {
                    let q = statement(flavor);
                    match q.all(db).await {
                        Ok(rows) => {
                            let code = if flavor == TimeLimit::MySql { 2 } else { 1 };
                            MYSQL_TIME_LIMIT.store(code, Ordering::Relaxed);
                            return Ok(Some(rows));
                        }
                        Err(crate::Error::Db(e)) if is_timeout(&e) => return Ok(None),
                        // The other server's syntax: try the other form once.
                        Err(crate::Error::Db(e)) if attempt == 0 && is_syntax_error(&e) => {
                            flavor = if flavor == TimeLimit::MySql {
                                TimeLimit::MariaDb
                            } else {
                                TimeLimit::MySql
                            };
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(None)
            }
            _ => {
                let q = statement(TimeLimit::Outside);
                #[cfg(feature = "sqlite")]
                {
                    sqlite_budget::all_within(db, q.build(), time).await
                }
                #[cfg(not(feature = "sqlite"))]
                {
                    Ok(Some(q.all(db).await?))
                }
            }
        }
    }

    /// The edge (oldest id; newest when paging back) and size of the window of runs a
    /// search at `cursor` covers: an index range of at most `window` entries.
    async fn search_window(
        &self,
        filter: &RunFilter,
        cursor: Cursor,
        window: u64,
    ) -> Result<(Option<i64>, u64)> {
        let db = self.db();
        let backend = db.get_database_backend();
        let mut q = Sql::new(backend, "SELECT edge, n FROM (");
        push_window(&mut q, filter, cursor, window, backend);
        q.push(") w");
        match q.one(db).await? {
            Some(row) => Ok((
                row.try_get_by_index::<Option<i64>>(0)?,
                row.try_get_by_index::<Option<i64>>(1)?.unwrap_or(0).max(0) as u64,
            )),
            None => Ok((None, 0)),
        }
    }
}

/// On a page reached by `After(after)`, the cursor back to older runs.
fn cursor_after_as_older(cursor: Cursor) -> Option<Cursor> {
    match cursor {
        Cursor::After(after) => Some(Cursor::Before(after.saturating_add(1))),
        _ => None,
    }
}

/// On a page reached by `Before(before)`, the cursor back to newer runs.
fn cursor_before_as_newer(cursor: Cursor) -> Option<Cursor> {
    match cursor {
        Cursor::Before(before) => Some(Cursor::After(before.saturating_sub(1))),
        _ => None,
    }
}

/// `AND id < …` / `AND id > …` for `cursor`.
fn push_cursor(q: &mut Sql, cursor: Cursor) {
    match cursor {
        Cursor::First => {}
        Cursor::Before(before) => {
            q.push(" AND id < ").bind(before);
        }
        Cursor::After(after) => {
            q.push(" AND id > ").bind(after);
        }
    }
}

/// `SELECT edge, n FROM …`: the window of at most `window` runs past `cursor` that pass the
/// status and job filters (text aside), read from an index alone.
fn push_window(q: &mut Sql, filter: &RunFilter, cursor: Cursor, window: u64, backend: DbBackend) {
    let candidates = RunFilter {
        text: None,
        ..filter.clone()
    };
    let (edge, order) = match cursor {
        Cursor::After(_) => ("MAX", "ASC"),
        _ => ("MIN", "DESC"),
    };
    q.push(&format!(
        "SELECT {edge}(id) AS edge, COUNT(*) AS n FROM (SELECT id FROM job_logs"
    ));
    candidates.push_index_hint(q, backend);
    candidates.push_where(q, backend);
    push_cursor(q, cursor);
    q.push(&format!(" ORDER BY id {order} LIMIT {window}) c"));
}

/// The one search statement: the window as a CTE, and up to `limit` + 1 matches inside it
/// (newest first; oldest first when paging back), each row carrying the window's edge and
/// size; a single row of NULL run columns when nothing matched.
fn search_sql(
    filter: &RunFilter,
    cursor: Cursor,
    limit: u64,
    window: u64,
    backend: DbBackend,
    time_limit: TimeLimit,
    millis: u128,
    per_run: bool,
) -> Sql {
    let mut q = Sql::new(backend, "");
    if time_limit == TimeLimit::MariaDb {
        q.push(&format!(
            "SET STATEMENT max_statement_time = {}.{:03} FOR ",
            millis / 1000,
            millis % 1000
        ));
    }
    q.push("WITH w AS (");
    push_window(&mut q, filter, cursor, window, backend);
    q.push(") SELECT ");
    if time_limit == TimeLimit::MySql {
        q.push(&format!("/*+ MAX_EXECUTION_TIME({millis}) */ "));
    }
    let (bound, order) = match cursor {
        Cursor::After(_) => ("<=", "ASC"),
        _ => (">=", "DESC"),
    };
    q.push(&format!(
        "m.*, w.edge, w.n FROM w LEFT JOIN (SELECT {RUN_COLUMNS} FROM job_logs"
    ));
    filter.push_index_hint(&mut q, backend);
    filter.push_where_within(&mut q, backend, Some(cursor), per_run);
    push_cursor(&mut q, cursor);
    q.push(&format!(
        " AND id {bound} (SELECT edge FROM w) ORDER BY id {order} LIMIT {}) m ON 1 = 1",
        limit + 1
    ));
    q
}

/// The database error behind `err`, if any.
fn database_error(err: &DbErr) -> Option<&(dyn sea_orm::sqlx::error::DatabaseError + 'static)> {
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = err else {
        return None;
    };
    match e.as_ref() {
        sea_orm::sqlx::Error::Database(db) => Some(db.as_ref()),
        _ => None,
    }
}

/// Session settings of a PostgreSQL search transaction: a plan for the pattern at hand every
/// time. After five runs of a prepared statement PostgreSQL may switch to a generic plan,
/// which cannot see that `%Job started%` is in every line, and read the trigram index for it
/// (measured: 12 ms, then past the 2 s budget from the sixth call on).
const PG_SEARCH_SESSION: &str = "SET LOCAL plan_cache_mode = force_custom_plan";

/// The PostgreSQL planner's estimate of the lines (details and run names) containing
/// `pattern` (an `ILIKE` pattern escaped with `!`), from the first line of `EXPLAIN`.
async fn postgres_estimated_lines(db: &impl ConnectionTrait, pattern: &str) -> Result<u64> {
    let mut total = 0u64;
    for (table, column) in [("job_log_details", "message"), ("job_logs", "name")] {
        let mut q = Sql::new(
            DbBackend::Postgres,
            &format!("EXPLAIN SELECT 1 FROM {table} WHERE {column} ILIKE "),
        );
        q.bind(pattern.to_owned()).push(" ESCAPE '!'");
        let rows = q.all(db).await?;
        let Some(first) = rows.first() else { continue };
        let line: String = first.try_get_by_index(0)?;
        total += estimated_rows(&line).unwrap_or(0);
    }
    Ok(total)
}

/// `rows=N` in a line of PostgreSQL's `EXPLAIN` text.
fn estimated_rows(line: &str) -> Option<u64> {
    let rest = &line[line.find(" rows=")? + 6..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Whether the database stopped a statement at its time limit.
fn is_timeout(err: &DbErr) -> bool {
    let Some(db) = database_error(err) else {
        return false;
    };
    #[cfg(feature = "mysql")]
    if let Some(my) = db.try_downcast_ref::<sea_orm::sqlx::mysql::MySqlDatabaseError>() {
        // MariaDB's max_statement_time, MySQL's MAX_EXECUTION_TIME.
        return matches!(my.number(), 1969 | 3024);
    }
    // PostgreSQL: query_canceled (what statement_timeout raises).
    db.code().as_deref() == Some("57014")
}

/// Whether a MySQL-protocol server did not understand the statement's time limit.
fn is_syntax_error(err: &DbErr) -> bool {
    #[cfg(feature = "mysql")]
    if let Some(my) =
        database_error(err).and_then(|db| db.try_downcast_ref::<sea_orm::sqlx::mysql::MySqlDatabaseError>())
    {
        return my.number() == 1064;
    }
    let _ = err;
    false
}

/// SQLite's time limit: sea-orm runs statements on a pooled connection it does not lend
/// out, so the search statement runs through sqlx on a connection of the same pool, with
/// a progress handler that interrupts it at the deadline.
#[cfg(feature = "sqlite")]
mod sqlite_budget {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use sea_orm::sqlx::pool::PoolConnection;
    use sea_orm::sqlx::{self, Sqlite};
    use sea_orm::{DatabaseConnection, DbErr, QueryResult, RuntimeErr, Statement, Value};

    use crate::Result;

    /// VM instructions between two looks at the clock (about a microsecond of work).
    const PROGRESS_OPS: i32 = 1000;

    /// A pooled connection with a progress handler installed. Dropped before the handler
    /// was removed (the request was abandoned mid-search), it removes the handler in a
    /// task once the connection is idle: meanwhile the handler still stops the abandoned
    /// statement at its deadline, and no other statement runs on the connection.
    struct Budgeted {
        conn: Option<PoolConnection<Sqlite>>,
    }

    impl Drop for Budgeted {
        fn drop(&mut self) {
            let Some(mut conn) = self.conn.take() else {
                return;
            };
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        let removed = match conn.lock_handle().await {
                            Ok(mut handle) => {
                                handle.remove_progress_handler();
                                true
                            }
                            Err(_) => false,
                        };
                        if !removed {
                            conn.close_on_drop();
                        }
                    });
                }
                Err(_) => conn.close_on_drop(),
            }
        }
    }

    fn db_err(e: sqlx::Error) -> crate::Error {
        DbErr::Query(RuntimeErr::SqlxError(Arc::new(e))).into()
    }

    /// `stmt`'s rows, or `None` when it ran out of `time` (SQLITE_INTERRUPT).
    pub(super) async fn all_within(
        db: &DatabaseConnection,
        stmt: Statement,
        time: Duration,
    ) -> Result<Option<Vec<QueryResult>>> {
        let conn = db.get_sqlite_connection_pool().acquire().await.map_err(db_err)?;
        let mut guard = Budgeted { conn: Some(conn) };
        let Some(conn) = guard.conn.as_mut() else {
            return Ok(None);
        };
        let deadline = Instant::now() + time;
        conn.lock_handle()
            .await
            .map_err(db_err)?
            .set_progress_handler(PROGRESS_OPS, move || Instant::now() < deadline);
        // Built from joblog's own SQL text with every value bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(stmt.sql));
        for value in stmt.values.map(|v| v.0).unwrap_or_default() {
            query = match value {
                Value::BigInt(v) => query.bind(v),
                Value::Int(v) => query.bind(v),
                Value::SmallInt(v) => query.bind(v),
                Value::String(v) => query.bind(v),
                other => {
                    return Err(DbErr::Custom(format!("search: unexpected bound value {other:?}")).into());
                }
            };
        }
        let result = query.fetch_all(&mut **conn).await;
        conn.lock_handle()
            .await
            .map_err(db_err)?
            .remove_progress_handler();
        // The handler is gone: the connection goes back to the pool as it came.
        drop(guard.conn.take());
        match result {
            Ok(rows) => Ok(Some(rows.into_iter().map(QueryResult::from).collect())),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("9") => Ok(None),
            Err(e) => Err(db_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_from_an_explain_line() {
        let line = "Bitmap Heap Scan on job_log_details  (cost=123.45..6789.00 rows=1000345 width=4)";
        assert_eq!(estimated_rows(line), Some(1_000_345));
        assert_eq!(
            estimated_rows("Seq Scan on job_logs  (cost=0.00..1.01 rows=1 width=4)"),
            Some(1)
        );
        assert_eq!(estimated_rows("  Recheck Cond: (message ~~* '%x%'::text)"), None);
    }
}
