//! The listener: binds, accepts, runs a session per connection (and the SQL Browser).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, error, warn};

use crate::config::{Encryption, ServerConfig};
use crate::handler::Handler;
use crate::tls::Identity;
use crate::{Error, browser, session};

/// Counters shared by the server and all its connections.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) logins: AtomicU64,
    pub(crate) queries: AtomicU64,
    pub(crate) rows_sent: AtomicU64,
}

/// Live counters of a server; clones share the same counters.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub(crate) inner: Arc<Counters>,
}

impl Stats {
    /// TCP connections accepted.
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Successful logins.
    pub fn logins(&self) -> u64 {
        self.inner.logins.load(Ordering::Relaxed)
    }

    /// Statements given to the handler (answered, failed or stalled).
    pub fn queries(&self) -> u64 {
        self.inner.queries.load(Ordering::Relaxed)
    }

    /// Rows of handler results written to clients.
    pub fn rows_sent(&self) -> u64 {
        self.inner.rows_sent.load(Ordering::Relaxed)
    }
}

/// State shared by the accept loop and the connections.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) strict_tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) handler: Box<dyn Handler>,
    pub(crate) stats: Stats,
}

/// A server bound to its TCP port (and, for a named instance, its SQL Browser UDP port),
/// not yet accepting connections.
pub struct Server {
    listener: TcpListener,
    browser: Option<UdpSocket>,
    local_addr: SocketAddr,
    identity: Option<Identity>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the listener (port 0 for any free port), and generates a self-signed
    /// certificate unless encryption is off or one is configured.
    pub async fn bind(
        addr: SocketAddr,
        config: ServerConfig,
        handler: impl Handler,
    ) -> Result<Server, Error> {
        let identity = match (&config.identity, config.encryption) {
            (_, Encryption::Off) => None,
            (Some(identity), _) => Some(identity.clone()),
            (None, _) => Some(Identity::self_signed(&config.cert_names)?),
        };
        let (tls, strict_tls) = match &identity {
            Some(identity) => (
                Some(identity.server_config(false)?),
                Some(identity.server_config(true)?),
            ),
            None => (None, None),
        };
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let browser = match (&config.instance, config.browser_listen) {
            (Some(_), Some(browser_addr)) => Some(UdpSocket::bind(browser_addr).await?),
            _ => None,
        };
        debug!(%local_addr, encryption = %config.encryption, "fake-mssql bound");
        Ok(Server {
            listener,
            browser,
            local_addr,
            identity,
            shared: Arc::new(Shared {
                config,
                tls,
                strict_tls,
                handler: Box::new(handler),
                stats: Stats::default(),
            }),
        })
    }

    /// The TCP address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The UDP address of its SQL Browser, for a named instance.
    pub fn browser_addr(&self) -> Option<SocketAddr> {
        self.browser.as_ref().and_then(|b| b.local_addr().ok())
    }

    /// The certificate the server presents (PEM), unless encryption is off.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.identity.as_ref().map(Identity::cert_pem)
    }

    /// An ADO.NET connection string tiberius connects with (see [`ServerHandle::ado_string`]).
    pub fn ado_string(&self) -> String {
        ado_string(self.local_addr, &self.shared.config)
    }

    /// The server's counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats.clone()
    }

    /// The configuration being served.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// Accepts connections until the future is dropped (which also closes every connection
    /// it accepted). Returns only if accepting keeps failing.
    pub async fn run(self) -> io::Result<()> {
        let browser = match (self.browser, &self.shared.config.instance) {
            (Some(socket), Some(instance)) => {
                let reply = browser::InstanceReply {
                    server: self.shared.config.server_name.clone(),
                    instance: instance.clone(),
                    port: self.local_addr.port(),
                };
                Some(AbortOnDrop(tokio::spawn(browser::serve(socket, reply))))
            }
            _ => None,
        };
        let _browser = browser;
        let mut connections = JoinSet::new();
        let mut next_id = 0u64;
        let mut consecutive_errors = 0u32;
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        consecutive_errors = 0;
                        next_id += 1;
                        self.shared.stats.inner.connections.fetch_add(1, Ordering::Relaxed);
                        connections.spawn(session::serve(stream, peer, self.shared.clone(), next_id));
                    }
                    Err(e) => {
                        consecutive_errors += 1;
                        if consecutive_errors >= 1000 {
                            error!(error = %e, "fake-mssql gives up accepting connections");
                            return Err(e);
                        }
                        warn!(error = %e, "fake-mssql could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                Some(finished) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(e) = finished
                        && e.is_panic()
                    {
                        error!(error = %e, "fake-mssql connection task panicked");
                    }
                }
            }
        }
    }

    /// Runs [`run`](Self::run) on a new tokio task. The server stops when the returned
    /// handle is dropped or shut down.
    pub fn spawn(self) -> ServerHandle {
        let mut handle = ServerHandle {
            local_addr: self.local_addr,
            browser_addr: self.browser_addr(),
            cert_pem: self.certificate_pem().map(str::to_owned),
            ado: self.ado_string(),
            stats: self.stats(),
            config: self.shared.config.clone(),
            task: None,
        };
        handle.task = Some(tokio::spawn(self.run()));
        handle
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A server running on a tokio task; dropping the handle stops it and closes its connections.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    browser_addr: Option<SocketAddr>,
    cert_pem: Option<String>,
    ado: String,
    stats: Stats,
    config: ServerConfig,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl ServerHandle {
    /// The TCP address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The UDP address of its SQL Browser, for a named instance.
    pub fn browser_addr(&self) -> Option<SocketAddr> {
        self.browser_addr
    }

    /// The certificate the server presents (PEM), unless encryption is off.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.cert_pem.as_deref()
    }

    /// An ADO.NET connection string tiberius connects with: `Encrypt=true` and
    /// `TrustServerCertificate=true` (or `encrypt=DANGER_PLAINTEXT` when encryption is
    /// off), the configured login and database.
    pub fn ado_string(&self) -> String {
        self.ado.clone()
    }

    /// The server's counters.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// The configuration being served.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Stops accepting, closes all connections and waits until the server task has ended.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Quotes an ADO.NET value if it needs it.
fn ado_value(v: &str) -> String {
    if v.contains([';', '\'', '"', '=']) || v.trim() != v {
        format!("'{}'", v.replace('\'', "''"))
    } else {
        v.to_owned()
    }
}

pub(crate) fn ado_string(addr: SocketAddr, config: &ServerConfig) -> String {
    let host = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) if ip.is_unspecified() => format!("[{}]", Ipv6Addr::LOCALHOST),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let encrypt = match config.encryption {
        Encryption::Off => "DANGER_PLAINTEXT",
        Encryption::Optional | Encryption::Required => "true",
        Encryption::Strict => "strict",
    };
    format!(
        "Server=tcp:{host},{};Database={};User ID={};Password={};Encrypt={encrypt};TrustServerCertificate=true",
        addr.port(),
        ado_value(&config.database),
        ado_value(&config.user),
        ado_value(&config.password),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ado_string_uses_a_connectable_host_and_quotes_values() {
        let config = ServerConfig::default().login("a", "p;w'd");
        let s = ado_string("0.0.0.0:1433".parse().unwrap(), &config);
        assert!(s.starts_with("Server=tcp:127.0.0.1,1433;"), "{s}");
        assert!(s.contains("Password='p;w''d'"), "{s}");
        let parsed = tiberius::Config::from_ado_string(&s).unwrap();
        assert_eq!(parsed.get_addr(), "127.0.0.1:1433");
    }
}
