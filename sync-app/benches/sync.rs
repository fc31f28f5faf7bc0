//! A sync of N open orders (default 1,000,000) from the fake ERP into SQLite and
//! PostgreSQL, next to the two limits it is measured against, in one run:
//!
//! - **source limit**: tiberius alone draining the same result from the same fake ERP
//!   (rows decoded and dropped);
//! - **sink limit**: the fastest raw load of the same rows into the same `open_orders`
//!   table (SQLite: one prepared INSERT per row in one transaction, and multi-row INSERTs
//!   in one transaction — the faster counts; PostgreSQL: `COPY … FROM STDIN`), rows
//!   generated in memory before the clock starts;
//! - **floor**: what the engine itself needs to build the table the sync builds, data
//!   already at hand (SQLite: an in-engine `INSERT … SELECT` from `open_orders` into an
//!   unindexed table of the same definition, then `CREATE INDEX` of each of its indexes;
//!   PostgreSQL: `COPY` into an unindexed table, then its primary key and index builds);
//! - **sync-app**: the `sync-app sync` command as a child process (connect, stream, stage,
//!   swap, every log line; process start and the migration check included) into an empty
//!   table, then again replacing the N rows it wrote.
//!
//! `SYNC_BENCH_KEEP_DB=1` keeps the database, to look at plans.
//! `SYNC_BENCH_SHOW_OUTPUT=1` prints what `sync-app sync` printed (its steps and their times).
//!
//! Peak memory: for sync-app, the child process's own peak RSS (`VmHWM`); for the limits,
//! this process's peak RSS during the step (reset through `/proc/self/clear_refs`; the fake
//! ERP runs in this process, and the raw loads hold their rows in memory).
//!
//! ```text
//! cargo bench -p sync-app --bench sync -- [--rows N[,N…]] [--backends sqlite,postgres,mysql] [--svg PATH] [--help]
//! ```

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use chrono::Utc;
use futures::StreamExt;
use sea_orm::sqlx;
use sea_orm::{ConnectionTrait, Database};
use sync_app::erp::DEFAULT_SOURCE_QUERY;
use sync_app::fake_erp::{FakeErp, FakeErpConfig, OrderLine, order_lines};
use tokio_util::compat::TokioAsyncWriteCompatExt;

#[path = "../../joblog/benches/support/chart.rs"]
mod chart;

const SEED: u64 = 42;

fn peak_reset() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory since the last reset, in MB.
fn peak_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Resident memory now, in MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

struct Row {
    label: String,
    rows: u64,
    time: Duration,
    peak: f64,
}

use joblog::format::count as thousands;

async fn source_limit(ado: &str, rows: u64) -> Result<Row> {
    peak_reset();
    let config = tiberius::Config::from_ado_string(ado)?;
    let t0 = Instant::now();
    let tcp = tokio::net::TcpStream::connect(config.get_addr()).await?;
    tcp.set_nodelay(true)?;
    let mut client = tiberius::Client::connect(config, tcp.compat_write()).await?;
    let mut stream = client.simple_query(DEFAULT_SOURCE_QUERY).await?.into_row_stream();
    let mut n = 0u64;
    while let Some(row) = stream.next().await {
        std::hint::black_box(row?);
        n += 1;
    }
    drop(stream);
    let time = t0.elapsed();
    anyhow::ensure!(n == rows, "tiberius read {n} rows, expected {rows}");
    Ok(Row {
        label: "source limit: tiberius alone draining the result".into(),
        rows: n,
        time,
        peak: peak_mb(),
    })
}

fn lines(rows: u64) -> Vec<OrderLine> {
    order_lines(SEED, 0, rows).collect()
}

