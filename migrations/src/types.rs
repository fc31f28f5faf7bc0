//! Column types that need a per-backend choice.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// A UTC timestamp with microseconds on every backend: `timestamptz` on PostgreSQL,
/// `datetime(6)` on MySQL (its `timestamp` stops in 2038 and defaults to whole seconds),
/// RFC 3339 text on SQLite.
pub(crate) fn timestamp(backend: DbBackend, col: impl IntoIden) -> ColumnDef {
    let mut def = ColumnDef::new(col);
    match backend {
        DbBackend::MySql => def.custom(Alias::new("datetime(6)")),
        _ => def.timestamp_with_time_zone(),
    };
    def
}

/// Creates an index unless it exists, so that a migration cut short (MySQL's DDL is not
/// transactional) or run by two processes at once (SQLite has no advisory lock) can run
/// again. MySQL has no `CREATE INDEX IF NOT EXISTS` (MariaDB does), so it is asked first.
pub(crate) async fn create_index(
    manager: &SchemaManager<'_>,
    mut index: IndexCreateStatement,
    table: &str,
    name: &str,
) -> Result<(), DbErr> {
    if manager.get_database_backend() == DbBackend::MySql {
        if manager.has_index(table, name).await? {
            return Ok(());
        }
    } else {
        index.if_not_exists();
    }
    manager.create_index(index).await
}

/// MySQL: InnoDB with utf8mb4 whatever the database's default charset is (a latin1
/// default would refuse non-Latin text). Other backends: unchanged.
pub(crate) fn table_options(
    backend: DbBackend,
    table: &mut TableCreateStatement,
) -> &mut TableCreateStatement {
    if backend == DbBackend::MySql {
        table
            .engine("InnoDB")
            .character_set("utf8mb4")
            .collate("utf8mb4_unicode_ci");
    }
    table
}
