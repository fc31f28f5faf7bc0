//! Settings from flags and the environment (DESIGN.md fixes the names).
//!
//! Each group of settings is a clap [`Args`] struct — [`DatabaseArgs`], [`ErpArgs`],
//! [`QueryArgs`], [`WebArgs`], [`ScheduleArgs`], [`ShutdownArgs`] — flattened into the
//! commands that read it (`crate::cli`). Every setting is a flag with `env = "VARIABLE"`:
//! clap reads the variable, and a flag given on the command line wins over it. Values
//! arrive as [`OsString`]s and are checked here, so that a malformed one — not a number,
//! not an address, not even UTF-8 — stops start-up with a [`ConfigError`] naming the
//! variable and what it expects (exit 2), never with a panic. Empty values count as unset.
//!
//! Secrets (`ADMIN_PASSWORD`, `ADMIN_PASSWORD_HASH`, `MSSQL_ACCESS_TOKEN`) come from the environment or a file
//! (`--admin-password-file`, `--mssql-access-token-file`), never from the command line,
//! where `ps` shows them to every user of the machine; they are never printed (`Debug`
//! redacts them, and the URLs' passwords).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use clap::builder::{OsStringValueParser, TypedValueParser};

/// The SQLite file used when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://sync-app.db?mode=rwc";
/// Where the web UI listens when `BIND` is not set.
pub const DEFAULT_BIND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3000);
/// `SYNC_INTERVAL` when not set.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(300);
/// `SHUTDOWN_GRACE` when not set.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// `SYNC_LEASE` when not set.
pub const DEFAULT_SYNC_LEASE: Duration = Duration::from_secs(60);
/// The longest duration a setting takes (a week).
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 86_400);
/// The shortest `ADMIN_PASSWORD` `serve` accepts, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Everything sync-app reads from its flags and environment, checked.
#[derive(Clone)]
pub struct Settings {
    /// Where runs and open orders are stored.
    pub database_url: String,
    /// The ERP's SQL Server, as an ADO connection string (`MSSQL_URL`); may hold a password.
    pub mssql_url: Option<String>,
    /// An Entra ID access token for the ERP (`MSSQL_ACCESS_TOKEN`).
    pub mssql_access_token: Option<String>,
    /// A file holding that token (`MSSQL_ACCESS_TOKEN_FILE`).
    pub mssql_access_token_file: Option<String>,
    /// HTTP Basic credentials for the pages (`ADMIN_USER` / `ADMIN_PASSWORD`), never trimmed.
    pub admin: Option<(String, String)>,
    /// Or the user and an Argon2 PHC string of its password (`ADMIN_USER` /
    /// `ADMIN_PASSWORD_HASH`, checked to parse); never both this and `admin`.
    pub admin_hash: Option<(String, String)>,
    /// The address users reach the pages at (`PUBLIC_URL`), when a proxy is in front.
    pub public_url: Option<String>,
    /// A bearer token that lets a scraper read `/metrics` without the Basic login
    /// (`METRICS_TOKEN`); without it `/metrics` is behind the login like the pages.
    pub metrics_token: Option<String>,
    /// Where the sync's alerts go (`ALERT_WEBHOOK_URL`): failed, overdue, recovered.
    pub alert_webhook_url: Option<String>,
    /// HTTPS on `BIND` (`TLS_CERT` / `TLS_KEY`), loaded and checked.
    pub tls: Option<TlsSettings>,
    /// The header and idle timeouts and `MAX_CONNECTIONS`.
    pub limits: joblog_web::listener::ConnectionLimits,
    /// Where the web UI listens (`BIND`).
    pub bind: SocketAddr,
    /// How often the sync runs (`SYNC_INTERVAL`: `30s`, `5m`, `1h`).
    pub sync_interval: Duration,
    /// The SELECT that returns the open orders (`SOURCE_QUERY`), if not the default.
    pub source_query: Option<String>,
    /// Whether `SYNC_INTERVAL` was given (the demo keeps its 30 s otherwise).
    pub sync_interval_set: bool,
    /// Zone of the times on the pages (`TIMEZONE`, an IANA name; default UTC).
    pub timezone: joblog::scheduler::Tz,
    /// How long a running sync may take to finish after SIGTERM / Ctrl-C
    /// (`SHUTDOWN_GRACE`, default 30s); after that it is cancelled and recorded as error.
    pub shutdown_grace: Duration,
    /// The scheduler's lease (`SYNC_LEASE`, default 60s): renewed while a sync runs; if
    /// the instance holding it dies, another takes the job over once it expires.
    pub sync_lease: Duration,
}

