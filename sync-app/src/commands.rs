//! What each command does. `main.rs` only parses the command line and calls these.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use joblog::{JobLogger, PruneOptions};
use joblog_web::BasicAuth;
use poem::Server;
use tokio::sync::watch;

use crate::configuration::{ConfigError, Settings};
use crate::erp::{DEFAULT_SOURCE_QUERY, ErpSource};
use crate::fake_erp::{Failure, FakeErp, FakeErpConfig};
use crate::sync_job::{JOB_NAME, SyncOpenOrdersJob};
use crate::{database, web};

/// Runs with no heartbeat for this long belong to a dead process (heartbeats every 15 s).
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// The demo's interval unless `SYNC_INTERVAL` is set.
pub const DEMO_INTERVAL: Duration = Duration::from_secs(30);
/// Open order lines in the demo's fake ERP.
pub const DEMO_ORDERS: u64 = 2_500;

/// `sync-app migrate`.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let logger = database::open(&settings.database_url).await?;
    logger.flush().await.ok();
    println!("migrations applied (joblog and sync-app tables)");
    Ok(())
}

/// `sync-app prune [DAYS]`.
pub async fn prune(settings: &Settings, days: Option<&str>) -> anyhow::Result<()> {
    let days: u64 = match days {
        Some(d) => d
            .parse()
            .ok()
            .filter(|d| *d >= 1)
            .context("prune takes a number of days (1 or more)")?,
        None => 30,
    };
    let logger = database::open(&settings.database_url).await?;
    let stats = logger
        .prune(&PruneOptions {
            older_than: Some(Duration::from_secs(days * 86_400)),
            keep_last: None,
        })
        .await
        .context("pruning old runs")?;
    println!(
        "pruned {} runs and {} details older than {days} days",
        stats.runs, stats.details
    );
    Ok(())
}

fn source(settings: &Settings) -> anyhow::Result<ErpSource> {
    let ado = settings.mssql_url.as_deref().ok_or_else(|| ConfigError {
        variable: "MSSQL_URL",
        expected: "the ERP's ADO connection string, e.g. server=tcp:erp.example.com,1433;database=ERP;\
                   user id=sync_reader;password=…;encrypt=true"
            .into(),
    })?;
    ErpSource::from_ado(ado).map_err(|e| {
        ConfigError {
            variable: "MSSQL_URL",
            expected: format!("a valid ADO connection string ({e})"),
        }
        .into()
    })
}

fn job(settings: &Settings, source: ErpSource, logger: &JobLogger) -> SyncOpenOrdersJob {
    let query = settings
        .source_query
        .clone()
        .unwrap_or_else(|| DEFAULT_SOURCE_QUERY.to_string());
    SyncOpenOrdersJob::new(source, query, logger.db().clone())
}

async fn reap(logger: &JobLogger) {
    match logger.reap_stale(STALE_AFTER).await {
        Ok(ids) if !ids.is_empty() => {
            tracing::warn!(runs = ?ids, "marked runs of a process that died as error (abandoned)");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "reaping abandoned runs failed"),
    }
}

/// `sync-app check`: the preflight. Prints the report ([`crate::check`]) and returns whether
/// a sync would work (exit 0 / 1); a missing or malformed `MSSQL_URL` is a configuration
/// error (exit 2). The local database is not opened.
pub async fn check(settings: &Settings) -> anyhow::Result<bool> {
    let source = source(settings)?;
    let (query, default_query) = match &settings.source_query {
        Some(q) => (q.as_str(), false),
        None => (DEFAULT_SOURCE_QUERY, true),
    };
    let report = crate::check::run(&source, query, default_query).await;
    print!("{report}");
    Ok(report.ok())
}

/// `sync-app sync`: one sync now. `Ok(true)` on success; on failure the cause chain is
/// printed and `Ok(false)` returned (exit code 1).
pub async fn sync(settings: &Settings) -> anyhow::Result<bool> {
    let source = source(settings)?;
    let logger = database::open(&settings.database_url).await?;
    reap(&logger).await;
    let job = job(settings, source, &logger);
    let signal = shutdown_signal();
    let result = {
        let sync = job.run(&logger);
        tokio::pin!(sync);
        tokio::pin!(signal);
        tokio::select! {
            r = &mut sync => r,
            () = &mut signal => {
                eprintln!(
                    "stopping: the running sync gets up to {} s to finish",
                    settings.shutdown_grace.as_secs()
                );
                match tokio::time::timeout(settings.shutdown_grace, &mut sync).await {
                    Ok(r) => r,
                    // Dropping `sync` records the run as error ("cancelled").
                    Err(_) => Err(anyhow::anyhow!(
                        "stopped by a signal; the sync did not finish within SHUTDOWN_GRACE ({} s)",
                        settings.shutdown_grace.as_secs()
                    )),
                }
            }
        }
    };
    if let Err(e) = logger.flush().await {
        tracing::warn!(error = %e, "some log lines could not be written");
    }
    match result {
        Ok(stats) => {
            println!(
                "sync succeeded: {} rows fetched, {} inserted (previous snapshot {} rows)",
                stats.fetched, stats.inserted, stats.previous
            );
            Ok(true)
        }
        Err(e) => {
            eprintln!("sync failed: {e:#}");
            Ok(false)
        }
    }
}

