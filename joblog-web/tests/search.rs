//! The run list's text search through the page (issue 12): a short term is refused
//! politely (200, a note, no search statement), a search answers with what it found and
//! no count, and one search statement is sent per request (counted with sea-orm's metric
//! callback on PostgreSQL, where it goes through sea-orm; on SQLite it runs through sqlx
//! under a progress handler). PostgreSQL skips loudly when unreachable unless
//! `JOBLOG_REQUIRE_DBS=1`; server `JOBLOG_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use joblog::JobLogger;
use joblog_web::{WebConfig, router};
use poem::http::StatusCode;
use poem::test::TestClient;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

async fn seed(logger: &JobLogger) {
    for i in 0..12 {
        let run = logger.start("SearchJob").await.unwrap();
        run.detail(format!("processed batch {i}"));
        if i == 7 {
            run.detail("deadlock detected");
        }
        run.success().await.unwrap();
    }
    logger.flush().await.unwrap();
}

async fn body(cli: &TestClient<poem::Route>, uri: &str) -> String {
    let resp = cli.get(uri).send().await;
    resp.assert_status(StatusCode::OK);
    resp.0.into_body().into_string().await.unwrap()
}

fn client(logger: &JobLogger) -> TestClient<poem::Route> {
    TestClient::new(router(
        logger.clone(),
        WebConfig::default().list_cache(Duration::ZERO),
    ))
}

async fn check_pages(cli: &TestClient<poem::Route>) {
    let short = body(cli, "/job_logs?q=de").await;
    assert!(short.contains("Type at least 3 characters"), "{short}");
    assert!(!short.contains("No runs match"), "a refusal is not a result");
    let found = body(cli, "/job_logs?q=DEADLOCK").await;
    assert!(found.contains("1 run match"), "{found}");
    assert!(found.contains("deadlock detected"));
    let none = body(cli, "/job_logs?q=zzznothing").await;
    assert!(
        none.contains("0 runs match") && none.contains("No runs match these filters"),
        "{none}"
    );
    // Unfiltered and non-text filters keep their count.
    let all = body(cli, "/job_logs").await;
    assert!(all.contains("12 runs"), "{all}");
}

#[tokio::test]
async fn sqlite_search_is_bounded_and_polite() {
    let logger = JobLogger::connect("sqlite::memory:").await.unwrap();
    logger.migrate().await.unwrap();
    seed(&logger).await;
    check_pages(&client(&logger)).await;
}

/// A fresh PostgreSQL database, or `None` (skip) when the server is unreachable.
async fn postgres() -> Option<(String, DatabaseConnection, String)> {
    let server = std::env::var("JOBLOG_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let mut opts = ConnectOptions::new(format!("{server}/postgres"));
    opts.connect_timeout(Duration::from_secs(3))
        .sqlx_logging(false)
        .max_connections(1);
    let admin = match Database::connect(opts).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("PostgreSQL at {server} unreachable: {e}");
            assert!(
                !std::env::var("JOBLOG_REQUIRE_DBS").is_ok_and(|v| v == "1" || v == "true"),
                "{msg} (JOBLOG_REQUIRE_DBS=1 makes this a failure)"
            );
            eprintln!("\n!!!!! SKIPPED: {msg} !!!!!\n");
            return None;
        }
    };
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let name = format!("jl_websearch_{}_{}", t.as_micros(), std::process::id());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    Some((format!("{server}/{name}"), admin, name))
}

#[tokio::test]
async fn postgres_sends_one_search_statement_per_request() {
    let Some((url, admin, name)) = postgres().await else {
        return;
    };
    let mut opts = ConnectOptions::new(url);
    opts.sqlx_logging(false);
    let mut conn = Database::connect(opts).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    conn.set_metric_callback(move |info| sink.lock().unwrap().push(info.statement.sql.clone()));
    let logger = JobLogger::new(conn);
    logger.migrate().await.unwrap();
    seed(&logger).await;
    let cli = client(&logger);
    check_pages(&cli).await;
    // Statements that read rows for the term; the planner's estimates first (`EXPLAIN`, which
    // reads no rows: whether the term is rare enough for the index) are not among them.
    let likes = |seen: &Mutex<Vec<String>>| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|s| s.contains("LIKE") && !s.starts_with("EXPLAIN "))
            .count()
    };
    for (uri, expected) in [
        ("/job_logs?q=deadlock", 1),
        ("/job_logs?q=zzznothing", 1),
        ("/job_logs?q=zzznothing&before=5", 1),
        ("/job_logs?q=ab", 0),
    ] {
        seen.lock().unwrap().clear();
        body(&cli, uri).await;
        assert_eq!(likes(&seen), expected, "{uri}: {:?}", seen.lock().unwrap());
    }
    drop(logger);
    let _ = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
}
