//! The fake ERP: the open-orders view `dbo.vw_OpenOrders` of an ERP, served by
//! [`fake_mssql`] — a fake SQL Server with TLS, logins and a SQL Server Browser — so the sync
//! can be tested, benchmarked and demonstrated without a real one.
//!
//! Any SQL text containing `openorders` is answered with the view's rows, generated on the
//! fly from a deterministic generator ([`order_lines`]) and streamed in constant memory
//! however many are asked for — the columns its select list names (by name, qualified or
//! bracketed, with aliases, or `*`; an unknown name is error 207); the server itself answers session statements (`SET`,
//! `SELECT 1`, `SELECT @@VERSION`, …); anything else fails with error 208 as SQL Server
//! would. The view comes in two [`Schema`]s holding the same values.
//!
//! A statement naming `dm_exec_describe_first_result_set` is answered as SQL Server does for
//! a query on the view passed as its `@P1` (or first) parameter: one row per column of that
//! query's result, `name` and `collation_name` (`Latin1_General_100_CI_AS_SC_UTF8` for the
//! classic schema's `_UTF8` varchar, `SQL_Latin1_General_CP1_CI_AS` for its other `char` /
//! `varchar` and for `nchar` / `nvarchar`, NULL for the rest). It is not an open-orders query:
//! it does not advance `evolve`'s generation, and [`FakeErpStats`] leaves it out of its
//! counts. Under the `drop-after` / `stall-after` faults, which the fake SQL Server applies
//! to every result set, it fails instead (as on a server that cannot describe), so that the
//! fault still hits the open-orders rows.
//!
//! Faults can be injected with [`Failure`] to exercise the sync's error handling, and the
//! demo's `evolve` mode makes every open-orders query after the first see a later
//! "generation" of the data.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use sync_app::fake_erp::{FakeErp, FakeErpConfig};
//!
//! let erp = FakeErp::bind("127.0.0.1:0".parse().unwrap(), FakeErpConfig::default()).await?;
//! let handle = erp.spawn();
//! println!("connect with {}", handle.ado_string());
//! # Ok(()) }
//! ```

mod data;
mod failure;
mod orders;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fake_mssql::{
    Column, Encryption, Identity, Query, Reply, ResultSet, Server, ServerConfig, ServerHandle, SqlError,
    SqlType, Value,
};
use tracing::debug;

pub use data::{
    CUSTOMER_COUNT, GENERATION_INTERVAL_SECS, ITEM_COUNT, OPEN_ORDERS_COLUMNS, OPEN_ORDERS_SQL, OrderLine,
    OrderLines, VIEW_NAME, data_epoch, generation_time, order_line, order_lines,
};
pub use failure::{Failure, ParseFailureError};
pub use orders::Schema;

use data::LineSpecs;
use failure::Quirks;

/// What the fake ERP serves, how its SQL Server is set up, and how it misbehaves.
#[derive(Clone)]
pub struct FakeErpConfig {
    /// Number of open order lines (rows) in generation 0.
    pub orders: u64,
    /// Seed of the deterministic data generator.
    pub seed: u64,
    /// Fault to inject, if any.
    pub fail: Option<Failure>,
    /// Demo mode: every open-orders query after the first advances the data by one generation
    /// (new orders, more shipped, finished lines gone). Without it every query returns the
    /// same rows.
    pub evolve: bool,
    /// The SQL types the view uses.
    pub schema: Schema,
    /// The SQL Server's encryption setting (default `optional`, as SQL Server's).
    pub encryption: Encryption,
    /// Its certificate (default: a self-signed one for `localhost`, `127.0.0.1` and the host name).
    pub identity: Option<Identity>,
    /// Extra names for the self-signed certificate.
    pub cert_names: Vec<String>,
    /// The SQL login (default `sync` / `sync`).
    pub user: String,
    /// Its password.
    pub password: String,
    /// The ERP's database (default `erp`).
    pub database: String,
    /// An Entra ID access token the server also accepts.
    pub access_token: Option<String>,
    /// A Windows account (`DOMAIN\user`, password) the server also accepts over NTLM.
    pub windows_login: Option<(String, String)>,
    /// Serve as this named instance, announced by a SQL Server Browser on the address.
    pub instance: Option<(String, SocketAddr)>,
}

