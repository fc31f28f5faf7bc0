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
//!
//! The crate, on one screen:
//!
//! | where | what |
//! |---|---|
//! | the root | [`JobLogger`] (and its builder), the [`JobRun`] guard and its [`RunHandle`], [`RunStatus`], [`Level`], [`Error`] / [`Result`], [`PruneOptions`] |
//! | [`query`] | what a dashboard reads: [`query::RunFilter`], [`query::Cursor`], [`query::RunPage`], [`query::RunRecord`], [`query::JobSummary`], … (the methods are [`JobLogger`]'s) |
//! | [`scheduler`] | recurring jobs: [`scheduler::Scheduler`], [`scheduler::Schedule`], and [`JobLogger::scheduled_jobs`] — run now, pause, resume, schedules |
//! | [`format`] | durations and counts as people read them |
//! | [`metrics`] | Prometheus metrics: [`JobLogger::encode_metrics`], [`metrics::Metrics`] for a host's own |
//! | feature `tracing` | [`JobLogLayer`]: `tracing` events inside a run's span become details |
#![deny(missing_docs)]

mod db_error;
mod error;
pub mod format;
mod logger;
mod maintenance;
pub mod metrics;
mod model;
mod naming;
pub mod query;
mod run;
pub mod scheduler;
mod search_index;
mod secrets;
mod sql;
mod status;
mod summaries;
#[cfg(feature = "tracing")]
mod tracing_layer;
mod writer;

pub use error::{Error, Result};
pub use logger::{JobLogger, JobLoggerBuilder};
pub use maintenance::{PruneOptions, PruneStats};
/// The Prometheus client the [`metrics`] are built on, for a host's own metrics.
pub use prometheus_client;
pub use run::{DETAIL_TARGET, ErrorChain, JobRun, RunHandle};
pub use sea_orm::DatabaseConnection;
pub use status::{Level, ParseError, RunStatus};
#[cfg(feature = "tracing")]
pub use tracing_layer::JobLogLayer;