impl Default for Settings {
    /// Every setting unset: the defaults DESIGN.md and the README give.
    fn default() -> Self {
        Self {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            mssql_url: None,
            mssql_access_token: None,
            mssql_access_token_file: None,
            admin: None,
            admin_hash: None,
            public_url: None,
            metrics_token: None,
            alert_webhook_url: None,
            tls: None,
            limits: joblog_web::listener::ConnectionLimits::default(),
            bind: DEFAULT_BIND,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            source_query: None,
            sync_interval_set: false,
            timezone: joblog::scheduler::Tz::UTC,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            sync_lease: DEFAULT_SYNC_LEASE,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &redact_url(&self.database_url))
            .field("mssql_url", &self.mssql_url.as_ref().map(|_| HIDDEN))
            .field(
                "mssql_access_token",
                &self.mssql_access_token.as_ref().map(|_| HIDDEN),
            )
            .field("mssql_access_token_file", &self.mssql_access_token_file)
            .field(
                "admin_user",
                &self.admin.as_ref().or(self.admin_hash.as_ref()).map(|(u, _)| u),
            )
            .field("admin_password_hash", &self.admin_hash.as_ref().map(|_| HIDDEN))
            .field("public_url", &self.public_url)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| HIDDEN))
            .field(
                "alert_webhook_url",
                &self.alert_webhook_url.as_ref().map(|_| HIDDEN),
            )
            .field("tls", &self.tls)
            .field("limits", &self.limits)
            .field("bind", &self.bind)
            .field("sync_interval", &self.sync_interval)
            .field("source_query", &self.source_query)
            .field("timezone", &self.timezone)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("sync_lease", &self.sync_lease)
            .finish()
    }
}

const HIDDEN: &str = "<set, not shown>";

/// `TLS_CERT` / `TLS_KEY`: the files and the server configuration made from them.
#[derive(Clone)]
pub struct TlsSettings {
    /// The PEM certificate chain.
    pub cert: PathBuf,
    /// Its PEM private key.
    pub key: PathBuf,
    /// rustls's configuration, the files loaded.
    pub config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
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

impl ConfigError {
    fn new(variable: &'static str, expected: impl Into<String>) -> Self {
        Self {
            variable,
            expected: expected.into(),
        }
    }
}

/// A value that is never printed: `Debug` shows that it is set, not what it is.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(OsString);

impl Secret {
    /// The value, for the one place that needs it.
    #[must_use]
    pub fn expose(&self) -> &OsStr {
        &self.0
    }
}

impl From<OsString> for Secret {
    fn from(value: OsString) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HIDDEN)
    }
}

/// Which settings were given on the command line (rather than by their variable): a flag
/// wins over a variable, and a secret is refused on the command line. `crate::cli` answers
/// from clap's `ArgMatches`; [`NONE_ON_COMMAND_LINE`] when nothing was.
pub type OnCommandLine<'a> = &'a dyn Fn(&str) -> bool;

/// An [`OnCommandLine`] for settings that all came from the environment (or nowhere).
pub const NONE_ON_COMMAND_LINE: OnCommandLine<'static> = &|_| false;

/// `DATABASE_URL`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Database")]
pub struct DatabaseArgs {
    /// Where runs and open orders are stored: sqlite://…, postgres://… or mysql://…
    /// [default: sqlite://sync-app.db?mode=rwc, a file in the working directory]
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "URL",
        hide_env_values = true,
        value_parser = secret()
    )]
    pub database_url: Option<Secret>,
}

impl DatabaseArgs {
    /// Checks the value and sets it on `settings`.
    pub fn apply(&self, settings: &mut Settings) -> Result<(), ConfigError> {
        let Some(url) = text("DATABASE_URL", self.database_url.as_ref().map(Secret::expose))? else {
            return Ok(());
        };
        const SCHEMES: [&str; 5] = [
            "sqlite:",
            "postgres://",
            "postgresql://",
            "mysql://",
            "mariadb://",
        ];
        if !SCHEMES.iter().any(|p| url.starts_with(p)) {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "a sqlite://, postgres:// or mysql:// URL",
            ));
        }
        settings.database_url = url;
        Ok(())
    }
}

/// `MSSQL_URL` and the access token for it.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "ERP (SQL Server)")]
pub struct ErpArgs {
    /// The ERP's SQL Server as an ADO connection string
    /// (Server=tcp:host,1433;Database=ERP;User ID=…;Password=…;Encrypt=true). It may hold a
    /// password: prefer the variable, the command line is visible in `ps`
    #[arg(
        long,
        env = "MSSQL_URL",
        value_name = "ADO",
        hide_env_values = true,
        value_parser = secret()
    )]
    pub mssql_url: Option<Secret>,
    /// Refused: a token on the command line is visible in `ps` (MSSQL_ACCESS_TOKEN in the
    /// environment, or --mssql-access-token-file)
    #[arg(
        long,
        env = "MSSQL_ACCESS_TOKEN",
        value_name = "TOKEN",
        hide = true,
        value_parser = secret()
    )]
    pub mssql_access_token: Option<Secret>,
    /// A file holding an Entra ID access token for Authentication=ActiveDirectoryAccessToken
    /// (or set MSSQL_ACCESS_TOKEN itself in the environment)
    #[arg(long, env = "MSSQL_ACCESS_TOKEN_FILE", value_name = "FILE")]
    pub mssql_access_token_file: Option<OsString>,
}

