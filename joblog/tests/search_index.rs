//! The run-list search's index (issue 13): SQLite FTS5 trigram tables filled behind a
//! high-water mark, PostgreSQL `pg_trgm` GIN indexes; MySQL / MariaDB scan. Every case runs
//! on SQLite (file and memory), PostgreSQL and MySQL/MariaDB: what the index finds equals
//! what the scan finds, rows written by hand are found, prune and rewrites keep the index in
//! step, an interrupted build resumes. Outcomes are asserted, never timings.

#[path = "suite/common.rs"]
#[allow(dead_code, unused_imports, unused_macros, unreachable_pub)]
mod common;

mod cases {
    use std::time::Duration;

    use chrono::Utc;
    use joblog::query::{Cursor, MAX_COUNTED_LINES, RunFilter, SearchBudget, SearchEnd, SearchPage};
    use joblog::{JobLogger, PruneOptions};
    use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

    use crate::common::{Backend, TestDb};

    fn text(t: &str) -> RunFilter {
        RunFilter {
            text: Some(t.to_owned()),
            ..RunFilter::default()
        }
    }

    fn scan() -> SearchBudget {
        SearchBudget {
            runs: 1_000_000,
            time: Duration::from_secs(30),
            index: false,
        }
    }

    /// Whether this backend has a search index (MySQL / MariaDB scan).
    fn indexed(db: &TestDb) -> bool {
        db.backend != Backend::MySql
    }

    fn ph(backend: DbBackend, n: usize) -> String {
        if backend == DbBackend::Postgres {
            format!("${n}")
        } else {
            "?".to_owned()
        }
    }

