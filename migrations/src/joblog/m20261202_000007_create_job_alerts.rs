//! Alerts: `job_alerts`, the outbox of webhook messages (one row per incident or recovery,
//! delivered and retried by whichever instance claims it), and three columns of
//! `job_schedules` — the job's alert state (the compare-and-set that makes one instance,
//! not every one, raise an alert) and the last delivery failure (shown on the monitor).

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
enum JobSchedules {
    Table,
    AlertState,
    AlertError,
    AlertErrorAt,
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
        // Each column on its own, and only if missing: a run that died half-way is resumed.
        let columns = [
            (
                "alert_state",
                ColumnDef::new(JobSchedules::AlertState)
                    .small_integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
            ),
            (
                "alert_error",
                ColumnDef::new(JobSchedules::AlertError).text().null().to_owned(),
            ),
            (
                "alert_error_at",
                timestamp(backend, JobSchedules::AlertErrorAt).null().to_owned(),
            ),
        ];
        for (name, mut column) in columns {
            if !manager.has_column("job_schedules", name).await? {
                manager
                    .alter_table(
                        Table::alter()
                            .table(JobSchedules::Table)
                            .add_column(&mut column)
                            .to_owned(),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(JobAlerts::Table).if_exists().to_owned())
            .await?;
        for column in [
            JobSchedules::AlertState,
            JobSchedules::AlertError,
            JobSchedules::AlertErrorAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(JobSchedules::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
