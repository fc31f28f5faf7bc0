//! A fake Microsoft SQL Server for tests: it speaks the TDS wire protocol as SQL Server does
//! (PRELOGIN, TLS inside PRELOGIN or TDS 8.0 strict TLS, LOGIN7 with SQL logins, Entra ID
//! tokens and Windows logins over NTLM, SQL batches, `sp_executesql` RPCs, transactions, ATTENTION, SQL Server Browser) and
//! answers your tables' queries through a [`Handler`] you implement. Result sets stream in
//! constant memory, however large.
//!
//! Clients cannot tell it from SQL Server for what they ask: session statements (`SET …`,
//! `USE`, `BEGIN TRAN` / `COMMIT` / `ROLLBACK`, `SELECT @@VERSION`, `@@SPID`, `DB_NAME()`,
//! `SERVERPROPERTY('…')`, `SELECT 1`) are answered by the server itself; everything else goes
//! to the handler, which returns rows, a row count or an error (by default error 208,
//! "Invalid object name", as SQL Server would).
//!
//! Testing tiberius code against it:
//!
//! ```
//! use fake_mssql::{Column, Reply, ResultSet, Server, ServerConfig, SqlType, Value};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let handler = |q: &fake_mssql::Query<'_>| match q.sql {
//!     "SELECT name FROM customers" => Reply::Rows(ResultSet::from_values(
//!         vec![Column::new("name", SqlType::NVarChar { len: Some(50) })],
//!         vec![vec![Value::String("Müller GmbH".into())]],
//!     )),
//!     other => Reply::Error(fake_mssql::SqlError::invalid_object(other)),
//! };
//! let server = Server::bind("127.0.0.1:0".parse()?, ServerConfig::default(), handler).await?.spawn();
//!
//! let config = tiberius::Config::from_ado_string(&server.ado_string())?; // TLS, login sync/sync
//! let tcp = tokio::net::TcpStream::connect(server.local_addr()).await?;
//! use tokio_util::compat::TokioAsyncWriteCompatExt;
//! let mut client = tiberius::Client::connect(config, tcp.compat_write()).await?;
//! let row = client.simple_query("SELECT name FROM customers").await?.into_row().await?.unwrap();
//! assert_eq!(row.get::<&str, _>(0), Some("Müller GmbH"));
//! # Ok(()) }
//! ```
//!
//! Logins: one SQL login ([`ServerConfig::login`], default `sync` / `sync`), optionally an Entra
//! ID access token ([`ServerConfig::access_token`]) and a Windows login
//! ([`ServerConfig::windows_login`], `DOMAIN\user`): integrated security with NTLM in SSPI
//! tokens (MS-TDS 3.2.5.1), the client's NTLMv2 response verified by the server itself, as a
//! domain controller would for SQL Server. tiberius reaches it with its `sspi-rs` feature
//! (`Integrated Security=SSPI;User ID=DOMAIN\user;Password=…`). Raw NTLM only: Kerberos and
//! SPNEGO-wrapped tokens are refused (error 18452).
//!
//! Faults ([`Fault`]) make it refuse logins, abort TLS, fail, drop or stall mid-result.
//!
//! # Features
//!
//! - `windows-auth` (default): Windows logins ([`ServerConfig::windows_login`]). It adds the
//!   small `md4` and `md-5` hash crates; without it every integrated-security login is refused
//!   with error 18452, as by a SQL Server that does not trust the client's domain.

mod browser;
mod config;
mod handler;
#[cfg(feature = "windows-auth")]
mod ntlm;
mod server;
mod session;
mod statements;
mod tls;
mod transport;
mod types;
mod wire;

pub use config::{Encryption, Fault, ModeSpec, ParseFaultError, ServerConfig};
pub use handler::{Handler, Param, Query, Reply, ResultSet, RowSource, SessionInfo, SqlError, TlsState};
pub use server::{Server, ServerHandle, Stats};
pub use tls::{CertificateError, Identity};
pub use types::{Collation, Column, RowEncoder, RowWriter, SqlType, TdsVersion, Value};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Binding a socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The certificate could not be made or used.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
}

impl From<rustls::Error> for Error {
    fn from(e: rustls::Error) -> Self {
        Error::Certificate(CertificateError::Rustls(e))
    }
}
