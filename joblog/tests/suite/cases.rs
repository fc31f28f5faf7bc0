//! The cases, each `async fn(TestDb)`; `main.rs` runs every one on every backend.

use std::collections::HashSet;
use std::time::Duration;

use joblog::query::{Cursor, RunFilter};
use joblog::{ErrorChain, JobLogger, Level, PruneOptions, RunStatus};
use joblog_migrations::JoblogMigrator;
use joblog_migrations::sea_orm_migration::prelude::*;
use sea_orm::ConnectionTrait;

pub(crate) use crate::alerts::{
    a_bad_webhook_url_is_refused, a_webhook_that_is_down_is_retried_and_shown,
    alerts_on_failure_and_recovery_once_each, alerts_when_overdue_from_one_of_two_instances,
    an_alert_is_raised_by_another_instance,
};
use crate::common::{Backend, TestDb, rows, status_and_messages};
pub(crate) use crate::metrics::{metrics_count_runs_and_read_the_database, metrics_survive_a_missing_table};

const STARTED: &str = "Job started - ";

async fn exec(conn: &impl ConnectionTrait, sql: &str) {
    conn.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn child_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("child");
    assert!(
        path.exists(),
        "{} missing: `cargo test` builds joblog's examples",
        path.display()
    );
    path
}

fn one_process_only(db: &TestDb) -> bool {
    if db.backend == Backend::SqliteMemory {
        eprintln!("not applicable to sqlite_memory: a memory database lives inside one process");
        return true;
    }
    false
}

// ---- migrations and schema -------------------------------------------------------------

struct HostTable;

impl MigrationName for HostTable {
    fn name(&self) -> &str {
        "HostTable"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for HostTable {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("host_things"))
                    .col(
                        ColumnDef::new(Alias::new("id"))
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .to_owned(),
            )
            .await
    }
}

/// A host application's own migrator, on sea-orm's default `seaql_migrations` table.
struct HostMigrator;

#[async_trait::async_trait]
impl MigratorTrait for HostMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(HostTable)]
    }
}

pub(crate) async fn migrate_is_idempotent_beside_a_host_migrator(db: TestDb) {
    let logger = db.logger().await;
    HostMigrator::up(logger.db(), None)
        .await
        .expect("host migrator after joblog's");
    logger.migrate().await.expect("second migrate");
    logger.migrate().await.expect("third migrate");
    HostMigrator::up(logger.db(), None)
        .await
        .expect("host migrator again");
    let conn = db.fresh().await;
    let joblog_versions = rows(&conn, "SELECT version FROM joblog_migrations").await;
    assert_eq!(
        joblog_versions.len(),
        JoblogMigrator::migrations().len(),
        "each of joblog's migrations recorded once"
    );
    let host_versions: Vec<String> = rows(&conn, "SELECT version FROM seaql_migrations")
        .await
        .iter()
        .map(|r| r.try_get_by_index(0).unwrap())
        .collect();
    assert_eq!(
        host_versions,
        vec!["HostTable".to_owned()],
        "the host's table holds only its own history"
    );
    rows(&conn, "SELECT id FROM host_things").await;
    rows(&conn, "SELECT id FROM job_logs").await;
}

pub(crate) async fn schema_has_the_documented_constraints(db: TestDb) {
    let logger = db.logger().await;
    let conn = db.fresh().await;
    let now = "'2026-01-01 00:00:00'";
    // status defaults to 0.
    exec(
        &conn,
        &format!("INSERT INTO job_logs (name, job, created_at, updated_at) VALUES ('n1', 'J', {now}, {now})"),
    )
    .await;
    let status: i16 = rows(&conn, "SELECT status FROM job_logs WHERE name = 'n1'").await[0]
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(status, 0);
    // name is UNIQUE and NOT NULL; message is NOT NULL.
    let dup = conn
        .execute_unprepared(&format!(
            "INSERT INTO job_logs (name, job, created_at, updated_at) VALUES ('n1', 'J', {now}, {now})"
        ))
        .await;
    assert!(dup.is_err(), "duplicate name accepted");
    let null_name = conn
        .execute_unprepared(&format!(
            "INSERT INTO job_logs (name, job, created_at, updated_at) VALUES (NULL, 'J', {now}, {now})"
        ))
        .await;
    assert!(null_name.is_err(), "NULL name accepted");
    let id: i64 = rows(&conn, "SELECT id FROM job_logs WHERE name = 'n1'").await[0]
        .try_get_by_index(0)
        .unwrap();
    let null_msg = conn
        .execute_unprepared(&format!(
            "INSERT INTO job_log_details (job_log_id, message, created_at) VALUES ({id}, NULL, {now})"
        ))
        .await;
    assert!(null_msg.is_err(), "NULL message accepted");
    let orphan = conn
        .execute_unprepared(&format!(
            "INSERT INTO job_log_details (job_log_id, message, created_at) VALUES ({}, 'x', {now})",
            id + 1000
        ))
        .await;
    assert!(orphan.is_err(), "detail of a missing run accepted");
    // Details are deleted with their run. (SQLite enforces foreign keys per connection;
    // joblog's own connections turn them on, so delete through the logger's.)
    exec(
        &conn,
        &format!("INSERT INTO job_log_details (job_log_id, message, created_at) VALUES ({id}, 'x', {now})"),
    )
    .await;
    let level: String = rows(&conn, "SELECT level FROM job_log_details").await[0]
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(level, "info", "level defaults to info");
    exec(logger.db(), &format!("DELETE FROM job_logs WHERE id = {id}")).await;
    assert!(
        rows(&conn, "SELECT id FROM job_log_details").await.is_empty(),
        "details outlived their run"
    );
}

// ---- the guard ---------------------------------------------------------------------------

pub(crate) async fn lifecycle_new_processing_success(db: TestDb) {
    let logger = db.logger().await;
    let conn = db.fresh().await;
    let mut run = logger.start("SyncOpenOrdersJob").await.unwrap();
    assert_eq!(run.job(), "SyncOpenOrdersJob");
    let name = run.name().to_owned();
    assert_eq!(name.len(), 15, "YYYYMMDD_HHMMSS: {name}");
    assert!(
        name.chars()
            .enumerate()
            .all(|(i, c)| if i == 8 { c == '_' } else { c.is_ascii_digit() }),
        "{name}"
    );
    let (status, _) = status_and_messages(&conn, run.id()).await;
    assert_eq!(status, RunStatus::New.code());

    run.processing().await.unwrap();
    let (status, _) = status_and_messages(&conn, run.id()).await;
    assert_eq!(status, RunStatus::Processing.code());
    run.detail("Connecting to SQL Server...");
    run.warn("Source returned 0 rows");
    run.log(Level::Info, "Done");
    let id = run.id();
    run.success().await.unwrap();

    // success() returned: everything is durable, seen through a fresh connection.
    let (status, details) = status_and_messages(&conn, id).await;
    assert_eq!(status, RunStatus::Success.code());
    assert_eq!(
        details,
        vec![
            ("info".into(), format!("{STARTED}SyncOpenOrdersJob")),
            ("info".into(), "Connecting to SQL Server...".into()),
            ("warn".into(), "Source returned 0 rows".into()),
            ("info".into(), "Done".into()),
        ]
    );
    let rec = logger.get_run(id).await.unwrap().unwrap();
    assert_eq!(rec.name, name);
    assert!(rec.host.as_deref().is_some_and(|h| !h.is_empty()));
    assert_eq!(rec.pid, Some(i64::from(std::process::id())));
    let (started, finished) = (rec.started_at.unwrap(), rec.finished_at.unwrap());
    assert!(rec.created_at <= started && started <= finished);
    assert!(rec.duration().is_some());
    assert_eq!(rec.error, None);
}

