//! The jobs monitor, `/jobs`: every job that has runs or a schedule — its schedule and next
//! run, last run, success rate, p50 / p95 and a sparkline of its recent durations, missed
//! and skipped runs — and its buttons, `POST /jobs/:job/run_now`, `/pause`, `/resume`
//! (CSRF-checked). The page costs a fixed number of queries, whatever the number of jobs.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use joblog::RunStatus;
use joblog::query::{JobSummary, RecentRun};
use joblog::scheduler::ScheduleRecord;
use minijinja::context;
use minijinja::value::Serde;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use poem::http::StatusCode;
use poem::http::header::{AUTHORIZATION, CACHE_CONTROL, LOCATION, SET_COOKIE};
use poem::web::{Form, Path};
use poem::{IntoResponse, Request, Response, handler};
use serde::{Deserialize, Serialize};

use super::State;
use crate::{AppState, PageError, csrf, format, layout, params};

/// Largest form body accepted (the buttons send one token).
pub(crate) const MAX_FORM: usize = 4_096;
/// Runs per job drawn in the sparkline.
const SPARK_RUNS: u64 = 50;
/// The sparkline's size in SVG units.
const SPARK_W: f64 = 120.0;
const SPARK_H: f64 = 24.0;
/// What a job's name keeps unescaped in a path segment: RFC 3986's unreserved characters.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A button's form: the CSRF token.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct ActionForm {
    /// The token [`csrf`] derives from the browser's cookie.
    #[serde(deserialize_with = "params::text")]
    pub(crate) csrf_token: Option<String>,
}

/// A duration sparkline: polyline points, plus a dot per error run.
#[derive(Serialize, Default)]
struct Spark {
    points: String,
    errors: Vec<(String, String)>,
    max: String,
}

