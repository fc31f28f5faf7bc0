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
