//! The pages. Every handler answers with a page (or JSON / text), never a bare error: bad
//! input gets a 400 or 404 page that says what was wrong.

use std::sync::Arc;

use chrono::Utc;
use joblog::{Cursor, DetailRecord, RunFilter, RunListItem, RunRecord, RunStatus};
use minijinja::Value;
use minijinja::value::Serde;
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde::Serialize;

use crate::AppState;
use crate::csrf;
use crate::format;
use crate::templates::ASSETS;

/// Lines of a run shown per page of the detail view.
const LINES_PER_PAGE: u64 = 1_000;
/// Lines per answer of the live-tail endpoint.
const LINES_PER_POLL: u64 = 500;
/// The run list counts matching runs up to this many.
const COUNT_CAP: u64 = 10_000;
/// Lines per database page of a download.
const DOWNLOAD_PAGE: u64 = 10_000;
/// Longest search text accepted.
const MAX_SEARCH: usize = 200;

type State<'a> = Data<&'a Arc<AppState>>;

/// A page that could not be shown, and why.
#[derive(Debug)]
enum Failure {
    BadRequest(String),
    Forbidden(String),
    NotFound(String),
    Internal(String),
}

impl From<joblog::Error> for Failure {
    fn from(e: joblog::Error) -> Self {
        tracing::error!(error = %e, "joblog-web: query failed");
        Failure::Internal("The log database could not be read; see the server log.".into())
    }
}

/// Where the router is mounted: the part of the original path the nesting stripped.
fn base(req: &Request) -> String {
    let original = req.original_uri().path();
    let inner = req.uri().path();
    let base = match original.strip_suffix(inner) {
        Some(base) => base,
        // The mount point itself without its trailing slash: nesting made it `/`.
        None if inner == "/" => original,
        None => "",
    };
    base.trim_end_matches('/').to_owned()
}

fn params(req: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn parse_id(value: Option<&str>, what: &str) -> Result<Option<i64>, Failure> {
    value
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| Failure::BadRequest(format!("{what} must be a number, not {v:?}.")))
        })
        .transpose()
}

fn render(state: &AppState, req: &Request, template: &str, ctx: Value) -> Response {
    let common = minijinja::context! {
        base => base(req),
        title => state.config.title.clone(),
        zone => state.config.timezone.name(),
        asset_version => state.asset_version.clone(),
        nav => Serde(crate::shell::nav_view(&state.config)),
    };
    match state
        .templates
        .render(template, minijinja::context! { ..ctx, ..common })
    {
        Ok(html) => Response::builder()
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(e) => {
            tracing::error!(error = %e, template, "joblog-web: template failed");
            Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .content_type("text/plain; charset=utf-8")
                .body("500 Internal Server Error\n")
        }
    }
}

