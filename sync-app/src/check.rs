//! `sync-app check`: the preflight to run before anything else. It connects to the ERP's
//! SQL Server exactly as a sync does ([`ErpSource::connect`]), reports what it found — the
//! server's version, the TLS in force and whether the certificate was verified, the login
//! and the database — then runs `SOURCE_QUERY` for its first [`SAMPLE_ROWS`] rows and judges
//! every column with the sync's own conversions ([`mapping::check_columns`]) and every
//! sample row with the sync's own mapping ([`ColumnMap::map`]).
//!
//! Nothing is written anywhere: the local database is not even opened.
//!
//! [`run`] returns a [`CheckReport`]; its `Display` is what the command prints, and
//! [`CheckReport::ok`] decides the exit code (0: a sync would work, 1: it would not).

use std::fmt;
use std::time::Duration;

use futures::TryStreamExt;
use tiberius::QueryItem;

use crate::erp::ado::{Encrypt, Login};
use crate::erp::mapping::{self, ResultCheck};
use crate::erp::{
    ColumnMap, ErpConnection, ErpSource, RowError, ServerCertificate, fetch_server_certificate,
};

/// Rows of `SOURCE_QUERY` the check reads.
pub const SAMPLE_ROWS: usize = 5;

/// The encryption of the connection, as SQL Server's clients name the cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS at all: the password and the data travel in clear text.
    None,
    /// TLS for the login packet only (`Encrypt=false` against a server that does not force
    /// encryption), the data in clear text.
    LoginOnly,
    /// TLS for everything after PRELOGIN (`Encrypt=true`, or a server that forces it).
    Full,
    /// TDS 8.0: TLS from the first byte, ALPN `tds/8.0` (`Encrypt=strict`).
    Strict,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::None => "none",
            TlsMode::LoginOnly => "login only",
            TlsMode::Full => "full",
            TlsMode::Strict => "strict",
        })
    }
}

/// What became of the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateCheck {
    /// There was no TLS, hence no certificate.
    NoTls,
    /// Accepted without any check: a login-only TLS (as SqlClient does), or
    /// `TrustServerCertificate=true`; the string says which.
    NotVerified(String),
    /// Verified: chained to `against` and issued for `name`.
    Verified {
        /// The trust anchor: `Server Certificate=PATH`, or the system's trust store.
        against: String,
        /// The host name it had to be issued for.
        name: String,
    },
}

/// The TLS of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsState {
    /// None / login only / full / strict.
    pub mode: TlsMode,
    /// Why this mode: the `Encrypt` given and, for `Encrypt=false`, the server's answer.
    pub reason: String,
    /// The certificate's fate.
    pub certificate: CertificateCheck,
}

/// What the connection told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFacts {
    /// The address connected to (after a redirect, the new one).
    pub addr: String,
    /// How long connect, TLS and login took.
    pub elapsed: Duration,
    /// First line of `SELECT @@VERSION` (`None` with the reason when it could not be read).
    pub version: Result<String, String>,
    /// The TLS in force.
    pub tls: TlsState,
    /// The certificate the server presents, fetched by a probe of its own (no TLS: `None`;
    /// the probe failed: the reason).
    pub certificate: Option<Result<ServerCertificate, String>>,
    /// The login as the server names it (`SUSER_SNAME()`), else as configured.
    pub login: String,
    /// `SQL login` or `access token (…)`.
    pub login_kind: &'static str,
    /// The database the session is in (`DB_NAME()`), else as configured.
    pub database: Option<String>,
}

/// One sample row through the sync's mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRow {
    /// 0-based index in the result.
    pub index: usize,
    /// `(order_no, line_no)` when the row mapped.
    pub order: Option<(i64, i32)>,
    /// Why it does not map.
    pub error: Option<RowError>,
}

/// Everything `sync-app check` found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// `host:port/database` as the log names it.
    pub server: String,
    /// The connection's facts, or why there is no connection (the whole cause chain).
    pub connection: Result<ConnectionFacts, String>,
    /// Connection-string keywords accepted without effect.
    pub without_effect: Vec<String>,
    /// The query run.
    pub query: String,
    /// Whether it is the default query (`SOURCE_QUERY` not set).
    pub default_query: bool,
    /// Why the query failed, if it did.
    pub query_error: Option<String>,
    /// The result's columns judged against the record (`None`: no result to judge).
    pub columns: Option<ResultCheck>,
    /// The sample rows through the mapping.
    pub rows: Vec<SampleRow>,
}

