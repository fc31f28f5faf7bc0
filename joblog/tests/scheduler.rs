//! The scheduler on real databases: no overlap in one process and across instances
//! (PostgreSQL, MariaDB, one SQLite file), lease takeover, run now / pause / resume,
//! missed runs, shutdown. Assertions are about correctness only; waits have generous
//! hang guards.

#[path = "suite/common.rs"]
#[allow(dead_code, unused_imports, unused_macros)]
mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{TestDb, rows};
use joblog::scheduler::{JobOptions, Schedule, Scheduler, Tz};
use joblog::{JobLogger, RunHandle, RunStatus};
use sea_orm::DatabaseConnection;

/// Counts executions going on at once and remembers the highest count.
#[derive(Debug, Default)]
struct Overlap {
    now: AtomicUsize,
    max: AtomicUsize,
    total: AtomicUsize,
}

impl Overlap {
    async fn body(&self, work: Duration) -> Result<(), anyhow::Error> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(work).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "hang guard: {what} not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn instance(db: &TestDb, host: &str) -> JobLogger {
    db.logger_with(JobLogger::builder().host(host)).await
}

/// A recorded run: (host, started_at, finished_at, status).
type Run = (String, DateTime<Utc>, Option<DateTime<Utc>>, i16);

/// Runs of `job`, oldest first.
async fn runs(conn: &DatabaseConnection, job: &str) -> Vec<Run> {
    rows(
        conn,
        &format!(
            "SELECT host, started_at, finished_at, status FROM job_logs WHERE job = '{job}' ORDER BY id"
        ),
    )
    .await
    .iter()
    .map(|r| {
        (
            r.try_get_by_index(0).unwrap(),
            r.try_get_by_index::<Option<DateTime<Utc>>>(1)
                .unwrap()
                .expect("started"),
            r.try_get_by_index(2).unwrap(),
            r.try_get_by_index(3).unwrap(),
        )
    })
    .collect()
}

fn assert_no_overlap(runs: &[Run]) {
    let mut spans: Vec<_> = runs
        .iter()
        .map(|(_, s, f, _)| (*s, f.expect("finished")))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "runs overlap: {:?} ends after {:?} starts",
            pair[0],
            pair[1]
        );
    }
}

async fn record(logger: &JobLogger, job: &str) -> joblog::scheduler::ScheduleRecord {
    logger
        .scheduled_jobs()
        .schedules()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.job == job)
        .expect("the job's row")
}

fn scheduler_on(logger: &JobLogger, lease: Duration) -> joblog::scheduler::SchedulerBuilder {
    Scheduler::builder(logger.clone())
        .lease(lease)
        .poll_interval(Duration::from_millis(50))
}

fn overlap_job(
    b: joblog::scheduler::SchedulerBuilder,
    job: &str,
    every: Duration,
    work: Duration,
    seen: &Arc<Overlap>,
) -> joblog::scheduler::SchedulerBuilder {
    let seen = seen.clone();
    b.job_with(
        job,
        Schedule::every(every),
        JobOptions::default().run_at_start(true),
        move |_run: RunHandle| {
            let seen = seen.clone();
            async move { seen.body(work).await }
        },
    )
}

// ---------------------------------------------------------------- cases

async fn one_process_never_overlaps_and_counts_skips(db: TestDb) {
    let logger = db.logger().await;
    let seen = Arc::new(Overlap::default());
    let b = scheduler_on(&logger, Duration::from_secs(3));
    let handle = overlap_job(
        b,
        "Slow",
        Duration::from_millis(200),
        Duration::from_millis(500),
        &seen,
    )
    .build()
    .start()
    .await
    .unwrap();
    wait_until("three runs", Duration::from_secs(30), || {
        let seen = seen.clone();
        async move { seen.total.load(Ordering::SeqCst) >= 3 }
    })
    .await;
    handle.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        seen.max.load(Ordering::SeqCst),
        1,
        "one job never runs twice at once"
    );
    let rec = record(&logger, "Slow").await;
    assert!(
        rec.skipped_count >= 1,
        "skipped occurrences are recorded: {rec:?}"
    );
    assert!(rec.last_skipped_at.is_some());
    assert_eq!(rec.last_status, Some(RunStatus::Success));
    assert!(rec.lease_owner.is_none(), "shutdown released the lease");
    assert!(!rec.running);
    let conn = db.fresh().await;
    let runs = runs(&conn, "Slow").await;
    assert_eq!(runs.len(), seen.total.load(Ordering::SeqCst));
    assert_no_overlap(&runs);
    assert!(rec.last_run_id.is_some());
}

