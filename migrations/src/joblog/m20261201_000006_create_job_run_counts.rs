//! Runs per job and status, kept by the database as runs start, change status and are
//! deleted: the jobs monitor reads these few rows instead of counting every run.
//!
//! `job_run_counts(job, status, runs)` is filled from the existing runs once (in this
//! migration, under its lock) and then kept by triggers on `job_logs`, in the same
//! transaction as the change they count — so the counts are right after prune, after a
//! rolled-back transaction, after a crash, and for rows written by any process:
//!
//! - SQLite: row triggers (insert, delete, update of `job` or `status`) that upsert;
//! - PostgreSQL: statement triggers with transition tables for inserts and deletes (a
//!   prune of a million runs is one grouped update, not a million), a row trigger for a
//!   change of `job` or `status` (heartbeats, which update other columns, fire nothing);
//! - MySQL / MariaDB: row triggers (the `TRIGGER` privilege; with binary logging on,
//!   MySQL also asks for `log_bin_trust_function_creators` or `SUPER`).
//!
//! A count that drops to zero stays as a row with `runs = 0`; readers skip those.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// Adds one run of `(job, status)` for `{j}` / `{s}` (the trigger's row), per backend.
fn add_one(backend: DbBackend, j: &str, s: &str) -> String {
    match backend {
        DbBackend::MySql => format!(
            "INSERT INTO job_run_counts (job, status, runs) VALUES ({j}, {s}, 1) \
             ON DUPLICATE KEY UPDATE runs = runs + 1"
        ),
        _ => format!(
            "INSERT INTO job_run_counts (job, status, runs) VALUES ({j}, {s}, 1) \
             ON CONFLICT (job, status) DO UPDATE SET runs = job_run_counts.runs + 1"
        ),
    }
}