#[derive(Debug, thiserror::Error)]
#[error("fetching open orders failed")]
struct Outer(#[source] std::io::Error);

pub(crate) async fn error_records_the_cause_chain(db: TestDb) {
    let logger = db.logger().await;
    let conn = db.fresh().await;
    // anyhow: `{:#}` prints the chain.
    let mut run = logger.start("Job").await.unwrap();
    run.processing().await.unwrap();
    let id = run.id();
    let err = anyhow::anyhow!("connection reset").context("fetching open orders");
    run.error(&err).await.unwrap();
    let (status, details) = status_and_messages(&conn, id).await;
    assert_eq!(status, RunStatus::Error.code());
    assert_eq!(
        details.last().unwrap(),
        &("error".into(), "fetching open orders: connection reset".into())
    );
    assert_eq!(
        logger.get_run(id).await.unwrap().unwrap().error.as_deref(),
        Some("fetching open orders: connection reset")
    );
    // A std error through ErrorChain: its sources too.
    let run = logger.start("Job").await.unwrap();
    let id = run.id();
    let err = Outer(std::io::Error::other("disk full"));
    run.error(&ErrorChain(&err)).await.unwrap();
    let (_, details) = status_and_messages(&conn, id).await;
    assert_eq!(
        details.last().unwrap().1,
        "fetching open orders failed: disk full"
    );
}

pub(crate) async fn invalid_transitions_are_errors(db: TestDb) {
    let logger = db.logger().await;
    let mut run = logger.start("Job").await.unwrap();
    run.processing().await.unwrap();
    let err = run.processing().await.unwrap_err();
    assert!(
        matches!(
            err,
            joblog::Error::InvalidTransition {
                from: RunStatus::Processing,
                to: RunStatus::Processing,
                ..
            }
        ),
        "{err}"
    );
    // The run was ended behind the guard's back (as the reaper does): finishing is an error.
    exec(
        logger.db(),
        &format!("UPDATE job_logs SET status = 3 WHERE id = {}", run.id()),
    )
    .await;
    let err = run.success().await.unwrap_err();
    assert!(
        matches!(
            err,
            joblog::Error::InvalidTransition {
                from: RunStatus::Error,
                to: RunStatus::Success,
                ..
            }
        ),
        "{err}"
    );
    // processing() on a run already ended elsewhere is an error too.
    let mut run = logger.start("Job").await.unwrap();
    exec(
        logger.db(),
        &format!("UPDATE job_logs SET status = 2 WHERE id = {}", run.id()),
    )
    .await;
    assert!(run.processing().await.is_err());
    drop(run);
}

pub(crate) async fn dropped_guard_is_marked_error(db: TestDb) {
    let logger = db.logger().await;
    async fn early_return(logger: &JobLogger) -> anyhow::Result<i64> {
        let mut run = logger.start("EarlyReturnJob").await?;
        run.processing().await?;
        run.detail("step 1");
        let id = run.id();
        let _n: u32 = anyhow::Context::context("not a number".parse::<u32>(), "bad input")?;
        run.success().await?;
        Ok(id)
    }
    let err = early_return(&logger).await.unwrap_err();
    assert_eq!(err.to_string(), "bad input");
    // Dropped in an inner block.
    let id = {
        let run = logger.start("InnerBlockJob").await.unwrap();
        run.id()
    };
    logger.flush().await.unwrap();
    let conn = db.fresh().await;
    let (status, details) = status_and_messages(&conn, id).await;
    assert_eq!(status, RunStatus::Error.code());
    assert_eq!(details.len(), 2);
    assert_eq!(details[1].0, "error");
    assert!(
        details[1].1.starts_with("dropped before completion"),
        "{details:?}"
    );
    // The early-return run too.
    let last = logger
        .list_runs(
            &RunFilter {
                job: Some("EarlyReturnJob".into()),
                ..Default::default()
            },
            Cursor::First,
            1,
        )
        .await
        .unwrap();
    let rec = &last.runs[0].run;
    assert_eq!(rec.status, RunStatus::Error);
    let (_, details) = status_and_messages(&conn, rec.id).await;
    assert_eq!(
        details.iter().map(|d| d.1.as_str()).take(2).collect::<Vec<_>>(),
        [&format!("{STARTED}EarlyReturnJob"), "step 1"]
    );
    assert!(
        rec.error
            .as_deref()
            .unwrap()
            .starts_with("dropped before completion")
    );
    assert!(rec.finished_at.is_some());
}

pub(crate) async fn panic_inside_run_is_recorded_with_message(db: TestDb) {
    let logger = db.logger().await;
    let l = logger.clone();
    let joined = tokio::spawn(async move {
        l.run("PanickyJob", |run| async move {
            run.detail("about to fail");
            if run.id() > 0 {
                panic!("boom at row 42");
            }
            Ok::<(), anyhow::Error>(())
        })
        .await
    })
    .await;
    assert!(
        joined.unwrap_err().is_panic(),
        "the panic continues after it is recorded"
    );
    logger.flush().await.unwrap();
    let page = logger
        .list_runs(&RunFilter::default(), Cursor::First, 1)
        .await
        .unwrap();
    let (status, details) = status_and_messages(&db.fresh().await, page.runs[0].run.id).await;
    assert_eq!(status, RunStatus::Error.code());
    assert_eq!(
        details.last().unwrap(),
        &("error".into(), "panicked: boom at row 42".into())
    );
    assert_eq!(details[1].1, "about to fail");
}

pub(crate) async fn panic_with_a_bare_guard_is_recorded(db: TestDb) {
    let logger = db.logger().await;
    let l = logger.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let joined = tokio::spawn(async move {
        let run = l.start("BareGuardJob").await.unwrap();
        tx.send(run.id()).unwrap();
        let v: Vec<u8> = Vec::new();
        let _ = v[run.id() as usize]; // index out of bounds
        run.success().await.unwrap();
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    let id = rx.await.unwrap();
    logger.flush().await.unwrap();
    let (status, details) = status_and_messages(&db.fresh().await, id).await;
    assert_eq!(status, RunStatus::Error.code());
    assert!(details.last().unwrap().1.starts_with("panicked"), "{details:?}");
}

pub(crate) async fn cancelled_task_is_recorded(db: TestDb) {
    let logger = db.logger().await;
    let l = logger.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        l.run("SlowJob", |run| async move {
            run.detail("waiting for the ERP");
            tx.send(run.id()).unwrap();
            std::future::pending::<()>().await;
            Ok::<(), anyhow::Error>(())
        })
        .await
    });
    let id = rx.await.unwrap();
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    logger.flush().await.unwrap();
    let (status, details) = status_and_messages(&db.fresh().await, id).await;
    assert_eq!(status, RunStatus::Error.code());
    assert!(details.last().unwrap().1.starts_with("cancelled"), "{details:?}");
    // A timeout cancels the same way.
    let result = tokio::time::timeout(
        Duration::from_millis(50),
        logger.run("TimedOutJob", |_run| async {
            std::future::pending::<Result<(), String>>().await
        }),
    )
    .await;
    assert!(result.is_err());
    logger.flush().await.unwrap();
    let page = logger
        .list_runs(
            &RunFilter {
                job: Some("TimedOutJob".into()),
                ..Default::default()
            },
            Cursor::First,
            1,
        )
        .await
        .unwrap();
    assert_eq!(page.runs[0].run.status, RunStatus::Error);
    assert!(
        page.runs[0]
            .run
            .error
            .as_deref()
            .unwrap()
            .starts_with("cancelled")
    );
}

pub(crate) async fn run_closure_results_are_recorded(db: TestDb) {
    let logger = db.logger().await;
    let value = logger
        .run("OkJob", |run| async move {
            run.detail("working");
            Ok::<_, anyhow::Error>(7)
        })
        .await
        .unwrap();
    assert_eq!(value, 7);
    let err = logger
        .run("ErrJob", |_run| async move {
            Err::<(), _>(anyhow::anyhow!("root cause").context("outer step"))
        })
        .await
        .unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "outer step: root cause",
        "the job's own error is returned"
    );
    let conn = db.fresh().await;
    for (job, status, last) in [
        ("OkJob", RunStatus::Success, "working"),
        ("ErrJob", RunStatus::Error, "outer step: root cause"),
    ] {
        let page = logger
            .list_runs(
                &RunFilter {
                    job: Some(job.into()),
                    ..Default::default()
                },
                Cursor::First,
                5,
            )
            .await
            .unwrap();
        assert_eq!(page.runs.len(), 1);
        let rec = &page.runs[0].run;
        assert_eq!(rec.status, status, "{job}");
        assert!(rec.started_at.is_some(), "run() marks processing");
        let (_, details) = status_and_messages(&conn, rec.id).await;
        assert_eq!(details.last().unwrap().1, last);
        assert_eq!(page.runs[0].last_detail.as_ref().unwrap().message, last);
    }
}

