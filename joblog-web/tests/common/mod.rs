//! Test support shared by joblog-web's integration tests: a fresh database per test on a
//! SQLite file, PostgreSQL or MySQL / MariaDB. The servers skip with a loud message when
//! unreachable, unless `JOBLOG_REQUIRE_DBS=1` (set by `.ci/run`). Servers:
//! `JOBLOG_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432`) and
//! `JOBLOG_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306`).
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use joblog::JobLogger;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

/// A database of this test's own, dropped at the end.
pub struct TestDb {
    pub url: String,
    pub admin_url: Option<String>,
    pub name: String,
}

pub fn unique_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!(
        "jl_web_{}_{}_{}",
        t.as_secs(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestDb {
    pub async fn new(backend: Backend) -> Option<TestDb> {
        let name = unique_name();
        let (server, admin_db) = match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                return Some(TestDb {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    admin_url: None,
                    name: path.display().to_string(),
                });
            }
            Backend::Postgres => (
                std::env::var("JOBLOG_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into()),
                "/postgres",
            ),
            Backend::MySql => (
                std::env::var("JOBLOG_TEST_MYSQL_URL")
                    .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into()),
                "/mysql",
            ),
        };
        let admin_url = format!("{server}{admin_db}");
        let mut opts = ConnectOptions::new(admin_url.clone());
        opts.connect_timeout(Duration::from_secs(3))
            .sqlx_logging(false)
            .max_connections(1);
        let admin = match Database::connect(opts).await {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("{backend:?} server at {server} unreachable: {e}");
                if std::env::var("JOBLOG_REQUIRE_DBS").is_ok_and(|v| v == "1" || v == "true") {
                    panic!("{msg} (JOBLOG_REQUIRE_DBS=1 makes this a failure)");
                }
                eprintln!("\n!!!!! SKIPPED: {msg} — set JOBLOG_REQUIRE_DBS=1 to fail instead !!!!!\n");
                return None;
            }
        };
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        admin.close().await.ok();
        Some(TestDb {
            url: format!("{server}/{name}"),
            admin_url: Some(admin_url),
            name,
        })
    }

    /// A new logger on this database ("another instance"), migrated.
    pub async fn logger(&self) -> JobLogger {
        let logger = JobLogger::connect(&self.url).await.expect("connect");
        logger.migrate().await.expect("migrate");
        logger
    }

    pub async fn drop(self) {
        match self.admin_url {
            None => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", self.name));
                }
            }
            Some(admin_url) => {
                if let Ok(admin) = Database::connect(admin_url.as_str()).await {
                    let sql = if admin.get_database_backend() == DbBackend::Postgres {
                        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)
                    } else {
                        format!("DROP DATABASE IF EXISTS {}", self.name)
                    };
                    let _ = admin.execute_unprepared(&sql).await;
                }
            }
        }
    }
}
