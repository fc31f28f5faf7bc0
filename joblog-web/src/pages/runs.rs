//! The run list, `/` and `/job_logs`: newest first, filtered by status, job and text,
//! keyset pages, and a warning above it for scheduled jobs that stopped succeeding.
//! Rendered pages are shared for `WebConfig::list_cache` between requests for one URL.
//!
//! A text search (`q`) is bounded (see `joblog::query::SearchBudget`): a term under three
//! characters is refused with a note, one statement reads the details of at most
//! [`SEARCH_BUDGET`]'s runs under its time limit, and no count is taken; the page says
//! "N runs match" only when the search saw them all, and says where it stopped otherwise,
//! with a link that goes on with older runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use joblog::RunStatus;
use joblog::query::{Cursor, RunFilter, RunListItem, SearchBudget, SearchEnd, SearchTermError};
use minijinja::context;
use minijinja::value::Serde;
use poem::web::{Html, Query};
use poem::{Request, handler};
use serde::{Deserialize, Serialize};

use super::State;
use crate::{AppState, PageError, format, layout, params};

/// The list counts matching runs up to this many.
const COUNT_CAP: u64 = 10_000;
/// What one text search may cost: the search index where the database has one, else the
/// details of 20,000 runs; 2 seconds.
const SEARCH_BUDGET: SearchBudget = SearchBudget {
    runs: 20_000,
    time: Duration::from_secs(2),
    index: true,
};
/// Characters of a run's last message shown in the list.
const LAST_MESSAGE_CHARS: usize = 300;

/// The list's filters and cursor: `?status=&job=&q=&before=|after=&per=`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct ListParams {
    /// Only runs with this status (any case).
    #[serde(deserialize_with = "params::status")]
    pub(crate) status: Option<RunStatus>,
    /// Only runs of this job.
    #[serde(deserialize_with = "params::text")]
    pub(crate) job: Option<String>,
    /// Only runs with this text in their name or a message.
    #[serde(deserialize_with = "params::search")]
    pub(crate) q: String,
    /// Runs older than this id (wins over `after`).
    #[serde(deserialize_with = "params::before")]
    pub(crate) before: Option<i64>,
    /// Runs newer than this id.
    #[serde(deserialize_with = "params::after")]
    pub(crate) after: Option<i64>,
    /// Runs per page (1..=100; otherwise the configured size).
    #[serde(deserialize_with = "params::page_size")]
    pub(crate) per: Option<u64>,
}

impl ListParams {
    fn cursor(&self) -> Cursor {
        match (self.before, self.after) {
            (Some(b), _) => Cursor::Before(b),
            (None, Some(a)) => Cursor::After(a),
            (None, None) => Cursor::First,
        }
    }

    fn filter(&self) -> RunFilter {
        RunFilter {
            status: self.status,
            job: self.job.clone(),
            text: Some(self.q.clone()).filter(|q| !q.is_empty()),
        }
    }

    fn is_filtered(&self) -> bool {
        self.status.is_some() || self.job.is_some() || !self.q.is_empty()
    }

    /// The filters, the page size and `cursor` as a query string.
    fn query(&self, cursor: Cursor) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if let Some(status) = self.status {
            s.append_pair("status", status.as_str());
        }
        if let Some(job) = &self.job {
            s.append_pair("job", job);
        }
        if !self.q.is_empty() {
            s.append_pair("q", &self.q);
        }
        if let Some(per) = self.per {
            s.append_pair("per", &per.to_string());
        }
        match cursor {
            Cursor::First => {}
            Cursor::Before(id) => {
                s.append_pair("before", &id.to_string());
            }
            Cursor::After(id) => {
                s.append_pair("after", &id.to_string());
            }
        }
        s.finish()
    }

    /// This list at `cursor`, under the mount point `base`.
    fn url(&self, base: &str, cursor: Cursor) -> String {
        match self.query(cursor) {
            q if q.is_empty() => format!("{base}/job_logs"),
            q => format!("{base}/job_logs?{q}"),
        }
    }
}

/// The filters as the form shows them.
#[derive(Serialize)]
struct FilterView<'a> {
    status: &'a str,
    job: &'a str,
    q: &'a str,
}

