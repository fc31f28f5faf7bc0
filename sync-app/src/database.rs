//! The local database: one pool shared by joblog (runs), the importer and the pages.
//!
//! A SQLite file holds customers and amounts: on unix sync-app creates it readable by its
//! owner only (mode 0600, before SQLite opens it; SQLite gives its `-wal` and `-shm` files
//! the database file's mode), and warns when an existing one is open to the group or others.

use anyhow::Context;
use joblog::{DatabaseConnection, JobLogger};

use crate::configuration::redact_url;

/// Connects to `url` (SQLite file, PostgreSQL or MySQL) and applies joblog's and
/// sync-app's migrations (each with its own history table; safe with several processes
/// starting at once).
pub async fn open(url: &str) -> anyhow::Result<JobLogger> {
    if let Some(path) = sqlite_file(url) {
        owner_only(&path, url.contains("mode=rwc") || !url.contains("mode="))?;
    }
    let logger = JobLogger::builder()
        .max_connections(10)
        .connect(url)
        .await
        .with_context(|| format!("connecting to DATABASE_URL ({})", redact_url(url)))?;
    logger.migrate().await.context("running joblog's migrations")?;
    migrate(logger.db()).await?;
    // SQLite: no pooled connection keeps the schema from before `open_orders`' migrations.
    logger.reset_idle_connections().await;
    crate::metrics::SyncMetrics::of(&logger);
    Ok(logger)
}

/// [`open`] for the commands that read what others wrote (`runs`, `jobs`, `run-now`, …):
/// a SQLite file that does not exist is an error, not a new empty database.
pub async fn open_existing(url: &str) -> anyhow::Result<JobLogger> {
    if let Some(path) = sqlite_file(url)
        && !path.exists()
    {
        anyhow::bail!(
            "there is no database at {} (DATABASE_URL {}): set DATABASE_URL to the one `serve` uses",
            path.display(),
            redact_url(url)
        );
    }
    open(url).await
}

/// Applies sync-app's migrations (`open_orders`).
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    crate::open_orders::migrations::migrate(db)
        .await
        .context("running sync-app's migrations")
}

/// The file a `sqlite:` URL names; `None` for other databases and in-memory ones.
#[must_use]
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// Creates the SQLite file `path` with mode 0600 when it does not exist yet (and `create`
/// allows it); warns when an existing one can be read by the group or others.
#[cfg(unix)]
fn owner_only(path: &std::path::Path, create: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = format!("{mode:o}"),
                    "the SQLite file can be read by other users of this machine (it holds customers and \
                     amounts): `chmod 600` it and its -wal / -shm files"
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => Ok(()),
                // Another process created it a moment ago: SQLite opens that one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(anyhow::Error::from(e).context(format!(
                    "creating the SQLite file {} (DATABASE_URL)",
                    path.display()
                ))),
            }
        }
        // Not there and not to be created, or unreadable: SQLite says what is wrong.
        Err(_) => Ok(()),
    }
}

#[cfg(not(unix))]
fn owner_only(_path: &std::path::Path, _create: bool) -> anyhow::Result<()> {
    Ok(())
}