/// Passwords and tokens are not shown.
impl std::fmt::Debug for FakeErpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |o: bool| if o { "<not shown>" } else { "-" };
        f.debug_struct("FakeErpConfig")
            .field("orders", &self.orders)
            .field("seed", &self.seed)
            .field("fail", &self.fail)
            .field("evolve", &self.evolve)
            .field("schema", &self.schema)
            .field("encryption", &self.encryption)
            .field("identity", &self.identity)
            .field("cert_names", &self.cert_names)
            .field("user", &self.user)
            .field("password", &"<not shown>")
            .field("database", &self.database)
            .field("access_token", &hidden(self.access_token.is_some()))
            .field("windows_user", &self.windows_login.as_ref().map(|(u, _)| u))
            .field("instance", &self.instance)
            .finish()
    }
}

/// 1,000 orders, seed 42, the modern schema; the server's side as fake-mssql's defaults
/// (optional encryption, `sync` / `sync`, database `erp`).
impl Default for FakeErpConfig {
    fn default() -> Self {
        let server = ServerConfig::default();
        FakeErpConfig {
            orders: 1000,
            seed: 42,
            fail: None,
            evolve: false,
            schema: Schema::Modern,
            encryption: server.get_encryption(),
            user: server.get_user().to_owned(),
            password: server.get_password().to_owned(),
            database: server.get_database().to_owned(),
            identity: None,
            cert_names: Vec::new(),
            access_token: None,
            windows_login: None,
            instance: None,
        }
    }
}

impl FakeErpConfig {
    fn server_config(&self) -> ServerConfig {
        let mut config = ServerConfig::default()
            .encryption(self.encryption)
            .login(&self.user, &self.password)
            .database(&self.database)
            .server_name("ERP01")
            .fault(self.fail.and_then(Failure::server_fault));
        if let Some(identity) = &self.identity {
            config = config.identity(identity.clone());
        }
        for name in &self.cert_names {
            config = config.cert_name(name);
        }
        if let Some(token) = &self.access_token {
            config = config.access_token(token);
        }
        if let Some((user, password)) = &self.windows_login {
            config = config.windows_login(user, password);
        }
        if let Some((name, addr)) = &self.instance {
            config = config.instance(name, *addr);
        }
        config
    }
}

/// Live counters of a fake ERP; clones share the same counters.
#[derive(Debug, Clone)]
pub struct FakeErpStats {
    server: fake_mssql::Stats,
    describes: Arc<Describes>,
}

/// The `dm_exec_describe_first_result_set` statements answered and their rows, which the
/// server counts as queries and rows but [`FakeErpStats`] does not.
#[derive(Debug, Default)]
struct Describes {
    statements: AtomicU64,
    rows: AtomicU64,
}

impl FakeErpStats {
    /// TCP connections accepted.
    pub fn connections(&self) -> u64 {
        self.server.connections()
    }

    /// Successful logins.
    pub fn logins(&self) -> u64 {
        self.server.logins()
    }

    /// Queries that reached the ERP (not session statements like `SELECT 1`, nor the
    /// `dm_exec_describe_first_result_set` the sync asks first).
    pub fn queries(&self) -> u64 {
        let describes = self.describes.statements.load(Ordering::Relaxed);
        self.server.queries().saturating_sub(describes)
    }

    /// Open-orders rows written to clients.
    pub fn rows_sent(&self) -> u64 {
        let describes = self.describes.rows.load(Ordering::Relaxed);
        self.server.rows_sent().saturating_sub(describes)
    }
}

/// Answers the open-orders view.
#[derive(Debug)]
struct OpenOrdersView {
    config: FakeErpConfig,
    /// Open-orders queries answered so far (the generation in `evolve` mode).
    served: AtomicU64,
    /// Describe statements answered (shared with the stats).
    describes: Arc<Describes>,
}

