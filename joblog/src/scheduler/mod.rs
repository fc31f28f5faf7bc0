//! Recurring jobs that never overlap, in one process or across instances.
//!
//! Every job has a row in `job_schedules`. An instance runs a due job only after taking
//! the row's lease with one conditional `UPDATE` (the database decides the race, on
//! PostgreSQL, MySQL and SQLite alike); it renews the lease every third of its length
//! while the job runs and gives it back, with the outcome, when the job ends. A due time
//! that finds the job still running is counted as skipped, once. If the holder dies, its
//! lease runs out and another instance takes the job over. All times are compared on the
//! database's clock.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use joblog::JobLogger;
//! use joblog::scheduler::{Schedule, Scheduler};
//!
//! let logger = JobLogger::connect("sqlite://joblog.db?mode=rwc").await?;
//! logger.migrate().await?;
//! let handle = Scheduler::builder(logger.clone())
//!     .job("SyncOpenOrdersJob", Schedule::every(Duration::from_secs(300)), |run| async move {
//!         run.detail("syncing");
//!         Ok::<_, anyhow::Error>(())
//!     })
//!     .build()
//!     .start()
//!     .await?;
//! // … later
//! handle.shutdown(Duration::from_secs(30)).await?;
//! # Ok(())
//! # }
//! ```

mod alerts;
mod control;
mod schedule;
mod store;
mod webhook;

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use chrono_tz::Tz;
pub use control::ScheduledJobs;
pub use schedule::Schedule;
pub use store::ScheduleRecord;

use crate::{Error, JobLogger, Result, RunHandle, RunStatus};

type JobFn = Arc<dyn Fn(RunHandle) -> BoxFuture<'static, std::result::Result<(), String>> + Send + Sync>;

/// Per-job options of [`SchedulerBuilder::job_with`].
#[must_use]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobOptions {
    run_at_start: bool,
    alert_webhook: Option<String>,
}

impl JobOptions {
    /// Whether the first occurrence runs at start-up instead of one interval later
    /// (default: no). It applies when the job's row is created; an existing row keeps its
    /// `next_run_at` (a due time that passed during downtime runs once at start-up anyway).
    pub fn run_at_start(mut self, yes: bool) -> Self {
        self.run_at_start = yes;
        self
    }

    /// Sends this job's alerts to `url` (overriding [`SchedulerBuilder::alert_webhook`]):
    /// a JSON POST when a run fails, when the job becomes overdue and when it recovers —
    /// see [`SchedulerBuilder::alert_webhook`].
    pub fn alert_webhook(mut self, url: impl Into<String>) -> Self {
        self.alert_webhook = Some(url.into());
        self
    }
}

struct JobSpec {
    name: String,
    schedule: Schedule,
    options: JobOptions,
    f: JobFn,
}

impl fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobSpec")
            .field("name", &self.name)
            .field("schedule", &self.schedule)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Settings and jobs of a [`Scheduler`].
#[must_use = "a SchedulerBuilder does nothing until build() and start()"]
#[derive(Debug)]
pub struct SchedulerBuilder {
    logger: JobLogger,
    lease: Duration,
    poll_interval: Duration,
    owner: Option<String>,
    jobs: Vec<JobSpec>,
    alert_webhook: Option<String>,
    alert_links: Option<String>,
}

impl SchedulerBuilder {
    /// Sends the alerts of every job of this scheduler (unless a job has its own, see
    /// [`JobOptions::alert_webhook`]) to `url`: a JSON POST
    /// `{event, job, run_id, run_name, status, error, started_at, finished_at, url, missed, text}`
    /// with `event` `failed` (a run ended in error), `overdue` (2 occurrences missed since
    /// the last success; not while paused) or `recovered` (the first success after either).
    /// One alert per incident and one per recovery, written by one instance only even when
    /// several share the database (a compare-and-set on the job's row), kept in the
    /// `job_alerts` table until delivered, retried with backoff for 24 hours (by any
    /// instance with alerts), never in the way of a run; a failing webhook is logged and
    /// shown on the jobs monitor. `text` reads well in Slack and Mattermost.
    pub fn alert_webhook(mut self, url: impl Into<String>) -> Self {
        self.alert_webhook = Some(url.into());
        self
    }

    /// The pages' base URL (where joblog-web is mounted, e.g. `https://jobs.example.com`):
    /// alerts then link to their run (`{base}/job_logs/{id}`).
    pub fn alert_links(mut self, base: impl Into<String>) -> Self {
        self.alert_links = Some(base.into());
        self
    }

