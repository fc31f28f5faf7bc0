//! Two `sync-app serve` processes on one PostgreSQL (and one MariaDB) database, syncing
//! every 2 s through joblog's scheduler: the sync never runs twice at once, each due tick
//! runs once, pause stops both instances, "run now" runs exactly once and resume runs at
//! most one catch-up. (Lease takeover after a holder dies is tested on the scheduler
//! itself in `joblog/tests/scheduler.rs`.)

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use joblog::{Cursor, JobLogger, RunFilter, RunRecord};
use sync_app::sync_job::JOB_NAME;

use common::{Backend, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_sync-app");

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> (Kill, String) {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sync-app");
    let first = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    (Kill(child), first)
}

async fn runs(logger: &JobLogger) -> Vec<RunRecord> {
    let filter = RunFilter {
        job: Some(JOB_NAME.into()),
        ..RunFilter::default()
    };
    let mut all: Vec<RunRecord> = logger
        .list_runs(&filter, Cursor::First, 500)
        .await
        .unwrap()
        .runs
        .into_iter()
        .map(|i| i.run)
        .collect();
    all.sort_by_key(|r| r.id);
    all
}

fn assert_no_overlap(runs: &[RunRecord]) {
    let mut spans: Vec<_> = runs
        .iter()
        .filter_map(|r| {
            Some((
                r.started_at?,
                r.finished_at.unwrap_or(chrono::Utc::now()),
                r.id,
                r.pid,
            ))
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[0].1 <= pair[1].0,
            "runs {} (pid {:?}) and {} (pid {:?}) overlap",
            pair[0].2,
            pair[0].3,
            pair[1].2,
            pair[1].3
        );
    }
}

async fn two_instances(db: TestDb) {
    let logger = sync_app::database::open(&db.url).await.expect("open");
    let (_erp, line) = spawn(&["fake-erp", "--listen", "127.0.0.1:0", "--orders", "300"], &[]);
    let erp_addr = line.trim_start_matches("fake ERP listening on ").to_string();
    let (host, port) = erp_addr.rsplit_once(':').unwrap();
    let mssql =
        format!("server=tcp:{host},{port};database=erp;user id=sync;password=sync;encrypt=DANGER_PLAINTEXT");
    let mut instances = Vec::new();
    for _ in 0..2 {
        let env = [
            ("DATABASE_URL", db.url.as_str()),
            ("MSSQL_URL", mssql.as_str()),
            ("ADMIN_USER", "ops"),
            ("ADMIN_PASSWORD", "pw"),
            ("BIND", "127.0.0.1:0"),
            ("SYNC_INTERVAL", "2s"),
            ("SHUTDOWN_GRACE", "5s"),
        ];
        instances.push(spawn(&["serve"], &env).0);
    }
    let t0 = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let seen = runs(&logger).await;
    assert_no_overlap(&seen);
    let ticks = (elapsed / 2.0).ceil() as usize;
    assert!(
        seen.len() <= ticks + 1,
        "{} runs in {elapsed:.0} s at one per 2 s: some tick ran twice",
        seen.len()
    );
    assert!(
        seen.len() >= ticks / 2,
        "only {} runs in {elapsed:.0} s",
        seen.len()
    );
    let pids: std::collections::BTreeSet<_> = seen.iter().filter_map(|r| r.pid).collect();
    eprintln!("{} runs in {elapsed:.1} s by pids {pids:?}", seen.len());

    // Pause: once a running sync has finished, nobody starts another.
    assert!(joblog::pause_job(&logger, JOB_NAME).await.unwrap());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let paused_at = runs(&logger).await.len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runs(&logger).await.len(), paused_at, "a paused job ran");

    // "Run now" from the monitor (here: the same call) runs exactly once, on one of the
    // two instances, even while paused.
    assert!(joblog::request_run_now(&logger, JOB_NAME).await.unwrap());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after_run_now = runs(&logger).await;
    assert_eq!(after_run_now.len(), paused_at + 1, "run now ran exactly once");
    let paused_at = after_run_now.len();

    // Resume runs at most one catch-up, then the 2 s rhythm again, still never overlapping.
    assert!(joblog::resume_job(&logger, JOB_NAME).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_resume = runs(&logger).await;
    assert!(
        after_resume.len() <= paused_at + 1,
        "resume ran a burst: {} new runs",
        after_resume.len() - paused_at
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let end = runs(&logger).await;
    assert!(end.len() > paused_at, "the job runs again after resume");
    assert_no_overlap(&end);
    for i in instances {
        drop(i);
    }
    logger.flush().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_on_postgres() {
    if let Some(db) = TestDb::new(Backend::Postgres).await {
        two_instances(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_on_mysql() {
    if let Some(db) = TestDb::new(Backend::MySql).await {
        two_instances(db).await;
    }
}