async fn sink_limit_sqlite(url: &str, rows: u64) -> Result<Row> {
    let data = lines(rows);
    let db = Database::connect(url).await?;
    db.execute_unprepared("DELETE FROM open_orders").await?;
    let pool = db.get_sqlite_connection_pool();
    let at = Utc::now();
    peak_reset();
    let t0 = Instant::now();
    let mut tx = pool.begin().await?;
    for l in &data {
        sqlx::query(
            "INSERT INTO open_orders (order_no, line_no, customer_code, customer_name, item_code, \
             item_description, qty_ordered, qty_shipped, qty_open, unit_price, line_amount, currency, \
             order_date, requested_date, promised_date, warehouse, status, rush, erp_modified_at, synced_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(l.order_no)
        .bind(l.line_no)
        .bind(l.customer_code.as_str())
        .bind(l.customer_name.as_str())
        .bind(l.item_code.as_str())
        .bind(l.item_description.as_deref())
        .bind(l.qty_ordered.to_string())
        .bind(l.qty_shipped.to_string())
        .bind(l.qty_open.to_string())
        .bind(l.unit_price.to_string())
        .bind(l.line_amount.to_string())
        .bind(l.currency.as_str())
        .bind(l.order_date)
        .bind(l.requested_date)
        .bind(l.promised_date)
        .bind(l.warehouse.as_deref())
        .bind(l.status.as_str())
        .bind(l.rush)
        .bind(l.modified_at.and_utc())
        .bind(at)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let time = t0.elapsed();
    Ok(Row {
        label: "sink limit: one prepared INSERT per row, one transaction".into(),
        rows,
        time,
        peak: peak_mb(),
    })
}

/// The same rows as multi-row INSERTs of 1,638 rows (SQLite's bind limit / 20 columns)
/// in one transaction: what sync-app's staging does, straight through sqlx.
async fn sink_limit_sqlite_multi(url: &str, rows: u64) -> Result<Row> {
    let data = lines(rows);
    let db = Database::connect(url).await?;
    db.execute_unprepared("DELETE FROM open_orders").await?;
    let pool = db.get_sqlite_connection_pool();
    let at = Utc::now();
    peak_reset();
    let t0 = Instant::now();
    let mut tx = pool.begin().await?;
    for chunk in data.chunks(32_766 / 20) {
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO open_orders (order_no, line_no, customer_code, customer_name, item_code, \
             item_description, qty_ordered, qty_shipped, qty_open, unit_price, line_amount, currency, \
             order_date, requested_date, promised_date, warehouse, status, rush, erp_modified_at, synced_at) ",
        );
        qb.push_values(chunk, |mut b, l| {
            b.push_bind(l.order_no)
                .push_bind(l.line_no)
                .push_bind(l.customer_code.as_str())
                .push_bind(l.customer_name.as_str())
                .push_bind(l.item_code.as_str())
                .push_bind(l.item_description.as_deref())
                .push_bind(l.qty_ordered.to_string())
                .push_bind(l.qty_shipped.to_string())
                .push_bind(l.qty_open.to_string())
                .push_bind(l.unit_price.to_string())
                .push_bind(l.line_amount.to_string())
                .push_bind(l.currency.as_str())
                .push_bind(l.order_date)
                .push_bind(l.requested_date)
                .push_bind(l.promised_date)
                .push_bind(l.warehouse.as_deref())
                .push_bind(l.status.as_str())
                .push_bind(l.rush)
                .push_bind(l.modified_at.and_utc())
                .push_bind(at);
        });
        qb.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let time = t0.elapsed();
    Ok(Row {
        label: "sink limit: multi-row INSERTs of 1,638 rows, one transaction".into(),
        rows,
        time,
        peak: peak_mb(),
    })
}

fn copy_text(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

async fn sink_limit_postgres(url: &str, rows: u64) -> Result<Row> {
    let db = Database::connect(url).await?;
    db.execute_unprepared("DELETE FROM open_orders").await?;
    let (time, peak) = copy_postgres(&db, rows, "open_orders").await?;
    Ok(Row {
        label: "sink limit: COPY open_orders FROM STDIN (text)".into(),
        rows,
        time,
        peak,
    })
}

/// COPY of the N rows (generated before the clock starts) into `table`: time and peak RSS.
async fn copy_postgres(db: &sea_orm::DatabaseConnection, rows: u64, table: &str) -> Result<(Duration, f64)> {
    use sqlx::postgres::PgPoolCopyExt;
    let data = lines(rows);
    let pool = db.get_postgres_connection_pool();
    let at = Utc::now().format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
    peak_reset();
    let t0 = Instant::now();
    let mut copy = pool
        .copy_in_raw(&format!(
            "COPY {table} (order_no, line_no, customer_code, customer_name, item_code, item_description, \
             qty_ordered, qty_shipped, qty_open, unit_price, line_amount, currency, order_date, requested_date, \
             promised_date, warehouse, status, rush, erp_modified_at, synced_at) FROM STDIN"
        ))
        .await?;
    let mut buf = String::with_capacity(1 << 20);
    let opt = |out: &mut String, v: Option<String>| match v {
        Some(v) => copy_text(out, &v),
        None => out.push_str("\\N"),
    };
    for l in &data {
        let _ = write!(buf, "{}\t{}\t", l.order_no, l.line_no);
        copy_text(&mut buf, &l.customer_code);
        buf.push('\t');
        copy_text(&mut buf, &l.customer_name);
        buf.push('\t');
        copy_text(&mut buf, &l.item_code);
        buf.push('\t');
        opt(&mut buf, l.item_description.clone());
        let _ = write!(
            buf,
            "\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t",
            l.qty_ordered, l.qty_shipped, l.qty_open, l.unit_price, l.line_amount, l.currency, l.order_date
        );
        opt(&mut buf, l.requested_date.map(|d| d.to_string()));
        buf.push('\t');
        opt(&mut buf, l.promised_date.map(|d| d.to_string()));
        buf.push('\t');
        opt(&mut buf, l.warehouse.clone());
        buf.push('\t');
        copy_text(&mut buf, &l.status);
        let _ = writeln!(
            buf,
            "\t{}\t{}+00\t{at}",
            if l.rush { 't' } else { 'f' },
            l.modified_at.format("%Y-%m-%d %H:%M:%S%.f")
        );
        if buf.len() >= 1 << 20 {
            copy.send(std::mem::take(&mut buf).into_bytes()).await?;
            buf.reserve(1 << 20);
        }
    }
    copy.send(buf.into_bytes()).await?;
    copy.finish().await?;
    Ok((t0.elapsed(), peak_mb()))
}

/// The engine's floor for replacing the table, PostgreSQL: COPY the rows into an unindexed
/// copy of `open_orders` (`LIKE … EXCLUDING INDEXES`), then build its primary key and the
/// live table's indexes (read from `pg_indexes`) on it.
async fn floor_postgres(url: &str, rows: u64) -> Result<Row> {
    let db = Database::connect(url).await?;
    db.execute_unprepared("DROP TABLE IF EXISTS floor_copy").await?;
    let defs: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = 'open_orders' ORDER BY indexname",
    )
    .fetch_all(db.get_postgres_connection_pool())
    .await?;
    db.execute_unprepared("CREATE TABLE floor_copy (LIKE open_orders INCLUDING ALL EXCLUDING INDEXES)")
        .await?;
    let (copy_time, peak) = copy_postgres(&db, rows, "floor_copy").await?;
    let t0 = Instant::now();
    for (name, def) in &defs {
        let on = def.find(" ON ").context("indexdef")?;
        let using = on + def[on..].find(" USING ").context("indexdef")?;
        let unique = if def.starts_with("CREATE UNIQUE") {
            "UNIQUE "
        } else {
            ""
        };
        // The sort memory the sync's own index builds get (one string: one connection).
        db.execute_unprepared(&format!(
            "SET maintenance_work_mem = '256MB'; CREATE {unique}INDEX {name}_floor ON floor_copy{}",
            &def[using..]
        ))
        .await?;
    }
    let time = copy_time + t0.elapsed();
    db.execute_unprepared("DROP TABLE floor_copy").await?;
    Ok(Row {
        label: format!(
            "floor: COPY into an unindexed table ({:.2} s) + {} index builds ({:.2} s)",
            copy_time.as_secs_f64(),
            defs.len(),
            (time - copy_time).as_secs_f64()
        ),
        rows,
        time,
        peak,
    })
}

/// The engine's floor for replacing the table, SQLite: with the N rows in `open_orders`,
/// an in-engine `INSERT … SELECT` into an unindexed table of the same definition, then
/// `CREATE INDEX` of each of the live table's indexes (from `sqlite_master`) on it.
async fn floor_sqlite(url: &str, rows: u64) -> Result<Row> {
    let db = Database::connect(url).await?;
    let pool = db.get_sqlite_connection_pool();
    db.execute_unprepared("DROP TABLE IF EXISTS floor_copy").await?;
    let table: String =
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'open_orders'")
            .fetch_one(pool)
            .await?;
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'open_orders' AND sql IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM open_orders")
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(n as u64 == rows, "open_orders holds {n} rows, not {rows}");
    let has_fts: bool =
        sqlx::query_scalar("SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = 'open_orders_fts'")
            .fetch_one(pool)
            .await?;
    db.execute_unprepared(&table.replacen("\"open_orders\"", "\"floor_copy\"", 1))
        .await?;
    peak_reset();
    let t0 = Instant::now();
    db.execute_unprepared("INSERT INTO floor_copy SELECT * FROM open_orders")
        .await?;
    let copy_time = t0.elapsed();
    for sql in &indexes {
        let sql = sql.replacen("\" ON \"open_orders\"", "_floor\" ON \"floor_copy\"", 1);
        db.execute_unprepared(&sql).await?;
    }
    // The search's FTS table, as the live table has one: filled in-engine in one statement.
    let fts = if has_fts {
        db.execute_unprepared(
            "CREATE VIRTUAL TABLE floor_fts USING fts5(customer_code, customer_name, item_code, \
             item_description, content='floor_copy', content_rowid='id', tokenize='trigram')",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO floor_fts (rowid, customer_code, customer_name, item_code, item_description) \
             SELECT id, customer_code, customer_name, item_code, item_description FROM floor_copy",
        )
        .await?;
        " + the search's FTS5 table"
    } else {
        ""
    };
    let time = t0.elapsed();
    db.execute_unprepared("DROP TABLE IF EXISTS floor_fts").await?;
    db.execute_unprepared("DROP TABLE floor_copy").await?;
    Ok(Row {
        label: format!(
            "floor: in-engine INSERT…SELECT into an unindexed table ({:.2} s) + {} CREATE INDEX{fts} ({:.2} s)",
            copy_time.as_secs_f64(),
            indexes.len(),
            (time - copy_time).as_secs_f64()
        ),
        rows,
        time,
        peak: peak_mb(),
    })
}

/// The Open Orders search on the table the sync just wrote: `page_consistent` (the page's
/// rows and its totals, as the page asks for them) for a few terms taken from the data,
/// median and p95 of 20 calls after 2 warm-up calls; next to each, the same conditions
/// without the index (one `COUNT(*)`, 3 calls, median) — what every search cost before.
async fn search_times(url: &str, backend: &str, rows: u64) -> Result<()> {
    use sync_app::open_orders::query::{OrderQuery, page_consistent};
    let db = Database::connect(url).await?;
    let sample = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT customer_name, customer_code, item_code, order_no FROM open_orders \
                 ORDER BY id LIMIT 1 OFFSET {}",
                rows / 2
            ),
        ))
        .await?
        .context("a row in the middle")?;
    let name: String = sample.try_get_by_index(0)?;
    let code: String = sample.try_get_by_index(1)?;
    let item: String = sample.try_get_by_index(2)?;
    let order_no: i64 = sample.try_get_by_index(3)?;
    let part: String = name.chars().skip(1).take(5).collect();
    let cases = [
        ("no match", "zzznothing".to_string()),
        ("an order number", order_no.to_string()),
        ("a customer's name", name.clone()),
        ("part of a name", part),
        ("a customer code", code),
        ("an item code", item),
    ];
    let like = if backend == "postgres" { "ILIKE" } else { "LIKE" };
    println!(
        "\n{backend}: Open Orders search at {} rows (the page's rows and totals; median / p95 of 20)\n",
        thousands(rows)
    );
    println!("| term | matching rows | indexed: median ms | p95 ms | scan (no index): median ms |");
    println!("|---|---:|---:|---:|---:|");
    for (what, term) in cases {
        let q = OrderQuery {
            search: Some(term.clone()),
            ..OrderQuery::default()
        };
        let mut times = Vec::new();
        let mut matching = 0;
        for i in 0..22 {
            let t0 = Instant::now();
            let page = page_consistent(&db, &q).await?;
            if i >= 2 {
                times.push(t0.elapsed());
            }
            matching = page.total_rows;
        }
        times.sort();
        let escaped = term
            .replace('!', "!!")
            .replace('%', "!%")
            .replace('_', "!_")
            .replace('\'', "''");
        let number = term
            .parse::<i64>()
            .map(|n| format!("order_no = {n} OR "))
            .unwrap_or_default();
        // `(column || '')`: the same conditions on text no index covers (PostgreSQL's
        // trigram index is over the columns themselves), so this is the table read.
        let scan_sql = format!(
            "SELECT COUNT(*) FROM open_orders WHERE {number}(customer_code || '') {like} '{escaped}%' ESCAPE '!' \
             OR (item_code || '') {like} '{escaped}%' ESCAPE '!' OR (customer_name || '') {like} '%{escaped}%' ESCAPE '!' \
             OR (item_description || '') {like} '%{escaped}%' ESCAPE '!'"
        );
        let mut scans = Vec::new();
        for _ in 0..3 {
            let t0 = Instant::now();
            let n: i64 = db
                .query_one_raw(sea_orm::Statement::from_string(
                    db.get_database_backend(),
                    scan_sql.clone(),
                ))
                .await?
                .context("count")?
                .try_get_by_index(0)?;
            scans.push(t0.elapsed());
            anyhow::ensure!(
                n as u64 == matching,
                "{what}: the scan counts {n}, the page {matching}"
            );
        }
        scans.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {what} (`{term}`) | {} | {:.2} | {:.2} | {:.2} |",
            thousands(matching),
            ms(times[times.len() / 2]),
            ms(times[times.len() * 95 / 100]),
            ms(scans[1])
        );
    }
    db.close().await.ok();
    Ok(())
}