impl ErpArgs {
    /// Checks the values and sets them on `settings`.
    pub fn apply(
        &self,
        settings: &mut Settings,
        on_command_line: OnCommandLine<'_>,
    ) -> Result<(), ConfigError> {
        if self.mssql_access_token.is_some() && on_command_line("mssql_access_token") {
            return Err(ConfigError::new(
                "MSSQL_ACCESS_TOKEN",
                "not accepted on the command line, where `ps` shows it: set MSSQL_ACCESS_TOKEN in the \
                 environment or use --mssql-access-token-file FILE",
            ));
        }
        settings.mssql_url = text("MSSQL_URL", self.mssql_url.as_ref().map(Secret::expose))?;
        let token = text(
            "MSSQL_ACCESS_TOKEN",
            self.mssql_access_token.as_ref().map(Secret::expose),
        )?;
        let file = text("MSSQL_ACCESS_TOKEN_FILE", self.mssql_access_token_file.as_deref())?;
        // The flag wins over the variable; two variables are the ERP source's to refuse.
        settings.mssql_access_token = if file.is_some() && on_command_line("mssql_access_token_file") {
            None
        } else {
            token
        };
        settings.mssql_access_token_file = file;
        Ok(())
    }

    /// The access-token variables as `ErpSource::from_ado_with_env` asks for them.
    #[must_use]
    pub fn lookup(settings: &Settings, name: &str) -> Option<String> {
        match name {
            "MSSQL_ACCESS_TOKEN" => settings.mssql_access_token.clone(),
            "MSSQL_ACCESS_TOKEN_FILE" => settings.mssql_access_token_file.clone(),
            _ => None,
        }
    }
}

/// `SOURCE_QUERY`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "ERP (SQL Server)")]
pub struct QueryArgs {
    /// The SELECT returning the open-order columns [default: SELECT order_no, line_no, … FROM
    /// dbo.vw_OpenOrders ORDER BY order_no, line_no]
    #[arg(long, env = "SOURCE_QUERY", value_name = "SQL")]
    pub source_query: Option<OsString>,
}

impl QueryArgs {
    /// Checks the value and sets it on `settings`.
    pub fn apply(&self, settings: &mut Settings) -> Result<(), ConfigError> {
        settings.source_query = text("SOURCE_QUERY", self.source_query.as_deref())?;
        Ok(())
    }
}

/// `ADMIN_USER`, `ADMIN_PASSWORD`, `ADMIN_PASSWORD_HASH`, `BIND`, `PUBLIC_URL`, `TIMEZONE`,
/// `METRICS_TOKEN`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Web UI")]
pub struct WebArgs {
    /// HTTP Basic user for every page but /healthz; its password is ADMIN_PASSWORD in the
    /// environment or --admin-password-file
    #[arg(long, env = "ADMIN_USER", value_name = "USER")]
    pub admin_user: Option<OsString>,
    /// Refused: a password on the command line is visible in `ps` (ADMIN_PASSWORD in the
    /// environment, or --admin-password-file)
    #[arg(
        long,
        env = "ADMIN_PASSWORD",
        value_name = "PASSWORD",
        hide = true,
        value_parser = secret()
    )]
    pub admin_password: Option<Secret>,
    /// A file holding ADMIN_USER's password (one trailing line break is not part of it); or
    /// set ADMIN_PASSWORD in the environment. Never on the command line
    #[arg(long, env = "ADMIN_PASSWORD_FILE", value_name = "FILE")]
    pub admin_password_file: Option<OsString>,
    /// An Argon2 PHC string of ADMIN_USER's password (`sync-app hash-password` makes one),
    /// instead of ADMIN_PASSWORD
    #[arg(
        long,
        env = "ADMIN_PASSWORD_HASH",
        value_name = "PHC",
        hide_env_values = true,
        value_parser = secret()
    )]
    pub admin_password_hash: Option<Secret>,
    /// Where the web UI listens [default: 127.0.0.1:3000]
    #[arg(long, env = "BIND", value_name = "ADDR")]
    pub bind: Option<OsString>,
    /// The pages' address as users reach them, when a proxy is in front, e.g.
    /// https://jobs.example.com (an https URL: the proxy does TLS)
    #[arg(long, env = "PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<OsString>,
    /// IANA time zone for the times on the pages, e.g. Europe/Berlin [default: UTC]
    #[arg(long, env = "TIMEZONE", value_name = "TZ")]
    pub timezone: Option<OsString>,
    /// A bearer token that lets a Prometheus scraper read /metrics without the Basic login
    /// (`Authorization: Bearer <token>`); environment only. Without it /metrics is behind
    /// the login like the pages
    #[arg(
        long,
        env = "METRICS_TOKEN",
        value_name = "TOKEN",
        hide = true,
        hide_env_values = true,
        value_parser = secret()
    )]
    pub metrics_token: Option<Secret>,
}

