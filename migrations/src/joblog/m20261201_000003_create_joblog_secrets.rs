//! `joblog_secrets`: secrets every instance on the database shares, created once (joblog-web's
//! CSRF key).

use sea_orm_migration::prelude::*;

use crate::schema::{new_table, timestamp};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum JoblogSecrets {
    Table,
    Name,
    Value,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        // One row per named secret shared by every instance on this database (joblog-web's
        // CSRF key): written once by whichever instance needs it first, never updated. The
        // value is 32 random bytes as 64 hex digits, the same text on every backend.
        manager
            .create_table(
                new_table(backend, JoblogSecrets::Table)
                    .col(
                        ColumnDef::new(JoblogSecrets::Name)
                            .string_len(191)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(JoblogSecrets::Value).string_len(64).not_null())
                    .col(timestamp(backend, JoblogSecrets::CreatedAt).not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(JoblogSecrets::Table).to_owned())
            .await
    }
}
