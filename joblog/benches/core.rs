//! joblog's core benchmarks: each figure printed next to the raw limit it is measured
//! against, in one run. Timings are reported, never asserted.
//!
//! ```text
//! cargo bench -p joblog --bench core -- [--backends sqlite,postgres,mysql] [--runs N]
//!     [--details-per-run M] [--quick] [--no-search-index]
//! ```
//!
//! `--no-search-index` drops PostgreSQL's trigram search indexes (which `migrate()`
//! builds) before sections 1-3, so that section 2 compares the sinks on the bare table
//! rather than on the GIN index's upkeep, which all of them pay alike.
//!
//! 1. `detail()` at the call site: each call timed on its own, next to `format!` alone
//!    and a bare `tokio::sync::mpsc::UnboundedSender::send` of the same `String`.
//! 2. Details persisted per second: N details queued on one run, then `flush()`, next to
//!    the raw sink for the same rows (SQLite: one prepared INSERT per row in one
//!    transaction; PostgreSQL: `COPY … FROM STDIN`; MySQL: multi-row INSERTs of joblog's
//!    size in one transaction), all through sqlx directly. SQLite and PostgreSQL also get
//!    a multi-row INSERT of joblog's statement size, the same write joblog makes.
//! 3. `start()` + `success()` of an empty run, from one task and from 16, next to the same
//!    writes done through sqlx (unique names, no name lookup).
//! 4. The run list on `--runs` runs with `--details-per-run` details each, seeded with
//!    raw SQL: the newest page, the page 30,000 deep, filtered variants, `count_runs`,
//!    each next to its page SELECT alone; then the deep page split into its queries.
//!
//! Each backend gets fresh databases (one for sections 1-3, one for section 4), dropped
//! at the end (`JOBLOG_BENCH_KEEP_DB=1` keeps them, to look at plans). A server that
//! cannot be reached is reported as skipped. Servers: `JOBLOG_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432`) and `JOBLOG_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306`), as for the test suite.

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use joblog::query::{Cursor, RunFilter};
use joblog::{JobLogger, RunStatus};
use sea_orm::sqlx::{self, AssertSqlSafe, QueryBuilder};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, TransactionTrait};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

// ---- command line ------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
    MySql,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Sqlite => "SQLite (file, WAL)",
            Kind::Postgres => "PostgreSQL",
            Kind::MySql => "MySQL/MariaDB",
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    backends: Vec<Kind>,
    runs: u64,
    details_per_run: u64,
    quick: bool,
    /// Sections 1-3 on PostgreSQL without the trigram search indexes.
    no_search_index: bool,
    /// Section 1: `detail()` calls timed.
    calls: usize,
    /// Section 2: details queued then flushed.
    throughput: usize,
    /// Section 3: how long each start()+success() measurement runs.
    run_window: Duration,
    /// Section 4: timed iterations per query.
    iters: usize,
}

fn parse_num(flag: &str, v: Option<String>) -> Result<u64> {
    let v = v.with_context(|| format!("{flag} needs a value"))?;
    v.replace(['_', ','], "")
        .parse()
        .with_context(|| format!("{flag}: not a number: {v}"))
}

fn parse_args() -> Result<Args> {
    let mut backends = vec![Kind::Sqlite, Kind::Postgres, Kind::MySql];
    let mut runs = None;
    let mut details_per_run = 10;
    let mut quick = false;
    let mut no_search_index = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backends" => {
                let v = it.next().context("--backends needs a value")?;
                backends = Vec::new();
                for b in v.split(',').map(str::trim).filter(|b| !b.is_empty()) {
                    backends.push(match b {
                        "sqlite" => Kind::Sqlite,
                        "postgres" | "postgresql" | "pg" => Kind::Postgres,
                        "mysql" | "mariadb" => Kind::MySql,
                        other => bail!("unknown backend {other:?} (sqlite, postgres, mysql)"),
                    });
                }
            }
            "--runs" => runs = Some(parse_num("--runs", it.next())?),
            "--details-per-run" => details_per_run = parse_num("--details-per-run", it.next())?,
            "--quick" => quick = true,
            "--no-search-index" => no_search_index = true,
            // `cargo bench` passes `--bench` to harness = false targets.
            "--bench" => {}
            "-h" | "--help" => {
                println!(
                    "cargo bench -p joblog --bench core -- [--backends sqlite,postgres,mysql] \
                     [--runs N] [--details-per-run M] [--quick] [--no-search-index]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(Args {
        backends,
        runs: runs.unwrap_or(if quick { 50_000 } else { 1_000_000 }),
        details_per_run,
        quick,
        no_search_index,
        calls: if quick { 20_000 } else { 100_000 },
        throughput: if quick { 100_000 } else { 1_000_000 },
        run_window: Duration::from_secs(if quick { 1 } else { 5 }),
        iters: if quick { 50 } else { 200 },
    })
}

// ---- statistics and tables ---------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Stats {
    median: Duration,
    p95: Duration,
    p99: Duration,
    mean: Duration,
    max: Duration,
}

impl Stats {
    fn of(mut v: Vec<Duration>) -> Stats {
        assert!(!v.is_empty());
        v.sort_unstable();
        let pick = |p: usize| v[((p * v.len()).div_ceil(100)).max(1) - 1];
        let sum: Duration = v.iter().sum();
        Stats {
            median: pick(50),
            p95: pick(95),
            p99: pick(99),
            mean: sum / v.len() as u32,
            max: v[v.len() - 1],
        }
    }
}