    async fn exec(logger: &JobLogger, sql: &str, values: Vec<Value>) {
        let db = logger.db();
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn scalar(logger: &JobLogger, sql: &str) -> i64 {
        let db = logger.db();
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    }

    /// A run written with raw SQL, as another program would: its id.
    async fn raw_run(logger: &JobLogger, name: &str, messages: &[&str]) -> i64 {
        let backend = logger.db().get_database_backend();
        let now = Utc::now();
        exec(
            logger,
            &format!(
                "INSERT INTO job_logs (name, job, status, created_at, updated_at) VALUES ({}, 'RawJob', 2, {}, {})",
                ph(backend, 1),
                ph(backend, 2),
                ph(backend, 3)
            ),
            vec![name.into(), now.into(), now.into()],
        )
        .await;
        let id = scalar(logger, &format!("SELECT id FROM job_logs WHERE name = '{name}'")).await;
        for m in messages {
            exec(
                logger,
                &format!(
                    "INSERT INTO job_log_details (job_log_id, level, message, created_at) VALUES ({}, 'info', {}, {})",
                    ph(backend, 1),
                    ph(backend, 2),
                    ph(backend, 3)
                ),
                vec![id.into(), (*m).into(), now.into()],
            )
            .await;
        }
        id
    }

    /// Every page of `filter`'s search, newest first, following `older` cursors.
    async fn all_pages(
        logger: &JobLogger,
        filter: &RunFilter,
        per: u64,
        budget: SearchBudget,
    ) -> Vec<SearchPage> {
        let mut pages = Vec::new();
        let mut cursor = Cursor::First;
        loop {
            let found = logger.search_runs(filter, cursor, per, budget).await.unwrap();
            assert_eq!(found.end, SearchEnd::Complete, "{filter:?} at {cursor:?}");
            let older = found.page.older;
            pages.push(found);
            match older {
                Some(c) => cursor = c,
                None => return pages,
            }
        }
    }

    fn ids(pages: &[SearchPage]) -> Vec<i64> {
        pages
            .iter()
            .flat_map(|p| p.page.runs.iter().map(|r| r.run.id))
            .collect()
    }

    /// 40 runs through the API whose messages vary in case, wildcards and script.
    async fn seed(logger: &JobLogger) {
        let words = [
            "Connected to ERP in 44 ms",
            "deadlock victim: retrying batch",
            "DEADLOCK detected on open_orders",
            "progress 100% of rows",
            "progress 100 of rows",
            "file_name_with_underscores.csv",
            "filename without them",
            "customer Müller GmbH",
            "customer MÜLLER GMBH",
            "said \"quoted\" text",
            "bang! went the ERP",
            "Batch 2/4 (10,000 rows)",
        ];
        for i in 0..40usize {
            let job = if i % 2 == 0 { "EvenJob" } else { "OddJob" };
            let run = logger.start(job).await.unwrap();
            run.detail(words[i % words.len()]);
            run.detail(format!("row {i:03} done"));
            if i % 3 == 0 {
                run.error("failed on purpose").await.unwrap();
            } else {
                run.success().await.unwrap();
            }
        }
        logger.flush().await.unwrap();
    }

    pub(crate) async fn the_index_finds_what_the_scan_finds(db: TestDb) {
        let logger = db.logger().await;
        seed(&logger).await;
        logger.build_search_index().await.unwrap();
        let terms = [
            "deadlock",
            "DEADLOCK",
            "dEaDlOcK",
            "100%",
            "100",
            "e_w",
            "_with_",
            "Müller",
            "MÜLLER",
            "üll",
            "\"quoted\"",
            "bang!",
            "g! w",
            "2/4",
            "row 01",
            "zzznothing",
            "Job started - OddJob",
            "failed",
        ];
        for term in terms {
            for status in [None, Some(joblog::RunStatus::Error)] {
                for job in [None, Some("OddJob".to_owned())] {
                    let filter = RunFilter {
                        text: Some(term.to_owned()),
                        status,
                        job: job.clone(),
                    };
                    let want = ids(&all_pages(&logger, &filter, 1000, scan()).await);
                    let pages = all_pages(&logger, &filter, 3, SearchBudget::default()).await;
                    assert_eq!(ids(&pages), want, "{filter:?}: pages of three, newest first");
                    let counted = pages[0].matches;
                    if indexed(&db) {
                        assert_eq!(counted, Some(want.len() as u64), "{filter:?}: counted");
                    } else {
                        assert_eq!(counted, None, "MySQL does not count");
                    }
                    // Back up from the last page: the page before it, again.
                    if pages.len() >= 2 {
                        let last = pages.last().unwrap();
                        let back = logger
                            .search_runs(&filter, last.page.newer.unwrap(), 3, SearchBudget::default())
                            .await
                            .unwrap();
                        assert_eq!(
                            back.page.runs,
                            pages[pages.len() - 2].page.runs,
                            "{filter:?}: back"
                        );
                    } else {
                        assert_eq!(pages[0].page.newer, None);
                    }
                }
            }
        }
        // The run names are searched too (a name is a timestamp).
        let newest = logger
            .list_runs(&RunFilter::default(), Cursor::First, 1)
            .await
            .unwrap()
            .runs[0]
            .run
            .clone();
        let found = logger
            .search_runs(&text(&newest.name), Cursor::First, 5, SearchBudget::default())
            .await
            .unwrap();
        assert_eq!(found.page.runs[0].run.id, newest.id);
    }

    pub(crate) async fn rows_written_by_hand_are_found_before_and_after_indexing(db: TestDb) {
        let logger = db.logger().await;
        seed(&logger).await;
        let id = raw_run(
            &logger,
            "raw-run-qwertz",
            &["written by another program: ZYXW-42"],
        )
        .await;
        for round in ["before indexing", "after indexing"] {
            for term in ["zyxw-42", "raw-run-qwe"] {
                let found = logger
                    .search_runs(&text(term), Cursor::First, 10, SearchBudget::default())
                    .await
                    .unwrap();
                let got: Vec<i64> = found.page.runs.iter().map(|r| r.run.id).collect();
                assert_eq!(got, vec![id], "{term} {round}");
                assert_eq!(found.matches, indexed(&db).then_some(1), "{term} {round}");
            }
            logger.build_search_index().await.unwrap();
        }
        if db.backend == Backend::SqliteFile || db.backend == Backend::SqliteMemory {
            // Indexed now: the mark stands at the newest rows.
            let mark = scalar(
                &logger,
                "SELECT indexed_upto FROM joblog_search_index WHERE source = 'job_log_details'",
            )
            .await;
            assert_eq!(mark, scalar(&logger, "SELECT MAX(id) FROM job_log_details").await);
            let in_index = scalar(
                &logger,
                "SELECT COUNT(*) FROM job_log_details_fts WHERE job_log_details_fts MATCH '\"ZYXW-42\"'",
            )
            .await;
            assert_eq!(in_index, 1);
        }
    }

    pub(crate) async fn prune_and_rewrites_keep_the_index_in_step(db: TestDb) {
        let logger = db.logger().await;
        let old = raw_run(&logger, "old-run", &["ancient qwerty line"]).await;
        seed(&logger).await;
        let kept = raw_run(&logger, "kept-run", &["fresh asdfgh line"]).await;
        logger.build_search_index().await.unwrap();
        let search = |t: &'static str| {
            let logger = logger.clone();
            async move {
                let found = logger
                    .search_runs(&text(t), Cursor::First, 10, SearchBudget::default())
                    .await
                    .unwrap();
                found.page.runs.iter().map(|r| r.run.id).collect::<Vec<_>>()
            }
        };
        assert_eq!(search("ancient qwerty").await, vec![old]);
        // Prune RawJob down to its newest run: the old run and its details go.
        let stats = logger
            .prune(&PruneOptions {
                older_than: None,
                keep_last: Some(1),
            })
            .await
            .unwrap();
        assert!(stats.runs >= 1);
        assert_eq!(search("ancient qwerty").await, Vec::<i64>::new());
        assert_eq!(search("old-run").await, Vec::<i64>::new());
        assert_eq!(search("fresh asdfgh").await, vec![kept]);
        // A message rewritten by hand: the old text is gone, the new one found.
        exec(
            &logger,
            "UPDATE job_log_details SET message = 'rewritten poiuyt line' WHERE message = 'fresh asdfgh line'",
            vec![],
        )
        .await;
        assert_eq!(search("fresh asdfgh").await, Vec::<i64>::new());
        assert_eq!(search("poiuyt").await, vec![kept]);
        if matches!(db.backend, Backend::SqliteFile | Backend::SqliteMemory) {
            // FTS5 compares its index with the table's rows.
            for fts in ["job_log_details_fts", "job_logs_fts"] {
                exec(
                    &logger,
                    &format!("INSERT INTO {fts} ({fts}, rank) VALUES ('integrity-check', 1)"),
                    vec![],
                )
                .await;
            }
        }
    }

