//! Settings from the environment (DESIGN.md fixes the names). A missing or malformed value
//! stops start-up with a message naming the variable and what it expects; secrets are
//! never printed (`Debug` redacts them).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// The SQLite file used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://sync-app.db?mode=rwc";

/// Everything sync-app reads from its environment.
#[derive(Clone)]
pub struct Settings {
    /// Where runs and open orders are stored.
    pub database_url: String,
    /// The ERP's SQL Server, as an ADO connection string (`MSSQL_URL`); may hold a password.
    pub mssql_url: Option<String>,
    /// HTTP Basic credentials for the pages (`ADMIN_USER` / `ADMIN_PASSWORD`).
    pub admin: Option<(String, String)>,
    /// Where the web UI listens (`BIND`).
    pub bind: SocketAddr,
    /// How often the sync runs (`SYNC_INTERVAL`: `30s`, `5m`, `1h`).
    pub sync_interval: Duration,
    /// The SELECT that returns the open orders (`SOURCE_QUERY`), if not the default.
    pub source_query: Option<String>,
    /// Whether `SYNC_INTERVAL` was given (the demo keeps its 30 s otherwise).
    pub sync_interval_set: bool,
    /// Zone of the times on the pages (`TIMEZONE`, an IANA name; default UTC).
    pub timezone: joblog::Tz,
    /// How long a running sync may take to finish after SIGTERM / Ctrl-C
    /// (`SHUTDOWN_GRACE`, default 30s); after that it is cancelled and recorded as error.
    pub shutdown_grace: Duration,
    /// The scheduler's lease (`SYNC_LEASE`, default 60s): renewed while a sync runs; if
    /// the instance holding it dies, another takes the job over once it expires.
    pub sync_lease: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &redact_url(&self.database_url))
            .field("mssql_url", &self.mssql_url.as_ref().map(|_| "<set, not shown>"))
            .field("admin_user", &self.admin.as_ref().map(|(u, _)| u))
            .field("bind", &self.bind)
            .field("sync_interval", &self.sync_interval)
            .field("source_query", &self.source_query)
            .field("timezone", &self.timezone)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("sync_lease", &self.sync_lease)
            .finish()
    }
}

/// A setting that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable, e.g. `SYNC_INTERVAL`.
    pub variable: &'static str,
    /// What it expects.
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.expected)
    }
}

impl std::error::Error for ConfigError {}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_map(&std::env::vars().collect())
    }

    /// Reads the settings from `vars` (empty values count as unset).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            vars.get(k)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if ![
            "sqlite:",
            "postgres://",
            "postgresql://",
            "mysql://",
            "mariadb://",
        ]
        .iter()
        .any(|p| database_url.starts_with(p))
        {
            return Err(ConfigError {
                variable: "DATABASE_URL",
                expected: "a sqlite://, postgres:// or mysql:// URL".into(),
            });
        }
        let admin = match (get("ADMIN_USER"), get("ADMIN_PASSWORD")) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError {
                    variable: "ADMIN_PASSWORD",
                    expected: "a password, since ADMIN_USER is set".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError {
                    variable: "ADMIN_USER",
                    expected: "a user name, since ADMIN_PASSWORD is set".into(),
                });
            }
        };
        let bind = match get("BIND") {
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
            Some(b) => b.parse().map_err(|_| ConfigError {
                variable: "BIND",
                expected: format!("an address and port such as 127.0.0.1:3000, not {b:?}"),
            })?,
        };
        let sync_interval = match get("SYNC_INTERVAL") {
            None => Duration::from_secs(300),
            Some(v) => parse_interval(&v).ok_or_else(|| ConfigError {
                variable: "SYNC_INTERVAL",
                expected: format!("a duration such as 30s, 5m or 1h (at least 1s), not {v:?}"),
            })?,
        };
        let timezone = match get("TIMEZONE") {
            None => joblog::Tz::UTC,
            Some(z) => z.parse().map_err(|_| ConfigError {
                variable: "TIMEZONE",
                expected: format!("an IANA time zone such as Europe/Berlin or UTC, not {z:?}"),
            })?,
        };
        let shutdown_grace = match get("SHUTDOWN_GRACE") {
            None => Duration::from_secs(30),
            Some(v) => parse_interval(&v).ok_or_else(|| ConfigError {
                variable: "SHUTDOWN_GRACE",
                expected: format!("a duration such as 10s or 1m (at least 1s), not {v:?}"),
            })?,
        };
        let sync_lease = match get("SYNC_LEASE") {
            None => Duration::from_secs(60),
            Some(v) => parse_interval(&v).ok_or_else(|| ConfigError {
                variable: "SYNC_LEASE",
                expected: format!("a duration such as 30s or 2m (at least 1s), not {v:?}"),
            })?,
        };
        Ok(Self {
            sync_lease,
            shutdown_grace,
            database_url,
            mssql_url: get("MSSQL_URL"),
            admin,
            bind,
            sync_interval,
            source_query: get("SOURCE_QUERY"),
            sync_interval_set: get("SYNC_INTERVAL").is_some(),
            timezone,
        })
    }
}

