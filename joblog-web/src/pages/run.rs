//! One run, `/job_logs/:id`: its summary and its log a thousand lines a page; the live
//! tail the page polls (`/job_logs/:id/lines`, JSON) and the whole log as a download
//! (`/job_logs/:id/log.txt`, streamed).

use chrono::Utc;
use joblog::query::{DetailRecord, RunRecord};
use minijinja::context;
use minijinja::value::Serde;
use poem::web::{Html, Query};
use poem::{Request, Response, handler};
use serde::{Deserialize, Serialize};

use super::State;
use crate::params::{self, RunId, not_a_run};
use crate::{AppState, PageError, format, layout};

/// Lines of a run shown per page of the detail view.
const LINES_PER_PAGE: u64 = 1_000;
/// Lines per answer of the live-tail endpoint.
const LINES_PER_POLL: u64 = 500;
/// Lines per database page of a download.
const DOWNLOAD_PAGE: u64 = 10_000;
/// The run list's parameters a `back` link keeps.
const LIST_PARAMS: [&str; 6] = ["status", "job", "q", "before", "after", "per"];

/// `?from=` (the last line id of the page before) and `?back=` (the run list's query,
/// for the way back).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct DetailParams {
    /// Lines after this id.
    #[serde(deserialize_with = "params::from")]
    pub(crate) from: Option<i64>,
    /// The query string of the list the reader came from.
    #[serde(deserialize_with = "params::text")]
    pub(crate) back: Option<String>,
}

/// The live tail's `?after=` (the last line id the page has).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct TailParams {
    /// Lines after this id.
    #[serde(deserialize_with = "params::after")]
    pub(crate) after: Option<i64>,
}

/// The run's summary as the page (and the live tail) shows it.
#[derive(Serialize)]
struct RunView {
    id: i64,
    name: String,
    job: String,
    status: &'static str,
    started: String,
    completed: String,
    duration: String,
    host: String,
    error: Option<String>,
}

impl RunView {
    fn of(r: &RunRecord, tz: chrono_tz::Tz) -> Self {
        let now = Utc::now();
        Self {
            id: r.id,
            name: r.name.clone(),
            job: r.job.clone(),
            status: r.status.as_str(),
            started: r
                .started_at
                .map(|t| format::time(t, tz))
                .unwrap_or_else(|| "not started".into()),
            completed: r
                .finished_at
                .map(|t| format::time(t, tz))
                .unwrap_or_else(|| "running".into()),
            duration: match (r.status.is_finished(), r.duration_at(now)) {
                (true, Some(d)) => joblog::format::duration(d),
                (false, Some(d)) => format!("{} (running)", joblog::format::duration(d)),
                (_, None) => String::new(),
            },
            host: r.host.clone().unwrap_or_default(),
            error: r.error.clone(),
        }
    }
}

/// One line of the log.
#[derive(Serialize)]
struct LineView {
    id: i64,
    time: String,
    level: &'static str,
    message: String,
}

impl LineView {
    fn of(d: &DetailRecord, tz: chrono_tz::Tz) -> Self {
        Self {
            id: d.id,
            time: format::clock(d.created_at, tz),
            level: d.level.as_str(),
            message: d.message.clone(),
        }
    }
}

async fn find_run(state: &AppState, RunId(id): RunId) -> Result<RunRecord, PageError> {
    state.logger.get_run(id).await?.ok_or_else(|| not_a_run(id))
}

/// The way back to the list the reader came from: only the list's own parameters kept.
fn back_link(base: &str, back: Option<&str>) -> String {
    let kept = back
        .map(|b| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(
                    form_urlencoded::parse(b.as_bytes()).filter(|(k, _)| LIST_PARAMS.contains(&k.as_ref())),
                )
                .finish()
        })
        .unwrap_or_default();
    if kept.is_empty() {
        format!("{base}/job_logs")
    } else {
        format!("{base}/job_logs?{kept}")
    }
}

/// `GET /job_logs/:id`.
#[handler]
pub(crate) async fn detail(
    req: &Request,
    id: RunId,
    Query(params): Query<DetailParams>,
    state: State<'_>,
) -> Result<Html<String>, PageError> {
    let run = find_run(&state, id).await?;
    let from = params.from;
    let tz = state.config().timezone;
    let details = state.logger.details(run.id, from, LINES_PER_PAGE + 1).await?;
    let more_after = details.len() as u64 > LINES_PER_PAGE;
    let lines: Vec<LineView> = details
        .iter()
        .take(LINES_PER_PAGE as usize)
        .map(|d| LineView::of(d, tz))
        .collect();
    let last_id = lines.last().map(|l| l.id).or(from).unwrap_or(0);
    // The page before this one: the lines up to `from`, LINES_PER_PAGE of them.
    let earlier_from = match from {
        Some(f) if f > 0 => {
            let before = state
                .logger
                .details_before(run.id, f.saturating_add(1), LINES_PER_PAGE)
                .await?;
            before.first().map(|d| d.id - 1)
        }
        _ => None,
    };
    let base = layout::base(req);
    let keep_back = params
        .back
        .as_deref()
        .map(|b| {
            format!(
                "&{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("back", b)
                    .finish()
            )
        })
        .unwrap_or_default();
    let ctx = context! {
        run => Serde(RunView::of(&run, tz)),
        lines => Serde(lines),
        last_id => last_id,
        live => !run.status.is_finished() && !more_after,
        more_after => more_after,
        more_before => earlier_from.is_some(),
        later => format!("{base}/job_logs/{}?from={last_id}{keep_back}", run.id),
        earlier => format!("{base}/job_logs/{}?from={}{keep_back}", run.id, earlier_from.unwrap_or(0)),
        back => back_link(&base, params.back.as_deref()),
    };
    state.layout.render("run.html", &base, ctx)
}

