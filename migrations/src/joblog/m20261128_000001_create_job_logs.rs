use sea_orm_migration::prelude::*;

use crate::types::{create_index, table_options, timestamp};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
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

#[derive(DeriveIden)]
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
                table_options(
                    backend,
                    &mut Table::create()
                        .table(JobLogs::Table)
                        .if_not_exists()
                        .col(
                            ColumnDef::new(JobLogs::Id)
                                .big_integer()
                                .not_null()
                                .auto_increment()
                                .primary_key(),
                        )
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
                .to_owned(),
            )
            .await?;
        // The run list is keyset-paginated on `id` (newest first), alone or filtered by
        // status and/or job: each index ends in `id` so a filtered page is an index range.
        let indexes = [
            ("uq_job_logs_name", vec![JobLogs::Name], true),
            ("idx_job_logs_status", vec![JobLogs::Status, JobLogs::Id], false),
            ("idx_job_logs_job", vec![JobLogs::Job, JobLogs::Id], false),
            (
                "idx_job_logs_job_status",
                vec![JobLogs::Job, JobLogs::Status, JobLogs::Id],
                false,
            ),
            ("idx_job_logs_created_at", vec![JobLogs::CreatedAt], false),
        ];
        for (name, cols, unique) in indexes {
            let mut index = Index::create();
            index.name(name).table(JobLogs::Table);
            for col in cols {
                index.col(col);
            }
            if unique {
                index.unique();
            }
            create_index(manager, index, "job_logs", name).await?;
        }

        manager
            .create_table(
                table_options(
                    backend,
                    &mut Table::create()
                        .table(JobLogDetails::Table)
                        .if_not_exists()
                        .col(
                            ColumnDef::new(JobLogDetails::Id)
                                .big_integer()
                                .not_null()
                                .auto_increment()
                                .primary_key(),
                        )
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
                .to_owned(),
            )
            .await?;
        // (job_log_id, id): a run's details in write order, and the live tail "after id".
        create_index(
            manager,
            Index::create()
                .name("idx_job_log_details_job_log_id")
                .table(JobLogDetails::Table)
                .col(JobLogDetails::JobLogId)
                .col(JobLogDetails::Id)
                .to_owned(),
            "job_log_details",
            "idx_job_log_details_job_log_id",
        )
        .await?;
        create_index(
            manager,
            Index::create()
                .name("idx_job_log_details_created_at")
                .table(JobLogDetails::Table)
                .col(JobLogDetails::CreatedAt)
                .to_owned(),
            "job_log_details",
            "idx_job_log_details_created_at",
        )
        .await?;
        Ok(())
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