impl Failure {
    /// The HTTP status and the message for the user.
    fn into_parts(self) -> (StatusCode, String) {
        match self {
            Failure::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Failure::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            Failure::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Failure::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

fn failure_page(state: &AppState, req: &Request, failure: Failure) -> Response {
    let (status, message) = failure.into_parts();
    let ctx = minijinja::context! {
        status => status.as_u16(),
        reason => status.canonical_reason().unwrap_or(""),
        message => message,
    };
    let mut resp = render(state, req, "error.html", ctx);
    resp.set_status(status);
    resp
}

/// A scheduled job whose last success is too old, for the run list's warning.
#[derive(Serialize)]
struct MissedView {
    job: String,
    job_q: String,
    message: String,
}

/// The list's filters as given in the URL, checked.
#[derive(Debug, Default, Serialize)]
struct ListQuery {
    status: String,
    job: String,
    q: String,
    #[serde(skip)]
    cursor: Cursor,
    #[serde(skip)]
    per: Option<u64>,
}

impl ListQuery {
    fn parse(params: &[(String, String)]) -> Result<Self, Failure> {
        let status = match param(params, "status") {
            None => String::new(),
            Some(raw) => raw
                .parse::<RunStatus>()
                .map_err(|_| {
                    Failure::BadRequest(format!(
                        "Unknown status {raw:?}: use new, processing, success or error."
                    ))
                })?
                .as_str()
                .to_owned(),
        };
        let q: String = param(params, "q")
            .unwrap_or("")
            .trim()
            .chars()
            .take(MAX_SEARCH)
            .collect();
        let before = parse_id(param(params, "before"), "before")?;
        let after = parse_id(param(params, "after"), "after")?;
        let cursor = match (before, after) {
            (Some(b), _) => Cursor::Before(b),
            (None, Some(a)) => Cursor::After(a),
            (None, None) => Cursor::First,
        };
        let per = param(params, "per")
            .and_then(|p| p.parse::<u64>().ok())
            .map(|p| p.clamp(1, 100));
        Ok(Self {
            status,
            job: param(params, "job").unwrap_or("").to_owned(),
            q,
            cursor,
            per,
        })
    }

    fn filter(&self) -> RunFilter {
        RunFilter {
            status: self.status.parse().ok(),
            job: Some(self.job.clone()).filter(|j| !j.is_empty()),
            text: Some(self.q.clone()).filter(|q| !q.is_empty()),
        }
    }

    /// The filters (and page size) as a query string, without a cursor.
    fn filters_query(&self) -> form_urlencoded::Serializer<'static, String> {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("status", &self.status), ("job", &self.job), ("q", &self.q)] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        if let Some(per) = self.per {
            s.append_pair("per", &per.to_string());
        }
        s
    }

    fn url(&self, base: &str, cursor: Cursor) -> String {
        let mut s = self.filters_query();
        match cursor {
            Cursor::First => {}
            Cursor::Before(id) => {
                s.append_pair("before", &id.to_string());
            }
            Cursor::After(id) => {
                s.append_pair("after", &id.to_string());
            }
        }
        let q = s.finish();
        if q.is_empty() {
            format!("{base}/job_logs")
        } else {
            format!("{base}/job_logs?{q}")
        }
    }
}

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

/// One cached page: filled once by the first request that misses, awaited by the others.
type Slot = Arc<tokio::sync::OnceCell<Arc<str>>>;

/// Rendered run-list pages by URL, each kept for `WebConfig::list_cache`. Requests that
/// miss at the same moment share one rendering (one set of queries).
#[derive(Debug, Default)]
pub(crate) struct PageCache {
    pages: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Slot)>>,
}

impl PageCache {
    /// Most URLs kept at once; beyond it, expired entries are dropped, then all.
    const MAX_ENTRIES: usize = 256;

    /// The slot for `key`: the current one while it is fresh, else a new, empty one.
    fn slot(&self, key: &str, ttl: std::time::Duration) -> Slot {
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
        pages.insert(key.to_owned(), (std::time::Instant::now(), slot.clone()));
        slot
    }
}

fn html_response(html: &str) -> Response {
    Response::builder()
        .content_type("text/html; charset=utf-8")
        .body(html.to_owned())
}

#[handler]
pub(crate) async fn run_list(req: &Request, state: State<'_>) -> Response {
    let ttl = state.config.list_cache;
    if ttl.is_zero() {
        return run_list_page(req, &state)
            .await
            .unwrap_or_else(|f| failure_page(&state, req, f));
    }
    let slot = state.list_cache.slot(&req.original_uri().to_string(), ttl);
    // Only a 200 page is cached; anything else is answered as it is and not kept.
    let page = slot
        .get_or_try_init(|| async {
            match run_list_page(req, &state).await {
                Ok(resp) if resp.status() == StatusCode::OK => match resp.into_body().into_string().await {
                    Ok(body) => Ok(Arc::<str>::from(body)),
                    Err(_) => Err(failure_page(
                        &state,
                        req,
                        Failure::Internal("The page could not be built.".into()),
                    )),
                },
                Ok(resp) => Err(resp),
                Err(f) => Err(failure_page(&state, req, f)),
            }
        })
        .await;
    match page {
        Ok(html) => html_response(html),
        Err(resp) => resp,
    }
}

