//! `sync-app jobs` (the jobs monitor in a terminal) and `run-now`, `pause`, `resume JOB`,
//! against `DATABASE_URL`: every instance's scheduler on that database honours them.

use std::io::Write;

use anyhow::{Context, bail};
use chrono::Utc;
use joblog::JobLogger;
use joblog::format::duration;
use joblog::scheduler::ScheduleRecord;
use serde_json::{Value, json};

use super::runs::{iso, print_table, run_json, when};
use crate::configuration::Settings;
use crate::database;

/// What `run-now`, `pause` and `resume` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    /// Run at the next look of a scheduler (within a second or so).
    RunNow,
    /// No new runs until resumed.
    Pause,
    /// Runs again on schedule.
    Resume,
}

impl JobAction {
    fn name(self) -> &'static str {
        match self {
            Self::RunNow => "run_now",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }
}

/// One job as the monitor shows it: its summary and, if it is scheduled, its schedule.
struct Job {
    summary: Option<joblog::query::JobSummary>,
    schedule: Option<ScheduleRecord>,
}

async fn jobs_of(logger: &JobLogger) -> anyhow::Result<Vec<(String, Job)>> {
    let mut jobs: Vec<(String, Job)> = Vec::new();
    for s in logger
        .job_summaries()
        .await
        .context("reading the job summaries")?
    {
        jobs.push((
            s.job.clone(),
            Job {
                summary: Some(s),
                schedule: None,
            },
        ));
    }
    for s in logger
        .scheduled_jobs()
        .schedules()
        .await
        .context("reading the schedules")?
    {
        match jobs.iter_mut().find(|(name, _)| *name == s.job) {
            Some((_, job)) => job.schedule = Some(s),
            None => jobs.push((
                s.job.clone(),
                Job {
                    summary: None,
                    schedule: Some(s),
                },
            )),
        }
    }
    jobs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(jobs)
}

fn state(job: &Job) -> String {
    let running = job
        .summary
        .as_ref()
        .map_or(0, |s| s.counts.processing + s.counts.new);
    let mut parts = Vec::new();
    if let Some(s) = &job.schedule {
        if s.paused {
            parts.push("paused".to_owned());
        }
        if s.overdue {
            parts.push(format!("overdue ({} missed)", s.missed));
        }
        if s.run_now_requested_at.is_some() {
            parts.push("run now requested".to_owned());
        }
    }
    if running > 0 {
        parts.push("running".to_owned());
    }
    if parts.is_empty() {
        "ok".to_owned()
    } else {
        parts.join(", ")
    }
}

fn job_json(name: &str, job: &Job) -> Value {
    let summary = job.summary.as_ref();
    let schedule = job.schedule.as_ref();
    json!({
        "job": name,
        "schedule": schedule.map(|s| &s.schedule),
        "schedule_description": schedule.and_then(|s| s.description.as_ref()),
        "paused": schedule.is_some_and(|s| s.paused),
        "next_run_at": schedule.map(|s| iso(s.next_run_at)),
        "overdue": schedule.is_some_and(|s| s.overdue),
        "missed": schedule.map_or(0, |s| s.missed),
        "skipped": schedule.map_or(0, |s| s.skipped_count),
        "run_now_requested": schedule.is_some_and(|s| s.run_now_requested_at.is_some()),
        "counts": summary.map(|s| json!({
            "new": s.counts.new,
            "processing": s.counts.processing,
            "success": s.counts.success,
            "error": s.counts.error,
        })),
        "last_run": summary.and_then(|s| s.last_run.as_ref()).map(run_json),
        "last_success": summary.and_then(|s| s.last_success.as_ref()).map(run_json),
        "p50_ms": summary.and_then(|s| s.p50).map(|d| d.as_millis() as u64),
        "p95_ms": summary.and_then(|s| s.p95).map(|d| d.as_millis() as u64),
    })
}

fn ago(t: chrono::DateTime<Utc>) -> String {
    match (Utc::now() - t).to_std() {
        Ok(d) => format!("{} ago", duration(std::time::Duration::from_secs(d.as_secs()))),
        Err(_) => format!("in {}", duration((t - Utc::now()).to_std().unwrap_or_default())),
    }
}

