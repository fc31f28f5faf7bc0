//! The run list's text search, three ways side by side in one run: what `q=` cost before
//! issue 12 (`list_runs` with the text filter plus `count_runs`, both reading the details
//! of every run), the bounded scan of issue 12 (`search_runs` without the index: one
//! statement over the newest 20,000 runs, stopped by the database after 2 s), and the search
//! index of issue 13 (`search_runs` with the default `SearchBudget`: SQLite FTS5 trigram,
//! PostgreSQL `pg_trgm`). Then what the index costs the writers. Timings are reported, never
//! asserted.
//!
//! ```text
//! cargo bench -p joblog --bench search -- [--backends sqlite,postgres] [--runs N]
//!     [--details-per-run M] [--repeat R] [--writes W]
//! ```
//!
//! Per backend: a fresh database (SQLite: a temp file; PostgreSQL: `CREATE DATABASE
//! jl_searchbench_<pid>_<time>` on `JOBLOG_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432`, dropped at the end), `migrate()`, then N runs
//! with M details each seeded with raw SQL (the rows of `joblog-web/benches/pages.rs` and
//! `joblog/benches/core.rs`; on PostgreSQL the trigram indexes are dropped first and built
//! after the seeding, as on a database upgraded to this version), one more detail planted in
//! the newest run, `build_search_index()` timed, and `ANALYZE`. Then each search is called
//! once untimed and R times timed, for three terms: one no row contains, one only the
//! planted detail contains, and one every run contains (`Job started`, its first detail).
//!
//! Writes (`--writes W`, default 1,000,000; 0 skips): W details through `run.detail()` and
//! `flush()` on a fresh database with the index, and on another without it (its index
//! dropped after `migrate()`); on SQLite also how long the background indexer then takes to
//! index them.
//!
//! `JOBLOG_BENCH_KEEP_DB=1` keeps the databases, to look at plans.

#[path = "support/db.rs"]
mod db;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use db::{BenchDb, Kind, SEED_CHUNK, exec, scalar_i64, seed_details, seed_runs};
use joblog::JobLogger;
use joblog::query::{Cursor, RunFilter, SearchBudget, SearchEnd};
use sea_orm::DatabaseConnection;

#[path = "support/chart.rs"]
mod chart;

// ---- command line ------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Args {
    backends: Vec<Kind>,
    runs: u64,
    /// `--runs N,M,…`: one search benchmark per size.
    sizes: Vec<u64>,
    /// `--svg PATH`: with several sizes, a chart of the indexed search against details.
    svg: Option<String>,
    details_per_run: u64,
    repeat: usize,
    writes: u64,
}

