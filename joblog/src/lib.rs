//! Record every run of a background job.
//!
//! A [`JobLogger`] writes runs to `job_logs` and their messages to `job_log_details` on
//! SQLite, PostgreSQL or MySQL/MariaDB. A [`JobRun`] guard moves a run through
//! new → processing → success / error and, if it is dropped unfinished — an early `?`,
//! a panic, a cancelled task — marks it error with the reason, so nothing is left
//! "processing" forever. Details are queued without blocking and written in ordered
//! batches by a background writer; heartbeats let [`JobLogger::reap_stale`] end the runs
//! of processes that died; [`JobLogger::prune`] keeps the tables small.
//!
//! ```no_run
//! # async fn demo() -> joblog::Result<()> {
//! let logger = joblog::JobLogger::connect("sqlite://joblog.db?mode=rwc").await?;
//! logger.migrate().await?;
//! let mut run = logger.start("NightlyReport").await?;
//! run.processing().await?;
//! run.detail("Fetched 42 rows");
//! run.success().await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod db_error;
mod error;
mod logger;
mod maintenance;
mod model;
mod naming;
mod query;
mod run;
mod scheduler;
mod sql;
mod status;
#[cfg(feature = "tracing")]
mod tracing_layer;
mod writer;

pub use chrono_tz::Tz;
pub use error::{Error, Result};
pub use logger::{JobLogger, JobLoggerBuilder};
pub use maintenance::{PruneOptions, PruneStats};
pub use model::{DetailRecord, RunRecord};
pub use query::{
    CappedCount, Cursor, JobSummary, MAX_PAGE_SIZE, RunFilter, RunListItem, RunPage, StatusCounts,
};
pub use run::{ErrorChain, JobRun, RunHandle};
pub use scheduler::{
    JobOptions, Schedule, ScheduleRecord, Scheduler, SchedulerBuilder, SchedulerHandle, pause_job,
    request_run_now, resume_job, schedules, schedules_with,
};
pub use sea_orm::DatabaseConnection;
pub use status::{Level, ParseError, RunStatus};
#[cfg(feature = "tracing")]
pub use tracing_layer::JobLogLayer;
