//! Shared by `joblog/benches/search.rs` and `joblog-web/benches/pages.rs` (included with
//! `#[path]`): a fresh bench database per backend and the raw-SQL seeding of runs and
//! details (the rows of `joblog/benches/core.rs`, MySQL left out).
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, TransactionTrait};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Sqlite => "SQLite",
            Kind::Postgres => "PostgreSQL",
        }
    }
}

pub(crate) fn postgres_server() -> String {
    std::env::var("JOBLOG_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

#[derive(Debug)]
pub(crate) struct BenchDb {
    pub(crate) url: String,
    pub(crate) name: String,
    pub(crate) admin_url: Option<String>,
    pub(crate) file: Option<std::path::PathBuf>,
}

impl BenchDb {
    pub(crate) async fn create(kind: Kind, prefix: &str) -> Result<Option<BenchDb>> {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let name = format!("{prefix}_{}_{}", std::process::id(), t.as_secs());
        match kind {
            Kind::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                Ok(Some(BenchDb {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    name,
                    admin_url: None,
                    file: Some(path),
                }))
            }
            Kind::Postgres => {
                let server = postgres_server();
                let admin_url = format!("{server}/postgres");
                let conn = match Database::connect(admin_url.as_str()).await {
                    Ok(c) => c,
                    Err(e) => {
                        println!(
                            "\n**{} skipped**: server at {server} unreachable: {e}",
                            kind.label()
                        );
                        return Ok(None);
                    }
                };
                conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await?;
                conn.close().await.ok();
                Ok(Some(BenchDb {
                    url: format!("{server}/{name}"),
                    name,
                    admin_url: Some(admin_url),
                    file: None,
                }))
            }
        }
    }

    pub(crate) async fn drop_db(self) {
        if std::env::var("JOBLOG_BENCH_KEEP_DB").is_ok_and(|v| v == "1") {
            println!("(kept database: {})", self.url);
            return;
        }
        if let Some(path) = &self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        let Some(admin) = &self.admin_url else { return };
        match Database::connect(admin.as_str()).await {
            Ok(conn) => {
                let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
                if let Err(e) = conn.execute_unprepared(&sql).await {
                    eprintln!("could not drop {}: {e}", self.name);
                }
                conn.close().await.ok();
            }
            Err(e) => eprintln!("could not drop {}: {e}", self.name),
        }
    }
}

pub(crate) async fn exec(db: &impl ConnectionTrait, sql: &str) -> Result<()> {
    db.execute_unprepared(sql)
        .await
        .with_context(|| format!("{}…", &sql[..sql.len().min(200)]))?;
    Ok(())
}

pub(crate) async fn scalar_i64(db: &DatabaseConnection, sql: &str) -> Result<i64> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await?
        .with_context(|| format!("no row: {sql}"))?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// 2025-01-01T00:00:00Z; seeded run n starts at T0 + 31 n seconds.
pub(crate) const T0: i64 = 1_735_689_600;
pub(crate) const SEED_CHUNK: u64 = 100_000;

pub(crate) const JOBS: [&str; 6] = [
    "SyncOpenOrdersJob",
    "NightlyReport",
    "InvoiceExport",
    "CleanupTempFiles",
    "RebuildSearchIndex",
    "SendReminderEmails",
];

pub(crate) fn job_case(j: &str) -> String {
    format!(
        "CASE WHEN {j} < 8 THEN '{}' WHEN {j} < 12 THEN '{}' WHEN {j} < 15 THEN '{}' \
         WHEN {j} < 18 THEN '{}' WHEN {j} = 18 THEN '{}' ELSE '{}' END",
        JOBS[0], JOBS[1], JOBS[2], JOBS[3], JOBS[4], JOBS[5]
    )
}

pub(crate) const STATUS_CASE: &str =
    "CASE WHEN r < 90 THEN 2 WHEN r < 98 THEN 3 WHEN r = 98 THEN 1 ELSE 0 END";

pub(crate) fn detail_cases(i: &str, m: u64) -> (String, String) {
    let last = m - 1;
    let level = format!(
        "CASE WHEN {i} = {last} AND r.status = 3 THEN 'error' WHEN (r.id + {i}) % 23 = 0 THEN 'warn' ELSE 'info' END"
    );
    let started = "'Job started - ' || r.job".to_owned();
    let warn =
        format!("'Source returned ' || ((r.id * 7 + {i}) % 50) || ' rows with missing fields; skipped them'");
    let info = format!(
        "'Processed batch ' || {i} || ': ' || ((r.id * 31 + {i} * 17) % 5000) || ' rows in ' || ((r.id + {i} * 11) % 900) || ' ms'"
    );
    let message = format!(
        "CASE WHEN {i} = 0 THEN {started} WHEN {i} = {last} AND r.status = 3 THEN r.error \
         WHEN (r.id + {i}) % 23 = 0 THEN {warn} ELSE {info} END"
    );
    (level, message)
}

pub(crate) async fn seed_runs(db: &DatabaseConnection, kind: Kind, lo: u64, hi: u64) -> Result<()> {
    let cols =
        "name, job, status, host, pid, error, created_at, updated_at, started_at, finished_at, heartbeat_at";
    let job = job_case("j");
    let sql = match kind {
        Kind::Sqlite => {
            let ts = |secs: &str| format!("strftime('%Y-%m-%dT%H:%M:%f+00:00', {secs}, 'unixepoch')");
            format!(
                "WITH RECURSIVE c(n) AS (SELECT {lo} UNION ALL SELECT n + 1 FROM c WHERE n < {hi}), \
                 s AS (SELECT n, {T0} + n * 31 AS t, (n * 7919) % 100 AS r, (n * 37) % 20 AS j, (n * 13) % 600 AS d FROM c) \
                 INSERT INTO job_logs ({cols}) \
                 SELECT strftime('%Y%m%d_%H%M%S', t, 'unixepoch'), {job}, {STATUS_CASE}, \
                 'worker-' || (n % 4 + 1), 1000 + n % 5000, \
                 CASE WHEN r >= 90 AND r < 98 THEN 'Connection reset by peer (os error 104) while fetching batch ' || (n % 97) END, \
                 {}, {}, CASE WHEN r < 99 THEN {} END, CASE WHEN r < 98 THEN {} END, {} FROM s",
                ts("t"),
                ts("t + 1 + d"),
                ts("t + 1"),
                ts("t + 1 + d"),
                ts("t + 1 + d"),
            )
        }
        Kind::Postgres => format!(
            "INSERT INTO job_logs ({cols}) \
             SELECT to_char(ts, 'YYYYMMDD_HH24MISS'), {job}, {STATUS_CASE}, \
             'worker-' || (n % 4 + 1), 1000 + n % 5000, \
             CASE WHEN r >= 90 AND r < 98 THEN 'Connection reset by peer (os error 104) while fetching batch ' || (n % 97) END, \
             ts, ts + (1 + d) * interval '1 second', CASE WHEN r < 99 THEN ts + interval '1 second' END, \
             CASE WHEN r < 98 THEN ts + (1 + d) * interval '1 second' END, ts + (1 + d) * interval '1 second' \
             FROM (SELECT n, to_timestamp({T0} + n * 31) AS ts, (n * 7919) % 100 AS r, (n * 37) % 20 AS j, \
             (n * 13) % 600 AS d FROM generate_series({lo}::bigint, {hi}::bigint) AS n) s"
        ),
    };
    let txn = db.begin().await?;
    if kind == Kind::Postgres {
        exec(&txn, "SET LOCAL TIME ZONE 'UTC'").await?;
    }
    exec(&txn, &sql).await?;
    txn.commit().await?;
    Ok(())
}

pub(crate) async fn seed_details(
    db: &DatabaseConnection,
    kind: Kind,
    lo: u64,
    hi: u64,
    m: u64,
) -> Result<()> {
    let cols = "job_log_id, level, message, created_at";
    let (level, message) = detail_cases("k.i", m);
    let sql = match kind {
        Kind::Sqlite => format!(
            "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < {}) \
             INSERT INTO job_log_details ({cols}) \
             SELECT r.id, {level}, {message}, \
             strftime('%Y-%m-%dT%H:%M:%f+00:00', {T0} + r.id * 31 + 1 + (k.i * ((r.id * 13) % 600)) / {m}, 'unixepoch') \
             FROM job_logs r CROSS JOIN k WHERE r.id BETWEEN {lo} AND {hi}",
            m - 1
        ),
        Kind::Postgres => format!(
            "INSERT INTO job_log_details ({cols}) \
             SELECT r.id, {level}, {message}, \
             r.created_at + (1 + (k.i * ((r.id * 13) % 600)) / {m}) * interval '1 second' \
             FROM job_logs r CROSS JOIN generate_series(0, {}) AS k(i) WHERE r.id BETWEEN {lo} AND {hi} \
             ORDER BY r.id, k.i",
            m - 1
        ),
    };
    let txn = db.begin().await?;
    if kind == Kind::Postgres {
        exec(&txn, "SET LOCAL session_replication_role = replica").await?;
    }
    exec(&txn, &sql).await?;
    txn.commit().await?;
    Ok(())
}
