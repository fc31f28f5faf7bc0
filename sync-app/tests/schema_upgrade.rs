//! A database made by sync-app 0.1.0 — when `open_orders` and its migrator still lived in
//! the `joblog-migrations` crate — migrates on with today's code, on SQLite, PostgreSQL and
//! MySQL / MariaDB: the history tables keep their rows (nothing is applied twice; joblog's
//! migrations added since 0.1.0 come after them), the data stays, the old tables are
//! untouched, a sync works, and the schema equals the one a fresh database gets.
//!
//! The dumps and how they were made: `tests/fixtures/schema-0.1.0/README.md`.

mod common;

use std::net::SocketAddr;

use joblog_migrations::JoblogMigrator;
use joblog_migrations::sea_orm_migration::{MigrationTrait, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use sync_app::erp::{DEFAULT_SOURCE_QUERY, ErpSource};
use sync_app::fake_erp::{FakeErp, FakeErpConfig};
use sync_app::open_orders::SyncAppMigrator;
use sync_app::sync_job::SyncOpenOrdersJob;

use common::{Backend, TestDb};

/// The dump of a 0.1.0 database on `backend`.
fn fixture(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => include_str!("fixtures/schema-0.1.0/sqlite.sql"),
        Backend::Postgres => include_str!("fixtures/schema-0.1.0/postgres.sql"),
        Backend::MySql => include_str!("fixtures/schema-0.1.0/mysql.sql"),
    }
}

/// The dump's statements: psql meta-commands (`\restrict`) and comment lines dropped, one
/// statement per `;` at the end of a line (no value in these dumps holds one).
fn statements(dump: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dump.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('\\') || trimmed.starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            out.push(std::mem::take(&mut current));
        }
    }
    assert!(current.trim().is_empty(), "unterminated statement: {current}");
    out
}

/// Restores the 0.1.0 dump into `db` on a connection of its own (the dumps set session
/// state: PostgreSQL's empty `search_path`, MySQL's `FOREIGN_KEY_CHECKS=0`).
async fn restore(db: &TestDb) {
    let conn = db.fresh().await;
    let stmts = statements(fixture(db.backend));
    assert!(stmts.len() > 20, "the dump has its statements");
    for sql in stmts {
        conn.execute_unprepared(&sql)
            .await
            .unwrap_or_else(|e| panic!("restoring the 0.1.0 dump: {e}\n{sql}"));
    }
    conn.close().await.ok();
}