fn parse_num(flag: &str, v: Option<String>) -> Result<u64> {
    let v = v.with_context(|| format!("{flag} needs a value"))?;
    v.replace(['_', ','], "")
        .parse()
        .with_context(|| format!("{flag}: not a number: {v}"))
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args> {
    let mut a = Args {
        backends: vec![Kind::Sqlite],
        runs: 300_000,
        sizes: Vec::new(),
        svg: None,
        details_per_run: 10,
        repeat: 3,
        writes: 1_000_000,
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--backends" => {
                let v = it.next().context("--backends needs a value")?;
                a.backends = v
                    .split(',')
                    .map(str::trim)
                    .filter(|b| !b.is_empty())
                    .map(|b| match b {
                        "sqlite" => Ok(Kind::Sqlite),
                        "postgres" | "postgresql" | "pg" => Ok(Kind::Postgres),
                        other => bail!("unknown backend {other:?} (sqlite, postgres)"),
                    })
                    .collect::<Result<_>>()?;
            }
            "--runs" => {
                let v = it.next().context("--runs needs a value")?;
                a.sizes = v
                    .split(',')
                    .map(|n| parse_num("--runs", Some(n.to_owned())).map(|n| n.max(1)))
                    .collect::<Result<_>>()?;
                a.runs = a.sizes[0];
            }
            "--svg" => {
                let path = chart::out_path(&it.next().context("--svg needs a path")?)?;
                a.svg = Some(path.display().to_string());
            }
            "--details-per-run" => a.details_per_run = parse_num("--details-per-run", it.next())?.max(1),
            "--repeat" => a.repeat = parse_num("--repeat", it.next())?.max(1) as usize,
            "--writes" => a.writes = parse_num("--writes", it.next())?,
            // `cargo bench` passes `--bench` to harness = false targets.
            "--bench" => {}
            "-h" | "--help" => {
                println!(
                    "cargo bench -p joblog --bench search -- [--backends sqlite,postgres] [--runs N[,N…]] \
                     [--details-per-run M] [--repeat R] [--writes W] [--svg PATH]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(a)
}

/// A term no seeded row contains.
const TERM_NOTHING: &str = "zzznothing";
/// A term only the detail planted in the newest run contains.
const TERM_RECENT: &str = "checksum mismatch";
/// A term every run contains (its first detail, `Job started - <job>`).
const TERM_EVERY: &str = "Job started";
/// The planted detail (60 characters, like the longer seeded ones).
const PLANTED: &str = "Supplier feed rejected: checksum mismatch in orders_0427.csv";

/// Seeds, plants one detail in the newest run and analyzes; returns the newest run's id.
async fn seed(args: &Args, kind: Kind, db: &DatabaseConnection) -> Result<i64> {
    let mut lo = 1;
    while lo <= args.runs {
        let hi = (lo + SEED_CHUNK - 1).min(args.runs);
        seed_runs(db, kind, lo, hi).await?;
        lo = hi + 1;
    }
    let min_id = scalar_i64(db, "SELECT MIN(id) FROM job_logs").await? as u64;
    let max_id = scalar_i64(db, "SELECT MAX(id) FROM job_logs").await? as u64;
    let mut lo = min_id;
    while lo <= max_id {
        let hi = (lo + SEED_CHUNK - 1).min(max_id);
        seed_details(db, kind, lo, hi, args.details_per_run).await?;
        lo = hi + 1;
    }
    // After the run's seeded details, as a warning written near its end would be.
    exec(
        db,
        &format!(
            "INSERT INTO job_log_details (job_log_id, level, message, created_at) \
             SELECT id, 'warn', '{PLANTED}', updated_at FROM job_logs WHERE id = {max_id}"
        ),
    )
    .await?;
    match kind {
        Kind::Sqlite => exec(db, "ANALYZE").await?,
        Kind::Postgres => {
            exec(db, "VACUUM ANALYZE job_logs").await?;
            exec(db, "VACUUM ANALYZE job_log_details").await?;
        }
    }
    Ok(max_id as i64)
}

// ---- the searches --------------------------------------------------------------------------

/// Page size of the run list (`WebConfig::default().page_size`).
const PER_PAGE: u64 = 25;
/// The run list's count cap before issue 12 (`COUNT_CAP` in joblog-web/src/pages/runs.rs).
const OLD_COUNT_CAP: u64 = 10_000;

/// One timed call: its wall time, the part spent counting (old path), the run ids shown,
/// and how it ended.
struct Call {
    wall: Duration,
    count_part: Option<Duration>,
    shown: Vec<i64>,
    ended: String,
}

async fn old_path(logger: &JobLogger, filter: &RunFilter) -> Result<Call> {
    let t = Instant::now();
    let page = logger.list_runs(filter, Cursor::First, PER_PAGE).await?;
    let t_count = Instant::now();
    let total = logger.count_runs(filter, OLD_COUNT_CAP).await?;
    let count_part = t_count.elapsed();
    let wall = t.elapsed();
    Ok(Call {
        wall,
        count_part: Some(count_part),
        shown: page.runs.iter().map(|i| i.run.id).collect(),
        ended: format!("counted {}{}", total.count, if total.capped { "+" } else { "" }),
    })
}

async fn new_path(logger: &JobLogger, filter: &RunFilter, index: bool) -> Result<Call> {
    let t = Instant::now();
    let budget = SearchBudget {
        index,
        ..SearchBudget::default()
    };
    let found = logger
        .search_runs(filter, Cursor::First, PER_PAGE, budget)
        .await?;
    let wall = t.elapsed();
    let ended = match found.end {
        SearchEnd::Complete if found.matches.is_some() => {
            format!("Complete, {} runs counted", found.matches.unwrap_or_default())
        }
        SearchEnd::Complete => "Complete".to_owned(),
        SearchEnd::WindowEnd { runs } => format!("WindowEnd ({runs} runs)"),
        SearchEnd::TimedOut { after } => format!("TimedOut (after {} s)", after.as_secs_f64()),
        SearchEnd::Refused(e) => format!("Refused ({e})"),
        other => format!("{other:?}"),
    };
    Ok(Call {
        wall,
        count_part: None,
        shown: found.page.runs.iter().map(|i| i.run.id).collect(),
        ended,
    })
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// Median (the lower middle one for an even count) and worst.
fn median_worst(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort_unstable();
    (v[(v.len() - 1) / 2], v[v.len() - 1])
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The searches on one backend; returns the indexed search's median per term (ms).
async fn bench_backend(args: &Args, kind: Kind) -> Result<Vec<(&'static str, f64)>> {
    let Some(bdb) = BenchDb::create(kind, "jl_searchbench").await? else {
        return Ok(Vec::new());
    };
    let result = bench_on(args, kind, &bdb).await;
    bdb.drop_db().await;
    result
}

async fn bench_on(args: &Args, kind: Kind, bdb: &BenchDb) -> Result<Vec<(&'static str, f64)>> {
    let logger = JobLogger::connect(&bdb.url).await?;
    logger.migrate().await?;
    if kind == Kind::Postgres {
        // As on a database upgraded to this version: rows first, the index built after.
        exec(logger.db(), "DROP INDEX idx_job_log_details_message_trgm").await?;
        exec(logger.db(), "DROP INDEX idx_job_logs_name_trgm").await?;
    }
    let t_seed = Instant::now();
    let newest = seed(args, kind, logger.db()).await?;
    let seed_time = t_seed.elapsed();
    let details = scalar_i64(logger.db(), "SELECT COUNT(*) FROM job_log_details").await?;
    let t_index = Instant::now();
    logger.build_search_index().await?;
    let index_time = t_index.elapsed();
    match kind {
        Kind::Sqlite => exec(logger.db(), "ANALYZE").await?,
        Kind::Postgres => exec(logger.db(), "ANALYZE").await?,
    }

    let filter = |t: &str| RunFilter {
        text: Some(t.into()),
        ..RunFilter::default()
    };
    let (nothing, recent, every) = (filter(TERM_NOTHING), filter(TERM_RECENT), filter(TERM_EVERY));
    /// (label, term, path: 0 old / 1 scan / 2 index, filter)
    type Case<'a> = (&'static str, &'static str, u8, &'a RunFilter);
    const OLD: &str = "(old) `list_runs` + `count_runs(…, 10000)`";
    const SCAN: &str = "(scan) `search_runs`, no index";
    const INDEX: &str = "(index) `search_runs`, default budget";
    let cases: [Case<'_>; 7] = [
        (OLD, TERM_NOTHING, 0, &nothing),
        (SCAN, TERM_NOTHING, 1, &nothing),
        (INDEX, TERM_NOTHING, 2, &nothing),
        (SCAN, TERM_RECENT, 1, &recent),
        (INDEX, TERM_RECENT, 2, &recent),
        (SCAN, TERM_EVERY, 1, &every),
        (INDEX, TERM_EVERY, 2, &every),
    ];
    let newest_page: Vec<i64> = (0..PER_PAGE as i64).map(|k| newest - k).collect();

    let load_before = loadavg();
    let t_search = Instant::now();
    let mut out = String::new();
    let mut notes = Vec::new();
    let mut indexed = Vec::new();
    for (name, term, path, filter) in cases {
        let call = |logger: &JobLogger| {
            let logger = logger.clone();
            let filter = filter.clone();
            async move {
                match path {
                    0 => old_path(&logger, &filter).await,
                    p => new_path(&logger, &filter, p == 2).await,
                }
            }
        };
        // Once untimed, so that every timed call finds the same cache.
        call(&logger).await?;
        let mut walls = Vec::new();
        let mut counts = Vec::new();
        let mut ends: Vec<String> = Vec::new();
        let mut shown = Vec::new();
        for _ in 0..args.repeat {
            let c = call(&logger).await?;
            walls.push(c.wall);
            counts.extend(c.count_part);
            if !ends.contains(&c.ended) {
                ends.push(c.ended);
            }
            shown = c.shown;
        }
        let expected: &[i64] = match term {
            TERM_RECENT => &[newest],
            TERM_EVERY => &newest_page,
            _ => &[],
        };
        if shown != expected {
            notes.push(format!(
                "{name} `{term}`: showed runs {shown:?}, expected {expected:?}"
            ));
        }
        let (median, worst) = median_worst(walls);
        if path == 2 {
            indexed.push((term, median.as_secs_f64() * 1000.0));
        }
        let count_median = if counts.is_empty() {
            "–".to_owned()
        } else {
            ms(median_worst(counts).0)
        };
        writeln!(
            out,
            "| {name} | `{term}` | {} | {} | {count_median} | {} | {} |",
            ms(median),
            ms(worst),
            shown.len(),
            ends.join(" / ")
        )?;
    }
    let search_time = t_search.elapsed();
    logger.db().clone().close().await.ok();

    println!(
        "\n#### {} — {} runs × {} details ({} detail rows), {} timed calls each after one untimed",
        kind.label(),
        args.runs,
        args.details_per_run,
        details,
        args.repeat
    );
    println!(
        "\nSeeded in {:.1} s; `build_search_index()` took {:.1} s ({}); searches took {:.1} s; \
         load average {load_before} before the searches, {} after.\n",
        seed_time.as_secs_f64(),
        index_time.as_secs_f64(),
        match kind {
            Kind::Sqlite => format!(
                "FTS5 batches, {:.0} rows/s",
                (details as f64 + args.runs as f64) / index_time.as_secs_f64().max(1e-9)
            ),
            Kind::Postgres => "two GIN indexes, CREATE INDEX CONCURRENTLY".to_owned(),
        },
        search_time.as_secs_f64(),
        loadavg()
    );
    println!(
        "| search | term | median ms | worst ms | of which `count_runs` (median ms) | runs shown | how it ended |"
    );
    println!("|---|---|---:|---:|---:|---:|---|");
    print!("{out}");
    for n in notes {
        println!("\n**odd**: {n}");
    }
    Ok(indexed)
}

// ---- what the index costs the writers ------------------------------------------------------

/// Drops the search index a fresh `migrate()` made, for the "without" side.
async fn drop_search_index(kind: Kind, db: &DatabaseConnection) -> Result<()> {
    let statements: &[&str] = match kind {
        Kind::Sqlite => &[
            "DROP TRIGGER job_log_details_fts_delete",
            "DROP TRIGGER job_log_details_fts_update",
            "DROP TRIGGER job_logs_fts_delete",
            "DROP TRIGGER job_logs_fts_update",
            "DROP TABLE job_log_details_fts",
            "DROP TABLE job_logs_fts",
            "DROP TABLE joblog_search_index",
        ],
        Kind::Postgres => &[
            "DROP INDEX idx_job_log_details_message_trgm",
            "DROP INDEX idx_job_logs_name_trgm",
        ],
    };
    for sql in statements {
        exec(db, sql).await?;
    }
    Ok(())
}

/// `n` details through `run.detail()` until `flush()` returns; on SQLite with the index, also
/// until the background indexer has indexed them (from the first detail).
async fn one_write_run(kind: Kind, n: u64, with_index: bool) -> Result<Option<(Duration, Option<Duration>)>> {
    let Some(bdb) = BenchDb::create(kind, "jl_searchwrites").await? else {
        return Ok(None);
    };
    let result = async {
        let logger = JobLogger::builder()
            .queue_capacity(n as usize + 1_000)
            // flush() waits for the whole queue: far longer than a job's usual bound.
            .durability_timeout(Duration::from_secs(600))
            .connect(&bdb.url)
            .await?;
        logger.migrate().await?;
        if !with_index {
            drop_search_index(kind, logger.db()).await?;
        }
        let run = logger.start("BenchWrites").await?;
        logger.flush().await?;
        let t0 = Instant::now();
        for i in 0..n {
            run.detail(format!("Processed row {i} of batch {}: status=ok", i / 1000));
        }
        logger.flush().await?;
        let persisted = t0.elapsed();
        run.success().await?;
        let indexed = if with_index && kind == Kind::Sqlite {
            let newest = scalar_i64(logger.db(), "SELECT MAX(id) FROM job_log_details").await?;
            loop {
                let mark = scalar_i64(
                    logger.db(),
                    "SELECT indexed_upto FROM joblog_search_index WHERE source = 'job_log_details'",
                )
                .await?;
                if mark >= newest {
                    break Some(t0.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else {
            None
        };
        let db = logger.db().clone();
        drop(logger);
        db.close().await.ok();
        Ok::<_, anyhow::Error>((persisted, indexed))
    }
    .await;
    bdb.drop_db().await;
    result.map(Some)
}

async fn bench_writes(args: &Args, kind: Kind) -> Result<()> {
    if args.writes == 0 {
        return Ok(());
    }
    println!(
        "\n#### {} — {} details through `run.detail()` + `flush()`, with and without the search index\n",
        kind.label(),
        args.writes
    );
    println!("| database | persisted in | details persisted/s | indexed by (from the first detail) |");
    println!("|---|---:|---:|---:|");
    for with_index in [true, false] {
        let Some((persisted, indexed)) = one_write_run(kind, args.writes, with_index).await? else {
            return Ok(());
        };
        println!(
            "| {} | {:.2} s | {:.0} | {} |",
            if with_index {
                "with the index"
            } else {
                "index dropped"
            },
            persisted.as_secs_f64(),
            args.writes as f64 / persisted.as_secs_f64().max(1e-9),
            match indexed {
                Some(d) => format!(
                    "{:.2} s ({:.0} details/s)",
                    d.as_secs_f64(),
                    args.writes as f64 / d.as_secs_f64().max(1e-9)
                ),
                None if with_index => "as written (PostgreSQL keeps the GIN index)".to_owned(),
                None => "–".to_owned(),
            }
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args(std::env::args().skip(1))?;
    let t0 = Instant::now();
    println!(
        "joblog run-list search, old vs scan vs index: {} runs × {} details, {} repeats, page of {PER_PAGE}, \
         {} cores, load average {} at start",
        args.runs,
        args.details_per_run,
        args.repeat,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    let sizes = if args.sizes.is_empty() {
        vec![args.runs]
    } else {
        args.sizes.clone()
    };
    // (backend, term) → (details, median ms) per size.
    let mut series: Vec<chart::Series> = Vec::new();
    for &kind in &args.backends {
        for &runs in &sizes {
            let args = Args { runs, ..args.clone() };
            match bench_backend(&args, kind).await {
                Ok(medians) => {
                    for (term, ms) in medians {
                        let name = format!("{}: `{term}`", kind.label());
                        let x = (runs * args.details_per_run) as f64;
                        match series.iter_mut().find(|s| s.name == name) {
                            Some(s) => s.points.push((x, ms)),
                            None => series.push(chart::Series {
                                name,
                                points: vec![(x, ms)],
                            }),
                        }
                    }
                }
                Err(e) => println!("\n**{} failed**: {e:#}", kind.label()),
            }
        }
        if let Err(e) = bench_writes(&args, kind).await {
            println!("\n**{} writes failed**: {e:#}", kind.label());
        }
    }
    if sizes.len() > 1 {
        println!("\nIndexed search against details, median ms:\n");
        let xs: Vec<f64> = sizes.iter().map(|n| (n * args.details_per_run) as f64).collect();
        chart::print_table("backend: term", &xs, &series);
    }
    if let Some(path) = &args.svg {
        std::fs::write(
            path,
            chart::line_chart(
                "Run-list search with the index",
                "details (log scale)",
                "median ms",
                &series,
            ),
        )?;
        println!("\nchart written to {path}");
    }
    println!("\nTotal wall time: {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
