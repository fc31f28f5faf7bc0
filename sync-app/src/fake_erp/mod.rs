//! A fake ERP: a TCP server speaking enough TDS (the SQL Server wire protocol) for tiberius.
//!
//! It answers a plaintext TDS 7.4 handshake (no TLS: clients must connect with
//! `encrypt=DANGER_PLAINTEXT`), accepts any login, and serves the open-orders view
//! `dbo.vw_OpenOrders` (any SQL text containing `openorders`) from a deterministic generator,
//! streaming rows with constant memory however many are asked for. `SELECT 1` works as a
//! health check; anything else fails with error 208 like SQL Server. SQL batches
//! ([`simple_query`]) and RPC requests (`sp_executesql`, i.e. [`query`] with parameters) are
//! both understood.
//!
//! Faults can be injected with [`Failure`] to exercise the sync's error handling, and the
//! demo's `evolve` mode makes every open-orders query after the first see a later
//! "generation" of the data (see [`order_lines`]).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sync_app::fake_erp::{FakeErp, FakeErpConfig};
//!
//! let erp = FakeErp::bind("127.0.0.1:0".parse().unwrap(), FakeErpConfig::default()).await?;
//! let handle = erp.spawn();
//! println!("connect with {}", handle.ado_string());
//! # Ok(()) }
//! ```
//!
//! [`simple_query`]: tiberius::Client::simple_query
//! [`query`]: tiberius::Client::query

mod data;
mod failure;
mod orders;
mod session;
mod tds;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, error, warn};

pub use data::{
    CUSTOMER_COUNT, GENERATION_INTERVAL_SECS, ITEM_COUNT, OPEN_ORDERS_COLUMNS, OPEN_ORDERS_SQL, OrderLine,
    OrderLines, VIEW_NAME, data_epoch, generation_time, order_line, order_lines,
};
pub use failure::{Failure, ParseFailureError};

/// What the fake ERP serves and how it misbehaves.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl Default for FakeErpConfig {
    fn default() -> Self {
        FakeErpConfig {
            orders: 1000,
            seed: 42,
            fail: None,
            evolve: false,
        }
    }
}

/// Counters shared by the server and all its connections.
#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    logins: AtomicU64,
    queries: AtomicU64,
    rows_sent: AtomicU64,
}

/// Live counters of a fake ERP; clones share the same counters.
#[derive(Debug, Clone, Default)]
pub struct FakeErpStats {
    inner: Arc<Counters>,
}

impl FakeErpStats {
    /// TCP connections accepted.
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Successful logins.
    pub fn logins(&self) -> u64 {
        self.inner.logins.load(Ordering::Relaxed)
    }

    /// Open-orders queries received (served, failed or stalled).
    pub fn queries(&self) -> u64 {
        self.inner.queries.load(Ordering::Relaxed)
    }

    /// Open-orders rows written to clients.
    pub fn rows_sent(&self) -> u64 {
        self.inner.rows_sent.load(Ordering::Relaxed)
    }
}

/// State shared by the accept loop and the connections.
#[derive(Debug)]
struct Shared {
    config: FakeErpConfig,
    stats: FakeErpStats,
}

/// A fake ERP bound to a TCP port, not yet accepting connections.
#[derive(Debug)]
pub struct FakeErp {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeErp {
    /// Binds the listener (use port 0 for any free port).
    pub async fn bind(addr: SocketAddr, config: FakeErpConfig) -> io::Result<FakeErp> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        debug!(%local_addr, ?config, "fake ERP bound");
        Ok(FakeErp {
            listener,
            local_addr,
            shared: Arc::new(Shared {
                config,
                stats: FakeErpStats::default(),
            }),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// An ADO.NET connection string tiberius can connect with
    /// (`server=tcp:127.0.0.1,PORT;database=erp;user id=sync;password=sync;encrypt=DANGER_PLAINTEXT;...`).
    pub fn ado_string(&self) -> String {
        ado_string(self.local_addr)
    }

    /// The server's counters.
    pub fn stats(&self) -> FakeErpStats {
        self.shared.stats.clone()
    }

    /// The configuration being served.
    pub fn config(&self) -> &FakeErpConfig {
        &self.shared.config
    }

    /// Accepts connections forever, serving each on its own task. Dropping the future (or
    /// aborting its task) also closes all connections it accepted. Returns only if accepting
    /// keeps failing.
    pub async fn run(self) -> io::Result<()> {
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
                            error!(error = %e, "fake ERP gives up accepting connections");
                            return Err(e);
                        }
                        warn!(error = %e, "fake ERP could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                Some(finished) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(e) = finished
                        && e.is_panic()
                    {
                        error!(error = %e, "fake ERP connection task panicked");
                    }
                }
            }
        }
    }

    /// Runs [`run`](Self::run) on a new tokio task (must be called within a tokio runtime).
    /// The server stops when the returned handle is dropped or shut down.
    pub fn spawn(self) -> FakeErpHandle {
        let local_addr = self.local_addr;
        let stats = self.stats();
        let config = self.shared.config.clone();
        let task = tokio::spawn(self.run());
        FakeErpHandle {
            local_addr,
            stats,
            config,
            task,
        }
    }
}

/// A fake ERP running on a tokio task; dropping the handle stops it and closes its connections.
#[derive(Debug)]
pub struct FakeErpHandle {
    local_addr: SocketAddr,
    stats: FakeErpStats,
    config: FakeErpConfig,
    task: JoinHandle<io::Result<()>>,
}

impl FakeErpHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// An ADO.NET connection string tiberius can connect with (see [`FakeErp::ado_string`]).
    pub fn ado_string(&self) -> String {
        ado_string(self.local_addr)
    }

    /// The server's counters.
    pub fn stats(&self) -> FakeErpStats {
        self.stats.clone()
    }

    /// The configuration being served.
    pub fn config(&self) -> &FakeErpConfig {
        &self.config
    }

    /// Stops accepting, closes all connections and waits until the server task has ended.
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for FakeErpHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ado_string(addr: SocketAddr) -> String {
    let host = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) if ip.is_unspecified() => format!("[{}]", Ipv6Addr::LOCALHOST),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    format!(
        "server=tcp:{host},{};database=erp;user id=sync;password=sync;encrypt=DANGER_PLAINTEXT;\
         TrustServerCertificate=true",
        addr.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ado_string_uses_a_connectable_host() {
        let s = ado_string("0.0.0.0:1433".parse().unwrap());
        assert!(s.starts_with("server=tcp:127.0.0.1,1433;"), "{s}");
        assert!(s.contains("encrypt=DANGER_PLAINTEXT"));
        let config = tiberius::Config::from_ado_string(&s).unwrap();
        assert_eq!(config.get_addr(), "127.0.0.1:1433");
    }
}
