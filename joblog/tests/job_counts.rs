//! The jobs monitor's runs per job and status (issue 13): `job_run_counts`, kept by triggers
//! on `job_logs`, equals a full recount of the runs after every kind of change — runs
//! started and finished through joblog, rows inserted, rewritten and deleted by hand, a
//! rolled-back transaction, the reaper, prune, concurrent writers, and an upgrade of a
//! database that already holds runs. Every case runs on SQLite (file and memory),
//! PostgreSQL and MySQL/MariaDB.

#[path = "suite/common.rs"]
#[allow(dead_code, unused_imports, unused_macros, unreachable_pub)]
mod common;

mod cases {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use joblog::{JobLogger, PruneOptions};
    use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};

    use crate::common::{Backend, TestDb};

    type Counts = BTreeMap<(String, i16), i64>;

    async fn exec(db: &impl ConnectionTrait, sql: &str) {
        db.execute_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn counts(logger: &JobLogger, sql: &str) -> Counts {
        let db = logger.db();
        let rows = db
            .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|r| {
                let job: String = r.try_get_by_index(0).unwrap();
                let status: i16 = r.try_get_by_index(1).unwrap();
                let n: i64 = r.try_get_by_index(2).unwrap();
                ((job, status), n)
            })
            .collect()
    }

    async fn recount(logger: &JobLogger) -> Counts {
        counts(
            logger,
            "SELECT job, status, COUNT(*) FROM job_logs GROUP BY job, status",
        )
        .await
    }

    async fn kept(logger: &JobLogger) -> Counts {
        counts(
            logger,
            "SELECT job, status, runs FROM job_run_counts WHERE runs <> 0",
        )
        .await
    }

    /// The kept counts equal a recount, and so do the monitor's summaries.
    async fn assert_in_step(logger: &JobLogger, when: &str) {
        let truth = recount(logger).await;
        assert_eq!(kept(logger).await, truth, "{when}: job_run_counts vs a recount");
        let summaries = logger.job_summaries().await.unwrap();
        let mut from_monitor = Counts::new();
        for s in &summaries {
            for (status, n) in [
                (0i16, s.counts.new),
                (1, s.counts.processing),
                (2, s.counts.success),
                (3, s.counts.error),
            ] {
                if n > 0 {
                    from_monitor.insert((s.job.clone(), status), n as i64);
                }
            }
        }
        assert_eq!(from_monitor, truth, "{when}: the monitor's counts vs a recount");
    }

    fn now_literal(backend: DbBackend) -> &'static str {
        match backend {
            DbBackend::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            _ => "CURRENT_TIMESTAMP",
        }
    }

    async fn hand_run(logger: &JobLogger, name: &str, job: &str, status: i16) {
        let now = now_literal(logger.db().get_database_backend());
        exec(
            logger.db(),
            &format!(
                "INSERT INTO job_logs (name, job, status, created_at, updated_at) \
                 VALUES ('{name}', '{job}', {status}, {now}, {now})"
            ),
        )
        .await;
    }

    pub(crate) async fn counts_equal_a_recount_after_every_change(db: TestDb) {
        let logger = db.logger().await;
        assert_in_step(&logger, "empty").await;
        // Through joblog: successes, errors, one left processing, one left new.
        for i in 0..6 {
            let mut run = logger
                .start(if i % 2 == 0 { "Alpha" } else { "Beta" })
                .await
                .unwrap();
            run.processing().await.unwrap();
            if i % 3 == 0 {
                run.error("boom").await.unwrap();
            } else {
                run.success().await.unwrap();
            }
        }
        let mut open = logger.start("Alpha").await.unwrap();
        open.processing().await.unwrap();
        let fresh = logger.start("Gamma").await.unwrap();
        logger.flush().await.unwrap();
        assert_in_step(&logger, "after joblog's own runs").await;

        // By hand: inserted, rewritten (status and job), deleted.
        hand_run(&logger, "hand_1", "Hand", 2).await;
        hand_run(&logger, "hand_2", "Hand", 3).await;
        hand_run(&logger, "hand_3", "Hand", 0).await;
        exec(
            logger.db(),
            "UPDATE job_logs SET status = 2 WHERE name = 'hand_3'",
        )
        .await;
        exec(
            logger.db(),
            "UPDATE job_logs SET job = 'Renamed' WHERE name = 'hand_2'",
        )
        .await;
        // A rewrite of other columns changes no count.
        exec(
            logger.db(),
            "UPDATE job_logs SET host = 'elsewhere' WHERE name = 'hand_1'",
        )
        .await;
        exec(logger.db(), "DELETE FROM job_logs WHERE name = 'hand_1'").await;
        assert_in_step(&logger, "after rows written by hand").await;

        // A transaction rolled back leaves no trace in the counts.
        let txn = logger.db().begin().await.unwrap();
        let now = now_literal(txn.get_database_backend());
        exec(
            &txn,
            &format!(
                "INSERT INTO job_logs (name, job, status, created_at, updated_at) \
                 VALUES ('rolled_back', 'Ghost', 2, {now}, {now})"
            ),
        )
        .await;
        exec(&txn, "DELETE FROM job_logs WHERE job = 'Beta'").await;
        txn.rollback().await.unwrap();
        assert_in_step(&logger, "after a rollback").await;

        // The reaper moves abandoned runs to error (another host: this logger's own live
        // runs are spared).
        drop(fresh);
        drop(open);
        logger.flush().await.unwrap();
        exec(
            logger.db(),
            "UPDATE job_logs SET status = 1, heartbeat_at = NULL, created_at = '2000-01-01 00:00:00' \
             WHERE job = 'Alpha' AND id = (SELECT id FROM (SELECT MAX(id) AS id FROM job_logs WHERE job = 'Alpha') m)",
        )
        .await;
        let other = JobLogger::connect(&db.url).await.unwrap();
        other.reap_stale(Duration::from_secs(60)).await.unwrap();
        assert_in_step(&logger, "after the reaper").await;

        // Prune: keep the newest run per job.
        let pruned = logger
            .prune(&PruneOptions {
                older_than: None,
                keep_last: Some(1),
            })
            .await
            .unwrap();
        assert!(pruned.runs > 0, "prune removed runs");
        assert_in_step(&logger, "after prune").await;
    }

    pub(crate) async fn an_upgrade_counts_the_runs_already_there(db: TestDb) {
        let logger = db.logger().await;
        for i in 0..5 {
            let run = logger.start(&format!("Job{}", i % 2)).await.unwrap();
            run.success().await.unwrap();
        }
        logger.flush().await.unwrap();
        // Back to the schema before the counts: no table, no triggers, no history row.
        let backend = logger.db().get_database_backend();
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
            exec(logger.db(), &format!("DROP TRIGGER IF EXISTS {name}{on}")).await;
        }
        exec(logger.db(), "DROP TABLE job_run_counts").await;
        exec(
            logger.db(),
            "DELETE FROM joblog_migrations WHERE version LIKE '%create_job_run_counts'",
        )
        .await;
        // Runs written meanwhile by a process of the old version.
        hand_run(&logger, "old_1", "Job0", 3).await;
        hand_run(&logger, "old_2", "Legacy", 2).await;
        logger.migrate().await.unwrap();
        assert_in_step(&logger, "after the upgrade").await;
        let run = logger.start("Legacy").await.unwrap();
        run.success().await.unwrap();
        logger.flush().await.unwrap();
        assert_in_step(&logger, "after a run on the upgraded schema").await;
    }

    pub(crate) async fn concurrent_writers_keep_the_counts(db: TestDb) {
        if db.backend == Backend::SqliteMemory {
            // One in-process database: the same as the file case without the processes.
            return;
        }
        let logger = db.logger().await;
        let mut tasks = Vec::new();
        for w in 0..4 {
            let url = db.url.clone();
            tasks.push(tokio::spawn(async move {
                let other = JobLogger::connect(&url).await.expect("connect");
                for i in 0..15 {
                    // Every writer runs the same job: the same counter rows.
                    let mut run = other.start("Shared").await.unwrap();
                    run.processing().await.unwrap();
                    if (w + i) % 4 == 0 {
                        run.error("failed").await.unwrap();
                    } else {
                        run.success().await.unwrap();
                    }
                }
                other.flush().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_in_step(&logger, "after four concurrent writers").await;
        let total: i64 = kept(&logger).await.values().sum();
        assert_eq!(total, 60);
    }
}

common::backend_tests!(
    counts_equal_a_recount_after_every_change,
    an_upgrade_counts_the_runs_already_there,
    concurrent_writers_keep_the_counts,
);
