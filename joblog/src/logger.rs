//! `JobLogger`: the entry point — connection, migrations, starting runs, flushing.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use chrono_tz::Tz;
use futures::FutureExt;
use joblog_migrations::JoblogMigrator;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use tokio::sync::{mpsc, oneshot};

use crate::naming::{NewRun, Reservations, base_name, insert_run};
use crate::run::{DropReason, JobRun, RunHandle, RunShared};
use crate::sql::now;
use crate::writer::{self, Command, DetailRow, WriterShared};
use crate::{Error, Level, Result};

/// Records runs of jobs. Cheap to clone; all clones share one connection pool and one
/// background writer.
#[derive(Debug, Clone)]
pub struct JobLogger {
    pub(crate) inner: Arc<LoggerInner>,
}

#[derive(Debug)]
pub(crate) struct LoggerInner {
    pub(crate) tx: mpsc::UnboundedSender<Command>,
    pub(crate) shared: Arc<WriterShared>,
    pub(crate) timezone: Tz,
    pub(crate) host: String,
    pub(crate) durability_timeout: Duration,
    pub(crate) names: Reservations,
    /// Wakes this process's schedulers when a job is asked to run now or resumed.
    pub(crate) scheduler_wake: tokio::sync::Notify,
    /// PostgreSQL: the search's trigram indexes were seen valid (they stay so).
    pub(crate) search_index_ready: std::sync::atomic::AtomicBool,
    /// `joblog_…` metrics.
    pub(crate) metrics: crate::metrics::Metrics,
}

impl LoggerInner {
    /// Runs a direct statement of a job's own path (`start()`, `processing()`) for at
    /// most `durability_timeout`, so a database that hangs cannot hold the job longer.
    pub(crate) async fn bounded<T>(&self, f: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.durability_timeout, f).await {
            Ok(result) => result,
            Err(_) => Err(Error::Write(format!(
                "the database did not answer within {:?}",
                self.durability_timeout
            ))),
        }
    }

    /// Waits for the writer's answer, at most `durability_timeout`.
    pub(crate) async fn wait_durable(&self, done: oneshot::Receiver<Result<()>>) -> Result<()> {
        match tokio::time::timeout(self.durability_timeout, done).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::WriterStopped),
            Err(_) => Err(Error::Write(format!(
                "not durable after {:?}; the writes stay queued and are retried",
                self.durability_timeout
            ))),
        }
    }
}

/// Settings of a [`JobLogger`]; finish with [`connect`](Self::connect) or
/// [`build`](Self::build).
#[must_use = "a JobLoggerBuilder does nothing until connect() or build()"]
#[derive(Debug, Clone)]
pub struct JobLoggerBuilder {
    timezone: Tz,
    queue_capacity: usize,
    heartbeat_interval: Duration,
    host: Option<String>,
    max_connections: u32,
    durability_timeout: Duration,
}

impl Default for JobLoggerBuilder {
    fn default() -> Self {
        Self {
            timezone: Tz::UTC,
            queue_capacity: 100_000,
            heartbeat_interval: Duration::from_secs(15),
            host: None,
            max_connections: 8,
            durability_timeout: Duration::from_secs(10),
        }
    }
}

impl JobLoggerBuilder {
    /// The timezone of run names (`YYYYMMDD_HHMMSS`); UTC by default. Stored times are UTC.
    pub fn timezone(mut self, tz: Tz) -> Self {
        self.timezone = tz;
        self
    }

    /// Most details waiting for the writer before new ones are dropped (default 100,000).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// How often the heartbeat of open runs is refreshed (default 15 s). Reap with a
    /// threshold of several intervals.
    pub fn heartbeat_interval(mut self, every: Duration) -> Self {
        self.heartbeat_interval = every.max(Duration::from_millis(10));
        self
    }

    /// The host name recorded on runs (default: this machine's host name).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Pool size used by [`connect`](Self::connect) (default 8; an in-memory SQLite
    /// database always gets one connection, since each connection would be its own database).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Longest wait of `start()`, `processing()`, `success()`, `error()` and `flush()`
    /// for the database (default 10 s). Past it they return an error; queued writes stay
    /// queued and are retried, so a slow or failing log database never holds a job for long.
    pub fn durability_timeout(mut self, timeout: Duration) -> Self {
        self.durability_timeout = timeout;
        self
    }

    /// Opens the database at `url` (`sqlite://file.db?mode=rwc`, `sqlite::memory:`,
    /// `postgres://…`, `mysql://…`) and builds the logger. SQLite files are put in WAL
    /// mode with a busy timeout, so the writer and readers do not block each other.
    pub async fn connect(self, url: &str) -> Result<JobLogger> {
        let db = Database::connect(connect_options(url, self.max_connections)).await?;
        Ok(self.build(db))
    }