async fn run_list_page(req: &Request, state: &AppState) -> Result<Response, Failure> {
    let query = ListQuery::parse(&params(req))?;
    let filter = query.filter();
    let per = query.per.unwrap_or(state.config.page_size);
    let logger = &state.logger;
    let page = logger.list_runs(&filter, query.cursor, per).await?;
    let total = logger.count_runs(&filter, COUNT_CAP).await?;
    let job_names = logger.jobs().await?;
    let tz = state.config.timezone;
    let now = Utc::now();
    let base = base(req);
    // Scheduled jobs that stopped succeeding, flagged above the list as on the monitor.
    let missed: Vec<MissedView> = match joblog::schedules(logger).await {
        Ok(schedules) => schedules
            .into_iter()
            .filter(|s| s.overdue)
            .map(|s| {
                let runs = if s.missed == 1 { "run" } else { "runs" };
                MissedView {
                    job_q: form_urlencoded::byte_serialize(s.job.as_bytes()).collect(),
                    message: match s.last_success_at {
                        Some(t) => format!("last success {} ago — {} {runs} missed", ago(now - t), s.missed),
                        None => format!("never succeeded — {} {runs} missed", s.missed),
                    },
                    job: s.job,
                }
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "joblog-web: reading schedules failed");
            Vec::new()
        }
    };
    let rows: Vec<RunRow> = page
        .runs
        .iter()
        .map(|item| {
            let r = &item.run;
            let (last_message, last_level) = match (&item.last_detail, r.status) {
                (_, RunStatus::Error) if r.error.is_some() => (r.error.clone().unwrap_or_default(), "error"),
                (Some(d), _) => (d.message.clone(), d.level.as_str()),
                (None, _) => (String::new(), "info"),
            };
            RunRow {
                id: r.id,
                name: r.name.clone(),
                job: r.job.clone(),
                status: r.status.as_str(),
                started: format::time(r.started_at.unwrap_or(r.created_at), tz),
                duration: r.duration_at(now).map(format::duration).unwrap_or_default()
                    + if r.status.is_finished() { "" } else { " (running)" },
                host: r.host.clone().unwrap_or_default(),
                last_message: last_message
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(300)
                    .collect(),
                last_level,
            }
        })
        .collect();
    // The detail page's back link returns here: this list, with its filters and page.
    let mut back = query.filters_query();
    match query.cursor {
        Cursor::Before(id) => {
            back.append_pair("before", &id.to_string());
        }
        Cursor::After(id) => {
            back.append_pair("after", &id.to_string());
        }
        Cursor::First => {}
    }
    let back = back.finish();
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
    let ctx = minijinja::context! {
        missed => Serde(missed),
        runs => Serde(rows),
        filter => Serde(&query),
        filtered => !(query.status.is_empty() && query.job.is_empty() && query.q.is_empty()),
        paged => query.cursor != Cursor::First,
        statuses => RunStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        jobs => job_names,
        total => format!("{}{}", total.count, if total.capped { "+" } else { "" }),
        newer => page.newer.map(|c| query.url(&base, c)),
        older => page.older.map(|c| query.url(&base, c)),
        back_query => back_query,
    };
    Ok(render(state, req, "runs.html", ctx))
}

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
                (true, Some(d)) => format::duration(d),
                (false, Some(d)) => format!("{} (running)", format::duration(d)),
                (_, None) => String::new(),
            },
            host: r.host.clone().unwrap_or_default(),
            error: r.error.clone(),
        }
    }
}

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

async fn find_run(state: &AppState, id: &str) -> Result<RunRecord, Failure> {
    let not_found = || Failure::NotFound(format!("There is no run {id:?}."));
    let id: i64 = id.trim().parse().map_err(|_| not_found())?;
    state.logger.get_run(id).await?.ok_or_else(not_found)
}

#[handler]
pub(crate) async fn run_detail(req: &Request, Path(id): Path<String>, state: State<'_>) -> Response {
    match run_detail_page(req, &id, &state).await {
        Ok(resp) => resp,
        Err(f) => failure_page(&state, req, f),
    }
}

