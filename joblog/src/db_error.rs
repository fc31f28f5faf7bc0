//! Telling a bad row from a bad database.

use sea_orm::{DbErr, RuntimeErr};

/// Whether `err` is about the data of a statement (a value too long, an invalid byte, a
/// constraint) rather than about the database being unreachable, locked or full. Only
/// such errors make the writer set rows aside: anything else is retried, since dropping
/// rows because the database is down would lose them.
pub(crate) fn is_row_error(err: &DbErr) -> bool {
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = err else {
        return false;
    };
    let sea_orm::sqlx::Error::Database(db) = e.as_ref() else {
        return false;
    };
    use sea_orm::sqlx::error::ErrorKind;
    if matches!(
        db.kind(),
        ErrorKind::UniqueViolation
            | ErrorKind::ForeignKeyViolation
            | ErrorKind::NotNullViolation
            | ErrorKind::CheckViolation
    ) {
        return true;
    }
    #[cfg(feature = "mysql")]
    if let Some(my) = db.try_downcast_ref::<sea_orm::sqlx::mysql::MySqlDatabaseError>() {
        // Data too long, incorrect string value, packet too large, prepared statement too big.
        return matches!(my.number(), 1406 | 1366 | 1153 | 1301 | 1390);
    }
    let code = db.code().unwrap_or_default();
    #[cfg(feature = "sqlite")]
    if db
        .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
        .is_some()
    {
        // SQLITE_TOOBIG, and the SQLITE_CONSTRAINT family (primary code 19).
        return code.parse::<i32>().is_ok_and(|c| c == 18 || c & 0xff == 19);
    }
    // PostgreSQL: SQLSTATE class 22 (data exception) and 23 (integrity constraint).
    code.starts_with("22") || code.starts_with("23")
}