/// `sync-app sync` itself, as a child process (the binary this package builds): its wall
/// time, and its own peak RSS, polled from `/proc/<pid>/status` until it exits.
async fn ours(url: &str, ado: &str, rows: u64, label: &str) -> Result<Row> {
    let t0 = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sync-app"))
        .arg("sync")
        .env("DATABASE_URL", url)
        .env("MSSQL_URL", ado)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("spawning sync-app sync")?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0f64;
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let time = t0.elapsed();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out)?;
    anyhow::ensure!(status.success(), "sync-app sync failed: {out}");
    if std::env::var_os("SYNC_BENCH_SHOW_OUTPUT").is_some() {
        // Its own lines (each step and its time), to see where the time goes.
        for line in out.lines() {
            println!("    sync-app: {line}");
        }
    }
    anyhow::ensure!(
        out.contains(&format!("{} inserted", thousands(rows))),
        "sync-app sync did not insert {rows} rows: {out}"
    );
    Ok(Row {
        label: label.into(),
        rows,
        time,
        peak: peak_kb / 1024.0,
    })
}

fn print(title: &str, rows: &[Row], limit: f64) {
    println!("\n{title}");
    println!("| step | rows | seconds | rows/s | % of the slower limit | peak RSS |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows {
        let rate = r.rows as f64 / r.time.as_secs_f64();
        println!(
            "| {} | {} | {:.2} | {} | {:.0} % | {:.1} MB |",
            r.label,
            thousands(r.rows),
            r.time.as_secs_f64(),
            thousands(rate as u64),
            100.0 * rate / limit,
            r.peak
        );
    }
}