    /// Builds the logger on an existing connection (e.g. the host application's).
    /// Must be called inside a tokio runtime: it spawns the background writer.
    pub fn build(self, db: DatabaseConnection) -> JobLogger {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(WriterShared {
            db,
            queued: AtomicUsize::new(0),
            capacity: self.queue_capacity,
            live: Default::default(),
            details_dropped: Default::default(),
        });
        let metrics = crate::metrics::Metrics::new(Arc::downgrade(&shared));
        tokio::spawn(writer::run(shared.clone(), rx));
        tokio::spawn(writer::heartbeat(
            Arc::downgrade(&shared),
            self.heartbeat_interval,
        ));
        if shared.db.get_database_backend() == sea_orm::DbBackend::Sqlite {
            tokio::spawn(crate::search_index::keep_up(Arc::downgrade(&shared)));
        }
        let host = self
            .host
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
        JobLogger {
            inner: Arc::new(LoggerInner {
                tx,
                shared,
                timezone: self.timezone,
                host,
                durability_timeout: self.durability_timeout,
                names: Reservations::default(),
                scheduler_wake: tokio::sync::Notify::new(),
                search_index_ready: std::sync::atomic::AtomicBool::new(false),
                metrics,
            }),
        }
    }
}

/// Pool options per backend: several connections everywhere but in-memory SQLite, and
/// WAL + busy timeout for SQLite files.
fn connect_options(url: &str, max_connections: u32) -> ConnectOptions {
    let mut opts = ConnectOptions::new(url.to_owned());
    // A database that is down fails a statement after 10 s instead of sqlx's 30 s.
    opts.sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10));
    let is_sqlite = url.starts_with("sqlite:");
    let in_memory = is_sqlite && (url.contains(":memory:") || url.contains("mode=memory"));
    opts.max_connections(if in_memory { 1 } else { max_connections });
    if in_memory {
        // The single connection must never be closed, or the database is gone.
        opts.min_connections(1).idle_timeout(None).max_lifetime(None);
    }
    #[cfg(feature = "sqlite")]
    if is_sqlite && !in_memory {
        opts.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    }
    opts
}

