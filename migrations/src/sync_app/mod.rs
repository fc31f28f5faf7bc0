//! sync-app's tables.

mod m20261128_000101_create_open_orders;

use sea_orm_migration::prelude::*;

/// Creates and upgrades sync-app's tables (`open_orders`); its history lives in
/// `sync_app_migrations`, apart from joblog's and from a host's `seaql_migrations`.
#[derive(Debug)]
pub struct SyncAppMigrator;

#[async_trait::async_trait]
impl MigratorTrait for SyncAppMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261128_000101_create_open_orders::Migration)]
    }

    fn migration_table_name() -> DynIden {
        Alias::new("sync_app_migrations").into_iden()
    }
}
