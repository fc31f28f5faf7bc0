//! The source: the ERP's SQL Server, read with tiberius over TCP.
//!
//! [`ErpSource`] holds the parsed connection string; [`ErpSource::connect`] opens a
//! connection with a bounded TCP connect + handshake time (and follows one Azure-style
//! redirect); [`ErpConnection::stream_open_orders`] runs `SOURCE_QUERY` and yields
//! [`OpenOrder`]s one at a time as tiberius decodes them — never the whole result.

pub mod ado;
pub mod browser;
pub mod certificate;
mod connect;
pub mod mapping;

use std::fmt;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel, QueryItem};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::open_orders::OpenOrder;
pub use ado::{AdoSettings, Login, Timeouts};
pub use certificate::{ServerCertificate, fetch_server_certificate};
pub use mapping::{ColumnMap, RowError};

/// The documented default `SOURCE_QUERY`: the open-order view, columns by name.
pub const DEFAULT_SOURCE_QUERY: &str = "SELECT order_no, line_no, order_date, customer_code, customer_name, \
     item_code, item_description, qty_ordered, qty_shipped, qty_open, unit_price, line_amount, currency, \
     requested_date, promised_date, warehouse, status, rush, modified_at \
     FROM dbo.vw_OpenOrders ORDER BY order_no, line_no";

/// Everything that can go wrong reading the source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `MSSQL_URL` could not be used.
    #[error("MSSQL_URL is not a usable ADO connection string: {0}")]
    Config(String),
    /// Nothing answered, or not in time.
    #[error("could not reach SQL Server at {addr}: {reason}")]
    Unreachable {
        /// host:port tried.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The server's TLS certificate was not trusted.
    #[error("{}", certificate_message(.server, .reason, .hint, .expected_name, .certificate.as_deref()))]
    Certificate {
        /// host/database.
        server: String,
        /// What the TLS library said (the certificate's problem).
        reason: String,
        /// A further hint (HostNameInCertificate), or nothing; used when the certificate
        /// could not be fetched.
        hint: &'static str,
        /// The name the certificate was checked against (`HostNameInCertificate`, else the host).
        expected_name: String,
        /// The certificate the server presented, fetched over a second connection (`None`
        /// when that failed or Connect Timeout was used up).
        certificate: Option<Box<ServerCertificate>>,
    },
    /// The client's and the server's encryption settings do not meet.
    #[error("no encrypted connection to SQL Server {server}: {reason}")]
    Encryption {
        /// host/database.
        server: String,
        /// Why, and which keyword changes it.
        reason: String,
    },
    /// The TDS handshake or login failed.
    #[error("login to SQL Server {server} failed")]
    Login {
        /// host/database.
        server: String,
        /// What the server or the client said.
        #[source]
        source: tiberius::error::Error,
    },
    /// The query failed or the connection broke while reading.
    #[error("reading open orders failed")]
    Query(#[source] tiberius::error::Error),
    /// The server stopped answering in the middle of the query.
    #[error("SQL Server sent nothing for {0} s (Command Timeout); the query was abandoned")]
    Stalled(u64),
    /// The query spent longer than `Command Timeout` waiting for SQL Server, in all.
    #[error(
        "the query waited for SQL Server longer than {0} s in all (Command Timeout); the query was abandoned"
    )]
    CommandTimeout(u64),
    /// A row or the result's columns do not fit the open-order record.
    #[error("a row from SQL Server does not fit the open-order record")]
    Row(#[source] RowError),
}

/// A parsed `MSSQL_URL`.
#[derive(Clone)]
pub struct ErpSource {
    settings: AdoSettings,
    /// Everything but the port (which may come from SQL Server Browser) and the handshake
    /// timeout (what is left of Connect Timeout).
    config: Config,
    label: String,
    browser_port: u16,
}

impl fmt::Debug for ErpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keep to the label: no credentials.
        f.debug_struct("ErpSource")
            .field("server", &self.label)
            .field("timeouts", &self.settings.timeouts)
            .finish()
    }
}

/// Information about an open connection, for the log.
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    /// How long connect + login took.
    pub elapsed: Duration,
    /// The address finally connected to (after a redirect, the new one).
    pub addr: String,
    /// The encryption in force: `Encrypt` as given, except that `Encrypt=false` becomes
    /// `Plaintext` against a server without TLS and `Mandatory` against one that forces
    /// encryption (the PRELOGIN probe's answer).
    pub encryption: ado::Encrypt,
}