/// `30s`, `5m`, `1h`, `1h30m`, `90` (seconds); at least one second, at most a week.
pub fn parse_interval(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return (1..=7 * 86_400)
            .contains(&secs)
            .then(|| Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            's' | 'm' | 'h' | 'd' if !number.is_empty() => {
                let n: u64 = number.parse().ok()?;
                number.clear();
                let unit = match c {
                    's' => 1,
                    'm' => 60,
                    'h' => 3_600,
                    _ => 86_400,
                };
                total = total.checked_add(n.checked_mul(unit)?)?;
            }
            _ => return None,
        }
    }
    (number.is_empty() && (1..=7 * 86_400).contains(&total)).then(|| Duration::from_secs(total))
}

/// A database URL with its password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The authority ends at the first `/`, `?` or `#`; its password (which may itself
    // hold `@`) runs from the first `:` of the user info to the last `@`.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{user}:***@{}", &authority[at + 1..])
            } else {
                authority.to_owned()
            }
        }
        None => authority.to_owned(),
    };
    // `?password=…` (sqlx accepts it) is hidden too.
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("pwd") => {
                        format!("{k}=***")
                    }
                    _ => p.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_interval("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_interval("1h"), Some(Duration::from_secs(3_600)));
        assert_eq!(parse_interval("1h30m"), Some(Duration::from_secs(5_400)));
        assert_eq!(parse_interval("90"), Some(Duration::from_secs(90)));
        for bad in [
            "",
            "0s",
            "0",
            "m",
            "5 m",
            "-5m",
            "5x",
            "9999999999999999999h",
            "8d",
        ] {
            assert_eq!(parse_interval(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn defaults() {
        let s = Settings::from_map(&vars(&[])).unwrap();
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(s.bind.to_string(), "127.0.0.1:3000");
        assert_eq!(s.sync_interval, Duration::from_secs(300));
        assert!(s.admin.is_none() && s.mssql_url.is_none());
    }

    #[test]
    fn errors_name_the_variable() {
        let e = Settings::from_map(&vars(&[("SYNC_INTERVAL", "often")])).unwrap_err();
        assert_eq!(e.variable, "SYNC_INTERVAL");
        assert!(e.to_string().contains("30s, 5m or 1h"));
        assert_eq!(
            Settings::from_map(&vars(&[("BIND", "localhost")]))
                .unwrap_err()
                .variable,
            "BIND"
        );
        assert_eq!(
            Settings::from_map(&vars(&[("ADMIN_USER", "a")]))
                .unwrap_err()
                .variable,
            "ADMIN_PASSWORD"
        );
        assert_eq!(
            Settings::from_map(&vars(&[("DATABASE_URL", "oracle://x")]))
                .unwrap_err()
                .variable,
            "DATABASE_URL"
        );
        let e = Settings::from_map(&vars(&[("TIMEZONE", "Mars/Olympus")])).unwrap_err();
        assert_eq!(e.variable, "TIMEZONE");
        let ok = Settings::from_map(&vars(&[("TIMEZONE", "Europe/Berlin")])).unwrap();
        assert_eq!(ok.timezone, joblog::Tz::Europe__Berlin);
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:p@ss@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:1/x?password=hunter2&sslmode=require"),
            "postgres://postgres@127.0.0.1:1/x?password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("mysql://root@localhost/test"),
            "mysql://root@localhost/test"
        );
        assert_eq!(
            redact_url("sqlite://sync-app.db?mode=rwc"),
            "sqlite://sync-app.db?mode=rwc"
        );
    }

    #[test]
    fn secrets_are_never_printed() {
        let s = Settings::from_map(&vars(&[
            ("DATABASE_URL", "postgres://app:hunter2@db/app"),
            ("MSSQL_URL", "server=tcp:erp,1433;user=ro;password=s3cr3t"),
            ("ADMIN_USER", "admin"),
            ("ADMIN_PASSWORD", "pa55word"),
        ]))
        .unwrap();
        let shown = format!("{s:?}");
        for secret in ["hunter2", "s3cr3t", "pa55word"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("postgres://app:***@db/app") && shown.contains("admin"));
    }
}