pub(crate) async fn details_are_visible_while_the_run_goes_on(db: TestDb) {
    let logger = db.logger().await;
    let conn = db.fresh().await;
    let mut run = logger.start("TailJob").await.unwrap();
    run.processing().await.unwrap();
    for i in 0..3 {
        run.detail(format!("Batch {}/3", i + 1));
    }
    // No flush: the writer writes on its own. Poll (bounded) until the lines appear.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let (_, details) = status_and_messages(&conn, run.id()).await;
        if details.len() == 4 || std::time::Instant::now() > deadline {
            break details;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(seen.len(), 4, "details never became visible: {seen:?}");
    let (status, _) = status_and_messages(&conn, run.id()).await;
    assert_eq!(
        status,
        RunStatus::Processing.code(),
        "visible while the run is still processing"
    );
    run.success().await.unwrap();
}

pub(crate) async fn details_keep_their_order_across_handles(db: TestDb) {
    let logger = db.logger().await;
    let run = logger.start("OrderJob").await.unwrap();
    let per_task = 2_000;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let h = run.handle();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                h.detail(format!("{t}:{i}"));
                if i % 500 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    run.detail("last");
    let id = run.id();
    run.success().await.unwrap();
    let details = logger.details(id, None, 10_000).await.unwrap();
    assert_eq!(details.len(), 1 + 4 * per_task + 1);
    assert_eq!(details.last().unwrap().message, "last");
    let mut next = [0usize; 4];
    for d in &details[1..details.len() - 1] {
        let (t, i) = d.message.split_once(':').unwrap();
        let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[t], "task {t}'s details out of order");
        next[t] += 1;
    }
    assert!(details.windows(2).all(|w| w[0].id < w[1].id));
}

pub(crate) async fn queue_overflow_is_counted_not_blocking(db: TestDb) {
    let logger = db.logger_with(JobLogger::builder().queue_capacity(10)).await;
    let run = logger.start("FloodJob").await.unwrap();
    // No await in the loop: on this runtime the writer may drain concurrently, or not.
    let started = std::time::Instant::now();
    for i in 0..5_000 {
        run.detail(format!("line {i}"));
    }
    let elapsed = started.elapsed();
    let id = run.id();
    run.success().await.unwrap();
    let details = logger.details(id, None, 10_000).await.unwrap();
    let written = details.iter().filter(|d| d.message.starts_with("line ")).count();
    let report = details
        .iter()
        .find(|d| d.level == Level::Warn)
        .expect("a warn detail reports the loss");
    let lost: usize = report.message.split_whitespace().next().unwrap().parse().unwrap();
    assert!(report.message.contains("capacity 10"), "{}", report.message);
    assert_eq!(written + lost, 5_000, "every line is written or counted as lost");
    assert!(lost > 0, "a 10-slot queue overflowed");
    eprintln!(
        "5000 details with a 10-slot queue: {written} written, {lost} counted lost, {elapsed:?} at the call sites"
    );
}

pub(crate) async fn database_outage_never_blocks_and_recovers(db: TestDb) {
    let logger = db.logger().await;
    let conn = db.fresh().await;
    let mut run = logger.start("OutageJob").await.unwrap();
    run.processing().await.unwrap();
    run.detail("before the outage");
    logger.flush().await.unwrap();
    // The details table disappears: every write of the writer fails.
    exec(
        &conn,
        "ALTER TABLE job_log_details RENAME TO job_log_details_away",
    )
    .await;
    let t = std::time::Instant::now();
    run.detail("during the outage");
    run.warn("still going");
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "detail() waited on the database"
    );
    let id = run.id();
    let err = run
        .success()
        .await
        .expect_err("success() reports that logs are not durable");
    assert!(matches!(err, joblog::Error::Write(_)), "{err}");
    assert!(logger.flush().await.is_err(), "flush() reports it too");
    // The database comes back: the writer's retries make everything durable, in order.
    exec(
        &conn,
        "ALTER TABLE job_log_details_away RENAME TO job_log_details",
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match logger.flush().await {
            Ok(()) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("waiting for recovery: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the writer never recovered: {e}"),
        }
    }
    let (status, details) = status_and_messages(&db.fresh().await, id).await;
    assert_eq!(status, RunStatus::Success.code());
    let messages: Vec<&str> = details.iter().map(|d| d.1.as_str()).collect();
    assert_eq!(
        messages,
        [
            "Job started - OutageJob",
            "before the outage",
            "during the outage",
            "still going"
        ]
    );
}

// ---- naming ------------------------------------------------------------------------------

pub(crate) async fn fifty_concurrent_starts_get_distinct_names(db: TestDb) {
    let logger = db.logger_with(JobLogger::builder().max_connections(10)).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let l = logger.clone();
        tasks.push(tokio::spawn(async move {
            let run = l.start("BurstJob").await.unwrap();
            let name = run.name().to_owned();
            run.success().await.unwrap();
            name
        }));
    }
    let mut names = Vec::new();
    for t in tasks {
        names.push(t.await.unwrap());
    }
    let distinct: HashSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), 50, "{names:?}");
    let collided = names.iter().filter(|n| n.len() > 15).count();
    eprintln!("50 concurrent starts: {collided} took a _n suffix");
    for n in &names {
        let (base, suffix) = n.split_at(15);
        assert!(suffix.is_empty() || suffix[1..].parse::<u32>().is_ok(), "{n}");
        assert!(base.chars().all(|c| c.is_ascii_digit() || c == '_'));
    }
}

pub(crate) async fn names_follow_the_configured_timezone(db: TestDb) {
    let tz: joblog::scheduler::Tz = "Asia/Kolkata".parse().unwrap();
    let logger = db.logger_with(JobLogger::builder().timezone(tz)).await;
    let run = logger.start("TzJob").await.unwrap();
    let rec = logger.get_run(run.id()).await.unwrap().unwrap();
    let expected = rec
        .created_at
        .with_timezone(&tz)
        .format("%Y%m%d_%H%M%S")
        .to_string();
    assert_eq!(&run.name()[..15], expected);
    run.success().await.unwrap();
}

pub(crate) async fn two_processes_start_in_the_same_second(db: TestDb) {
    if one_process_only(&db) {
        return;
    }
    let _logger = db.logger().await;
    let child = child_binary();
    // Both processes start at the same instant: 300 ms into a whole second two seconds from now.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let at_ms = (now_ms / 1000 + 2) * 1000 + 300;
    let spawn = || {
        tokio::process::Command::new(&child)
            .args(["starts", &db.url, "25", &at_ms.to_string()])
            .output()
    };
    let (a, b) = tokio::join!(spawn(), spawn());
    let mut names = Vec::new();
    for out in [a.unwrap(), b.unwrap()] {
        assert!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            names.push(line.split_once(' ').unwrap().1.to_owned());
        }
    }
    assert_eq!(names.len(), 50);
    let distinct: HashSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), 50, "{names:?}");
    let bases: HashSet<&str> = names.iter().map(|n| &n[..15]).collect();
    assert_eq!(bases.len(), 1, "all 50 started in the same second: {names:?}");
    let suffixes: HashSet<String> = names.iter().map(|n| n[15..].to_owned()).collect();
    let expected: HashSet<String> = std::iter::once(String::new())
        .chain((1..50).map(|i| format!("_{i}")))
        .collect();
    assert_eq!(suffixes, expected, "names are base, base_1 … base_49");
}