async fn run_detail_page(req: &Request, id: &str, state: &AppState) -> Result<Response, Failure> {
    let run = find_run(state, id).await?;
    let params = params(req);
    let from = parse_id(param(&params, "from"), "from")?;
    let tz = state.config.timezone;
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
    let base = base(req);
    // Back to the list the user came from: only the list's own parameters are kept.
    let back = match param(&params, "back") {
        Some(b) => {
            let kept: Vec<(String, String)> = form_urlencoded::parse(b.as_bytes())
                .filter(|(k, _)| matches!(k.as_ref(), "status" | "job" | "q" | "before" | "after" | "per"))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let q = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(kept)
                .finish();
            if q.is_empty() {
                format!("{base}/job_logs")
            } else {
                format!("{base}/job_logs?{q}")
            }
        }
        None => format!("{base}/job_logs"),
    };
    let keep_back = param(&params, "back")
        .map(|b| {
            format!(
                "&{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("back", b)
                    .finish()
            )
        })
        .unwrap_or_default();
    let ctx = minijinja::context! {
        run => Serde(RunView::of(&run, tz)),
        lines => Serde(lines),
        last_id => last_id,
        live => !run.status.is_finished() && !more_after,
        more_after => more_after,
        more_before => earlier_from.is_some(),
        later => format!("{base}/job_logs/{}?from={last_id}{keep_back}", run.id),
        earlier => format!("{base}/job_logs/{}?from={}{keep_back}", run.id, earlier_from.unwrap_or(0)),
        back => back,
    };
    Ok(render(state, req, "run.html", ctx))
}

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

#[handler]
pub(crate) async fn run_lines(req: &Request, Path(id): Path<String>, state: State<'_>) -> Response {
    let answer = async {
        let run = find_run(&state, &id).await?;
        let after = parse_id(param(&params(req), "after"), "after")?;
        let tz = state.config.timezone;
        let details = state.logger.details(run.id, after, LINES_PER_POLL + 1).await?;
        let more = details.len() as u64 > LINES_PER_POLL;
        let view = RunView::of(&run, tz);
        Ok::<_, Failure>(LinesAnswer {
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
        })
    }
    .await;
    let (status, body) = match answer {
        Ok(a) => (StatusCode::OK, serde_json::to_string(&a).unwrap_or_default()),
        Err(f) => {
            let (status, message) = f.into_parts();
            (status, serde_json::json!({ "error": message }).to_string())
        }
    };
    Response::builder()
        .status(status)
        .content_type("application/json")
        .header("Cache-Control", "no-store")
        .body(body)
}

#[handler]
pub(crate) async fn run_download(req: &Request, Path(id): Path<String>, state: State<'_>) -> Response {
    let run = match find_run(&state, &id).await {
        Ok(run) => run,
        Err(f) => return failure_page(&state, req, f),
    };
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
    // Streamed a page of lines at a time: a run with millions of lines costs one page of
    // memory, not the whole log.
    let logger = state.logger.clone();
    let tz = state.config.timezone;
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
    Response::builder()
        .content_type("text/plain; charset=utf-8")
        .header(
            "Content-Disposition",
            format!("attachment; filename=\"{safe_name}.log\""),
        )
        .body(poem::Body::from_bytes_stream(pages))
}

/// Runs per job drawn in the sparkline.
const SPARK_RUNS: u64 = 50;
/// The sparkline's size in SVG units.
const SPARK_W: f64 = 120.0;
const SPARK_H: f64 = 24.0;

/// A duration sparkline: polyline points, plus a dot per error run.
#[derive(Serialize, Default)]
struct Spark {
    points: String,
    errors: Vec<(String, String)>,
    max: String,
}

impl Spark {
    /// Oldest run on the left; `runs` come newest first.
    fn of(runs: &[RunListItem], now: chrono::DateTime<Utc>) -> Option<Self> {
        let mut pts: Vec<(f64, bool)> = runs
            .iter()
            .filter(|i| i.run.status.is_finished())
            .filter_map(|i| {
                i.run
                    .duration_at(now)
                    .map(|d| (d.as_secs_f64(), i.run.status == RunStatus::Error))
            })
            .collect();
        if pts.len() < 2 {
            return None;
        }
        pts.reverse();
        let max = pts.iter().map(|p| p.0).fold(0.0_f64, f64::max);
        let step = SPARK_W / (pts.len() - 1) as f64;
        let y = |v: f64| {
            if max <= 0.0 {
                SPARK_H - 2.0
            } else {
                (SPARK_H - 2.0) - v / max * (SPARK_H - 4.0)
            }
        };
        let mut spark = Spark {
            max: format::duration(std::time::Duration::from_secs_f64(max)),
            ..Spark::default()
        };
        let mut points = Vec::with_capacity(pts.len());
        for (i, (v, err)) in pts.iter().enumerate() {
            let (x, y) = (format!("{:.1}", i as f64 * step), format!("{:.1}", y(*v)));
            points.push(format!("{x},{y}"));
            if *err {
                spark.errors.push((x, y));
            }
        }
        spark.points = points.join(" ");
        Some(spark)
    }
}