/// One backend at one size; `sink_limits: false` leaves out the raw loads into the indexed
/// table (the series for the chart only needs the sync and the floor).
async fn bench(backend: &str, rows: u64, sink_limits: bool) -> Result<()> {
    let name = format!(
        "sa_bench_{}_{}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
        std::process::id()
    );
    let (url, admin) = match backend {
        "sqlite" => {
            let path = std::env::temp_dir().join(format!("{name}.db"));
            (format!("sqlite://{}?mode=rwc", path.display()), None)
        }
        "postgres" => {
            let admin = std::env::var("JOBLOG_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            (
                format!("{admin}/{name}"),
                Some((format!("{admin}/postgres"), admin)),
            )
        }
        "mysql" => {
            let admin = std::env::var("JOBLOG_TEST_MYSQL_URL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
            (format!("{admin}/{name}"), Some((format!("{admin}/test"), admin)))
        }
        other => anyhow::bail!("unknown backend {other}"),
    };
    if let Some((admin_db, _)) = &admin {
        let conn = Database::connect(admin_db.as_str())
            .await
            .context("admin connection")?;
        conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
    }
    let erp = FakeErp::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        FakeErpConfig {
            orders: rows,
            seed: SEED,
            ..FakeErpConfig::default()
        },
    )
    .await?
    .spawn();
    let ado = erp.ado_string();
    // sync-app first, so that its peak memory is not inflated by the raw loads' rows
    // (the allocator keeps freed memory).
    let mut ours_rows = Vec::new();
    ours_rows.push(
        ours(
            &url,
            &ado,
            rows,
            "sync-app: SyncOpenOrdersJob into an empty table",
        )
        .await?,
    );
    ours_rows.push(ours(&url, &ado, rows, "sync-app: again, replacing the rows it wrote").await?);
    // This process has only served the two syncs so far (they ran in child processes):
    // its memory is the fake ERP's.
    let served = (rss_mb(), peak_mb());
    search_times(&url, backend, rows).await?;
    let mut limits = vec![source_limit(&ado, rows).await?];
    println!(
        "{backend}: this process (the in-process fake ERP) after serving both syncs: RSS {:.1} MB, \
         peak {:.1} MB; after the source-limit step: RSS {:.1} MB",
        served.0,
        served.1,
        rss_mb()
    );
    match backend {
        "sqlite" if sink_limits => {
            limits.push(sink_limit_sqlite(&url, rows).await?);
            limits.push(sink_limit_sqlite_multi(&url, rows).await?);
        }
        "postgres" if sink_limits => limits.push(sink_limit_postgres(&url, rows).await?),
        _ => {}
    }
    let floor = match backend {
        "sqlite" => Some(floor_sqlite(&url, rows).await?),
        "postgres" => Some(floor_postgres(&url, rows).await?),
        _ => None,
    };
    let rate = |r: &Row| r.rows as f64 / r.time.as_secs_f64();
    let source = rate(&limits[0]);
    let sink = limits[1..].iter().map(rate).fold(0.0, f64::max);
    let limit = if sink > 0.0 { source.min(sink) } else { source };
    let mut results = limits;
    let floor_secs = floor.as_ref().map(|f| f.time.as_secs_f64());
    results.extend(floor);
    let sync_secs: Vec<f64> = ours_rows.iter().map(|r| r.time.as_secs_f64()).collect();
    results.extend(ours_rows);
    print(
        &format!(
            "{backend}: {} open orders (the limit is the slower of the source and the fastest sink: {} rows/s)",
            thousands(rows),
            thousands(limit as u64)
        ),
        &results,
        limit,
    );
    if let Some(floor) = floor_secs {
        // Read by the parent process for the chart (see `main`).
        println!("chart-point: {backend} {rows} {:.3} {floor:.3}", sync_secs[1]);
        println!(
            "\n{backend}: sync vs the engine's floor ({floor:.2} s): into an empty table {:.2} s ({:.2}x), \
             replacing {:.2} s ({:.2}x); the sync includes reading the source (process start, \
             connecting, the query) and the swap",
            sync_secs[0],
            sync_secs[0] / floor,
            sync_secs[1],
            sync_secs[1] / floor
        );
    }
    erp.shutdown().await;
    if std::env::var_os("SYNC_BENCH_KEEP_DB").is_some() {
        println!("(kept database: {url})");
        return Ok(());
    }
    match admin {
        Some((admin_db, _)) => {
            let conn = Database::connect(admin_db.as_str()).await?;
            let force = if backend == "postgres" {
                " WITH (FORCE)"
            } else {
                ""
            };
            conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}{force}"))
                .await?;
        }
        None => {
            let path = std::env::temp_dir().join(format!("{name}.db"));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
    }
    Ok(())
}

