//! How fast the fake ERP (fake-mssql serving the open-orders view) encodes rows, per core of
//! the server, in both schemas, with and without TLS — so it is never the limit of another
//! benchmark.
//!
//! The server runs alone on one thread (a current-thread tokio runtime); its CPU time is read
//! from `/proc/self/task/TID/schedstat` before and after each query, so the figure is rows
//! per second of server CPU, whatever the client costs on the other core. Two clients drain
//! the same result side by side:
//!
//! - **raw**: a minimal TDS client that counts the bytes of the response without decoding
//!   rows (plain TCP, or TLS from the first byte — TDS 8.0 — against a server in
//!   `required` mode: every byte of the result encrypted, as with `Encrypt=true`);
//! - **tiberius**: tiberius decoding every row (`Encrypt=DANGER_PLAINTEXT` against `off`,
//!   `Encrypt=true` against `required`).
//!
//! Memory: the process's RSS after each query, to show it stays flat across queries.
//!
//! ```text
//! cargo bench -p sync-app --bench fake_erp -- [--rows N] [--repeat R]
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fake_mssql::Encryption;
use futures::TryStreamExt;
use sync_app::fake_erp::{FakeErp, FakeErpConfig, OPEN_ORDERS_SQL, Schema};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;

/// A fake ERP on its own OS thread; its thread id to read its CPU time.
struct ServerThread {
    addr: SocketAddr,
    tid: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    fn start(config: FakeErpConfig) -> Result<ServerThread> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("erp-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let erp = FakeErp::bind("127.0.0.1:0".parse().unwrap(), config)
                        .await
                        .expect("bind");
                    let tid = std::fs::read_link("/proc/thread-self")
                        .expect("/proc/thread-self")
                        .file_name()
                        .expect("tid")
                        .to_string_lossy()
                        .into_owned();
                    tx.send((erp.local_addr(), tid)).expect("send");
                    tokio::select! {
                        _ = erp.run() => {}
                        _ = stop_rx => {}
                    }
                });
            })?;
        let (addr, tid) = rx.recv().context("server thread")?;
        Ok(ServerThread {
            addr,
            tid,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// CPU time the server thread has used so far.
    fn cpu(&self) -> Duration {
        let text =
            std::fs::read_to_string(format!("/proc/self/task/{}/schedstat", self.tid)).unwrap_or_default();
        let ns: u64 = text
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Duration::from_nanos(ns)
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// A raw TDS client: PRELOGIN, LOGIN7, one batch, the response counted but not decoded.

async fn send_packet<S: AsyncWrite + Unpin>(s: &mut S, ty: u8, payload: &[u8]) -> Result<()> {
    let mut p = Vec::with_capacity(payload.len() + 8);
    p.push(ty);
    p.push(1);
    p.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 1, 0]);
    p.extend_from_slice(payload);
    s.write_all(&p).await?;
    s.flush().await?;
    Ok(())
}

/// Reads one whole message; returns its payload bytes.
async fn drain_message<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<u64> {
    let mut bytes = 0u64;
    loop {
        let mut header = [0u8; 8];
        s.read_exact(&mut header).await?;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]])) - 8;
        buf.resize(len, 0);
        s.read_exact(buf).await?;
        bytes += len as u64;
        if header[1] & 1 == 1 {
            return Ok(bytes);
        }
    }
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// LOGIN7 for user sync / password sync, database erp.
fn login7(packet_size: u32) -> Vec<u8> {
    let strings: [(usize, Vec<u8>); 4] = [
        (40, utf16("sync")),
        (
            44,
            utf16("sync")
                .into_iter()
                .map(|b| b.rotate_left(4) ^ 0xA5)
                .collect(),
        ),
        (48, utf16("fake_erp bench")),
        (68, utf16("erp")),
    ];
    let mut login = vec![0u8; 94];
    login[4..8].copy_from_slice(&0x7400_0004u32.to_le_bytes());
    login[8..12].copy_from_slice(&packet_size.to_le_bytes());
    for table in (36..90).step_by(4) {
        login[table..table + 2].copy_from_slice(&94u16.to_le_bytes());
    }
    for (table, data) in strings {
        let offset = login.len() as u16;
        login[table..table + 2].copy_from_slice(&offset.to_le_bytes());
        login[table + 2..table + 4].copy_from_slice(&((data.len() / 2) as u16).to_le_bytes());
        login.extend_from_slice(&data);
    }
    let len = login.len() as u32;
    login[0..4].copy_from_slice(&len.to_le_bytes());
    login
}

