//! joblog-web under load: requests per second and p50 / p99 latency of the root page (run
//! list) and of a run's detail page, next to a trivial endpoint on the same server, with
//! the server's peak memory. Timings are reported, never asserted.
//!
//! ```text
//! cargo bench -p joblog-web --bench pages -- [--backends sqlite,postgres] [--runs N[,N…]] [--svg PATH]
//!     [--details-per-run M] [--seconds S] [--connections C] [--quick]
//! ```
//!
//! Per backend: a fresh database (SQLite temp file; PostgreSQL `CREATE DATABASE
//! jl_webbench_<pid>_<time>`), `migrate()`, then N runs with M details each seeded with raw
//! SQL (the same rows as `joblog/benches/core.rs`). The server runs in a child process (this
//! binary re-executed with `--serve URL`): `joblog_web::router(logger, WebConfig::default())`
//! at `/` (run list, run detail, jobs monitor) plus `/trivial` (a 2-byte string), on 127.0.0.1:0, tokio multi-thread runtime.
//! The parent opens C keep-alive HTTP/1.1 connections (one tokio task each, one request in
//! flight per connection), warms up 1 s, then counts and times every request for S seconds.
//! Peak RSS of the child (`VmHWM`) is reset before each endpoint (`/proc/PID/clear_refs`)
//! and read after it. Server and load generator share the machine's cores.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use joblog::JobLogger;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[path = "../../joblog/benches/support/chart.rs"]
mod chart;
#[path = "../../joblog/benches/support/db.rs"]
mod db;

use db::{BenchDb, Kind, SEED_CHUNK, exec, scalar_i64, seed_details, seed_runs};

// ---- command line ------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Args {
    backends: Vec<Kind>,
    runs: u64,
    /// `--runs N,M,…`: one run of the benchmark per size.
    sizes: Vec<u64>,
    /// `--svg PATH`: with several sizes, a chart of the jobs monitor against runs.
    svg: Option<String>,
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
        sizes: Vec::new(),
        svg: None,
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
            "--runs" => {
                let v = it.next().context("--runs needs a value")?;
                a.sizes = v
                    .split(',')
                    .map(|n| parse_num("--runs", Some(n.to_owned())))
                    .collect::<Result<_>>()?;
                a.runs = a.sizes[0];
            }
            "--svg" => {
                let path = chart::out_path(&it.next().context("--svg needs a path")?)?;
                a.svg = Some(path.display().to_string());
            }
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

/// The benchmark on one backend; returns the jobs monitor's median with one client (ms).
async fn bench_backend(args: &Args, kind: Kind) -> Result<Option<f64>> {
    let Some(bdb) = BenchDb::create(kind, "jl_webbench").await? else {
        return Ok(None);
    };
    let result = bench_on(args, kind, &bdb).await;
    bdb.drop_db().await;
    result
}

async fn bench_on(args: &Args, kind: Kind, bdb: &BenchDb) -> Result<Option<f64>> {
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
        ("`/job_logs/:id` (detail)", detail.as_str(), 1_000),
        ("`/nocache/jobs` (jobs monitor, no cache)", "/nocache/jobs", 2_000),
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
    // One client, one request at a time: the latency of the page itself, without the
    // queueing of C connections on two cores.
    let mut single = Vec::new();
    for (name, path, _) in &endpoints {
        let (l, window) = load(port, path, 1, 2).await?;
        let n = l.latencies_us.len();
        let at = |p: usize| l.latencies_us[(n * p / 100).min(n.saturating_sub(1))] as f64 / 1000.0;
        if n > 0 {
            single.push((*name, n as f64 / window.as_secs_f64(), at(50), at(99)));
        }
    }
    let end_rss = proc_status_kb(pid, "VmRSS");
    child.kill().await.ok();
    let counts = monitor_counts(&bdb.url).await?;

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
    let _ = writeln!(t, "\nOne client, one request at a time (2 s per endpoint):\n");
    let _ = writeln!(t, "| endpoint | req/s | p50 ms | p99 ms |");
    let _ = writeln!(t, "|---|---:|---:|---:|");
    for (name, rps, p50, p99) in &single {
        let _ = writeln!(t, "| {name} | {rps:.0} | {p50:.2} | {p99:.2} |");
    }
    let _ = writeln!(t, "\n{counts}");
    print!("{t}");
    Ok(single
        .iter()
        .find(|(name, ..)| name.contains("/nocache/jobs"))
        .map(|(_, _, p50, _)| *p50))
}

/// The jobs monitor's counts by job and status, read the way it did before issue 13 (a
/// count of every run) and the way it does now (the trigger-kept `job_run_counts`), on the
/// same database: median of 5 each.
async fn monitor_counts(url: &str) -> Result<String> {
    let db = sea_orm::Database::connect(url).await?;
    let mut medians = Vec::new();
    for sql in [
        "SELECT COUNT(*) FROM (SELECT job, status, COUNT(*) FROM job_logs GROUP BY job, status) c",
        "SELECT COUNT(*) FROM (SELECT job, status, runs FROM job_run_counts WHERE runs > 0) c",
    ] {
        let mut times = Vec::new();
        let mut groups = 0;
        for _ in 0..5 {
            let t0 = Instant::now();
            groups = scalar_i64(&db, sql).await?;
            times.push(t0.elapsed());
        }
        times.sort();
        medians.push((times[2], groups));
    }
    Ok(format!(
        "Jobs monitor's runs by job and status ({} groups): counting every run {:.2} ms, \
         `job_run_counts` {:.2} ms (median of 5).",
        medians[1].1,
        medians[0].0.as_secs_f64() * 1000.0,
        medians[1].0.as_secs_f64() * 1000.0
    ))
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
        let sizes = if args.sizes.is_empty() {
            vec![args.runs]
        } else {
            args.sizes.clone()
        };
        let mut series: Vec<chart::Series> = Vec::new();
        for &kind in &args.backends {
            let mut points = Vec::new();
            for &runs in &sizes {
                let args = Args { runs, ..args.clone() };
                match bench_backend(&args, kind).await {
                    Ok(Some(p50)) => points.push((runs as f64, p50)),
                    Ok(None) => {}
                    Err(e) => println!("\n**{} failed**: {e:#}", kind.label()),
                }
            }
            series.push(chart::Series {
                name: format!("{}: /jobs p50", kind.label()),
                points,
            });
        }
        if sizes.len() > 1 {
            println!("\nJobs monitor (`/nocache/jobs`, one client) against runs, p50 ms:\n");
            let xs: Vec<f64> = sizes.iter().map(|n| *n as f64).collect();
            chart::print_table("backend", &xs, &series);
        }
        if let Some(path) = &args.svg {
            std::fs::write(
                path,
                chart::line_chart("Jobs monitor page, one client", "runs (log scale)", "median ms", &series),
            )?;
            println!("\nchart written to {path}");
        }
        println!("\nTotal wall time: {:.1} s", t0.elapsed().as_secs_f64());
        Ok(())
    })
}