impl ErpSource {
    /// Parses an ADO.NET connection string (`Server=tcp:host,1433;Database=ERP;User ID=…;
    /// Password=…;Encrypt=true;Connect Timeout=15;Command Timeout=30`) with our own parser
    /// ([`ado::AdoSettings`]): every SqlClient keyword is honoured, accepted without effect
    /// (pool settings), or refused by name. A missing `Encrypt` means encryption is required.
    /// `MSSQL_ACCESS_TOKEN` / `MSSQL_ACCESS_TOKEN_FILE` are read from the environment.
    pub fn from_ado(ado: &str) -> Result<Self, SourceError> {
        Self::from_settings(AdoSettings::parse(ado).map_err(|e| SourceError::Config(e.to_string()))?)
    }

    /// [`from_ado`](Self::from_ado) with the access-token variables read through `env`.
    pub fn from_ado_with_env(ado: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, SourceError> {
        Self::from_settings(
            AdoSettings::parse_with_env(ado, env).map_err(|e| SourceError::Config(e.to_string()))?,
        )
    }

    /// Builds the source from parsed settings.
    pub fn from_settings(settings: AdoSettings) -> Result<Self, SourceError> {
        for keyword in &settings.without_effect {
            tracing::warn!(keyword = %keyword, "MSSQL_URL: this keyword has no effect in sync-app");
        }
        let config = tiberius_config(&settings);
        let server = &settings.server;
        let mut label = match (&server.instance, server.port) {
            (Some(instance), None) => format!("{}\\{instance}", server.host),
            (_, port) => server.host_port(port.unwrap_or(1433)),
        };
        label.push('/');
        label.push_str(settings.database.as_deref().unwrap_or("(default database)"));
        Ok(Self {
            settings,
            config,
            label,
            browser_port: browser::SQL_BROWSER_PORT,
        })
    }

    /// Asks SQL Server Browser on this UDP port instead of 1434 (for tests).
    #[doc(hidden)]
    pub fn with_sql_browser_port(mut self, port: u16) -> Self {
        self.browser_port = port;
        self
    }

    /// `host:port/database` (`host\INSTANCE/database` until SQL Server Browser answers), for the log.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> Timeouts {
        self.settings.timeouts
    }

    /// The parsed connection string.
    pub fn settings(&self) -> &AdoSettings {
        &self.settings
    }

    /// The tiberius configuration built from the settings (the port is set at connect
    /// time when it comes from SQL Server Browser).
    pub fn tiberius_config(&self) -> &Config {
        &self.config
    }