async fn raw_session<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, packet_size: u32) -> Result<u64> {
    let mut buf = Vec::new();
    // PRELOGIN: ENCRYPTION = NOT_SUP (inside TDS 8.0 TLS nothing more is negotiated).
    send_packet(s, 0x12, &[0x01, 0x00, 0x06, 0x00, 0x01, 0xFF, 0x02]).await?;
    drain_message(s, &mut buf).await?;
    send_packet(s, 0x10, &login7(packet_size)).await?;
    drain_message(s, &mut buf).await?;
    let mut batch = Vec::new();
    batch.extend_from_slice(&22u32.to_le_bytes());
    batch.extend_from_slice(&18u32.to_le_bytes());
    batch.extend_from_slice(&2u16.to_le_bytes());
    batch.extend_from_slice(&[0; 8]);
    batch.extend_from_slice(&1u32.to_le_bytes());
    batch.extend(utf16(OPEN_ORDERS_SQL));
    send_packet(s, 0x01, &batch).await?;
    drain_message(s, &mut buf).await
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The raw client; `tls` = TDS 8.0 (TLS from the first byte).
async fn raw_query(addr: SocketAddr, tls: bool) -> Result<u64> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    if !tls {
        let mut tcp = tcp;
        return raw_session(&mut tcp, 32_767).await;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"tds/8.0".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let mut tls = connector.connect(name, tcp).await?;
    raw_session(&mut tls, 32_767).await
}

/// tiberius decoding every row; returns the row count.
async fn tiberius_query(addr: SocketAddr, encrypt: &str) -> Result<u64> {
    let ado = format!(
        "Server=tcp:127.0.0.1,{};Database=erp;User ID=sync;Password=sync;Encrypt={encrypt};\
         TrustServerCertificate=true;Packet Size=32767",
        addr.port()
    );
    let config = tiberius::Config::from_ado_string(&ado)?;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut client = tiberius::Client::connect(config, tcp.compat_write()).await?;
    let rows = client
        .simple_query(OPEN_ORDERS_SQL)
        .await?
        .into_row_stream()
        .try_fold(0u64, |n, _| async move { Ok(n + 1) })
        .await?;
    Ok(rows)
}

/// Whether `value` passes the `--only` words of its kind (`kind` lists the words).
fn selected(only: &[String], kind: &[&str], value: &str) -> bool {
    let named: Vec<&String> = only.iter().filter(|o| kind.contains(&o.as_str())).collect();
    named.is_empty() || named.iter().any(|o| o.as_str() == value)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut rows = 1_000_000u64;
    let mut repeat = 3usize;
    let mut only: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rows" => rows = it.next().context("--rows N")?.parse()?,
            "--repeat" => repeat = it.next().context("--repeat R")?.parse()?,
            // e.g. `--only modern --only required --only raw` (for profiling one line)
            "--only" => only.push(it.next().context("--only WORD")?.clone()),
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "fake ERP encoding benchmark: {rows} rows per query, best of {repeat}, {} cores",
        std::thread::available_parallelism()?
    );
    println!();
    println!(
        "| schema | server encryption | client | rows | wall s | server CPU s | rows/s per server core | MB sent | RSS after, MB |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    for schema in [Schema::Modern, Schema::Classic] {
        for (encryption, raw_tls, tiberius_encrypt) in [
            (Encryption::Off, false, "DANGER_PLAINTEXT"),
            (Encryption::Required, true, "true"),
        ] {
            if !selected(&only, &["modern", "classic"], &schema.to_string())
                || !selected(&only, &["off", "required"], &encryption.to_string())
            {
                continue;
            }
            let server = ServerThread::start(FakeErpConfig {
                orders: rows,
                schema,
                encryption,
                ..FakeErpConfig::default()
            })?;
            for client in ["raw", "tiberius"] {
                if !selected(&only, &["raw", "tiberius"], client) {
                    continue;
                }
                let mut best: Option<(Duration, Duration, u64)> = None;
                let mut rss = 0.0;
                for _ in 0..repeat {
                    let cpu0 = server.cpu();
                    let started = Instant::now();
                    let amount = rt.block_on(async {
                        match client {
                            "raw" => raw_query(server.addr, raw_tls).await,
                            _ => tiberius_query(server.addr, tiberius_encrypt).await,
                        }
                    })?;
                    let wall = started.elapsed();
                    let cpu = server.cpu() - cpu0;
                    rss = rss_mb();
                    if best.is_none_or(|(_, c, _)| cpu < c) {
                        best = Some((wall, cpu, amount));
                    }
                }
                let (wall, cpu, amount) = best.expect("at least one run");
                let client_label = match (client, raw_tls) {
                    ("raw", true) => "raw, TDS 8.0 TLS",
                    ("raw", false) => "raw, plain",
                    (_, true) => "tiberius, Encrypt=true",
                    _ => "tiberius, plaintext",
                };
                let mb = if client == "raw" {
                    format!("{:.0}", amount as f64 / 1e6)
                } else {
                    "–".into()
                };
                println!(
                    "| {schema} | {encryption} | {client_label} | {rows} | {:.2} | {:.2} | {:.0} | {mb} | {rss:.1} |",
                    wall.as_secs_f64(),
                    cpu.as_secs_f64(),
                    rows as f64 / cpu.as_secs_f64(),
                );
            }
        }
    }
    Ok(())
}
