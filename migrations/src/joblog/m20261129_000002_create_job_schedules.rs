//! `job_schedules`: one row a scheduled job — its schedule, pause, next / last run and the
//! lease that keeps two instances from running it at once.

use sea_orm_migration::prelude::*;

use crate::schema::{new_table, timestamp};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum JobSchedules {
    Table,
    Job,
    Schedule,
    Paused,
    NextRunAt,
    LastRunId,
    LastRunAt,
    LastStatus,
    LastSuccessAt,
    LeaseOwner,
    LeaseExpiresAt,
    RunNowRequestedAt,
    SkippedCount,
    LastSkippedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        // One row per scheduled job: its schedule, its state and the lease that keeps two
        // instances from running it at once.
        manager
            .create_table(
                new_table(backend, JobSchedules::Table)
                    .col(
                        ColumnDef::new(JobSchedules::Job)
                            .string_len(191)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(JobSchedules::Schedule).text().not_null())
                    .col(
                        ColumnDef::new(JobSchedules::Paused)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(timestamp(backend, JobSchedules::NextRunAt).not_null())
                    .col(ColumnDef::new(JobSchedules::LastRunId).big_integer().null())
                    .col(timestamp(backend, JobSchedules::LastRunAt).null())
                    .col(ColumnDef::new(JobSchedules::LastStatus).small_integer().null())
                    .col(timestamp(backend, JobSchedules::LastSuccessAt).null())
                    .col(ColumnDef::new(JobSchedules::LeaseOwner).string_len(255).null())
                    .col(timestamp(backend, JobSchedules::LeaseExpiresAt).null())
                    .col(timestamp(backend, JobSchedules::RunNowRequestedAt).null())
                    .col(
                        ColumnDef::new(JobSchedules::SkippedCount)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(timestamp(backend, JobSchedules::LastSkippedAt).null())
                    .col(timestamp(backend, JobSchedules::UpdatedAt).not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(JobSchedules::Table).to_owned())
            .await
    }
}
