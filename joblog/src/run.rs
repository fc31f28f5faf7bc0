//! The `JobRun` guard and its cloneable `RunHandle`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;

use crate::logger::LoggerInner;
use crate::sql::{Sql, db_now, now};
use crate::writer::{Command, DetailRow, FinishRow};
use crate::{Error, Level, Result, RunStatus};

/// What one run shares between its guard and its handles.
#[derive(Debug)]
pub(crate) struct RunShared {
    /// `None` for a detached handle (the run could not be recorded).
    logger: Option<Arc<LoggerInner>>,
    id: i64,
    name: String,
    job: String,
    /// Details dropped at the call site because the queue was full.
    dropped: AtomicU64,
    /// When `start()` created the run (for `joblog_run_duration_seconds`).
    began: std::time::Instant,
}

impl RunShared {
    pub(crate) fn new(logger: Arc<LoggerInner>, id: i64, name: String, job: String) -> Self {
        Self {
            logger: Some(logger),
            id,
            name,
            job,
            dropped: AtomicU64::new(0),
            began: std::time::Instant::now(),
        }
    }

    pub(crate) fn send_detail(&self, level: Level, message: String) {
        let Some(logger) = &self.logger else { return };
        emit_detail_event(&self.job, &self.name, level, &message);
        let row = DetailRow {
            run_id: self.id,
            level,
            message,
            at: chrono::Utc::now(),
        };
        if !logger.try_queue(row) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The `tracing` target of the event every detail is also emitted as (see [`JobRun`]).
pub const DETAIL_TARGET: &str = "joblog::detail";

/// Emits a detail as a `tracing` event, so that a host's subscriber shows the work as it
/// is written (`sync-app sync` prints these lines). [`JobLogLayer`](crate::JobLogLayer)
/// skips this target, so a detail is never recorded twice.
fn emit_detail_event(job: &str, run: &str, level: Level, message: &str) {
    match level {
        Level::Info => tracing::info!(target: "joblog::detail", job, run, "{message}"),
        Level::Warn => tracing::warn!(target: "joblog::detail", job, run, "{message}"),
        Level::Error => tracing::error!(target: "joblog::detail", job, run, "{message}"),
    }
}

/// Why an unfinished guard was dropped; written as the run's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// Dropped in the normal flow of the code: an early return or `?`.
    Dropped,
    /// Dropped while [`JobLogger::run`](crate::JobLogger::run) was awaiting the job: the task was cancelled.
    Cancelled,
}

/// A run in progress. Finish it with [`success`](Self::success) or
/// [`error`](Self::error); if it is dropped unfinished — an early `?`, a panic, a
/// cancelled task — the run is marked error with the reason, written by the background
/// writer (durable after [`JobLogger::flush`](crate::JobLogger::flush)).
///
/// Bound to `_` (`let _ = logger.start(..)`) the guard is dropped at once, so the run
/// ends as an error straight away and later details cannot be written through it: bind
/// it to a name (`let run = …` or `let _run = …`).
///
/// Every detail is also emitted as a `tracing` event with target [`DETAIL_TARGET`]
/// (`joblog::detail`) at the detail's level, with the fields `job` and `run` (the run's
/// name), so a host's subscriber can show the work as it happens.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> joblog::Result<()> {
/// use joblog::{JobLogger, RunStatus};
///
/// let logger = JobLogger::connect("sqlite::memory:").await?;
/// logger.migrate().await?;
///
/// let mut run = logger.start("SyncOpenOrdersJob").await?;
/// run.processing().await?;
/// run.detail("Connecting to SQL Server...");
/// run.warn("Source returned 0 rows");
/// let id = run.id();
/// run.success().await?; // every detail and the status are durable now
///
/// let stored = logger.get_run(id).await?.expect("the run exists");
/// assert_eq!(stored.status, RunStatus::Success);
/// let details = logger.details(id, None, 100).await?;
/// assert_eq!(details[0].message, "Job started - SyncOpenOrdersJob");
/// assert_eq!(details.len(), 3);
/// # Ok(())
/// # }
/// ```
#[must_use = "a JobRun dropped at once ends the run as an error; bind it to a name and finish it with success() or error()"]
#[derive(Debug)]
pub struct JobRun {
    handle: RunHandle,
    status: RunStatus,
    finished: bool,
    drop_reason: DropReason,
}

impl JobRun {
    pub(crate) fn new(shared: Arc<RunShared>) -> Self {
        Self {
            handle: RunHandle { shared },
            status: RunStatus::New,
            finished: false,
            drop_reason: DropReason::Dropped,
        }
    }

    pub(crate) fn set_drop_reason(&mut self, reason: DropReason) {
        self.drop_reason = reason;
    }

    fn shared(&self) -> &RunShared {
        &self.handle.shared
    }

    /// The status as far as this guard knows.
    #[must_use]
    pub fn status(&self) -> RunStatus {
        self.status
    }

    /// A cheap, cloneable handle for writing details from other tasks.
    #[must_use]
    pub fn handle(&self) -> RunHandle {
        self.handle.clone()
    }