impl WebArgs {
    /// Checks the values (reading the password file) and sets them on `settings`.
    pub fn apply(
        &self,
        settings: &mut Settings,
        on_command_line: OnCommandLine<'_>,
    ) -> Result<(), ConfigError> {
        if self.admin_password.is_some() && on_command_line("admin_password") {
            return Err(ConfigError::new(
                "ADMIN_PASSWORD",
                "not accepted on the command line (--admin-password), where `ps` shows it: set \
                 ADMIN_PASSWORD in the environment or use --admin-password-file FILE",
            ));
        }
        let user = text("ADMIN_USER", self.admin_user.as_deref())?;
        let password = self.password(on_command_line)?;
        // A PHC string has no spaces: trimming it is safe, and forgives a pasted newline.
        let hash = text(
            "ADMIN_PASSWORD_HASH",
            self.admin_password_hash.as_ref().map(Secret::expose),
        )?;
        settings.admin = None;
        settings.admin_hash = None;
        match (user, password, hash) {
            (_, Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "ADMIN_PASSWORD_HASH",
                    "unset, since ADMIN_PASSWORD (or ADMIN_PASSWORD_FILE) is set too: give the password \
                     one way",
                ));
            }
            (Some(u), Some(p), None) => settings.admin = Some((u, p)),
            (Some(u), None, Some(h)) => {
                joblog_web::BasicAuth::with_password_hash(u.clone(), &h).map_err(|e| {
                    ConfigError::new(
                        "ADMIN_PASSWORD_HASH",
                        format!("an Argon2 PHC string as `sync-app hash-password` prints it ({e})"),
                    )
                })?;
                settings.admin_hash = Some((u, h));
            }
            (None, None, None) => {}
            (Some(_), None, None) => {
                return Err(ConfigError::new(
                    "ADMIN_PASSWORD",
                    "a password (or --admin-password-file, or ADMIN_PASSWORD_HASH), since ADMIN_USER is set",
                ));
            }
            (None, _, _) => {
                return Err(ConfigError::new(
                    "ADMIN_USER",
                    "a user name, since ADMIN_PASSWORD (or ADMIN_PASSWORD_HASH) is set",
                ));
            }
        }
        if let Some(url) = text("PUBLIC_URL", self.public_url.as_deref())? {
            settings.public_url = Some(public_url(&url)?);
        }
        if self.metrics_token.is_some() && on_command_line("metrics_token") {
            return Err(ConfigError::new(
                "METRICS_TOKEN",
                "not accepted on the command line (--metrics-token), where `ps` shows it: set \
                 METRICS_TOKEN in the environment",
            ));
        }
        settings.metrics_token = match text("METRICS_TOKEN", self.metrics_token.as_ref().map(Secret::expose))?
        {
            None => None,
            Some(t) if t.len() >= 16 && t.bytes().all(|b| b.is_ascii_graphic()) => Some(t),
            Some(_) => {
                return Err(ConfigError::new(
                    "METRICS_TOKEN",
                    "at least 16 characters, printable ASCII without spaces (it travels in an \
                     `Authorization: Bearer` header), e.g. from `openssl rand -hex 24`",
                ));
            }
        };
        if let Some(b) = text("BIND", self.bind.as_deref())? {
            settings.bind = b.parse().map_err(|_| {
                ConfigError::new(
                    "BIND",
                    format!("an address and port such as 127.0.0.1:3000, not {b:?}"),
                )
            })?;
        }
        if let Some(z) = text("TIMEZONE", self.timezone.as_deref())? {
            settings.timezone = z.parse().map_err(|_| {
                ConfigError::new(
                    "TIMEZONE",
                    format!("an IANA time zone such as Europe/Berlin or UTC, not {z:?}"),
                )
            })?;
        }
        Ok(())
    }

    /// The password: from the file or from `ADMIN_PASSWORD`, never trimmed (a space may
    /// be part of it); a file's one trailing line break is dropped (`echo pw > file`).
    fn password(&self, on_command_line: OnCommandLine<'_>) -> Result<Option<String>, ConfigError> {
        let from_env = match self.admin_password.as_ref().map(Secret::expose) {
            None => None,
            Some(v) if v.is_empty() => None,
            Some(v) => Some(
                v.to_str()
                    .ok_or_else(|| ConfigError::new("ADMIN_PASSWORD", NOT_UTF8))?
                    .to_owned(),
            ),
        };
        let Some(path) = self
            .admin_password_file
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(Path::new)
        else {
            return Ok(from_env);
        };
        if from_env.is_some() && !on_command_line("admin_password_file") {
            return Err(ConfigError::new(
                "ADMIN_PASSWORD_FILE",
                "unset, since ADMIN_PASSWORD is set too: give the password one way",
            ));
        }
        let content = std::fs::read(path).map_err(|e| {
            ConfigError::new(
                "ADMIN_PASSWORD_FILE",
                format!(
                    "a readable file with the password; {} cannot be read ({e})",
                    path.display()
                ),
            )
        })?;
        let mut password = String::from_utf8(content).map_err(|_| {
            ConfigError::new(
                "ADMIN_PASSWORD_FILE",
                format!("a file with the password in UTF-8; {} is not", path.display()),
            )
        })?;
        if password.ends_with('\n') {
            password.pop();
            if password.ends_with('\r') {
                password.pop();
            }
        }
        if password.is_empty() {
            return Err(ConfigError::new(
                "ADMIN_PASSWORD_FILE",
                format!("a file with the password; {} is empty", path.display()),
            ));
        }
        Ok(Some(password))
    }
}