impl CheckReport {
    /// Whether a sync would work: connected, the query ran, every field has a column, no
    /// column or sample row was refused.
    pub fn ok(&self) -> bool {
        self.connection.is_ok()
            && self.query_error.is_none()
            && self.columns.as_ref().is_some_and(ResultCheck::ok)
            && self.rows.iter().all(|r| r.error.is_none())
    }

    /// What stops a sync, one line each (empty when [`ok`](Self::ok)).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = &self.connection {
            out.push(format!("cannot connect: {e}"));
            return out;
        }
        if let Some(e) = &self.query_error {
            out.push(format!("SOURCE_QUERY failed: {e}"));
        }
        let mut refused = Vec::new();
        if let Some(columns) = &self.columns {
            for c in &columns.columns {
                if let (Some(refusal), Some(field)) = (&c.refusal, c.field) {
                    refused.push(field);
                    let into = if field.eq_ignore_ascii_case(&c.column) {
                        String::new()
                    } else {
                        format!(" (field `{field}`)")
                    };
                    let at = c.row.map(|r| format!(" in row {}", r + 1)).unwrap_or_default();
                    out.push(format!("column `{}`{into}{at} {refusal}", c.column));
                }
            }
            for field in &columns.missing {
                out.push(format!("no column provides the required field `{field}`"));
            }
        }
        // A row refused for a column already named above adds nothing.
        for r in &self.rows {
            if let Some(e) = r.error.as_ref().filter(|e| !refused.contains(&e.column)) {
                out.push(e.to_string());
            }
        }
        out
    }
}

/// Runs the check: connects, reads the facts, runs `query` for [`SAMPLE_ROWS`] rows.
pub async fn run(source: &ErpSource, query: &str, default_query: bool) -> CheckReport {
    let mut report = CheckReport {
        server: source.label().to_owned(),
        connection: Err(String::new()),
        without_effect: source.settings().without_effect.clone(),
        query: query.to_owned(),
        default_query,
        query_error: None,
        columns: None,
        rows: Vec::new(),
    };
    let (mut conn, info) = match source.connect().await {
        Ok(c) => c,
        Err(e) => {
            report.connection = Err(chain(&e));
            return report;
        }
    };
    let settings = source.settings();
    let limit = settings.timeouts.command;
    let version = within(limit, scalars(&mut conn, "SELECT @@VERSION"))
        .await
        .and_then(|v| {
            v.into_iter()
                .next()
                .flatten()
                .map(|v| v.lines().next().unwrap_or_default().trim().to_owned())
                .ok_or_else(|| "@@VERSION returned nothing".to_owned())
        });
    let who = within(limit, scalars(&mut conn, "SELECT SUSER_SNAME(), DB_NAME()"))
        .await
        .unwrap_or_default();
    let (login_kind, configured_login) = match &settings.login {
        Login::Sql { user, .. } => ("SQL login", user.clone()),
        Login::AccessToken(_) => (
            "Entra ID access token from MSSQL_ACCESS_TOKEN / MSSQL_ACCESS_TOKEN_FILE",
            "(access token)".to_owned(),
        ),
        #[cfg(feature = "kerberos")]
        Login::Integrated => (
            "Windows login with the current Kerberos ticket",
            "(Kerberos)".to_owned(),
        ),
    };
    let tls = tls_state(source, info.encryption);
    let certificate = match tls.mode {
        TlsMode::None => None,
        mode => Some(
            fetch_server_certificate(&info.addr, mode == TlsMode::Strict, Duration::from_secs(10))
                .await
                .map_err(|e| e.to_string()),
        ),
    };
    report.connection = Ok(ConnectionFacts {
        addr: info.addr.clone(),
        elapsed: info.elapsed,
        version,
        tls,
        certificate,
        login: who.first().cloned().flatten().unwrap_or(configured_login),
        login_kind,
        database: who
            .get(1)
            .cloned()
            .flatten()
            .or_else(|| settings.database.clone()),
    });

    match within(limit, sample(&mut conn, query)).await {
        Err(e) => report.query_error = Some(e),
        Ok((columns, rows)) => {
            report.columns = Some(mapping::check_columns(&columns, &rows));
            // The rows through the sync's own mapping (when the columns resolve at all).
            if let Ok(map) = ColumnMap::resolve(&columns) {
                report.rows = rows
                    .iter()
                    .enumerate()
                    .map(|(index, row)| match map.map(row, index as u64) {
                        Ok(o) => SampleRow {
                            index,
                            order: Some((o.order_no, o.line_no)),
                            error: None,
                        },
                        Err(e) => SampleRow {
                            index,
                            order: None,
                            error: Some(e),
                        },
                    })
                    .collect();
            }
        }
    }
    // The rest of a large result is abandoned with the connection.
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close()).await;
    report
}

