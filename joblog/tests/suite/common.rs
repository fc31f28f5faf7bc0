//! Test harness: a fresh database per test on each backend, and a macro that runs every
//! case on all of them.
//!
//! PostgreSQL and MySQL tests skip with a loud message when the server is unreachable,
//! unless `JOBLOG_REQUIRE_DBS=1` (set by `.ci/run`), which turns a skip into a failure.
//! Servers: `JOBLOG_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432`) and
//! `JOBLOG_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306`).

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use joblog::JobLogger;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    SqliteFile,
    SqliteMemory,
    Postgres,
    MySql,
}

/// One test's own database.
#[derive(Debug)]
pub(crate) struct TestDb {
    pub(crate) backend: Backend,
    pub(crate) url: String,
    cleanup: Cleanup,
}

#[derive(Debug, Clone)]
enum Cleanup {
    File(std::path::PathBuf),
    Server { admin_url: String, name: String },
    Nothing,
}

fn unique_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!(
        "jl_t_{}_{}_{}",
        t.as_secs(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn required() -> bool {
    std::env::var("JOBLOG_REQUIRE_DBS").is_ok_and(|v| v == "1" || v == "true")
}

pub(crate) fn postgres_admin_url() -> String {
    std::env::var("JOBLOG_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub(crate) fn mysql_admin_url() -> String {
    std::env::var("JOBLOG_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

impl TestDb {
    /// A fresh database, or `None` (after a loud message) when its server is absent.
    pub(crate) async fn new(backend: Backend) -> Option<TestDb> {
        let name = unique_name();
        match backend {
            Backend::SqliteFile => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                Some(TestDb {
                    backend,
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    cleanup: Cleanup::File(path),
                })
            }
            Backend::SqliteMemory => Some(TestDb {
                backend,
                // A named shared-cache memory database, so that a second connection (the
                // "fresh connection" re-reads) sees the same data.
                url: format!("sqlite:file:{name}?mode=memory&cache=shared"),
                cleanup: Cleanup::Nothing,
            }),
            Backend::Postgres | Backend::MySql => {
                let (admin, admin_db) = if backend == Backend::Postgres {
                    (postgres_admin_url(), "/postgres")
                } else {
                    (mysql_admin_url(), "/test")
                };
                let mut opts = ConnectOptions::new(format!("{admin}{admin_db}"));
                opts.connect_timeout(Duration::from_secs(3))
                    .sqlx_logging(false)
                    .max_connections(1);
                let conn = match Database::connect(opts).await {
                    Ok(c) => c,
                    Err(e) => {
                        let msg = format!("{backend:?} server at {admin} unreachable: {e}");
                        if required() {
                            panic!("{msg} (JOBLOG_REQUIRE_DBS=1 makes this a failure)");
                        }
                        eprintln!(
                            "\n!!!!! SKIPPED: {msg} — set JOBLOG_REQUIRE_DBS=1 to fail instead !!!!!\n"
                        );
                        return None;
                    }
                };
                conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                conn.close().await.ok();
                Some(TestDb {
                    backend,
                    url: format!("{admin}/{name}"),
                    cleanup: Cleanup::Server {
                        admin_url: format!("{admin}{admin_db}"),
                        name,
                    },
                })
            }
        }
    }

    /// A logger on this database with joblog's tables in place.
    pub(crate) async fn logger(&self) -> JobLogger {
        self.logger_with(JobLogger::builder()).await
    }

    pub(crate) async fn logger_with(&self, builder: joblog::JobLoggerBuilder) -> JobLogger {
        let logger = builder.connect(&self.url).await.expect("connect");
        logger.migrate().await.expect("migrate");
        logger
    }

    /// A new connection of its own, to re-read what the logger wrote.
    pub(crate) async fn fresh(&self) -> DatabaseConnection {
        let mut opts = ConnectOptions::new(self.url.clone());
        opts.sqlx_logging(false).max_connections(1);
        Database::connect(opts).await.expect("fresh connection")
    }

    async fn drop_database(cleanup: Cleanup) {
        match cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Server { admin_url, name } => {
                if let Ok(conn) = Database::connect(admin_url.as_str()).await {
                    let sql = if conn.get_database_backend() == DbBackend::Postgres {
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                    } else {
                        format!("DROP DATABASE IF EXISTS {name}")
                    };
                    let _ = conn.execute_unprepared(&sql).await;
                }
            }
            Cleanup::Nothing => {}
        }
    }
}

/// Runs `case` on a fresh database of `backend`, then drops that database.
pub(crate) async fn run<F, Fut>(backend: Backend, case: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("joblog=debug")
            .try_init();
    }
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let cleanup = db.cleanup.clone();
    case(db).await;
    TestDb::drop_database(cleanup).await;
}

/// Runs a query on a connection and returns the rows.
pub(crate) async fn rows(conn: &DatabaseConnection, sql: &str) -> Vec<sea_orm::QueryResult> {
    conn.query_all_raw(Statement::from_string(
        conn.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A run's status code and its detail messages, read through `conn`.
pub(crate) async fn status_and_messages(
    conn: &DatabaseConnection,
    run_id: i64,
) -> (i16, Vec<(String, String)>) {
    let status: i16 = rows(conn, &format!("SELECT status FROM job_logs WHERE id = {run_id}")).await[0]
        .try_get_by_index(0)
        .unwrap();
    let details = rows(
        conn,
        &format!("SELECT level, message FROM job_log_details WHERE job_log_id = {run_id} ORDER BY id"),
    )
    .await
    .iter()
    .map(|r| (r.try_get_by_index(0).unwrap(), r.try_get_by_index(1).unwrap()))
    .collect();
    (status, details)
}

/// Runs every named case in `cases` on SQLite (file and memory), PostgreSQL and MySQL.
macro_rules! backend_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite_file {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { crate::common::run(crate::common::Backend::SqliteFile, crate::cases::$case).await })*
        }
        mod sqlite_memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { crate::common::run(crate::common::Backend::SqliteMemory, crate::cases::$case).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { crate::common::run(crate::common::Backend::Postgres, crate::cases::$case).await })*
        }
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { crate::common::run(crate::common::Backend::MySql, crate::cases::$case).await })*
        }
    };
}
pub(crate) use backend_tests;

