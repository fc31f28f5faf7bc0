//! joblog's database migrations, and what a host needs to run its own beside them.
//!
//! joblog's migrator has its own migration table, so a host application's migrator (sea-orm's
//! default `seaql_migrations`, or a table of its own) and joblog's run side by side on one
//! database without seeing each other's history.
//!
//! - [`JoblogMigrator`]: `job_logs`, `job_log_details`, `job_schedules` and `joblog_secrets`
//!   (the secrets every instance shares, e.g. joblog-web's CSRF key), tracked in
//!   `joblog_migrations`.
//! - [`up_locked`]: applies any migrator's pending migrations safely when several processes
//!   start at once (sync-app runs its own `open_orders` migrator through it).
//! - [`schema`]: column types, indexes and table options that work on every backend.

mod joblog;
mod run;
pub mod schema;

pub use joblog::JoblogMigrator;
pub use run::up_locked;
pub use sea_orm_migration;