impl OpenOrdersView {
    /// Answers `SELECT name, collation_name FROM sys.dm_exec_describe_first_result_set(@P1, …)`
    /// for a query on the view (see the module documentation).
    fn describe(&self, query: &Query<'_>) -> Reply {
        let config = &self.config;
        self.describes.statements.fetch_add(1, Ordering::Relaxed);
        if matches!(
            config.fail,
            Some(
                Failure::Server(fake_mssql::Fault::DropAfter(_))
                    | Failure::Server(fake_mssql::Fault::StallAfter(_))
            )
        ) {
            // The server's fault would hit this result set, not the open orders.
            return Reply::Error(SqlError::new(
                229,
                14,
                "The SELECT permission was denied on the object 'dm_exec_describe_first_result_set', \
                 database 'mssqlsystemresource', schema 'sys'.",
            ));
        }
        let described = match query
            .param("P1")
            .or_else(|| query.params.first().map(|p| &p.value))
        {
            Some(Value::String(sql)) => sql.as_str(),
            _ => {
                return Reply::Error(SqlError::new(
                    201,
                    16,
                    "Procedure or function 'sys.dm_exec_describe_first_result_set' expects parameter \
                     '@tsql', which was not supplied.",
                ));
            }
        };
        if !described.to_ascii_lowercase().contains("openorders") {
            return Reply::Error(SqlError::invalid_object(described));
        }
        let all = orders::columns(config.schema, Quirks::for_failure(config.fail));
        let projection = match orders::projection(described, &all) {
            Ok(p) => p,
            Err(e) => return Reply::Error(e),
        };
        let rows: Vec<Vec<Value>> = projection
            .columns(&all)
            .into_iter()
            .map(|c| {
                let collation = match c.ty {
                    SqlType::Char { collation, .. } | SqlType::VarChar { collation, .. } => {
                        Some(collation_name(collation))
                    }
                    SqlType::NChar { .. } | SqlType::NVarChar { .. } => Some(CP1252_COLLATION),
                    _ => None,
                };
                vec![
                    Value::String(c.name.into_owned()),
                    collation.map_or(Value::Null, |n| Value::String(n.into())),
                ]
            })
            .collect();
        debug!(columns = rows.len(), "described the open-orders query");
        self.describes
            .rows
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        let name = SqlType::NVarChar { len: Some(128) };
        Reply::Rows(ResultSet::from_values(
            vec![
                Column::new("name", name).nullable(),
                Column::new("collation_name", name).nullable(),
            ],
            rows,
        ))
    }
}

const CP1252_COLLATION: &str = "SQL_Latin1_General_CP1_CI_AS";

/// The name of a fake SQL Server collation.
fn collation_name(collation: fake_mssql::Collation) -> &'static str {
    match collation {
        fake_mssql::Collation::Utf8 => "Latin1_General_100_CI_AS_SC_UTF8",
        _ => CP1252_COLLATION,
    }
}

impl fake_mssql::Handler for OpenOrdersView {
    fn execute(&self, query: &Query<'_>) -> Reply {
        let lower = query.sql.to_ascii_lowercase();
        if lower.contains("dm_exec_describe_first_result_set") {
            return self.describe(query);
        }
        if !lower.contains("openorders") {
            debug!(sql = %query.sql, "unknown statement");
            return Reply::Error(SqlError::invalid_object(query.sql));
        }
        let config = &self.config;
        let served_before = self.served.fetch_add(1, Ordering::Relaxed);
        if config.fail == Some(Failure::Sql) {
            return Reply::Error(SqlError::new(
                50_000,
                16,
                format!("The view {VIEW_NAME} is being rebuilt"),
            ));
        }
        let generation = if config.evolve { served_before } else { 0 };
        debug!(generation, schema = %config.schema, "open-orders query");
        let quirks = Quirks::for_failure(config.fail);
        let all = orders::columns(config.schema, quirks);
        let projection = match orders::projection(query.sql, &all) {
            Ok(p) => p,
            Err(e) => return Reply::Error(e),
        };
        Reply::Rows(ResultSet::new(
            projection.columns(&all),
            orders::OrderRows {
                lines: LineSpecs::new(config.seed, generation, config.orders),
                schema: config.schema,
                quirks,
                projection,
                index: 0,
            },
        ))
    }
}