async fn two_instances_never_overlap(db: TestDb) {
    let a = instance(&db, "instance-a").await;
    let b = instance(&db, "instance-b").await;
    let seen = Arc::new(Overlap::default());
    let every = Duration::from_millis(300);
    let work = Duration::from_millis(120);
    let ha = overlap_job(
        scheduler_on(&a, Duration::from_secs(3)),
        "Shared",
        every,
        work,
        &seen,
    )
    .build()
    .start()
    .await
    .unwrap();
    let hb = overlap_job(
        scheduler_on(&b, Duration::from_secs(3)),
        "Shared",
        every,
        work,
        &seen,
    )
    .build()
    .start()
    .await
    .unwrap();
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    ha.shutdown(Duration::from_secs(10)).await.unwrap();
    hb.shutdown(Duration::from_secs(10)).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(seen.max.load(Ordering::SeqCst), 1, "no overlap across instances");
    let conn = db.fresh().await;
    let runs = runs(&conn, "Shared").await;
    assert_no_overlap(&runs);
    let total = runs.len();
    let a_runs = runs.iter().filter(|r| r.0 == "instance-a").count();
    eprintln!("{total} runs, {a_runs} by instance-a, in {elapsed:?}");
    // One run per due time at most (plus the start-up one), and not stuck.
    let most = (elapsed.as_millis() / every.as_millis()) as usize + 2;
    assert!(total <= most, "{total} runs > {most}: a due time ran twice");
    assert!(total >= 3, "the job kept running: {total}");
    assert!(runs.iter().all(|r| r.3 == RunStatus::Success.code()));
}