fn ns(d: Duration) -> String {
    thousands(d.as_nanos() as u64)
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

use joblog::format::count as thousands;

fn rate(n: u64, d: Duration) -> String {
    thousands((n as f64 / d.as_secs_f64()).round() as u64)
}

/// A table printed as Markdown, so that it can be pasted into docs/BENCHMARKS.md as is.
#[derive(Debug)]
struct Table {
    title: String,
    head: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    fn new(title: impl Into<String>, head: &[&str]) -> Table {
        Table {
            title: title.into(),
            head: head.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    fn print(&self) {
        let cols = self.head.len();
        let mut w: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(cols) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        let _ = writeln!(out, "\n#### {}\n", self.title);
        let line = |cells: &[String], out: &mut String| {
            out.push('|');
            for (i, width) in w.iter().enumerate() {
                let c = cells.get(i).map_or("", String::as_str);
                if i == 0 {
                    let _ = write!(out, " {c:<width$} |");
                } else {
                    let _ = write!(out, " {c:>width$} |");
                }
            }
            out.push('\n');
        };
        line(&self.head, &mut out);
        out.push('|');
        for (i, width) in w.iter().enumerate() {
            if i == 0 {
                let _ = write!(out, "{}|", "-".repeat(width + 2));
            } else {
                let _ = write!(out, "{}:|", "-".repeat(width + 1));
            }
        }
        out.push('\n');
        for r in &self.rows {
            line(r, &mut out);
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "{n}");
            }
        }
        print!("{out}");
    }
}

// ---- databases -----------------------------------------------------------------------------

fn postgres_server() -> String {
    std::env::var("JOBLOG_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn mysql_server() -> String {
    std::env::var("JOBLOG_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// One fresh database, dropped by [`BenchDb::drop_db`].
#[derive(Debug)]
struct BenchDb {
    kind: Kind,
    url: String,
    name: String,
    admin_url: Option<String>,
    file: Option<std::path::PathBuf>,
}

fn unique_name(tag: &str) -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("jl_bench_{}_{}_{tag}", std::process::id(), t.as_secs())
}

impl BenchDb {
    /// `Ok(None)` when the server cannot be reached.
    async fn create(kind: Kind, tag: &str) -> Result<Option<BenchDb>> {
        let name = unique_name(tag);
        match kind {
            Kind::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                Ok(Some(BenchDb {
                    kind,
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    name,
                    admin_url: None,
                    file: Some(path),
                }))
            }
            Kind::Postgres | Kind::MySql => {
                let (server, admin_db) = if kind == Kind::Postgres {
                    (postgres_server(), "postgres")
                } else {
                    (mysql_server(), "test")
                };
                let admin_url = format!("{server}/{admin_db}");
                let mut opts = ConnectOptions::new(admin_url.clone());
                opts.connect_timeout(Duration::from_secs(3))
                    .acquire_timeout(Duration::from_secs(3))
                    .sqlx_logging(false)
                    .max_connections(1);
                let conn = match Database::connect(opts).await {
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
                    kind,
                    url: format!("{server}/{name}"),
                    name,
                    admin_url: Some(admin_url),
                    file: None,
                }))
            }
        }
    }

    async fn drop_db(self) {
        // For looking at the data afterwards (query plans, sizes): keep the database.
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
        let conn = match Database::connect(admin.as_str()).await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("could not drop {}: {e}", self.name);
                return;
            }
        };
        let sql = if self.kind == Kind::Postgres {
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)
        } else {
            format!("DROP DATABASE IF EXISTS {}", self.name)
        };
        if let Err(e) = conn.execute_unprepared(&sql).await {
            eprintln!("could not drop {}: {e}", self.name);
        }
        conn.close().await.ok();
    }
}

async fn exec(db: &impl ConnectionTrait, sql: &str) -> Result<()> {
    db.execute_unprepared(sql)
        .await
        .with_context(|| format!("{}…", &sql[..sql.len().min(200)]))?;
    Ok(())
}

async fn scalar_i64(db: &DatabaseConnection, sql: &str) -> Result<i64> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await?
        .with_context(|| format!("no row: {sql}"))?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

// ---- section 1: detail() at the call site ------------------------------------------------

fn message(i: usize) -> String {
    format!("Processed row {i} of batch {}: status=ok", i / 1000)
}

async fn section_detail_call(logger: &JobLogger, kind: Kind, n: usize) -> Result<()> {
    // The cost of the timer itself, so the other rows can be read net of it.
    let mut timer = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        black_box(());
        timer.push(t.elapsed());
    }

    // `format!` alone (the Strings are kept, so freeing them is not timed).
    let mut fmt = Vec::with_capacity(n);
    let mut keep = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let s = message(black_box(i));
        fmt.push(t.elapsed());
        keep.push(s);
    }
    drop(keep);

    // A bare unbounded send of the same String, with a task draining the other end (as
    // joblog's writer does).
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let drain = tokio::spawn(async move {
        let mut got = 0usize;
        while let Some(s) = rx.recv().await {
            black_box(s);
            got += 1;
        }
        got
    });
    let strings: Vec<String> = (0..n).map(message).collect();
    let mut send = Vec::with_capacity(n);
    for s in strings {
        let t = Instant::now();
        let _ = tx.send(s);
        send.push(t.elapsed());
    }
    drop(tx);
    let received = drain.await?;
    assert_eq!(received, n);

    // joblog: detail() of a ready String, then detail(format!(..)) as a call site writes it.
    logger.flush().await?;
    let run = logger.start("BenchDetailCall").await?;
    let strings: Vec<String> = (0..n).map(message).collect();
    let mut ready = Vec::with_capacity(n);
    for s in strings {
        let t = Instant::now();
        run.detail(s);
        ready.push(t.elapsed());
    }
    let mut formatted = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        run.detail(message(black_box(i)));
        formatted.push(t.elapsed());
    }
    logger.flush().await?;
    let written = logger.detail_count(run.id()).await?.saturating_sub(1); // minus "Job started"
    run.success().await?;
    let sent = 2 * n as u64;

    let mut t = Table::new(
        format!(
            "1. detail() at the call site — {} ({} calls each, each call timed)",
            kind.label(),
            thousands(n as u64)
        ),
        &["operation", "median ns", "p99 ns", "mean ns", "max ns"],
    );
    let mut add = |name: &str, v: Vec<Duration>| {
        let s = Stats::of(v);
        t.row(vec![
            name.to_owned(),
            ns(s.median),
            ns(s.p99),
            ns(s.mean),
            ns(s.max),
        ]);
    };
    add("timer overhead (Instant::now + elapsed, nothing timed)", timer);
    add(
        "raw: format!(\"Processed row {i} of batch {b}: status=ok\") alone",
        fmt,
    );
    add("raw: UnboundedSender::<String>::send of the same String", send);
    add("joblog: run.detail(ready String)", ready);
    add("joblog: run.detail(format!(..))  (format + queue)", formatted);
    t.note(format!(
        "Details sent: {}, written after flush(): {}, dropped: {}.",
        thousands(sent),
        thousands(written),
        thousands(sent.saturating_sub(written))
    ));
    t.print();
    Ok(())
}

