//! The layout every page shares — header, navigation, CSS, the security headers — and the
//! templates, parsed once. [`Shell`] offers the same layout to a host app's own pages, so
//! that they look and behave like the run pages.
//!
//! ```
//! use joblog_web::{Shell, WebConfig};
//! let shell = Shell::new(WebConfig::default());
//! let mut env = minijinja::Environment::new();
//! Shell::add_layout(&mut env);
//! env.add_template(
//!     "mine.html",
//!     r#"{% extends "joblog/layout.html" %}{% block content %}<h1>{{ heading }}</h1>{% endblock %}"#,
//! ).unwrap();
//! let html = env
//!     .get_template("mine.html").unwrap()
//!     .render(minijinja::context! { heading => "<b>Mine</b>", ..shell.context("") })
//!     .unwrap();
//! assert!(html.contains("<h1>&lt;b&gt;Mine&lt;&#x2f;b&gt;</h1>"));
//! assert!(html.contains(r#"href="/assets/app.css?v="#));
//! ```

use chrono::{DateTime, Utc};
use minijinja::value::{Serde, Value};
use minijinja::{Environment, context};
use poem::http::HeaderValue;
use poem::http::header::{CACHE_CONTROL, HeaderName};
use poem::web::Html;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use serde::Serialize;

use crate::{PageError, WebConfig};

/// The layout every page extends (also offered to hosts through [`Shell`]).
const LAYOUT: &str = include_str!("../templates/layout.html");

/// Every template, by name. Names end in `.html`, so minijinja escapes every value for
/// HTML unless a template says otherwise (none does).
const TEMPLATES: [(&str, &str); 5] = [
    ("layout.html", LAYOUT),
    ("runs.html", include_str!("../templates/runs.html")),
    ("run.html", include_str!("../templates/run.html")),
    ("jobs.html", include_str!("../templates/jobs.html")),
    ("error.html", include_str!("../templates/error.html")),
];

/// The headers every answer sends, errors included: a Content-Security-Policy without
/// inline script, `nosniff`, no framing, same-origin referrers.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
];

/// The `Cache-Control` of every answer that does not choose its own: the pages are behind
/// auth and show private data, so no cache (a browser's, a proxy's) keeps them.
const NO_STORE: &str = "no-store";

/// The headers every run page sends — a Content-Security-Policy without inline script,
/// `nosniff`, `X-Frame-Options: DENY` and `frame-ancestors 'none'`, `Referrer-Policy:
/// same-origin` — and `Cache-Control: no-store` unless the answer set its own (the
/// versioned assets are `private` with a max-age). Wrap a host's pages in it too; error
/// pages get the same from [`ErrorPages`](crate::ErrorPages). A failure passes through
/// unchanged, for an [`ErrorPages`](crate::ErrorPages) around it to render.
#[must_use]
pub fn security_headers() -> SecurityHeaders {
    SecurityHeaders
}

/// The middleware [`security_headers`] returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecurityHeaders;

impl<E: Endpoint> Middleware<E> for SecurityHeaders {
    type Output = SecurityHeadersEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        SecurityHeadersEndpoint { inner }
    }
}

/// The endpoint [`SecurityHeaders`] wraps.
#[derive(Debug)]
pub struct SecurityHeadersEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for SecurityHeadersEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let mut resp = self.inner.call(req).await?.into_response();
        add_security_headers(&mut resp);
        Ok(resp)
    }
}

/// Sets the [`security_headers`] on one response: the fixed ones replaced, `Cache-Control:
/// no-store` added when the response has no `Cache-Control`.
pub(crate) fn add_security_headers(resp: &mut Response) {
    let headers = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
    }
}

/// Where the router is mounted: the part of the original path that nesting stripped
/// (`""` at the root, `/admin/jobs` under that prefix).
pub(crate) fn base(req: &Request) -> String {
    let original = req.original_uri().path();
    let inner = req.uri().path();
    let base = match original.strip_suffix(inner) {
        Some(base) => base,
        // The mount point itself without its trailing slash: nesting made it `/`.
        None if inner == "/" => original,
        None => "",
    };
    base.trim_end_matches('/').to_owned()
}

