//! Database migrations for the joblog workspace.
//!
//! Each part of the system has its own migrator with its own migration table, so a
//! host application's migrator (which uses sea-orm's default `seaql_migrations`) and
//! joblog's run side by side on one database without seeing each other's history.
//!
//! - [`JoblogMigrator`]: `job_logs` and `job_log_details`, tracked in `joblog_migrations`.

mod joblog;
mod types;

pub use joblog::JoblogMigrator;
pub use sea_orm_migration;
