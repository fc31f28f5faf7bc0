//! What a host app configures.

use chrono_tz::Tz;

/// A button the host app adds to the top-right navigation.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NavLink {
    /// The button's text.
    pub label: String,
    /// Where it goes (absolute, e.g. `/open_orders`).
    pub href: String,
    /// `grey` or `blue` (CSS class `btn-<colour>`).
    pub colour: String,
    /// `document`, `clipboard` or `list` (an embedded icon), or empty for none.
    pub icon: String,
}

impl NavLink {
    /// A button labelled `label` that links to `href`.
    pub fn new(label: impl Into<String>, href: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            href: href.into(),
            colour: "grey".into(),
            icon: String::new(),
        }
    }

    /// Its colour: `grey` (default) or `blue`.
    pub fn colour(mut self, colour: impl Into<String>) -> Self {
        self.colour = colour.into();
        self
    }

    /// Its icon: `document`, `clipboard` or `list`.
    pub fn icon(mut self, icon: impl Into<String>) -> Self {
        self.icon = icon.into();
        self
    }
}

/// Settings of the pages; finish with [`crate::router`].
#[must_use]
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The title in the header and the browser tab.
    pub title: String,
    /// Times are shown in this zone (with its abbreviation); UTC by default.
    pub timezone: Tz,
    /// Buttons at the top right, after the built-in ones.
    pub nav: Vec<NavLink>,
    /// Runs per page (default 25; at most 500).
    pub page_size: u64,
    /// How long a rendered run-list page may be served again to other requests for the
    /// same URL (default 1 s; zero turns it off). Under load, requests for a list URL
    /// within that time share one rendering (one set of queries) instead of four queries
    /// each; the list is then at most this stale. Run detail pages and the live tail are
    /// never cached.
    pub list_cache: std::time::Duration,
    /// The address users reach the pages at, such as `https://jobs.example.com/admin` (a
    /// proxy in front), if it is not the one the server sees. The job buttons accept a form
    /// whose `Origin` is this URL's origin (scheme, host, port); when it is `https`, their
    /// cookie is `Secure` (`__Host-` prefixed) and a form from plain HTTP is refused.
    /// `None` (the default): the request's own origin, its scheme the connection's.
    pub public_url: Option<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            title: "Job Logs".into(),
            timezone: Tz::UTC,
            nav: Vec::new(),
            page_size: 25,
            list_cache: std::time::Duration::from_secs(1),
            public_url: None,
        }
    }
}

impl WebConfig {
    /// Sets the title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Sets the display timezone.
    pub fn timezone(mut self, tz: Tz) -> Self {
        self.timezone = tz;
        self
    }

    /// Adds a navigation button.
    pub fn nav_link(mut self, link: NavLink) -> Self {
        self.nav.push(link);
        self
    }

    /// Sets how long a rendered run-list page is reused (zero: never).
    pub fn list_cache(mut self, ttl: std::time::Duration) -> Self {
        self.list_cache = ttl;
        self
    }

    /// Sets the address users reach the pages at, an `http://` or `https://` URL (see the
    /// [field](WebConfig#structfield.public_url)); only its origin counts, not its path.
    /// Without it, an `X-Forwarded-Proto` or `Forwarded` header from a proxy is never trusted.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// Sets the number of runs per page.
    pub fn page_size(mut self, n: u64) -> Self {
        self.page_size = n.clamp(1, joblog::query::MAX_PAGE_SIZE);
        self
    }
}