fn job_row(name: &str, job: &Job) -> Vec<String> {
    let summary = job.summary.as_ref();
    let schedule = job.schedule.as_ref();
    let last = summary.and_then(|s| s.last_run.as_ref()).map_or_else(
        || "never".to_owned(),
        |r| format!("{} {}", r.status.as_str(), ago(r.created_at)),
    );
    let success = summary
        .and_then(|s| s.last_success.as_ref())
        .and_then(|r| r.finished_at)
        .or_else(|| schedule.and_then(|s| s.last_success_at))
        .map_or_else(|| "never".to_owned(), ago);
    let counts = summary.map_or_else(String::new, |s| {
        format!("{} / {}", s.counts.success, s.counts.error)
    });
    let p = |d: Option<std::time::Duration>| d.map_or_else(|| "—".to_owned(), duration);
    vec![
        name.to_owned(),
        schedule
            .map(|s| s.description.clone().unwrap_or_else(|| s.schedule.clone()))
            .unwrap_or_else(|| "not scheduled".to_owned()),
        state(job),
        schedule.map_or_else(|| "—".to_owned(), |s| format!("{} UTC", when(s.next_run_at))),
        last,
        success,
        counts,
        format!(
            "{} / {}",
            p(summary.and_then(|s| s.p50)),
            p(summary.and_then(|s| s.p95))
        ),
        schedule.map_or_else(|| "—".to_owned(), |s| s.skipped_count.to_string()),
    ]
}

/// `sync-app jobs`: every job with its schedule, state and summary.
pub async fn list(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let logger = database::open_existing(&settings.database_url).await?;
    let jobs = jobs_of(&logger).await?;
    let mut out = std::io::stdout().lock();
    if json {
        let all: Vec<Value> = jobs.iter().map(|(name, job)| job_json(name, job)).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
        return Ok(());
    }
    if jobs.is_empty() {
        writeln!(out, "no jobs in this database yet")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = jobs.iter().map(|(name, job)| job_row(name, job)).collect();
    print_table(
        &mut out,
        &[
            "JOB",
            "SCHEDULE",
            "STATE",
            "NEXT RUN",
            "LAST RUN",
            "LAST SUCCESS",
            "OK / FAILED",
            "P50 / P95",
            "SKIPPED",
        ],
        &rows,
    )?;
    Ok(())
}

/// `sync-app run-now | pause | resume JOB`.
pub async fn act(settings: &Settings, job: &str, action: JobAction, json: bool) -> anyhow::Result<()> {
    let logger = database::open_existing(&settings.database_url).await?;
    let control = logger.scheduled_jobs();
    let done = match action {
        JobAction::RunNow => control.run_now(job).await,
        JobAction::Pause => control.pause(job).await,
        JobAction::Resume => control.resume(job).await,
    }
    .with_context(|| format!("{} {job}", action.name()))?;
    if !done {
        let known: Vec<String> = control
            .schedules()
            .await
            .context("reading the schedules")?
            .into_iter()
            .map(|s| s.job)
            .collect();
        if known.is_empty() {
            bail!("no job is scheduled in this database (a `serve` or `demo` schedules its sync)");
        }
        bail!(
            "{job} is not a scheduled job here; scheduled: {}",
            known.join(", ")
        );
    }
    let schedule = control.schedule(job).await.context("reading the schedule")?;
    if json {
        println!(
            "{}",
            json!({
                "job": job,
                "action": action.name(),
                "paused": schedule.as_ref().map(|s| s.paused),
                "next_run_at": schedule.as_ref().map(|s| iso(s.next_run_at)),
            })
        );
        return Ok(());
    }
    match action {
        JobAction::RunNow => {
            println!("{job}: run requested; a scheduler on this database starts it within seconds")
        }
        JobAction::Pause => println!("{job}: paused; no new runs start until `sync-app resume {job}`"),
        JobAction::Resume => println!(
            "{job}: resumed; next run {}",
            schedule.map_or_else(
                || "on schedule".to_owned(),
                |s| format!("{} UTC", when(s.next_run_at))
            )
        ),
    }
    Ok(())
}