    /// new → processing; sets `started_at`. An error if the run is not new (or if the
    /// reaper already ended it).
    pub async fn processing(&mut self) -> Result<()> {
        let invalid = |from| Error::InvalidTransition {
            run_id: self.shared().id,
            from,
            to: RunStatus::Processing,
        };
        if self.status != RunStatus::New {
            return Err(invalid(self.status));
        }
        let logger = self.logger();
        let db = &logger.shared.db;
        let run_id = self.shared().id;
        let update = async {
            let backend = sea_orm::ConnectionTrait::get_database_backend(db);
            let at = now();
            let mut q = Sql::new(backend, "UPDATE job_logs SET status = 1, started_at = ");
            q.bind(at)
                .push(", updated_at = ")
                .bind(at)
                .push(", heartbeat_at = ")
                .push(db_now(backend))
                .push(" WHERE id = ")
                .bind(run_id)
                .push(" AND status = 0");
            if q.execute(db).await? == 1 {
                return Ok(());
            }
            let mut q = Sql::new(backend, "SELECT status FROM job_logs WHERE id = ");
            q.bind(run_id);
            Err(match q.one(db).await? {
                Some(row) => {
                    invalid(RunStatus::from_code(row.try_get_by_index::<i16>(0)?).unwrap_or(RunStatus::Error))
                }
                None => Error::RunNotFound(run_id),
            })
        };
        logger.bounded(update).await?;
        self.status = RunStatus::Processing;
        Ok(())
    }

    /// Ends the run as success. Returns once every earlier detail and the status are
    /// durable.
    pub async fn success(self) -> Result<()> {
        self.finish(RunStatus::Success, None).await
    }

    /// Ends the run as error with `err` (formatted with `{:#}`, which prints an
    /// `anyhow::Error`'s whole cause chain; wrap a std error in [`ErrorChain`] for its
    /// sources) as the last, error-level detail. Returns once it is durable.
    pub async fn error<E: fmt::Display + ?Sized>(self, err: &E) -> Result<()> {
        let message = format!("{err:#}");
        self.finish(RunStatus::Error, Some(message)).await
    }

    async fn finish(mut self, status: RunStatus, error: Option<String>) -> Result<()> {
        if self.status.is_finished() {
            return Err(Error::InvalidTransition {
                run_id: self.shared().id,
                from: self.status,
                to: status,
            });
        }
        self.finished = true;
        let (ack, done) = oneshot::channel();
        let row = self.finish_row(status, error);
        let logger = self.logger().clone();
        logger
            .tx
            .send(Command::Finish(row, Some(ack)))
            .map_err(|_| Error::WriterStopped)?;
        logger.wait_durable(done).await
    }

    fn finish_row(&self, status: RunStatus, error: Option<String>) -> FinishRow {
        self.logger()
            .metrics
            .run_finished(&self.shared().job, status, Some(self.shared().began.elapsed()));
        if let Some(message) = &error {
            // The writer stores the error as the run's last detail; show it like the others.
            emit_detail_event(&self.shared().job, &self.shared().name, Level::Error, message);
        }
        FinishRow {
            run_id: self.shared().id,
            status,
            error,
            dropped: self.shared().dropped.swap(0, Ordering::Relaxed),
            at: now(),
        }
    }

    fn logger(&self) -> &Arc<LoggerInner> {
        self.shared()
            .logger
            .as_ref()
            .expect("a JobRun always belongs to a logger; only handles can be detached")
    }
}

/// The guard is a [`RunHandle`] with a lifecycle: `run.id()`, `run.name()`, `run.job()`,
/// `run.detail(..)`, `run.warn(..)` and `run.log(..)` are the handle's. The guard itself is
/// not `Clone`, so `run.clone()` is the handle's clone — a [`RunHandle`], the same as
/// [`JobRun::handle`].
impl std::ops::Deref for JobRun {
    type Target = RunHandle;

    fn deref(&self) -> &RunHandle {
        &self.handle
    }
}

impl Drop for JobRun {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let reason = if std::thread::panicking() {
            "panicked: the job panicked before finishing the run"
        } else {
            match self.drop_reason {
                DropReason::Cancelled => {
                    "cancelled: the task running the job was cancelled or aborted before it finished"
                }
                DropReason::Dropped => {
                    "dropped before completion: the JobRun guard was dropped without success() or \
                     error() (an early return, `?`, or a cancelled task)"
                }
            }
        };
        let row = self.finish_row(RunStatus::Error, Some(reason.to_owned()));
        if self.logger().tx.send(Command::Finish(row, None)).is_err() {
            tracing::error!(
                run_id = self.shared().id,
                "joblog: writer stopped; an unfinished run could not be marked error (the reaper will)"
            );
        }
    }
}

/// A cheap, cloneable handle that writes details to one run from any task or thread.
#[derive(Debug, Clone)]
pub struct RunHandle {
    shared: Arc<RunShared>,
}

impl RunHandle {
    /// A handle that belongs to no recorded run: its details are discarded.
    pub(crate) fn detached() -> Self {
        Self {
            shared: Arc::new(RunShared {
                logger: None,
                id: 0,
                name: String::new(),
                job: String::new(),
                dropped: AtomicU64::new(0),
                began: std::time::Instant::now(),
            }),
        }
    }

    /// The run's `job_logs.id` (0 for a run that could not be recorded).
    #[must_use]
    pub fn id(&self) -> i64 {
        self.shared.id
    }

    /// The run's unique timestamp name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The job's name.
    #[must_use]
    pub fn job(&self) -> &str {
        &self.shared.job
    }

    /// Queues an info detail. Never blocks and never fails; when the writer's queue is full
    /// the detail is dropped and counted (the count is written when the run ends).
    pub fn detail(&self, message: impl Into<String>) {
        self.shared.send_detail(Level::Info, message.into());
    }

    /// Queues a warn detail.
    pub fn warn(&self, message: impl Into<String>) {
        self.shared.send_detail(Level::Warn, message.into());
    }

    /// Queues a detail at `level`.
    pub fn log(&self, level: Level, message: impl Into<String>) {
        self.shared.send_detail(level, message.into());
    }
}

/// Displays an error with its whole `source()` chain: `outer: inner: root`.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}
