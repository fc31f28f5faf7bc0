//! The source: the ERP's SQL Server, read with tiberius over TCP.
//!
//! [`ErpSource`] holds the parsed connection string; [`ErpSource::connect`] opens a
//! connection with a bounded TCP connect + handshake time (and follows one Azure-style
//! redirect); [`ErpConnection::stream_open_orders`] runs `SOURCE_QUERY` and yields
//! [`OpenOrder`]s one at a time as tiberius decodes them — never the whole result.

pub mod ado;
pub mod mapping;

use std::fmt;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use tiberius::{Client, Config, QueryItem};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::open_orders::OpenOrder;
pub use ado::Timeouts;
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
    /// A row or the result's columns do not fit the open-order record.
    #[error("a row from SQL Server does not fit the open-order record")]
    Row(#[source] RowError),
}

/// A parsed `MSSQL_URL`.
#[derive(Clone)]
pub struct ErpSource {
    config: Config,
    timeouts: Timeouts,
    label: String,
}

impl fmt::Debug for ErpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tiberius's Config Debug redacts the password; keep to the label anyway.
        f.debug_struct("ErpSource")
            .field("server", &self.label)
            .field("timeouts", &self.timeouts)
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
}

impl ErpSource {
    /// Parses an ADO.NET connection string (`server=tcp:host,1433;database=ERP;user id=…;
    /// password=…;encrypt=true;TrustServerCertificate=false;Connect Timeout=15;Command
    /// Timeout=30`). A missing `encrypt` means encryption is required.
    pub fn from_ado(ado: &str) -> Result<Self, SourceError> {
        let mut config = Config::from_ado_string(ado).map_err(|e| SourceError::Config(e.to_string()))?;
        let timeouts = ado::timeouts(ado).map_err(SourceError::Config)?;
        config.handshake_timeout(Some(timeouts.connect));
        config.command_timeout(Some(timeouts.command));
        config.application_name("sync-app");
        let database = ado::pairs(ado)
            .into_iter()
            .find(|(k, _)| k == "database" || k == "initial catalog")
            .map(|(_, v)| v)
            .unwrap_or_else(|| "master".into());
        let label = format!("{}/{}", config.get_addr(), database);
        Ok(Self {
            config,
            timeouts,
            label,
        })
    }

    /// `host:port/database`, for the log (no credentials).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Opens a connection: TCP within the connect timeout, then the TDS handshake and
    /// login (tiberius bounds that with the same timeout). A server that redirects
    /// (Azure SQL's gateway) is followed once.
    pub async fn connect(&self) -> Result<(ErpConnection, ConnectInfo), SourceError> {
        let started = Instant::now();
        let mut config = self.config.clone();
        let mut addr = config.get_addr();
        for attempt in 0..2 {
            let tcp = tcp_connect(&addr, self.timeouts.connect).await?;
            match Client::connect(config.clone(), tcp.compat_write()).await {
                Ok(client) => {
                    return Ok((
                        ErpConnection {
                            client,
                            command_timeout: self.timeouts.command,
                        },
                        ConnectInfo {
                            elapsed: started.elapsed(),
                            addr,
                        },
                    ));
                }
                Err(tiberius::error::Error::Routing { host, port }) if attempt == 0 => {
                    config.host(&host);
                    config.port(port);
                    addr = format!("{host}:{port}");
                }
                Err(source) => {
                    return Err(SourceError::Login {
                        server: self.label.clone(),
                        source,
                    });
                }
            }
        }
        Err(SourceError::Unreachable {
            addr,
            reason: "redirected more than once".into(),
        })
    }
}

async fn tcp_connect(addr: &str, timeout: Duration) -> Result<TcpStream, SourceError> {
    let unreachable = |reason: String| SourceError::Unreachable {
        addr: addr.to_string(),
        reason,
    };
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(unreachable(format!(
            "no answer within {} s (Connect Timeout)",
            timeout.as_secs()
        ))),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Ok(Ok(tcp)) => {
            tcp.set_nodelay(true).map_err(|e| unreachable(e.to_string()))?;
            Ok(tcp)
        }
    }
}

/// An open connection to the ERP.
#[derive(Debug)]
pub struct ErpConnection {
    client: Client<Compat<TcpStream>>,
    command_timeout: Duration,
}

impl ErpConnection {
    /// Runs `query` and yields its rows as open orders, decoded one by one. The stream
    /// ends after the last row or at the first error (a bad row ends it too).
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
        },
        Done,
    }
    let timeout = conn.command_timeout.as_secs();
    let query_error = move |e: tiberius::error::Error| match &e {
        tiberius::error::Error::Io {
            kind: std::io::ErrorKind::TimedOut,
            ..
        } => SourceError::Stalled(timeout),
        _ => SourceError::Query(e),
    };
    futures::stream::unfold(State::Start(conn, query), move |state| async move {
        let (mut items, mut map, mut row) = match state {
            State::Done => return None,
            State::Start(conn, query) => match conn.client.simple_query(query).await {
                Ok(items) => (items, None, 0),
                Err(e) => return Some((Err(query_error(e)), State::Done)),
            },
            State::Reading { items, map, row } => (items, map, row),
        };
        loop {
            match items.next().await {
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
                    match ColumnMap::resolve(meta.columns()) {
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
                        None => match ColumnMap::resolve(r.columns()) {
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
                        Ok(order) => Some((Ok(order), State::Reading { items, map, row })),
                        Err(e) => Some((Err(e), State::Done)),
                    };
                }
            }
        }
    })
}
