//! `sync-app serve`: the web UI and the recurring sync until a shutdown signal.
//!
//! The pages are served through [`joblog_web::listener`]: a header read timeout, a keep-alive
//! idle timeout and `MAX_CONNECTIONS`, and HTTPS when `TLS_CERT` / `TLS_KEY` are set.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use joblog::JobLogger;
use joblog::format::{duration, interval};
use joblog::scheduler::{JobOptions, Schedule, Scheduler};
use joblog_web::BasicAuth;
use poem::Server;
use poem::listener::TcpAcceptor;
use tokio::sync::watch;

use crate::configuration::{ConfigError, MIN_PASSWORD_CHARS, Settings};
use crate::sync_job::{JOB_NAME, SyncOpenOrdersJob};
use crate::{database, web};
use joblog_web::listener::{LimitedAcceptor, TlsAcceptor};

use super::{STALE_AFTER, job, reap, shutdown_signal, source};

/// Whether users reach the pages over HTTPS: served with TLS, or `PUBLIC_URL` is https.
fn https(settings: &Settings) -> bool {
    settings.tls.is_some()
        || settings
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

/// Warns when Basic credentials would cross a network in clear: plain HTTP on an address
/// other than loopback, with no https `PUBLIC_URL` (a TLS proxy) in front.
fn warn_if_credentials_in_clear(settings: &Settings) {
    if !https(settings) && !settings.bind.ip().is_loopback() {
        tracing::warn!(
            bind = %settings.bind,
            "serving plain HTTP on a non-loopback address: the Basic auth password travels in clear. \
             Set TLS_CERT and TLS_KEY, or put a TLS proxy in front and set PUBLIC_URL=https://…"
        );
    }
}

/// Serves the web app and runs the sync loop until a shutdown signal; then lets a running
/// sync finish within `SHUTDOWN_GRACE` (or records it as cancelled) and flushes the log.
/// `ready` gets the pages' base URL (`http://ADDR/` or `https://ADDR/`) once they are served.
pub(crate) async fn serve_with(
    settings: &Settings,
    logger: JobLogger,
    job: SyncOpenOrdersJob,
    auth: Option<BasicAuth>,
    every: Duration,
    run_at_start: bool,
    ready: impl FnOnce(&str),
) -> anyhow::Result<()> {
    let signal = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(settings.bind).await.map_err(|e| {
        anyhow::anyhow!(ConfigError {
            variable: "BIND",
            expected: format!("a free address; {} is not available ({e})", settings.bind),
        })
    })?;
    let addr: SocketAddr = listener.local_addr()?;
    let tcp = TcpAcceptor::from_tokio(listener)?;
    warn_if_credentials_in_clear(settings);
    let limits = settings.limits;
    tracing::info!(
        max_connections = limits.max_connections,
        header_read_timeout = %duration(limits.header_read_timeout),
        keep_alive_timeout = %duration(limits.idle_timeout),
        "connection limits"
    );
    let reaper = logger.spawn_reaper(STALE_AFTER, STALE_AFTER);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut config = web::web_config(settings.timezone);
    if let Some(url) = &settings.public_url {
        // The CSRF check compares the full origin with it; https makes the cookie `Secure`.
        config = config.public_url(url.clone());
    }
    let app = web::app(logger.clone(), config, auth, settings.metrics_token.clone());
    let mut server_stop = stop_rx.clone();
    let stopped = async move {
        let _ = server_stop.wait_for(|s| *s).await;
    };
    let grace = Some(Duration::from_secs(5));
    let server = match &settings.tls {
        Some(tls) => {
            let acceptor = LimitedAcceptor::new(TlsAcceptor::new(tcp, tls.config.clone()), limits);
            tokio::spawn(Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(app, stopped, grace))
        }
        None => {
            let acceptor = LimitedAcceptor::new(tcp, limits);
            tokio::spawn(Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(app, stopped, grace))
        }
    };
    // The socket is bound and accepting: tell the user, then start syncing.
    let scheme = if settings.tls.is_some() { "https" } else { "http" };
    ready(&format!("{scheme}://{addr}/"));
    // The recurring sync runs through joblog's scheduler: one run at a time across every
    // instance sharing the database (a lease in `job_schedules`), skipped occurrences
    // recorded, run now / pause from the Jobs Monitor.
    let job = std::sync::Arc::new(job);
    let mut scheduler = Scheduler::builder(logger.clone());
    if let Some(url) = &settings.alert_webhook_url {
        scheduler = scheduler.alert_webhook(url.clone());
        // Alerts link to their run: at PUBLIC_URL, or at BIND when it names one host.
        if let Some(base) = &settings.public_url {
            scheduler = scheduler.alert_links(base.clone());
        } else if !settings.bind.ip().is_unspecified() {
            scheduler = scheduler.alert_links(format!("{scheme}://{addr}"));
        }
    }
    let scheduler = scheduler
        .lease(settings.sync_lease)
        .job_with(
            JOB_NAME,
            Schedule::every(every),
            JobOptions::default().run_at_start(run_at_start),
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
        "shutting down: a running sync gets up to {} to finish",
        duration(settings.shutdown_grace)
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
    let auth = match (&settings.admin, &settings.admin_hash) {
        (Some((user, password)), _) => {
            if password.chars().count() < MIN_PASSWORD_CHARS {
                bail!(ConfigError {
                    variable: "ADMIN_PASSWORD",
                    expected: format!(
                        "at least {MIN_PASSWORD_CHARS} characters (the pages face a network; \
                         `sync-app hash-password` turns one into ADMIN_PASSWORD_HASH)"
                    ),
                });
            }
            BasicAuth::new(user.clone(), password.clone())
        }
        (None, Some((user, phc))) => hashed_auth(user, phc)?,
        (None, None) => bail!(ConfigError {
            variable: "ADMIN_USER",
            expected: "a user name (and ADMIN_PASSWORD or ADMIN_PASSWORD_HASH): the pages are behind \
                       HTTP Basic auth"
                .into(),
        }),
    };
    let logger = database::open(&settings.database_url).await?;
    reap(&logger).await;
    let job = job(settings, source, &logger);
    let every = settings.sync_interval;
    serve_with(settings, logger, job, Some(auth), every, true, |url| {
        println!("sync-app serving {url} — sync every {}", interval(every));
    })
    .await
}

/// Basic auth checking `ADMIN_PASSWORD_HASH` (already checked to parse when read).
pub(crate) fn hashed_auth(user: &str, phc: &str) -> anyhow::Result<BasicAuth> {
    BasicAuth::with_password_hash(user.to_owned(), phc).map_err(|e| {
        ConfigError {
            variable: "ADMIN_PASSWORD_HASH",
            expected: format!("an Argon2 PHC string as `sync-app hash-password` prints it ({e})"),
        }
        .into()
    })
}