/// A scheduled job whose last success is too old, for the warning above the list.
#[derive(Serialize)]
struct MissedView {
    job: String,
    job_q: String,
    message: String,
}

/// One row of the list.
#[derive(Serialize)]
struct RunRow {
    id: i64,
    name: String,
    job: String,
    status: &'static str,
    started: String,
    duration: String,
    host: String,
    last_message: String,
    last_level: &'static str,
}

impl RunRow {
    fn of(item: &RunListItem, tz: chrono_tz::Tz, now: chrono::DateTime<Utc>) -> Self {
        let r = &item.run;
        // A failed run shows its error; any other its last message.
        let (last_message, last_level) = match (&item.last_detail, &r.error) {
            (_, Some(error)) if r.status == RunStatus::Error => (error.as_str(), "error"),
            (Some(d), _) => (d.message.as_str(), d.level.as_str()),
            (None, _) => ("", "info"),
        };
        Self {
            id: r.id,
            name: r.name.clone(),
            job: r.job.clone(),
            status: r.status.as_str(),
            started: format::time(r.started_at.unwrap_or(r.created_at), tz),
            duration: r
                .duration_at(now)
                .map(joblog::format::duration)
                .unwrap_or_default()
                + if r.status.is_finished() { "" } else { " (running)" },
            host: r.host.clone().unwrap_or_default(),
            last_message: last_message
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(LAST_MESSAGE_CHARS)
                .collect(),
            last_level,
        }
    }
}

/// One cached page: filled once by the first request that misses, awaited by the others.
type Slot = Arc<tokio::sync::OnceCell<Arc<str>>>;

/// Rendered run-list pages by URL, each kept for `WebConfig::list_cache`. Requests that
/// miss at the same moment share one rendering (one set of queries).
#[derive(Debug, Default)]
pub(crate) struct PageCache {
    pages: Mutex<HashMap<String, (Instant, Slot)>>,
}

impl PageCache {
    /// Most URLs kept at once; beyond it, expired entries are dropped, then all.
    const MAX_ENTRIES: usize = 256;

    /// The slot for `key`: the current one while it is fresh, else a new, empty one.
    fn slot(&self, key: &str, ttl: Duration) -> Slot {
        let mut pages = self.pages.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, slot)) = pages.get(key)
            && at.elapsed() < ttl
        {
            return slot.clone();
        }
        if pages.len() >= Self::MAX_ENTRIES {
            pages.retain(|_, (at, _)| at.elapsed() < ttl);
            if pages.len() >= Self::MAX_ENTRIES {
                pages.clear();
            }
        }
        let slot = Slot::default();
        pages.insert(key.to_owned(), (Instant::now(), slot.clone()));
        slot
    }
}

/// `GET /` and `GET /job_logs`.
#[handler]
pub(crate) async fn list(
    req: &Request,
    Query(params): Query<ListParams>,
    state: State<'_>,
) -> Result<Html<String>, PageError> {
    let base = layout::base(req);
    let ttl = state.config().list_cache;
    if ttl.is_zero() {
        return page(&params, &base, &state).await.map(Html);
    }
    // Only a page that rendered is kept; a failure is answered as it is.
    let slot = state.list_cache.slot(&req.original_uri().to_string(), ttl);
    let html = slot
        .get_or_try_init(|| async { page(&params, &base, &state).await.map(Arc::<str>::from) })
        .await?;
    Ok(Html(html.to_string()))
}

