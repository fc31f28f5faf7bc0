//! `sync-app runs`, `runs show`, `runs tail`, `jobs`, `run-now`, `pause`, `resume` — the
//! binary against SQLite, PostgreSQL and MySQL databases holding runs in every state (new,
//! processing, success, error), tables and `--json`, exit codes, and `runs tail` following a
//! run that another process writes while it watches.

mod binary;
mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use joblog::JobLogger;
use joblog::scheduler::{JobOptions, Schedule, Scheduler};
use serde_json::Value;

use binary::{cmd, text};
use common::TestDb;

const JOB: &str = "ReportJob";
const OTHER: &str = "CleanupJob";

/// The binary with `DATABASE_URL` and `args`, run to the end.
async fn sync_app(db: &TestDb, args: &[&str]) -> Output {
    let mut c = cmd(&std::env::temp_dir());
    c.env("DATABASE_URL", &db.url).args(args).stdin(Stdio::null());
    tokio::task::spawn_blocking(move || c.output().expect("run sync-app"))
        .await
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

/// The ids of the runs in a `runs --json` answer, with their statuses.
fn statuses(v: &Value) -> Vec<(i64, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn commands_read_and_steer_any_database(db: TestDb) {
    let logger = sync_app::database::open(&db.url).await.expect("open");
    Scheduler::builder(logger.clone())
        .job_with(
            JOB,
            Schedule::every(Duration::from_secs(3600)),
            JobOptions::default().run_at_start(false),
            |_run| async { Ok::<(), String>(()) },
        )
        .build()
        .start()
        .await
        .unwrap()
        .abort();
    // Runs in every state.
    let mut ok = logger.start(JOB).await.unwrap();
    ok.processing().await.unwrap();
    ok.detail("fetched 42 rows");
    let ok_id = ok.id();
    ok.success().await.unwrap();
    let mut failed = logger.start(JOB).await.unwrap();
    failed.processing().await.unwrap();
    failed.warn("the source is slow");
    let failed_id = failed.id();
    failed.error(&"connection reset by peer").await.unwrap();
    let waiting = logger.start(OTHER).await.unwrap();
    let mut running = logger.start(JOB).await.unwrap();
    running.processing().await.unwrap();
    running.detail("step 1 of 3");
    logger.flush().await.unwrap();
    let (waiting_id, running_id) = (waiting.id(), running.id());

    // `runs`: newest first, every state; filters.
    let all = json(&sync_app(&db, &["runs", "--json"]).await);
    assert_eq!(
        statuses(&all),
        vec![
            (running_id, "processing".into()),
            (waiting_id, "new".into()),
            (failed_id, "error".into()),
            (ok_id, "success".into()),
        ]
    );
    assert_eq!(all[2]["error"], "connection reset by peer");
    assert_eq!(all[3]["last_message"], "fetched 42 rows", "{}", all[3]);
    let errors = json(&sync_app(&db, &["runs", "--status", "error", "--json"]).await);
    assert_eq!(statuses(&errors), vec![(failed_id, "error".into())]);
    let other = json(&sync_app(&db, &["runs", "--job", OTHER, "--json"]).await);
    assert_eq!(statuses(&other), vec![(waiting_id, "new".into())]);
    let two = json(&sync_app(&db, &["runs", "--limit", "2", "--json"]).await);
    assert_eq!(two.as_array().unwrap().len(), 2);
    let table = sync_app(&db, &["runs"]).await;
    assert!(table.status.success());
    let table = text(&table.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS"),
        "{table}"
    );
    for (line, (id, status)) in lines[1..].iter().zip(statuses(&all)) {
        assert!(
            line.starts_with(&format!("{id} ")) && line.contains(&status),
            "{table}"
        );
    }
    assert!(lines[3].contains("connection reset by peer"), "{table}");
    let bad = sync_app(&db, &["runs", "--status", "done"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(text(&bad.stderr).contains("new, processing, success or error"));

    // `runs show`: the summary and the whole log, in order.
    let shown = json(&sync_app(&db, &["runs", "show", &failed_id.to_string(), "--json"]).await);
    assert_eq!(shown["run"]["status"], "error");
    let messages: Vec<&str> = shown["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["message"].as_str().unwrap())
        .collect();
    let warn = messages
        .iter()
        .position(|m| *m == "the source is slow")
        .expect("the warning");
    let err = messages
        .iter()
        .position(|m| m.contains("connection reset by peer"))
        .expect("the error");
    assert!(warn < err, "{messages:?}");
    let page = text(
        &sync_app(&db, &["runs", "show", &failed_id.to_string()])
            .await
            .stdout,
    );
    assert!(
        page.contains("Status    error") && page.contains("Error     connection reset by peer"),
        "{page}"
    );
    assert!(page.contains("WARN   the source is slow"), "{page}");
    let missing = sync_app(&db, &["runs", "show", "987654"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("no run 987654"),
        "{}",
        text(&missing.stderr)
    );

    // `runs tail`: a finished run prints and exits with its outcome.
    let done = sync_app(&db, &["runs", "tail", &ok_id.to_string()]).await;
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
    assert!(text(&done.stdout).contains("fetched 42 rows"));
    let done = sync_app(&db, &["runs", "tail", &failed_id.to_string()]).await;
    assert_eq!(done.status.code(), Some(1));
    assert!(
        text(&done.stdout).contains("ended: error"),
        "{}",
        text(&done.stdout)
    );

    // ... and a running one is followed until it ends: lines written after it started
    // watching show up, and its exit code is the run's outcome.
    let mut c = cmd(&std::env::temp_dir());
    c.env("DATABASE_URL", &db.url)
        .args(["runs", "tail", "--job", JOB, "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut tail = c.spawn().expect("spawn tail");
    // Wait until it has printed step 1: it is up and watching the running run.
    let mut reader = std::io::BufReader::new(tail.stdout.take().unwrap());
    let (reader, first) = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        loop {
            let mut line = String::new();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "tail ended early: {seen:?}"
            );
            let v: Value = serde_json::from_str(&line).unwrap();
            let step1 = v["detail"]["message"] == "step 1 of 3";
            seen.push(v);
            if step1 {
                return (reader, seen);
            }
        }
    })
    .await
    .unwrap();
    assert!(
        tail.try_wait().unwrap().is_none(),
        "still following the running run"
    );
    running.detail("step 2 of 3");
    running.detail("step 3 of 3");
    running.error(&"disk full").await.unwrap();
    let (rest, status) = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut rest = String::new();
        let mut reader = reader;
        reader.read_to_string(&mut rest).unwrap();
        (rest, tail.wait().unwrap())
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(1));
    let lines: Vec<Value> = first
        .into_iter()
        .chain(rest.lines().map(|l| serde_json::from_str(l).unwrap()))
        .collect();
    let said: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["detail"]["message"].as_str())
        .collect();
    assert_eq!(
        &said[said.len() - 3..],
        ["step 2 of 3", "step 3 of 3", "disk full"],
        "the lines written while it watched, then the error: {said:?}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["run"]["id"], running_id);
    assert_eq!(last["run"]["status"], "error");

    // `jobs`: the scheduled job and the unscheduled one.
    let jobs = json(&sync_app(&db, &["jobs", "--json"]).await);
    let find = |name: &str| {
        jobs.as_array()
            .unwrap()
            .iter()
            .find(|j| j["job"] == name)
            .unwrap_or_else(|| panic!("{name} in {jobs}"))
            .clone()
    };
    let report = find(JOB);
    assert_eq!(report["counts"]["success"], 1);
    assert_eq!(report["counts"]["error"], 2);
    assert_eq!(report["paused"], false);
    assert!(
        report["schedule"].as_str().unwrap().starts_with("every"),
        "{report}"
    );
    let cleanup = find(OTHER);
    assert_eq!(cleanup["counts"]["new"], 1);
    assert_eq!(cleanup["schedule"], Value::Null);
    let table = text(&sync_app(&db, &["jobs"]).await.stdout);
    assert!(
        table.starts_with("JOB") && table.contains(JOB) && table.contains("not scheduled"),
        "{table}"
    );

    // `pause`, `resume`, `run-now`: what every scheduler on the database reads.
    let paused = json(&sync_app(&db, &["pause", JOB, "--json"]).await);
    assert_eq!(paused["paused"], true);
    assert!(schedule(&logger, JOB).await.paused);
    let table = text(&sync_app(&db, &["jobs"]).await.stdout);
    assert!(table.contains("paused"), "{table}");
    let resumed = sync_app(&db, &["resume", JOB]).await;
    assert!(resumed.status.success());
    assert!(
        text(&resumed.stdout).contains("resumed"),
        "{}",
        text(&resumed.stdout)
    );
    assert!(!schedule(&logger, JOB).await.paused);
    let asked = sync_app(&db, &["run-now", JOB]).await;
    assert!(asked.status.success(), "{}", text(&asked.stderr));
    assert!(schedule(&logger, JOB).await.run_now_requested_at.is_some());
    let unknown = sync_app(&db, &["run-now", OTHER]).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr).contains(&format!("scheduled: {JOB}")),
        "{}",
        text(&unknown.stderr)
    );
    drop(waiting);
    logger.flush().await.unwrap();
}

async fn schedule(logger: &JobLogger, job: &str) -> joblog::scheduler::ScheduleRecord {
    logger
        .scheduled_jobs()
        .schedule(job)
        .await
        .unwrap()
        .expect("a scheduled job")
}

backend_tests!(commands_read_and_steer_any_database);

/// A SQLite file that is not there is an error, not a new empty database.
#[test]
fn a_missing_sqlite_file_is_not_created() {
    let dir = common::temp_dir("terminal-missing");
    for args in [&["runs"][..], &["jobs"], &["runs", "show", "1"], &["pause", JOB]] {
        let out = cmd(&dir).args(args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains("there is no database at sync-app.db"),
            "{}",
            text(&out.stderr)
        );
        assert!(!dir.join("sync-app.db").exists(), "{args:?} created the file");
    }
}
