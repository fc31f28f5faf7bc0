//! Alerts of scheduled jobs: when a run fails, when a job becomes overdue, and when it
//! recovers, a JSON message is put in the `job_alerts` outbox for the job's webhook.
//!
//! One alert per incident and one per recovery, whatever the number of instances: each
//! job has an alert state in `job_alert_states` (ok, failed, overdue), and an alert is
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

/// The job's alert state in `job_alert_states.state`.
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
        // The URL is a secret (a Slack webhook's path is its key): not repeated here.
        None => Err(crate::Error::Config(
            "the alert webhook is not an http:// or https:// URL with a host".into(),
        )),
    }
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Looks at the job's row and raises what it calls for: its last run failed while all was
/// well (`failed`), its last run succeeded after an incident (`recovered`), or
/// [`OVERDUE_AFTER`] occurrences went by since its last success while it is neither paused
/// nor running (`overdue`). Every instance with alerts calls it every few seconds, and the
/// one that ran the job right after the run — so an alert is not lost when the process
/// that ran the job died before raising it, or ran it without alerts. A run cancelled by
/// a shutdown is not an incident.
pub(crate) async fn check(
    logger: &JobLogger,
    job: &str,
    schedule: &Schedule,
    target: &AlertTarget,
) -> Result<bool> {
    let db = logger.db();
    let backend = db.get_database_backend();
    let mut q = Sql::new(
        backend,
        "SELECT s.paused, COALESCE(a.state, 0), s.last_success_at, s.last_run_id, s.last_status, s.lease_owner, \
         s.lease_expires_at, ",
    );
    q.push(db_now(backend))
        .push(" FROM job_schedules s LEFT JOIN job_alert_states a ON a.job = s.job WHERE s.job = ")
        .bind(job);
    let Some(row) = q.one(db).await? else {
        return Ok(false);
    };
    let paused: bool = row.try_get_by_index(0)?;
    // `COALESCE(smallint, 0)` is a smallint on SQLite, an integer on PostgreSQL, a bigint
    // on MySQL.
    let state: i64 = row
        .try_get_by_index::<i16>(1)
        .map(i64::from)
        .or_else(|_| row.try_get_by_index::<i32>(1).map(i64::from))
        .or_else(|_| row.try_get_by_index::<i64>(1))?;
    let state = i16::try_from(state).unwrap_or(OK);
    let last_success = ts(&row, 2)?;
    let last_run: Option<i64> = row.try_get_by_index(3)?;
    let last_status = row
        .try_get_by_index::<Option<i16>>(4)?
        .and_then(RunStatus::from_code);
    let lease_owner: Option<String> = row.try_get_by_index(5)?;
    let lease_expires = ts(&row, 6)?;
    let now = required_ts(&row, 7)?;
    let running = lease_owner.is_some() && lease_expires.is_some_and(|e| e >= now);
    let run = || async {
        match last_run {
            Some(id) => logger.get_run(id).await,
            None => Ok(None),
        }
    };
    let seen = Seen { last_run };
    match (state, last_status) {
        (OK, Some(RunStatus::Error)) => {
            let run = run().await?;
            if run.as_ref().is_some_and(|r| !r.status.is_finished()) {
                // The run's end is still on its way to the database: the next check.
                return Ok(false);
            }
            let cancelled = run
                .as_ref()
                .and_then(|r| r.error.as_deref())
                .is_some_and(|e| e.starts_with("cancelled"));
            if cancelled {
                return Ok(false);
            }
            raise(
                db,
                job,
                target,
                &[OK],
                FAILED,
                Event::Failed,
                run.as_ref(),
                0,
                seen,
            )
            .await
        }
        (FAILED | OVERDUE, Some(RunStatus::Success)) => {
            let run = run().await?;
            raise(
                db,
                job,
                target,
                &[FAILED, OVERDUE],
                OK,
                Event::Recovered,
                run.as_ref(),
                0,
                seen,
            )
            .await
        }
        (OK, _) if !paused && !running => {
            let Some(since) = last_success else {
                return Ok(false);
            };
            let missed = schedule.count_between(since, now, 10_000);
            if missed < OVERDUE_AFTER {
                return Ok(false);
            }
            let run = run().await?;
            raise(
                db,
                job,
                target,
                &[OK],
                OVERDUE,
                Event::Overdue,
                run.as_ref(),
                missed,
                seen,
            )
            .await
        }
        _ => Ok(false),
    }
}

/// What [`check`] read, which must still hold when it moves the state: the same last run
/// (a run that ended in between is looked at by the next check).
#[derive(Debug, Clone, Copy)]
struct Seen {
    last_run: Option<i64>,
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
    seen: Seen,
) -> Result<bool> {
    let backend = db.get_database_backend();
    let txn = db.begin().await?;
    let mut q = Sql::new(
        backend,
        if backend == sea_orm::DbBackend::MySql {
            "INSERT IGNORE INTO job_alert_states (job, state) VALUES ("
        } else {
            "INSERT INTO job_alert_states (job, state) VALUES ("
        },
    );
    q.bind(job).push(", 0)");
    if backend != sea_orm::DbBackend::MySql {
        q.push(" ON CONFLICT (job) DO NOTHING");
    }
    q.execute(&txn).await?;
    let mut q = Sql::new(backend, "UPDATE job_alert_states SET state = ");
    q.bind(to).push(" WHERE job = ").bind(job).push(" AND state IN (");
    for (i, state) in from.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.bind(*state);
    }
    q.push(") AND EXISTS (SELECT 1 FROM job_schedules s WHERE s.job = ")
        .bind(job);
    match seen.last_run {
        Some(id) => q.push(" AND s.last_run_id = ").bind(id),
        None => q.push(" AND s.last_run_id IS NULL"),
    };
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
/// Longest error (in characters) an alert carries: the whole one is on the run's page, and
/// the message must fit MySQL's `TEXT` (64 KiB) twice over.
const MAX_ERROR_CHARS: usize = 4_000;

fn capped(error: &str) -> String {
    if error.chars().count() <= MAX_ERROR_CHARS {
        error.to_owned()
    } else {
        let cut: String = error.chars().take(MAX_ERROR_CHARS).collect();
        format!("{cut} … [cut; the whole error is on the run's page]")
    }
}

fn payload(
    job: &str,
    target: &AlertTarget,
    event: Event,
    run: Option<&RunRecord>,
    missed: u64,
) -> serde_json::Value {
    let error = run.and_then(|r| r.error.as_deref()).map(capped);
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
        "error": error,
        "started_at": run.and_then(|r| r.started_at).map(iso),
        "finished_at": run.and_then(|r| r.finished_at).map(iso),
        "url": url,
        "missed": missed,
        "text": text,
    })
}
