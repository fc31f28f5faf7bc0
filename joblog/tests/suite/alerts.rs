//! Alert webhooks against a real HTTP receiver on loopback: a failure and its recovery,
//! an overdue job, a receiver that is down and then up, two instances on one database.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use joblog::JobLogger;
use joblog::scheduler::{JobOptions, Schedule, Scheduler, SchedulerHandle};
use sea_orm::ConnectionTrait;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::{Backend, TestDb};

/// A webhook receiver: records every JSON body it is sent and answers with `status`.
#[derive(Clone)]
struct Receiver {
    received: Arc<Mutex<Vec<Value>>>,
    status: Arc<AtomicU16>,
    url: String,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        Self::serve(listener, url)
    }

    fn serve(listener: TcpListener, url: String) -> Receiver {
        let r = Receiver {
            received: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            url,
        };
        let me = r.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head_end, length) = loop {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while buf.len() < head_end + length {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let status = me.status.load(Ordering::SeqCst);
                    if status == 200 {
                        let body: Value = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap();
                        me.received.lock().unwrap().push(body);
                    }
                    let reply =
                        format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        r
    }

    fn events(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|v| v["event"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits until `n` alerts arrived (at most 20 s), then a little longer to catch extras.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..400 {
            if self.received.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        self.received.lock().unwrap().clone()
    }
}

/// A scheduler for `job` every `every`, failing while `fail` is set, alerting to `url`.
async fn scheduler(
    logger: &JobLogger,
    job: &str,
    every: Duration,
    fail: Arc<AtomicBool>,
    url: &str,
) -> SchedulerHandle {
    Scheduler::builder(logger.clone())
        .poll_interval(Duration::from_millis(50))
        .alert_webhook(url)
        .alert_links("https://jobs.example.com/admin")
        .job_with(
            job,
            Schedule::every(every),
            JobOptions::default().run_at_start(false),
            move |run| {
                let fail = fail.clone();
                async move {
                    run.detail("working");
                    if fail.load(Ordering::SeqCst) {
                        Err("the disk is full".to_owned())
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .build()
        .start()
        .await
        .unwrap()
}

/// Asks for a run and waits until the job has `n` finished runs.
async fn run_now_and_wait(logger: &JobLogger, job: &str, n: u64) {
    logger.scheduled_jobs().run_now(job).await.unwrap();
    for _ in 0..400 {
        let done = logger
            .job_summaries()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.job == job)
            .is_some_and(|s| s.counts.success + s.counts.error >= n);
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{job} did not finish {n} runs");
}

pub(crate) async fn alerts_on_failure_and_recovery_once_each(db: TestDb) {
    let logger = db.logger().await;
    let hook = Receiver::start().await;
    let fail = Arc::new(AtomicBool::new(true));
    let handle = scheduler(
        &logger,
        "Nightly",
        Duration::from_secs(3600),
        fail.clone(),
        &hook.url,
    )
    .await;
    run_now_and_wait(&logger, "Nightly", 1).await;
    run_now_and_wait(&logger, "Nightly", 2).await; // the same incident: no second alert
    let got = hook.wait_for(1).await;
    assert_eq!(hook.events(), ["failed"], "{got:?}");
    let alert = &got[0];
    let first = logger
        .list_runs(&Default::default(), joblog::query::Cursor::First, 10)
        .await
        .unwrap()
        .runs
        .into_iter()
        .map(|r| r.run)
        .filter(|r| r.job == "Nightly")
        .min_by_key(|r| r.id)
        .unwrap();
    assert_eq!(alert["job"], "Nightly");
    assert_eq!(alert["run_id"], first.id);
    assert_eq!(alert["run_name"], first.name.as_str());
    assert_eq!(alert["status"], "error");
    assert_eq!(alert["error"], "the disk is full");
    assert!(
        alert["started_at"].as_str().is_some() && alert["finished_at"].as_str().is_some(),
        "{alert}"
    );
    assert_eq!(
        alert["url"],
        format!("https://jobs.example.com/admin/job_logs/{}", first.id).as_str()
    );
    let text = alert["text"].as_str().unwrap();
    assert!(
        text.contains("Nightly failed") && text.contains("the disk is full"),
        "{text}"
    );

    fail.store(false, Ordering::SeqCst);
    run_now_and_wait(&logger, "Nightly", 3).await;
    run_now_and_wait(&logger, "Nightly", 4).await; // still fine: nothing more
    let got = hook.wait_for(2).await;
    assert_eq!(hook.events(), ["failed", "recovered"], "{got:?}");
    assert_eq!(got[1]["status"], "success");
    assert!(
        got[1]["text"].as_str().unwrap().contains("Nightly recovered"),
        "{}",
        got[1]
    );
    handle.shutdown(Duration::from_secs(5)).await.unwrap();
    // Prune removes the alerts that went out, with the runs of their age.
    let stats = logger
        .prune(&joblog::PruneOptions {
            older_than: Some(Duration::ZERO),
            keep_last: None,
        })
        .await
        .unwrap();
    assert_eq!(stats.alerts, 2, "{stats:?}");
    let left = logger
        .db()
        .query_one_raw(sea_orm::Statement::from_string(
            logger.db().get_database_backend(),
            "SELECT COUNT(*) FROM job_alerts",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(left, 0);
}

fn minutes_ago(backend: Backend, minutes: u32) -> String {
    match backend {
        Backend::SqliteFile | Backend::SqliteMemory => {
            format!("strftime('%Y-%m-%d %H:%M:%f', 'now', '-{minutes} minutes')")
        }
        Backend::Postgres => format!("now() - interval '{minutes} minutes'"),
        Backend::MySql => format!("UTC_TIMESTAMP(6) - INTERVAL {minutes} MINUTE"),
    }
}

pub(crate) async fn alerts_when_overdue_from_one_of_two_instances(db: TestDb) {
    let hook = Receiver::start().await;
    let a = db.logger().await;
    let b = db.logger().await;
    let fail = Arc::new(AtomicBool::new(false));
    // Registered by both instances; nothing due for 5 minutes.
    let ha = scheduler(&a, "Every5", Duration::from_secs(300), fail.clone(), &hook.url).await;
    let hb = scheduler(&b, "Every5", Duration::from_secs(300), fail.clone(), &hook.url).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(hook.events().is_empty(), "a job that never ran is not overdue");
    // Its last success 17 minutes ago: 3 occurrences missed.
    a.db()
        .execute_unprepared(&format!(
            "UPDATE job_schedules SET last_success_at = {ago} WHERE job = 'Every5'",
            ago = minutes_ago(db.backend, 17)
        ))
        .await
        .unwrap();
    let got = hook.wait_for(1).await;
    assert_eq!(
        hook.events(),
        ["overdue"],
        "one alert from two instances: {got:?}"
    );
    assert_eq!(got[0]["missed"], 3);
    assert!(
        got[0]["text"].as_str().unwrap().contains("Every5 is overdue"),
        "{}",
        got[0]
    );
    // A run that succeeds closes the incident, once.
    run_now_and_wait(&a, "Every5", 1).await;
    let got = hook.wait_for(2).await;
    assert_eq!(hook.events(), ["overdue", "recovered"], "{got:?}");
    // A failure then goes out once, whichever instance runs it.
    fail.store(true, Ordering::SeqCst);
    run_now_and_wait(&b, "Every5", 2).await;
    let got = hook.wait_for(3).await;
    assert_eq!(hook.events(), ["overdue", "recovered", "failed"], "{got:?}");
    ha.shutdown(Duration::from_secs(5)).await.unwrap();
    hb.shutdown(Duration::from_secs(5)).await.unwrap();
}

pub(crate) async fn a_webhook_that_is_down_is_retried_and_shown(db: TestDb) {
    let logger = db.logger().await;
    // A port nobody listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let fail = Arc::new(AtomicBool::new(true));
    let handle = scheduler(&logger, "Flaky", Duration::from_secs(3600), fail.clone(), &url).await;
    let started = std::time::Instant::now();
    run_now_and_wait(&logger, "Flaky", 1).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the job waited on the webhook"
    );
    // The failure to deliver shows on the job's schedule (the monitor's row).
    let mut shown = None;
    for _ in 0..200 {
        shown = schedule(&logger, "Flaky").await.alert_error;
        if shown.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let shown = shown.expect("the delivery failure is recorded");
    assert!(shown.contains("attempt 1"), "{shown}");
    // The receiver comes up, at first answering 503, then 200.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let hook = Receiver::serve(listener, url);
    hook.status.store(503, Ordering::SeqCst);
    for _ in 0..200 {
        if schedule(&logger, "Flaky")
            .await
            .alert_error
            .is_some_and(|e| e.contains("HTTP 503"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        schedule(&logger, "Flaky")
            .await
            .alert_error
            .unwrap()
            .contains("HTTP 503")
    );
    hook.status.store(200, Ordering::SeqCst);
    let got = hook.wait_for(1).await;
    assert_eq!(hook.events(), ["failed"], "{got:?}");
    assert_eq!(
        schedule(&logger, "Flaky").await.alert_error,
        None,
        "cleared once delivered"
    );
    handle.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn schedule(logger: &JobLogger, job: &str) -> joblog::scheduler::ScheduleRecord {
    logger
        .scheduled_jobs()
        .schedule(job)
        .await
        .unwrap()
        .expect("a scheduled job")
}

/// The instance that ran the failing run has no webhook (or died before raising the
/// alert): another instance with alerts raises it from the job's recorded outcome.
pub(crate) async fn an_alert_is_raised_by_another_instance(db: TestDb) {
    let hook = Receiver::start().await;
    let quiet = db.logger().await;
    let alerting = db.logger().await;
    let fail = Arc::new(AtomicBool::new(true));
    let job = "Elsewhere";
    // First only the instance without alerts has a scheduler: it runs the failing run.
    let runner = Scheduler::builder(quiet.clone())
        .poll_interval(Duration::from_millis(50))
        .job_with(
            job,
            Schedule::every(Duration::from_secs(3600)),
            JobOptions::default(),
            {
                let fail = fail.clone();
                move |_run| {
                    let fail = fail.clone();
                    async move {
                        if fail.load(Ordering::SeqCst) {
                            Err("no route to the ERP".to_owned())
                        } else {
                            Ok(())
                        }
                    }
                }
            },
        )
        .build()
        .start()
        .await
        .unwrap();
    run_now_and_wait(&quiet, job, 1).await;
    runner.shutdown(Duration::from_secs(5)).await.unwrap();
    assert!(hook.events().is_empty());
    // Now an instance with alerts looks at the job: the failure is raised once.
    let watcher = scheduler(&alerting, job, Duration::from_secs(3600), fail.clone(), &hook.url).await;
    let got = hook.wait_for(1).await;
    assert_eq!(hook.events(), ["failed"], "{got:?}");
    assert_eq!(got[0]["error"], "no route to the ERP");
    watcher.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A webhook URL that is not one is refused when the scheduler starts.
pub(crate) async fn a_bad_webhook_url_is_refused(db: TestDb) {
    let logger = db.logger().await;
    let err = Scheduler::builder(logger.clone())
        .alert_webhook("hooks.example.com/x")
        .job("J", Schedule::every(Duration::from_secs(60)), |_run| async {
            Ok::<(), String>(())
        })
        .build()
        .start()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not an http:// or https:// URL"),
        "{err}"
    );
}