fn remove_one(j: &str, s: &str) -> String {
    format!("UPDATE job_run_counts SET runs = runs - 1 WHERE job = {j} AND status = {s}")
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let db = manager.get_connection();
        let options = if backend == DbBackend::MySql {
            " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
        } else {
            ""
        };
        db.execute_unprepared(&format!(
            "CREATE TABLE IF NOT EXISTS job_run_counts (\
             job varchar(191) NOT NULL, \
             status smallint NOT NULL, \
             runs bigint NOT NULL DEFAULT 0, \
             PRIMARY KEY (job, status)){options}"
        ))
        .await?;
        // Triggers first: on PostgreSQL creating them locks job_logs against writers until
        // this migration commits, so the count below misses no concurrent run.
        match backend {
            DbBackend::Sqlite => {
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER IF NOT EXISTS job_run_counts_insert AFTER INSERT ON job_logs \
                     BEGIN {}; END",
                    add_one(backend, "new.job", "new.status")
                ))
                .await?;
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER IF NOT EXISTS job_run_counts_delete AFTER DELETE ON job_logs \
                     BEGIN {}; END",
                    remove_one("old.job", "old.status")
                ))
                .await?;
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER IF NOT EXISTS job_run_counts_update AFTER UPDATE OF job, status ON job_logs \
                     WHEN old.job IS NOT new.job OR old.status IS NOT new.status \
                     BEGIN {}; {}; END",
                    remove_one("old.job", "old.status"),
                    add_one(backend, "new.job", "new.status")
                ))
                .await?;
            }
            DbBackend::Postgres => {
                db.execute_unprepared(
                    "CREATE OR REPLACE FUNCTION joblog_run_counts_insert() RETURNS trigger \
                     LANGUAGE plpgsql AS $$ BEGIN \
                     INSERT INTO job_run_counts (job, status, runs) \
                     SELECT job, status, COUNT(*) FROM joblog_new_runs GROUP BY job, status \
                     ON CONFLICT (job, status) DO UPDATE SET runs = job_run_counts.runs + EXCLUDED.runs; \
                     RETURN NULL; END $$",
                )
                .await?;
                db.execute_unprepared(
                    "CREATE OR REPLACE FUNCTION joblog_run_counts_delete() RETURNS trigger \
                     LANGUAGE plpgsql AS $$ BEGIN \
                     UPDATE job_run_counts c SET runs = c.runs - d.n \
                     FROM (SELECT job, status, COUNT(*) AS n FROM joblog_old_runs GROUP BY job, status) d \
                     WHERE c.job = d.job AND c.status = d.status; \
                     RETURN NULL; END $$",
                )
                .await?;
                db.execute_unprepared(&format!(
                    "CREATE OR REPLACE FUNCTION joblog_run_counts_update() RETURNS trigger \
                     LANGUAGE plpgsql AS $$ BEGIN {}; {}; RETURN NULL; END $$",
                    remove_one("OLD.job", "OLD.status"),
                    add_one(backend, "NEW.job", "NEW.status")
                ))
                .await?;
                for (name, sql) in [
                    (
                        "job_run_counts_insert",
                        "AFTER INSERT ON job_logs REFERENCING NEW TABLE AS joblog_new_runs \
                         FOR EACH STATEMENT EXECUTE FUNCTION joblog_run_counts_insert()",
                    ),
                    (
                        "job_run_counts_delete",
                        "AFTER DELETE ON job_logs REFERENCING OLD TABLE AS joblog_old_runs \
                         FOR EACH STATEMENT EXECUTE FUNCTION joblog_run_counts_delete()",
                    ),
                    (
                        "job_run_counts_update",
                        "AFTER UPDATE OF job, status ON job_logs FOR EACH ROW \
                         WHEN (OLD.job IS DISTINCT FROM NEW.job OR OLD.status IS DISTINCT FROM NEW.status) \
                         EXECUTE FUNCTION joblog_run_counts_update()",
                    ),
                ] {
                    db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {name} ON job_logs"))
                        .await?;
                    db.execute_unprepared(&format!("CREATE TRIGGER {name} {sql}"))
                        .await?;
                }
            }
            DbBackend::MySql => {
                // DDL is not transactional here: a half-done earlier attempt may have left
                // some triggers.
                for name in [
                    "job_run_counts_insert",
                    "job_run_counts_delete",
                    "job_run_counts_update",
                ] {
                    db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {name}"))
                        .await?;
                }
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER job_run_counts_insert AFTER INSERT ON job_logs FOR EACH ROW {}",
                    add_one(backend, "NEW.job", "NEW.status")
                ))
                .await?;
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER job_run_counts_delete AFTER DELETE ON job_logs FOR EACH ROW {}",
                    remove_one("OLD.job", "OLD.status")
                ))
                .await?;
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER job_run_counts_update AFTER UPDATE ON job_logs FOR EACH ROW \
                     BEGIN IF NOT (OLD.job <=> NEW.job) OR NOT (OLD.status <=> NEW.status) THEN {}; {}; END IF; END",
                    remove_one("OLD.job", "OLD.status"),
                    add_one(backend, "NEW.job", "NEW.status")
                ))
                .await?;
            }
            _ => {}
        }
        // The runs there are now (the triggers count every later change).
        db.execute_unprepared("DELETE FROM job_run_counts").await?;
        db.execute_unprepared(
            "INSERT INTO job_run_counts (job, status, runs) \
             SELECT job, status, COUNT(*) FROM job_logs GROUP BY job, status",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let db = manager.get_connection();
        for name in [
            "job_run_counts_insert",
            "job_run_counts_delete",
            "job_run_counts_update",
        ] {
            let on = if backend == DbBackend::Postgres {
                " ON job_logs"
            } else {
                ""
            };
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {name}{on}"))
                .await?;
        }
        if backend == DbBackend::Postgres {
            for f in [
                "joblog_run_counts_insert",
                "joblog_run_counts_delete",
                "joblog_run_counts_update",
            ] {
                db.execute_unprepared(&format!("DROP FUNCTION IF EXISTS {f}()"))
                    .await?;
            }
        }
        db.execute_unprepared("DROP TABLE IF EXISTS job_run_counts")
            .await?;
        Ok(())
    }
}