// ---- heartbeats, reaper, retention -------------------------------------------------------

pub(crate) async fn heartbeats_and_reaper(db: TestDb) {
    let alive = db
        .logger_with(JobLogger::builder().heartbeat_interval(Duration::from_millis(50)))
        .await;
    let mut run = alive.start("LongJob").await.unwrap();
    run.processing().await.unwrap();
    let first = alive
        .get_run(run.id())
        .await
        .unwrap()
        .unwrap()
        .heartbeat_at
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = alive
        .get_run(run.id())
        .await
        .unwrap()
        .unwrap()
        .heartbeat_at
        .unwrap();
    assert!(later > first, "heartbeat refreshed while the run lives");

    // A run whose process is gone: its guard is forgotten and its logger dropped.
    let dead_logger = db.logger().await;
    let mut dead = dead_logger.start("LongJob").await.unwrap();
    dead.processing().await.unwrap();
    let dead_id = dead.id();
    std::mem::forget(dead);
    drop(dead_logger);
    tokio::time::sleep(Duration::from_millis(400)).await;

    let reaper = db.logger().await;
    // The live run (heartbeat every 50 ms) is not stale at 250 ms; the dead one is.
    let reaped = reaper.reap_stale(Duration::from_millis(250)).await.unwrap();
    assert_eq!(reaped, vec![dead_id]);
    let rec = reaper.get_run(dead_id).await.unwrap().unwrap();
    assert_eq!(rec.status, RunStatus::Error);
    assert!(rec.finished_at.is_some());
    let (_, details) = status_and_messages(&db.fresh().await, dead_id).await;
    assert!(details.last().unwrap().1.starts_with("abandoned"), "{details:?}");
    assert_eq!(details.last().unwrap().0, "error");
    // Reaping again changes nothing; a logger never reaps its own live runs.
    assert!(
        reaper
            .reap_stale(Duration::from_millis(250))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(alive.reap_stale(Duration::ZERO).await.unwrap().is_empty());
    run.success().await.unwrap();
}

pub(crate) async fn killed_process_run_is_reaped(db: TestDb) {
    if one_process_only(&db) {
        return;
    }
    let logger = db.logger().await;
    let mut child = tokio::process::Command::new(child_binary())
        .args(["hang", &db.url])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)
        .await
        .unwrap();
    let id: i64 = line.trim().parse().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        logger
            .reap_stale(Duration::from_secs(2))
            .await
            .unwrap()
            .is_empty(),
        "a live child is not reaped"
    );
    child.kill().await.unwrap(); // SIGKILL: no destructor, no flush
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(logger.reap_stale(Duration::from_secs(2)).await.unwrap(), vec![id]);
    let (status, details) = status_and_messages(&db.fresh().await, id).await;
    assert_eq!(status, RunStatus::Error.code());
    assert_eq!(details[1].1, "working forever");
    assert!(details.last().unwrap().1.starts_with("abandoned"));
}

pub(crate) async fn prune_by_age_and_keep_last(db: TestDb) {
    let logger = db.logger().await;
    let conn = db.fresh().await;
    let mut ids = Vec::new();
    for (job, n) in [("A", 6), ("B", 3)] {
        for i in 0..n {
            let run = logger.start(job).await.unwrap();
            for d in 0..30 {
                run.detail(format!("{job}{i} detail {d}"));
            }
            ids.push((job, run.id()));
            run.success().await.unwrap();
        }
    }
    let mut open = logger.start("A").await.unwrap();
    open.processing().await.unwrap();
    // The two oldest runs of A are 40 days old, and so is the open run.
    let old: Vec<String> = ids
        .iter()
        .filter(|(j, _)| *j == "A")
        .take(2)
        .map(|(_, id)| id.to_string())
        .collect();
    exec(
        &conn,
        &format!(
            "UPDATE job_logs SET created_at = '2000-01-01 00:00:00' WHERE id IN ({}, {})",
            old.join(", "),
            open.id()
        ),
    )
    .await;
    if db.backend == Backend::SqliteFile || db.backend == Backend::SqliteMemory {
        // SQLite keeps timestamps as RFC 3339 text; write the same shape.
        exec(&conn, "UPDATE job_logs SET created_at = '2000-01-01T00:00:00+00:00' WHERE created_at = '2000-01-01 00:00:00'").await;
    }
    let stats = logger
        .prune(&PruneOptions {
            older_than: Some(Duration::from_secs(30 * 86_400)),
            keep_last: None,
        })
        .await
        .unwrap();
    assert_eq!(
        (stats.runs, stats.details),
        (2, 2 * 31),
        "two runs, each with its started line and 30 details"
    );
    let stats = logger
        .prune(&PruneOptions {
            older_than: None,
            keep_last: Some(2),
        })
        .await
        .unwrap();
    // A: 4 finished left + 1 open (newest) → keep the 2 newest (open + 1 finished), prune 3; B: prune 1.
    assert_eq!(stats.runs, 4);
    let left: Vec<(String, i16)> = rows(&conn, "SELECT job, status FROM job_logs ORDER BY id")
        .await
        .iter()
        .map(|r| (r.try_get_by_index(0).unwrap(), r.try_get_by_index(1).unwrap()))
        .collect();
    assert_eq!(
        left,
        [("A".into(), 2), ("B".into(), 2), ("B".into(), 2), ("A".into(), 1)]
    );
    let orphans = rows(
        &conn,
        "SELECT COUNT(*) FROM job_log_details WHERE job_log_id NOT IN (SELECT id FROM job_logs)",
    )
    .await;
    assert_eq!(orphans[0].try_get_by_index::<i64>(0).unwrap(), 0);
    open.success().await.unwrap();
}

// ---- query side --------------------------------------------------------------------------