/// `PUBLIC_URL`'s value: an `http://` or `https://` URL with a host, no query or fragment;
/// a trailing `/` dropped.
fn public_url(url: &str) -> Result<String, ConfigError> {
    let bad = || {
        ConfigError::new(
            "PUBLIC_URL",
            format!("the pages' address as users reach them, such as https://jobs.example.com, not {url:?}"),
        )
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let host = rest.split('/').next().unwrap_or("");
    let host_name = host
        .rsplit_once(':')
        .map_or(host, |(h, port)| if port.parse::<u16>().is_ok() { h } else { "" });
    if host_name.is_empty()
        || host.contains('@')
        || url.contains(|c: char| c.is_whitespace() || c == '?' || c == '#' || c.is_control())
    {
        return Err(bad());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// `TLS_CERT`, `TLS_KEY`, `MAX_CONNECTIONS`, `HEADER_READ_TIMEOUT`, `KEEP_ALIVE_TIMEOUT`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Connections")]
pub struct ServerArgs {
    /// Serve HTTPS with this PEM certificate (chain), with TLS_KEY
    #[arg(long, env = "TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<OsString>,
    /// The certificate's PEM private key
    #[arg(long, env = "TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<OsString>,
    /// Connections open at most; beyond, a new one replaces the oldest idle one or waits 1 s
    /// [default: half the open-file limit, 64 to 4096]
    #[arg(long, env = "MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<OsString>,
    /// A client must send a request's complete headers within this [default: 10s]
    #[arg(long, env = "HEADER_READ_TIMEOUT", value_name = "DURATION")]
    pub header_read_timeout: Option<OsString>,
    /// A connection with no request in progress is closed after this [default: 30s]
    #[arg(long, env = "KEEP_ALIVE_TIMEOUT", value_name = "DURATION")]
    pub keep_alive_timeout: Option<OsString>,
}

impl ServerArgs {
    /// Checks the values (loading the TLS files) and sets them on `settings`.
    pub fn apply(&self, settings: &mut Settings) -> Result<(), ConfigError> {
        let cert = text("TLS_CERT", self.tls_cert.as_deref())?;
        let key = text("TLS_KEY", self.tls_key.as_deref())?;
        settings.tls = match (cert, key) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "TLS_KEY",
                    "the certificate's key file, since TLS_CERT is set",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "TLS_CERT",
                    "the certificate file, since TLS_KEY is set",
                ));
            }
            (Some(cert), Some(key)) => {
                let (cert, key) = (PathBuf::from(cert), PathBuf::from(key));
                let config = joblog_web::listener::load_tls_config(&cert, &key)
                    .map_err(|e| ConfigError::new(e.variable, e.message))?;
                Some(TlsSettings { cert, key, config })
            }
        };
        if let Some(n) = text("MAX_CONNECTIONS", self.max_connections.as_deref())? {
            settings.limits.max_connections = n
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| {
                    ConfigError::new(
                        "MAX_CONNECTIONS",
                        format!("a number of connections, 1 or more, not {n:?}"),
                    )
                })?;
        }
        if let Some(d) = duration_setting(
            "HEADER_READ_TIMEOUT",
            self.header_read_timeout.as_deref(),
            "10s or 1m",
        )? {
            settings.limits.header_read_timeout = d;
        }
        if let Some(d) = duration_setting(
            "KEEP_ALIVE_TIMEOUT",
            self.keep_alive_timeout.as_deref(),
            "30s or 2m",
        )? {
            settings.limits.idle_timeout = d;
        }
        Ok(())
    }
}

/// `SYNC_INTERVAL`, `SYNC_LEASE`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Schedule")]
pub struct ScheduleArgs {
    /// How often the sync runs: 30s, 5m, 1h, 1h30m [default: 5m; the demo's 30s]
    #[arg(long, env = "SYNC_INTERVAL", value_name = "DURATION")]
    pub sync_interval: Option<OsString>,
    /// The scheduler's lease on the sync, renewed while it runs: if the instance running it
    /// dies, another instance on the database takes over once it expires [default: 60s]
    #[arg(long, env = "SYNC_LEASE", value_name = "DURATION")]
    pub sync_lease: Option<OsString>,
    /// A webhook (Slack, Mattermost, any JSON receiver) that gets a POST when a sync fails,
    /// when it is overdue and when it recovers; environment only (such a URL is a secret)
    #[arg(
        long,
        env = "ALERT_WEBHOOK_URL",
        value_name = "URL",
        hide = true,
        hide_env_values = true,
        value_parser = secret()
    )]
    pub alert_webhook_url: Option<Secret>,
}

