//! sync-app's own tables: `open_orders`, with its history in `sync_app_migrations` — apart
//! from joblog's (`joblog_migrations`) and from a host's `seaql_migrations`.
//!
//! The migration names and the history table are the ones earlier versions kept in the
//! `joblog-migrations` crate, so a database they created migrates on as before.

mod m20261128_000101_create_open_orders;
mod m20261202_000102_open_orders_search;
mod m20261202_000103_open_orders_search_columns;

use joblog::DatabaseConnection;
use joblog_migrations::sea_orm_migration::prelude::*;

/// Creates and upgrades sync-app's tables (`open_orders`); its history lives in
/// `sync_app_migrations`.
#[derive(Debug)]
pub struct SyncAppMigrator;

#[async_trait::async_trait]
impl MigratorTrait for SyncAppMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000101_create_open_orders::Migration),
            Box::new(m20261202_000102_open_orders_search::Migration),
            Box::new(m20261202_000103_open_orders_search_columns::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        Alias::new("sync_app_migrations").into_iden()
    }
}

/// The PostgreSQL advisory-lock key and the MySQL lock name that serialise sync-app's
/// migrations across processes (joblog's use their own).
const PG_LOCK_KEY: i64 = 7_411_150_264;
const MYSQL_LOCK_NAME: &str = "sync_app_migrate";

/// Applies sync-app's pending migrations; safe when several processes start at once.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    joblog_migrations::up_locked::<SyncAppMigrator>(db, PG_LOCK_KEY, MYSQL_LOCK_NAME).await
}
