//! Run now, pause, resume and the schedules' state — the one way to control scheduled jobs,
//! from any process that shares the database (a web page, a CLI, another instance).

use crate::scheduler::store::{self, ScheduleRecord};
use crate::{JobLogger, Result};

/// The controls of the jobs scheduled on `logger`'s database: [`JobLogger::scheduled_jobs`].
///
/// Every control is one statement on `job_schedules`, so it acts on every instance; a
/// scheduler in this process notices at once, others at their next poll.
///
/// ```no_run
/// # async fn demo(logger: joblog::JobLogger) -> joblog::Result<()> {
/// let jobs = logger.scheduled_jobs();
/// jobs.pause("SyncOpenOrdersJob").await?;
/// jobs.run_now("SyncOpenOrdersJob").await?; // one run even while paused
/// for s in jobs.schedules().await? {
///     println!("{} {} next {}", s.job, s.description.unwrap_or_default(), s.next_run_at);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ScheduledJobs<'a> {
    logger: &'a JobLogger,
}

impl<'a> ScheduledJobs<'a> {
    pub(crate) fn new(logger: &'a JobLogger) -> Self {
        Self { logger }
    }

    /// Asks for one run of `job` as soon as possible: whichever instance polls first runs
    /// it, exactly once (after the current run, if one is going on; also while paused).
    /// `false` if no such job is registered.
    pub async fn run_now(&self, job: &str) -> Result<bool> {
        let found = store::request_run_now(self.logger.db(), job).await?;
        self.wake();
        Ok(found)
    }

    /// Pauses `job` on every instance: no new run starts (a run going on finishes).
    /// `false` if no such job is registered.
    pub async fn pause(&self, job: &str) -> Result<bool> {
        store::pause_job(self.logger.db(), job).await
    }

    /// Resumes `job`. Occurrences missed while it was paused collapse into at most one
    /// catch-up run, never a burst. `false` if no such job is registered.
    pub async fn resume(&self, job: &str) -> Result<bool> {
        let found = store::resume_job(self.logger.db(), job).await?;
        self.wake();
        Ok(found)
    }

    /// Every scheduled job, ordered by name; `overdue` after 2 intervals without success.
    pub async fn schedules(&self) -> Result<Vec<ScheduleRecord>> {
        self.schedules_with(2).await
    }

    /// Every scheduled job, ordered by name; `overdue` when the last success is older than
    /// `overdue_after_intervals` intervals.
    pub async fn schedules_with(&self, overdue_after_intervals: u32) -> Result<Vec<ScheduleRecord>> {
        store::schedules_with(self.logger.db(), overdue_after_intervals).await
    }

    /// The schedule of `job`, if it is a scheduled job.
    pub async fn schedule(&self, job: &str) -> Result<Option<ScheduleRecord>> {
        Ok(self.schedules().await?.into_iter().find(|s| s.job == job))
    }

    /// Wakes this process's schedulers so they poll now rather than at their next tick.
    fn wake(&self) {
        self.logger.inner.scheduler_wake.notify_waiters();
    }
}
