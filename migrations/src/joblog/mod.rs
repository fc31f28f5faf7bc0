//! joblog's own tables.

mod m20261128_000001_create_job_logs;
mod m20261129_000002_create_job_schedules;

use sea_orm_migration::prelude::*;

/// Creates and upgrades joblog's tables; its history lives in `joblog_migrations`.
#[derive(Debug)]
pub struct JoblogMigrator;

#[async_trait::async_trait]
impl MigratorTrait for JoblogMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_create_job_logs::Migration),
            Box::new(m20261129_000002_create_job_schedules::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        Alias::new("joblog_migrations").into_iden()
    }
}
