//! The pages' layout (header, navigation, CSS, security headers) for a host app's own
//! pages, so that they look and behave like the run pages.
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
use poem::middleware::SetHeader;
use serde::Serialize;

use crate::WebConfig;

/// The layout of the run pages, for a host's own templates.
#[derive(Debug, Clone)]
pub struct Shell {
    config: WebConfig,
    asset_version: String,
}

#[derive(Serialize)]
pub(crate) struct NavView<'a> {
    label: &'a str,
    href: &'a str,
    colour: &'a str,
    icon: &'a str,
}

impl Shell {
    /// The shell of pages configured like `config` (title, zone, navigation).
    pub fn new(config: WebConfig) -> Self {
        Self {
            config,
            asset_version: crate::templates::asset_version(),
        }
    }

    /// Adds the layout to `env` as `joblog/layout.html`; a page extends it and fills
    /// `{% block content %}` (and optionally `{% block title %}`).
    pub fn add_layout(env: &mut Environment<'_>) {
        env.add_template("joblog/layout.html", crate::templates::LAYOUT)
            .expect("the embedded layout parses");
    }

    /// What the layout needs. `base` is the path the joblog-web router is mounted at
    /// (`""` at the root): its assets and the title link live there.
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
    pub fn time(&self, t: DateTime<Utc>) -> String {
        crate::format::time(t, self.config.timezone)
    }

    /// The configuration.
    pub fn config(&self) -> &WebConfig {
        &self.config
    }
}

/// The navigation buttons as the layout reads them.
pub(crate) fn nav_view(config: &WebConfig) -> Vec<NavView<'_>> {
    config
        .nav
        .iter()
        .map(|l| NavView {
            label: &l.label,
            href: &l.href,
            colour: &l.colour,
            icon: &l.icon,
        })
        .collect()
}

/// The headers every run page sends: a Content-Security-Policy without inline script,
/// `nosniff`, no framing, same-origin referrers. Wrap a host's pages in it too.
pub fn security_headers() -> SetHeader {
    SetHeader::new()
        .overriding(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        )
        .overriding("X-Content-Type-Options", "nosniff")
        .overriding("X-Frame-Options", "DENY")
        .overriding("Referrer-Policy", "same-origin")
}