    pub(crate) async fn a_common_term_is_paged_by_the_scan(db: TestDb) {
        let logger = db.logger().await;
        // More matching lines than the index counts: 510 runs of ten "common" lines.
        let backend = logger.db().get_database_backend();
        let now = Utc::now();
        for chunk in 0..51usize {
            let mut sql =
                String::from("INSERT INTO job_logs (name, job, status, created_at, updated_at) VALUES ");
            let mut values: Vec<Value> = Vec::new();
            for k in 0..10usize {
                if k > 0 {
                    sql.push_str(", ");
                }
                let b = values.len();
                sql.push_str(&format!(
                    "({}, 'Common', 2, {}, {})",
                    ph(backend, b + 1),
                    ph(backend, b + 2),
                    ph(backend, b + 3)
                ));
                values.push(format!("common-{chunk:03}-{k}").into());
                values.push(now.into());
                values.push(now.into());
            }
            exec(&logger, &sql, values).await;
        }
        exec(
            &logger,
            "INSERT INTO job_log_details (job_log_id, level, message, created_at) \
             SELECT r.id, 'info', 'a very common line', r.created_at FROM job_logs r",
            vec![],
        )
        .await;
        for _ in 0..9 {
            exec(
                &logger,
                "INSERT INTO job_log_details (job_log_id, level, message, created_at) \
                 SELECT r.id, 'info', 'a very common line', r.created_at FROM job_logs r",
                vec![],
            )
            .await;
        }
        assert!(scalar(&logger, "SELECT COUNT(*) FROM job_log_details").await as u64 > MAX_COUNTED_LINES);
        logger.build_search_index().await.unwrap();
        let found = logger
            .search_runs(&text("very common"), Cursor::First, 25, SearchBudget::default())
            .await
            .unwrap();
        assert_eq!(found.matches, None, "too many lines to count");
        let newest = logger
            .list_runs(&RunFilter::default(), Cursor::First, 25)
            .await
            .unwrap();
        assert_eq!(
            found.page.runs, newest.runs,
            "the newest runs, as the list shows them"
        );
        assert_eq!(found.page.older, newest.older);
        // A rare term among them is still counted.
        let rare = logger
            .search_runs(&text("common-042-7"), Cursor::First, 25, SearchBudget::default())
            .await
            .unwrap();
        assert_eq!(rare.page.runs.len(), 1);
        assert_eq!(rare.matches, indexed(&db).then_some(1));
    }