impl ScheduleArgs {
    /// Checks the values and sets them on `settings`.
    pub fn apply(
        &self,
        settings: &mut Settings,
        on_command_line: OnCommandLine<'_>,
    ) -> Result<(), ConfigError> {
        if self.alert_webhook_url.is_some() && on_command_line("alert_webhook_url") {
            return Err(ConfigError::new(
                "ALERT_WEBHOOK_URL",
                "not accepted on the command line (--alert-webhook-url), where `ps` shows it: set \
                 ALERT_WEBHOOK_URL in the environment",
            ));
        }
        if let Some(url) = text(
            "ALERT_WEBHOOK_URL",
            self.alert_webhook_url.as_ref().map(Secret::expose),
        )? {
            let valid = url.parse::<poem::http::Uri>().ok().is_some_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
            });
            if !valid {
                return Err(ConfigError::new(
                    "ALERT_WEBHOOK_URL",
                    "an http:// or https:// URL, such as a Slack or Mattermost incoming webhook",
                ));
            }
            settings.alert_webhook_url = Some(url);
        }
        if let Some(d) = duration_setting("SYNC_INTERVAL", self.sync_interval.as_deref(), "30s, 5m or 1h")? {
            settings.sync_interval = d;
            settings.sync_interval_set = true;
        }
        if let Some(d) = duration_setting("SYNC_LEASE", self.sync_lease.as_deref(), "30s or 2m")? {
            settings.sync_lease = d;
        }
        Ok(())
    }
}

/// `SHUTDOWN_GRACE`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Shutdown")]
pub struct ShutdownArgs {
    /// How long a running sync may go on after SIGTERM / Ctrl-C before it is cancelled (and
    /// recorded as error) [default: 30s]
    #[arg(long, env = "SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<OsString>,
}

impl ShutdownArgs {
    /// Checks the value and sets it on `settings`.
    pub fn apply(&self, settings: &mut Settings) -> Result<(), ConfigError> {
        if let Some(d) = duration_setting("SHUTDOWN_GRACE", self.shutdown_grace.as_deref(), "10s or 1m")? {
            settings.shutdown_grace = d;
        }
        Ok(())
    }
}

const NOT_UTF8: &str = "text in UTF-8; the value given is not";

/// clap's parser for a [`Secret`]: any bytes (UTF-8 or not), checked in `apply`.
fn secret() -> impl TypedValueParser<Value = Secret> {
    OsStringValueParser::new().map(Secret::from)
}

/// A setting's text: `None` when unset or blank, trimmed, and an error naming `variable`
/// when it is not UTF-8.
fn text(variable: &'static str, value: Option<&OsStr>) -> Result<Option<String>, ConfigError> {
    let Some(value) = value else { return Ok(None) };
    let value = value
        .to_str()
        .ok_or_else(|| ConfigError::new(variable, NOT_UTF8))?;
    let value = value.trim();
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

fn duration_setting(
    variable: &'static str,
    value: Option<&OsStr>,
    examples: &str,
) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = text(variable, value)? else {
        return Ok(None);
    };
    parse_interval(&v).map(Some).ok_or_else(|| {
        ConfigError::new(
            variable,
            format!("a duration such as {examples} (at least 1s, at most a week), not {v:?}"),
        )
    })
}

/// A duration setting: `humantime`'s `30s`, `5m`, `1h30m`, `1500ms`, `2d`, or a bare number
/// of seconds (`90`); no spaces; at least one second, at most [`MAX_DURATION`].
#[must_use]
pub fn parse_interval(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() || text.contains(char::is_whitespace) {
        return None;
    }
    let d = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text).ok()?,
    };
    (Duration::from_secs(1)..=MAX_DURATION).contains(&d).then_some(d)
}