/// One query's rows, every column read as text (NULL as `NULL`), joined by `|`.
async fn text_rows(conn: &DatabaseConnection, sql: &str) -> Vec<String> {
    let rows = conn
        .query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .map(|row| {
            let cols = row.column_names();
            cols.iter()
                .map(|c| {
                    row.try_get::<Option<String>>("", c)
                        .unwrap_or_else(|e| panic!("{sql}: column {c}: {e}"))
                        .unwrap_or_else(|| "NULL".into())
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// The versions each migration table holds, in order.
async fn history(conn: &DatabaseConnection) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["joblog_migrations", "sync_app_migrations"] {
        for v in text_rows(conn, &format!("SELECT version FROM {table} ORDER BY version")).await {
            out.push(format!("{table}: {v}"));
        }
    }
    out
}

/// Every table's columns and every index, as the database's catalog describes them.
async fn schema(conn: &DatabaseConnection) -> Vec<String> {
    let queries: &[&str] = match conn.get_database_backend() {
        DbBackend::Sqlite => &["SELECT type, name, tbl_name, COALESCE(sql, '') AS sql \
             FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"],
        DbBackend::Postgres => &[
            "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text, \
             column_default::text, character_maximum_length::text, numeric_precision::text, \
             numeric_scale::text FROM information_schema.columns \
             WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
            "SELECT indexname::text, indexdef::text FROM pg_indexes \
             WHERE schemaname = 'public' ORDER BY indexname",
            "SELECT conname::text, pg_get_constraintdef(oid)::text FROM pg_constraint \
             WHERE connamespace = 'public'::regnamespace ORDER BY conname",
        ],
        _ => &[
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, \
             CAST(COLUMN_DEFAULT AS CHAR) AS d, COLLATION_NAME \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
             ORDER BY TABLE_NAME, ORDINAL_POSITION",
            "SELECT TABLE_NAME, INDEX_NAME, CAST(SEQ_IN_INDEX AS CHAR) AS s, COLUMN_NAME, \
             CAST(NON_UNIQUE AS CHAR) AS u FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
            "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME",
        ],
    };
    let mut out = Vec::new();
    for q in queries {
        out.extend(text_rows(conn, q).await);
    }
    out
}

/// What the migrations added after 0.1.0, as names or parts of names found in the catalog
/// rows that describe it (extend it with each new table, index or trigger): joblog's
/// secrets table, its search index (SQLite's FTS5 tables and their triggers, PostgreSQL's
/// trigram indexes) and the per-job run counts with their triggers; sync-app's Open Orders
/// search index (SQLite: `open_orders_fts` and its triggers; PostgreSQL: a GIN index).
const NEW_TABLES: [&str; 7] = [
    "joblog_secrets",
    "joblog_search_index",
    "_fts",
    "_trgm",
    "job_run_counts",
    "idx_open_orders_search",
    // `job_alerts` and `job_alert_states` (and their indexes).
    "job_alert",
];

/// `rows` without those that describe a table added after 0.1.0.
fn without_new_tables(rows: &[String]) -> Vec<String> {
    rows.iter()
        .filter(|row| !NEW_TABLES.iter().any(|t| row.contains(t)))
        .cloned()
        .collect()
}

/// `new` keeps every row of `old` exactly, and adds only the migrations added since, in
/// order, after the old ones — joblog's in `joblog_migrations`, sync-app's in
/// `sync_app_migrations`.
fn assert_history_extends(new: &[String], old: &[String]) {
    let names = |migrations: Vec<Box<dyn MigrationTrait>>, table: &str| -> Vec<String> {
        migrations
            .iter()
            .map(|m| format!("{table}: {}", m.name()))
            .collect()
    };
    for (table, all) in [
        (
            "joblog_migrations",
            names(JoblogMigrator::migrations(), "joblog_migrations"),
        ),
        (
            "sync_app_migrations",
            names(SyncAppMigrator::migrations(), "sync_app_migrations"),
        ),
    ] {
        let of = |h: &[String]| -> Vec<String> {
            h.iter()
                .filter(|v| v.starts_with(&format!("{table}: ")))
                .cloned()
                .collect()
        };
        let (old_rows, new_rows) = (of(old), of(new));
        assert_eq!(
            new_rows[..old_rows.len().min(new_rows.len())],
            old_rows[..],
            "{table}: the 0.1.0 rows kept exactly, nothing applied twice, nothing renamed: {new:#?}"
        );
        // What was added: exactly today's migrations after the 0.1.0 ones, in their order.
        assert_eq!(
            new_rows[old_rows.len()..],
            all[old_rows.len()..],
            "{table}: only the new migrations, after the old ones"
        );
    }
    assert!(new.len() > old.len(), "migrations were added since 0.1.0");
    assert!(
        new.iter()
            .all(|v| v.starts_with("joblog_migrations: ") || v.starts_with("sync_app_migrations: ")),
        "{new:#?}"
    );
}

async fn count(conn: &DatabaseConnection, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .expect("count")
        .expect("a row")
        .try_get::<i64>("", "n")
        .expect("n")
}

async fn a_database_made_by_0_1_0_migrates_on(db: TestDb) {
    restore(&db).await;
    let before = db.fresh().await;
    let old_history = history(&before).await;
    assert_eq!(
        old_history,
        [
            "joblog_migrations: m20261128_000001_create_job_logs",
            "joblog_migrations: m20261129_000002_create_job_schedules",
            "sync_app_migrations: m20261128_000101_create_open_orders",
        ],
        "the dump is what 0.1.0 wrote"
    );
    let old_schema = schema(&before).await;
    assert_eq!(count(&before, "open_orders").await, 12);
    let runs_before = count(&before, "job_logs").await;
    before.close().await.ok();

    // Today's code opens it: joblog's migrator, then sync-app's own.
    let logger = sync_app::database::open(&db.url)
        .await
        .expect("open a 0.1.0 database");
    drop(logger);
    let after = db.fresh().await;
    let new_history = history(&after).await;
    assert_history_extends(&new_history, &old_history);
    let new_schema = schema(&after).await;
    assert_eq!(
        without_new_tables(&new_schema),
        old_schema,
        "the 0.1.0 tables are untouched"
    );
    assert!(
        new_schema.iter().any(|row| row.contains("joblog_secrets")),
        "the migration added since 0.1.0 ran: {new_schema:#?}"
    );
    assert_eq!(count(&after, "open_orders").await, 12, "the data stays");
    assert_eq!(count(&after, "job_logs").await, runs_before);

    // A fresh database migrated by today's code has the same schema.
    let fresh = TestDb::new(db.backend).await.expect("a second database");
    let fresh_logger = sync_app::database::open(&fresh.url).await.expect("open fresh");
    drop(fresh_logger);
    let fresh_conn = fresh.fresh().await;
    assert_eq!(schema(&fresh_conn).await, new_schema, "fresh and upgraded agree");
    assert_eq!(history(&fresh_conn).await, new_history);
    fresh_conn.close().await.ok();

    // And a sync replaces the old snapshot.
    let logger = sync_app::database::open(&db.url).await.expect("open again");
    let erp = FakeErp::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        FakeErpConfig {
            orders: 30,
            evolve: false,
            ..FakeErpConfig::default()
        },
    )
    .await
    .expect("bind fake ERP")
    .spawn();
    let job = SyncOpenOrdersJob::new(
        ErpSource::from_ado(&erp.ado_string()).expect("ado"),
        DEFAULT_SOURCE_QUERY,
        logger.db().clone(),
    );
    let stats = job.run(&logger).await.expect("sync into the upgraded database");
    assert_eq!((stats.fetched, stats.inserted, stats.previous), (30, 30, 12));
    logger.flush().await.expect("flush");
    assert_eq!(count(&after, "open_orders").await, 30);
    assert_eq!(
        schema(&after).await,
        new_schema,
        "the sync swapped in a table with the same names and definitions"
    );
    after.close().await.ok();
}

backend_tests!(a_database_made_by_0_1_0_migrates_on);

#[test]
fn the_dumps_split_into_statements() {
    for backend in [Backend::Sqlite, Backend::Postgres, Backend::MySql] {
        let stmts = statements(fixture(backend));
        assert!(
            stmts.iter().any(|s| s.contains("sync_app_migrations")),
            "{backend:?}: the dump holds sync-app's history"
        );
        assert!(stmts.iter().all(|s| s.trim_end().ends_with(';')));
    }
}