/// The layout of the run pages, for a host's own templates.
#[derive(Debug, Clone)]
pub struct Shell {
    config: WebConfig,
    asset_version: String,
}

/// A navigation button as the layout reads it.
#[derive(Serialize)]
struct NavView<'a> {
    label: &'a str,
    href: &'a str,
    colour: &'a str,
    icon: &'a str,
}

impl Shell {
    /// The shell of pages configured like `config` (title, zone, navigation).
    #[must_use]
    pub fn new(config: WebConfig) -> Self {
        Self {
            config,
            asset_version: crate::pages::assets::version(),
        }
    }

    /// Adds the layout to `env` as `joblog/layout.html`; a page extends it and fills
    /// `{% block content %}` (and optionally `{% block title %}`).
    pub fn add_layout(env: &mut Environment<'_>) {
        // The layout is a constant, parsed by the tests: it cannot fail here.
        if let Err(e) = env.add_template("joblog/layout.html", LAYOUT) {
            tracing::error!(error = %e, "joblog-web: the embedded layout does not parse");
        }
    }

    /// What the layout needs. `base` is the path the joblog-web router is mounted at
    /// (`""` at the root): its assets and the title link live there.
    #[must_use]
    pub fn context(&self, base: &str) -> Value {
        let nav: Vec<NavView<'_>> = self
            .config
            .nav
            .iter()
            .map(|l| NavView {
                label: &l.label,
                href: &l.href,
                colour: &l.colour,
                icon: &l.icon,
            })
            .collect();
        context! {
            base => base.trim_end_matches('/'),
            title => self.config.title.clone(),
            zone => self.config.timezone.name(),
            asset_version => self.asset_version.clone(),
            nav => Serde(nav),
        }
    }

    /// `t` in the configured zone, as the run pages show times.
    #[must_use]
    pub fn time(&self, t: DateTime<Utc>) -> String {
        crate::format::time(t, self.config.timezone)
    }

    /// The configuration.
    pub fn config(&self) -> &WebConfig {
        &self.config
    }
}

/// The pages' templates with the shell around them: built once, shared by every request.
#[derive(Debug)]
pub(crate) struct Layout {
    shell: Shell,
    env: Environment<'static>,
}

impl Layout {
    pub(crate) fn new(config: WebConfig) -> Self {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            // Constants, parsed by the tests; a failure would show as a 500 page naming it.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(error = %e, template = name, "joblog-web: embedded template does not parse");
            }
        }
        Self {
            shell: Shell::new(config),
            env,
        }
    }

    pub(crate) fn config(&self) -> &WebConfig {
        self.shell.config()
    }

    /// `template` filled with `ctx` and the layout's own values for a router mounted at `base`.
    pub(crate) fn render_str(
        &self,
        template: &str,
        base: &str,
        ctx: Value,
    ) -> Result<String, minijinja::Error> {
        self.env
            .get_template(template)?
            .render(context! { ..ctx, ..self.shell.context(base) })
    }

    /// [`render_str`](Self::render_str) as an HTML page; a template that fails is a 500
    /// page (the cause in the server log).
    pub(crate) fn render(&self, template: &str, base: &str, ctx: Value) -> Result<Html<String>, PageError> {
        self.render_str(template, base, ctx).map(Html).map_err(|e| {
            tracing::error!(error = %e, template, "joblog-web: template failed");
            PageError::internal("The page could not be rendered; see the server log.")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        Shell::add_layout(&mut env);
        assert!(env.get_template("joblog/layout.html").is_ok());
    }

    #[test]
    fn security_headers_are_static_header_values() {
        let mut resp = Response::default();
        add_security_headers(&mut resp);
        assert_eq!(resp.headers().len(), SECURITY_HEADERS.len() + 1);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let mut asset = Response::builder()
            .header("cache-control", "private, max-age=3600")
            .finish();
        add_security_headers(&mut asset);
        assert_eq!(
            asset.headers()["cache-control"],
            "private, max-age=3600",
            "its own kept"
        );
        assert!(
            resp.headers()["content-security-policy"]
                .to_str()
                .is_ok_and(|v| v.contains("frame-ancestors 'none'"))
        );
    }
}