// ---- section 1b: how soon a detail is visible to another connection ----------------------

/// A detail is queued, then a separate pool (as a dashboard's) polls until it sees the row:
/// the time from `detail()` to visibility, on an otherwise idle run.
async fn section_visibility(logger: &JobLogger, kind: Kind, url: &str, samples: usize) -> Result<()> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false).max_connections(1);
    let reader = Database::connect(opts).await?;
    let backend = reader.get_database_backend();
    let sql = if kind == Kind::Postgres {
        "SELECT id FROM job_log_details WHERE job_log_id = $1 AND message = $2"
    } else {
        "SELECT id FROM job_log_details WHERE job_log_id = ? AND message = ?"
    };
    let mut run = logger.start("VisibilityBench").await?;
    run.processing().await?;
    logger.flush().await?;
    let mut latencies = Vec::with_capacity(samples);
    let mut polls = 0u64;
    for i in 0..samples {
        let msg = format!("probe {i}");
        let t = Instant::now();
        run.detail(msg.clone());
        loop {
            polls += 1;
            let stmt =
                sea_orm::Statement::from_sql_and_values(backend, sql, [run.id().into(), msg.clone().into()]);
            if reader.query_one_raw(stmt).await?.is_some() {
                break;
            }
        }
        latencies.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    run.success().await?;
    reader.close().await.ok();
    let st = Stats::of(latencies);
    let mut t = Table::new(
        format!(
            "1b. {}: detail() → visible to another connection ({samples} probes)",
            kind.label()
        ),
        &["", "median", "p95", "max"],
    );
    t.row(vec![
        "detail() to row visible".into(),
        ms(st.median),
        ms(st.p95),
        ms(st.max),
    ]);
    t.note(format!(
        "Target: within 1 s while the run goes on. {polls} polls of a separate one-connection pool."
    ));
    t.print();
    Ok(())
}

// ---- section 2: details persisted per second ---------------------------------------------

const DETAIL_INSERT_ROWS_PER_STMT: usize = 65_535 / 4; // joblog's MySQL/PostgreSQL chunk

