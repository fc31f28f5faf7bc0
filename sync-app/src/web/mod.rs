//! The web app sync-app serves: joblog-web's run pages at `/`, the Open Orders page,
//! `/healthz`; everything but `/healthz` behind HTTP Basic auth.

mod open_orders;

use std::sync::Arc;

use joblog::JobLogger;
use joblog_web::{BasicAuth, NavLink, Shell, WebConfig};
use minijinja::Environment;
use poem::{Endpoint, EndpointExt, Route, get, handler};

/// The page configuration sync-app uses: its title and the two navigation buttons.
pub fn web_config(timezone: joblog::Tz) -> WebConfig {
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
/// unprotected (for tests and for a reverse proxy that authenticates).
pub fn app(logger: JobLogger, config: WebConfig, auth: Option<BasicAuth>) -> impl Endpoint {
    let mut templates = Environment::new();
    Shell::add_layout(&mut templates);
    for (name, source) in [
        (
            "open_orders.html",
            include_str!("../../templates/open_orders.html"),
        ),
        ("error.html", include_str!("../../templates/error.html")),
    ] {
        templates
            .add_template(name, source)
            .expect("embedded template parses");
    }
    let state = Arc::new(PageState {
        logger: logger.clone(),
        shell: Shell::new(config.clone()),
        templates,
    });
    let pages = Route::new()
        .at(
            "/open_orders",
            get(open_orders::open_orders_page)
                .data(state)
                .with(joblog_web::security_headers()),
        )
        .nest("/", joblog_web::router(logger, config));
    let pages = match auth {
        Some(auth) => pages.with(auth).boxed(),
        None => pages.boxed(),
    };
    Route::new().at("/healthz", get(healthz)).nest("/", pages)
}