/// The error and its causes, `: `-joined.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

async fn within<T>(
    limit: Option<Duration>,
    fut: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match limit {
        None => fut.await,
        Some(limit) => tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
            Err(format!(
                "SQL Server did not answer within {} s (Command Timeout)",
                limit.as_secs()
            ))
        }),
    }
}

/// The first row of a statement, each column as text (`None`: NULL or not text).
async fn scalars(conn: &mut ErpConnection, sql: &str) -> Result<Vec<Option<String>>, String> {
    let stream = conn.client_mut().simple_query(sql).await.map_err(|e| chain(&e))?;
    let row = stream.into_row().await.map_err(|e| chain(&e))?;
    Ok(match row {
        None => Vec::new(),
        Some(row) => (0..row.len())
            .map(|i| row.try_get::<&str, _>(i).ok().flatten().map(str::to_owned))
            .collect(),
    })
}

/// The first result's columns and up to [`SAMPLE_ROWS`] of its rows.
async fn sample(
    conn: &mut ErpConnection,
    query: &str,
) -> Result<(Vec<tiberius::Column>, Vec<tiberius::Row>), String> {
    let mut stream = conn
        .client_mut()
        .simple_query(query)
        .await
        .map_err(|e| chain(&e))?;
    let mut columns = None;
    let mut rows = Vec::new();
    while let Some(item) = stream.try_next().await.map_err(|e| chain(&e))? {
        match item {
            QueryItem::Metadata(meta) if meta.result_index() == 0 => {
                columns = Some(meta.columns().to_vec());
            }
            QueryItem::Row(row) if row.result_index() == 0 => {
                if columns.is_none() {
                    columns = Some(row.columns().to_vec());
                }
                rows.push(row);
                if rows.len() == SAMPLE_ROWS {
                    break;
                }
            }
            _ => {}
        }
    }
    match columns {
        Some(columns) => Ok((columns, rows)),
        None => Err("it returned no result set (SOURCE_QUERY must be a SELECT)".to_owned()),
    }
}