/// The live tail's answer: new lines and the run's state.
#[derive(Serialize)]
struct LinesAnswer {
    lines: Vec<LineView>,
    status: &'static str,
    started: String,
    completed: String,
    duration: String,
    /// Whether the run may still write lines.
    live: bool,
    /// Whether more lines are ready right now.
    more: bool,
}

/// `GET /job_logs/:id/lines?after=`: JSON, errors included (`{"error": …}`).
#[handler]
pub(crate) async fn live_tail(
    id: poem::Result<RunId>,
    params: poem::Result<Query<TailParams>>,
    state: State<'_>,
) -> Result<Response, PageError> {
    tail(id, params, &state).await.map_err(PageError::json)
}

async fn tail(
    id: poem::Result<RunId>,
    params: poem::Result<Query<TailParams>>,
    state: &AppState,
) -> Result<Response, PageError> {
    let run = find_run(state, id?).await?;
    let Query(params) = params?;
    let tz = state.config().timezone;
    let details = state
        .logger
        .details(run.id, params.after, LINES_PER_POLL + 1)
        .await?;
    let more = details.len() as u64 > LINES_PER_POLL;
    let view = RunView::of(&run, tz);
    let answer = LinesAnswer {
        lines: details
            .iter()
            .take(LINES_PER_POLL as usize)
            .map(|d| LineView::of(d, tz))
            .collect(),
        status: view.status,
        started: view.started,
        completed: view.completed,
        duration: view.duration,
        live: !run.status.is_finished(),
        more,
    };
    let body = serde_json::to_string(&answer).map_err(|e| {
        tracing::error!(error = %e, "joblog-web: the live tail's answer did not serialise");
        PageError::internal("The new lines could not be sent; see the server log.")
    })?;
    Ok(Response::builder()
        .content_type("application/json")
        .header("Cache-Control", "no-store")
        .body(body))
}

/// `GET /job_logs/:id/log.txt`: every line, streamed a database page at a time.
#[handler]
pub(crate) async fn download(id: RunId, state: State<'_>) -> Result<Response, PageError> {
    let run = find_run(&state, id).await?;
    let safe_name: String = run
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // A page of lines at a time: a run with millions of lines costs one page of memory,
    // not the whole log.
    let logger = state.logger.clone();
    let tz = state.config().timezone;
    let head = format!("{} {} ({})\n", run.name, run.job, run.status);
    let run_id = run.id;
    let pages = futures::stream::unfold((Some(head), None, false), move |(head, after, done)| {
        let logger = logger.clone();
        async move {
            if let Some(head) = head {
                return Some((Ok(head), (None, after, done)));
            }
            if done {
                return None;
            }
            match logger.details(run_id, after, DOWNLOAD_PAGE).await {
                Ok(page) => {
                    let mut out = String::new();
                    for d in &page {
                        out.push_str(&format!(
                            "{} [{}] {}\n",
                            d.created_at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S%.3f %Z"),
                            d.level,
                            d.message
                        ));
                    }
                    let last = page.last().map(|d| d.id);
                    let done = (page.len() as u64) < DOWNLOAD_PAGE;
                    Some((Ok(out), (None, last.or(after), done)))
                }
                Err(e) => {
                    tracing::error!(error = %e, run_id, "joblog-web: download interrupted");
                    Some((Err(std::io::Error::other(e.to_string())), (None, after, true)))
                }
            }
        }
    });
    Ok(Response::builder()
        .content_type("text/plain; charset=utf-8")
        .header(
            "Content-Disposition",
            format!("attachment; filename=\"{safe_name}.log\""),
        )
        .body(poem::Body::from_bytes_stream(pages)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_way_back_keeps_only_the_lists_parameters() {
        assert_eq!(back_link("", None), "/job_logs");
        assert_eq!(
            back_link("/admin", Some("job=CleanupJob&per=10&evil=1")),
            "/admin/job_logs?job=CleanupJob&per=10"
        );
        assert_eq!(back_link("", Some("evil=1")), "/job_logs");
    }
}