    /// How long a lease lasts without renewal (default 60 s; at least 300 ms). It is renewed
    /// every third of that while the job runs; a dead holder's job is taken over after it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// How often each job's row is looked at (default 1 s; at least 10 ms): the delay of
    /// "run now", and the precision of due times.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every.max(Duration::from_millis(10));
        self
    }

    /// The lease owner written to the table (default `host:pid:random`); must be unique
    /// per scheduler.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Registers `job` on `schedule`. `f` runs under [`JobLogger::run`]'s semantics:
    /// processing, then success on `Ok`, error (formatted with `{:#}`) on `Err`, error on
    /// panic or cancellation.
    pub fn job<F, Fut, E>(self, job: impl Into<String>, schedule: Schedule, f: F) -> Self
    where
        F: Fn(RunHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        self.job_with(job, schedule, JobOptions::default(), f)
    }

    /// [`job`](Self::job) with options.
    pub fn job_with<F, Fut, E>(
        mut self,
        job: impl Into<String>,
        schedule: Schedule,
        options: JobOptions,
        f: F,
    ) -> Self
    where
        F: Fn(RunHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let f: JobFn = Arc::new(move |run| f(run).map(|r| r.map_err(|e| format!("{e:#}"))).boxed());
        self.jobs.push(JobSpec {
            name: job.into(),
            schedule,
            options,
            f,
        });
        self
    }

    /// The scheduler; [`Scheduler::start`] registers the jobs and starts it.
    #[must_use]
    pub fn build(self) -> Scheduler {
        Scheduler {
            logger: self.logger,
            lease: self.lease,
            poll_interval: self.poll_interval,
            owner: self.owner,
            jobs: self.jobs,
            alert_webhook: self.alert_webhook,
            alert_links: self.alert_links,
        }
    }
}

/// `host:pid:random`, unique per scheduler: the lease owner when none was set. An error
/// (never a weaker id) when the operating system has no randomness to give.
fn default_owner(host: &str) -> Result<String> {
    let random = getrandom::u64().map_err(|e| {
        Error::Config(format!(
            "the operating system gave no randomness for the scheduler's owner id ({e}); \
             set one with SchedulerBuilder::owner"
        ))
    })?;
    Ok(format!("{host}:{}:{random:016x}", std::process::id()))
}

/// Runs registered jobs on their schedules; see the [module docs](self).
#[derive(Debug)]
pub struct Scheduler {
    logger: JobLogger,
    lease: Duration,
    poll_interval: Duration,
    /// `None`: [`default_owner`] at start.
    owner: Option<String>,
    jobs: Vec<JobSpec>,
    alert_webhook: Option<String>,
    alert_links: Option<String>,
}

#[derive(Debug)]
struct Shared {
    logger: JobLogger,
    lease: Duration,
    poll_interval: Duration,
    owner: String,
    /// `true`: start no new runs.
    stop: watch::Sender<bool>,
    /// `true`: cancel the runs going on.
    cancel: watch::Sender<bool>,
}

impl Scheduler {
    /// Settings for a scheduler whose runs are recorded by `logger`.
    pub fn builder(logger: JobLogger) -> SchedulerBuilder {
        SchedulerBuilder {
            logger,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            owner: None,
            jobs: Vec::new(),
            alert_webhook: None,
            alert_links: None,
        }
    }

    /// Registers every job in `job_schedules` (creating its row, or updating its schedule
    /// text and keeping `paused` and `next_run_at`) and starts one task per job.
    /// [`Error::Config`] for a job name registered twice or longer than 191 bytes.
    pub async fn start(self) -> Result<SchedulerHandle> {
        let mut seen = HashSet::new();
        for job in &self.jobs {
            if job.name.is_empty() || job.name.len() > 191 {
                return Err(Error::Config(format!(
                    "job name {:?} must be 1 to 191 bytes long",
                    job.name
                )));
            }
            if !seen.insert(job.name.clone()) {
                return Err(Error::Config(format!("job {:?} is registered twice", job.name)));
            }
            if let Some(url) = job.options.alert_webhook.as_ref().or(self.alert_webhook.as_ref()) {
                alerts::check_webhook(url)?;
            }
        }
        for job in &self.jobs {
            self.logger.metrics().job_seen(&job.name);
            store::register(
                self.logger.db(),
                &job.name,
                &job.schedule,
                job.options.run_at_start,
            )
            .await?;
        }
        let owner = match self.owner {
            Some(owner) => owner,
            None => default_owner(&self.logger.inner.host)?,
        };
        let shared = Arc::new(Shared {
            logger: self.logger,
            lease: self.lease,
            poll_interval: self.poll_interval,
            owner,
            stop: watch::channel(false).0,
            cancel: watch::channel(false).0,
        });
        let jobs: Vec<String> = self.jobs.iter().map(|j| j.name.clone()).collect();
        let links = self.alert_links.clone();
        let default_webhook = self.alert_webhook.clone();
        let mut alerting = false;
        let mut tasks: Vec<JoinHandle<()>> = self
            .jobs
            .into_iter()
            .map(|spec| {
                let target = spec
                    .options
                    .alert_webhook
                    .clone()
                    .or_else(|| default_webhook.clone())
                    .map(|webhook| alerts::AlertTarget {
                        webhook,
                        links: links.clone(),
                    });
                alerting |= target.is_some();
                tokio::spawn(job_loop(shared.clone(), Arc::new(spec), target))
            })
            .collect();
        if alerting {
            tasks.push(tokio::spawn(deliver_alerts(shared.clone())));
        }
        Ok(SchedulerHandle {
            shared,
            jobs,
            tasks: Mutex::new(tasks),
        })
    }
}