/// The TLS in force, from the settings and what the connection settled on.
fn tls_state(source: &ErpSource, in_force: Encrypt) -> TlsState {
    let s = source.settings();
    let given = match s.encrypt {
        Encrypt::Mandatory => "Encrypt=true",
        Encrypt::Optional => "Encrypt=false",
        Encrypt::Strict => "Encrypt=strict",
        Encrypt::Plaintext => "Encrypt=DANGER_PLAINTEXT",
    };
    let (mode, reason) = match (s.encrypt, in_force) {
        (Encrypt::Plaintext, _) => (
            TlsMode::None,
            format!("{given}: the password and the data travel in clear text"),
        ),
        (_, Encrypt::Plaintext) => (
            TlsMode::None,
            format!("{given} and the server offers no TLS: the password and the data travel in clear text"),
        ),
        (Encrypt::Optional, Encrypt::Mandatory) => (
            TlsMode::Full,
            format!("{given}, but the server forces encryption: TLS for the login and all data"),
        ),
        (_, Encrypt::Optional) => (
            TlsMode::LoginOnly,
            format!("{given}: TLS for the login packet only, the data in clear text"),
        ),
        (_, Encrypt::Strict) => (
            TlsMode::Strict,
            format!("{given}: TDS 8.0, TLS from the first byte (ALPN tds/8.0)"),
        ),
        (_, Encrypt::Mandatory) => (TlsMode::Full, format!("{given}: TLS for the login and all data")),
    };
    let checked = match mode {
        TlsMode::None => None,
        TlsMode::LoginOnly => Some(s.server_certificate.is_some() || s.host_name_in_certificate.is_some()),
        TlsMode::Full | TlsMode::Strict => Some(true),
    };
    let certificate = match checked {
        None => CertificateCheck::NoTls,
        Some(_) if s.trust_server_certificate => {
            CertificateCheck::NotVerified("TrustServerCertificate=true accepts any certificate".into())
        }
        Some(false) => CertificateCheck::NotVerified(
            "a login-only TLS is not checked (as SqlClient); give Server Certificate=PATH or Encrypt=true to check it"
                .into(),
        ),
        Some(true) => CertificateCheck::Verified {
            against: match &s.server_certificate {
                Some(path) => format!("Server Certificate={}", path.display()),
                None => "the system's trust store".into(),
            },
            name: s
                .host_name_in_certificate
                .clone()
                .unwrap_or_else(|| s.server.host.clone()),
        },
    };
    TlsState {
        mode,
        reason,
        certificate,
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "sync-app check: SQL Server {}", self.server)?;
        writeln!(f)?;
        let facts = match &self.connection {
            Err(e) => {
                writeln!(f, "  connect      FAILED: {e}")?;
                writeln!(f)?;
                return writeln!(f, "NOT OK: a sync would fail (cannot connect).");
            }
            Ok(facts) => facts,
        };
        writeln!(
            f,
            "  connect      ok, {} in {}",
            facts.addr,
            joblog::format::duration(facts.elapsed)
        )?;
        match &facts.version {
            Ok(v) => writeln!(f, "  server       {v}")?,
            Err(e) => writeln!(f, "  server       version unknown ({e})")?,
        }
        writeln!(f, "  TLS          {} ({})", facts.tls.mode, facts.tls.reason)?;
        match &facts.tls.certificate {
            CertificateCheck::NoTls => writeln!(f, "  certificate  none (no TLS)")?,
            CertificateCheck::NotVerified(why) => writeln!(f, "  certificate  not verified: {why}")?,
            CertificateCheck::Verified { against, name } => {
                writeln!(f, "  certificate  verified against {against}, issued for {name}")?
            }
        }
        match &facts.certificate {
            None => {}
            Some(Ok(cert)) => writeln!(f, "               {cert}")?,
            Some(Err(e)) => writeln!(
                f,
                "               (could not fetch the certificate to describe it: {e})"
            )?,
        }
        writeln!(f, "  login        {} ({})", facts.login, facts.login_kind)?;
        writeln!(
            f,
            "  database     {}",
            facts.database.as_deref().unwrap_or("(the login's default)")
        )?;
        if !self.without_effect.is_empty() {
            writeln!(
                f,
                "  no effect    {} (accepted, changes nothing)",
                self.without_effect.join(", ")
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "SOURCE_QUERY{}: {}",
            if self.default_query { " (default)" } else { "" },
            self.query
        )?;
        if let Some(e) = &self.query_error {
            writeln!(f, "  FAILED: {e}")?;
        }
        if let Some(result) = &self.columns {
            let w_col = result
                .columns
                .iter()
                .map(|c| c.column.chars().count())
                .chain([6])
                .max()
                .unwrap_or(6);
            let w_ty = result
                .columns
                .iter()
                .map(|c| c.sql_type.len())
                .chain([8])
                .max()
                .unwrap_or(8);
            let w_field = 16;
            writeln!(
                f,
                "  {:w_col$}  {:w_ty$}  {:w_field$}  verdict",
                "column", "SQL type", "field"
            )?;
            for c in &result.columns {
                let verdict = match (&c.field, &c.refusal, c.row) {
                    (None, _, _) => "not used (no field of the record takes it)".to_owned(),
                    (Some(_), None, _) => "ok".to_owned(),
                    (Some(_), Some(r), None) => format!("REFUSED: {r}"),
                    (Some(_), Some(r), Some(row)) => format!("REFUSED (row {}): {r}", row + 1),
                };
                writeln!(
                    f,
                    "  {:w_col$}  {:w_ty$}  {:w_field$}  {verdict}",
                    c.column,
                    c.sql_type,
                    c.field.unwrap_or("-")
                )?;
            }
            if result.missing.is_empty() {
                writeln!(f, "  required fields without a column: none")?;
            } else {
                writeln!(
                    f,
                    "  required fields without a column: {} (MISSING: select them by these names)",
                    result.missing.join(", ")
                )?;
            }
            if !result.absent.is_empty() {
                writeln!(
                    f,
                    "  optional fields without a column: {} (stored as NULL)",
                    result.absent.join(", ")
                )?;
            }
            writeln!(f)?;
            if result.missing.is_empty() {
                let good = self.rows.iter().filter(|r| r.error.is_none()).count();
                writeln!(
                    f,
                    "First {} row(s) through the mapping: {good} ok{}",
                    self.rows.len(),
                    if self.rows.is_empty() {
                        " (the query returned no rows)"
                    } else {
                        ""
                    }
                )?;
                for r in &self.rows {
                    match (&r.order, &r.error) {
                        (Some((order, line)), _) => {
                            writeln!(f, "  row {}  order {order} line {line}: ok", r.index + 1)?
                        }
                        (None, Some(e)) => writeln!(f, "  row {}  REFUSED: {e}", r.index + 1)?,
                        (None, None) => {}
                    }
                }
            } else {
                writeln!(f, "The rows were not mapped: required columns are missing.")?;
            }
        }
        writeln!(f)?;
        if self.ok() {
            writeln!(f, "OK: a sync would work.")
        } else {
            writeln!(f, "NOT OK: a sync would fail:")?;
            for p in self.problems() {
                writeln!(f, "  - {p}")?;
            }
            Ok(())
        }
    }
}
