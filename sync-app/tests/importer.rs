//! OpenOrdersImporter on SQLite, PostgreSQL and MySQL: exact round trips, atomic
//! replacement, failures that leave the previous snapshot intact, readers that never see
//! a partial table.

mod common;

use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime};
use futures::{Stream, StreamExt, stream};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, Statement};
use sync_app::erp::{RowError, SourceError};
use sync_app::open_orders::query::{self, OrderQuery};
use sync_app::open_orders::{ImportError, OpenOrder, OpenOrdersImporter, Progress, Step};

use common::TestDb;

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Progress for Lines {
    fn info(&self, m: String) {
        self.0.lock().unwrap().push(m);
    }
    fn warn(&self, m: String) {
        self.0.lock().unwrap().push(format!("WARN {m}"));
    }
}

impl Lines {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// Order line `i` of a generation: awkward values on purpose (text that needs escaping
/// in COPY, non-ASCII, extreme decimals, NULLs).
fn order(generation: u32, i: u64) -> OpenOrder {
    let names = [
        "Müller GmbH",
        "Tab\there",
        "Line\nbreak",
        "Back\\slash",
        "O'Brien & Co",
        "日本商事",
    ];
    let mut qty_ordered = d("12.0000") + Decimal::from(i % 7);
    if i % 97 == 0 {
        qty_ordered = d("99999999999999.9999"); // decimal(18,4) at its limit
    }
    let qty_shipped = if i % 3 == 0 { d("0.0000") } else { d("1.2500") };
    let mut qty_open = qty_ordered - qty_shipped;
    qty_open.rescale(4);
    let unit_price = if i % 50 == 0 { d("-1.5000") } else { d("1499.9900") };
    let mut line_amount = (qty_open * unit_price).round_dp(2);
    if i % 97 == 0 {
        line_amount = d("99999999999999999.99");
    }
    line_amount.rescale(2);
    OpenOrder {
        order_no: 100_000 + i as i64,
        line_no: 1 + generation as i32,
        customer_code: format!("C{:05}", i % 500),
        customer_name: names[i as usize % names.len()].to_string(),
        item_code: format!("IT-{:04}", i % 1000),
        item_description: (i % 4 != 0).then(|| format!("Widget {i} – gen {generation}")),
        qty_ordered,
        qty_shipped,
        qty_open,
        unit_price,
        line_amount,
        currency: ["EUR", "USD", "GBP"][i as usize % 3].to_string(),
        order_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(i % 300),
        requested_date: (i % 2 == 0).then(|| NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()),
        promised_date: (i % 5 == 0).then(|| NaiveDate::from_ymd_opt(2027, 1, 15).unwrap()),
        warehouse: (i % 6 != 0).then(|| "W1".to_string()),
        status: "Open".into(),
        rush: i % 11 == 0,
        erp_modified_at: (i % 9 != 0).then(|| {
            NaiveDateTime::parse_from_str("2026-11-20 08:15:30.123", "%Y-%m-%d %H:%M:%S%.f").unwrap()
        }),
    }
}

fn rows(generation: u32, n: u64) -> impl Stream<Item = Result<OpenOrder, SourceError>> + Send {
    stream::iter((0..n).map(move |i| Ok(order(generation, i))))
}

fn bad_row(at: u64) -> SourceError {
    SourceError::Row(RowError {
        row: Some(at),
        order: Some((100_000 + at as i64, 1)),
        column: "customer_code",
        problem: "is NULL where a value is required".into(),
    })
}

async fn setup(db: &TestDb) -> (joblog::JobLogger, OpenOrdersImporter) {
    let logger = sync_app::database::open(&db.url).await.expect("open database");
    let importer = OpenOrdersImporter::new(logger.db().clone());
    (logger, importer)
}

/// Every row of `open_orders`, in id order, read through a separate connection.
async fn all_rows(db: &TestDb) -> Vec<OpenOrder> {
    let conn = db.fresh().await;
    let q = OrderQuery {
        per_page: query::MAX_PER_PAGE,
        ..OrderQuery::default()
    };
    let mut out = Vec::new();
    let mut page = 1;
    loop {
        let p = query::page(&conn, &OrderQuery { page, ..q.clone() })
            .await
            .expect("page");
        if p.rows.is_empty() {
            break;
        }
        out.extend(p.rows.into_iter().map(|r| r.order));
        page += 1;
    }
    conn.close().await.ok();
    out
}

async fn count(conn: &impl ConnectionTrait) -> i64 {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM open_orders",
        ))
        .await
        .expect("count")
        .unwrap();
    row.try_get::<i64>("", "n").expect("n")
}

