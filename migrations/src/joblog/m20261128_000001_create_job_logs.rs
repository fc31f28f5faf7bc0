//! `job_logs` (one row a run) and `job_log_details` (its ordered messages), with the
//! indexes the run list's keyset pages and the live tail use.

use sea_orm_migration::prelude::*;

use crate::schema::{create_indexes, id_column, new_table, timestamp};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum JobLogs {
    Table,
    Id,
    Name,
    Job,
    Status,
    Host,
    Pid,
    Error,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    FinishedAt,
    HeartbeatAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum JobLogDetails {
    Table,
    Id,
    JobLogId,
    Level,
    Message,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager
            .create_table(
                new_table(backend, JobLogs::Table)
                    .col(id_column(JobLogs::Id))
                    .col(ColumnDef::new(JobLogs::Name).string_len(64).not_null())
                    .col(ColumnDef::new(JobLogs::Job).string_len(191).not_null())
                    .col(
                        ColumnDef::new(JobLogs::Status)
                            .small_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(JobLogs::Host).string_len(255).null())
                    .col(ColumnDef::new(JobLogs::Pid).big_integer().null())
                    .col(ColumnDef::new(JobLogs::Error).text().null())
                    .col(timestamp(backend, JobLogs::CreatedAt).not_null())
                    .col(timestamp(backend, JobLogs::UpdatedAt).not_null())
                    .col(timestamp(backend, JobLogs::StartedAt).null())
                    .col(timestamp(backend, JobLogs::FinishedAt).null())
                    .col(timestamp(backend, JobLogs::HeartbeatAt).null())
                    .to_owned(),
            )
            .await?;
        // The run list is keyset-paginated on `id` (newest first), alone or filtered by
        // status and/or job: each index ends in `id` so a filtered page is an index range.
        let indexes: [(&str, &[JobLogs], bool); 5] = [
            ("uq_job_logs_name", &[JobLogs::Name], true),
            ("idx_job_logs_status", &[JobLogs::Status, JobLogs::Id], false),
            ("idx_job_logs_job", &[JobLogs::Job, JobLogs::Id], false),
            (
                "idx_job_logs_job_status",
                &[JobLogs::Job, JobLogs::Status, JobLogs::Id],
                false,
            ),
            ("idx_job_logs_created_at", &[JobLogs::CreatedAt], false),
        ];
        create_indexes(manager, JobLogs::Table, &indexes).await?;

        manager
            .create_table(
                new_table(backend, JobLogDetails::Table)
                    .col(id_column(JobLogDetails::Id))
                    .col(ColumnDef::new(JobLogDetails::JobLogId).big_integer().not_null())
                    .col(
                        ColumnDef::new(JobLogDetails::Level)
                            .string_len(8)
                            .not_null()
                            .default("info"),
                    )
                    .col(ColumnDef::new(JobLogDetails::Message).text().not_null())
                    .col(timestamp(backend, JobLogDetails::CreatedAt).not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_job_log_details_job_log_id")
                            .from(JobLogDetails::Table, JobLogDetails::JobLogId)
                            .to(JobLogs::Table, JobLogs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // (job_log_id, id): a run's details in write order, and the live tail "after id".
        let indexes: [(&str, &[JobLogDetails], bool); 2] = [
            (
                "idx_job_log_details_job_log_id",
                &[JobLogDetails::JobLogId, JobLogDetails::Id],
                false,
            ),
            (
                "idx_job_log_details_created_at",
                &[JobLogDetails::CreatedAt],
                false,
            ),
        ];
        create_indexes(manager, JobLogDetails::Table, &indexes).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(JobLogDetails::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(JobLogs::Table).to_owned())
            .await
    }
}