/// The list as `params` asks for it, under the mount point `base`.
async fn page(params: &ListParams, base: &str, state: &AppState) -> Result<String, PageError> {
    let filter = params.filter();
    let cursor = params.cursor();
    let per = params.per.unwrap_or(state.config().page_size);
    let logger = &state.logger;
    let searching = !params.q.is_empty();
    let (page, total, note) = if searching {
        // Through the search index, counted; else one bounded statement, no count: the
        // page tells what it covered instead.
        let found = logger.search_runs(&filter, cursor, per, SEARCH_BUDGET).await?;
        let shown = found.page.runs.len();
        let runs_word = if shown == 1 { "run" } else { "runs" };
        let (total, note) = match found.end {
            // The search index counted every match.
            SearchEnd::Complete if found.matches.is_some() => {
                let n = found.matches.unwrap_or_default();
                let word = if n == 1 { "run matches" } else { "runs match" };
                (Some(format!("{} {word}", joblog::format::count(n))), None)
            }
            SearchEnd::Refused(SearchTermError::TooShort { min }) => (
                None,
                Some(format!("Type at least {min} characters to search the messages.")),
            ),
            SearchEnd::Refused(SearchTermError::TooLong { max }) => {
                (None, Some(format!("Search for at most {max} characters.")))
            }
            SearchEnd::Refused(_) => (None, Some("This text cannot be searched.".to_owned())),
            SearchEnd::WindowEnd { runs } => (
                Some(format!("{shown} {runs_word} match")),
                Some(format!(
                    "The search covered {} runs and stopped there to stay fast; showing what was found in them.",
                    joblog::format::count(runs)
                )),
            ),
            SearchEnd::TimedOut { after } => (
                None,
                Some(format!(
                    "The search stopped after {}; nothing was found in the runs it covered.",
                    joblog::format::duration(after)
                )),
            ),
            _ if cursor == Cursor::First && found.page.older.is_none() => {
                (Some(format!("{shown} {runs_word} match")), None)
            }
            _ => (
                Some(format!(
                    "{shown} {runs_word} match on this page{}",
                    if found.page.older.is_some() {
                        "; more are older"
                    } else {
                        ""
                    }
                )),
                None,
            ),
        };
        (found.page, total, note)
    } else {
        let page = logger.list_runs(&filter, cursor, per).await?;
        let total = logger.count_runs(&filter, COUNT_CAP).await?;
        let count = format!(
            "{}{}",
            joblog::format::count(total.count),
            if total.capped { "+" } else { "" }
        );
        let word = if count == "1" { "run" } else { "runs" };
        let matching = if params.is_filtered() { " match" } else { "" };
        (page, Some(format!("{count} {word}{matching}")), None)
    };
    // Going on past where a bounded search stopped.
    let resume = note.as_ref().and(page.older).map(|c| params.url(base, c));
    let job_names = logger.jobs().await?;
    let tz = state.config().timezone;
    let now = Utc::now();
    let rows: Vec<RunRow> = page.runs.iter().map(|item| RunRow::of(item, tz, now)).collect();
    // The detail page's back link returns here: this list, with its filters and page.
    let back = params.query(cursor);
    let back_query = if back.is_empty() {
        String::new()
    } else {
        format!(
            "?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("back", &back)
                .finish()
        )
    };
    let ctx = context! {
        missed => Serde(missed(state).await),
        runs => Serde(rows),
        filter => Serde(FilterView {
            status: params.status.map_or("", RunStatus::as_str),
            job: params.job.as_deref().unwrap_or(""),
            q: &params.q,
        }),
        filtered => params.is_filtered(),
        paged => cursor != Cursor::First,
        statuses => RunStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        jobs => job_names,
        total => total,
        search_note => note,
        resume => resume,
        newer => page.newer.map(|c| params.url(base, c)),
        older => page.older.map(|c| params.url(base, c)),
        back_query => back_query,
    };
    state.layout.render_str("runs.html", base, ctx).map_err(|e| {
        tracing::error!(error = %e, "joblog-web: the run list's template failed");
        PageError::internal("The page could not be rendered; see the server log.")
    })
}

/// Scheduled jobs that stopped succeeding, flagged above the list as on the monitor. The
/// list still shows if the schedules cannot be read.
async fn missed(state: &AppState) -> Vec<MissedView> {
    let now = Utc::now();
    match state.logger.scheduled_jobs().schedules().await {
        Ok(schedules) => schedules
            .into_iter()
            .filter(|s| s.overdue)
            .map(|s| MissedView {
                job_q: form_urlencoded::byte_serialize(s.job.as_bytes()).collect(),
                message: format::missed(s.last_success_at, s.missed, now),
                job: s.job,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "joblog-web: reading schedules failed");
            Vec::new()
        }
    }
}