    pub(crate) async fn an_interrupted_build_resumes(db: TestDb) {
        let logger = db.logger().await;
        seed(&logger).await;
        logger.build_search_index().await.unwrap();
        match db.backend {
            Backend::SqliteFile | Backend::SqliteMemory => {
                // As if the index had been lost half-way: empty, marks back at the start.
                exec(
                    &logger,
                    "INSERT INTO job_log_details_fts (job_log_details_fts) VALUES ('delete-all')",
                    vec![],
                )
                .await;
                exec(
                    &logger,
                    "INSERT INTO job_logs_fts (job_logs_fts) VALUES ('delete-all')",
                    vec![],
                )
                .await;
                exec(&logger, "UPDATE joblog_search_index SET indexed_upto = 0", vec![]).await;
                let rows = scalar(
                    &logger,
                    "SELECT (SELECT COUNT(*) FROM job_log_details) + (SELECT COUNT(*) FROM job_logs)",
                )
                .await;
                // The tail is read meanwhile: the search still answers.
                let found = logger
                    .search_runs(&text("deadlock"), Cursor::First, 50, SearchBudget::default())
                    .await
                    .unwrap();
                assert!(!found.page.runs.is_empty());
                let indexed = logger.build_search_index().await.unwrap();
                assert_eq!(indexed as i64, rows, "every row indexed once");
                for fts in ["job_log_details_fts", "job_logs_fts"] {
                    exec(
                        &logger,
                        &format!("INSERT INTO {fts} ({fts}, rank) VALUES ('integrity-check', 1)"),
                        vec![],
                    )
                    .await;
                }
                assert_eq!(logger.build_search_index().await.unwrap(), 0, "nothing left");
            }
            Backend::Postgres => {
                // A killed CREATE INDEX CONCURRENTLY leaves an invalid index: make one under
                // the same name (a unique build that fails on duplicates).
                exec(&logger, "DROP INDEX idx_job_log_details_message_trgm", vec![]).await;
                let db_conn = logger.db();
                let failed = db_conn
                    .execute_unprepared(
                        "CREATE UNIQUE INDEX CONCURRENTLY idx_job_log_details_message_trgm ON job_log_details (job_log_id)",
                    )
                    .await;
                assert!(failed.is_err(), "duplicates make the unique build fail");
                let valid = "SELECT COUNT(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                             WHERE c.relname = 'idx_job_log_details_message_trgm' AND i.indisvalid";
                assert_eq!(scalar(&logger, valid).await, 0);
                // The search does not use an invalid index; a fresh logger (not migrated)
                // sees it as it is.
                let fresh = JobLogger::connect(&db.url).await.unwrap();
                let found = fresh
                    .search_runs(&text("deadlock"), Cursor::First, 50, SearchBudget::default())
                    .await
                    .unwrap();
                assert_eq!(found.matches, None, "no valid index, no count");
                fresh.migrate().await.unwrap();
                assert_eq!(scalar(&logger, valid).await, 1);
                let gin = scalar(
                    &logger,
                    "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'idx_job_log_details_message_trgm' \
                     AND indexdef LIKE '%USING gin (message gin_trgm_ops)%'",
                )
                .await;
                assert_eq!(gin, 1);
                let found = fresh
                    .search_runs(&text("deadlock"), Cursor::First, 50, SearchBudget::default())
                    .await
                    .unwrap();
                assert!(found.matches.is_some());
            }
            Backend::MySql => {
                assert_eq!(logger.build_search_index().await.unwrap(), 0);
            }
        }
    }