/// A job's name as one URL path segment (everything but unreserved characters escaped).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Undoes percent-escapes of a path segment (`+` stays `+`); `None` if not UTF-8.
fn decode_segment(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let b = (h * 16 + l) as u8;
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `45 s`, `17 min`, `3 h`, `2 d`: how long ago, roughly.
fn ago(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3_599 => format!("{} min", s / 60),
        3_600..=86_399 => format!("{} h", s / 3_600),
        _ => format!("{} d", s / 86_400),
    }
}

#[derive(Serialize, Default)]
struct JobRow {
    job: String,
    job_q: String,
    job_path: String,
    scheduled: bool,
    schedule: String,
    paused: bool,
    next_run: String,
    next_run_iso: String,
    running_now: bool,
    last_id: Option<i64>,
    last_name: String,
    last_status: Option<&'static str>,
    last_duration: String,
    running: Option<String>,
    running_slow: bool,
    last_success: String,
    total: u64,
    success_rate: String,
    p50: String,
    p95: String,
    spark: Option<Spark>,
    skipped: Option<String>,
    missed: Option<String>,
    run_now_pending: bool,
}

#[handler]
pub(crate) async fn jobs_page(req: &Request, state: State<'_>) -> Response {
    let rows = async {
        let tz = state.config.timezone;
        let now = Utc::now();
        let summaries = state.logger.job_summaries().await?;
        let schedules = joblog::schedules(&state.logger).await?;
        let mut names: Vec<String> = summaries
            .iter()
            .map(|s| s.job.clone())
            .chain(schedules.iter().map(|s| s.job.clone()))
            .collect();
        names.sort();
        names.dedup();
        let mut rows = Vec::with_capacity(names.len());
        for name in names {
            let summary = summaries.iter().find(|s| s.job == name);
            let sched = schedules.iter().find(|s| s.job == name);
            let mut row = JobRow {
                job_q: form_urlencoded::byte_serialize(name.as_bytes()).collect(),
                job_path: path_segment(&name),
                schedule: "not scheduled".into(),
                last_success: "never".into(),
                success_rate: "—".into(),
                p50: "—".into(),
                p95: "—".into(),
                job: name.clone(),
                ..JobRow::default()
            };
            if let Some(s) = summary {
                let finished = s.counts.success + s.counts.error;
                row.total = s.counts.total();
                if finished > 0 {
                    row.success_rate = format!("{:.0} %", 100.0 * s.counts.success as f64 / finished as f64);
                }
                let p50 = s.p50;
                row.p50 = s.p50.map(format::duration).unwrap_or_else(|| "—".into());
                row.p95 = s.p95.map(format::duration).unwrap_or_else(|| "—".into());
                if let Some(t) = s.last_success.as_ref().and_then(|r| r.finished_at) {
                    row.last_success = format::time(t, tz);
                }
                if let Some(r) = &s.last_run {
                    row.last_id = Some(r.id);
                    row.last_name = r.name.clone();
                    row.last_status = Some(r.status.as_str());
                    let d = r.duration_at(now);
                    row.last_duration = d.map(format::duration).unwrap_or_default();
                    if !r.status.is_finished()
                        && let Some(d) = d
                    {
                        row.running = Some(match p50 {
                            Some(p) => format!(
                                "running for {} (p50 {})",
                                format::duration(d),
                                format::duration(p)
                            ),
                            None => format!("running for {}", format::duration(d)),
                        });
                        row.running_slow = p50.is_some_and(|p| d > p.saturating_mul(2));
                    }
                }
                let runs = state
                    .logger
                    .list_runs(
                        &RunFilter {
                            job: Some(name.clone()),
                            ..RunFilter::default()
                        },
                        Cursor::First,
                        SPARK_RUNS,
                    )
                    .await?;
                row.spark = Spark::of(&runs.runs, now);
            }
            if let Some(s) = sched {
                row.scheduled = true;
                row.schedule = s.description.clone().unwrap_or_else(|| s.schedule.clone());
                row.paused = s.paused;
                row.next_run = format::time(s.next_run_at, tz);
                row.next_run_iso = s.next_run_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                row.running_now = s.running;
                row.run_now_pending = s.run_now_requested_at.is_some();
                if row.last_id.is_none() {
                    row.last_id = s.last_run_id;
                    row.last_status = s.last_status.map(|st| st.as_str());
                }
                if s.skipped_count > 0 {
                    row.skipped = Some(match s.last_skipped_at {
                        Some(t) => format!(
                            "{} skipped, last {}",
                            s.skipped_count,
                            t.with_timezone(&tz).format("%H:%M")
                        ),
                        None => format!("{} skipped", s.skipped_count),
                    });
                }
                if s.overdue {
                    let runs = if s.missed == 1 { "run" } else { "runs" };
                    row.missed = Some(match s.last_success_at {
                        Some(t) => format!("last success {} ago — {} {runs} missed", ago(now - t), s.missed),
                        None => "never succeeded".into(),
                    });
                }
            }
            rows.push(row);
        }
        Ok::<_, Failure>(rows)
    }
    .await;
    match rows {
        Ok(rows) => {
            let base = base(req);
            let (cookie, fresh) = match csrf::cookie_value(req) {
                Some(c) => (c, false),
                None => (csrf::new_cookie_value(), true),
            };
            let mut resp = render(
                &state,
                req,
                "jobs.html",
                minijinja::context! {
                    jobs => Serde(rows),
                    csrf_field => csrf::FIELD,
                    csrf_token => csrf::token(&cookie),
                },
            );
            resp.headers_mut()
                .insert("Cache-Control", poem::http::HeaderValue::from_static("no-store"));
            if fresh && let Ok(v) = csrf::set_cookie(&cookie, &base).parse() {
                resp.headers_mut().insert(poem::http::header::SET_COOKIE, v);
            }
            resp
        }
        Err(f) => failure_page(&state, req, f),
    }
}