/// The sync and the engine's floor against rows, per backend.
fn sync_chart(backends: &[String], points: &[(String, u64, f64, f64)]) -> String {
    let mut series = Vec::new();
    for b in backends {
        for (label, pick) in [("sync-app sync", 0usize), ("engine floor", 1)] {
            series.push(chart::Series {
                name: format!("{b}: {label}"),
                points: points
                    .iter()
                    .filter(|p| &p.0 == b)
                    .map(|p| (p.1 as f64, if pick == 0 { p.2 } else { p.3 }))
                    .collect(),
            });
        }
    }
    chart::line_chart("Replacing open_orders", "rows (log scale)", "seconds", &series)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut sizes = vec![1_000_000u64];
    let mut backends = vec!["sqlite".to_string(), "postgres".to_string()];
    let mut svg: Option<std::path::PathBuf> = None;
    let mut from_table: Option<String> = None;
    let mut sink_limits = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rows" => {
                sizes = it
                    .next()
                    .context("--rows N[,N…]")?
                    .split(',')
                    .map(|n| n.replace('_', "").parse::<u64>())
                    .collect::<Result<_, _>>()?
            }
            "--backends" => {
                backends = it
                    .next()
                    .context("--backends a,b")?
                    .split(',')
                    .map(String::from)
                    .collect()
            }
            "--svg" => svg = Some(chart::out_path(it.next().context("--svg PATH")?)?),
            "--from-table" => from_table = Some(it.next().context("--from-table FILE")?.clone()),
            "--no-sink-limits" => sink_limits = false,
            "--bench" => {}
            "--help" | "-h" => {
                println!(
                    "sync-app sync benchmark: `sync-app sync` against the source limit, the sink limit \
                     and the engine's floor (SQLite: in-engine INSERT…SELECT into an unindexed table + \
                     CREATE INDEX + the search's FTS5 table; PostgreSQL: COPY into an unindexed table + \
                     index builds), and the Open Orders search on the rows it wrote\n\n\
                     Options:\n  --rows N[,N…]         open orders, one run per size (default 1000000)\n  \
                     --backends a,b        sqlite, postgres, mysql (default sqlite,postgres)\n  \
                     --svg PATH            with several sizes: a chart of the sync and the floor against rows\n  \
                     --no-sink-limits      leave out the raw loads into the indexed table (implied by several sizes)\n  \
                     --from-table FILE     with --svg: redraw the chart from the table an earlier run printed\n  \
                     -h, --help            this text"
                );
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    if let Some(file) = from_table {
        // Redraws the chart from the table an earlier run printed ("Sync (replacing the
        // rows) and the engine's floor against rows").
        let text = std::fs::read_to_string(&file)?;
        let points: Vec<(String, u64, f64, f64)> = text
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('|').map(str::trim).collect();
                match f[..] {
                    ["", b, n, sync, floor, _, ""] if b == "sqlite" || b == "postgres" => Some((
                        b.to_owned(),
                        n.replace(',', "").parse().ok()?,
                        sync.parse().ok()?,
                        floor.parse().ok()?,
                    )),
                    _ => None,
                }
            })
            .collect();
        anyhow::ensure!(!points.is_empty(), "no table rows in {file}");
        let path = svg.context("--from-table needs --svg PATH")?;
        std::fs::write(&path, sync_chart(&backends, &points))?;
        println!("chart of {} points written to {}", points.len(), path.display());
        return Ok(());
    }
    if backends.len() > 1 || sizes.len() > 1 {
        // One process per backend and size: the raw loads hold 1,000,000 rows in memory and
        // the allocator keeps much of it afterwards, which would show up as the next run's
        // memory (that was the 251 MB once blamed on the fake ERP).
        let exe = std::env::current_exe()?;
        let mut points: Vec<(String, u64, f64, f64)> = Vec::new();
        for b in &backends {
            for rows in &sizes {
                let out = std::process::Command::new(&exe)
                    .args(["--rows", &rows.to_string(), "--backends", b])
                    .args(if sizes.len() > 1 || !sink_limits {
                        &["--no-sink-limits"][..]
                    } else {
                        &[]
                    })
                    .stderr(std::process::Stdio::inherit())
                    .output()
                    .with_context(|| format!("running the {b} benchmark"))?;
                let text = String::from_utf8_lossy(&out.stdout);
                for line in text.lines() {
                    match line.strip_prefix("chart-point: ") {
                        Some(p) => {
                            let f: Vec<&str> = p.split(' ').collect();
                            if let [backend, n, sync, floor] = f[..] {
                                points.push((backend.into(), n.parse()?, sync.parse()?, floor.parse()?));
                            }
                        }
                        None => println!("{line}"),
                    }
                }
                anyhow::ensure!(out.status.success(), "the {b} benchmark with {rows} rows failed");
            }
        }
        if sizes.len() > 1 {
            println!("\nSync (replacing the rows) and the engine's floor against rows, seconds:\n");
            println!("| backend | rows | sync-app sync s | floor s | floor / sync |");
            println!("|---|---:|---:|---:|---:|");
            for (b, n, sync, floor) in &points {
                println!(
                    "| {b} | {} | {sync:.2} | {floor:.2} | {:.0} % |",
                    thousands(*n),
                    100.0 * floor / sync
                );
            }
        }
        if let Some(path) = svg {
            std::fs::write(&path, sync_chart(&backends, &points))?;
            println!("\nchart written to {}", path.display());
        }
        return Ok(());
    }
    let rows = sizes[0];
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!(
        "sync-app sync benchmark: {} rows, {} cores",
        thousands(rows),
        std::thread::available_parallelism()?
    );
    for b in &backends {
        rt.block_on(bench(b, rows, sink_limits))
            .with_context(|| format!("{b} benchmark"))?;
    }
    Ok(())
}