    /// Opens a connection, all of it within `Connect Timeout`: the host's addresses, the
    /// instance's port from SQL Server Browser, TCP (every address in parallel with
    /// `MultiSubnetFailover=True`, else one after the other), TLS and login. A server that
    /// redirects (Azure SQL's gateway, a read-only replica) is followed once.
    pub async fn connect(&self) -> Result<(ErpConnection, ConnectInfo), SourceError> {
        let started = Instant::now();
        let deadline = self.settings.timeouts.connect.map(|t| started + t);
        let server = &self.settings.server;
        let ips = connect::resolve(&server.host, self.settings.ip_preference, deadline).await?;
        let port = match (server.port, &server.instance) {
            (Some(port), _) => port,
            (None, None) => 1433,
            (None, Some(instance)) => {
                let browser_deadline =
                    deadline.unwrap_or_else(|| Instant::now() + ado::DEFAULT_CONNECT_TIMEOUT);
                browser::resolve(&ips, self.browser_port, instance, browser_deadline.into())
                    .await
                    .map_err(|e| {
                        let waited = browser_deadline.saturating_duration_since(started).as_secs();
                        SourceError::Unreachable {
                            addr: format!("{}\\{instance}", server.host),
                            reason: format!(
                                "SQL Server Browser at {} (UDP) did not give the port of instance {instance} \
                                 ({}); is the SQL Server Browser service running and UDP {} open? Or name the \
                                 port: Server={},PORT",
                                server.host_port(self.browser_port),
                                if e.kind() == std::io::ErrorKind::TimedOut {
                                    format!("no answer within {waited} s (Connect Timeout)")
                                } else {
                                    e.to_string()
                                },
                                self.browser_port,
                                server.host,
                            ),
                        }
                    })?
            }
        };
        let mut config = self.config.clone();
        config.port(port);
        let mut encryption = self.settings.encrypt;
        let mut in_force = encryption;
        if encryption == ado::Encrypt::Optional {
            // Encrypt=false: TLS for the login only — unless the server has none at all
            // (tiberius fails a client `Off` against a server that answers NOT_SUP), or forces
            // it for everything (then the certificate is checked, as SqlClient does).
            let tcp = connect::tcp(&ips, port, self.settings.multi_subnet_failover, deadline).await?;
            match connect::prelogin_encryption(tcp, deadline).await {
                Ok(connect::ENCRYPT_NOT_SUP) => {
                    tracing::warn!(
                        server = %self.label,
                        "the server offers no TLS at all (Encrypt=false): the login and the data travel in clear text"
                    );
                    config.encryption(EncryptionLevel::NotSupported);
                    encryption = ado::Encrypt::Plaintext;
                    in_force = encryption;
                }
                Ok(connect::ENCRYPT_REQ) => {
                    config = tiberius_config_with(&self.settings, ado::Encrypt::Mandatory);
                    config.port(port);
                    in_force = ado::Encrypt::Mandatory;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "PRELOGIN probe failed; connecting anyway"),
            }
        }
        let mut addr = server.host_port(port);
        let mut host = server.host.clone();
        let mut ips = ips;
        for attempt in 0..2 {
            let tcp = connect::tcp(
                &ips,
                config.get_addr_port(),
                self.settings.multi_subnet_failover,
                deadline,
            )
            .await?;
            config.handshake_timeout(deadline.map(|d| {
                d.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1))
            }));
            match Client::connect(config.clone(), tcp.compat_write()).await {
                Ok(client) => {
                    return Ok((
                        ErpConnection {
                            client,
                            command_timeout: self.settings.timeouts.command,
                        },
                        ConnectInfo {
                            elapsed: started.elapsed(),
                            addr,
                            encryption: in_force,
                        },
                    ));
                }
                Err(tiberius::error::Error::Routing { host: to, port }) if attempt == 0 => {
                    ips = connect::resolve(&to, self.settings.ip_preference, deadline).await?;
                    config.host(&to);
                    config.port(port);
                    addr = format!("{to}:{port}");
                    host = to;
                }
                Err(source) => {
                    let expected_name = self.settings.host_name_in_certificate.as_deref().unwrap_or(&host);
                    let mut error = self.connect_error(source, encryption, deadline, expected_name);
                    if let SourceError::Certificate { certificate, .. } = &mut error {
                        let strict = encryption == ado::Encrypt::Strict;
                        let port = config.get_addr_port();
                        *certificate = self
                            .fetch_certificate(&ips, port, expected_name, strict, deadline)
                            .await
                            .map(Box::new);
                    }
                    return Err(error);
                }
            }
        }
        Err(SourceError::Unreachable {
            addr,
            reason: "redirected more than once".into(),
        })
    }

    /// The certificate the server presents, fetched over a connection of its own within
    /// what is left of Connect Timeout (15 s when it has no limit); `None` if that fails.
    async fn fetch_certificate(
        &self,
        ips: &[std::net::IpAddr],
        port: u16,
        sni: &str,
        strict: bool,
        deadline: Option<Instant>,
    ) -> Option<ServerCertificate> {
        let deadline = deadline.unwrap_or_else(|| Instant::now() + ado::DEFAULT_CONNECT_TIMEOUT);
        let probe = async {
            let tcp = connect::tcp(ips, port, self.settings.multi_subnet_failover, Some(deadline))
                .await
                .map_err(|e| e.to_string())?;
            certificate::fetch_over(tcp, sni, strict)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout_at(deadline.into(), probe).await {
            Ok(Ok(certificate)) => Some(certificate),
            Ok(Err(error)) => {
                tracing::debug!(%error, "could not fetch the server's certificate for the error message");
                None
            }
            Err(_) => {
                tracing::debug!("no time left (Connect Timeout) to fetch the server's certificate");
                None
            }
        }
    }

    fn connect_error(
        &self,
        source: tiberius::error::Error,
        encryption: ado::Encrypt,
        deadline: Option<Instant>,
        expected_name: &str,
    ) -> SourceError {
        use tiberius::error::Error as E;
        let server = self.label.clone();
        match &source {
            E::Tls(msg) if msg.contains("certificate") => {
                let reason = msg
                    .split_once("rejected during the TLS handshake: ")
                    .map(|(_, r)| r.split(". To connect anyway").next().unwrap_or(r))
                    .unwrap_or(msg)
                    .trim_end_matches('.')
                    .to_string();
                let name_hint = if reason.contains("NotValidForName") || reason.contains("not valid for name")
                {
                    "; if the certificate is right but names another host, give that name with HostNameInCertificate=NAME"
                } else {
                    ""
                };
                SourceError::Certificate {
                    server,
                    reason,
                    hint: name_hint,
                    expected_name: expected_name.to_string(),
                    certificate: None,
                }
            }
            E::Protocol(msg) if msg.contains("does not allow the requested encryption level") => {
                SourceError::Encryption {
                    server,
                    reason: format!(
                        "the server has no TLS (its encryption is off) and Encrypt={} requires it; give the server a \
                     certificate, or (on a trusted network only) Encrypt=false",
                        match encryption {
                            ado::Encrypt::Strict => "strict",
                            _ => "true",
                        }
                    ),
                }
            }
            E::Io { kind, .. } if *kind == std::io::ErrorKind::TimedOut && deadline.is_some() => {
                SourceError::Unreachable {
                    addr: server,
                    reason: format!(
                        "connect, TLS and login took longer than {} s (Connect Timeout)",
                        self.settings.timeouts.connect.unwrap_or_default().as_secs()
                    ),
                }
            }
            _ if encryption == ado::Encrypt::Strict && !matches!(source, E::Server(_)) => {
                SourceError::Encryption {
                    server,
                    reason: format!(
                        "Encrypt=strict (TDS 8.0) failed: {source}; the server may not support TDS 8.0 (SQL Server 2022 or \
                     later); use Encrypt=true"
                    ),
                }
            }
            _ => SourceError::Login { server, source },
        }
    }
}

