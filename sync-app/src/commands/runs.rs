//! `sync-app runs`, `runs show ID`, `runs tail [ID | --job J]`: the run list and a run's log
//! in a terminal, against `DATABASE_URL` — any instance's database. `--json` prints the same
//! as JSON for scripts (`runs tail --json`: one JSON object a line).

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use joblog::format::duration;
use joblog::query::{Cursor, DetailRecord, RunFilter, RunListItem, RunRecord};
use joblog::{JobLogger, RunStatus};
use serde_json::{Value, json};

use crate::configuration::Settings;
use crate::database;

/// How often `runs tail` looks for new lines.
const TAIL_POLL: Duration = Duration::from_millis(500);
/// Details read per statement.
const CHUNK: u64 = 10_000;

/// What `sync-app runs` lists.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only runs of this job.
    pub job: Option<String>,
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// At most this many (newest first).
    pub limit: u64,
    /// JSON instead of a table.
    pub json: bool,
}

/// A time as the tables show it (UTC, to the second).
pub(crate) fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A time as the JSON has it (RFC 3339, UTC, microseconds).
pub(crate) fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A run as JSON (the same fields as `/api/runs/{id}` will have).
pub(crate) fn run_json(r: &RunRecord) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "job": r.job,
        "status": r.status.as_str(),
        "created_at": iso(r.created_at),
        "started_at": r.started_at.map(iso),
        "finished_at": r.finished_at.map(iso),
        "duration_ms": r.duration().map(|d| d.as_millis() as u64),
        "host": r.host,
        "pid": r.pid,
        "error": r.error,
    })
}

fn detail_json(d: &DetailRecord) -> Value {
    json!({
        "id": d.id,
        "level": d.level.as_str(),
        "message": d.message,
        "created_at": iso(d.created_at),
    })
}

/// Cuts `s` to `max` characters on one line, with `…` where it was cut.
pub(crate) fn cut(s: &str, max: usize) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max {
        flat
    } else {
        format!(
            "{}…",
            flat.chars().take(max.saturating_sub(1)).collect::<String>()
        )
    }
}

