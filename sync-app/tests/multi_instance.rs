//! Two `sync-app serve` processes on one PostgreSQL (and one MariaDB) database for 30 s, syncing
//! every 2 s through joblog's scheduler: the sync never runs twice at once, each due tick
//! runs once, pause stops both instances, "run now" runs exactly once and resume runs at
//! most one catch-up; when the instance running the sync is killed, the other takes over
//! once the lease expires.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use joblog::JobLogger;
use joblog::query::{Cursor, RunFilter, RunRecord};
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
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    // Keep draining its stdout: a closed pipe would kill it at its next line.
    std::thread::spawn(move || lines.for_each(drop));
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
            ("ADMIN_PASSWORD", "multi-instance-pw"),
            ("BIND", "127.0.0.1:0"),
            ("SYNC_INTERVAL", "2s"),
            ("SHUTDOWN_GRACE", "5s"),
        ];
        instances.push(spawn(&["serve"], &env).0);
    }
    let t0 = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
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
    assert!(logger.scheduled_jobs().pause(JOB_NAME).await.unwrap());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let paused_at = runs(&logger).await.len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runs(&logger).await.len(), paused_at, "a paused job ran");

    // "Run now" from the monitor (here: the same call) runs exactly once, on one of the
    // two instances, even while paused.
    assert!(logger.scheduled_jobs().run_now(JOB_NAME).await.unwrap());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after_run_now = runs(&logger).await;
    assert_eq!(after_run_now.len(), paused_at + 1, "run now ran exactly once");
    let paused_at = after_run_now.len();

    // Resume runs at most one catch-up, then the 2 s rhythm again, still never overlapping.
    assert!(logger.scheduled_jobs().resume(JOB_NAME).await.unwrap());
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

/// The instance running the sync is killed (SIGKILL) in the middle of it: the other one
/// takes the job over once the lease (3 s here) has expired.
async fn a_dead_holder_is_taken_over(db: TestDb) {
    let logger = sync_app::database::open(&db.url).await.expect("open");
    // Every sync stalls after 50 rows, so the holder is always mid-run.
    let (_erp, line) = spawn(
        &[
            "fake-erp",
            "--listen",
            "127.0.0.1:0",
            "--orders",
            "300",
            "--fail",
            "stall-after:50",
        ],
        &[],
    );
    let erp_addr = line.trim_start_matches("fake ERP listening on ").to_string();
    let (host, port) = erp_addr.rsplit_once(':').unwrap();
    let mssql = format!(
        "server=tcp:{host},{port};database=erp;user id=sync;password=sync;encrypt=DANGER_PLAINTEXT;Command Timeout=120"
    );
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("MSSQL_URL", mssql.as_str()),
        ("ADMIN_USER", "ops"),
        ("ADMIN_PASSWORD", "multi-instance-pw"),
        ("BIND", "127.0.0.1:0"),
        ("SYNC_INTERVAL", "1s"),
        ("SYNC_LEASE", "3s"),
    ];
    let mut instances: Vec<Kill> = (0..2).map(|_| spawn(&["serve"], &env).0).collect();
    // Wait for the first run; its pid is the holder.
    let mut first = None;
    for _ in 0..100 {
        if let Some(r) = runs(&logger).await.into_iter().next() {
            first = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = first.expect("a first run");
    let holder = first.pid.expect("pid") as u32;
    let idx = instances
        .iter()
        .position(|k| k.0.id() == holder)
        .expect("the holder is one of ours");
    // Some skipped ticks first: the other instance sees the job running.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let so_far = runs(&logger).await;
    for r in so_far.iter().filter(|_| so_far.len() != 1) {
        let d = logger.details(r.id, None, 100).await.unwrap();
        let last = d.last().map(|d| d.message.clone());
        eprintln!("run {} pid {:?} status {:?} last {last:?}", r.id, r.pid, r.status);
    }
    assert_eq!(
        so_far.len(),
        1,
        "the second instance must not start while the lease is held"
    );
    let killed_at = std::time::Instant::now();
    let mut holder_proc = instances.remove(idx);
    holder_proc.0.kill().unwrap();
    holder_proc.0.wait().unwrap();
    let mut taken = None;
    while killed_at.elapsed() < Duration::from_secs(30) {
        let all = runs(&logger).await;
        if let Some(r) = all.iter().find(|r| r.id != first.id) {
            taken = Some((r.clone(), killed_at.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (second, after) = taken.expect("the other instance took the job over");
    assert_ne!(second.pid, first.pid);
    eprintln!(
        "taken over {:.1} s after the kill (lease 3 s, poll 1 s)",
        after.as_secs_f64()
    );
    // Not before the lease ran out (it was renewed at most 1 s before the kill).
    assert!(
        after >= Duration::from_secs(1),
        "taken over after {after:?}, before the lease expired"
    );
    let recs = logger.scheduled_jobs().schedules().await.unwrap();
    assert!(
        recs[0].skipped_count > 0,
        "the ticks the dead holder's run blocked were recorded as skipped"
    );
    drop(instances);
    logger.flush().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_holder_on_postgres() {
    if let Some(db) = TestDb::new(Backend::Postgres).await {
        a_dead_holder_is_taken_over(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_holder_on_mysql() {
    if let Some(db) = TestDb::new(Backend::MySql).await {
        a_dead_holder_is_taken_over(db).await;
    }
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