/// A fake ERP bound to its port, not yet accepting connections.
#[derive(Debug)]
pub struct FakeErp {
    server: Server,
    config: FakeErpConfig,
    describes: Arc<Describes>,
}

impl FakeErp {
    /// Binds the listener (use port 0 for any free port).
    pub async fn bind(addr: SocketAddr, config: FakeErpConfig) -> Result<FakeErp, fake_mssql::Error> {
        let describes = Arc::new(Describes::default());
        let view = OpenOrdersView {
            config: config.clone(),
            served: AtomicU64::new(0),
            describes: describes.clone(),
        };
        let server = Server::bind(addr, config.server_config(), view).await?;
        debug!(local_addr = %server.local_addr(), ?config, "fake ERP bound");
        Ok(FakeErp {
            server,
            config,
            describes,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The SQL Browser's UDP address, for a named instance.
    pub fn browser_addr(&self) -> Option<SocketAddr> {
        self.server.browser_addr()
    }

    /// The certificate the server presents (PEM), unless encryption is off.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.server.certificate_pem()
    }

    /// An ADO.NET connection string tiberius can connect with
    /// (`Server=tcp:127.0.0.1,PORT;Database=erp;User ID=sync;Password=sync;Encrypt=true;TrustServerCertificate=true`).
    pub fn ado_string(&self) -> String {
        self.server.ado_string()
    }

    /// The server's counters.
    pub fn stats(&self) -> FakeErpStats {
        FakeErpStats {
            server: self.server.stats(),
            describes: self.describes.clone(),
        }
    }

    /// The configuration being served.
    pub fn config(&self) -> &FakeErpConfig {
        &self.config
    }

    /// Accepts connections until the future is dropped (which closes all its connections).
    pub async fn run(self) -> std::io::Result<()> {
        self.server.run().await
    }

    /// Runs the server on a new tokio task; it stops when the handle is dropped.
    pub fn spawn(self) -> FakeErpHandle {
        FakeErpHandle {
            server: self.server.spawn(),
            config: self.config,
            describes: self.describes,
        }
    }
}

/// A fake ERP running on a tokio task; dropping the handle stops it and closes its connections.
#[derive(Debug)]
pub struct FakeErpHandle {
    server: ServerHandle,
    config: FakeErpConfig,
    describes: Arc<Describes>,
}

impl FakeErpHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The SQL Browser's UDP address, for a named instance.
    pub fn browser_addr(&self) -> Option<SocketAddr> {
        self.server.browser_addr()
    }

    /// The certificate the server presents (PEM), unless encryption is off.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.server.certificate_pem()
    }

    /// An ADO.NET connection string tiberius can connect with (see [`FakeErp::ado_string`]).
    pub fn ado_string(&self) -> String {
        self.server.ado_string()
    }

    /// The server's counters.
    pub fn stats(&self) -> FakeErpStats {
        FakeErpStats {
            server: self.server.stats(),
            describes: self.describes.clone(),
        }
    }

    /// The configuration being served.
    pub fn config(&self) -> &FakeErpConfig {
        &self.config
    }

    /// Stops accepting, closes all connections and waits until the server task has ended.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_does_not_show_secrets() {
        let config = FakeErpConfig {
            password: "S3cretPw".into(),
            access_token: Some("TOKEN-SECRET".into()),
            windows_login: Some((r"CORP\bob".into(), "WinSecret1".into())),
            ..FakeErpConfig::default()
        };
        let shown = format!("{config:?}");
        for secret in ["S3cretPw", "TOKEN-SECRET", "WinSecret1"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains(r"CORP\\bob"), "{shown}");
    }
}