pub(crate) async fn list_runs_filters_and_keyset_pages(db: TestDb) {
    let logger = db.logger().await;
    let empty = logger
        .list_runs(&RunFilter::default(), Cursor::First, 25)
        .await
        .unwrap();
    assert!(empty.runs.is_empty() && empty.newer.is_none() && empty.older.is_none());
    let mut all = Vec::new();
    for i in 0..60 {
        let job = if i % 3 == 0 { "Export" } else { "Import" };
        let run = logger.start(job).await.unwrap();
        run.detail(if i == 17 {
            "found 100% of ORDERS_x"
        } else {
            "nothing special"
        });
        all.push(run.id());
        if i % 4 == 0 {
            run.error(&"failed").await.unwrap();
        } else {
            run.success().await.unwrap();
        }
    }
    all.reverse(); // newest first
    let f = RunFilter::default();
    let p1 = logger.list_runs(&f, Cursor::First, 25).await.unwrap();
    assert_eq!(p1.runs.iter().map(|r| r.run.id).collect::<Vec<_>>(), all[..25]);
    assert_eq!(p1.newer, None);
    let p2 = logger.list_runs(&f, p1.older.unwrap(), 25).await.unwrap();
    assert_eq!(p2.runs.iter().map(|r| r.run.id).collect::<Vec<_>>(), all[25..50]);
    let p3 = logger.list_runs(&f, p2.older.unwrap(), 25).await.unwrap();
    assert_eq!(p3.runs.iter().map(|r| r.run.id).collect::<Vec<_>>(), all[50..]);
    assert_eq!(p3.older, None, "the last page has no older page");
    // Back again with the newer cursors.
    let back = logger.list_runs(&f, p3.newer.unwrap(), 25).await.unwrap();
    assert_eq!(
        back.runs.iter().map(|r| r.run.id).collect::<Vec<_>>(),
        all[25..50]
    );
    let back = logger.list_runs(&f, back.newer.unwrap(), 25).await.unwrap();
    assert_eq!(back.runs.iter().map(|r| r.run.id).collect::<Vec<_>>(), all[..25]);
    assert_eq!(back.newer, None);
    // Filters.
    let errors = logger
        .list_runs(
            &RunFilter {
                status: Some(RunStatus::Error),
                ..Default::default()
            },
            Cursor::First,
            100,
        )
        .await
        .unwrap();
    assert_eq!(errors.runs.len(), 15);
    assert!(
        errors
            .runs
            .iter()
            .all(|r| r.run.status == RunStatus::Error && r.last_detail.as_ref().unwrap().message == "failed")
    );
    let exports = RunFilter {
        job: Some("Export".into()),
        status: Some(RunStatus::Success),
        ..Default::default()
    };
    let page = logger.list_runs(&exports, Cursor::First, 100).await.unwrap();
    assert_eq!(page.runs.len(), 15); // i % 3 == 0 (20 runs), less i % 12 == 0 (5 errors)
    let text = RunFilter {
        text: Some("100% of orders_".into()),
        ..Default::default()
    };
    let found = logger.list_runs(&text, Cursor::First, 100).await.unwrap();
    assert_eq!(
        found.runs.len(),
        1,
        "case-insensitive, with % and _ taken literally"
    );
    assert_eq!(found.runs[0].run.id, all[59 - 17]);
    let wildcard = RunFilter {
        text: Some("%".into()),
        ..Default::default()
    };
    assert_eq!(
        logger
            .list_runs(&wildcard, Cursor::First, 100)
            .await
            .unwrap()
            .runs
            .len(),
        1
    );
    // Counts stop at the cap.
    assert_eq!(
        logger.count_runs(&f, 1000).await.unwrap(),
        joblog::query::CappedCount {
            count: 60,
            capped: false
        }
    );
    assert_eq!(
        logger.count_runs(&f, 50).await.unwrap(),
        joblog::query::CappedCount {
            count: 50,
            capped: true
        }
    );
    assert_eq!(logger.count_runs(&text, 10).await.unwrap().count, 1);
    // Page size is clamped.
    assert_eq!(
        logger.list_runs(&f, Cursor::First, 0).await.unwrap().runs.len(),
        1
    );
}

pub(crate) async fn count_details_tail_and_job_summaries(db: TestDb) {
    let logger = db.logger().await;
    let mut run = logger.start("TailJob").await.unwrap();
    run.processing().await.unwrap();
    for i in 0..10 {
        run.detail(format!("line {i}"));
    }
    logger.flush().await.unwrap();
    let first = logger.details(run.id(), None, 4).await.unwrap();
    assert_eq!(first.len(), 4);
    let rest = logger.details(run.id(), Some(first[3].id), 100).await.unwrap();
    assert_eq!(rest.len(), 7);
    assert_eq!(rest[0].message, "line 3");
    assert!(
        logger
            .details(run.id(), Some(rest[6].id), 100)
            .await
            .unwrap()
            .is_empty(),
        "the tail is empty until new lines come"
    );
    run.detail("new line");
    logger.flush().await.unwrap();
    let tail = logger.details(run.id(), Some(rest[6].id), 100).await.unwrap();
    assert_eq!(
        tail.iter().map(|d| d.message.as_str()).collect::<Vec<_>>(),
        ["new line"]
    );
    assert_eq!(logger.detail_count(run.id()).await.unwrap(), 12);
    run.success().await.unwrap();

    for i in 0..4 {
        let mut r = logger.start("Nightly").await.unwrap();
        r.processing().await.unwrap();
        if i == 3 {
            r.error(&"broken").await.unwrap();
        } else {
            r.success().await.unwrap();
        }
    }
    let conn = db.fresh().await;
    // Give the three successful Nightly runs known durations: 10 s, 20 s, 30 s.
    let ids: Vec<i64> = rows(
        &conn,
        "SELECT id FROM job_logs WHERE job = 'Nightly' AND status = 2 ORDER BY id",
    )
    .await
    .iter()
    .map(|r| r.try_get_by_index(0).unwrap())
    .collect();
    let ts = |s: u32| {
        if matches!(db.backend, Backend::SqliteFile | Backend::SqliteMemory) {
            format!("'2026-01-01T00:00:{s:02}+00:00'")
        } else {
            format!("'2026-01-01 00:00:{s:02}'")
        }
    };
    for (i, id) in ids.iter().enumerate() {
        let secs = 10 * (i as u32 + 1);
        exec(
            &conn,
            &format!(
                "UPDATE job_logs SET started_at = {}, finished_at = {} WHERE id = {id}",
                ts(0),
                ts(secs)
            ),
        )
        .await;
    }
    let summaries = logger.job_summaries().await.unwrap();
    assert_eq!(
        summaries.iter().map(|s| s.job.as_str()).collect::<Vec<_>>(),
        ["Nightly", "TailJob"]
    );
    let nightly = &summaries[0];
    assert_eq!(
        (
            nightly.counts.success,
            nightly.counts.error,
            nightly.counts.total()
        ),
        (3, 1, 4)
    );
    assert_eq!(nightly.last_run.as_ref().unwrap().status, RunStatus::Error);
    assert_eq!(nightly.last_success.as_ref().unwrap().id, *ids.last().unwrap());
    assert_eq!(nightly.p50, Some(Duration::from_secs(20)));
    assert_eq!(nightly.p95, Some(Duration::from_secs(30)));
    assert!(
        nightly.recent.is_empty(),
        "job_summaries() asks for no recent runs"
    );
    // One success: it is both percentiles.
    let tail = &summaries[1];
    let tail_run = tail.last_success.as_ref().unwrap();
    assert!(tail.p50.is_some(), "{:?}: a success has a duration", db.backend);
    assert_eq!(tail.p50, tail.p95);
    assert!(
        tail.p50.unwrap().abs_diff(tail_run.duration().unwrap()) < Duration::from_millis(1),
        "{:?}: p50 {:?}, the run took {:?}",
        db.backend,
        tail.p50,
        tail_run.duration()
    );
    assert_eq!(logger.jobs().await.unwrap(), ["Nightly", "TailJob"]);

    // The sparkline's newest runs: newest first, durations as the database computes them;
    // none for a run still going.
    let mut busy = logger.start("Busy").await.unwrap();
    busy.processing().await.unwrap();
    let summaries = logger.job_summaries_with(3).await.unwrap();
    let nightly = summaries.iter().find(|s| s.job == "Nightly").unwrap();
    let last = nightly.last_run.as_ref().unwrap();
    let recent: Vec<(i64, RunStatus)> = nightly.recent.iter().map(|r| (r.id, r.status)).collect();
    assert_eq!(
        recent,
        [
            (last.id, RunStatus::Error),
            (ids[2], RunStatus::Success),
            (ids[1], RunStatus::Success)
        ]
    );
    assert_eq!(nightly.recent[1].duration, Some(Duration::from_secs(30)));
    assert_eq!(nightly.recent[2].duration, Some(Duration::from_secs(20)));
    // The error run's own timestamps; SQLite computes durations to the millisecond.
    let want = last.duration().unwrap();
    let got = nightly.recent[0].duration.expect("a finished run has a duration");
    assert!(
        got.abs_diff(want) < Duration::from_millis(1),
        "{:?}: the database says {got:?}, the row's timestamps {want:?}",
        db.backend
    );
    let busy_summary = summaries.iter().find(|s| s.job == "Busy").unwrap();
    assert_eq!(busy_summary.recent.len(), 1);
    assert_eq!(busy_summary.recent[0].status, RunStatus::Processing);
    assert_eq!(
        busy_summary.recent[0].duration, None,
        "a run still going has no duration"
    );
    busy.success().await.unwrap();
}