async fn replaces_exactly_and_atomically(db: TestDb) {
    let (logger, importer) = setup(&db).await;
    let lines = Lines::default();
    let stats = importer
        .replace(rows(0, 25_000), &lines)
        .await
        .expect("first import");
    assert_eq!(
        (stats.fetched, stats.inserted, stats.previous, stats.batches),
        (25_000, 25_000, 0, 3)
    );
    let stored = all_rows(&db).await;
    assert_eq!(stored.len(), 25_000);
    for (i, got) in stored.iter().enumerate() {
        assert_eq!(got, &order(0, i as u64), "row {i} round-trips exactly");
    }
    let log = lines.all();
    for expected in [
        "Fetched 25,000 open orders in",
        "Batch 1 (10,000 rows, 10,000 staged)",
        "Batch 2 (10,000 rows, 20,000 staged)",
        "Batch 3 (5,000 rows, 25,000 staged)",
        "Indexed the new snapshot (25,000 rows, ",
        "Replaced open_orders: 25,000 rows (previous snapshot: 0 rows)",
    ] {
        assert!(
            log.iter().any(|l| l.starts_with(expected)),
            "missing `{expected}` in {log:#?}"
        );
    }
    // Totals are exact on every backend.
    let conn = db.fresh().await;
    let page = query::page(&conn, &OrderQuery::default()).await.unwrap();
    assert_eq!(page.total_rows, 25_000);
    let mut expected = std::collections::BTreeMap::<String, Decimal>::new();
    for i in 0..25_000 {
        let o = order(0, i);
        *expected.entry(o.currency).or_default() += o.line_amount;
    }
    assert_eq!(page.amount_by_currency, expected);

    // A second import replaces everything.
    let stats = importer.replace(rows(1, 3), &lines).await.expect("second import");
    assert_eq!((stats.inserted, stats.previous), (3, 25_000));
    let stored = all_rows(&db).await;
    assert_eq!(stored, (0..3).map(|i| order(1, i)).collect::<Vec<_>>());
    let page = query::page(&conn, &OrderQuery::default()).await.unwrap();
    let mut expected = std::collections::BTreeMap::<String, Decimal>::new();
    for o in &stored {
        *expected.entry(o.currency.clone()).or_default() += o.line_amount;
    }
    assert_eq!((page.total_rows, page.amount_by_currency), (3, expected));

    // An empty source empties the table, with a warning.
    let lines = Lines::default();
    importer.replace(rows(2, 0), &lines).await.expect("empty import");
    assert_eq!(count(&conn).await, 0);
    assert!(
        lines
            .all()
            .iter()
            .any(|l| l.starts_with("WARN Source returned 0 rows"))
    );
    logger.flush().await.ok();
}

async fn a_source_failure_leaves_the_previous_snapshot(db: TestDb) {
    let (logger, importer) = setup(&db).await;
    importer
        .replace(rows(0, 1_000), &Lines::default())
        .await
        .expect("first import");
    let before = all_rows(&db).await;
    // Fails after 5,000 rows: several staged batches on every backend.
    let failing = rows(1, 5_000)
        .chain(stream::iter([Err(bad_row(5_000))]))
        .chain(rows(1, 10));
    let err = importer.replace(failing, &Lines::default()).await.unwrap_err();
    match &err {
        ImportError::Source { rows, .. } => assert_eq!(*rows, 5_000),
        other => panic!("expected a source error, got {other:?}"),
    }
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(
        chain.contains("order 105000 line 1 (row 5001): column `customer_code` is NULL"),
        "{chain}"
    );
    assert_eq!(all_rows(&db).await, before, "previous snapshot intact");
    assert!(
        !has_shadow(&db).await,
        "the shadow table is dropped after a failure"
    );
    // The connection the importer used is fine for the next import.
    importer
        .replace(rows(2, 10), &Lines::default())
        .await
        .expect("import after failure");
    assert_eq!(all_rows(&db).await.len(), 10);
    logger.flush().await.ok();
}

