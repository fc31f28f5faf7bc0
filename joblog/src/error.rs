//! The one error type of joblog.

use crate::RunStatus;

/// `Result` with joblog's [`enum@Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in joblog.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database refused or failed a statement.
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// A status change that makes no sense from where the run is (e.g. processing after
    /// the end, or a run the reaper already marked abandoned).
    #[error("run {run_id}: cannot go from {from} to {to}")]
    InvalidTransition {
        /// The run's `job_logs.id`.
        run_id: i64,
        /// The status the run had (as far as joblog knows).
        from: RunStatus,
        /// The status that was asked for.
        to: RunStatus,
    },
    /// The run does not exist (any more): it was pruned or deleted.
    #[error("run {0} does not exist")]
    RunNotFound(i64),
    /// No free timestamp name was found after many attempts.
    #[error("could not find a free run name for {base} after {attempts} attempts")]
    NameExhausted {
        /// The `YYYYMMDD_HHMMSS` base name.
        base: String,
        /// How many names were tried.
        attempts: u32,
    },
    /// The background writer could not make queued writes durable; they are kept and
    /// retried, or were dropped where the queue bound says so.
    #[error("log writes not yet durable: {0}")]
    Write(String),
    /// The background writer is gone (its runtime shut down); queued writes are lost.
    #[error("the joblog background writer has stopped")]
    WriterStopped,
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}