/// A database URL with its password replaced, for logs.
#[must_use]
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

    fn os(v: &str) -> Option<OsString> {
        Some(v.into())
    }

    /// Every group applied with these values, all from the environment.
    fn settings(
        database: DatabaseArgs,
        erp: ErpArgs,
        web: WebArgs,
        schedule: ScheduleArgs,
    ) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        database.apply(&mut s)?;
        erp.apply(&mut s, NONE_ON_COMMAND_LINE)?;
        web.apply(&mut s, NONE_ON_COMMAND_LINE)?;
        schedule.apply(&mut s, NONE_ON_COMMAND_LINE)?;
        Ok(s)
    }

    fn web(f: impl FnOnce(&mut WebArgs)) -> Result<Settings, ConfigError> {
        let mut w = WebArgs::default();
        f(&mut w);
        settings(
            DatabaseArgs::default(),
            ErpArgs::default(),
            w,
            ScheduleArgs::default(),
        )
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_interval("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_interval("1h"), Some(Duration::from_secs(3_600)));
        assert_eq!(parse_interval("1h30m"), Some(Duration::from_secs(5_400)));
        assert_eq!(parse_interval("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_interval("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_interval(" 2m "), Some(Duration::from_secs(120)));
        assert_eq!(parse_interval("1500ms"), Some(Duration::from_millis(1_500)));
        assert_eq!(parse_interval("7d"), Some(MAX_DURATION));
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
            "500ms",
            "often",
        ] {
            assert_eq!(parse_interval(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn defaults() {
        let s = settings(
            DatabaseArgs::default(),
            ErpArgs::default(),
            WebArgs::default(),
            ScheduleArgs::default(),
        )
        .unwrap();
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(s.bind.to_string(), "127.0.0.1:3000");
        assert_eq!(s.sync_interval, Duration::from_secs(300));
        assert!(!s.sync_interval_set);
        assert_eq!(s.shutdown_grace, Duration::from_secs(30));
        assert_eq!(s.sync_lease, Duration::from_secs(60));
        assert!(s.admin.is_none() && s.mssql_url.is_none());
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = settings(
            DatabaseArgs {
                database_url: Some("".into()),
            },
            ErpArgs {
                mssql_url: Some(" ".into()),
                ..ErpArgs::default()
            },
            WebArgs {
                bind: os(""),
                admin_user: os(""),
                admin_password: Some("".into()),
                ..WebArgs::default()
            },
            ScheduleArgs {
                sync_interval: os("  "),
                sync_lease: None,
                alert_webhook_url: None,
            },
        )
        .unwrap();
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert!(s.mssql_url.is_none() && s.admin.is_none() && !s.sync_interval_set);
    }

    #[test]
    fn errors_name_the_variable() {
        let e = settings(
            DatabaseArgs::default(),
            ErpArgs::default(),
            WebArgs::default(),
            ScheduleArgs {
                sync_interval: os("often"),
                sync_lease: None,
                alert_webhook_url: None,
            },
        )
        .unwrap_err();
        assert_eq!(e.variable, "SYNC_INTERVAL");
        assert!(e.to_string().contains("30s, 5m or 1h"), "{e}");
        assert_eq!(web(|w| w.bind = os("localhost")).unwrap_err().variable, "BIND");
        assert_eq!(
            web(|w| w.admin_user = os("a")).unwrap_err().variable,
            "ADMIN_PASSWORD"
        );
        assert_eq!(
            web(|w| w.admin_password = Some("p".into())).unwrap_err().variable,
            "ADMIN_USER"
        );
        let mut s = Settings::default();
        let e = DatabaseArgs {
            database_url: Some("oracle://x".into()),
        }
        .apply(&mut s)
        .unwrap_err();
        assert_eq!(e.variable, "DATABASE_URL");
        let e = web(|w| w.timezone = os("Mars/Olympus")).unwrap_err();
        assert_eq!(e.variable, "TIMEZONE");
        let ok = web(|w| w.timezone = os("Europe/Berlin")).unwrap();
        assert_eq!(ok.timezone, joblog::scheduler::Tz::Europe__Berlin);
        for (variable, args) in [
            (
                "SYNC_LEASE",
                ScheduleArgs {
                    sync_lease: os("0s"),
                    sync_interval: None,
                    alert_webhook_url: None,
                },
            ),
            (
                "SYNC_INTERVAL",
                ScheduleArgs {
                    sync_interval: os("8d"),
                    sync_lease: None,
                    alert_webhook_url: None,
                },
            ),
        ] {
            let mut s = Settings::default();
            assert_eq!(
                args.apply(&mut s, NONE_ON_COMMAND_LINE).unwrap_err().variable,
                variable
            );
        }
        let mut s = Settings::default();
        let bad = ScheduleArgs {
            alert_webhook_url: Some("hooks.slack.com/services/x".into()),
            ..ScheduleArgs::default()
        };
        let e = bad.apply(&mut s, NONE_ON_COMMAND_LINE).unwrap_err();
        assert_eq!(e.variable, "ALERT_WEBHOOK_URL");
        assert!(
            !e.to_string().contains("slack.com/services/x"),
            "never echoes the secret: {e}"
        );
        let good = ScheduleArgs {
            alert_webhook_url: Some("https://hooks.slack.com/services/x".into()),
            ..ScheduleArgs::default()
        };
        good.apply(&mut s, NONE_ON_COMMAND_LINE).unwrap();
        assert_eq!(
            s.alert_webhook_url.as_deref(),
            Some("https://hooks.slack.com/services/x")
        );
        assert!(!format!("{s:?}").contains("hooks.slack.com"), "hidden in Debug");
        let refused = good.apply(&mut s, &|id| id == "alert_webhook_url").unwrap_err();
        assert_eq!(refused.variable, "ALERT_WEBHOOK_URL");
        let e = web(|w| w.metrics_token = Some("short".into())).unwrap_err();
        assert_eq!(e.variable, "METRICS_TOKEN");
        assert!(!e.to_string().contains("short"), "{e}");
        let ok = web(|w| w.metrics_token = Some("0123456789abcdef".into())).unwrap();
        assert_eq!(ok.metrics_token.as_deref(), Some("0123456789abcdef"));
        let mut s = Settings::default();
        let e = ShutdownArgs {
            shutdown_grace: os("soon"),
        }
        .apply(&mut s)
        .unwrap_err();
        assert_eq!(e.variable, "SHUTDOWN_GRACE");
    }

    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_utf8_is_named() {
        use std::os::unix::ffi::OsStringExt;
        let bad = || Some(OsString::from_vec(vec![b'5', 0xff, b'm']));
        let mut s = Settings::default();
        let e = ScheduleArgs {
            sync_interval: bad(),
            sync_lease: None,
            alert_webhook_url: None,
        }
        .apply(&mut s, NONE_ON_COMMAND_LINE)
        .unwrap_err();
        assert_eq!(e.variable, "SYNC_INTERVAL");
        assert!(e.to_string().contains("UTF-8"), "{e}");
        let e = web(|w| {
            w.admin_user = os("ops");
            w.admin_password = bad().map(Secret::from);
        })
        .unwrap_err();
        assert_eq!(e.variable, "ADMIN_PASSWORD");
        let e = DatabaseArgs {
            database_url: bad().map(Secret::from),
        }
        .apply(&mut s)
        .unwrap_err();
        assert_eq!(e.variable, "DATABASE_URL");
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_file_never_the_command_line() {
        let s = web(|w| {
            w.admin_user = os("ops");
            w.admin_password = Some("  pw with spaces ".into());
        })
        .unwrap();
        assert_eq!(
            s.admin,
            Some(("ops".into(), "  pw with spaces ".into())),
            "a password is never trimmed"
        );

        let file = std::env::temp_dir().join(format!("sync-app-pw-{}", std::process::id()));
        std::fs::write(&file, "from file \n").unwrap();
        let with_file = |given: OnCommandLine<'_>, env_password: Option<&str>| {
            let w = WebArgs {
                admin_user: os("ops"),
                admin_password: env_password.map(Secret::from),
                admin_password_file: Some(file.clone().into()),
                ..WebArgs::default()
            };
            let mut s = Settings::default();
            w.apply(&mut s, given).map(|()| s.admin.unwrap().1)
        };
        assert_eq!(with_file(NONE_ON_COMMAND_LINE, None).unwrap(), "from file ");
        assert_eq!(
            with_file(&|id| id == "admin_password_file", Some("env")).unwrap(),
            "from file ",
            "the flag wins over ADMIN_PASSWORD"
        );
        assert_eq!(
            with_file(NONE_ON_COMMAND_LINE, Some("env")).unwrap_err().variable,
            "ADMIN_PASSWORD_FILE",
            "two variables: one too many"
        );
        let e = with_file(&|id| id == "admin_password", Some("pw")).unwrap_err();
        assert_eq!(e.variable, "ADMIN_PASSWORD");
        assert!(e.to_string().contains("--admin-password-file"), "{e}");
        std::fs::write(&file, "\n").unwrap();
        assert_eq!(
            with_file(NONE_ON_COMMAND_LINE, None).unwrap_err().variable,
            "ADMIN_PASSWORD_FILE"
        );
        std::fs::remove_file(&file).ok();
        let e = with_file(NONE_ON_COMMAND_LINE, None).unwrap_err();
        assert!(e.to_string().contains("cannot be read"), "{e}");

        let e = ErpArgs {
            mssql_access_token: Some("t".into()),
            ..ErpArgs::default()
        }
        .apply(&mut Settings::default(), &|id| id == "mssql_access_token")
        .unwrap_err();
        assert_eq!(e.variable, "MSSQL_ACCESS_TOKEN");
        let mut s = Settings::default();
        ErpArgs {
            mssql_access_token: Some("t".into()),
            mssql_access_token_file: Some("/run/token".into()),
            ..ErpArgs::default()
        }
        .apply(&mut s, &|id| id == "mssql_access_token_file")
        .unwrap();
        assert_eq!(
            (
                ErpArgs::lookup(&s, "MSSQL_ACCESS_TOKEN"),
                ErpArgs::lookup(&s, "MSSQL_ACCESS_TOKEN_FILE").as_deref()
            ),
            (None, Some("/run/token")),
            "the flag wins over the variable"
        );
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
        let s = settings(
            DatabaseArgs {
                database_url: Some("postgres://app:hunter2@db/app".into()),
            },
            ErpArgs {
                mssql_url: Some("server=tcp:erp,1433;user=ro;password=s3cr3t".into()),
                mssql_access_token: Some("eyJtoken".into()),
                ..ErpArgs::default()
            },
            WebArgs {
                admin_user: os("admin"),
                admin_password: Some("pa55word".into()),
                ..WebArgs::default()
            },
            ScheduleArgs::default(),
        )
        .unwrap();
        let shown = format!("{s:?}");
        for secret in ["hunter2", "s3cr3t", "pa55word", "eyJtoken"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("postgres://app:***@db/app") && shown.contains("admin"));
        let args = format!(
            "{:?}",
            WebArgs {
                admin_password: Some("pa55word".into()),
                ..WebArgs::default()
            }
        );
        assert!(!args.contains("pa55word"), "{args}");
    }
}