/// A running [`Scheduler`]. Dropping it (or [`abort`](Self::abort)) stops its tasks at
/// once without releasing leases; [`shutdown`](Self::shutdown) is the clean way out.
#[derive(Debug)]
pub struct SchedulerHandle {
    shared: Arc<Shared>,
    jobs: Vec<String>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl SchedulerHandle {
    /// This scheduler's lease owner (`host:pid:random`).
    #[must_use]
    pub fn owner(&self) -> &str {
        &self.shared.owner
    }

    /// The jobs this scheduler runs.
    #[must_use]
    pub fn jobs(&self) -> &[String] {
        &self.jobs
    }

    /// Stops starting new runs, lets the runs going on finish within `grace`, then
    /// cancels the rest (their runs are recorded as error "cancelled"), releases the
    /// leases and flushes the logger.
    pub async fn shutdown(self, grace: Duration) -> Result<()> {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        self.shared.stop.send_replace(true);
        let mut all = futures::future::join_all(tasks);
        if tokio::time::timeout(grace, &mut all).await.is_err() {
            self.shared.cancel.send_replace(true);
            // Cancelling is quick: dropping the job's future, then one UPDATE per job.
            let bound = self.shared.logger.inner.durability_timeout + Duration::from_secs(5);
            if tokio::time::timeout(bound, &mut all).await.is_err() {
                tracing::warn!("joblog: scheduler tasks did not stop after cancellation; aborting them");
            }
        }
        self.shared.logger.flush().await
    }

    /// Stops every task at once without releasing leases, as a crash would (leases then
    /// run out and other instances take over). Prefer [`shutdown`](Self::shutdown).
    pub fn abort(self) {
        drop(self);
    }
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
    }
}

/// How often a scheduler with alerts looks at its jobs' rows for an alert to raise.
const ALERT_CHECK: Duration = Duration::from_secs(5);

