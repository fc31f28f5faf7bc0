//! The Prometheus metrics: this process's counts, and the database's values the same on
//! every instance, parsed by the Prometheus project's OpenMetrics parser.

use std::time::Duration;

use joblog::JobLogger;
use joblog::scheduler::{JobOptions, Schedule, Scheduler};
use sea_orm::ConnectionTrait;

use crate::common::{Backend, TestDb, parse_openmetrics, sample};

pub(crate) async fn metrics_count_runs_and_read_the_database(db: TestDb) {
    let logger = db.logger_with(JobLogger::builder().queue_capacity(10)).await;
    // A second instance on the same database: it runs nothing of the jobs below.
    let other = db.logger().await;
    Scheduler::builder(logger.clone())
        .job_with(
            "Every5",
            Schedule::every(Duration::from_secs(300)),
            JobOptions::default().run_at_start(false),
            |_run| async { Ok::<(), String>(()) },
        )
        .build()
        .start()
        .await
        .unwrap()
        .abort();

    let mut run = logger.start("MetricsJob").await.unwrap();
    run.processing().await.unwrap();
    let succeeded = run.id();
    run.success().await.unwrap();
    let run = logger.start("MetricsJob").await.unwrap();
    run.error(&"boom").await.unwrap();
    drop(logger.start("MetricsJob").await.unwrap());
    // 5,000 details into a 10-slot queue: some are dropped at the call site.
    let flood = logger.start("FloodJob").await.unwrap();
    let flood_id = flood.id();
    for i in 0..5_000 {
        flood.detail(format!("line {i}"));
    }
    flood.success().await.unwrap();
    logger.flush().await.unwrap();
    let mut live = other.start("LongJob").await.unwrap();
    live.processing().await.unwrap();
    // The scheduled job: last success 17 minutes ago (3 occurrences of 5 minutes missed
    // since), 3 occurrences skipped.
    let ago = match db.backend {
        Backend::SqliteFile | Backend::SqliteMemory => "strftime('%Y-%m-%d %H:%M:%f', 'now', '-17 minutes')",
        Backend::Postgres => "now() - interval '17 minutes'",
        Backend::MySql => "UTC_TIMESTAMP(6) - INTERVAL 17 MINUTE",
    };
    logger
        .db()
        .execute_unprepared(&format!(
            "UPDATE job_schedules SET last_success_at = {ago}, last_run_at = {ago}, skipped_count = 3 \
             WHERE job = 'Every5'"
        ))
        .await
        .unwrap();

    let mine_text = logger.encode_metrics().await;
    let theirs_text = other.encode_metrics().await;
    let Some(mine) = parse_openmetrics(&mine_text) else {
        return;
    };
    let theirs = parse_openmetrics(&theirs_text).unwrap();

    // This process's counts: only the instance that ran them has them.
    let runs = |s: &[_], job: &str, status: &str| {
        sample(s, "joblog_runs_total", &[("job", job), ("status", status)])
    };
    assert_eq!(runs(&mine, "MetricsJob", "success"), Some(1.0), "{mine_text}");
    assert_eq!(
        runs(&mine, "MetricsJob", "error"),
        Some(2.0),
        "error() and a dropped guard: {mine_text}"
    );
    assert_eq!(runs(&mine, "FloodJob", "success"), Some(1.0));
    assert_eq!(runs(&theirs, "MetricsJob", "success"), None, "{theirs_text}");
    let count = sample(
        &mine,
        "joblog_run_duration_seconds_count",
        &[("job", "MetricsJob")],
    );
    assert_eq!(count, Some(3.0), "{mine_text}");
    let inf = sample(
        &mine,
        "joblog_run_duration_seconds_bucket",
        &[("job", "MetricsJob"), ("le", "+Inf")],
    );
    assert_eq!(inf, Some(3.0));
    // Dropped details: the same number the run's warn detail reports.
    let details = logger.details(flood_id, None, 10_000).await.unwrap();
    let written = details.iter().filter(|d| d.message.starts_with("line ")).count();
    let lost = 5_000 - written;
    assert!(lost > 0, "a 10-slot queue overflowed");
    assert_eq!(
        sample(&mine, "joblog_details_dropped_total", &[]),
        Some(lost as f64),
        "{mine_text}"
    );
    assert_eq!(sample(&theirs, "joblog_details_dropped_total", &[]), Some(0.0));
    assert_eq!(sample(&mine, "joblog_writer_queue_depth", &[]), Some(0.0));

    // The database's values: the same on both instances.
    let record = logger.get_run(succeeded).await.unwrap().expect("the run");
    let finished = record.finished_at.expect("finished").timestamp_micros() as f64 / 1e6;
    for (who, s) in [("the instance that ran it", &mine), ("another instance", &theirs)] {
        assert_eq!(sample(s, "joblog_database_up", &[]), Some(1.0), "{who}");
        let last = sample(
            s,
            "joblog_last_success_timestamp_seconds",
            &[("job", "MetricsJob")],
        )
        .unwrap_or_else(|| panic!("{who}: no last success"));
        assert!((last - finished).abs() < 0.002, "{who}: {last} vs {finished}");
        assert_eq!(
            sample(s, "joblog_runs_running", &[("job", "LongJob")]),
            Some(1.0),
            "{who}"
        );
        assert_eq!(
            sample(s, "joblog_runs_running", &[("job", "MetricsJob")]),
            Some(0.0),
            "{who}"
        );
        assert_eq!(
            sample(s, "joblog_missed_runs", &[("job", "Every5")]),
            Some(3.0),
            "{who}"
        );
        assert_eq!(
            sample(s, "joblog_skipped_runs_total", &[("job", "Every5")]),
            Some(3.0),
            "{who}"
        );
        assert_eq!(
            sample(s, "joblog_schedule_interval_seconds", &[("job", "Every5")]),
            Some(300.0),
            "{who}"
        );
        let every5 = sample(s, "joblog_last_success_timestamp_seconds", &[("job", "Every5")]).unwrap();
        let expected = (chrono::Utc::now() - chrono::Duration::minutes(17)).timestamp() as f64;
        assert!((every5 - expected).abs() < 60.0, "{who}: {every5} vs {expected}");
        // An unscheduled job has no schedule metrics.
        assert_eq!(
            sample(s, "joblog_missed_runs", &[("job", "MetricsJob")]),
            None,
            "{who}"
        );
    }
    live.success().await.unwrap();
    let after = parse_openmetrics(&other.encode_metrics().await).unwrap();
    assert_eq!(
        sample(&after, "joblog_runs_running", &[("job", "LongJob")]),
        Some(0.0)
    );
    assert_eq!(runs(&after, "LongJob", "success"), Some(1.0));
}

/// A database that cannot be read: the process's own values are still served, and
/// `joblog_database_up` says 0.
pub(crate) async fn metrics_survive_a_missing_table(db: TestDb) {
    let logger = db.logger().await;
    let run = logger.start("Before").await.unwrap();
    run.success().await.unwrap();
    logger.flush().await.unwrap();
    logger
        .db()
        .execute_unprepared("ALTER TABLE job_schedules RENAME TO job_schedules_away")
        .await
        .unwrap();
    let text = logger.encode_metrics().await;
    logger
        .db()
        .execute_unprepared("ALTER TABLE job_schedules_away RENAME TO job_schedules")
        .await
        .unwrap();
    let Some(samples) = parse_openmetrics(&text) else {
        return;
    };
    assert_eq!(sample(&samples, "joblog_database_up", &[]), Some(0.0), "{text}");
    assert_eq!(
        sample(
            &samples,
            "joblog_runs_total",
            &[("job", "Before"), ("status", "success")]
        ),
        Some(1.0)
    );
    let again = parse_openmetrics(&logger.encode_metrics().await).unwrap();
    assert_eq!(sample(&again, "joblog_database_up", &[]), Some(1.0));
}