pub(crate) async fn shares_a_host_connection(db: TestDb) {
    // A host application hands joblog its own connection.
    let host_conn = db.fresh().await;
    let logger = JobLogger::new(host_conn.clone());
    logger.migrate().await.unwrap();
    let run = logger.start("HostJob").await.unwrap();
    let id = run.id();
    run.success().await.unwrap();
    let (status, _) = status_and_messages(&host_conn, id).await;
    assert_eq!(status, RunStatus::Success.code());
    assert_eq!(
        logger.db().get_database_backend(),
        host_conn.get_database_backend()
    );
}

pub(crate) async fn tracing_events_become_details(db: TestDb) {
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;
    let logger = db.logger().await;
    let subscriber = tracing_subscriber::registry().with(logger.tracing_layer());
    let _default = tracing::subscriber::set_default(subscriber);
    tracing::info!("outside any run: not recorded");
    let run = logger.start("TracedJob").await.unwrap();
    async {
        tracing::info!(rows = 3, "fetched");
        tracing::debug!("too fine: not recorded");
        let inner = tracing::info_span!("batch", n = 1);
        async { tracing::error!(code = "E42", "batch failed") }
            .instrument(inner)
            .await;
    }
    .instrument(run.span())
    .await;
    let id = run.id();
    run.success().await.unwrap();
    let details = logger.details(id, None, 10).await.unwrap();
    let got: Vec<(Level, &str)> = details.iter().map(|d| (d.level, d.message.as_str())).collect();
    assert_eq!(
        got,
        [
            (Level::Info, "Job started - TracedJob"),
            (Level::Info, "fetched rows=3"),
            (Level::Error, "batch failed code=E42"),
        ]
    );
}

pub(crate) async fn locked_database_is_waited_out_within_the_bound(db: TestDb) {
    let logger = db
        .logger_with(JobLogger::builder().durability_timeout(Duration::from_millis(300)))
        .await;
    let locker = db.fresh().await; // one connection: lock and unlock happen on it
    let mut run = logger.start("LockedJob").await.unwrap();
    run.processing().await.unwrap();
    logger.flush().await.unwrap();
    let (lock, unlock) = match db.backend {
        Backend::Postgres => (
            "BEGIN; LOCK TABLE job_log_details IN ACCESS EXCLUSIVE MODE",
            "COMMIT",
        ),
        Backend::MySql => ("LOCK TABLES job_log_details WRITE", "UNLOCK TABLES"),
        Backend::SqliteFile | Backend::SqliteMemory => ("BEGIN EXCLUSIVE", "COMMIT"),
    };
    for stmt in lock.split("; ") {
        exec(&locker, stmt).await;
    }
    let t = std::time::Instant::now();
    run.detail("while locked");
    let id = run.id();
    let err = run
        .success()
        .await
        .expect_err("not durable while the table is locked");
    assert!(matches!(err, joblog::Error::Write(_)), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "success() waited {:?} despite a 300 ms bound",
        t.elapsed()
    );
    exec(&locker, unlock).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while let Err(e) = logger.flush().await {
        assert!(std::time::Instant::now() < deadline, "never recovered: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, details) = status_and_messages(&db.fresh().await, id).await;
    assert_eq!(status, RunStatus::Success.code());
    assert_eq!(details.last().unwrap().1, "while locked");
}

pub(crate) async fn a_taken_name_gets_the_first_free_suffix(db: TestDb) {
    let logger = db.logger().await;
    let conn = db.fresh().await;
    // Take base, _1 and _3 of the next few seconds, so whichever second start() lands
    // in, it finds base and _1 taken and _2 free.
    let now = chrono::Utc::now();
    let ts = if matches!(db.backend, Backend::SqliteFile | Backend::SqliteMemory) {
        "'2026-01-01T00:00:00+00:00'"
    } else {
        "'2026-01-01 00:00:00'"
    };
    for s in 0..4 {
        let base = (now + chrono::Duration::seconds(s))
            .format("%Y%m%d_%H%M%S")
            .to_string();
        for name in [base.clone(), format!("{base}_1"), format!("{base}_3")] {
            exec(
                &conn,
                &format!(
                    "INSERT INTO job_logs (name, job, status, created_at, updated_at) VALUES ('{name}', 'Taken', 2, {ts}, {ts})"
                ),
            )
            .await;
        }
    }
    let run = logger.start("Job").await.unwrap();
    assert!(run.name().ends_with("_2"), "{}", run.name());
    run.success().await.unwrap();
}

pub(crate) async fn dropped_connections_are_survived(db: TestDb) {
    let kill_all = match db.backend {
        Backend::Postgres => {
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        }
        Backend::MySql => "",
        Backend::SqliteFile | Backend::SqliteMemory => {
            eprintln!("not applicable to SQLite: there is no server connection to drop");
            return;
        }
    };
    let logger = db.logger().await;
    let killer = db.fresh().await;
    let mut run = logger.start("ConnectionLossJob").await.unwrap();
    run.processing().await.unwrap();
    run.detail("before");
    logger.flush().await.unwrap();
    let killed = if db.backend == Backend::MySql {
        let ids = rows(
            &killer,
            "SELECT id FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()",
        )
        .await;
        for r in &ids {
            let id: i64 = r.try_get_by_index(0).unwrap();
            exec(&killer, &format!("KILL {id}")).await;
        }
        ids.len()
    } else {
        rows(&killer, kill_all).await.len()
    };
    assert!(killed > 0, "the logger's connections were found and killed");
    run.detail("after");
    let id = run.id();
    run.success().await.expect("the writer reconnects and retries");
    let (status, details) = status_and_messages(&killer, id).await;
    assert_eq!(status, RunStatus::Success.code());
    let messages: Vec<&str> = details.iter().map(|d| d.1.as_str()).collect();
    assert_eq!(messages, ["Job started - ConnectionLossJob", "before", "after"]);
    // The query side reconnects too.
    assert!(logger.get_run(id).await.unwrap().is_some());
}

pub(crate) async fn bad_rows_never_block_other_runs(db: TestDb) {
    let logger = db.logger().await;
    let conn = db.fresh().await;
    // A NUL byte (PostgreSQL text refuses it) and a 100 KB line (over MySQL's TEXT).
    let run = logger.start("OddDataJob").await.unwrap();
    run.detail("before\0after");
    run.detail("x".repeat(100_000));
    let id = run.id();
    run.error(&format!("{}\0", "e".repeat(70_000))).await.unwrap();
    let details = logger.details(id, None, 10).await.unwrap();
    assert_eq!(details[1].message, "before\u{FFFD}after");
    assert!(
        details[2].message.len() <= 32 * 1024
            && details[2].message.ends_with("[truncated: 100000 bytes in all]")
    );
    assert!(details[3].message.ends_with("[truncated: 70003 bytes in all]"));
    assert_eq!(
        logger.get_run(id).await.unwrap().unwrap().status,
        RunStatus::Error
    );

    // A run deleted under its guard: its rows are refused (foreign key), set aside, and
    // counted; another run's rows in the same batches are written.
    let gone = logger.start("DeletedJob").await.unwrap();
    let other = logger.start("OtherJob").await.unwrap();
    let (gone_id, other_id) = (gone.id(), other.id());
    exec(
        logger.db(),
        &format!("DELETE FROM job_log_details WHERE job_log_id = {gone_id}"),
    )
    .await;
    exec(logger.db(), &format!("DELETE FROM job_logs WHERE id = {gone_id}")).await;
    gone.detail("into the void");
    other.detail("kept");
    let err = gone.success().await.unwrap_err();
    assert!(
        matches!(err, joblog::Error::RunNotFound(id) if id == gone_id),
        "{err}"
    );
    other.success().await.expect("other runs are not blocked");
    let (status, details) = status_and_messages(&conn, other_id).await;
    assert_eq!(status, RunStatus::Success.code());
    assert_eq!(details.last().unwrap().1, "kept");
    logger.flush().await.expect("nothing is left stuck in the writer");
}

pub(crate) async fn heartbeats_go_on_under_a_stream_of_details(db: TestDb) {
    let logger = db
        .logger_with(JobLogger::builder().heartbeat_interval(Duration::from_millis(100)))
        .await;
    let mut run = logger.start("ChattyJob").await.unwrap();
    run.processing().await.unwrap();
    let handle = run.handle();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let chatter = tokio::spawn(async move {
        let mut i = 0u64;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            for _ in 0..200 {
                handle.detail(format!("line {i} {}", "y".repeat(200)));
                i += 1;
            }
            tokio::task::yield_now().await;
        }
        i
    });
    // The flood lasts 4 s; a reaper with a 3 s threshold finds the run only if heartbeats
    // stopped for most of it (a 1 s threshold failed once on a loaded 2-core machine).
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    let other_host = db.logger().await;
    let reaped = other_host.reap_stale(Duration::from_millis(3_000)).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let lines = chatter.await.unwrap();
    assert!(
        reaped.is_empty(),
        "a live, busy run was reaped after {lines} lines"
    );
    run.success().await.unwrap();
}

pub(crate) async fn migrations_survive_races_and_half_done_runs(db: TestDb) {
    // Four processes (separate pools) migrate a fresh database at once.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            let logger = JobLogger::connect(&url).await.unwrap();
            logger.migrate().await
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("concurrent migrate");
    }
    let logger = db.logger().await;
    // A migration cut short (MySQL's DDL is not transactional): the history row is gone
    // and so is one table, the rest exists. migrate() completes it.
    exec(logger.db(), "DROP TABLE job_log_details").await;
    exec(logger.db(), "DELETE FROM joblog_migrations").await;
    logger
        .migrate()
        .await
        .expect("migrate after a half-done migration");
    let run = logger.start("AfterRepair").await.unwrap();
    run.success().await.unwrap();
    assert_eq!(
        rows(&db.fresh().await, "SELECT version FROM joblog_migrations")
            .await
            .len(),
        JoblogMigrator::migrations().len()
    );
}

