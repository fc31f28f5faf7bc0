//! Admin pages for joblog runs, as a poem router any web app can mount.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use poem::{Route, Server, listener::TcpListener};
//!
//! let logger = joblog::JobLogger::connect("sqlite://joblog.db?mode=rwc").await?;
//! logger.migrate().await?;
//! let pages = joblog_web::router(logger, joblog_web::WebConfig::default());
//! let app = Route::new().nest("/admin/jobs", pages);
//! Server::new(TcpListener::bind("127.0.0.1:3000")).run(app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Routes, relative to where the router is mounted: `/` and `/job_logs` (run list),
//! `/job_logs/:id` (run detail), `/job_logs/:id/lines` (JSON: new lines and the status,
//! for the live tail), `/job_logs/:id/log.txt` (download), `/jobs` (jobs monitor), POST
//! `/jobs/:job/run_now`, `/jobs/:job/pause`, `/jobs/:job/resume` (its buttons, CSRF-checked),
//! `/assets/*` (CSS and JS, embedded). Every page sends a Content-Security-Policy without
//! inline script, `X-Content-Type-Options: nosniff` and `frame-ancestors 'none'`.
//! [`BasicAuth`] protects a whole app.

mod auth;
mod config;
mod csrf;
mod format;
mod handlers;
mod shell;
mod templates;

pub use auth::BasicAuth;
pub use config::{NavLink, WebConfig};
pub use shell::{Shell, security_headers};

use std::sync::Arc;

use joblog::JobLogger;
use poem::{EndpointExt, Route, get, post};

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) logger: JobLogger,
    pub(crate) config: WebConfig,
    pub(crate) templates: templates::Templates,
    pub(crate) list_cache: handlers::PageCache,
    pub(crate) asset_version: String,
}

/// The pages as a poem `Route`; mount it with `Route::new().nest("/prefix", …)` or at `/`.
pub fn router(logger: JobLogger, config: WebConfig) -> Route {
    let state = Arc::new(AppState {
        logger,
        config,
        templates: templates::Templates::new(),
        list_cache: handlers::PageCache::default(),
        asset_version: templates::asset_version(),
    });
    let headers = security_headers();
    let pages = Route::new()
        .at("/", get(handlers::run_list))
        .at("/job_logs", get(handlers::run_list))
        .at("/job_logs/:id", get(handlers::run_detail))
        .at("/job_logs/:id/lines", get(handlers::run_lines))
        .at("/job_logs/:id/log.txt", get(handlers::run_download))
        .at("/jobs", get(handlers::jobs_page))
        .at("/jobs/:job/run_now", post(handlers::job_run_now))
        .at("/jobs/:job/pause", post(handlers::job_pause))
        .at("/jobs/:job/resume", post(handlers::job_resume))
        .at("/assets/:name", get(handlers::asset))
        .data(state)
        .with(headers);
    Route::new().nest("/", pages)
}
