//! joblog's own tables.

mod m20261128_000001_create_job_logs;
mod m20261129_000002_create_job_schedules;
mod m20261201_000003_create_joblog_secrets;
mod m20261201_000005_create_search_index;
mod m20261201_000006_create_job_run_counts;
mod m20261202_000007_create_job_alerts;

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
            Box::new(m20261201_000003_create_joblog_secrets::Migration),
            Box::new(m20261201_000005_create_search_index::Migration),
            Box::new(m20261201_000006_create_job_run_counts::Migration),
            Box::new(m20261202_000007_create_job_alerts::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        Alias::new("joblog_migrations").into_iden()
    }
}
