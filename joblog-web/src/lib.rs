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
//! `/metrics` (Prometheus metrics, OpenMetrics text: see `joblog::metrics`; mount a
//! [`MetricsEndpoint`] outside the login to let a scraper in with a bearer token instead),
//! `/assets/*` (CSS and JS, embedded). Every answer — pages, errors, downloads, JSON — sends
//! a Content-Security-Policy without inline script, `X-Content-Type-Options: nosniff`,
//! `frame-ancestors 'none'` (and `X-Frame-Options: DENY`), `Referrer-Policy: same-origin`
//! and `Cache-Control: no-store`; the assets, whose URLs carry their version, are
//! `Cache-Control: private` for an hour ([`security_headers`]).
//!
//! The job buttons are CSRF-checked: a cookie-bound token keyed with a secret kept in the
//! database ([`JobLogger::shared_secret`]), so that a form served by one instance posts to
//! another on the same database and survives restarts, and a strict `Origin` /
//! `Sec-Fetch-Site` check against the request's own origin or [`WebConfig::public_url`].
//!
//! Every failure — a run that does not exist, a bad parameter, an unmatched route, a wrong
//! method — is a [`PageError`] rendered by [`ErrorPages`] as a page in the same layout,
//! with the same headers; a host wraps its whole app in [`ErrorPages`] to give its own
//! routes the same. [`BasicAuth`] protects a whole app; [`Shell`] gives a host's own pages
//! the layout.
//!
//! Serving the pages on an untrusted network: [`listener`] wraps any poem acceptor with a
//! request-header deadline, a keep-alive idle timeout and a cap on connections, and serves
//! HTTPS with rustls; sync-app's `serve` uses it.
//!
//! The source has one module per page under `pages/` (`runs`, `run`, `jobs`, `assets`),
//! the shared layout in `layout`, the errors in `error`, the login in `auth`, the forms'
//! protection in `csrf`, the connections in `listener`.

mod auth;
mod config;
mod csrf;
mod error;
mod format;
mod layout;
pub mod listener;
mod pages;
mod params;

pub use auth::{BasicAuth, BasicAuthEndpoint, PasswordHashError, hash_password};
pub use config::{NavLink, WebConfig};
pub use error::{ErrorPages, ErrorPagesEndpoint, PageError};
pub use layout::{SecurityHeaders, SecurityHeadersEndpoint, Shell, security_headers};
pub use pages::metrics::MetricsEndpoint;

use std::sync::Arc;

use joblog::JobLogger;
use poem::endpoint::BoxEndpoint;
use poem::middleware::SizeLimit;
use poem::{Endpoint, EndpointExt, Route, get, post};

use crate::layout::Layout;
use crate::pages::{assets, jobs, metrics, run, runs};

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) logger: JobLogger,
    pub(crate) layout: Arc<Layout>,
    pub(crate) list_cache: runs::PageCache,
    pub(crate) csrf: csrf::Csrf,
}

impl AppState {
    pub(crate) fn config(&self) -> &WebConfig {
        self.layout.config()
    }
}

/// The pages as a poem `Route`; mount it with `Route::new().nest("/prefix", …)` or at `/`.
/// Its failures, unmatched paths under it included, are styled pages (see [`ErrorPages`]).
#[must_use]
pub fn router(logger: JobLogger, config: WebConfig) -> Route {
    let csrf = csrf::Csrf::new(logger.clone(), config.public_url.as_deref());
    let layout = Arc::new(Layout::new(config));
    let state = Arc::new(AppState {
        logger,
        layout: layout.clone(),
        list_cache: runs::PageCache::default(),
        csrf,
    });
    // The CSRF secret is read from the database in the background now rather than by
    // the first page that shows a form (when there is a runtime to read it on).
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let state = state.clone();
        runtime.spawn(async move { state.csrf.preload().await });
    }
    let errors = ErrorPages::with_layout(layout, "");
    // Each route wears the state, the error pages and the headers itself (rather than one
    // wrapper around a nested route) so that the `Route` a host mounts answers everything
    // itself: its catch-all turns any other path into the styled 404.
    let page = |ep| wrap(ep, &state, &errors);
    Route::new()
        .at("/", page(get(runs::list).boxed()))
        .at("/job_logs", page(get(runs::list).boxed()))
        .at("/job_logs/:id", page(get(run::detail).boxed()))
        .at("/job_logs/:id/lines", page(get(run::live_tail).boxed()))
        .at("/job_logs/:id/log.txt", page(get(run::download).boxed()))
        .at("/jobs", page(get(jobs::monitor).boxed()))
        .at(
            "/jobs/:job/:action<^(run_now|pause|resume)$>",
            page(post(jobs::act.with(SizeLimit::new(jobs::MAX_FORM))).boxed()),
        )
        .at("/metrics", page(get(metrics::metrics).boxed()))
        .at("/assets/:name", page(get(assets::asset).boxed()))
        // Not `/*path`: a catch-all directly under `/` would win over `/` itself.
        .at("/:other", page(no_page.boxed()))
        .at("/:other/*rest", page(no_page.boxed()))
}

/// `ep` with the router's state, its error pages and the security headers.
fn wrap(ep: BoxEndpoint<'static>, state: &Arc<AppState>, errors: &ErrorPages) -> impl Endpoint + use<> {
    ep.data(state.clone())
        .with(errors.clone())
        .with(security_headers())
}

/// Any other path under the mount point, whatever the method: the styled 404.
#[poem::handler]
fn no_page() -> poem::Result<()> {
    Err(poem::error::NotFoundError.into())
}