/// The text of [`SourceError::Certificate`]: what was presented (when known), why it was
/// not trusted, and the keywords that fix it.
fn certificate_message(
    server: &str,
    reason: &str,
    hint: &str,
    expected_name: &str,
    certificate: Option<&ServerCertificate>,
) -> String {
    const TRUST_ANYWAY: &str =
        "or skip the check with `TrustServerCertificate=true` (only on a network you trust)";
    let Some(cert) = certificate else {
        return format!(
            "the TLS certificate of SQL Server {server} was not trusted: {reason}. Trust exactly that certificate \
             with `Server Certificate=PATH` (its PEM or DER file), {TRUST_ANYWAY}{hint}"
        );
    };
    let trust = if cert.self_signed {
        "Trust exactly that certificate with `Server Certificate=PATH` (its PEM or DER file)".to_string()
    } else {
        format!(
            "Trust its issuer with `Server Certificate=PATH` (the PEM or DER file of the CA certificate {})",
            cert.issuer
        )
    };
    let names = if cert.is_valid_for(expected_name) {
        hint.to_string()
    } else if let Some(first) = cert.dns_names.first() {
        format!(
            "; it is not valid for {expected_name}, only for {}: if it is the right certificate, add \
             HostNameInCertificate={first}",
            cert.dns_names.join(", ")
        )
    } else {
        format!(
            "; it names no host (no subjectAltName), so no host name check passes: only \
             TrustServerCertificate=true connects to it, or give the server a certificate issued for {expected_name}"
        )
    };
    let reason = match reason {
        "UnknownIssuer" if cert.self_signed => {
            "it is self-signed, and not trusted here (UnknownIssuer)".to_string()
        }
        "UnknownIssuer" => "its issuer is not a CA trusted here (UnknownIssuer)".to_string(),
        other => other.to_string(),
    };
    format!(
        "the TLS certificate of SQL Server {server} ({cert}) was not trusted: {reason}. {trust}, {TRUST_ANYWAY}{names}"
    )
}

trait AddrPort {
    fn get_addr_port(&self) -> u16;
}

impl AddrPort for Config {
    fn get_addr_port(&self) -> u16 {
        self.get_addr()
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(1433)
    }
}

fn tiberius_config(settings: &AdoSettings) -> Config {
    tiberius_config_with(settings, settings.encrypt)
}

