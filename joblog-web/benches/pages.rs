//! joblog-web under load: requests per second and p50 / p99 latency of the root page (run
//! list) and of a run's detail page, next to a trivial endpoint on the same server, with
//! the server's peak memory. Timings are reported, never asserted.
//!
//! ```text
//! cargo bench -p joblog-web --bench pages -- [--backends sqlite,postgres] [--runs N]
//!     [--details-per-run M] [--seconds S] [--connections C] [--quick]
//! ```
//!
//! Per backend: a fresh database (SQLite temp file; PostgreSQL `CREATE DATABASE
//! jl_webbench_<pid>_<time>`), `migrate()`, then N runs with M details each seeded with raw
//! SQL (the same rows as `joblog/benches/core.rs`). The server runs in a child process (this
//! binary re-executed with `--serve URL`): `joblog_web::router(logger, WebConfig::default())`
//! at `/` plus `/trivial` (a 2-byte string), on 127.0.0.1:0, tokio multi-thread runtime.
//! The parent opens C keep-alive HTTP/1.1 connections (one tokio task each, one request in
//! flight per connection), warms up 1 s, then counts and times every request for S seconds.
//! Peak RSS of the child (`VmHWM`) is reset before each endpoint (`/proc/PID/clear_refs`)
//! and read after it. Server and load generator share the machine's cores.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use joblog::JobLogger;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, TransactionTrait};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

// ---- command line ------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Sqlite => "SQLite",
            Kind::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Debug)]
struct Args {
    backends: Vec<Kind>,
    runs: u64,
    details_per_run: u64,
    seconds: u64,
    connections: usize,
}

fn parse_num(flag: &str, v: Option<String>) -> Result<u64> {
    let v = v.with_context(|| format!("{flag} needs a value"))?;
    v.replace('_', "")
        .parse()
        .with_context(|| format!("{flag}: not a number: {v}"))
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args> {
    let mut a = Args {
        backends: vec![Kind::Sqlite, Kind::Postgres],
        runs: 1_000_000,
        details_per_run: 10,
        seconds: 10,
        connections: 64,
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--backends" => {
                let v = it.next().context("--backends needs a value")?;
                a.backends = v
                    .split(',')
                    .map(|b| match b.trim() {
                        "sqlite" => Ok(Kind::Sqlite),
                        "postgres" | "pg" => Ok(Kind::Postgres),
                        other => bail!("unknown backend {other}"),
                    })
                    .collect::<Result<_>>()?;
            }
            "--runs" => a.runs = parse_num("--runs", it.next())?,
            "--details-per-run" => a.details_per_run = parse_num("--details-per-run", it.next())?,
            "--seconds" => a.seconds = parse_num("--seconds", it.next())?,
            "--connections" => a.connections = parse_num("--connections", it.next())? as usize,
            "--quick" => {
                a.runs = 20_000;
                a.seconds = 2;
            }
            // `cargo bench` passes `--bench`; ignore it and anything else unknown.
            _ => {}
        }
    }
    Ok(a)
}

// ---- the server (child process) ----------------------------------------------------------

#[poem::handler]
fn trivial() -> &'static str {
    "ok"
}

async fn serve(url: &str) -> Result<()> {
    use poem::listener::{Acceptor, Listener, TcpListener};
    use poem::{Route, get};
    let logger = JobLogger::connect(url).await?;
    // The pages as shipped (run list cached for 1 s), and the same pages without the
    // list cache under /nocache, so that both costs show side by side.
    let uncached = joblog_web::WebConfig::default().list_cache(Duration::ZERO);
    let app = Route::new()
        .at("/trivial", get(trivial))
        .nest("/nocache", joblog_web::router(logger.clone(), uncached))
        .nest("/", joblog_web::router(logger, joblog_web::WebConfig::default()));
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let addr = *acceptor.local_addr()[0]
        .as_socket_addr()
        .context("no socket address")?;
    println!("{}", addr.port());
    use std::io::Write as _;
    std::io::stdout().flush()?;
    poem::Server::new_with_acceptor(acceptor).run(app).await?;
    Ok(())
}

