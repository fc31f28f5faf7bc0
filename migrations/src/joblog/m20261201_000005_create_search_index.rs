//! The run-list search's index on SQLite: FTS5 tables with the trigram tokenizer over
//! `job_log_details.message` and `job_logs.name`, and how far each has been indexed.
//!
//! The index is *external content* (it stores the trigrams, the text stays in the tables)
//! and is filled in batches behind a high-water mark (`joblog_search_index.indexed_upto`):
//! a row with an id above the mark is not indexed yet, and the search reads those few rows
//! directly. Writers are never slowed by the index — inserting a detail fires nothing —
//! and a row written by any process, a hand-written `INSERT` included, is found at once
//! (from the tail) and indexed by the next batch (joblog's background indexer, or
//! `JobLogger::build_search_index`). Ids never go back (`AUTOINCREMENT`), so the mark is
//! exact. Deleting or rewriting an indexed row is mirrored by the triggers below, so prune
//! keeps the index in step.
//!
//! PostgreSQL needs no table of its own: its `pg_trgm` GIN indexes are built by
//! `JobLogger::build_search_index` (`CREATE INDEX CONCURRENTLY`, which cannot run inside this
//! migration's transaction). MySQL / MariaDB keep the bounded scan (MariaDB has no n-gram
//! full-text parser); see the search docs.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// `(table, text column, FTS table)` for each indexed source.
const SOURCES: [(&str, &str, &str); 2] = [
    ("job_log_details", "message", "job_log_details_fts"),
    ("job_logs", "name", "job_logs_fts"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS joblog_search_index (\
             source varchar(64) NOT NULL PRIMARY KEY, \
             indexed_upto integer NOT NULL DEFAULT 0)",
        )
        .await?;
        for (table, column, fts) in SOURCES {
            db.execute_unprepared(&format!(
                "CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5({column}, \
                 content='{table}', content_rowid='id', tokenize='trigram')"
            ))
            .await?;
            db.execute_unprepared(&format!(
                "INSERT OR IGNORE INTO joblog_search_index (source, indexed_upto) VALUES ('{table}', 0)"
            ))
            .await?;
            let indexed =
                format!("old.id <= (SELECT indexed_upto FROM joblog_search_index WHERE source = '{table}')");
            // External content: the index forgets a row only when told its old text.
            db.execute_unprepared(&format!(
                "CREATE TRIGGER IF NOT EXISTS {fts}_delete AFTER DELETE ON {table} WHEN {indexed} \
                 BEGIN INSERT INTO {fts} ({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column}); END"
            ))
            .await?;
            db.execute_unprepared(&format!(
                "CREATE TRIGGER IF NOT EXISTS {fts}_update AFTER UPDATE OF {column} ON {table} WHEN {indexed} \
                 BEGIN INSERT INTO {fts} ({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column}); \
                 INSERT INTO {fts} (rowid, {column}) VALUES (new.id, new.{column}); END"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        let db = manager.get_connection();
        for (_, _, fts) in SOURCES {
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {fts}_delete"))
                .await?;
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {fts}_update"))
                .await?;
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {fts}"))
                .await?;
        }
        db.execute_unprepared("DROP TABLE IF EXISTS joblog_search_index")
            .await?;
        Ok(())
    }
}