/// The tiberius `Config` for the settings, with the given `Encrypt`.
fn tiberius_config_with(settings: &AdoSettings, encrypt: ado::Encrypt) -> Config {
    let mut c = Config::new();
    c.host(&settings.server.host);
    if let Some(port) = settings.server.port {
        c.port(port);
    }
    if let Some(instance) = &settings.server.instance {
        c.instance_name(instance);
    }
    if let Some(db) = &settings.database {
        c.database(db);
    }
    c.authentication(match &settings.login {
        Login::Sql { user, password } => AuthMethod::sql_server(user, password),
        Login::AccessToken(token) => AuthMethod::aad_token(token),
        #[cfg(feature = "kerberos")]
        Login::Integrated => AuthMethod::Integrated,
    });
    let checked = match encrypt {
        ado::Encrypt::Mandatory => {
            c.encryption(EncryptionLevel::Required);
            true
        }
        ado::Encrypt::Strict => {
            c.encryption(EncryptionLevel::Strict);
            true
        }
        ado::Encrypt::Optional => {
            c.encryption(EncryptionLevel::Off);
            // SqlClient does not check the certificate of a login-only TLS, unless asked to.
            settings.server_certificate.is_some() || settings.host_name_in_certificate.is_some()
        }
        ado::Encrypt::Plaintext => {
            c.encryption(EncryptionLevel::NotSupported);
            false
        }
    };
    if settings.trust_server_certificate || !checked {
        c.trust_cert();
    } else if let Some(path) = &settings.server_certificate {
        c.trust_cert_ca(path.display());
    }
    if let Some(name) = &settings.host_name_in_certificate {
        c.hostname_in_certificate(name);
    }
    c.application_name(&settings.application_name);
    if let Some(size) = settings.packet_size {
        c.packet_size(size.min(32_767));
    }
    if let Some(wsid) = &settings.workstation_id {
        c.client_name(wsid);
    }
    c.readonly(settings.read_only);
    c.multi_subnet_failover(settings.multi_subnet_failover);
    c.handshake_timeout(settings.timeouts.connect);
    c.command_timeout(settings.timeouts.command);
    c
}

/// An open connection to the ERP.
#[derive(Debug)]
pub struct ErpConnection {
    client: Client<Compat<TcpStream>>,
    /// `Command Timeout`: the whole query's waiting time (`None`: no limit).
    command_timeout: Option<Duration>,
}

impl ErpConnection {
    /// The tiberius client, for statements other than the open-orders query
    /// (`sync-app check` asks for `@@VERSION`, the login and the database).
    pub fn client_mut(&mut self) -> &mut Client<Compat<TcpStream>> {
        &mut self.client
    }

    /// `Command Timeout` (`None`: no limit).
    pub fn command_timeout(&self) -> Option<Duration> {
        self.command_timeout
    }

