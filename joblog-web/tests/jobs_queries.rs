//! The jobs monitor asks the database a fixed number of times, whatever the number of jobs:
//! every statement the page sends is counted (sea-orm's metric callback on the logger's
//! connection) for one job and for many, on SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! PostgreSQL and MySQL skip with a loud message when their server is unreachable, unless
//! `JOBLOG_REQUIRE_DBS=1`. Servers: `JOBLOG_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432`) and `JOBLOG_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use joblog::JobLogger;
use joblog_web::{WebConfig, router};
use poem::test::TestClient;
use sea_orm::{ConnectOptions, Database};

mod common;

use common::{Backend, TestDb};

/// Every statement the logger's connection runs, in order.
type Statements = Arc<Mutex<Vec<String>>>;

async fn counted_logger(db: &TestDb) -> (JobLogger, Statements) {
    let mut opts = ConnectOptions::new(db.url.clone());
    opts.sqlx_logging(false).max_connections(4);
    let mut conn = Database::connect(opts).await.expect("connect");
    let statements = Statements::default();
    let log = statements.clone();
    conn.set_metric_callback(move |info| {
        log.lock().unwrap().push(info.statement.sql.clone());
    });
    let logger = JobLogger::new(conn);
    logger.migrate().await.expect("migrate");
    (logger, statements)
}

/// Runs of `job`: successes, one error, and schedules `scheduled` of them.
async fn seed(logger: &JobLogger, jobs: &[String], scheduled: &[String]) {
    for job in jobs {
        for i in 0..3 {
            let mut run = logger.start(job).await.unwrap();
            run.processing().await.unwrap();
            run.detail(format!("step {i}"));
            if i == 1 {
                run.error(&"broken").await.unwrap();
            } else {
                run.success().await.unwrap();
            }
        }
    }
    let mut builder = joblog::scheduler::Scheduler::builder(logger.clone());
    for job in scheduled {
        builder = builder.job_with(
            job.clone(),
            joblog::scheduler::Schedule::every(Duration::from_secs(300)),
            joblog::scheduler::JobOptions::default().run_at_start(false),
            |_run| async { Ok::<(), String>(()) },
        );
    }
    if !scheduled.is_empty() {
        builder.build().start().await.unwrap().abort();
    }
    logger.flush().await.unwrap();
}

/// `GET /jobs`: the page and the statements it sent.
async fn jobs_page(cli: &TestClient<poem::Route>, statements: &Statements) -> (String, Vec<String>) {
    statements.lock().unwrap().clear();
    let resp = cli.get("/jobs").send().await;
    resp.assert_status_is_ok();
    let body = resp.0.into_body().into_string().await.unwrap();
    let sent = std::mem::take(&mut *statements.lock().unwrap());
    (body, sent)
}

async fn statements_do_not_grow_with_jobs(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let (logger, statements) = counted_logger(&db).await;
    let cli = TestClient::new(router(logger.clone(), WebConfig::default()));
    // Runs and schedules are written through a connection of their own, so that nothing
    // but the page (not the writer, not a scheduler task winding down) is counted.
    let writer = JobLogger::connect(&db.url).await.expect("connect the writer");

    let one = vec!["Job00".to_owned()];
    seed(&writer, &one, &one).await;
    let (body, for_one) = jobs_page(&cli, &statements).await;
    assert!(
        body.contains("Job00") && body.contains("<polyline"),
        "{backend:?}: {body}"
    );

    let many: Vec<String> = (1..=24).map(|i| format!("Job{i:02}")).collect();
    seed(&writer, &many, &many[..12]).await;
    let (body, for_many) = jobs_page(&cli, &statements).await;
    for job in &many {
        assert!(body.contains(job.as_str()), "{backend:?}: {job} listed");
    }
    assert_eq!(
        body.matches("<polyline").count(),
        25,
        "{backend:?}: a sparkline per job"
    );
    assert_eq!(
        body.matches("every 5 minutes").count(),
        13,
        "{backend:?}: 13 schedules"
    );
    eprintln!(
        "{backend:?}: GET /jobs sends {} statements for 1 job, {} for 25 jobs",
        for_one.len(),
        for_many.len()
    );
    assert_eq!(
        for_one.len(),
        for_many.len(),
        "{backend:?}: the statements grow with the jobs:\n1 job: {for_one:#?}\n25 jobs: {for_many:#?}"
    );
    assert!(for_many.len() <= 3, "{backend:?}: {for_many:#?}");
    drop(cli);
    drop(logger);
    drop(writer);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_monitor_statements_are_constant_on_sqlite() {
    statements_do_not_grow_with_jobs(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_monitor_statements_are_constant_on_postgres() {
    statements_do_not_grow_with_jobs(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_monitor_statements_are_constant_on_mysql() {
    statements_do_not_grow_with_jobs(Backend::MySql).await;
}
