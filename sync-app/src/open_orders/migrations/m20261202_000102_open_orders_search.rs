//! The Open Orders search's index (see [`crate::open_orders::search_index`]): on SQLite
//! an FTS5 trigram table over the text columns, filled from the rows already there and
//! kept in step by triggers; on PostgreSQL a `pg_trgm` GIN index (when the server has the
//! extension); nothing on MySQL / MariaDB.

use joblog_migrations::sea_orm_migration::prelude::*;
use joblog_migrations::sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::open_orders::search_index::{self, FTS};

/// The index as this migration first built it: one GIN over the four columns joined
/// (replaced by `m20261202_000103`; a migration's statements never change).
pub(crate) const FIRST_PG_INDEX: &str = "CREATE INDEX IF NOT EXISTS idx_open_orders_search ON open_orders \
     USING gin ((customer_code || ' ' || customer_name || ' ' || item_code || ' ' || \
     COALESCE(item_description, '')) gin_trgm_ops)";

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                db.execute_unprepared(&search_index::sqlite_create_fts(FTS))
                    .await?;
                // External content: 'rebuild' indexes every row already in open_orders.
                db.execute_unprepared(&format!("INSERT INTO {FTS} ({FTS}) VALUES ('rebuild')"))
                    .await?;
                for trigger in search_index::sqlite_triggers() {
                    db.execute_unprepared(&trigger).await?;
                }
            }
            DbBackend::Postgres => {
                if !search_index::pg_trgm_available(db).await? {
                    tracing::warn!(
                        "sync-app: this PostgreSQL server has no pg_trgm extension; the Open Orders search \
                         reads the whole table"
                    );
                    return Ok(());
                }
                db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                    .await?;
                db.execute_unprepared(FIRST_PG_INDEX).await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                for suffix in ["insert", "delete", "update"] {
                    db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {FTS}_{suffix}"))
                        .await?;
                }
                db.execute_unprepared(&format!("DROP TABLE IF EXISTS {FTS}"))
                    .await?;
            }
            DbBackend::Postgres => {
                db.execute_unprepared(&format!("DROP INDEX IF EXISTS {}", search_index::PG_INDEX))
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }
}
