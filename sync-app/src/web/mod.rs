//! The web app sync-app serves: joblog-web's run pages at `/`, the Open Orders page,
//! `/metrics`, `/healthz`; everything but `/healthz` behind HTTP Basic auth (and `/metrics`
//! behind a bearer token instead when `METRICS_TOKEN` is set). Every failure — its own
//! unmatched routes and wrong methods included — is joblog-web's styled error page, and
//! every answer, `/healthz`, 401s and errors included, carries joblog-web's security
//! headers (`Cache-Control: no-store` but on the versioned assets).

mod open_orders;

use std::sync::Arc;

use joblog::JobLogger;
use joblog_web::{BasicAuth, ErrorPages, MetricsEndpoint, NavLink, Shell, WebConfig};
use minijinja::Environment;
use poem::{Endpoint, EndpointExt, Route, get, handler};

/// The page configuration sync-app uses: its title and the two navigation buttons.
pub fn web_config(timezone: joblog::scheduler::Tz) -> WebConfig {
    WebConfig::default()
        .title("sync-app · Job Logs")
        .timezone(timezone)
        .nav_link(
            NavLink::new("Open Orders", "/open_orders")
                .colour("grey")
                .icon("document"),
        )
        .nav_link(
            NavLink::new("Jobs Monitor", "/jobs")
                .colour("blue")
                .icon("clipboard"),
        )
}

/// What the Open Orders handlers share.
#[derive(Debug)]
pub(crate) struct PageState {
    pub(crate) logger: JobLogger,
    pub(crate) shell: Shell,
    pub(crate) templates: Environment<'static>,
}

#[handler]
fn healthz() -> &'static str {
    "ok"
}

/// The whole app. `auth` protects every page except `/healthz`; `None` serves them
/// unprotected (for tests and for a reverse proxy that authenticates). `/metrics` is one of
/// the pages, unless `metrics_token` is given: then a request with that bearer token reads
/// it without the login, and one without it gets `401` (see [`joblog_web::MetricsEndpoint`]).
pub fn app(
    logger: JobLogger,
    config: WebConfig,
    auth: Option<BasicAuth>,
    metrics_token: Option<String>,
) -> impl Endpoint {
    let mut templates = Environment::new();
    Shell::add_layout(&mut templates);
    if let Err(e) = templates.add_template(
        "open_orders.html",
        include_str!("../../templates/open_orders.html"),
    ) {
        // A constant, rendered by the tests; a failure would show as a 500 page.
        tracing::error!(error = %e, "sync-app: the open_orders template does not parse");
    }
    let state = Arc::new(PageState {
        logger: logger.clone(),
        shell: Shell::new(config.clone()),
        templates,
    });
    let metrics = metrics_token.map(|token| MetricsEndpoint::new(logger.clone(), Some(token)));
    let pages = Route::new()
        .at("/open_orders", get(open_orders::open_orders_page).data(state))
        .nest("/", joblog_web::router(logger, config.clone()));
    let pages = match auth {
        Some(auth) => pages.with(auth).boxed(),
        None => pages.boxed(),
    };
    // The run pages are mounted at the root: the error pages' CSS and way back are there.
    // The headers go around everything, so that no answer (a 401, `/healthz`) lacks them.
    let mut outer = Route::new().at("/healthz", get(healthz));
    if let Some(metrics) = metrics {
        outer = outer.at("/metrics", metrics);
    }
    outer
        .nest("/", pages)
        .with(ErrorPages::new(config, ""))
        .with(joblog_web::security_headers())
}