// ---- databases (copied from joblog/benches/core.rs, MySQL left out) ----------------------

fn postgres_server() -> String {
    std::env::var("JOBLOG_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

#[derive(Debug)]
struct BenchDb {
    url: String,
    name: String,
    admin_url: Option<String>,
    file: Option<std::path::PathBuf>,
}

impl BenchDb {
    async fn create(kind: Kind) -> Result<Option<BenchDb>> {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let name = format!("jl_webbench_{}_{}", std::process::id(), t.as_secs());
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

    async fn drop_db(self) {
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

/// 2025-01-01T00:00:00Z; seeded run n starts at T0 + 31 n seconds.
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

fn job_case(j: &str) -> String {
    format!(
        "CASE WHEN {j} < 8 THEN '{}' WHEN {j} < 12 THEN '{}' WHEN {j} < 15 THEN '{}' \
         WHEN {j} < 18 THEN '{}' WHEN {j} = 18 THEN '{}' ELSE '{}' END",
        JOBS[0], JOBS[1], JOBS[2], JOBS[3], JOBS[4], JOBS[5]
    )
}

const STATUS_CASE: &str = "CASE WHEN r < 90 THEN 2 WHEN r < 98 THEN 3 WHEN r = 98 THEN 1 ELSE 0 END";

fn detail_cases(i: &str, m: u64) -> (String, String) {
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

/// Seeds and analyzes; returns the id of the run in the middle.
async fn seed(args: &Args, kind: Kind, url: &str) -> Result<i64> {
    let logger = JobLogger::connect(url).await?;
    logger.migrate().await?;
    let db = logger.db().clone();
    let t0 = Instant::now();
    let mut lo = 1;
    while lo <= args.runs {
        let hi = (lo + SEED_CHUNK - 1).min(args.runs);
        seed_runs(&db, kind, lo, hi).await?;
        lo = hi + 1;
    }
    let min_id = scalar_i64(&db, "SELECT MIN(id) FROM job_logs").await? as u64;
    let max_id = scalar_i64(&db, "SELECT MAX(id) FROM job_logs").await? as u64;
    if args.details_per_run > 0 {
        let mut lo = min_id;
        while lo <= max_id {
            let hi = (lo + SEED_CHUNK - 1).min(max_id);
            seed_details(&db, kind, lo, hi, args.details_per_run).await?;
            lo = hi + 1;
        }
    }
    match kind {
        Kind::Sqlite => exec(&db, "ANALYZE").await?,
        Kind::Postgres => {
            exec(&db, "VACUUM ANALYZE job_logs").await?;
            exec(&db, "VACUUM ANALYZE job_log_details").await?;
        }
    }
    eprintln!(
        "  [{}] seeded {} runs, {} details each, in {:.1} s",
        kind.label(),
        args.runs,
        args.details_per_run,
        t0.elapsed().as_secs_f64()
    );
    db.close().await.ok();
    Ok(((min_id + max_id) / 2) as i64)
}

// ---- HTTP client ---------------------------------------------------------------------------

struct Conn {
    stream: BufReader<TcpStream>,
    line: String,
    body: Vec<u8>,
}

impl Conn {
    async fn open(port: u16) -> Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            stream: BufReader::new(s),
            line: String::new(),
            body: Vec::new(),
        })
    }

    /// One keep-alive GET; returns the status and body length (the body is in `self.body`).
    async fn get(&mut self, request: &[u8]) -> Result<(u16, usize)> {
        self.stream.get_mut().write_all(request).await?;
        self.line.clear();
        if self.stream.read_line(&mut self.line).await? == 0 {
            bail!("connection closed");
        }
        let status: u16 = self.line.split(' ').nth(1).context("status line")?.parse()?;
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                bail!("connection closed in headers");
            }
            let l = self.line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => length = Some(v.parse::<usize>()?),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        self.body.clear();
        if chunked {
            loop {
                self.line.clear();
                self.stream.read_line(&mut self.line).await?;
                let size = usize::from_str_radix(self.line.trim(), 16)?;
                let start = self.body.len();
                self.body.resize(start + size + 2, 0);
                self.stream.read_exact(&mut self.body[start..]).await?;
                self.body.truncate(start + size);
                if size == 0 {
                    break;
                }
            }
        } else if let Some(n) = length {
            self.body.resize(n, 0);
            self.stream.read_exact(&mut self.body).await?;
        } else {
            bail!("response without length");
        }
        if close {
            bail!("server closed the connection");
        }
        Ok((status, self.body.len()))
    }
}

fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: joblog-web-bench\r\n\r\n").into_bytes()
}

#[derive(Debug, Default)]
struct Load {
    latencies_us: Vec<u32>,
    errors: u64,
    bytes: usize,
}

/// `connections` keep-alive connections, one request in flight on each; 1 s of warm-up,
/// then `seconds` timed.
async fn load(port: u16, path: &str, connections: usize, seconds: u64) -> Result<(Load, Duration)> {
    let req = std::sync::Arc::new(request(path));
    let t_start = Instant::now() + Duration::from_secs(1);
    let t_end = t_start + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let req = req.clone();
        tasks.spawn(async move {
            let mut out = Load::default();
            let mut conn = Conn::open(port).await?;
            loop {
                let t = Instant::now();
                if t >= t_end {
                    break;
                }
                let res = conn.get(&req).await;
                let took = t.elapsed();
                let timed = t >= t_start && Instant::now() <= t_end;
                match res {
                    Ok((status, len)) => {
                        if timed {
                            if status == 200 {
                                out.latencies_us
                                    .push(took.as_micros().min(u32::MAX as u128) as u32);
                                out.bytes = len;
                            } else {
                                out.errors += 1;
                            }
                        }
                    }
                    Err(_) => {
                        if timed {
                            out.errors += 1;
                        }
                        conn = Conn::open(port).await?;
                    }
                }
            }
            anyhow::Ok(out)
        });
    }
    let mut all = Load::default();
    while let Some(r) = tasks.join_next().await {
        let r = r??;
        all.latencies_us.extend(r.latencies_us);
        all.errors += r.errors;
        all.bytes = all.bytes.max(r.bytes);
    }
    all.latencies_us.sort_unstable();
    Ok((all, Duration::from_secs(seconds)))
}

