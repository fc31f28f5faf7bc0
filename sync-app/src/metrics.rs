//! sync-app's own metrics, beside joblog's on `/metrics`:
//!
//! - `sync_open_orders_rows{phase="fetched"|"inserted"}` (gauge): the rows the last
//!   successful sync *of this process* read from the ERP and wrote to `open_orders`.
//! - `sync_open_orders_last_rows` (gauge): the rows in the current snapshot of
//!   `open_orders`, read from the database — the same on every instance, whichever one ran
//!   the sync. Counted once per snapshot (a new sync's `synced_at`), not at every scrape.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use joblog::JobLogger;
use joblog::prometheus_client::metrics::family::Family;
use joblog::prometheus_client::metrics::gauge::Gauge;
use sea_orm::{ConnectionTrait, Statement};
use tokio::sync::Mutex;

use crate::open_orders::ImportStats;

/// The snapshot last counted: its `synced_at` and its rows.
type Counted = Option<(Option<DateTime<Utc>>, u64)>;

/// `phase="fetched"` or `phase="inserted"`.
type Phase = [(&'static str, &'static str); 1];

/// The gauges, registered once per logger (see [`SyncMetrics::of`]).
#[derive(Clone, Debug)]
pub struct SyncMetrics {
    rows: Family<Phase, Gauge>,
    last_rows: Gauge<u64, AtomicU64>,
}

impl SyncMetrics {
    /// The sync metrics of `logger`: registered on its first call for this logger, with a
    /// scrape hook that reads the snapshot's row count.
    pub fn of(logger: &JobLogger) -> Self {
        logger.metrics().extension(|metrics| {
            let made = Self {
                rows: Family::default(),
                last_rows: Gauge::default(),
            };
            {
                let mut registry = metrics.registry();
                registry.register(
                    "sync_open_orders_rows",
                    "Rows the last successful sync of this process fetched from the ERP and inserted into open_orders",
                    made.rows.clone(),
                );
                registry.register(
                    "sync_open_orders_last_rows",
                    "Rows in the current snapshot of open_orders (from the database; the same on every instance)",
                    made.last_rows.clone(),
                );
            }
            let db = logger.db().clone();
            let gauge = made.last_rows.clone();
            let seen: Arc<Mutex<Counted>> = Arc::default();
            metrics.on_scrape(move || {
                let (db, gauge, seen) = (db.clone(), gauge.clone(), seen.clone());
                Box::pin(async move {
                    match snapshot_rows(&db, &seen).await {
                        Ok(n) => {
                            gauge.set(n);
                        }
                        Err(e) => tracing::warn!(error = %e, "metrics: could not count open_orders"),
                    }
                })
            });
            made
        })
    }

    /// Records a successful sync's row counts.
    pub fn synced(&self, stats: &ImportStats) {
        self.rows
            .get_or_create(&[("phase", "fetched")])
            .set(i64::try_from(stats.fetched).unwrap_or(i64::MAX));
        self.rows
            .get_or_create(&[("phase", "inserted")])
            .set(i64::try_from(stats.inserted).unwrap_or(i64::MAX));
    }
}

/// Rows in the current snapshot: recounted only when its `synced_at` changed.
async fn snapshot_rows(
    db: &sea_orm::DatabaseConnection,
    seen: &Mutex<Counted>,
) -> Result<u64, sea_orm::DbErr> {
    let mut seen = seen.lock().await;
    let at = crate::open_orders::query::snapshot_time(db).await?;
    if let Some((when, n)) = *seen
        && when == at
    {
        return Ok(n);
    }
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM open_orders",
        ))
        .await?;
    let n = row
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0);
    let n = u64::try_from(n).unwrap_or(0);
    *seen = Some((at, n));
    Ok(n)
}