impl JobLogger {
    /// Connects with default settings; see [`JobLoggerBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self> {
        JobLoggerBuilder::default().connect(url).await
    }

    /// A logger on an existing connection with default settings; see [`JobLoggerBuilder::build`].
    pub fn new(db: DatabaseConnection) -> Self {
        JobLoggerBuilder::default().build(db)
    }

    /// Settings for a logger.
    pub fn builder() -> JobLoggerBuilder {
        JobLoggerBuilder::default()
    }

    /// The connection the logger writes through.
    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.shared.db
    }

    /// Run now, pause, resume and the schedules of the jobs scheduled on this database —
    /// from any process, with or without a [`Scheduler`](crate::scheduler::Scheduler) here.
    #[must_use]
    pub fn scheduled_jobs(&self) -> crate::scheduler::ScheduledJobs<'_> {
        crate::scheduler::ScheduledJobs::new(self)
    }

    /// The timezone run names are written in.
    #[must_use]
    pub fn timezone(&self) -> Tz {
        self.inner.timezone
    }

    /// Creates or upgrades joblog's tables. Idempotent, and safe when several processes
    /// start at once on PostgreSQL or MySQL (a database lock serialises them). joblog's
    /// history lives in its own table, `joblog_migrations`.
    ///
    /// On PostgreSQL it then builds the search's trigram indexes if they are missing
    /// ([`build_search_index`](Self::build_search_index): concurrently, so on a large
    /// upgraded database this call takes minutes once while writers go on). On SQLite the
    /// search index fills in the background.
    pub async fn migrate(&self) -> Result<()> {
        joblog_migrations::up_locked::<JoblogMigrator>(self.db(), 7411150263, "joblog_migrate").await?;
        if self.db().get_database_backend() == sea_orm::DbBackend::Postgres {
            self.build_search_index().await?;
        }
        self.reset_idle_connections().await;
        Ok(())
    }

    /// SQLite: closes the pool's idle connections, so that the next statements run on
    /// connections that read the schema as it is now. [`migrate`](Self::migrate) does it; a
    /// host that runs its own migrations on the logger's connection afterwards should too.
    ///
    /// Why: a connection on which a query read one row of several (sqlx leaves such a
    /// statement un-reset) keeps its read snapshot — and with it the schema from before the
    /// migrations — until that statement is reused; its next statement then failed with "no
    /// such table" (seen: `DELETE FROM job_logs` right after `migrate()`, now and then). An
    /// in-memory database is left alone (closing its connection would delete it). Other
    /// backends: nothing to do.
    pub async fn reset_idle_connections(&self) {
        #[cfg(feature = "sqlite")]
        if self.db().get_database_backend() == sea_orm::DbBackend::Sqlite {
            let pool = self.db().get_sqlite_connection_pool();
            let mut idle = Vec::new();
            while let Some(conn) = pool.try_acquire() {
                idle.push(conn);
            }
            let Some(first) = idle.first_mut() else { return };
            let file: Option<String> =
                sea_orm::sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                    .fetch_optional(&mut **first)
                    .await
                    .ok()
                    .flatten();
            if file.as_deref().is_none_or(str::is_empty) {
                return;
            }
            for conn in idle {
                if let Err(e) = conn.close().await {
                    tracing::debug!(error = %e, "joblog: closing an idle connection");
                }
            }
        }
    }

    /// Starts a run of `job`: a `job_logs` row with status new and a unique timestamp
    /// name, and a first detail `Job started - <job>`.
    pub async fn start(&self, job: &str) -> Result<JobRun> {
        let at = now();
        let base = base_name(at, self.inner.timezone);
        let new = NewRun {
            job,
            host: &self.inner.host,
            pid: i64::from(std::process::id()),
            at,
        };
        let insert = insert_run(self.db(), &base, &self.inner.names, &new);
        let (id, name) = self.inner.bounded(insert).await?;
        self.inner.shared.live().insert(id);
        self.inner.metrics.job_seen(job);
        let shared = Arc::new(RunShared::new(self.inner.clone(), id, name, job.to_owned()));
        shared.send_detail(Level::Info, format!("Job started - {job}"));
        Ok(JobRun::new(shared))
    }

    /// Runs `f` under a guard: processing, then success on `Ok`, error on `Err`, error
    /// with the panic message on panic (the panic then continues), error "cancelled" if
    /// this future is dropped before `f` finishes. Returns what `f` returned.
    ///
    /// Logging never fails the job: if the run cannot be recorded, `f` still runs (its
    /// details are discarded) and the problem is reported through `tracing`.
    pub async fn run<F, Fut, T, E>(&self, job: &str, f: F) -> std::result::Result<T, E>
    where
        F: FnOnce(RunHandle) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: std::fmt::Display,
    {
        let mut guard = match self.start(job).await {
            Ok(run) => Some(run),
            Err(e) => {
                tracing::error!(job, error = %e, "joblog: could not record the run; running the job anyway");
                None
            }
        };
        let handle = match guard.as_mut() {
            Some(run) => {
                // From here on, this future being dropped is a cancellation (also while
                // `processing()` waits on a slow database).
                run.set_drop_reason(DropReason::Cancelled);
                if let Err(e) = run.processing().await {
                    tracing::error!(job, error = %e, "joblog: could not mark the run processing");
                }
                run.handle()
            }
            None => RunHandle::detached(),
        };
        let outcome = AssertUnwindSafe(f(handle)).catch_unwind().await;
        let Some(run) = guard else {
            return match outcome {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            };
        };
        let logged = match &outcome {
            Ok(Ok(_)) => run.success().await,
            Ok(Err(e)) => run.error(&format!("{e:#}")).await,
            Err(panic) => {
                run.error(&format!("panicked: {}", panic_message(panic.as_ref())))
                    .await
            }
        };
        if let Err(e) = logged {
            tracing::error!(job, error = %e, "joblog: could not record the end of the run");
        }
        match outcome {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Waits until every write queued before this call is in the database. Returns an
    /// error if some could not be written (they stay queued and are retried).
    pub async fn flush(&self) -> Result<()> {
        let (ack, done) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Flush(ack))
            .map_err(|_| Error::WriterStopped)?;
        self.inner.wait_durable(done).await
    }

    /// Spawns a task that calls [`reap_stale`](Self::reap_stale) now and then every
    /// `every`, for as long as the returned handle is not aborted. Failures are reported
    /// through `tracing` and retried at the next tick.
    pub fn spawn_reaper(&self, every: Duration, stale_after: Duration) -> tokio::task::JoinHandle<()> {
        let logger = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = logger.reap_stale(stale_after).await {
                    tracing::warn!(error = %e, "joblog: reaping abandoned runs failed");
                }
            }
        })
    }

    /// Details waiting in the queue right now (for monitoring).
    #[must_use]
    pub fn queued(&self) -> usize {
        self.inner
            .shared
            .queued
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl LoggerInner {
    /// Queues a detail unless the queue is full; `false` if it was dropped.
    pub(crate) fn try_queue(&self, row: DetailRow) -> bool {
        use std::sync::atomic::Ordering;
        let shared = &self.shared;
        if shared.queued.fetch_add(1, Ordering::Relaxed) >= shared.capacity {
            shared.queued.fetch_sub(1, Ordering::Relaxed);
            shared.details_dropped.inc();
            return false;
        }
        if self.tx.send(Command::Detail(row)).is_err() {
            shared.queued.fetch_sub(1, Ordering::Relaxed);
            shared.details_dropped.inc();
            return false;
        }
        true
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