async fn run_now_pause_resume_across_instances(db: TestDb) {
    let a = instance(&db, "instance-a").await;
    let b = instance(&db, "instance-b").await;
    let count = Arc::new(AtomicUsize::new(0));
    let build = |logger: &JobLogger, job: &str, every: Duration| {
        let count = count.clone();
        scheduler_on(logger, Duration::from_secs(3)).job(job, Schedule::every(every), move |_run| {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                Ok::<_, anyhow::Error>(())
            }
        })
    };
    // Run now: a job that is never due by itself runs exactly once per request.
    let ha = build(&a, "Manual", Duration::from_secs(3600))
        .build()
        .start()
        .await
        .unwrap();
    let hb = build(&b, "Manual", Duration::from_secs(3600))
        .build()
        .start()
        .await
        .unwrap();
    assert!(b.scheduled_jobs().run_now("Manual").await.unwrap());
    assert!(!b.scheduled_jobs().run_now("NoSuchJob").await.unwrap());
    wait_until("the requested run", Duration::from_secs(20), || {
        let count = count.clone();
        async move { count.load(Ordering::SeqCst) >= 1 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(count.load(Ordering::SeqCst), 1, "run now runs exactly once");
    assert!(a.scheduled_jobs().run_now("Manual").await.unwrap());
    wait_until("the second requested run", Duration::from_secs(20), || {
        let count = count.clone();
        async move { count.load(Ordering::SeqCst) >= 2 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(count.load(Ordering::SeqCst), 2);
    let conn = db.fresh().await;
    assert_eq!(runs(&conn, "Manual").await.len(), 2);
    ha.shutdown(Duration::from_secs(5)).await.unwrap();
    hb.shutdown(Duration::from_secs(5)).await.unwrap();

    // Pause stops both instances; resume runs at most one catch-up.
    count.store(0, Ordering::SeqCst);
    let every = Duration::from_secs(1);
    let ha = build(&a, "Pausable", every).build().start().await.unwrap();
    let hb = build(&b, "Pausable", every).build().start().await.unwrap();
    wait_until("a regular run", Duration::from_secs(20), || {
        let count = count.clone();
        async move { count.load(Ordering::SeqCst) >= 1 }
    })
    .await;
    assert!(a.scheduled_jobs().pause("Pausable").await.unwrap());
    assert!(
        b.scheduled_jobs().pause("Pausable").await.unwrap(),
        "pausing twice is fine"
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // a run going on finishes
    let paused_at = count.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(4500)).await; // four due times pass
    assert_eq!(count.load(Ordering::SeqCst), paused_at, "no run while paused");
    assert!(record(&a, "Pausable").await.paused);
    assert!(a.scheduled_jobs().resume("Pausable").await.unwrap());
    wait_until("the catch-up run", Duration::from_secs(20), || {
        let count = count.clone();
        async move { count.load(Ordering::SeqCst) > paused_at }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = count.load(Ordering::SeqCst) - paused_at;
    // The catch-up, plus at most the one regular due time that may fall in the window;
    // a burst would be four or more.
    assert!(after <= 2, "{after} runs right after resume: a burst");
    let rec = record(&b, "Pausable").await;
    assert!(!rec.paused);
    ha.shutdown(Duration::from_secs(5)).await.unwrap();
    hb.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_no_overlap(&runs(&conn, "Pausable").await);
}

async fn dead_holder_is_taken_over_after_the_lease(db: TestDb) {
    let a = instance(&db, "instance-a").await;
    let b = instance(&db, "instance-b").await;
    let lease = Duration::from_secs(1);
    let a_started = Arc::new(AtomicUsize::new(0));
    let a_seen = a_started.clone();
    let ha = scheduler_on(&a, lease)
        .job_with(
            "Takeover",
            Schedule::every(Duration::from_millis(200)),
            JobOptions::default().run_at_start(true),
            move |_run| {
                let a_seen = a_seen.clone();
                async move {
                    a_seen.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    Ok::<_, anyhow::Error>(())
                }
            },
        )
        .build()
        .start()
        .await
        .unwrap();
    wait_until("instance a holds the lease", Duration::from_secs(20), || {
        let a_started = a_started.clone();
        async move { a_started.load(Ordering::SeqCst) == 1 }
    })
    .await;
    let owner_a = ha.owner().to_owned();
    assert_eq!(
        record(&b, "Takeover").await.lease_owner.as_deref(),
        Some(owner_a.as_str())
    );
    // A crash: the tasks stop, the lease is neither renewed nor released.
    ha.abort();
    let b_ran = Arc::new(AtomicUsize::new(0));
    let b_seen = b_ran.clone();
    let hb = scheduler_on(&b, lease)
        .job(
            "Takeover",
            Schedule::every(Duration::from_millis(200)),
            move |_run| {
                let b_seen = b_seen.clone();
                async move {
                    b_seen.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, anyhow::Error>(())
                }
            },
        )
        .build()
        .start()
        .await
        .unwrap();
    wait_until("instance b takes over", Duration::from_secs(30), || {
        let b_ran = b_ran.clone();
        async move { b_ran.load(Ordering::SeqCst) >= 1 }
    })
    .await;
    hb.shutdown(Duration::from_secs(5)).await.unwrap();
    a.flush().await.unwrap();
    let conn = db.fresh().await;
    let runs = runs(&conn, "Takeover").await;
    assert_eq!(runs[0].0, "instance-a");
    assert!(runs.iter().skip(1).all(|r| r.0 == "instance-b"));
    assert_eq!(a_started.load(Ordering::SeqCst), 1, "the dead holder ran once");
}

async fn shutdown_cancels_after_the_grace(db: TestDb) {
    let logger = db.logger().await;
    let started = Arc::new(AtomicUsize::new(0));
    let seen = started.clone();
    let handle = scheduler_on(&logger, Duration::from_secs(3))
        .job_with(
            "Stuck",
            Schedule::every(Duration::from_secs(3600)),
            JobOptions::default().run_at_start(true),
            move |run: RunHandle| {
                let seen = seen.clone();
                async move {
                    run.detail("waiting forever");
                    seen.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    Ok::<_, anyhow::Error>(())
                }
            },
        )
        .build()
        .start()
        .await
        .unwrap();
    wait_until("the run", Duration::from_secs(20), || {
        let started = started.clone();
        async move { started.load(Ordering::SeqCst) == 1 }
    })
    .await;
    tokio::time::timeout(
        Duration::from_secs(60),
        handle.shutdown(Duration::from_millis(300)),
    )
    .await
    .expect("hang guard: shutdown")
    .unwrap();
    let rec = record(&logger, "Stuck").await;
    assert!(rec.lease_owner.is_none(), "the lease is released");
    assert_eq!(rec.last_status, Some(RunStatus::Error));
    let id = rec.last_run_id.expect("the run's id");
    let (status, details) = common::status_and_messages(&db.fresh().await, id).await;
    assert_eq!(status, RunStatus::Error.code());
    assert!(
        details.iter().any(|(_, m)| m.contains("cancelled")),
        "the cancellation is recorded: {details:?}"
    );
}

async fn missed_runs_and_overdue(db: TestDb) {
    let logger = db.logger().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let handle = scheduler_on(&logger, Duration::from_secs(3))
        .job_with(
            "Flaky",
            Schedule::every(Duration::from_millis(200)),
            JobOptions::default().run_at_start(true),
            move |_run| {
                let seen = seen.clone();
                async move {
                    if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                        Ok(())
                    } else {
                        Err(anyhow::anyhow!("source down").context("sync failed"))
                    }
                }
            },
        )
        .build()
        .start()
        .await
        .unwrap();
    wait_until("several failed runs", Duration::from_secs(30), || {
        let calls = calls.clone();
        async move { calls.load(Ordering::SeqCst) >= 5 }
    })
    .await;
    handle.shutdown(Duration::from_secs(5)).await.unwrap();
    let rec = record(&logger, "Flaky").await;
    assert_eq!(rec.last_status, Some(RunStatus::Error));
    assert!(rec.last_success_at.is_some());
    assert_eq!(rec.interval, Some(Duration::from_millis(200)));
    assert!(rec.missed >= 3, "missed since the last success: {rec:?}");
    assert!(rec.overdue, "no success for more than 2 intervals");
    assert_eq!(rec.description.as_deref(), Some("every 200 milliseconds"));
    let last = rec.last_run_id.unwrap();
    let (_, details) = common::status_and_messages(&db.fresh().await, last).await;
    assert!(
        details.iter().any(|(_, m)| m == "sync failed: source down"),
        "{details:?}"
    );
    // A fine job: nothing missed, not overdue.
    let fine = logger.scheduled_jobs().schedules_with(1_000_000).await.unwrap();
    assert!(fine.iter().all(|r| !r.overdue));
}

async fn registration_keeps_paused_and_next_run(db: TestDb) {
    let logger = db.logger().await;
    let noop = |_run: RunHandle| async { Ok::<_, anyhow::Error>(()) };
    let h = scheduler_on(&logger, Duration::from_secs(3))
        .job("Kept", Schedule::every(Duration::from_secs(3600)), noop)
        .build()
        .start()
        .await
        .unwrap();
    let first = record(&logger, "Kept").await;
    assert!(logger.scheduled_jobs().pause("Kept").await.unwrap());
    h.shutdown(Duration::from_secs(1)).await.unwrap();
    let h = scheduler_on(&logger, Duration::from_secs(3))
        .job("Kept", Schedule::every(Duration::from_secs(3600)), noop)
        .build()
        .start()
        .await
        .unwrap();
    let again = record(&logger, "Kept").await;
    assert!(again.paused, "paused survives a restart");
    assert_eq!(again.next_run_at, first.next_run_at, "next_run_at is kept");
    h.shutdown(Duration::from_secs(1)).await.unwrap();
    let h = scheduler_on(&logger, Duration::from_secs(3))
        .job(
            "Kept",
            Schedule::cron("0 3 * * *", Tz::Europe__Berlin).unwrap(),
            noop,
        )
        .build()
        .start()
        .await
        .unwrap();
    let changed = record(&logger, "Kept").await;
    assert_eq!(changed.schedule, "cron 0 3 * * * Europe/Berlin");
    assert!(changed.paused);
    let day = changed.interval.expect("a cron interval").as_secs();
    assert!(
        (23 * 3600..=25 * 3600).contains(&day),
        "a day, give or take DST: {day}"
    );
    h.shutdown(Duration::from_secs(1)).await.unwrap();
    let dup = scheduler_on(&logger, Duration::from_secs(3))
        .job("Dup", Schedule::every(Duration::from_secs(1)), noop)
        .job("Dup", Schedule::every(Duration::from_secs(1)), noop)
        .build()
        .start()
        .await;
    assert!(matches!(dup, Err(joblog::Error::Config(_))));
}

#[test]
fn cron_errors_are_clear_and_schedules_describe_themselves() {
    let err = Schedule::cron("*/5 * * *", Tz::UTC).unwrap_err().to_string();
    assert!(
        err.contains("expected 5 fields") && err.contains("found 4"),
        "{err}"
    );
    let err = Schedule::cron("*/5 * * * * *", Tz::UTC).unwrap_err().to_string();
    assert!(err.contains("found 6"), "{err}");
    let err = Schedule::cron("61 * * * *", Tz::UTC).unwrap_err().to_string();
    assert!(err.contains("invalid cron expression \"61 * * * *\""), "{err}");
    let err = Schedule::cron("0 0 30 2 *", Tz::UTC).unwrap_err().to_string();
    assert!(err.contains("never matches"), "{err}");
    assert_eq!(
        Schedule::every(Duration::from_secs(300)).describe(),
        "every 5 minutes"
    );
    assert_eq!(
        Schedule::every(Duration::from_secs(30)).describe(),
        "every 30 seconds"
    );
    let cron = Schedule::cron("*/5 * * * *", Tz::Europe__Berlin).unwrap();
    assert!(
        cron.describe().starts_with("cron */5 * * * * (Europe/Berlin)"),
        "{}",
        cron.describe()
    );
    eprintln!("{}", cron.describe());
    // Timezone aware: 03:00 in Berlin is not 03:00 UTC.
    let at3 = Schedule::cron("0 3 * * *", Tz::Europe__Berlin).unwrap();
    let next = at3.next_after(Utc::now()).unwrap();
    assert_eq!(
        next.with_timezone(&Tz::Europe__Berlin)
            .format("%H:%M")
            .to_string(),
        "03:00"
    );
}

macro_rules! on_backends {
    ($case:ident: $($backend:ident),*) => {
        mod $case {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[allow(non_snake_case)]
                async fn $backend() {
                    crate::common::run(crate::common::Backend::$backend, crate::$case).await
                }
            )*
        }
    };
}

on_backends!(one_process_never_overlaps_and_counts_skips: SqliteFile, SqliteMemory, Postgres, MySql);
on_backends!(two_instances_never_overlap: SqliteFile, Postgres, MySql);
on_backends!(run_now_pause_resume_across_instances: SqliteFile, Postgres, MySql);
on_backends!(dead_holder_is_taken_over_after_the_lease: SqliteFile, Postgres, MySql);
on_backends!(shutdown_cancels_after_the_grace: SqliteFile, SqliteMemory, Postgres, MySql);
on_backends!(missed_runs_and_overdue: SqliteFile, SqliteMemory, Postgres, MySql);
on_backends!(registration_keeps_paused_and_next_run: SqliteFile, Postgres, MySql);