/// What a button on the jobs page asks for.
#[derive(Debug, Clone, Copy)]
enum JobAction {
    RunNow,
    Pause,
    Resume,
}

/// Largest form body accepted.
const MAX_FORM: usize = 4_096;

async fn job_action(req: &Request, body: poem::Body, state: &AppState, action: JobAction) -> Response {
    let outcome = async {
        let raw = body
            .into_bytes_limit(MAX_FORM)
            .await
            .map_err(|_| Failure::BadRequest("The form could not be read.".into()))?;
        let form: Vec<(String, String)> = form_urlencoded::parse(&raw)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        csrf::check(req, param(&form, csrf::FIELD)).map_err(|m| Failure::Forbidden(m.into()))?;
        // The inner path is `/jobs/<job>/<action>`; the job is taken raw and decoded once.
        let job = req
            .uri()
            .path()
            .strip_prefix("/jobs/")
            .and_then(|rest| rest.rsplit_once('/'))
            .and_then(|(job, _)| decode_segment(job))
            .ok_or_else(|| Failure::NotFound("There is no such job.".into()))?;
        let known = match action {
            JobAction::RunNow => joblog::request_run_now(&state.logger, &job).await?,
            JobAction::Pause => joblog::pause_job(&state.logger, &job).await?,
            JobAction::Resume => joblog::resume_job(&state.logger, &job).await?,
        };
        if !known {
            return Err(Failure::NotFound(format!("There is no scheduled job {job:?}.")));
        }
        tracing::info!(job, ?action, "joblog-web: job action");
        Ok(Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header("Location", format!("{}/jobs", base(req)))
            .finish())
    }
    .await;
    outcome.unwrap_or_else(|f| failure_page(state, req, f))
}

#[handler]
pub(crate) async fn job_run_now(req: &Request, body: poem::Body, state: State<'_>) -> Response {
    job_action(req, body, &state, JobAction::RunNow).await
}

#[handler]
pub(crate) async fn job_pause(req: &Request, body: poem::Body, state: State<'_>) -> Response {
    job_action(req, body, &state, JobAction::Pause).await
}

#[handler]
pub(crate) async fn job_resume(req: &Request, body: poem::Body, state: State<'_>) -> Response {
    job_action(req, body, &state, JobAction::Resume).await
}

#[handler]
pub(crate) async fn asset(req: &Request, Path(name): Path<String>, state: State<'_>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => Response::builder()
            .content_type(*content_type)
            .header("Cache-Control", "public, max-age=3600")
            .body(*body),
        None => failure_page(
            &state,
            req,
            Failure::NotFound(format!("There is no asset {name:?}.")),
        ),
    }
}