// ---- the child's memory -------------------------------------------------------------------

fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets the peak RSS (VmHWM) to the current RSS; false if the kernel refuses.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

// ---- one backend ---------------------------------------------------------------------------

struct Row {
    name: String,
    rps: f64,
    p50: f64,
    p99: f64,
    errors: u64,
    bytes: usize,
    peak_kb: Option<u64>,
}

async fn bench_backend(args: &Args, kind: Kind) -> Result<()> {
    let Some(bdb) = BenchDb::create(kind).await? else {
        return Ok(());
    };
    let result = bench_on(args, kind, &bdb).await;
    bdb.drop_db().await;
    result
}

async fn bench_on(args: &Args, kind: Kind, bdb: &BenchDb) -> Result<()> {
    let mid = seed(args, kind, &bdb.url).await?;

    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .arg("--serve")
        .arg(&bdb.url)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("child pid")?;
    let mut out = BufReader::new(child.stdout.take().context("child stdout")?);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), out.read_line(&mut line))
        .await
        .context("server did not start")??;
    let port: u16 = line.trim().parse().with_context(|| format!("port: {line:?}"))?;

    let detail = format!("/job_logs/{mid}");
    let endpoints = [
        ("`/trivial`", "/trivial", 1usize),
        ("`/` (run list, 1 s list cache: the default)", "/", 10_000),
        ("`/nocache/` (run list, no cache)", "/nocache/", 10_000),
        ("`/job_logs/:id` (detail)", detail.as_str(), 2_000),
    ];
    // Check every endpoint once before timing.
    for (name, path, min_len) in &endpoints {
        let mut c = Conn::open(port).await?;
        let (status, len) = c.get(&request(path)).await?;
        let body = String::from_utf8_lossy(&c.body);
        if status != 200 || len < *min_len {
            bail!(
                "{name}: status {status}, {len} bytes: {}",
                &body[..body.len().min(300)]
            );
        }
        if *path == "/" && !body.contains(&format!("/job_logs/{}", mid * 2 - 1)) && args.runs >= 2 {
            eprintln!("  warning: the root page does not link the newest run");
        }
    }
    let idle_kb = proc_status_kb(pid, "VmRSS");
    let mut rows = Vec::new();
    let mut reset_ok = true;
    let mut overall_peak = proc_status_kb(pid, "VmHWM");
    for (name, path, _) in &endpoints {
        let before = proc_status_kb(pid, "VmHWM");
        overall_peak = overall_peak.max(before);
        reset_ok &= reset_peak(pid);
        let (l, window) = load(port, path, args.connections, args.seconds).await?;
        let peak_kb = proc_status_kb(pid, "VmHWM");
        overall_peak = overall_peak.max(peak_kb);
        let n = l.latencies_us.len();
        let pct = |p: usize| {
            if n == 0 {
                f64::NAN
            } else {
                l.latencies_us[(n * p / 100).min(n - 1)] as f64 / 1000.0
            }
        };
        rows.push(Row {
            name: (*name).to_owned(),
            rps: n as f64 / window.as_secs_f64(),
            p50: pct(50),
            p99: pct(99),
            errors: l.errors,
            bytes: l.bytes,
            peak_kb,
        });
        eprintln!(
            "  [{}] {name}: {:.0} req/s",
            kind.label(),
            n as f64 / window.as_secs_f64()
        );
    }
    let end_rss = proc_status_kb(pid, "VmRSS");
    child.kill().await.ok();

    let base_rps = rows[0].rps;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n### {} — {} runs × {} details, {} connections, {} s per endpoint\n",
        kind.label(),
        args.runs,
        args.details_per_run,
        args.connections,
        args.seconds
    );
    let _ = writeln!(
        t,
        "| endpoint | req/s | p50 ms | p99 ms | errors | % of trivial | body bytes | peak RSS MB |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let _ = writeln!(
            t,
            "| {} | {:.0} | {:.2} | {:.2} | {} | {:.0} % | {} | {} |",
            r.name,
            r.rps,
            r.p50,
            r.p99,
            r.errors,
            100.0 * r.rps / base_rps,
            r.bytes,
            if reset_ok { mb(r.peak_kb) } else { "–".into() }
        );
    }
    let _ = writeln!(
        t,
        "\nServer RSS: {} MB idle after the checks, {} MB at the end; peak over the whole run (VmHWM) {} MB{}.",
        mb(idle_kb),
        mb(end_rss),
        mb(overall_peak),
        if reset_ok {
            ""
        } else {
            " (per-endpoint peak not available: clear_refs refused)"
        }
    );
    print!("{t}");
    Ok(())
}

fn main() -> Result<()> {
    let mut argv = std::env::args().skip(1);
    let first: Vec<String> = argv.by_ref().collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if let Some(i) = first.iter().position(|a| a == "--serve") {
        let url = first.get(i + 1).context("--serve needs a URL")?.clone();
        return rt.block_on(serve(&url));
    }
    let args = parse_args(first.into_iter())?;
    rt.block_on(async {
        let t0 = Instant::now();
        println!(
            "joblog-web pages: {} runs × {} details, {} connections, {} s per endpoint (+1 s warm-up), {} cores",
            args.runs,
            args.details_per_run,
            args.connections,
            args.seconds,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        for &kind in &args.backends {
            if let Err(e) = bench_backend(&args, kind).await {
                println!("\n**{} failed**: {e:#}", kind.label());
            }
        }
        println!("\nTotal wall time: {:.1} s", t0.elapsed().as_secs_f64());
        Ok(())
    })
}
