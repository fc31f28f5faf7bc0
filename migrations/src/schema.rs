//! Schema helpers for migrations that run on SQLite, PostgreSQL and MySQL / MariaDB alike:
//! column types that need a per-backend choice, indexes that may already exist, MySQL
//! table options, how many bind parameters a statement may carry. joblog uses them, and so
//! can a host (sync-app's `open_orders` migration and importer do).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

/// A UTC timestamp with microseconds on every backend: `timestamptz` on PostgreSQL,
/// `datetime(6)` on MySQL (its `timestamp` stops in 2038 and defaults to whole seconds),
/// RFC 3339 text on SQLite.
pub fn timestamp(backend: DbBackend, col: impl IntoIden) -> ColumnDef {
    let mut def = ColumnDef::new(col);
    match backend {
        DbBackend::MySql => def.custom(Alias::new("datetime(6)")),
        _ => def.timestamp_with_time_zone(),
    };
    def
}

/// `CREATE TABLE IF NOT EXISTS table` with the backend's options ([`table_options`]);
/// add the columns, then hand it to `SchemaManager::create_table`.
#[must_use]
pub fn new_table(backend: DbBackend, table: impl IntoIden) -> TableCreateStatement {
    let mut create = Table::create();
    create.table(table).if_not_exists();
    table_options(backend, &mut create);
    create
}

/// An auto-incrementing `bigint` primary key.
#[must_use]
pub fn id_column(col: impl IntoIden) -> ColumnDef {
    let mut def = ColumnDef::new(col);
    def.big_integer().not_null().auto_increment().primary_key();
    def
}

/// Creates each `(name, columns, unique)` index on `table` unless it exists
/// ([`create_index`]).
pub async fn create_indexes<T, C>(
    manager: &SchemaManager<'_>,
    table: T,
    indexes: &[(&str, &[C], bool)],
) -> Result<(), DbErr>
where
    T: IntoIden + Copy,
    C: IntoIden + Copy,
{
    let table_name = table.into_iden().to_string();
    for &(name, cols, unique) in indexes {
        let mut index = Index::create();
        index.name(name).table(table);
        for &col in cols {
            index.col(col);
        }
        if unique {
            index.unique();
        }
        create_index(manager, index, &table_name, name).await?;
    }
    Ok(())
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
pub fn table_options(backend: DbBackend, table: &mut TableCreateStatement) -> &mut TableCreateStatement {
    if backend == DbBackend::MySql {
        table
            .engine("InnoDB")
            .character_set("utf8mb4")
            .collate("utf8mb4_unicode_ci");
    }
    table
}

/// The most bind parameters one statement may carry on `backend`: SQLite's
/// `SQLITE_MAX_VARIABLE_NUMBER` (32,766 since 3.32); PostgreSQL's and MySQL's wire
/// protocols count parameters in a u16 (65,535). Multi-row inserts are cut to fit.
#[must_use]
pub fn max_bind_parameters(backend: DbBackend) -> usize {
    match backend {
        DbBackend::Sqlite => 32_766,
        _ => 65_535,
    }
}