async fn section_throughput(logger: &JobLogger, kind: Kind, n: usize) -> Result<()> {
    // joblog: from the first detail() until flush() returns.
    logger.flush().await?;
    let run = logger.start("BenchThroughput").await?;
    let t0 = Instant::now();
    for i in 0..n {
        run.detail(message(i));
    }
    let queued = t0.elapsed();
    logger.flush().await?;
    let ours = t0.elapsed();
    let written = logger.detail_count(run.id()).await?.saturating_sub(1);
    run.success().await?;

    // The raw sink: the same rows (run id, level, message, timestamp) straight through sqlx.
    let raw_run = logger.start("BenchRawSink").await?;
    let raw_id = raw_run.id();
    logger.flush().await?;
    let at = Utc::now();
    let rows: Vec<(String, DateTime<Utc>)> = (0..n)
        .map(|i| (message(i), at + chrono::Duration::microseconds(i as i64)))
        .collect();
    let mut raws: Vec<(&str, Duration, u64)> = Vec::new();
    let mut seen = 1; // "Job started"
    match kind {
        Kind::Sqlite => {
            let pool = logger.db().get_sqlite_connection_pool();
            let t0 = Instant::now();
            let mut tx = pool.begin().await?;
            for (msg, at) in &rows {
                sqlx::query(
                    "INSERT INTO job_log_details (job_log_id, level, message, created_at) VALUES (?, ?, ?, ?)",
                )
                .bind(raw_id)
                .bind("info")
                .bind(msg.as_str())
                .bind(*at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            let d = t0.elapsed();
            raws.push((
                "raw: sqlx, one prepared INSERT per row, one transaction",
                d,
                written_since(logger, raw_id, &mut seen).await?,
            ));
            let t0 = Instant::now();
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(32_766 / 4) {
                let mut qb = QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO job_log_details (job_log_id, level, message, created_at) ",
                );
                qb.push_values(chunk, |mut b, (msg, at)| {
                    b.push_bind(raw_id)
                        .push_bind("info")
                        .push_bind(msg.as_str())
                        .push_bind(*at);
                });
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            let d = t0.elapsed();
            raws.push((
                "raw: sqlx multi-row INSERT, 8,191 rows each (joblog's size), one transaction",
                d,
                written_since(logger, raw_id, &mut seen).await?,
            ));
        }
        Kind::Postgres => {
            use sqlx::postgres::PgPoolCopyExt;
            let pool = logger.db().get_postgres_connection_pool();
            let t0 = Instant::now();
            let mut copy = pool
                .copy_in_raw("COPY job_log_details (job_log_id, level, message, created_at) FROM STDIN")
                .await?;
            let mut buf = String::with_capacity(1 << 20);
            for (msg, at) in &rows {
                let _ = writeln!(
                    buf,
                    "{raw_id}\tinfo\t{msg}\t{}",
                    at.format("%Y-%m-%d %H:%M:%S%.6f+00")
                );
                if buf.len() >= 1 << 20 {
                    copy.send(std::mem::take(&mut buf).into_bytes()).await?;
                    buf.reserve(1 << 20);
                }
            }
            copy.send(buf.into_bytes()).await?;
            copy.finish().await?;
            let d = t0.elapsed();
            raws.push((
                "raw: sqlx COPY job_log_details … FROM STDIN (text)",
                d,
                written_since(logger, raw_id, &mut seen).await?,
            ));
            let t0 = Instant::now();
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(DETAIL_INSERT_ROWS_PER_STMT) {
                let mut qb = QueryBuilder::<sqlx::Postgres>::new(
                    "INSERT INTO job_log_details (job_log_id, level, message, created_at) ",
                );
                qb.push_values(chunk, |mut b, (msg, at)| {
                    b.push_bind(raw_id)
                        .push_bind("info")
                        .push_bind(msg.as_str())
                        .push_bind(*at);
                });
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            let d = t0.elapsed();
            raws.push((
                "raw: sqlx multi-row INSERT, 16,383 rows each (joblog's size), one transaction",
                d,
                written_since(logger, raw_id, &mut seen).await?,
            ));
        }
        Kind::MySql => {
            let pool = logger.db().get_mysql_connection_pool();
            let t0 = Instant::now();
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(DETAIL_INSERT_ROWS_PER_STMT) {
                let mut qb = QueryBuilder::<sqlx::MySql>::new(
                    "INSERT INTO job_log_details (job_log_id, level, message, created_at) ",
                );
                qb.push_values(chunk, |mut b, (msg, at)| {
                    b.push_bind(raw_id)
                        .push_bind("info")
                        .push_bind(msg.as_str())
                        .push_bind(*at);
                });
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            let d = t0.elapsed();
            raws.push((
                "raw: sqlx multi-row INSERT, 16,383 rows each (joblog's size), one transaction",
                d,
                written_since(logger, raw_id, &mut seen).await?,
            ));
        }
    }
    raw_run.success().await?;

    let mut t = Table::new(
        format!(
            "2. Details persisted per second — {} ({} details)",
            kind.label(),
            thousands(n as u64)
        ),
        &[
            "sink",
            "queue time",
            "total time",
            "details/s",
            "rows written",
            "joblog ÷ this",
        ],
    );
    t.row(vec![
        "joblog: detail() ×N then flush()".into(),
        secs(queued),
        secs(ours),
        rate(n as u64, ours),
        thousands(written),
        "1.00".into(),
    ]);
    for (label, d, rows_written) in &raws {
        t.row(vec![
            (*label).into(),
            "—".into(),
            secs(*d),
            rate(n as u64, *d),
            thousands(*rows_written),
            format!("{:.2}", d.as_secs_f64() / ours.as_secs_f64()),
        ]);
    }
    t.note(
        "joblog's time runs from the first detail() (messages formatted at the call site) until flush() returns; \
         the raw rows are built before the raw timer starts. \"joblog ÷ this\" > 1 means joblog is faster.",
    );
    t.print();
    Ok(())
}

/// Rows the raw sink wrote to its run since the last call.
async fn written_since(logger: &JobLogger, run_id: i64, seen: &mut u64) -> Result<u64> {
    let now = logger.detail_count(run_id).await?;
    let delta = now - *seen;
    *seen = now;
    Ok(delta)
}

// ---- section 3: start() + success() --------------------------------------------------------

/// Runs completed, elapsed time, latency of the whole run, latency of its first write.
type RunsResult = (u64, Duration, Stats, Stats);

async fn ours_runs(logger: &JobLogger, tasks: usize, window: Duration) -> Result<RunsResult> {
    let t0 = Instant::now();
    let deadline = t0 + window;
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        let logger = logger.clone();
        set.spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let run = logger.start("EmptyJob").await?;
                let started = t.elapsed();
                run.success().await?;
                lat.push((t.elapsed(), started));
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r??);
    }
    let elapsed = t0.elapsed();
    let (total, first): (Vec<Duration>, Vec<Duration>) = all.into_iter().unzip();
    Ok((total.len() as u64, elapsed, Stats::of(total), Stats::of(first)))
}

static RAW_NAME: AtomicU64 = AtomicU64::new(0);

/// The writes of start() + success() done straight through sqlx: INSERT the run (its own
/// statement), then one transaction with its "Job started" detail and the status change.
async fn raw_one_run(db: &DatabaseConnection, kind: Kind) -> Result<Duration> {
    let t = Instant::now();
    let inserted;
    let at = Utc::now();
    let name = format!(
        "raw_{}_{}",
        std::process::id(),
        RAW_NAME.fetch_add(1, Ordering::Relaxed)
    );
    let (job, host, pid, msg) = ("RawEmptyJob", "bench-host", 4242_i64, "Job started - RawEmptyJob");
    match kind {
        Kind::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO job_logs (name, job, status, host, pid, created_at, updated_at, heartbeat_at) \
                 VALUES (?, ?, 0, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(name)
            .bind(job)
            .bind(host)
            .bind(pid)
            .bind(at)
            .bind(at)
            .bind(at)
            .fetch_one(pool)
            .await?;
            inserted = t.elapsed();
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO job_log_details (job_log_id, level, message, created_at) VALUES (?, 'info', ?, ?)")
                .bind(id)
                .bind(msg)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE job_logs SET status = 2, finished_at = ?, updated_at = ?, \
                 started_at = COALESCE(started_at, created_at), error = NULL WHERE id = ? AND status IN (0, 1)",
            )
            .bind(at)
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Kind::Postgres => {
            let pool = db.get_postgres_connection_pool();
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO job_logs (name, job, status, host, pid, created_at, updated_at, heartbeat_at) \
                 VALUES ($1, $2, 0, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(name)
            .bind(job)
            .bind(host)
            .bind(pid)
            .bind(at)
            .bind(at)
            .bind(at)
            .fetch_one(pool)
            .await?;
            inserted = t.elapsed();
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO job_log_details (job_log_id, level, message, created_at) VALUES ($1, 'info', $2, $3)",
            )
            .bind(id)
            .bind(msg)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE job_logs SET status = 2, finished_at = $1, updated_at = $2, \
                 started_at = COALESCE(started_at, created_at), error = NULL WHERE id = $3 AND status IN (0, 1)",
            )
            .bind(at)
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Kind::MySql => {
            let pool = db.get_mysql_connection_pool();
            let id = sqlx::query(
                "INSERT INTO job_logs (name, job, status, host, pid, created_at, updated_at, heartbeat_at) \
                 VALUES (?, ?, 0, ?, ?, ?, ?, ?)",
            )
            .bind(name)
            .bind(job)
            .bind(host)
            .bind(pid)
            .bind(at)
            .bind(at)
            .bind(at)
            .execute(pool)
            .await?
            .last_insert_id() as i64;
            inserted = t.elapsed();
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO job_log_details (job_log_id, level, message, created_at) VALUES (?, 'info', ?, ?)")
                .bind(id)
                .bind(msg)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE job_logs SET status = 2, finished_at = ?, updated_at = ?, \
                 started_at = COALESCE(started_at, created_at), error = NULL WHERE id = ? AND status IN (0, 1)",
            )
            .bind(at)
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
    }
    Ok(inserted)
}

async fn raw_runs(db: &DatabaseConnection, kind: Kind, tasks: usize, window: Duration) -> Result<RunsResult> {
    let t0 = Instant::now();
    let deadline = t0 + window;
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        let db = db.clone();
        set.spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let inserted = raw_one_run(&db, kind).await?;
                lat.push((t.elapsed(), inserted));
            }
            Ok::<_, anyhow::Error>(lat)
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r??);
    }
    let elapsed = t0.elapsed();
    let (total, first): (Vec<Duration>, Vec<Duration>) = all.into_iter().unzip();
    Ok((total.len() as u64, elapsed, Stats::of(total), Stats::of(first)))
}