async fn a_local_failure_leaves_the_previous_snapshot(db: TestDb) {
    let (logger, importer) = setup(&db).await;
    importer
        .replace(rows(0, 1_000), &Lines::default())
        .await
        .expect("first import");
    let before = all_rows(&db).await;
    // The same order line twice: building the unique index on the shadow table fails.
    let dup = rows(1, 15_000).chain(rows(1, 1));
    let err = importer.replace(dup, &Lines::default()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Local {
                step: "indexing open_orders_next",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(all_rows(&db).await, before, "previous snapshot intact");
    importer
        .replace(rows(2, 10), &Lines::default())
        .await
        .expect("import after failure");
    assert_eq!(all_rows(&db).await.len(), 10);
    logger.flush().await.ok();
}

async fn readers_see_the_old_or_the_new_snapshot(db: TestDb) {
    let (logger, importer) = setup(&db).await;
    importer
        .replace(rows(0, 1_000), &Lines::default())
        .await
        .expect("first import");
    let reader = db.fresh().await;
    let done = AtomicBool::new(false);
    let seen = Mutex::new(Vec::new());
    // A slow source: 30,000 rows with pauses, so the reader polls throughout.
    let slow = rows(1, 30_000).then(|r| async move {
        if let Ok(o) = &r {
            if o.order_no % 1_000 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        r
    });
    let import = async {
        let r = importer.replace(slow, &Lines::default()).await;
        done.store(true, Ordering::SeqCst);
        r
    };
    let poll = async {
        while !done.load(Ordering::SeqCst) {
            seen.lock().unwrap().push(count(&reader).await);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let (result, ()) = tokio::join!(import, poll);
    result.expect("import");
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.iter().all(|n| *n == 1_000 || *n == 30_000),
        "partial snapshot seen: {seen:?}"
    );
    assert!(seen.contains(&1_000), "the reader polled during the import");
    assert_eq!(count(&reader).await, 30_000);
    logger.flush().await.ok();
}

/// While rows are being staged, joblog can still write (on SQLite, a long write
/// transaction would block it): the stream only goes on once a run written in the middle
/// of the import is durable.
async fn joblog_writes_go_on_while_staging(db: TestDb) {
    let (logger, importer) = setup(&db).await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rx = std::sync::Mutex::new(Some(rx));
    let gated = rows(0, 20_000).then(|r| {
        let wait = match &r {
            Ok(o) if o.order_no == 110_000 => rx.lock().unwrap().take(),
            _ => None,
        };
        async move {
            if let Some(rx) = wait {
                let _ = rx.await;
            }
            r
        }
    });
    let lines = Lines::default();
    let import = importer.replace(gated, &lines);
    let side = async {
        // Wait until the import has staged rows (its gate is reached), then write a run.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let run = logger.start("SideJob").await.expect("start");
        run.detail("written while the import stages rows");
        run.success().await.expect("success is durable");
        tx.send(()).unwrap();
    };
    let (result, ()) = tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(import, side) })
        .await
        .expect("joblog's write was blocked by the import");
    result.expect("import");
    logger.flush().await.ok();
}

/// Progress that fires `notify` at the first line starting with its prefix, or (prefix
/// `index`) when the index builds on the shadow table begin.
struct CancelAt(&'static str, std::sync::Arc<tokio::sync::Notify>);

impl Progress for CancelAt {
    fn info(&self, m: String) {
        if m.starts_with(self.0) {
            self.1.notify_one();
        }
    }
    fn warn(&self, _: String) {}
    fn step(&self, step: Step) {
        if self.0 == "index" && matches!(step, Step::Indexing { index: 0, .. }) {
            self.1.notify_one();
        }
        if let Some(line) = step.line() {
            self.info(line);
        }
    }
}

/// An import abandoned half-way (its future dropped: a shutdown, a timeout, as good as a
/// killed process for the database) — while reading the source, after staged chunks were
/// committed to `open_orders_next`, while indexing it — changes nothing, holds no lock, and
/// the next import works (dropping what was left behind).
async fn an_abandoned_import_changes_nothing(db: TestDb) {
    let (logger, importer) = setup(&db).await;
    importer
        .replace(rows(0, 1_000), &Lines::default())
        .await
        .expect("first import");
    let before = all_rows(&db).await;
    let catalog_before = catalog(&db).await;

    // Dropped while staging: the source never ends.
    let endless = rows(1, 5_000).chain(stream::pending());
    let lines = Lines::default();
    let staged = tokio::time::timeout(Duration::from_millis(500), importer.replace(endless, &lines));
    assert!(staged.await.is_err(), "the import cannot finish");
    assert_eq!(all_rows(&db).await, before);

    // Dropped after its first chunk is committed to the shadow table, then while indexing.
    for at in ["Batch 1 ", "index"] {
        let notify = std::sync::Arc::new(tokio::sync::Notify::new());
        let progress = CancelAt(at, notify.clone());
        tokio::select! {
            biased;
            () = notify.notified() => {}
            r = importer.replace(rows(2, 25_000), &progress) => panic!("the import was not interrupted at {at}: {r:?}"),
        }
        assert_eq!(all_rows(&db).await, before, "previous snapshot intact ({at})");
    }

    // No lock is left behind: joblog can write, and so can the next import.
    tokio::time::timeout(Duration::from_secs(30), async {
        let run = logger.start("AfterCancel").await.expect("start");
        run.success().await.expect("success is durable");
        importer
            .replace(rows(3, 10), &Lines::default())
            .await
            .expect("next import");
    })
    .await
    .expect("a lock was left behind by the abandoned import");
    assert_eq!(all_rows(&db).await.len(), 10);
    assert_eq!(catalog(&db).await, catalog_before, "no leftovers, same schema");
    logger.flush().await.ok();
}

/// Two imports at once (a manual `sync` while `serve` runs): the table ends up as exactly
/// one of the two snapshots, never a mix, and each reports what it really replaced.
async fn concurrent_imports_never_mix(db: TestDb) {
    let (logger, importer) = setup(&db).await;
    importer
        .replace(rows(0, 1_000), &Lines::default())
        .await
        .expect("first import");
    let other = OpenOrdersImporter::new(logger.db().clone());
    let (la, lb) = (Lines::default(), Lines::default());
    let (a, b) = tokio::join!(
        importer.replace(rows(1, 20_000), &la),
        other.replace(rows(2, 100), &lb)
    );
    let (a, b) = (a.expect("import a"), b.expect("import b"));
    let table = all_rows(&db).await;
    let a_rows: Vec<OpenOrder> = (0..20_000).map(|i| order(1, i)).collect();
    let b_rows: Vec<OpenOrder> = (0..100).map(|i| order(2, i)).collect();
    if table == b_rows {
        assert_eq!(
            (a.previous, b.previous),
            (1_000, 20_000),
            "a swapped first, then b"
        );
    } else {
        assert!(table == a_rows, "a mix of both snapshots: {} rows", table.len());
        assert_eq!((b.previous, a.previous), (1_000, 100), "b swapped first, then a");
    }
    logger.flush().await.ok();
}

/// A failed import (here MySQL refuses an over-long value while staging) leaves no
/// pooled connection inside a transaction: every connection of the pool sees the next
/// import.
async fn a_failed_import_leaves_no_open_transaction(db: TestDb) {
    let (logger, importer) = setup(&db).await;
    importer
        .replace(rows(0, 10), &Lines::default())
        .await
        .expect("first import");
    let mut bad = order(1, 5_000);
    bad.customer_code = "X".repeat(300);
    let failing = rows(1, 3_500).chain(stream::iter([Ok(bad)]));
    let _ = importer.replace(failing, &Lines::default()).await;
    logger.flush().await.unwrap();
    // No session of this database sits in an open transaction.
    let watcher = db.fresh().await;
    let backend = watcher.get_database_backend();
    let open_sql = match backend {
        sea_orm::DbBackend::Postgres => Some(
            "SELECT COUNT(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        ),
        sea_orm::DbBackend::MySql => Some(
            "SELECT COUNT(*) AS n FROM information_schema.innodb_trx t \
             JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id WHERE p.db = DATABASE()",
        ),
        _ => None,
    };
    if let Some(sql) = open_sql {
        let row = watcher
            .query_one_raw(Statement::from_string(backend, sql))
            .await
            .unwrap()
            .unwrap();
        let open: i64 = row.try_get("", "n").unwrap();
        assert_eq!(open, 0, "a connection was left inside a transaction");
    }
    importer
        .replace(rows(2, 77), &Lines::default())
        .await
        .expect("import after failure");
    // Hold every connection of the pool at once and look through each (plain queries:
    // a BEGIN would commit a leaked MySQL transaction and hide it).
    let db_conn = logger.db().clone();
    macro_rules! each_connection {
        ($pool:expr) => {{
            let mut held = Vec::new();
            for _ in 0..10 {
                held.push($pool.acquire().await.expect("a pooled connection"));
            }
            for c in held.iter_mut() {
                let n: i64 = sea_orm::sqlx::query_scalar("SELECT COUNT(*) FROM open_orders")
                    .fetch_one(&mut **c)
                    .await
                    .unwrap();
                assert_eq!(n, 77, "a pooled connection saw an old snapshot");
            }
            held
        }};
    }
    match db_conn.get_database_backend() {
        sea_orm::DbBackend::Sqlite => drop(each_connection!(db_conn.get_sqlite_connection_pool())),
        sea_orm::DbBackend::Postgres => drop(each_connection!(db_conn.get_postgres_connection_pool())),
        _ => drop(each_connection!(db_conn.get_mysql_connection_pool())),
    }
    logger.flush().await.ok();
}

/// The catalog's description of `open_orders` and everything named after it: columns,
/// indexes with their definitions, constraints, sequences — and any other table.
async fn catalog(db: &TestDb) -> Vec<String> {
    let conn = db.fresh().await;
    let backend = conn.get_database_backend();
    let queries: &[&str] = match backend {
        sea_orm::DbBackend::Sqlite => &[
            "SELECT type || '|' || name || '|' || tbl_name || '|' || COALESCE(sql, '') AS r \
             FROM sqlite_master WHERE name NOT LIKE 'sqlite_autoindex%' ORDER BY type, name",
            "SELECT integrity_check AS r FROM pragma_integrity_check",
        ],
        sea_orm::DbBackend::Postgres => &[
            "SELECT concat_ws('|', table_name, column_name, data_type, is_nullable, column_default, \
             is_identity, identity_generation, character_maximum_length, numeric_precision, numeric_scale) AS r \
             FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
            "SELECT concat_ws('|', tablename, indexname, indexdef) AS r FROM pg_indexes \
             WHERE schemaname = 'public' ORDER BY indexname",
            "SELECT concat_ws('|', conrelid::regclass::text, conname, pg_get_constraintdef(oid)) AS r \
             FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY conname",
            "SELECT concat_ws('|', sequencename, data_type::text) AS r FROM pg_sequences \
             WHERE schemaname = 'public' ORDER BY sequencename",
            "SELECT concat_ws('|', 'serial', pg_get_serial_sequence('open_orders', 'id')) AS r",
            "SELECT concat_ws('|', 'table', tablename) AS r FROM pg_tables WHERE schemaname = 'public' \
             ORDER BY tablename",
        ],
        _ => &[
            "SELECT CONCAT_WS('|', TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, \
             COALESCE(CAST(COLUMN_DEFAULT AS CHAR), 'NULL'), COALESCE(COLLATION_NAME, ''), EXTRA) AS r \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
             ORDER BY TABLE_NAME, ORDINAL_POSITION",
            "SELECT CONCAT_WS('|', TABLE_NAME, INDEX_NAME, CAST(SEQ_IN_INDEX AS CHAR), COLUMN_NAME, \
             CAST(NON_UNIQUE AS CHAR), INDEX_TYPE, COALESCE(CAST(SUB_PART AS CHAR), '')) AS r \
             FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() \
             ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
            "SELECT CONCAT_WS('|', TABLE_NAME, ENGINE, TABLE_COLLATION) AS r FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME",
        ],
    };
    let mut out = Vec::new();
    for sql in queries {
        for row in conn
            .query_all_raw(Statement::from_string(backend, *sql))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
        {
            out.push(row.try_get::<String>("", "r").expect("r"));
        }
    }
    conn.close().await.ok();
    out
}

async fn has_shadow(db: &TestDb) -> bool {
    catalog(db)
        .await
        .iter()
        .any(|r| r.contains("open_orders_next") || r.contains("open_orders_old"))
}

/// After syncs, `open_orders` has exactly the columns, indexes (names and definitions),
/// constraints and sequence it had when the migrations made it; SQLite's integrity check
/// (every index matches its table) passes; and no shadow table is left.
async fn the_swap_keeps_names_and_definitions(db: TestDb) {
    let (logger, importer) = setup(&db).await;
    let before = catalog(&db).await;
    assert!(
        before.iter().any(|r| r.contains("idx_open_orders_status")),
        "{before:#?}"
    );
    for generation in 0..2 {
        importer
            .replace(rows(generation, 12_345), &Lines::default())
            .await
            .expect("import");
        assert_eq!(catalog(&db).await, before, "after sync {generation}");
    }
    // The indexes are the ones the queries use: a unique violation is still caught.
    let conn = db.fresh().await;
    let dup = conn
        .execute_unprepared(
            "INSERT INTO open_orders (order_no, line_no, customer_code, customer_name, item_code, \
             qty_ordered, qty_shipped, qty_open, unit_price, line_amount, currency, order_date, status, \
             rush, synced_at) SELECT order_no, line_no, customer_code, customer_name, item_code, qty_ordered, \
             qty_shipped, qty_open, unit_price, line_amount, currency, order_date, status, rush, synced_at \
             FROM open_orders WHERE order_no = 100000",
        )
        .await;
    assert!(
        dup.is_err(),
        "uq_open_orders_order_line still enforces uniqueness"
    );
    conn.close().await.ok();
    assert_eq!(
        all_rows(&db).await,
        (0..12_345).map(|i| order(1, i)).collect::<Vec<_>>()
    );
    logger.flush().await.ok();
}

/// A sync killed earlier left `open_orders_next` (with indexes named like the ones a sync
/// builds) behind: the next sync drops it and succeeds, and a sync whose source fails
/// after many rows leaves the old snapshot and no shadow table.
async fn leftovers_of_a_killed_sync_are_dropped(db: TestDb) {
    let (logger, importer) = setup(&db).await;
    importer
        .replace(rows(0, 1_000), &Lines::default())
        .await
        .expect("first import");
    let before_rows = all_rows(&db).await;
    let before = catalog(&db).await;
    let conn = db.fresh().await;
    conn.execute_unprepared("CREATE TABLE open_orders_next (order_no BIGINT, status VARCHAR(20))")
        .await
        .expect("a leftover shadow table");
    conn.execute_unprepared("CREATE INDEX idx_open_orders_status_next ON open_orders_next (status)")
        .await
        .expect("a leftover index");
    conn.execute_unprepared("INSERT INTO open_orders_next VALUES (1, 'x')")
        .await
        .unwrap();
    if conn.get_database_backend() == sea_orm::DbBackend::MySql {
        conn.execute_unprepared("CREATE TABLE open_orders_old (x INT)")
            .await
            .expect("a leftover old table");
    }
    if conn.get_database_backend() == sea_orm::DbBackend::Sqlite {
        // The search index a killed sync was filling for its shadow table.
        conn.execute_unprepared(
            "CREATE VIRTUAL TABLE open_orders_next_fts USING fts5(customer_code, customer_name, \
             item_code, item_description, content='open_orders', content_rowid='id', tokenize='trigram')",
        )
        .await
        .expect("a leftover FTS table");
        conn.execute_unprepared(
            "INSERT INTO open_orders_next_fts (rowid, customer_name) VALUES (1, 'half done')",
        )
        .await
        .expect("a leftover FTS row");
    }
    conn.close().await.ok();
    assert_eq!(all_rows(&db).await, before_rows, "readers are not affected");

    // Fails after 25,000 rows (two chunks committed to the shadow table).
    let failing = rows(1, 25_000).chain(stream::iter([Err(bad_row(25_000))]));
    let err = importer.replace(failing, &Lines::default()).await.unwrap_err();
    assert!(matches!(err, ImportError::Source { rows: 25_000, .. }), "{err:?}");
    assert_eq!(all_rows(&db).await, before_rows, "previous snapshot intact");
    assert_eq!(
        catalog(&db).await,
        before,
        "leftovers and the failed shadow table dropped"
    );

    let stats = importer
        .replace(rows(2, 20_001), &Lines::default())
        .await
        .expect("import after the leftovers");
    assert_eq!(
        (stats.inserted, stats.previous, stats.batches),
        (20_001, 1_000, 3)
    );
    assert_eq!(all_rows(&db).await.len(), 20_001);
    assert_eq!(catalog(&db).await, before);
    logger.flush().await.ok();
}

/// The search index covers every row a sync writes: SQLite fills it in ranges of 50,000
/// ids (each its own transaction), so rows on both sides of each range's edge are found,
/// the FTS5 table holds one entry a row, and its integrity check passes.
async fn the_search_index_covers_every_row(db: TestDb) {
    let (logger, importer) = setup(&db).await;
    let n = 120_001;
    importer
        .replace(rows(0, n), &Lines::default())
        .await
        .expect("import");
    let conn = db.fresh().await;
    for i in [1u64, 49_999, 50_001, 100_001, 119_999] {
        let q = OrderQuery {
            search: Some(format!("Widget {i} –")),
            ..OrderQuery::default()
        };
        let page = query::page(&conn, &q).await.expect("search");
        assert_eq!(
            page.rows.iter().map(|r| r.order.order_no).collect::<Vec<_>>(),
            [100_000 + i as i64],
            "{:?}: row {i}",
            db.backend
        );
    }
    if conn.get_database_backend() == sea_orm::DbBackend::Sqlite {
        let entries = conn
            .query_one_raw(Statement::from_string(
                sea_orm::DbBackend::Sqlite,
                "SELECT COUNT(*) AS n FROM open_orders_fts_docsize",
            ))
            .await
            .expect("count")
            .expect("a row")
            .try_get::<i64>("", "n")
            .expect("n");
        assert_eq!(entries, n as i64, "one index entry a row");
        conn.execute_unprepared(
            "INSERT INTO open_orders_fts (open_orders_fts, rank) VALUES ('integrity-check', 1)",
        )
        .await
        .expect("the FTS index matches open_orders");
    }
    conn.close().await.ok();
    logger.flush().await.ok();
}

backend_tests!(
    the_swap_keeps_names_and_definitions,
    the_search_index_covers_every_row,
    leftovers_of_a_killed_sync_are_dropped,
    concurrent_imports_never_mix,
    a_failed_import_leaves_no_open_transaction,
    an_abandoned_import_changes_nothing,
    replaces_exactly_and_atomically,
    a_source_failure_leaves_the_previous_snapshot,
    a_local_failure_leaves_the_previous_snapshot,
    readers_see_the_old_or_the_new_snapshot,
    joblog_writes_go_on_while_staging,
);