pub(crate) async fn tracing_layer_works_under_a_warn_filter(db: TestDb) {
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;
    let logger = db.logger().await;
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::WARN)
        .with(logger.tracing_layer());
    let _default = tracing::subscriber::set_default(subscriber);
    let run = logger.start("FilteredJob").await.unwrap();
    async {
        tracing::info!("filtered out by the subscriber");
        tracing::warn!("kept");
    }
    .instrument(run.span())
    .await;
    let id = run.id();
    run.success().await.unwrap();
    let messages: Vec<String> = logger
        .details(id, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.message)
        .collect();
    assert_eq!(messages, ["Job started - FilteredJob", "kept"]);
}

pub(crate) async fn extreme_inputs_do_not_panic(db: TestDb) {
    let logger = db.logger().await;
    let run = logger.start("EdgeJob").await.unwrap();
    let id = run.id();
    run.success().await.unwrap();
    assert!(logger.reap_stale(Duration::MAX).await.unwrap().is_empty());
    let stats = logger
        .prune(&PruneOptions {
            older_than: Some(Duration::MAX),
            keep_last: None,
        })
        .await
        .unwrap();
    assert_eq!(stats.runs, 0);
    let f = RunFilter::default();
    let page = logger.list_runs(&f, Cursor::After(i64::MAX), 25).await.unwrap();
    assert!(page.runs.is_empty());
    let page = logger.list_runs(&f, Cursor::Before(i64::MIN), 25).await.unwrap();
    assert!(page.runs.is_empty());
    // An empty page below the oldest run still leads back to the newer runs.
    let page = logger.list_runs(&f, Cursor::Before(id), 25).await.unwrap();
    assert!(page.runs.is_empty());
    let back = logger
        .list_runs(&f, page.newer.expect("a way back"), 25)
        .await
        .unwrap();
    assert_eq!(back.runs[0].run.id, id);
    assert!(logger.get_run(i64::MAX).await.unwrap().is_none());
    assert!(
        logger
            .details(i64::MIN, Some(i64::MAX), u64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    // processing() of a run deleted behind its back says so.
    let mut run = logger.start("EdgeJob").await.unwrap();
    exec(
        logger.db(),
        &format!("DELETE FROM job_log_details WHERE job_log_id = {}", run.id()),
    )
    .await;
    exec(
        logger.db(),
        &format!("DELETE FROM job_logs WHERE id = {}", run.id()),
    )
    .await;
    assert!(matches!(
        run.processing().await,
        Err(joblog::Error::RunNotFound(_))
    ));
    drop(run);
    logger.flush().await.unwrap();
}

// ---- what the writer stores, and in which transaction -----------------------------------

/// The logger's writer held inside a write: `job_log_details` is locked from a connection
/// of its own, so everything queued until [`WriterHold::release`] goes into the writer's
/// next write, together.
struct WriterHold {
    locker: sea_orm::DatabaseConnection,
    unlock: &'static str,
}

impl WriterHold {
    /// Locks the table, calls `send` (which must queue something), and returns once the
    /// writer waits on the lock. `None` on SQLite, where that wait cannot be seen.
    async fn new(db: &TestDb, send: impl FnOnce()) -> Option<WriterHold> {
        let (lock, unlock, waiting): (&[&str], _, _) = match db.backend {
            Backend::Postgres => (
                &["BEGIN", "LOCK TABLE job_log_details IN ACCESS EXCLUSIVE MODE"],
                "COMMIT",
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            ),
            Backend::MySql => (
                &["LOCK TABLES job_log_details WRITE"],
                "UNLOCK TABLES",
                "SELECT COUNT(*) FROM information_schema.processlist \
                 WHERE db = DATABASE() AND state LIKE 'Waiting for table%'",
            ),
            Backend::SqliteFile | Backend::SqliteMemory => return None,
        };
        let locker = db.fresh().await; // one connection: lock and unlock happen on it
        let watcher = db.fresh().await;
        for sql in lock {
            exec(&locker, sql).await;
        }
        send();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let n: i64 = rows(&watcher, waiting).await[0].try_get_by_index(0).unwrap();
            if n > 0 {
                return Some(WriterHold { locker, unlock });
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never waited on the lock"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn release(self) {
        exec(&self.locker, self.unlock).await;
    }
}

/// The start of a long message, for assertion messages.
fn short(message: &str) -> String {
    message.chars().take(80).collect()
}

pub(crate) async fn awkward_messages_round_trip_exactly(db: TestDb) {
    // Every byte COPY's text format treats specially (PostgreSQL's writer streams details
    // that way), and what the other backends might mangle, read back through a fresh
    // connection exactly as written.
    let logger = db.logger().await;
    let unit = "tab\t nl\n cr\r crlf\r\n bs\\ \\N \\t é 漢字 😀 ";
    let long = unit.repeat((32 * 1024 - 100) / unit.len());
    let messages: Vec<String> = [
        "tab\there",
        "line one\nline two\n",
        "carriage\rreturn\r\n",
        "back\\slash and a trailing one\\",
        "\\",
        "\\N",
        "\\.",
        "\\.\n\\.",
        "\t",
        "\n",
        "",
        "  leading and trailing spaces  ",
        "\\t \\n \\r \\\\ \\x41 \\101 (escapes spelled out, not meant)",
        "quotes ' \" ` , ; | and a percent % and an underscore _",
        "unicode: é ß Ω 漢字 😀 e\u{301} \u{202e}rtl\u{202c} \u{feff}bom \u{fffd}",
        "controls: \u{7} \u{8} \u{b} \u{c} \u{1b}[31mred\u{1b}[0m \u{7f}",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([long.clone()])
    .collect();
    let error = format!("failed:\tsee\nbelow\\ {long}");
    assert!(error.len() < 32 * 1024, "below the cap: nothing is cut");

    let before = chrono::Utc::now();
    let mut run = logger.start("AwkwardJob").await.unwrap();
    run.processing().await.unwrap();
    // Where the writer can be held, every message goes into the write that ends the run.
    let hold = WriterHold::new(&db, || run.detail("held")).await;
    for (i, m) in messages.iter().enumerate() {
        if i % 2 == 0 {
            run.detail(m.clone());
        } else {
            run.warn(m.clone());
        }
    }
    let id = run.id();
    let (done, ()) = tokio::join!(run.error(&error), async {
        if let Some(hold) = hold {
            hold.release().await;
        }
    });
    done.unwrap();
    let after = chrono::Utc::now();

    let conn = db.fresh().await;
    let (status, details) = status_and_messages(&conn, id).await;
    assert_eq!(status, RunStatus::Error.code());
    let mut expected = vec![("info".to_owned(), "Job started - AwkwardJob".to_owned())];
    if matches!(db.backend, Backend::Postgres | Backend::MySql) {
        expected.push(("info".to_owned(), "held".to_owned()));
    }
    for (i, m) in messages.iter().enumerate() {
        let level = if i % 2 == 0 { "info" } else { "warn" };
        expected.push((level.to_owned(), m.clone()));
    }
    expected.push(("error".to_owned(), error.clone()));
    assert_eq!(details.len(), expected.len());
    for (i, (got, want)) in details.iter().zip(&expected).enumerate() {
        assert!(
            got == want,
            "detail {i} came back changed: {:?} read back as {:?}",
            short(&want.1),
            short(&got.1)
        );
    }
    let stored: Option<String> = rows(&conn, &format!("SELECT error FROM job_logs WHERE id = {id}")).await[0]
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(stored.as_deref(), Some(error.as_str()));
    // Timestamps: in UTC, to the microsecond (the databases keep microseconds).
    let earliest = before - chrono::Duration::microseconds(1);
    for d in logger.details(id, None, 100).await.unwrap() {
        assert!(
            earliest <= d.created_at && d.created_at <= after,
            "detail {} written at {} outside {before} ..= {after}",
            d.id,
            d.created_at
        );
    }
    if db.backend == Backend::Postgres {
        // One transaction wrote every message and the status change (the row versions
        // share their xmin): no row went in on its own, as the writer's row-by-row
        // salvage would have written them had COPY refused the batch.
        let together: Vec<String> = rows(
            &conn,
            &format!(
                "SELECT d.message FROM job_log_details d JOIN job_logs r ON r.id = d.job_log_id \
                 WHERE r.id = {id} AND d.xmin::text = r.xmin::text ORDER BY d.id"
            ),
        )
        .await
        .iter()
        .map(|r| r.try_get_by_index(0).unwrap())
        .collect();
        let want: Vec<&String> = messages.iter().chain([&error]).collect();
        assert!(
            together.iter().eq(want.iter().copied()),
            "{} of the {} messages were written with the status change",
            together.len(),
            want.len()
        );
    }
}

pub(crate) async fn a_refused_status_change_takes_its_details_with_it(db: TestDb) {
    // The writer stores a run's details and its status change in one transaction: when
    // the status change fails, the details it carried are not committed either, and the
    // retry writes them once.
    let (refuse, allow): (&[&str], &[&str]) = match db.backend {
        Backend::Postgres => (
            &[
                "CREATE FUNCTION jl_refuse_error() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
                "CREATE TRIGGER jl_refuse_error BEFORE UPDATE ON job_logs FOR EACH ROW \
                 WHEN (NEW.status = 3) EXECUTE FUNCTION jl_refuse_error()",
            ],
            &[
                "DROP TRIGGER jl_refuse_error ON job_logs",
                "DROP FUNCTION jl_refuse_error()",
            ],
        ),
        Backend::MySql => (
            &[
                "CREATE TRIGGER jl_refuse_error BEFORE UPDATE ON job_logs FOR EACH ROW \
               BEGIN IF NEW.status = 3 THEN \
               SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the test'; \
               END IF; END",
            ],
            &["DROP TRIGGER jl_refuse_error"],
        ),
        Backend::SqliteFile | Backend::SqliteMemory => {
            eprintln!(
                "not applicable to SQLite: RAISE() in a trigger is a constraint error there, \
                 which the writer answers by salvaging row by row (details committed alone)"
            );
            return;
        }
    };
    let logger = db.logger().await;
    let conn = db.fresh().await;
    let mut run = logger.start("RefusedJob").await.unwrap();
    run.processing().await.unwrap();
    run.detail("before");
    logger.flush().await.unwrap();
    for sql in refuse {
        exec(&conn, sql).await;
    }
    // error() queues its message as the run's last detail right before the status
    // change: both are always in the same write.
    let id = run.id();
    let err = run.error("boom").await.expect_err("the status change is refused");
    assert!(matches!(err, joblog::Error::Write(_)), "{err}");
    let (status, details) = status_and_messages(&conn, id).await;
    assert_eq!(
        status,
        RunStatus::Processing.code(),
        "the status change was refused"
    );
    let messages: Vec<&str> = details.iter().map(|d| d.1.as_str()).collect();
    assert_eq!(
        messages,
        ["Job started - RefusedJob", "before"],
        "the refused status change's details stay out"
    );

    for sql in allow {
        exec(&conn, sql).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Err(e) = logger.flush().await {
        assert!(std::time::Instant::now() < deadline, "never recovered: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, details) = status_and_messages(&conn, id).await;
    assert_eq!(status, RunStatus::Error.code());
    let messages: Vec<&str> = details.iter().map(|d| d.1.as_str()).collect();
    assert_eq!(messages, ["Job started - RefusedJob", "before", "boom"]);
}

pub(crate) async fn a_refused_row_spares_the_rest_of_its_batch(db: TestDb) {
    // A detail of a deleted run (a foreign key violation) and another run's details and
    // status change, all in one write: the write fails, the writer salvages row by row,
    // and the other run's rows are kept.
    let logger = db.logger().await;
    let conn = db.fresh().await;
    let gone = logger.start("DeletedJob").await.unwrap();
    let kept = logger.start("KeptJob").await.unwrap();
    let (gone_id, kept_id) = (gone.id(), kept.id());
    logger.flush().await.unwrap();
    exec(&conn, &format!("DELETE FROM job_logs WHERE id = {gone_id}")).await;
    let Some(hold) = WriterHold::new(&db, || kept.detail("first, while held")).await else {
        eprintln!(
            "not applicable to SQLite: the writer cannot be held visibly \
             (bad_rows_never_block_other_runs covers the salvage there)"
        );
        return;
    };
    gone.detail("into the void");
    kept.detail("kept");
    kept.warn("kept too");
    let (gone_done, kept_done, ()) = tokio::join!(gone.success(), kept.success(), hold.release());
    assert!(
        matches!(gone_done, Err(joblog::Error::RunNotFound(id)) if id == gone_id),
        "{gone_done:?}"
    );
    kept_done.expect("the other run is not blocked");
    let (status, details) = status_and_messages(&conn, kept_id).await;
    assert_eq!(status, RunStatus::Success.code());
    let messages: Vec<&str> = details.iter().map(|d| d.1.as_str()).collect();
    assert_eq!(
        messages,
        ["Job started - KeptJob", "first, while held", "kept", "kept too"]
    );
    let left: i64 = rows(
        &conn,
        &format!("SELECT COUNT(*) FROM job_log_details WHERE job_log_id = {gone_id}"),
    )
    .await[0]
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(left, 0);
    logger.flush().await.expect("nothing is left stuck in the writer");
}
