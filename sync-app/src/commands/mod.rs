//! What each command does, one module a command; `cli::parse` reads the command line and
//! the settings, `cli::execute` calls these. Here: what several commands share.

mod check;
mod demo;
mod fake_erp;
mod hash_password;
pub mod jobs;
mod migrate;
mod prune;
pub mod runs;
mod serve;
mod sync;

use std::time::Duration;

use joblog::JobLogger;

use crate::configuration::{ConfigError, ErpArgs, Settings};
use crate::erp::{DEFAULT_SOURCE_QUERY, ErpSource};
use crate::sync_job::SyncOpenOrdersJob;

pub use check::check;
pub use demo::{DEMO_INTERVAL, DEMO_ORDERS, demo};
pub use fake_erp::fake_erp;
pub use hash_password::hash_password;
pub use migrate::migrate;
pub use prune::prune;
pub use serve::serve;
pub use sync::sync;

/// Runs with no heartbeat for this long belong to a dead process (heartbeats every 15 s).
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// The ERP source `MSSQL_URL` names (exit 2 when it is missing or malformed).
pub(crate) fn source(settings: &Settings) -> anyhow::Result<ErpSource> {
    let ado = settings.mssql_url.as_deref().ok_or_else(|| ConfigError {
        variable: "MSSQL_URL",
        expected: "the ERP's ADO connection string, e.g. server=tcp:erp.example.com,1433;database=ERP;\
                   user id=sync_reader;password=…;encrypt=true"
            .into(),
    })?;
    ErpSource::from_ado_with_env(ado, &|name| ErpArgs::lookup(settings, name)).map_err(|e| {
        ConfigError {
            variable: "MSSQL_URL",
            expected: format!("a valid ADO connection string ({e})"),
        }
        .into()
    })
}

/// The sync job reading `SOURCE_QUERY` (or the default) from `source`.
pub(crate) fn job(settings: &Settings, source: ErpSource, logger: &JobLogger) -> SyncOpenOrdersJob {
    let query = settings
        .source_query
        .clone()
        .unwrap_or_else(|| DEFAULT_SOURCE_QUERY.to_string());
    SyncOpenOrdersJob::new(source, query, logger.db().clone())
        .with_metrics(crate::metrics::SyncMetrics::of(logger))
}

/// Marks the runs of a process that died as error ("abandoned").
pub(crate) async fn reap(logger: &JobLogger) {
    match logger.reap_stale(STALE_AFTER).await {
        Ok(ids) if !ids.is_empty() => {
            tracing::warn!(runs = ?ids, "marked runs of a process that died as error (abandoned)");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "reaping abandoned runs failed"),
    }
}

/// A future that resolves on Ctrl-C or SIGTERM. The SIGTERM handler is installed when this
/// is called, not when the future is first polled, so no signal is missed in between.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {}
            () = term => {}
        }
    }
}
