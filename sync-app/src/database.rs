//! The local database: one pool shared by joblog (runs), the importer and the pages.

use anyhow::Context;
use joblog::{DatabaseConnection, JobLogger};
use joblog_migrations::SyncAppMigrator;

use crate::configuration::redact_url;

/// Connects to `url` (SQLite file, PostgreSQL or MySQL) and applies joblog's and
/// sync-app's migrations (each with its own history table; safe with several processes
/// starting at once).
pub async fn open(url: &str) -> anyhow::Result<JobLogger> {
    let logger = JobLogger::builder()
        .max_connections(10)
        .connect(url)
        .await
        .with_context(|| format!("connecting to DATABASE_URL ({})", redact_url(url)))?;
    logger.migrate().await.context("running joblog's migrations")?;
    migrate(logger.db()).await?;
    Ok(logger)
}

/// Applies sync-app's migrations (`open_orders`).
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    joblog_migrations::up_locked::<SyncAppMigrator>(db, 7411150264, "sync_app_migrate")
        .await
        .context("running sync-app's migrations")
}