/// Prints rows as a table: columns padded to their widest cell, the last one not padded.
pub(crate) fn print_table(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    (*c).to_owned()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// `sync-app runs`: the newest runs, as the run list shows them.
pub async fn list(settings: &Settings, options: &ListOptions) -> anyhow::Result<()> {
    let logger = database::open_existing(&settings.database_url).await?;
    let filter = RunFilter {
        status: options.status,
        job: options.job.clone(),
        text: None,
    };
    let page = logger
        .list_runs(&filter, Cursor::First, options.limit)
        .await
        .context("reading the runs")?;
    let mut out = std::io::stdout().lock();
    if options.json {
        let runs: Vec<Value> = page
            .runs
            .iter()
            .map(|item| {
                let mut v = run_json(&item.run);
                v["last_message"] = json!(item.last_detail.as_ref().map(|d| &d.message));
                v
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&runs)?)?;
        return Ok(());
    }
    if page.runs.is_empty() {
        writeln!(out, "no runs{}", describe(&filter))?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page.runs.iter().map(list_row).collect();
    print_table(
        &mut out,
        &[
            "ID",
            "NAME",
            "JOB",
            "STATUS",
            "STARTED (UTC)",
            "DURATION",
            "LAST LINE",
        ],
        &rows,
    )?;
    if page.older.is_some() {
        writeln!(out, "(newest {} shown; --limit N for more)", page.runs.len())?;
    }
    Ok(())
}

fn describe(filter: &RunFilter) -> String {
    let mut parts = Vec::new();
    if let Some(job) = &filter.job {
        parts.push(format!("of job {job}"));
    }
    if let Some(status) = filter.status {
        parts.push(format!("with status {}", status.as_str()));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" {}", parts.join(" "))
    }
}

fn list_row(item: &RunListItem) -> Vec<String> {
    let r = &item.run;
    let took = match r.finished_at {
        Some(_) => r.duration().map(duration).unwrap_or_default(),
        None => r
            .duration_at(Utc::now())
            .map(|d| format!("{} so far", duration(d)))
            .unwrap_or_default(),
    };
    let last = r
        .error
        .clone()
        .or_else(|| item.last_detail.as_ref().map(|d| d.message.clone()))
        .unwrap_or_default();
    vec![
        r.id.to_string(),
        r.name.clone(),
        r.job.clone(),
        r.status.as_str().to_owned(),
        when(r.started_at.unwrap_or(r.created_at)),
        took,
        cut(&last, 70),
    ]
}

/// Every detail of a run after `after`, in order.
async fn all_details(
    logger: &JobLogger,
    id: i64,
    mut after: Option<i64>,
) -> anyhow::Result<Vec<DetailRecord>> {
    let mut all = Vec::new();
    loop {
        let chunk = logger
            .details(id, after, CHUNK)
            .await
            .context("reading the log")?;
        let full = chunk.len() as u64 == CHUNK;
        after = chunk.last().map(|d| d.id).or(after);
        all.extend(chunk);
        if !full {
            return Ok(all);
        }
    }
}

async fn run_or_fail(logger: &JobLogger, id: i64) -> anyhow::Result<RunRecord> {
    match logger.get_run(id).await.context("reading the run")? {
        Some(run) => Ok(run),
        None => bail!("there is no run {id} in this database"),
    }
}

fn detail_line(d: &DetailRecord) -> String {
    format!(
        "{}  {:<5}  {}",
        d.created_at.format("%H:%M:%S%.3f"),
        d.level.as_str().to_uppercase(),
        d.message
    )
}

/// `sync-app runs show ID`: the run's summary and its whole log.
pub async fn show(settings: &Settings, id: i64, json: bool) -> anyhow::Result<()> {
    let logger = database::open_existing(&settings.database_url).await?;
    let run = run_or_fail(&logger, id).await?;
    let details = all_details(&logger, id, None).await?;
    let mut out = std::io::stdout().lock();
    if json {
        let v = json!({
            "run": run_json(&run),
            "details": details.iter().map(detail_json).collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(out, "Run {}  {}  {}", run.id, run.name, run.job)?;
    writeln!(out, "Status    {}", run.status.as_str())?;
    if let Some(host) = &run.host {
        let pid = run.pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        writeln!(out, "Host      {host}{pid}")?;
    }
    writeln!(out, "Created   {} UTC", when(run.created_at))?;
    if let Some(t) = run.started_at {
        writeln!(out, "Started   {} UTC", when(t))?;
    }
    match run.finished_at {
        Some(t) => {
            writeln!(out, "Finished  {} UTC", when(t))?;
            if let Some(d) = run.duration() {
                writeln!(out, "Duration  {}", duration(d))?;
            }
        }
        None => {
            if let Some(d) = run.duration_at(Utc::now()) {
                writeln!(
                    out,
                    "Running   for {} (sync-app runs tail {id} follows it)",
                    duration(d)
                )?;
            }
        }
    }
    if let Some(e) = &run.error {
        writeln!(out, "Error     {e}")?;
    }
    writeln!(out, "\nLog ({} lines, times UTC)", details.len())?;
    for d in &details {
        writeln!(out, "{}", detail_line(d))?;
    }
    Ok(())
}

/// `sync-app runs tail [ID | --job J]`: prints the run's log and follows it until the run
/// ends, like `tail -f`; `Ok(true)` when it ended in success, `Ok(false)` in error.
pub async fn tail(
    settings: &Settings,
    id: Option<i64>,
    job: Option<&str>,
    json: bool,
) -> anyhow::Result<bool> {
    let logger = database::open_existing(&settings.database_url).await?;
    let id = match (id, job) {
        (Some(id), _) => id,
        (None, Some(job)) => {
            let filter = RunFilter {
                job: Some(job.to_owned()),
                ..RunFilter::default()
            };
            let page = logger
                .list_runs(&filter, Cursor::First, 1)
                .await
                .context("reading the runs")?;
            match page.runs.first() {
                Some(item) => item.run.id,
                None => bail!("job {job} has no runs in this database"),
            }
        }
        (None, None) => bail!("which run? `sync-app runs tail ID`, or `--job JOB` for its newest run"),
    };
    let mut after = None;
    let stop = super::shutdown_signal();
    tokio::pin!(stop);
    let mut announced = false;
    loop {
        // The status first: a finished run's lines were all written before it finished.
        let run = run_or_fail(&logger, id).await?;
        let details = all_details(&logger, id, after).await?;
        after = details.last().map(|d| d.id).or(after);
        {
            let mut out = std::io::stdout().lock();
            if !announced && !json {
                writeln!(
                    out,
                    "Run {}  {}  {}  ({})",
                    run.id,
                    run.name,
                    run.job,
                    run.status.as_str()
                )?;
                announced = true;
            }
            for d in &details {
                if json {
                    writeln!(out, "{}", json!({"detail": detail_json(d)}))?;
                } else {
                    writeln!(out, "{}", detail_line(d))?;
                }
            }
            if run.status.is_finished() {
                if json {
                    writeln!(out, "{}", json!({"run": run_json(&run)}))?;
                } else {
                    let took = run
                        .duration()
                        .map(|d| format!(" after {}", duration(d)))
                        .unwrap_or_default();
                    writeln!(out, "Run {} ended: {}{took}", run.id, run.status.as_str())?;
                }
                out.flush()?;
                return Ok(run.status == RunStatus::Success);
            }
            out.flush()?;
        }
        // A run whose process died is ended by the reaper of a running `serve`; without one
        // it would stay "processing": say so rather than wait for ever.
        let heard = run.heartbeat_at.unwrap_or(run.created_at);
        if (Utc::now() - heard)
            .to_std()
            .is_ok_and(|quiet| quiet > super::STALE_AFTER)
        {
            bail!(
                "run {id} has had no heartbeat since {} UTC: the process running it seems to have died \
                 (a running `sync-app serve` marks it abandoned)",
                when(heard)
            );
        }
        tokio::select! {
            () = tokio::time::sleep(TAIL_POLL) => {}
            () = &mut stop => bail!("interrupted while run {id} was still {}", run.status.as_str()),
        }
    }
}