    /// Runs `query` and yields its rows as open orders, decoded one by one. The stream
    /// ends after the last row or at the first error (a bad row ends it too).
    ///
    /// First the server is asked for the collations of the result's columns
    /// ([`DESCRIBE_COLLATIONS_SQL`], within its own Command Timeout), so that `varchar` in a
    /// `_UTF8` collation is decoded exactly ([`ColumnMap::with_collation_names`]); when the
    /// server cannot tell (before SQL Server 2012, no permission, a query it cannot describe)
    /// that is logged at debug level and such text is recognised by its shape instead. A
    /// server that goes silent or drops the connection there ends the stream with that error.
    pub fn stream_open_orders<'a>(
        &'a mut self,
        query: &'a str,
    ) -> impl Stream<Item = Result<OpenOrder, SourceError>> + Send + 'a {
        async_stream(self, query)
    }

    /// Runs `query` on a task of its own — tiberius decodes and maps rows on one core
    /// while the caller writes them on another — and yields the rows through a small
    /// bounded channel (batches of 1,024 rows, at most 4 in flight), so memory stays
    /// constant. The connection is closed when the rows end, after an error, or when the
    /// returned stream is dropped.
    pub fn spawn_open_orders(
        mut self,
        query: String,
    ) -> impl Stream<Item = Result<OpenOrder, SourceError>> + Send + 'static {
        const BATCH: usize = 1_024;
        enum Chunk {
            Rows(Vec<Result<OpenOrder, SourceError>>),
            End,
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(4);
        let reader = tokio::spawn(async move {
            {
                let mut rows = std::pin::pin!(self.stream_open_orders(&query));
                let mut batch = Vec::with_capacity(BATCH);
                while let Some(item) = rows.next().await {
                    let failed = item.is_err();
                    batch.push(item);
                    if batch.len() == BATCH || failed {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        if tx.send(Chunk::Rows(full)).await.is_err() {
                            return; // the consumer is gone
                        }
                    }
                    if failed {
                        break;
                    }
                }
                if !batch.is_empty() && tx.send(Chunk::Rows(batch)).await.is_err() {
                    return;
                }
            }
            self.close().await;
            let _ = tx.send(Chunk::End).await;
        });
        // The reader is aborted when the stream is dropped (a cancelled sync), and a reader
        // that ends without its End marker (it panicked) is an error, never a short result.
        struct Abort(tokio::task::JoinHandle<()>);
        impl Drop for Abort {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let state = (rx, Abort(reader), false);
        futures::stream::unfold(state, |(mut rx, reader, ended)| async move {
            if ended {
                return None;
            }
            match rx.recv().await {
                Some(Chunk::Rows(rows)) => Some((rows, (rx, reader, false))),
                Some(Chunk::End) => None,
                None => {
                    let e = SourceError::Query(tiberius::error::Error::Protocol(
                        "the task reading from SQL Server stopped unexpectedly".into(),
                    ));
                    Some((vec![Err(e)], (rx, reader, true)))
                }
            }
        })
        .flat_map(futures::stream::iter)
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

fn async_stream<'a>(
    conn: &'a mut ErpConnection,
    query: &'a str,
) -> impl Stream<Item = Result<OpenOrder, SourceError>> + Send + 'a {
    // One State per stream, moved once per row: its size does not matter.
    #[allow(clippy::large_enum_variant)]
    enum State<'a> {
        Start(&'a mut ErpConnection, &'a str),
        Reading {
            items: tiberius::QueryStream<'a>,
            map: Option<ColumnMap>,
            row: u64,
            budget: Option<Duration>,
        },
        Done,
    }
    let limit = conn.command_timeout;
    let secs = limit.map_or(0, |t| t.as_secs());
    // tiberius's own command timeout (the same value) catches one stalled response;
    // the budget is ADO.NET's count: all the time spent waiting for the server during the
    // query, summed. Time the caller spends between rows is not counted.
    let query_error = move |e: tiberius::error::Error| match &e {
        tiberius::error::Error::Io {
            kind: std::io::ErrorKind::TimedOut,
            ..
        } => SourceError::Stalled(secs),
        _ => SourceError::Query(e),
    };
    // On an exhausted budget: `Stalled` when that one wait took (nearly) the whole limit —
    // the server went silent, and tiberius's own timer would have said the same a moment
    // later — else `CommandTimeout` (a slow trickle).
    async fn within<T>(
        budget: &mut Option<Duration>,
        limit: Option<Duration>,
        secs: u64,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, SourceError> {
        match *budget {
            None => Ok(fut.await),
            Some(left) => {
                let started = Instant::now();
                let Ok(out) = tokio::time::timeout(left, fut).await else {
                    let silent = limit.is_some_and(|l| left.as_secs_f64() >= l.as_secs_f64() * 0.9);
                    return Err(if silent {
                        SourceError::Stalled(secs)
                    } else {
                        SourceError::CommandTimeout(secs)
                    });
                };
                *budget = Some(left.saturating_sub(started.elapsed()));
                Ok(out)
            }
        }
    }
    futures::stream::unfold(State::Start(conn, query), move |state| async move {
        let (mut items, mut map, mut row, mut budget, collations) = match state {
            State::Done => return None,
            State::Start(conn, query) => {
                // The collations of the result's columns, asked for first (a command of its
                // own, with a Command Timeout of its own). A server that cannot tell leaves
                // the text columns to the recognition by shape; one that went silent or
                // broke the connection ends the sync, as the query itself would.
                let mut describe_budget = limit;
                let collations = match within(
                    &mut describe_budget,
                    limit,
                    secs,
                    describe_collations(&mut conn.client, query),
                )
                .await
                {
                    Err(e) => return Some((Err(e), State::Done)),
                    Ok(Ok(collations)) => Some(collations),
                    Ok(Err(e @ tiberius::error::Error::Io { .. })) => {
                        return Some((Err(query_error(e)), State::Done));
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(
                            %error,
                            "the server did not describe SOURCE_QUERY's result (sys.dm_exec_describe_first_result_set); \
                             varchar columns in _UTF8 collations are recognised by shape"
                        );
                        None
                    }
                };
                let mut budget = limit;
                match within(&mut budget, limit, secs, conn.client.simple_query(query)).await {
                    Err(e) => return Some((Err(e), State::Done)),
                    Ok(Ok(items)) => (items, None, 0, budget, collations),
                    Ok(Err(e)) => return Some((Err(query_error(e)), State::Done)),
                }
            }
            State::Reading {
                items,
                map,
                row,
                budget,
            } => (items, map, row, budget, None),
        };
        // The map for the first result's columns, with their collations when known.
        let resolve = |columns: &[tiberius::Column]| {
            ColumnMap::resolve(columns).map(|m| match &collations {
                None => m,
                Some(collations) => {
                    let m =
                        m.with_collation_names(collations.iter().map(|(n, c)| (n.as_str(), c.as_deref())));
                    let (known, text) = m.known_collations();
                    tracing::debug!(
                        known,
                        text,
                        "collations of SOURCE_QUERY's text columns from the server"
                    );
                    m
                }
            })
        };
        loop {
            let next = match within(&mut budget, limit, secs, items.next()).await {
                Ok(next) => next,
                Err(e) => return Some((Err(e), State::Done)),
            };
            match next {
                None if map.is_none() => {
                    // Not even column metadata: the query returned no result set at all
                    // (a procedure branch without SELECT, only SET statements…). An empty
                    // result has columns; this is not an empty table.
                    let e = RowError {
                        row: None,
                        order: None,
                        column: "order_no",
                        problem: "is missing: SOURCE_QUERY returned no result set".into(),
                    };
                    return Some((Err(SourceError::Row(e)), State::Done));
                }
                None => return None,
                Some(Err(e)) => return Some((Err(query_error(e)), State::Done)),
                Some(Ok(QueryItem::Metadata(meta))) => {
                    if meta.result_index() > 0 {
                        // Only the first result set is the open orders.
                        continue;
                    }
                    match resolve(meta.columns()) {
                        Ok(m) => map = Some(m),
                        Err(e) => return Some((Err(SourceError::Row(e)), State::Done)),
                    }
                }
                Some(Ok(QueryItem::Row(r))) => {
                    if r.result_index() > 0 {
                        continue;
                    }
                    let result = match &map {
                        Some(m) => m.map(&r, row).map_err(SourceError::Row),
                        None => match resolve(r.columns()) {
                            Ok(m) => {
                                let out = m.map(&r, row).map_err(SourceError::Row);
                                map = Some(m);
                                out
                            }
                            Err(e) => Err(SourceError::Row(e)),
                        },
                    };
                    row += 1;
                    return match result {
                        Ok(order) => Some((
                            Ok(order),
                            State::Reading {
                                items,
                                map,
                                row,
                                budget,
                            },
                        )),
                        Err(e) => Some((Err(e), State::Done)),
                    };
                }
            }
        }
    })
}

/// The statement asking the server for the collations of a query's first result set.
pub const DESCRIBE_COLLATIONS_SQL: &str =
    "SELECT name, collation_name FROM sys.dm_exec_describe_first_result_set(@P1, NULL, 0)";

/// `(column name, collation name)` of each named column of `query`'s first result set, from
/// `sys.dm_exec_describe_first_result_set` (SQL Server 2012 and later); the collation is
/// `None` for a column that is not text. The whole answer is read, so the connection is ready
/// for the next statement.
async fn describe_collations(
    client: &mut Client<Compat<TcpStream>>,
    query: &str,
) -> Result<Vec<(String, Option<String>)>, tiberius::error::Error> {
    let rows = client
        .query(DESCRIBE_COLLATIONS_SQL, &[&query])
        .await?
        .into_first_result()
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(name) = row.try_get::<&str, _>(0)? else {
            continue; // an unnamed column, or a row reporting an error
        };
        let collation = row.try_get::<&str, _>(1)?.map(str::to_owned);
        out.push((name.to_owned(), collation));
    }
    Ok(out)
}
