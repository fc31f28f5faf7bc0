//! One client connection: handshake, then requests until the client leaves.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{Instrument, debug, warn};

use super::Shared;
use super::data::{LineSpecs, VIEW_NAME, catalog};
use super::failure::Failure;
use super::orders::{self, Quirks};
use super::tds::{self, ColType, Column, PacketWriter};

/// Bytes of encoded packets buffered before they are written to the socket.
const FLUSH_AT: usize = 64 * 1024;

/// What to do after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// How a request arrived; decides the DONE tokens that close its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Batch,
    Rpc,
}

/// Serves one accepted connection to completion. Errors end the connection and are logged.
pub(super) async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, id: u64) {
    let span = tracing::debug_span!("fake_erp_connection", id, %peer);
    async move {
        debug!("connection accepted");
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "could not set TCP_NODELAY");
        }
        let spid = 51 + (id % 30_000) as u16;
        let mut session = Session {
            stream,
            shared,
            writer: PacketWriter::new(tds::DEFAULT_PACKET_SIZE, spid),
            scratch: Vec::with_capacity(4096),
        };
        match session.run().await {
            Ok(()) => debug!("connection closed"),
            Err(e) => debug!(error = %e, "connection ended with an error"),
        }
    }
    .instrument(span)
    .await
}

struct Session {
    stream: TcpStream,
    shared: Arc<Shared>,
    writer: PacketWriter,
    /// Reusable encoding buffer for tokens and rows.
    scratch: Vec<u8>,
}

impl Session {
    async fn run(&mut self) -> io::Result<()> {
        if !self.handshake().await? {
            return Ok(());
        }
        loop {
            let Some(msg) = tds::read_message(&mut self.stream).await? else {
                return Ok(());
            };
            let flow = match msg.ty {
                tds::PKT_SQL_BATCH => {
                    let sql = tds::parse_sql_batch(&msg.payload);
                    self.execute(&sql, Via::Batch).await?
                }
                tds::PKT_RPC => {
                    let rpc = tds::parse_rpc(&msg.payload)?;
                    match (rpc.proc.is_sp_executesql(), rpc.first_string_param) {
                        (true, Some(sql)) => self.execute(&sql, Via::Rpc).await?,
                        (true, None) => {
                            let msg =
                                "Procedure expects parameter '@statement' of type 'ntext/nchar/nvarchar'.";
                            self.send_error(214, 16, msg, Via::Rpc).await?
                        }
                        (false, _) => {
                            let msg = format!("Could not find stored procedure '{}'.", rpc.proc);
                            self.send_error(2812, 16, &msg, Via::Rpc).await?
                        }
                    }
                }
                tds::PKT_ATTENTION => {
                    self.scratch.clear();
                    tds::put_done(&mut self.scratch, tds::DONE_ATTN, 0, 0);
                    self.send_scratch().await?;
                    Flow::Continue
                }
                other => {
                    debug!(packet_type = other, "unsupported request");
                    let msg = format!("The fake ERP does not support TDS requests of type {other:#04x}.");
                    self.send_error(4002, 16, &msg, Via::Batch).await?
                }
            };
            if flow == Flow::Close {
                return Ok(());
            }
        }
    }