/// One sample of parsed metrics: its name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: std::collections::BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// `text` as the Prometheus project's OpenMetrics parser reads it (`scripts/openmetrics_parse.py`,
/// Python's `prometheus_client`): every sample, with each family's type checked to be
/// `types[name]` where given. Panics when the parser rejects the text. `None`, after a
/// loud message, when python3 or the parser is missing — unless
/// `JOBLOG_REQUIRE_PROMETHEUS_PARSER=1` (set by `.ci/run`), which makes that a failure.
pub(crate) fn parse_openmetrics(text: &str) -> Option<Vec<Sample>> {
    use std::io::Write;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/openmetrics_parse.py");
    let required = std::env::var("JOBLOG_REQUIRE_PROMETHEUS_PARSER").is_ok_and(|v| v == "1" || v == "true");
    let child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(!required, "python3 is required for the metrics parser: {e}");
            eprintln!("!!! SKIPPED: the OpenMetrics parse: no python3 ({e})");
            return None;
        }
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(3) => {
            assert!(!required, "the Prometheus parser is required: {stderr}");
            eprintln!("!!! SKIPPED: the OpenMetrics parse: {stderr} (pip install prometheus-client)");
            return None;
        }
        _ => panic!("the Prometheus parser rejected the metrics: {stderr}\n{text}"),
    }
    let families: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut samples = Vec::new();
    for family in families.as_array().unwrap() {
        for s in family["samples"].as_array().unwrap() {
            samples.push(Sample {
                name: s[0].as_str().unwrap().to_owned(),
                labels: s[1]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect(),
                value: s[2].as_f64().unwrap(),
            });
        }
    }
    Some(samples)
}

/// The value of the sample `name` with exactly `labels`, if there is one.
pub(crate) fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}