async fn section_runs(logger: &JobLogger, kind: Kind, window: Duration) -> Result<()> {
    let mut t = Table::new(
        format!(
            "3. start() + success() of an empty run — {} ({} s per row)",
            kind.label(),
            window.as_secs()
        ),
        &[
            "what",
            "tasks",
            "runs",
            "runs/s",
            "median ms/run",
            "p99 ms/run",
            "median ms, start() / INSERT alone",
        ],
    );
    let db = logger.db().clone();
    let mut busiest = Vec::new();
    for tasks in [1usize, 16] {
        logger.flush().await?;
        let before = scalar_i64(&db, "SELECT COALESCE(MAX(id), 0) FROM job_logs").await?;
        let (n, d, s, first) = ours_runs(logger, tasks, window).await?;
        t.row(vec![
            "joblog: start() + success()".into(),
            tasks.to_string(),
            thousands(n),
            rate(n, d),
            ms(s.median),
            ms(s.p99),
            ms(first.median),
        ]);
        // Runs sharing one second share a base name: each later one pays a failed INSERT
        // and a scan of that second's names (naming.rs).
        let most = scalar_i64(
            &db,
            &format!(
                "SELECT COALESCE(MAX(c), 0) FROM (SELECT COUNT(*) AS c FROM job_logs \
                 WHERE id > {before} AND job = 'EmptyJob' GROUP BY substr(name, 1, 15)) per_second"
            ),
        )
        .await?;
        busiest.push((tasks, most));
    }
    for tasks in [1usize, 16] {
        let (n, d, s, first) = raw_runs(&db, kind, tasks, window).await?;
        t.row(vec![
            "raw: sqlx INSERT run; txn{INSERT detail; UPDATE status}".into(),
            tasks.to_string(),
            thousands(n),
            rate(n, d),
            ms(s.median),
            ms(s.p99),
            ms(first.median),
        ]);
    }
    for (tasks, most) in busiest {
        t.note(format!(
            "joblog, {tasks} task(s): up to {} runs started within one second, i.e. shared one base name.",
            thousands(most as u64)
        ));
    }
    t.print();
    Ok(())
}

// ---- section 4: the run list on a big table ----------------------------------------------

/// 2025-01-01T00:00:00Z; seeded run n starts at T0 + 31 n seconds (distinct seconds, so
/// names derived from it are unique).
const T0: i64 = 1_735_689_600;
const SEED_CHUNK: u64 = 100_000;

const JOBS: [&str; 6] = [
    "SyncOpenOrdersJob",
    "NightlyReport",
    "InvoiceExport",
    "CleanupTempFiles",
    "RebuildSearchIndex",
    "SendReminderEmails",
];

/// SQL (same on every backend) for a job name from j in 0..20: 40 %, 20 %, 15 %, 15 %, 5 %, 5 %.
fn job_case(j: &str) -> String {
    format!(
        "CASE WHEN {j} < 8 THEN '{}' WHEN {j} < 12 THEN '{}' WHEN {j} < 15 THEN '{}' \
         WHEN {j} < 18 THEN '{}' WHEN {j} = 18 THEN '{}' ELSE '{}' END",
        JOBS[0], JOBS[1], JOBS[2], JOBS[3], JOBS[4], JOBS[5]
    )
}

/// Status from r in 0..100: 90 % success, 8 % error, 1 % processing, 1 % new.
const STATUS_CASE: &str = "CASE WHEN r < 90 THEN 2 WHEN r < 98 THEN 3 WHEN r = 98 THEN 1 ELSE 0 END";

/// Detail level and message for detail i of m of run r (columns r.id, r.job, r.status, r.error).
fn detail_cases(kind: Kind, i: &str, m: u64) -> (String, String) {
    let last = m - 1;
    let cat = |parts: &[&str]| -> String {
        if kind == Kind::MySql {
            format!("CONCAT({})", parts.join(", "))
        } else {
            parts.join(" || ")
        }
    };
    let level = format!(
        "CASE WHEN {i} = {last} AND r.status = 3 THEN 'error' WHEN (r.id + {i}) % 23 = 0 THEN 'warn' ELSE 'info' END"
    );
    let started = cat(&["'Job started - '", "r.job"]);
    let warn = cat(&[
        "'Source returned '",
        &format!("((r.id * 7 + {i}) % 50)"),
        "' rows with missing fields; skipped them'",
    ]);
    let info = cat(&[
        "'Processed batch '",
        i,
        "': '",
        &format!("((r.id * 31 + {i} * 17) % 5000)"),
        "' rows in '",
        &format!("((r.id + {i} * 11) % 900)"),
        "' ms'",
    ]);
    let message = format!(
        "CASE WHEN {i} = 0 THEN {started} WHEN {i} = {last} AND r.status = 3 THEN r.error \
         WHEN (r.id + {i}) % 23 = 0 THEN {warn} ELSE {info} END"
    );
    (level, message)
}

