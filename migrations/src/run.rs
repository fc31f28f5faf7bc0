//! Running a migrator safely when several processes start at once.

use std::time::Duration;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement, TransactionTrait,
};

/// Applies `M`'s pending migrations; safe when several processes do it at the same time.
///
/// PostgreSQL: inside one transaction under `pg_advisory_xact_lock(pg_key)`. MySQL: on one
/// connection under `GET_LOCK(lock_name, 60)` (its DDL is not transactional; migrations
/// use `IF NOT EXISTS` so that a half-done run completes). SQLite has no advisory lock: a
/// process that loses the race for the history row retries and then finds nothing pending.
pub async fn up_locked<M: MigratorTrait>(
    db: &DatabaseConnection,
    pg_key: i64,
    lock_name: &str,
) -> Result<(), DbErr> {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let txn = db.begin().await?;
            let result = match txn
                .execute_unprepared(&format!("SELECT pg_advisory_xact_lock({pg_key})"))
                .await
            {
                Ok(_) => M::up(&txn, None).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => txn.commit().await,
                Err(e) => {
                    rollback(txn).await;
                    Err(e)
                }
            }
        }
        DbBackend::MySql => {
            // GET_LOCK is held by the session: run everything on one connection.
            let txn = db.begin().await?;
            let got: Option<i64> = match txn
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::MySql,
                    "SELECT GET_LOCK(?, 60)",
                    [lock_name.into()],
                ))
                .await?
            {
                Some(row) => row.try_get_by_index(0)?,
                None => None,
            };
            if got != Some(1) {
                rollback(txn).await;
                return Err(DbErr::Migration(format!(
                    "another process held the {lock_name} lock for 60 s"
                )));
            }
            let result = M::up(&txn, None).await;
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::MySql,
                "SELECT RELEASE_LOCK(?)",
                [lock_name.into()],
            ))
            .await?;
            txn.commit().await?;
            result
        }
        _ => {
            let mut attempt = 0;
            loop {
                match M::up(db, None).await {
                    Ok(()) => return Ok(()),
                    Err(e) if attempt < 20 => {
                        attempt += 1;
                        tracing::debug!(error = %e, attempt, "migration raced, retrying");
                        tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

async fn rollback(txn: DatabaseTransaction) {
    if let Err(e) = txn.rollback().await {
        tracing::warn!(error = %e, "migration: rollback failed");
    }
}