    /// Several processes building at once (every instance runs `migrate()` at start): none
    /// fails, and the index is whole afterwards. On PostgreSQL two `CREATE INDEX
    /// CONCURRENTLY` on one table deadlock each other; this failed CI once as
    /// "deadlock detected" before one builder at a time held a lock.
    pub(crate) async fn concurrent_builds_neither_deadlock_nor_fail(db: TestDb) {
        if !matches!(db.backend, Backend::Postgres | Backend::SqliteFile) {
            return;
        }
        let logger = db.logger().await;
        seed(&logger).await;
        for round in 0..4 {
            if db.backend == Backend::Postgres {
                exec(
                    &logger,
                    "DROP INDEX IF EXISTS idx_job_log_details_message_trgm",
                    vec![],
                )
                .await;
                exec(&logger, "DROP INDEX IF EXISTS idx_job_logs_name_trgm", vec![]).await;
            } else {
                for fts in ["job_log_details_fts", "job_logs_fts"] {
                    exec(
                        &logger,
                        &format!("INSERT INTO {fts} ({fts}) VALUES ('delete-all')"),
                        vec![],
                    )
                    .await;
                }
                exec(&logger, "UPDATE joblog_search_index SET indexed_upto = 0", vec![]).await;
            }
            let mut tasks = Vec::new();
            for _ in 0..4 {
                let url = db.url.clone();
                tasks.push(tokio::spawn(async move {
                    let other = JobLogger::connect(&url).await.expect("connect");
                    other.build_search_index().await.map(|_| ())
                }));
            }
            for t in tasks {
                t.await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("round {round}: a concurrent build failed: {e}"));
            }
            // Every builder has returned; the one that built has finished.
            if db.backend == Backend::Postgres {
                let valid = scalar(
                    &logger,
                    "SELECT COUNT(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                     WHERE c.relname IN ('idx_job_log_details_message_trgm', 'idx_job_logs_name_trgm') \
                     AND i.indisvalid",
                )
                .await;
                assert_eq!(valid, 2, "round {round}: both indexes built and valid");
            } else {
                let behind = scalar(
                    &logger,
                    "SELECT (SELECT MAX(id) FROM job_log_details) - indexed_upto \
                     FROM joblog_search_index WHERE source = 'job_log_details'",
                )
                .await;
                assert_eq!(behind, 0, "round {round}: every detail indexed");
                for fts in ["job_log_details_fts", "job_logs_fts"] {
                    // Fails if a row was indexed twice or not at all.
                    exec(
                        &logger,
                        &format!("INSERT INTO {fts} ({fts}, rank) VALUES ('integrity-check', 1)"),
                        vec![],
                    )
                    .await;
                }
            }
            let found = logger
                .search_runs(&text("deadlock"), Cursor::First, 50, SearchBudget::default())
                .await
                .unwrap();
            assert!(found.matches.is_some(), "round {round}: the index answers");
        }
    }

    pub(crate) async fn the_background_indexer_catches_up(db: TestDb) {
        let logger = db.logger().await;
        if !matches!(db.backend, Backend::SqliteFile | Backend::SqliteMemory) {
            return;
        }
        seed(&logger).await;
        let newest = scalar(&logger, "SELECT MAX(id) FROM job_log_details").await;
        // Liveness, not speed: the logger's own task indexes within a few of its rounds.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mark = scalar(
                &logger,
                "SELECT indexed_upto FROM joblog_search_index WHERE source = 'job_log_details'",
            )
            .await;
            if mark >= newest {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mark {mark} never reached {newest}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

common::backend_tests!(
    the_index_finds_what_the_scan_finds,
    rows_written_by_hand_are_found_before_and_after_indexing,
    prune_and_rewrites_keep_the_index_in_step,
    a_common_term_is_paged_by_the_scan,
    an_interrupted_build_resumes,
    the_background_indexer_catches_up,
    concurrent_builds_neither_deadlock_nor_fail,
);
