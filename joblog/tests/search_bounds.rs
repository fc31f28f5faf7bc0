//! The run list's text search is bounded (issue 12): short and long terms are refused
//! without a query, one statement searches at most a window of runs under the database's
//! own time limit, and the page's cursors go on past where it stopped. Every case runs on
//! SQLite (file and memory), PostgreSQL and MySQL/MariaDB, like the suite. Outcomes are
//! asserted, never timings.

#[path = "suite/common.rs"]
#[allow(dead_code, unused_imports, unused_macros, unreachable_pub)]
mod common;

mod cases {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use chrono::Utc;
    use joblog::JobLogger;
    use joblog::query::{Cursor, RunFilter, SearchBudget, SearchEnd, SearchTermError};
    use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement, Value};

    use crate::common::{Backend, TestDb};

    /// A logger on its own connection whose statements are recorded.
    async fn counted(db: &TestDb) -> (JobLogger, Arc<Mutex<Vec<String>>>) {
        let mut opts = ConnectOptions::new(db.url.clone());
        opts.sqlx_logging(false).max_connections(2);
        let mut conn = Database::connect(opts).await.expect("connect");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        conn.set_metric_callback(move |info| sink.lock().unwrap().push(info.statement.sql.clone()));
        let logger = JobLogger::new(conn);
        logger.migrate().await.expect("migrate");
        (logger, seen)
    }

    /// `runs` runs, each with `details` details of `width` characters; every third run
    /// (counting from 0) has a detail with `needle-<i>`. Returns the ids of the runs with
    /// a needle, newest first.
    async fn seed(logger: &JobLogger, runs: usize, details: usize, width: usize) -> Vec<i64> {
        let db = logger.db();
        let backend = db.get_database_backend();
        let ph = |n: usize| {
            if backend == DbBackend::Postgres {
                format!("${n}")
            } else {
                "?".to_owned()
            }
        };
        let now = Utc::now();
        for chunk in (0..runs).collect::<Vec<_>>().chunks(200) {
            let mut sql =
                String::from("INSERT INTO job_logs (name, job, status, created_at, updated_at) VALUES ");
            let mut values: Vec<Value> = Vec::new();
            for (k, i) in chunk.iter().enumerate() {
                if k > 0 {
                    sql.push_str(", ");
                }
                let b = values.len();
                sql.push_str(&format!(
                    "({}, {}, 2, {}, {})",
                    ph(b + 1),
                    ph(b + 2),
                    ph(b + 3),
                    ph(b + 4)
                ));
                values.push(format!("run_{i:06}").into());
                values.push("SearchJob".into());
                values.push(now.into());
                values.push(now.into());
            }
            db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
                .await
                .expect("insert runs");
        }
        let ids: Vec<i64> = db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT id FROM job_logs ORDER BY id",
            ))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index(0).unwrap())
            .collect();
        assert_eq!(ids.len(), runs);
        let filler = "x".repeat(width);
        let mut rows: Vec<(i64, String)> = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            for d in 0..details {
                let msg = if i % 3 == 0 && d == details / 2 {
                    format!("step {d} needle-{i} {filler}")
                } else {
                    format!("step {d} {filler}")
                };
                rows.push((*id, msg));
            }
        }
        for chunk in rows.chunks(300) {
            let mut sql =
                String::from("INSERT INTO job_log_details (job_log_id, level, message, created_at) VALUES ");
            let mut values: Vec<Value> = Vec::new();
            for (k, (id, msg)) in chunk.iter().enumerate() {
                if k > 0 {
                    sql.push_str(", ");
                }
                let b = values.len();
                sql.push_str(&format!("({}, 'info', {}, {})", ph(b + 1), ph(b + 2), ph(b + 3)));
                values.push((*id).into());
                values.push(msg.clone().into());
                values.push(now.into());
            }
            db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
                .await
                .expect("insert details");
        }
        let mut needles: Vec<i64> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 == 0)
            .map(|(_, id)| *id)
            .collect();
        needles.reverse();
        needles
    }

    /// The default budget without the search index: these cases are about the scan
    /// (`search_index.rs` tests the index).
    fn scan() -> SearchBudget {
        SearchBudget {
            index: false,
            ..SearchBudget::default()
        }
    }

    fn text(t: &str) -> RunFilter {
        RunFilter {
            text: Some(t.into()),
            ..Default::default()
        }
    }

    fn like_statements(seen: &Mutex<Vec<String>>) -> usize {
        seen.lock().unwrap().iter().filter(|s| s.contains("LIKE")).count()
    }

    pub(crate) async fn terms_out_of_bounds_are_refused_without_a_query(db: TestDb) {
        let (logger, seen) = counted(&db).await;
        seed(&logger, 6, 2, 10).await;
        seen.lock().unwrap().clear();
        for (term, expected) in [
            ("ab", SearchTermError::TooShort { min: 3 }),
            ("  é ", SearchTermError::TooShort { min: 3 }),
            (&"y".repeat(201), SearchTermError::TooLong { max: 200 }),
        ] {
            let found = logger
                .search_runs(&text(term), Cursor::First, 25, scan())
                .await
                .unwrap();
            assert_eq!(found.end, SearchEnd::Refused(expected), "{term:?}");
            assert!(found.page.runs.is_empty() && found.page.older.is_none());
        }
        assert!(
            seen.lock().unwrap().is_empty(),
            "no statement: {:?}",
            seen.lock().unwrap()
        );
        // Three characters are searched (every run's first detail says "step").
        let found = logger
            .search_runs(&text("ste"), Cursor::First, 25, scan())
            .await
            .unwrap();
        assert_eq!((found.end, found.page.runs.len()), (SearchEnd::Complete, 6));
    }

    pub(crate) async fn search_pages_newest_first_like_list_runs(db: TestDb) {
        let (logger, seen) = counted(&db).await;
        let needles = seed(&logger, 60, 3, 10).await;
        let f = text("NEEDLE-");
        let mut got = Vec::new();
        let mut cursor = Cursor::First;
        let mut pages = Vec::new();
        loop {
            seen.lock().unwrap().clear();
            let found = logger.search_runs(&f, cursor, 7, scan()).await.unwrap();
            if db.backend == Backend::Postgres || db.backend == Backend::MySql {
                assert_eq!(like_statements(&seen), 1, "one search statement per page");
            } else {
                // SQLite's search statement runs through sqlx (its progress handler), not sea-orm.
                assert_eq!(like_statements(&seen), 0);
            }
            assert_eq!(found.end, SearchEnd::Complete);
            // The same page as list_runs gives (it still scans; the search is bounded).
            let listed = logger.list_runs(&f, cursor, 7).await.unwrap();
            assert_eq!(found.page.runs, listed.runs);
            assert_eq!(found.page.older, listed.older);
            got.extend(found.page.runs.iter().map(|r| r.run.id));
            pages.push(found.page.clone());
            match found.page.older {
                Some(c) => cursor = c,
                None => break,
            }
        }
        assert_eq!(got, needles, "every match once, newest first");
        // And back: the newer cursor of the last page returns the page before it.
        let last = pages.last().unwrap();
        let back = logger
            .search_runs(&f, last.newer.unwrap(), 7, scan())
            .await
            .unwrap();
        assert_eq!(back.page.runs, pages[pages.len() - 2].runs);
        // The runs carry their last detail, as in the list.
        assert!(back.page.runs.iter().all(|r| r.last_detail.is_some()));
    }

    pub(crate) async fn a_window_of_runs_stops_and_resumes(db: TestDb) {
        let (logger, _) = counted(&db).await;
        let needles = seed(&logger, 60, 3, 10).await;
        let budget = SearchBudget { runs: 10, ..scan() };
        let f = text("needle-");
        let first = logger.search_runs(&f, Cursor::First, 100, budget).await.unwrap();
        assert_eq!(first.end, SearchEnd::WindowEnd { runs: 10 });
        let shown: Vec<i64> = first.page.runs.iter().map(|r| r.run.id).collect();
        assert_eq!(
            shown,
            needles.iter().copied().filter(|id| *id > 50).collect::<Vec<_>>()
        );
        assert_eq!(
            first.page.older,
            Some(Cursor::Before(51)),
            "continue below the window"
        );
        let mut got = shown;
        let mut cursor = first.page.older;
        let mut ends = Vec::new();
        while let Some(c) = cursor {
            let found = logger.search_runs(&f, c, 100, budget).await.unwrap();
            got.extend(found.page.runs.iter().map(|r| r.run.id));
            assert!(found.page.newer.is_some(), "a deeper page links back");
            ends.push(found.end);
            cursor = found.page.older;
        }
        assert_eq!(got, needles);
        assert_eq!(
            ends.last(),
            Some(&SearchEnd::Complete),
            "the last window reaches the oldest run"
        );
        // A term that matches nothing still covers one window per call.
        let none = logger
            .search_runs(&text("zzznothing"), Cursor::First, 25, budget)
            .await
            .unwrap();
        assert_eq!(none.end, SearchEnd::WindowEnd { runs: 10 });
        assert!(none.page.runs.is_empty());
        assert_eq!(none.page.older, Some(Cursor::Before(51)));
        // Paging back (newer) is bounded the same way.
        let up = logger
            .search_runs(&f, Cursor::After(0), 100, budget)
            .await
            .unwrap();
        assert_eq!(up.end, SearchEnd::WindowEnd { runs: 10 });
        assert_eq!(
            up.page.runs.iter().map(|r| r.run.id).collect::<Vec<_>>(),
            vec![10, 7, 4, 1]
        );
        assert_eq!(up.page.newer, Some(Cursor::After(10)));
    }

    pub(crate) async fn an_exhausted_time_budget_answers_with_the_outcome(db: TestDb) {
        let (logger, seen) = counted(&db).await;
        // 3,000 runs, 15,000 details of 400 characters: far more than a millisecond's work.
        seed(&logger, 3000, 5, 400).await;
        let tiny = SearchBudget {
            runs: 1_000_000,
            time: Duration::from_millis(1),
            index: false,
        };
        seen.lock().unwrap().clear();
        let found = logger
            .search_runs(&text("zzznothing"), Cursor::First, 25, tiny)
            .await
            .expect("a stopped search is an outcome, not an error");
        assert_eq!(
            found.end,
            SearchEnd::TimedOut {
                after: Duration::from_millis(1)
            }
        );
        assert!(found.page.runs.is_empty());
        assert_eq!(
            found.page.older, None,
            "the window held every run: nothing older to go on with"
        );
        // A smaller window: the way on skips past the runs the stopped search covered.
        let found = logger
            .search_runs(
                &text("zzznothing"),
                Cursor::First,
                25,
                SearchBudget { runs: 2000, ..tiny },
            )
            .await
            .unwrap();
        assert_eq!(
            found.end,
            SearchEnd::TimedOut {
                after: Duration::from_millis(1)
            }
        );
        assert_eq!(found.page.older, Some(Cursor::Before(1001)));
        // The connection is left as it was: later statements (and searches) run normally.
        for _ in 0..3 {
            let page = logger
                .list_runs(&RunFilter::default(), Cursor::First, 5)
                .await
                .unwrap();
            assert_eq!(page.runs.len(), 5);
            let found = logger
                .search_runs(&text("needle-2997"), Cursor::First, 25, scan())
                .await
                .unwrap();
            assert_eq!(found.end, SearchEnd::Complete);
            assert_eq!(found.page.runs.len(), 1);
        }
    }
}

common::backend_tests!(
    terms_out_of_bounds_are_refused_without_a_query,
    search_pages_newest_first_like_list_runs,
    a_window_of_runs_stops_and_resumes,
    an_exhausted_time_budget_answers_with_the_outcome,
);