impl Spark {
    /// Oldest run on the left; `runs` come newest first.
    fn of(runs: &[RecentRun]) -> Option<Self> {
        let mut pts: Vec<(f64, bool)> = runs
            .iter()
            .filter(|r| r.status.is_finished())
            .filter_map(|r| {
                r.duration
                    .map(|d| (d.as_secs_f64(), r.status == RunStatus::Error))
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
            max: joblog::format::duration(Duration::from_secs_f64(max)),
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

/// One row of the monitor.
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
    total: String,
    success_rate: String,
    p50: String,
    p95: String,
    spark: Option<Spark>,
    skipped: Option<String>,
    missed: Option<String>,
    run_now_pending: bool,
    alert_error: Option<String>,
}

impl JobRow {
    fn new(name: &str) -> Self {
        Self {
            job: name.to_owned(),
            job_q: form_urlencoded::byte_serialize(name.as_bytes()).collect(),
            job_path: utf8_percent_encode(name, PATH_SEGMENT).to_string(),
            schedule: "not scheduled".into(),
            last_success: "never".into(),
            success_rate: "—".into(),
            p50: "—".into(),
            p95: "—".into(),
            ..Self::default()
        }
    }

    /// What the job's runs say.
    fn runs(&mut self, s: &JobSummary, tz: chrono_tz::Tz, now: DateTime<Utc>) {
        let duration = |d: Option<Duration>| d.map(joblog::format::duration).unwrap_or_else(|| "—".into());
        let finished = s.counts.success + s.counts.error;
        self.total = joblog::format::count(s.counts.total());
        if finished > 0 {
            self.success_rate = format!("{:.0} %", 100.0 * s.counts.success as f64 / finished as f64);
        }
        self.p50 = duration(s.p50);
        self.p95 = duration(s.p95);
        if let Some(t) = s.last_success.as_ref().and_then(|r| r.finished_at) {
            self.last_success = format::time(t, tz);
        }
        if let Some(r) = &s.last_run {
            self.last_id = Some(r.id);
            self.last_name = r.name.clone();
            self.last_status = Some(r.status.as_str());
            let d = r.duration_at(now);
            self.last_duration = d.map(joblog::format::duration).unwrap_or_default();
            if !r.status.is_finished()
                && let Some(d) = d
            {
                let elapsed = joblog::format::duration(d);
                self.running = Some(match s.p50 {
                    Some(p) => format!("running for {elapsed} (p50 {})", joblog::format::duration(p)),
                    None => format!("running for {elapsed}"),
                });
                self.running_slow = s.p50.is_some_and(|p| d > p.saturating_mul(2));
            }
        }
        self.spark = Spark::of(&s.recent);
    }

    /// What the job's schedule says.
    fn schedule(&mut self, s: &ScheduleRecord, tz: chrono_tz::Tz, now: DateTime<Utc>) {
        self.scheduled = true;
        self.schedule = s.description.clone().unwrap_or_else(|| s.schedule.clone());
        self.paused = s.paused;
        self.next_run = format::time(s.next_run_at, tz);
        self.next_run_iso = s.next_run_at.to_rfc3339_opts(SecondsFormat::Secs, true);
        self.running_now = s.running;
        self.run_now_pending = s.run_now_requested_at.is_some();
        if self.last_id.is_none() {
            self.last_id = s.last_run_id;
            self.last_status = s.last_status.map(|st| st.as_str());
        }
        if let Some(error) = &s.alert_error {
            self.alert_error = Some(match s.alert_error_at {
                Some(t) => format!(
                    "alert webhook failing since {}: {error}",
                    t.with_timezone(&tz).format("%H:%M")
                ),
                None => format!("alert webhook failing: {error}"),
            });
        }
        if s.skipped_count > 0 {
            self.skipped = Some(match s.last_skipped_at {
                Some(t) => format!(
                    "{} skipped, last {}",
                    s.skipped_count,
                    t.with_timezone(&tz).format("%H:%M")
                ),
                None => format!("{} skipped", s.skipped_count),
            });
        }
        if s.overdue {
            self.missed = Some(match s.last_success_at {
                Some(_) => format::missed(s.last_success_at, s.missed, now),
                None => "never succeeded".into(),
            });
        }
    }
}

/// Every job with runs or a schedule, by name: three statements in all.
async fn rows(state: &AppState) -> Result<Vec<JobRow>, PageError> {
    let tz = state.config().timezone;
    let now = Utc::now();
    let summaries = state.logger.job_summaries_with(SPARK_RUNS).await?;
    let schedules = state.logger.scheduled_jobs().schedules().await?;
    let mut names: Vec<&str> = summaries
        .iter()
        .map(|s| s.job.as_str())
        .chain(schedules.iter().map(|s| s.job.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    Ok(names
        .into_iter()
        .map(|name| {
            let mut row = JobRow::new(name);
            if let Some(s) = summaries.iter().find(|s| s.job == name) {
                row.runs(s, tz, now);
            }
            if let Some(s) = schedules.iter().find(|s| s.job == name) {
                row.schedule(s, tz, now);
            }
            row
        })
        .collect())
}

/// `GET /jobs`. Sets the CSRF cookie the buttons need when the browser has none.
#[handler]
pub(crate) async fn monitor(req: &Request, state: State<'_>) -> Result<Response, PageError> {
    let rows = rows(&state).await?;
    let base = layout::base(req);
    let (cookie, fresh) = match state.csrf.cookie_value(req) {
        Some(c) => (c, false),
        None => (csrf::new_cookie_value()?, true),
    };
    let ctx = context! {
        jobs => Serde(rows),
        csrf_field => csrf::FIELD,
        csrf_token => state.csrf.token(&cookie).await?,
    };
    let mut resp = state
        .layout
        .render("jobs.html", &base, ctx)?
        .with_header(CACHE_CONTROL, "no-store")
        .into_response();
    if fresh {
        resp.headers_mut().insert(
            SET_COOKIE,
            state
                .csrf
                .set_cookie(req, &cookie, &base)
                .parse()
                .map_err(|_| PageError::internal("The security cookie could not be set."))?,
        );
    }
    Ok(resp)
}

/// What a button on the monitor asks for: the last segment of its path.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JobAction {
    /// One run as soon as possible.
    RunNow,
    /// No new runs until resumed.
    Pause,
    /// Runs on schedule again.
    Resume,
}

/// `POST /jobs/:job/run_now`, `/pause`, `/resume`: acts, then back to the monitor.
#[handler]
pub(crate) async fn act(
    req: &Request,
    Path((job, action)): Path<(String, JobAction)>,
    Form(form): Form<ActionForm>,
    state: State<'_>,
) -> Result<Response, PageError> {
    state.csrf.check(req, form.csrf_token.as_deref()).await?;
    let jobs = state.logger.scheduled_jobs();
    let known = match action {
        JobAction::RunNow => jobs.run_now(&job).await?,
        JobAction::Pause => jobs.pause(&job).await?,
        JobAction::Resume => jobs.resume(&job).await?,
    };
    if !known {
        return Err(PageError::not_found(format!(
            "There is no scheduled job {job:?}."
        )));
    }
    // Who did it: the client's address (the proxy's, behind one) and the Basic auth user.
    tracing::info!(
        job = ?job,
        ?action,
        remote = %Remote(req.remote_addr()),
        user = ?basic_user(req),
        "joblog-web: job action"
    );
    Ok(Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(LOCATION, format!("{}/jobs", layout::base(req)))
        .finish())
}

/// The client's address as a log line shows it: `203.0.113.7:4321`, not poem's
/// `socket://203.0.113.7:4321`.
pub(crate) struct Remote<'a>(pub(crate) &'a poem::Addr);

impl std::fmt::Display for Remote<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_socket_addr() {
            Some(addr) => addr.fmt(f),
            None => self.0.fmt(f),
        }
    }
}

/// Longest user name a log line shows.
const MAX_LOGGED_USER: usize = 64;

/// The user name of the request's Basic `Authorization` header, for the log (cut short,
/// lossy; logged Debug-formatted so that control characters cannot forge lines). Only
/// what the client sent: the auth middleware in front decides whether it is valid.
fn basic_user(req: &Request) -> Option<String> {
    use base64::Engine as _;
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let user = decoded.split(|&b| b == b':').next()?;
    Some(
        String::from_utf8_lossy(user)
            .chars()
            .take(MAX_LOGGED_USER)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logged_user_is_the_basic_user_name() {
        let req = |auth: &str| Request::builder().header("authorization", auth).finish();
        // admin:s3cret
        assert_eq!(
            basic_user(&req("Basic YWRtaW46czNjcmV0")).as_deref(),
            Some("admin")
        );
        assert_eq!(
            basic_user(&req("basic YWRtaW46czNjcmV0")).as_deref(),
            Some("admin")
        );
        assert_eq!(basic_user(&req("Bearer abc")), None);
        assert_eq!(basic_user(&req("Basic !!!")), None);
        assert_eq!(basic_user(&Request::default()), None);
    }

    #[test]
    fn job_names_are_one_path_segment() {
        assert_eq!(JobRow::new("Nightly report").job_path, "Nightly%20report");
        assert_eq!(JobRow::new("a/b+c~d_e.f-g").job_path, "a%2Fb%2Bc~d_e.f-g");
        assert_eq!(
            JobRow::new("Bericht für Ä").job_path,
            "Bericht%20f%C3%BCr%20%C3%84"
        );
    }
}
