//! Alerts of scheduled jobs: when a run fails, when a job becomes overdue, and when it
//! recovers, a JSON message is put in the `job_alerts` outbox for the job's webhook.
//!
//! One alert per incident and one per recovery, whatever the number of instances: each
//! job's row in `job_schedules` has an alert state (ok, failed, overdue), and an alert is
//! written only by the instance whose compare-and-set moves that state — in the same
//! transaction as the alert. A run's failure and recovery are seen by the instance that
//! ran it (the lease holder); an overdue job by whichever instance looks first. Delivery
//! (the [`webhook`](super::webhook) module) is separate: it never holds up a job.

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{DatabaseConnection, TransactionTrait};
use serde_json::json;

use super::Schedule;
use super::store::{required_ts, ts};
use crate::model::RunRecord;
use crate::sql::{Sql, db_now};
use crate::{JobLogger, Result, RunStatus};

/// The job's alert state in `job_schedules.alert_state`.
const OK: i16 = 0;
const FAILED: i16 = 1;
const OVERDUE: i16 = 2;

/// Occurrences missed since the last success that make a job overdue (as on the monitor).
pub(crate) const OVERDUE_AFTER: u64 = 2;

/// Where a job's alerts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AlertTarget {
    /// The webhook's URL (`http://` or `https://`).
    pub(crate) webhook: String,
    /// The pages' base URL, for a link to the run (`{base}/job_logs/{id}`).
    pub(crate) links: Option<String>,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Failed,
    Overdue,
    Recovered,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Overdue => "overdue",
            Self::Recovered => "recovered",
        }
    }
}

/// Checks a webhook URL: `http://` or `https://` with a host.
pub(crate) fn check_webhook(url: &str) -> Result<()> {
    let ok = url.parse::<http::Uri>().ok().filter(|u| {
        matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
    });
    match ok {
        Some(_) => Ok(()),
        None => Err(crate::Error::Config(format!(
            "alert webhook {url:?} is not an http:// or https:// URL"
        ))),
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// After a run of `job` ended with `status`: a failure opens an incident (one alert), a
/// success closes it (one "recovered" alert).
pub(crate) async fn after_run(
    logger: &JobLogger,
    job: &str,
    target: &AlertTarget,
    run_id: Option<i64>,
    status: RunStatus,
) -> Result<bool> {
    let (from, to, event): (&[i16], i16, Event) = match status {
        RunStatus::Error => (&[OK], FAILED, Event::Failed),
        RunStatus::Success => (&[FAILED, OVERDUE], OK, Event::Recovered),
        _ => return Ok(false),
    };
    let run = match run_id {
        Some(id) => logger.get_run(id).await?,
        None => None,
    };
    raise(logger.db(), job, target, from, to, event, run.as_ref(), 0).await
}

/// Looks whether `job` has become overdue ([`OVERDUE_AFTER`] occurrences missed since its
/// last success, not paused) and raises the alert if no instance has yet.
pub(crate) async fn check_overdue(
    logger: &JobLogger,
    job: &str,
    schedule: &Schedule,
    target: &AlertTarget,
) -> Result<bool> {
    let db = logger.db();
    let backend = db.get_database_backend();
    let mut q = Sql::new(
        backend,
        "SELECT paused, alert_state, last_success_at, last_run_id, ",
    );
    q.push(db_now(backend))
        .push(" FROM job_schedules WHERE job = ")
        .bind(job);
    let Some(row) = q.one(db).await? else {
        return Ok(false);
    };
    let paused: bool = row.try_get_by_index(0)?;
    let state: i16 = row.try_get_by_index(1)?;
    let Some(last_success) = ts(&row, 2)? else {
        return Ok(false);
    };
    if paused || state != OK {
        return Ok(false);
    }
    let now = required_ts(&row, 4)?;
    let missed = schedule.count_between(last_success, now, 10_000);
    if missed < OVERDUE_AFTER {
        return Ok(false);
    }
    let last_run: Option<i64> = row.try_get_by_index(3)?;
    let run = match last_run {
        Some(id) => logger.get_run(id).await?,
        None => None,
    };
    raise(
        db,
        job,
        target,
        &[OK],
        OVERDUE,
        Event::Overdue,
        run.as_ref(),
        missed,
    )
    .await
}

/// The compare-and-set of the job's alert state and, if this instance made it, the alert
/// — in one transaction.
#[allow(clippy::too_many_arguments)]
async fn raise(
    db: &DatabaseConnection,
    job: &str,
    target: &AlertTarget,
    from: &[i16],
    to: i16,
    event: Event,
    run: Option<&RunRecord>,
    missed: u64,
) -> Result<bool> {
    let backend = db.get_database_backend();
    let txn = db.begin().await?;
    let mut q = Sql::new(backend, "UPDATE job_schedules SET alert_state = ");
    q.bind(to)
        .push(" WHERE job = ")
        .bind(job)
        .push(" AND alert_state IN (");
    for (i, state) in from.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.bind(*state);
    }
    q.push(")");
    if q.execute(&txn).await? != 1 {
        txn.rollback().await?;
        return Ok(false);
    }
    let payload = payload(job, target, event, run, missed);
    let mut q = Sql::new(
        backend,
        "INSERT INTO job_alerts (job, event, payload, webhook, created_at, attempts, next_attempt_at) VALUES (",
    );
    let now = db_now(backend);
    q.bind(job)
        .push(", ")
        .bind(event.as_str())
        .push(", ")
        .bind(payload.to_string())
        .push(", ")
        .bind(target.webhook.as_str())
        .push(", ")
        .push(now)
        .push(", 0, ")
        .push(now)
        .push(")");
    q.execute(&txn).await?;
    txn.commit().await?;
    tracing::info!(job, event = event.as_str(), "joblog: alert raised");
    Ok(true)
}

/// The message: `{event, job, run_id, run_name, status, error, started_at, finished_at,
/// url, missed, text}`; `text` is what Slack and Mattermost show.
fn payload(
    job: &str,
    target: &AlertTarget,
    event: Event,
    run: Option<&RunRecord>,
    missed: u64,
) -> serde_json::Value {
    let url = match (&target.links, run) {
        (Some(base), Some(r)) => Some(format!("{}/job_logs/{}", base.trim_end_matches('/'), r.id)),
        _ => None,
    };
    let link = url.as_ref().map(|u| format!(" {u}")).unwrap_or_default();
    let name = run.map(|r| format!(" (run {})", r.name)).unwrap_or_default();
    let text = match event {
        Event::Failed => {
            let error = run
                .and_then(|r| r.error.as_deref())
                .unwrap_or("no error recorded");
            format!("❌ {job} failed{name}: {error}{link}")
        }
        Event::Overdue => {
            format!("⚠️ {job} is overdue: {missed} scheduled runs missed since its last success{link}")
        }
        Event::Recovered => format!("✅ {job} recovered{name}: it succeeded again{link}"),
    };
    json!({
        "event": event.as_str(),
        "job": job,
        "run_id": run.map(|r| r.id),
        "run_name": run.map(|r| r.name.clone()),
        "status": run.map(|r| r.status.as_str()),
        "error": run.and_then(|r| r.error.clone()),
        "started_at": run.and_then(|r| r.started_at).map(iso),
        "finished_at": run.and_then(|r| r.finished_at).map(iso),
        "url": url,
        "missed": missed,
        "text": text,
    })
}