    /// PRELOGIN and LOGIN7. Returns `false` if the connection is to be closed.
    async fn handshake(&mut self) -> io::Result<bool> {
        let Some(msg) = tds::read_message(&mut self.stream).await? else {
            return Ok(false);
        };
        if msg.ty != tds::PKT_PRELOGIN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected PRELOGIN, got packet type {:#04x}", msg.ty),
            ));
        }
        let prelogin = tds::parse_prelogin(&msg.payload)?;
        // We never do TLS. A client that requires it (ENCRYPT_ON/REQ) fails on this answer
        // with "Server does not allow the requested encryption level."
        self.scratch = tds::prelogin_response(tds::ENCRYPT_NOT_SUP);
        self.send_scratch().await?;
        if matches!(prelogin.encryption, tds::ENCRYPT_ON | tds::ENCRYPT_REQ) {
            warn!(
                "client requires encryption, but the fake ERP only speaks plaintext TDS; \
                 connect with encrypt=DANGER_PLAINTEXT"
            );
            self.wait_for_client_to_leave().await;
            return Ok(false);
        }

        let Some(msg) = tds::read_message(&mut self.stream).await? else {
            return Ok(false);
        };
        if msg.ty == tds::PKT_PRELOGIN {
            // tiberius with encrypt=false (ENCRYPT_OFF) still wraps the login in TLS: this is
            // its TLS ClientHello. Closing makes its handshake fail at once.
            warn!(
                "client started a TLS handshake (encrypt=false still encrypts the login in tiberius); \
                 the fake ERP only speaks plaintext TDS, connect with encrypt=DANGER_PLAINTEXT"
            );
            return Ok(false);
        }
        if msg.ty != tds::PKT_LOGIN7 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected LOGIN7, got packet type {:#04x}", msg.ty),
            ));
        }
        let login = tds::parse_login7(&msg.payload)?;
        let packet_size = match login.packet_size {
            0 => tds::DEFAULT_PACKET_SIZE,
            n => (n as usize).clamp(tds::MIN_PACKET_SIZE, tds::MAX_PACKET_SIZE),
        };
        debug!(
            user = %login.user,
            database = %login.database,
            app = %login.app_name,
            host = %login.hostname,
            tds_version = format_args!("{:#010x}", login.tds_version),
            requested_packet_size = login.packet_size,
            packet_size,
            "LOGIN7 received"
        );

        self.scratch.clear();
        if self.shared.config.fail == Some(Failure::Login) {
            let msg = format!("Login failed for user '{}'.", login.user);
            debug!("refusing the login (failure mode `login`)");
            tds::put_error(&mut self.scratch, 18456, 14, &msg);
            tds::put_done(&mut self.scratch, tds::DONE_ERROR, 0, 0);
            self.send_scratch().await?;
            let _ = self.stream.shutdown().await;
            return Ok(false);
        }
        let database = if login.database.is_empty() {
            "master"
        } else {
            login.database.as_str()
        };
        tds::put_envchange_database(&mut self.scratch, database);
        tds::put_loginack(&mut self.scratch);
        tds::put_envchange_packet_size(&mut self.scratch, packet_size);
        tds::put_done(&mut self.scratch, tds::DONE_FINAL, 0, 0);
        self.send_scratch().await?;
        self.writer.set_packet_size(packet_size);
        self.shared.stats.inner.logins.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Answers one SQL statement.
    async fn execute(&mut self, sql: &str, via: Via) -> io::Result<Flow> {
        if sql.to_ascii_lowercase().contains("openorders") {
            return self.open_orders(via).await;
        }
        if let Some(alias) = select_one_alias(sql) {
            debug!(%sql, "SELECT 1");
            let column = Column {
                name: alias,
                ty: ColType::Int,
                nullable: false,
            };
            self.scratch.clear();
            tds::put_colmetadata(&mut self.scratch, &[column]);
            tds::put_row_token(&mut self.scratch);
            tds::put_int(&mut self.scratch, 1);
            put_end(&mut self.scratch, via, 0, 1);
            self.send_scratch().await?;
            return Ok(Flow::Continue);
        }
        debug!(%sql, "unknown statement");
        let msg = format!("Invalid object name '{}'.", object_name(sql));
        self.send_error(208, 16, &msg, via).await
    }

    /// Streams the open-orders result, or misbehaves as configured.
    async fn open_orders(&mut self, via: Via) -> io::Result<Flow> {
        let config = &self.shared.config;
        let (seed, orders, fail) = (config.seed, config.orders, config.fail);
        let served_before = self.shared.stats.inner.queries.fetch_add(1, Ordering::Relaxed);
        let generation = if config.evolve { served_before } else { 0 };
        debug!(generation, ?fail, "open-orders query");

        match fail {
            Some(Failure::Sql) => {
                let msg = format!("The view {VIEW_NAME} is being rebuilt");
                return self.send_error(50_000, 16, &msg, via).await;
            }
            Some(Failure::Stall) => {
                debug!("stalling (failure mode `stall`)");
                self.wait_for_client_to_leave().await;
                return Ok(Flow::Close);
            }
            _ => {}
        }
        let limit = match fail {
            Some(Failure::DropAfter(n) | Failure::StallAfter(n)) => n,
            _ => u64::MAX,
        };
        let quirks = Quirks::for_failure(fail);
        let cat = catalog();
        let stats = &self.shared.stats.inner;

        self.scratch.clear();
        tds::put_colmetadata(&mut self.scratch, &orders::columns(quirks));
        self.writer.put(&self.scratch);
        let mut sent = 0u64;
        let mut unflushed = 0u64;
        for line in LineSpecs::new(seed, generation, orders) {
            if sent == limit {
                break;
            }
            self.scratch.clear();
            orders::encode_row(&mut self.scratch, cat, &line, sent, quirks);
            self.writer.put(&self.scratch);
            sent += 1;
            unflushed += 1;
            if self.writer.buffered() >= FLUSH_AT {
                self.writer.write_full_packets(&mut self.stream).await?;
                stats.rows_sent.fetch_add(unflushed, Ordering::Relaxed);
                unflushed = 0;
            }
        }
        stats.rows_sent.fetch_add(unflushed, Ordering::Relaxed);

        match fail {
            Some(Failure::DropAfter(_)) => {
                self.writer.flush_unfinished(&mut self.stream).await?;
                debug!(rows = sent, "dropping the connection (failure mode `drop-after`)");
                let _ = self.stream.shutdown().await;
                Ok(Flow::Close)
            }
            Some(Failure::StallAfter(_)) => {
                self.writer.flush_unfinished(&mut self.stream).await?;
                debug!(rows = sent, "stalling (failure mode `stall-after`)");
                self.wait_for_client_to_leave().await;
                Ok(Flow::Close)
            }
            _ => {
                self.scratch.clear();
                put_end(&mut self.scratch, via, 0, sent);
                self.writer.put(&self.scratch);
                self.writer.end_message(&mut self.stream).await?;
                debug!(rows = sent, "open-orders result sent");
                Ok(Flow::Continue)
            }
        }
    }

    /// An ERROR token and the DONE tokens of a failed statement.
    async fn send_error(&mut self, number: u32, class: u8, message: &str, via: Via) -> io::Result<Flow> {
        self.scratch.clear();
        tds::put_error(&mut self.scratch, number, class, message);
        put_end(&mut self.scratch, via, tds::DONE_ERROR, 0);
        self.send_scratch().await?;
        Ok(Flow::Continue)
    }

    /// Sends `scratch` as one complete message.
    async fn send_scratch(&mut self) -> io::Result<()> {
        self.writer.put(&self.scratch);
        self.writer.end_message(&mut self.stream).await
    }

    /// Keeps the socket open, discarding input, until the client closes it.
    async fn wait_for_client_to_leave(&mut self) {
        let mut sink = [0u8; 4096];
        while let Ok(n) = self.stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    }
}

