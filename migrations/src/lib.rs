//! Database migrations for the joblog workspace.
//!
//! Each part of the system has its own migrator with its own migration table, so a
//! host application's migrator (which uses sea-orm's default `seaql_migrations`) and
//! joblog's run side by side on one database without seeing each other's history.
//!
//! - [`JoblogMigrator`]: `job_logs` and `job_log_details`, tracked in `joblog_migrations`.
//! - [`SyncAppMigrator`]: sync-app's `open_orders`, tracked in `sync_app_migrations`.

mod joblog;
mod run;
mod sync_app;
mod types;

pub use joblog::JoblogMigrator;
pub use run::up_locked;
pub use sea_orm_migration;
pub use sync_app::SyncAppMigrator;
