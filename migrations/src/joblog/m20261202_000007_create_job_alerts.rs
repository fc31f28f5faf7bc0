//! Alerts: `job_alerts`, the outbox of webhook messages (one row per incident or recovery,
//! delivered and retried by whichever instance claims it), and `job_alert_states`, a row
//! per job — its alert state (the compare-and-set that makes one instance, not every one,
//! raise an alert) and the last delivery failure (shown on the monitor).

use sea_orm_migration::prelude::*;

use crate::schema::{create_indexes, id_column, new_table, timestamp};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum JobAlerts {
    Table,
    Id,
    Job,
    Event,
    Payload,
    Webhook,
    CreatedAt,
    Attempts,
    NextAttemptAt,
    ClaimedUntil,
    DeliveredAt,
    GivenUpAt,
    LastError,
}

#[derive(DeriveIden, Clone, Copy)]
enum JobAlertStates {
    Table,
    Job,
    State,
    Error,
    ErrorAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager
            .create_table(
                new_table(backend, JobAlerts::Table)
                    .col(id_column(JobAlerts::Id))
                    .col(ColumnDef::new(JobAlerts::Job).string_len(191).not_null())
                    .col(ColumnDef::new(JobAlerts::Event).string_len(20).not_null())
                    .col(ColumnDef::new(JobAlerts::Payload).text().not_null())
                    .col(ColumnDef::new(JobAlerts::Webhook).text().not_null())
                    .col(timestamp(backend, JobAlerts::CreatedAt).not_null())
                    .col(
                        ColumnDef::new(JobAlerts::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(timestamp(backend, JobAlerts::NextAttemptAt).not_null())
                    .col(timestamp(backend, JobAlerts::ClaimedUntil).null())
                    .col(timestamp(backend, JobAlerts::DeliveredAt).null())
                    .col(timestamp(backend, JobAlerts::GivenUpAt).null())
                    .col(ColumnDef::new(JobAlerts::LastError).text().null())
                    .to_owned(),
            )
            .await?;
        create_indexes(
            manager,
            JobAlerts::Table,
            &[
                (
                    "idx_job_alerts_pending",
                    &[JobAlerts::DeliveredAt, JobAlerts::NextAttemptAt][..],
                    false,
                ),
                ("idx_job_alerts_job", &[JobAlerts::Job, JobAlerts::Id][..], false),
            ],
        )
        .await?;
        // Each job's alert state, in a table of its own (an `ALTER TABLE` of
        // `job_schedules` left other SQLite connections of the pool failing with "no such
        // table" now and then).
        manager
            .create_table(
                new_table(backend, JobAlertStates::Table)
                    .col(
                        ColumnDef::new(JobAlertStates::Job)
                            .string_len(191)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(JobAlertStates::State)
                            .small_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(JobAlertStates::Error).text().null())
                    .col(timestamp(backend, JobAlertStates::ErrorAt).null())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(JobAlerts::Table).if_exists().to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(JobAlertStates::Table).if_exists().to_owned())
            .await
    }
}