/// The DONE tokens that end a statement's response.
fn put_end(out: &mut Vec<u8>, via: Via, error: u16, rows: u64) {
    let count = if error == 0 { tds::DONE_COUNT } else { 0 };
    match via {
        Via::Batch => tds::put_done(out, error | count, tds::CMD_SELECT, rows),
        Via::Rpc => {
            tds::put_done_in_proc(out, tds::DONE_MORE | error | count, tds::CMD_SELECT, rows);
            tds::put_return_status(out, if error == 0 { 0 } else { 1 });
            tds::put_done_proc(out, error, tds::CMD_EXECUTE, 0);
        }
    }
}

/// `Some(column name)` if `sql` is `SELECT 1` (optionally `AS alias`, trailing `;`).
fn select_one_alias(sql: &str) -> Option<&str> {
    let sql = sql.trim().trim_end_matches(';').trim_end();
    let tokens: Vec<&str> = sql.split_whitespace().collect();
    match tokens.as_slice() {
        [select, "1"] if select.eq_ignore_ascii_case("select") => Some(""),
        [select, "1", as_kw, alias]
            if select.eq_ignore_ascii_case("select") && as_kw.eq_ignore_ascii_case("as") =>
        {
            Some(alias.trim_matches(|c| matches!(c, '[' | ']' | '"' | '\'')))
        }
        _ => None,
    }
}

/// The object a statement refers to, for "Invalid object name" errors.
fn object_name(sql: &str) -> String {
    let tokens: Vec<&str> = sql.split_whitespace().collect();
    for pair in tokens.windows(2) {
        if ["from", "join", "into", "update"]
            .iter()
            .any(|k| pair[0].eq_ignore_ascii_case(k))
        {
            return pair[1].trim_end_matches([';', ',', ')']).to_owned();
        }
    }
    let text = sql.trim();
    match text.char_indices().nth(128) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_select_one() {
        assert_eq!(select_one_alias("SELECT 1"), Some(""));
        assert_eq!(select_one_alias("  select 1 ; "), Some(""));
        assert_eq!(select_one_alias("SELECT 1 AS [ok]"), Some("ok"));
        assert_eq!(select_one_alias("SELECT 12"), None);
        assert_eq!(select_one_alias("SELECT 1 FROM t"), None);
    }

    #[test]
    fn names_the_missing_object() {
        assert_eq!(
            object_name("SELECT * FROM dbo.Customers WHERE 1=1"),
            "dbo.Customers"
        );
        assert_eq!(object_name("select x from foo;"), "foo");
        assert_eq!(object_name("EXEC something"), "EXEC something");
    }
}