async fn job_loop(shared: Arc<Shared>, spec: Arc<JobSpec>, alerts: Option<alerts::AlertTarget>) {
    let mut stop = shared.stop.subscribe();
    let mut overdue_checked: Option<tokio::time::Instant> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        match poll(&shared, &spec).await {
            Ok(Some(started_at)) => {
                if run_one(&shared, &spec, started_at).await && alerts.is_some() {
                    // Look at the outcome now rather than at the next check; the run's
                    // last lines (a cancellation's reason) first.
                    if let Err(e) = shared.logger.flush().await {
                        tracing::warn!(job = %spec.name, error = %e, "joblog: flushing before the alert check");
                    }
                    overdue_checked = None;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(job = %spec.name, error = %e, "joblog: scheduler poll failed"),
        }
        if let Some(target) = &alerts
            && overdue_checked.is_none_or(|at| at.elapsed() >= ALERT_CHECK.min(shared.poll_interval * 5))
        {
            overdue_checked = Some(tokio::time::Instant::now());
            if let Err(e) = alerts::check(&shared.logger, &spec.name, &spec.schedule, target).await {
                tracing::warn!(job = %spec.name, error = %e, "joblog: checking the job for alerts failed");
            }
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(shared.poll_interval) => {}
            _ = stop.changed() => {}
            _ = shared.logger.inner.scheduler_wake.notified() => {}
        }
    }
}

/// One look at the job's row: take the lease if it is due and free (returns the start
/// time on the database's clock), or count a skip if it is due and still running.
async fn poll(shared: &Shared, spec: &JobSpec) -> Result<Option<DateTime<Utc>>> {
    let db = shared.logger.db();
    let Some(state) = store::load_state(db, &spec.name).await? else {
        // The row was deleted behind our back: register it again.
        store::register(db, &spec.name, &spec.schedule, false).await?;
        return Ok(None);
    };
    // A paused job only runs when someone asks for it ("Run now" is an explicit order).
    if state.paused && !state.run_now {
        return Ok(None);
    }
    let overdue = !state.paused && state.next_run_at <= state.now;
    let next = || {
        spec.schedule
            .next_due_after(state.next_run_at, state.now)
            .unwrap_or(state.now + chrono::Duration::days(3650))
    };
    if (overdue || state.run_now) && state.lease_free {
        if store::try_acquire(db, &spec.name, &shared.owner, shared.lease, next()).await? {
            return Ok(Some(state.now));
        }
    } else if overdue
        && !state.lease_free
        && store::record_skip(db, &spec.name, state.skipped_count, next()).await?
    {
        tracing::info!(job = %spec.name, "joblog: occurrence skipped, the previous run is still going on");
    }
    Ok(None)
}

enum Ended {
    Finished(RunStatus),
    Cancelled,
    LeaseLost,
}

/// Delivers the alerts outbox until the scheduler stops (then one last round).
async fn deliver_alerts(shared: Arc<Shared>) {
    let client = webhook::client();
    let mut stop = shared.stop.subscribe();
    let mut cancel = shared.cancel.subscribe();
    let every = shared
        .poll_interval
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        tokio::select! {
            result = webhook::deliver_due(shared.logger.db(), &client) => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "joblog: delivering alerts failed");
                }
            }
            () = raised(&mut cancel) => return,
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Runs the job while holding the lease: renews it, counts skipped occurrences, and
/// releases it with the outcome. `false` when the lease was lost (another instance took
/// the job over).
async fn run_one(shared: &Shared, spec: &JobSpec, started_at: DateTime<Utc>) -> bool {
    let db = shared.logger.db();
    let run_id = Arc::new(AtomicI64::new(0));
    let id_slot = run_id.clone();
    let f = spec.f.clone();
    let logger = shared.logger.clone();
    let name = spec.name.clone();
    let fut = async move {
        logger
            .run(&name, move |run| {
                id_slot.store(run.id(), Ordering::Relaxed);
                f(run)
            })
            .await
    };
    // Boxed, so that dropping it below really ends the run (the guard then records "cancelled").
    let mut fut = Box::pin(AssertUnwindSafe(fut).catch_unwind());
    let renew_every = shared.lease / 3;
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut look = tokio::time::interval_at(
        tokio::time::Instant::now() + shared.poll_interval,
        shared.poll_interval,
    );
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cancel = shared.cancel.subscribe();
    let ended = loop {
        tokio::select! {
            outcome = &mut fut => break Ended::Finished(match outcome {
                Ok(Ok(())) => RunStatus::Success,
                _ => RunStatus::Error,
            }),
            _ = renew.tick() => match store::renew(db, &spec.name, &shared.owner, shared.lease).await {
                Ok(true) => {}
                Ok(false) => break Ended::LeaseLost,
                Err(e) => tracing::warn!(job = %spec.name, error = %e, "joblog: renewing the lease failed"),
            },
            _ = look.tick() => {
                if let Err(e) = poll(shared, spec).await {
                    tracing::warn!(job = %spec.name, error = %e, "joblog: scheduler poll failed");
                }
            }
            () = raised(&mut cancel) => break Ended::Cancelled,
        }
    };
    // Dropping an unfinished run's future records it as error "cancelled".
    drop(fut);
    let status = match ended {
        Ended::Finished(status) => status,
        Ended::Cancelled => RunStatus::Error,
        Ended::LeaseLost => {
            tracing::error!(
                job = %spec.name,
                "joblog: the lease was lost (not renewed in time and taken over); the run was cancelled"
            );
            return false;
        }
    };
    let id = run_id.load(Ordering::Relaxed);
    let id = (id != 0).then_some(id);
    for attempt in 0..3 {
        match store::release(db, &spec.name, &shared.owner, id, started_at, status).await {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(job = %spec.name, error = %e, attempt, "joblog: releasing the lease failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    true
}

/// Resolves once the flag is `true` (never, if its sender is gone).
async fn raised(flag: &mut watch::Receiver<bool>) {
    loop {
        if *flag.borrow_and_update() {
            return;
        }
        if flag.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