async fn seed_runs(db: &DatabaseConnection, kind: Kind, lo: u64, hi: u64) -> Result<()> {
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
        Kind::MySql => format!(
            "INSERT INTO job_logs ({cols}) \
             SELECT DATE_FORMAT(ts, '%Y%m%d_%H%i%s'), {job}, {STATUS_CASE}, \
             CONCAT('worker-', n % 4 + 1), 1000 + n % 5000, \
             CASE WHEN r >= 90 AND r < 98 THEN CONCAT('Connection reset by peer (os error 104) while fetching batch ', n % 97) END, \
             ts, ts + INTERVAL (1 + d) SECOND, CASE WHEN r < 99 THEN ts + INTERVAL 1 SECOND END, \
             CASE WHEN r < 98 THEN ts + INTERVAL (1 + d) SECOND END, ts + INTERVAL (1 + d) SECOND \
             FROM (SELECT seq AS n, TIMESTAMP'2025-01-01 00:00:00' + INTERVAL (seq * 31) SECOND AS ts, \
             (seq * 7919) % 100 AS r, (seq * 37) % 20 AS j, (seq * 13) % 600 AS d FROM seq_{lo}_to_{hi}) s"
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

async fn seed_details(db: &DatabaseConnection, kind: Kind, lo: u64, hi: u64, m: u64) -> Result<()> {
    let cols = "job_log_id, level, message, created_at";
    let sql = match kind {
        Kind::Sqlite => {
            // Times are computed from the id: on a fresh SQLite file the seeded ids are
            // exactly 1..=runs, so this matches the run's created_at (and skips parsing it).
            let (level, message) = detail_cases(kind, "k.i", m);
            format!(
                "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < {}) \
                 INSERT INTO job_log_details ({cols}) \
                 SELECT r.id, {level}, {message}, \
                 strftime('%Y-%m-%dT%H:%M:%f+00:00', {T0} + r.id * 31 + 1 + (k.i * ((r.id * 13) % 600)) / {m}, 'unixepoch') \
                 FROM job_logs r CROSS JOIN k WHERE r.id BETWEEN {lo} AND {hi}",
                m - 1
            )
        }
        Kind::Postgres => {
            let (level, message) = detail_cases(kind, "k.i", m);
            format!(
                "INSERT INTO job_log_details ({cols}) \
                 SELECT r.id, {level}, {message}, \
                 r.created_at + (1 + (k.i * ((r.id * 13) % 600)) / {m}) * interval '1 second' \
                 FROM job_logs r CROSS JOIN generate_series(0, {}) AS k(i) WHERE r.id BETWEEN {lo} AND {hi} \
                 ORDER BY r.id, k.i",
                m - 1
            )
        }
        Kind::MySql => {
            let (level, message) = detail_cases(kind, "k.seq", m);
            format!(
                "INSERT INTO job_log_details ({cols}) \
                 SELECT r.id, {level}, {message}, \
                 r.created_at + INTERVAL (1 + (k.seq * ((r.id * 13) % 600)) DIV {m}) SECOND \
                 FROM job_logs r STRAIGHT_JOIN seq_0_to_{} k WHERE r.id BETWEEN {lo} AND {hi}",
                m - 1
            )
        }
    };
    let txn = db.begin().await?;
    match kind {
        // Skip the per-row foreign-key checks while seeding (the ids are known to exist).
        Kind::Postgres => exec(&txn, "SET LOCAL session_replication_role = replica").await?,
        Kind::MySql => exec(&txn, "SET foreign_key_checks = 0").await?,
        Kind::Sqlite => {}
    }
    exec(&txn, &sql).await?;
    if kind == Kind::MySql {
        exec(&txn, "SET foreign_key_checks = 1").await?;
    }
    txn.commit().await?;
    Ok(())
}

/// A value bound to a raw query.
#[derive(Debug, Clone)]
enum Arg {
    I16(i16),
    I64(i64),
    Str(String),
}

/// Runs `sql` (written with `?`; numbered for PostgreSQL) straight through sqlx and
/// fetches every row; returns how many there were.
async fn raw_fetch(db: &DatabaseConnection, kind: Kind, sql: &str, args: &[Arg]) -> Result<usize> {
    let sql = if kind == Kind::Postgres {
        let mut out = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                let _ = write!(out, "${n}");
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_owned()
    };
    macro_rules! run {
        ($pool:expr) => {{
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for a in args {
                q = match a {
                    Arg::I16(v) => q.bind(*v),
                    Arg::I64(v) => q.bind(*v),
                    Arg::Str(v) => q.bind(v.clone()),
                };
            }
            q.fetch_all($pool).await?.len()
        }};
    }
    Ok(match kind {
        Kind::Sqlite => run!(db.get_sqlite_connection_pool()),
        Kind::Postgres => run!(db.get_postgres_connection_pool()),
        Kind::MySql => run!(db.get_mysql_connection_pool()),
    })
}

/// `list_runs`' WHERE clause for `filter` (status and job only), and its values.
fn raw_where(filter: &RunFilter) -> (String, Vec<Arg>) {
    let mut sql = String::from(" WHERE 1 = 1");
    let mut args = Vec::new();
    if let Some(st) = filter.status {
        sql += " AND status = ?";
        args.push(Arg::I16(st.code()));
    }
    if let Some(job) = &filter.job {
        sql += " AND job = ?";
        args.push(Arg::Str(job.clone()));
    }
    (sql, args)
}

/// The page SELECT of `list_runs` alone, straight through sqlx, in the same SQL shape: on
/// MySQL with the same index hint, and for a deep page (`Before`) with the same UNION ALL
/// that also fetches the first run at or above the cursor (the "is there a newer page" probe).
async fn raw_page(
    db: &DatabaseConnection,
    kind: Kind,
    filter: &RunFilter,
    before: Option<i64>,
) -> Result<usize> {
    const COLS: &str = "id, name, job, status, host, pid, error, created_at, updated_at, started_at, finished_at, heartbeat_at";
    let hint = if kind != Kind::MySql {
        ""
    } else {
        match (filter.status.is_some(), filter.job.is_some()) {
            (true, true) => " FORCE INDEX (idx_job_logs_job_status)",
            (false, true) => " FORCE INDEX (idx_job_logs_job)",
            (true, false) => " FORCE INDEX (idx_job_logs_status)",
            (false, false) => " FORCE INDEX (PRIMARY)",
        }
    };
    let (w, where_args) = raw_where(filter);
    let select = format!("SELECT {COLS} FROM job_logs{hint}{w}");
    let mut args = where_args.clone();
    let sql = match before {
        None => format!("{select} ORDER BY id DESC LIMIT 26"),
        Some(id) => {
            args.push(Arg::I64(id));
            args.extend(where_args);
            args.push(Arg::I64(id));
            format!(
                "SELECT * FROM ({select} AND id < ? ORDER BY id DESC LIMIT 26) page UNION ALL \
                 SELECT * FROM ({select} AND id >= ? ORDER BY id ASC LIMIT 1) newer"
            )
        }
    };
    raw_fetch(db, kind, &sql, &args).await
}

/// `list_runs`' last-detail query for the runs of a page (as in `query.rs`: a correlated
/// MAX per run).
async fn raw_last_details(db: &DatabaseConnection, kind: Kind, ids: &[i64]) -> Result<usize> {
    let marks = vec!["?"; ids.len()].join(", ");
    let sql = format!(
        "SELECT id, job_log_id, level, message, created_at FROM job_log_details WHERE id IN \
         (SELECT (SELECT MAX(x.id) FROM job_log_details x WHERE x.job_log_id = r.id) \
         FROM job_logs r WHERE r.id IN ({marks}))"
    );
    let args: Vec<Arg> = ids.iter().map(|&i| Arg::I64(i)).collect();
    raw_fetch(db, kind, &sql, &args).await
}

async fn section_list(args: &Args, kind: Kind) -> Result<()> {
    let Some(bdb) = BenchDb::create(kind, "list").await? else {
        return Ok(());
    };
    let result = section_list_on(args, kind, &bdb).await;
    bdb.drop_db().await;
    result
}

async fn section_list_on(args: &Args, kind: Kind, bdb: &BenchDb) -> Result<()> {
    let logger = JobLogger::builder().connect(&bdb.url).await?;
    logger.migrate().await?;
    let db = logger.db().clone();
    let (runs, m) = (args.runs, args.details_per_run);

    // Seeding, in chunks of 100,000 runs (one transaction each).
    let t0 = Instant::now();
    let mut lo = 1;
    while lo <= runs {
        let hi = (lo + SEED_CHUNK - 1).min(runs);
        seed_runs(&db, kind, lo, hi).await?;
        lo = hi + 1;
    }
    let runs_time = t0.elapsed();
    eprintln!(
        "  [{}] seeded {} runs in {}",
        kind.label(),
        thousands(runs),
        secs(runs_time)
    );
    let t1 = Instant::now();
    if m > 0 {
        // By id range: ids need not be 1..=runs (InnoDB leaves auto-increment gaps after
        // each INSERT … SELECT).
        let min_id = scalar_i64(&db, "SELECT MIN(id) FROM job_logs").await? as u64;
        let max_id = scalar_i64(&db, "SELECT MAX(id) FROM job_logs").await? as u64;
        let mut lo = min_id;
        while lo <= max_id {
            let hi = (lo + SEED_CHUNK - 1).min(max_id);
            seed_details(&db, kind, lo, hi, m).await?;
            lo = hi + 1;
            eprint!(
                "\r  [{}] details for run ids up to {}…",
                kind.label(),
                thousands(hi)
            );
        }
        eprintln!();
    }
    let details_time = t1.elapsed();
    let t2 = Instant::now();
    match kind {
        Kind::Sqlite => exec(&db, "ANALYZE").await?,
        Kind::Postgres => {
            exec(&db, "VACUUM ANALYZE job_logs").await?;
            exec(&db, "VACUUM ANALYZE job_log_details").await?;
        }
        Kind::MySql => {
            db.query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "ANALYZE TABLE job_logs, job_log_details".to_owned(),
            ))
            .await?;
        }
    }
    let analyze_time = t2.elapsed();
    let n_runs = scalar_i64(&db, "SELECT COUNT(*) FROM job_logs").await? as u64;
    let n_details = scalar_i64(&db, "SELECT COUNT(*) FROM job_log_details").await? as u64;

    let mut seed = Table::new(
        format!("4a. Seeding with raw SQL — {}", kind.label()),
        &["step", "rows", "time", "rows/s"],
    );
    seed.row(vec![
        "job_logs".into(),
        thousands(n_runs),
        secs(runs_time),
        rate(n_runs, runs_time),
    ]);
    seed.row(vec![
        "job_log_details".into(),
        thousands(n_details),
        secs(details_time),
        rate(n_details.max(1), details_time),
    ]);
    let analyze = match kind {
        Kind::Sqlite => "ANALYZE",
        Kind::Postgres => "VACUUM ANALYZE (both tables)",
        Kind::MySql => "ANALYZE TABLE (both tables)",
    };
    seed.row(vec![analyze.into(), "—".into(), secs(analyze_time), "—".into()]);
    seed.note(format!(
        "Total seeding: {}.",
        secs(runs_time + details_time + analyze_time)
    ));
    seed.print();

    // The deep page: the runs after the first 30,000 pages of 25 (or as deep as the table goes).
    let depth_pages: u64 = 30_000;
    let pos = (depth_pages * 25).min(n_runs * 3 / 4).max(1);
    let deep_id = scalar_i64(
        &db,
        &format!(
            "SELECT id FROM job_logs ORDER BY id DESC LIMIT 1 OFFSET {}",
            pos - 1
        ),
    )
    .await?;

    let iters = args.iters;
    macro_rules! sample {
        ($e:expr) => {{
            let t = Instant::now();
            for _ in 0..5 {
                black_box($e.await?);
            }
            // Keep a slow query from eating the time budget: never fewer than 50 samples.
            let n = if t.elapsed() > Duration::from_millis(100) {
                iters.min(50)
            } else {
                iters
            };
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                black_box($e.await?);
                v.push(t.elapsed());
            }
            Stats::of(v)
        }};
    }

    let filters: [(&str, RunFilter); 3] = [
        ("no filter", RunFilter::default()),
        (
            "status = error (8 %)",
            RunFilter {
                status: Some(RunStatus::Error),
                ..RunFilter::default()
            },
        ),
        (
            "job = SyncOpenOrdersJob (40 %)",
            RunFilter {
                job: Some(JOBS[0].to_owned()),
                ..RunFilter::default()
            },
        ),
    ];
    let mut t = Table::new(
        format!(
            "4b. Run list, 25 per page — {} ({} runs, {} details; {} timed calls each, 50 if a call takes > 20 ms)",
            kind.label(),
            thousands(n_runs),
            thousands(n_details),
            iters
        ),
        &[
            "query",
            "filter",
            "joblog median ms",
            "joblog p95 ms",
            "deep/first (medians)",
            "raw page SELECT median ms",
            "raw p95 ms",
        ],
    );
    for (label, filter) in &filters {
        // Sanity: the pages are full and carry their last detail.
        let first_page = logger.list_runs(filter, Cursor::First, 25).await?;
        let deep_page = logger.list_runs(filter, Cursor::Before(deep_id), 25).await?;
        if first_page.runs.len() != 25 || deep_page.runs.len() != 25 {
            bail!(
                "{label}: short page ({} / {})",
                first_page.runs.len(),
                deep_page.runs.len()
            );
        }
        if m > 0 && deep_page.runs.iter().any(|r| r.last_detail.is_none()) {
            bail!("{label}: a run of the deep page has no last detail");
        }
        let first = sample!(logger.list_runs(filter, Cursor::First, 25));
        let raw_first = sample!(raw_page(&db, kind, filter, None));
        let deep = sample!(logger.list_runs(filter, Cursor::Before(deep_id), 25));
        let raw_deep = sample!(raw_page(&db, kind, filter, Some(deep_id)));
        t.row(vec![
            "list_runs(First, 25)".into(),
            (*label).into(),
            ms(first.median),
            ms(first.p95),
            String::new(),
            ms(raw_first.median),
            ms(raw_first.p95),
        ]);
        t.row(vec![
            format!("list_runs(Before(id @ {}), 25)", thousands(pos)),
            (*label).into(),
            ms(deep.median),
            ms(deep.p95),
            format!("{:.2}", deep.median.as_secs_f64() / first.median.as_secs_f64()),
            ms(raw_deep.median),
            ms(raw_deep.p95),
        ]);
    }
    let mut parts = Table::new(
        format!(
            "4c. Where a deep page's time goes — {} (medians, ms; each query alone through sqlx)",
            kind.label()
        ),
        &[
            "filter",
            "page SELECT (+ newer probe)",
            "last-detail SELECT",
            "sum of the two",
            "list_runs(Before) (joblog)",
        ],
    );
    for (label, filter) in &filters {
        let page = logger.list_runs(filter, Cursor::Before(deep_id), 25).await?;
        let ids: Vec<i64> = page.runs.iter().map(|r| r.run.id).collect();
        let sel = sample!(raw_page(&db, kind, filter, Some(deep_id)));
        let last = sample!(raw_last_details(&db, kind, &ids));
        let ours = sample!(logger.list_runs(filter, Cursor::Before(deep_id), 25));
        parts.row(vec![
            (*label).into(),
            ms(sel.median),
            ms(last.median),
            ms(sel.median + last.median),
            ms(ours.median),
        ]);
    }
    for (label, filter) in &filters {
        let c = logger.count_runs(filter, 10_000).await?;
        let s = sample!(logger.count_runs(filter, 10_000));
        t.row(vec![
            format!(
                "count_runs(cap 10,000) = {}{}",
                thousands(c.count),
                if c.capped { "+" } else { "" }
            ),
            (*label).into(),
            ms(s.median),
            ms(s.p95),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    t.note(format!(
        "Deep = `Cursor::Before(id)` with id = the run at position {} from the newest (the page after {} pages of 25); \
         filtered deep pages use the same id, i.e. the same point in history.",
        thousands(pos),
        thousands(pos / 25)
    ));
    t.note(
        "list_runs = page SELECT (LIMIT 26; for Before, UNION ALL the first run at or above the cursor) + \
         last-detail SELECT for the 25 runs; \"raw page SELECT\" is the first of these alone, through sqlx.",
    );
    t.print();
    parts.print();
    logger.flush().await?;
    drop(logger);
    db.close().await.ok();
    Ok(())
}

// ---- per backend ---------------------------------------------------------------------------

async fn sections_1_to_3(args: &Args, kind: Kind) -> Result<bool> {
    let Some(bdb) = BenchDb::create(kind, "core").await? else {
        return Ok(false);
    };
    let result = async {
        let logger = JobLogger::builder()
            .queue_capacity(4 * args.throughput.max(2 * args.calls) + 1_000)
            // flush() of section 2 waits for the whole backlog: the default 10 s bound
            // is what a job waits at most, not how long a million details may take.
            .durability_timeout(Duration::from_secs(600))
            .connect(&bdb.url)
            .await?;
        logger.migrate().await?;
        if args.no_search_index && kind == Kind::Postgres {
            for index in ["idx_job_log_details_message_trgm", "idx_job_logs_name_trgm"] {
                exec(logger.db(), &format!("DROP INDEX IF EXISTS {index}")).await?;
            }
        }
        section_detail_call(&logger, kind, args.calls).await?;
        section_visibility(&logger, kind, &bdb.url, if args.quick { 20 } else { 200 }).await?;
        section_throughput(&logger, kind, args.throughput).await?;
        section_runs(&logger, kind, args.run_window).await?;
        logger.flush().await?;
        let db = logger.db().clone();
        drop(logger);
        db.close().await.ok();
        Ok::<_, anyhow::Error>(())
    }
    .await;
    bdb.drop_db().await;
    result.map(|()| true)
}

async fn bench_backend(args: &Args, kind: Kind) -> Result<()> {
    println!("\n### {}\n", kind.label());
    let t0 = Instant::now();
    if !sections_1_to_3(args, kind).await? {
        return Ok(());
    }
    section_list(args, kind).await?;
    println!("\n({} finished in {})", kind.label(), secs(t0.elapsed()));
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("## joblog core benchmarks\n");
    println!(
        "- {} CPU(s): {cpu}; tokio multi-thread runtime with {} workers",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "- backends: {}; --runs {}; --details-per-run {}{}{}",
        args.backends
            .iter()
            .map(|k| k.label())
            .collect::<Vec<_>>()
            .join(", "),
        thousands(args.runs),
        args.details_per_run,
        if args.quick { "; --quick" } else { "" },
        if args.no_search_index {
            "; --no-search-index"
        } else {
            ""
        }
    );
    println!(
        "- section 1: {} calls; section 2: {} details; section 3: {} s windows; section 4: {} timed calls per query",
        thousands(args.calls as u64),
        thousands(args.throughput as u64),
        args.run_window.as_secs(),
        args.iters
    );
    let t0 = Instant::now();
    let mut failed = false;
    for &kind in &args.backends {
        if let Err(e) = bench_backend(&args, kind).await {
            println!("\n**{} failed**: {e:#}", kind.label());
            failed = true;
        }
    }
    println!("\nTotal wall time: {}", secs(t0.elapsed()));
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