/// A future that resolves on Ctrl-C or SIGTERM. The SIGTERM handler is installed when this
/// is called, not when the future is first polled, so no signal is missed in between.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {}
            () = term => {}
        }
    }
}

/// Serves the web app and runs the sync loop until a shutdown signal; then lets a running
/// sync finish within `SHUTDOWN_GRACE` (or records it as cancelled) and flushes the log.
async fn serve_with(
    settings: &Settings,
    logger: JobLogger,
    job: SyncOpenOrdersJob,
    auth: Option<BasicAuth>,
    interval: Duration,
    run_at_start: bool,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let signal = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(settings.bind).await.map_err(|e| {
        anyhow::anyhow!(ConfigError {
            variable: "BIND",
            expected: format!("a free address; {} is not available ({e})", settings.bind),
        })
    })?;
    let addr = listener.local_addr()?;
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener)?;
    let reaper = logger.spawn_reaper(STALE_AFTER, STALE_AFTER);
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = web::app(logger.clone(), web::web_config(settings.timezone), auth);
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
        app,
        async move {
            let _ = server_stop.wait_for(|s| *s).await;
        },
        Some(Duration::from_secs(5)),
    ));
    // The socket is bound and accepting: tell the user, then start syncing.
    ready(addr);
    // The recurring sync runs through joblog's scheduler: one run at a time across every
    // instance sharing the database (a lease in `job_schedules`), skipped occurrences
    // recorded, run now / pause from the Jobs Monitor.
    let job = std::sync::Arc::new(job);
    let scheduler = joblog::Scheduler::builder(logger.clone())
        .lease(settings.sync_lease)
        .job_with(
            JOB_NAME,
            joblog::Schedule::every(interval),
            joblog::JobOptions::default().run_at_start(run_at_start),
            move |run| {
                let job = job.clone();
                async move { job.execute(&run).await.map(drop) }
            },
        )
        .build()
        .start()
        .await
        .context("starting the scheduler")?;
    tokio::pin!(server);
    let server_result = tokio::select! {
        () = signal => None,
        r = &mut server => Some(r),
    };
    tracing::info!(
        "shutting down: a running sync gets up to {} s to finish",
        settings.shutdown_grace.as_secs()
    );
    if let Err(e) = scheduler.shutdown(settings.shutdown_grace).await {
        tracing::warn!(error = %e, "stopping the scheduler");
    }
    let _ = stop_tx.send(true);
    let server_result = match server_result {
        Some(r) => r,
        None => server.await,
    };
    reaper.abort();
    logger.flush().await.context("writing the last log lines")?;
    match server_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow::Error::from(e).context("the web server stopped")),
        Err(e) => Err(anyhow::Error::from(e).context("the web server task failed")),
    }
}

/// `sync-app serve`.
pub async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let source = source(settings)?;
    let Some((user, password)) = settings.admin.clone() else {
        bail!(ConfigError {
            variable: "ADMIN_USER",
            expected: "a user name (and ADMIN_PASSWORD): the pages are behind HTTP Basic auth".into(),
        });
    };
    let logger = database::open(&settings.database_url).await?;
    reap(&logger).await;
    let job = job(settings, source, &logger);
    let interval = settings.sync_interval;
    serve_with(
        settings,
        logger,
        job,
        Some(BasicAuth::new(user, password)),
        interval,
        true,
        |addr| {
            println!(
                "sync-app serving http://{addr}/ — sync every {}",
                humantime(interval)
            );
        },
    )
    .await
}

/// A password for the demo when none is configured: 16 characters from the process's
/// randomly keyed hasher (good enough for a local demo, not for production).
fn generated_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = String::new();
    for i in 0..2u64 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(i ^ u64::from(std::process::id()));
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        let mut v = h.finish();
        for _ in 0..8 {
            out.push(ALPHABET[(v % ALPHABET.len() as u64) as usize] as char);
            v /= ALPHABET.len() as u64;
        }
    }
    out
}

fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// `sync-app demo`: an in-process fake ERP, the configured (by default a SQLite file)
/// database, the web UI, a sync at once and then every 30 s.
pub async fn demo(settings: &Settings) -> anyhow::Result<()> {
    let erp = FakeErp::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        FakeErpConfig {
            orders: DEMO_ORDERS,
            evolve: true,
            ..FakeErpConfig::default()
        },
    )
    .await
    .context("starting the fake ERP")?
    .spawn();
    let source = ErpSource::from_ado(&erp.ado_string())?;
    let logger = database::open(&settings.database_url).await?;
    reap(&logger).await;
    let job = job(settings, source, &logger);
    let (user, password, generated) = match settings.admin.clone() {
        Some((u, p)) => (u, p, false),
        None => ("admin".to_string(), generated_password(), true),
    };
    let interval = if settings.sync_interval_set {
        settings.sync_interval
    } else {
        DEMO_INTERVAL
    };
    let db = crate::configuration::redact_url(&settings.database_url);
    let erp_addr = erp.local_addr();
    let shown_password = if generated {
        password.clone()
    } else {
        "(from ADMIN_PASSWORD)".into()
    };
    let shown_user = user.clone();
    serve_with(
        settings,
        logger,
        job,
        Some(BasicAuth::new(user, password)),
        interval,
        true,
        move |addr| {
            println!();
            println!("  sync-app demo is running");
            println!("  Web UI     http://{addr}/");
            println!("  Login      user {shown_user}, password {shown_password}");
            println!("  Database   {db}");
            println!("  Fake ERP   {erp_addr} ({DEMO_ORDERS} open order lines that change between syncs)");
            println!(
                "  A sync runs now and then every {}. Ctrl-C stops.",
                humantime(interval)
            );
            println!();
        },
    )
    .await?;
    erp.shutdown().await;
    Ok(())
}

/// `sync-app fake-erp`.
pub async fn fake_erp(cli: &crate::cli::Cli) -> anyhow::Result<()> {
    let listen: SocketAddr = cli
        .option("--listen")
        .unwrap_or("127.0.0.1:1433")
        .parse()
        .context("--listen takes an address and port, e.g. 127.0.0.1:1433")?;
    let defaults = FakeErpConfig::default();
    let orders: u64 = match cli.option("--orders") {
        None => 1_000,
        Some(n) => n.parse().context("--orders takes a number of order lines")?,
    };
    let seed: u64 = match cli.option("--seed") {
        None => defaults.seed,
        Some(n) => n.parse().context("--seed takes a number")?,
    };
    let fail = match cli.option("--fail") {
        None => None,
        Some(f) => Some(f.parse::<Failure>().map_err(|e| anyhow::anyhow!("--fail: {e}"))?),
    };
    let schema = match cli.option("--schema") {
        None => defaults.schema,
        Some(s) => s.parse().map_err(|e| anyhow::anyhow!("--schema: {e}"))?,
    };
    let encryption = match cli.option("--encryption") {
        None => defaults.encryption,
        Some(s) => s.parse().map_err(|e| anyhow::anyhow!("--encryption: {e}"))?,
    };
    let identity = match (cli.option("--cert"), cli.option("--key")) {
        (Some(cert), Some(key)) => Some(
            fake_mssql::Identity::from_pem_files(cert.as_ref(), key.as_ref()).context("--cert / --key")?,
        ),
        (None, None) => None,
        _ => anyhow::bail!("--cert and --key go together"),
    };
    let instance = match cli.option("--instance") {
        None => None,
        Some(name) => {
            let browser: SocketAddr = cli
                .option("--browser-listen")
                .unwrap_or("127.0.0.1:1434")
                .parse()
                .context("--browser-listen takes an address and port, e.g. 127.0.0.1:1434")?;
            Some((name.to_owned(), browser))
        }
    };
    let cert_names = cli
        .options
        .iter()
        .filter(|(n, _)| n == "--cert-name")
        .filter_map(|(_, v)| v.clone())
        .collect();
    let config = FakeErpConfig {
        orders,
        seed,
        fail,
        evolve: cli.switch("--evolve"),
        schema,
        encryption,
        identity,
        cert_names,
        user: cli.option("--user").unwrap_or(&defaults.user).to_owned(),
        password: cli.option("--password").unwrap_or(&defaults.password).to_owned(),
        database: cli.option("--database").unwrap_or(&defaults.database).to_owned(),
        access_token: cli.option("--access-token").map(str::to_owned),
        windows_login: match (cli.option("--windows-user"), cli.option("--windows-password")) {
            (Some(user), Some(password)) => Some((user.to_owned(), password.to_owned())),
            (None, None) => None,
            _ => anyhow::bail!("--windows-user and --windows-password go together"),
        },
        instance,
    };
    let erp = FakeErp::bind(listen, config)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    if let Some(path) = cli.option("--cert-out") {
        let pem = erp
            .certificate_pem()
            .context("--cert-out: encryption is off, there is no certificate")?;
        std::fs::write(path, pem).with_context(|| format!("--cert-out: writing {path}"))?;
        println!("certificate written to {path}");
    }
    println!("fake ERP listening on {}", erp.local_addr());
    if let Some(browser) = erp.browser_addr() {
        println!("SQL Server Browser listening on {browser} (UDP)");
    }
    println!("MSSQL_URL='{}'", erp.ado_string());
    tokio::select! {
        r = erp.run() => r.context("fake ERP stopped")?,
        () = shutdown_signal() => {}
    }
    Ok(())
}
