//! `sync-app fake-erp`'s SQL Server settings, through the binary: certificates (generated and
//! written with `--cert-out`, or given with `--cert` / `--key`), encryption modes, the login
//! and database, an access token, and a named instance announced by the SQL Server Browser.
mod common;

use common::temp_dir;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;

const BIN: &str = env!("CARGO_BIN_EXE_sync-app");

/// A running `fake-erp` and what it printed.
struct Erp {
    child: Child,
    addr: SocketAddr,
    url: String,
    browser: Option<SocketAddr>,
}

impl Drop for Erp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fake_erp(dir: &Path, extra: &[&str]) -> Erp {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .args(["fake-erp", "--listen", "127.0.0.1:0", "--orders", "300"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn fake-erp");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut addr, mut browser) = (None, None);
    loop {
        let line = lines.next().expect("fake-erp printed its MSSQL_URL").unwrap();
        if let Some(a) = line.strip_prefix("fake ERP listening on ") {
            addr = Some(a.trim().parse().unwrap());
        }
        if let Some(a) = line.strip_prefix("SQL Server Browser listening on ") {
            browser = Some(a.trim_end_matches(" (UDP)").parse().unwrap());
        }
        if let Some(url) = line.strip_prefix("MSSQL_URL='") {
            return Erp {
                child,
                addr: addr.expect("address printed before the URL"),
                url: url.trim_end_matches('\'').to_string(),
                browser,
            };
        }
    }
}

async fn connect(
    addr: SocketAddr,
    config: Config,
) -> tiberius::Result<Client<tokio_util::compat::Compat<TcpStream>>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

/// Connects with `config` and counts the open orders.
async fn count_orders(addr: SocketAddr, config: Config) -> tiberius::Result<u64> {
    let mut client = connect(addr, config).await?;
    let rows = client
        .simple_query(sync_app::fake_erp::OPEN_ORDERS_SQL)
        .await?
        .into_first_result()
        .await?;
    Ok(rows.len() as u64)
}

fn base_config(addr: SocketAddr) -> Config {
    let mut c = Config::new();
    c.host("localhost");
    c.port(addr.port());
    c.database("erp");
    c.authentication(AuthMethod::sql_server("sync", "sync"));
    c
}

#[tokio::test]
async fn the_generated_certificate_is_written_and_trusted_by_path() {
    let dir = temp_dir("cert-out");
    let pem = dir.join("erp.pem");
    let erp = fake_erp(
        &dir,
        &["--encryption", "required", "--cert-out", pem.to_str().unwrap()],
    );
    let text = std::fs::read_to_string(&pem).unwrap();
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");

    let mut trusted = base_config(erp.addr);
    trusted.encryption(EncryptionLevel::Required);
    trusted.trust_cert_ca(pem.to_str().unwrap());
    assert_eq!(count_orders(erp.addr, trusted).await.unwrap(), 300);

    // Not trusted: the system's roots do not know a self-signed certificate.
    let mut untrusted = base_config(erp.addr);
    untrusted.encryption(EncryptionLevel::Required);
    let err = count_orders(erp.addr, untrusted)
        .await
        .expect_err("an untrusted certificate");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_given_certificate_and_key_are_served() {
    let dir = temp_dir("cert-key");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "erp.example.test");
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("c.pem"), dir.join("k.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let out = dir.join("served.pem");
    let erp = fake_erp(
        &dir,
        &[
            "--encryption",
            "required",
            "--cert",
            cert_path.to_str().unwrap(),
            "--key",
            key_path.to_str().unwrap(),
            "--cert-out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        cert.pem(),
        "the served certificate is the given one"
    );
    let mut config = base_config(erp.addr);
    config.encryption(EncryptionLevel::Required);
    config.trust_cert_ca(cert_path.to_str().unwrap());
    assert_eq!(count_orders(erp.addr, config).await.unwrap(), 300);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn encryption_modes_from_the_command_line() {
    let dir = temp_dir("modes");
    // off: no TLS at all; a client that wants TLS is refused.
    let off = fake_erp(&dir, &["--encryption", "off"]);
    assert!(off.url.contains("Encrypt=DANGER_PLAINTEXT"), "{}", off.url);
    let config = Config::from_ado_string(&off.url).unwrap();
    assert_eq!(count_orders(off.addr, config).await.unwrap(), 300);
    let mut wants_tls = base_config(off.addr);
    wants_tls.encryption(EncryptionLevel::Required);
    wants_tls.trust_cert();
    assert!(count_orders(off.addr, wants_tls).await.is_err());

    // optional (the default): login-only TLS for Encrypt=false, full TLS for Encrypt=true.
    let optional = fake_erp(&dir, &[]);
    for encrypt in [EncryptionLevel::Off, EncryptionLevel::Required] {
        let mut c = base_config(optional.addr);
        c.encryption(encrypt);
        c.trust_cert();
        assert_eq!(count_orders(optional.addr, c).await.unwrap(), 300, "{encrypt:?}");
    }

    // strict: TDS 8.0 only.
    let strict = fake_erp(&dir, &["--encryption", "strict"]);
    let mut c = base_config(strict.addr);
    c.encryption(EncryptionLevel::Strict);
    c.trust_cert();
    assert_eq!(count_orders(strict.addr, c).await.unwrap(), 300);
    let mut c = base_config(strict.addr);
    c.encryption(EncryptionLevel::Required);
    c.trust_cert();
    assert!(
        count_orders(strict.addr, c).await.is_err(),
        "strict refuses TDS 7.x TLS"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn login_database_and_access_token_from_the_command_line() {
    let dir = temp_dir("login");
    let erp = fake_erp(
        &dir,
        &[
            "--user",
            "erp_reader",
            "--password",
            "p;w'd",
            "--database",
            "ERP_PROD",
            "--access-token",
            "eyJ0eXAiOiJKV1Qi.test-token",
        ],
    );
    assert!(erp.url.contains("User ID=erp_reader"), "{}", erp.url);
    assert!(erp.url.contains("Password='p;w''d'"), "{}", erp.url);
    let config = Config::from_ado_string(&erp.url).unwrap();
    assert_eq!(count_orders(erp.addr, config).await.unwrap(), 300);

    let mut wrong = base_config(erp.addr);
    wrong.trust_cert();
    wrong.authentication(AuthMethod::sql_server("erp_reader", "sync"));
    wrong.database("ERP_PROD");
    let err = count_orders(erp.addr, wrong).await.unwrap_err();
    assert!(
        matches!(&err, tiberius::error::Error::Server(e) if e.code() == 18456),
        "{err:?}"
    );

    let mut no_db = base_config(erp.addr);
    no_db.trust_cert();
    no_db.authentication(AuthMethod::sql_server("erp_reader", "p;w'd"));
    no_db.database("erp");
    let err = count_orders(erp.addr, no_db).await.unwrap_err();
    assert!(
        matches!(&err, tiberius::error::Error::Server(e) if e.code() == 4060),
        "{err:?}"
    );

    let mut token = base_config(erp.addr);
    token.trust_cert();
    token.database("ERP_PROD");
    token.authentication(AuthMethod::aad_token("eyJ0eXAiOiJKV1Qi.test-token"));
    assert_eq!(count_orders(erp.addr, token).await.unwrap(), 300);
    let mut bad_token = base_config(erp.addr);
    bad_token.trust_cert();
    bad_token.database("ERP_PROD");
    bad_token.authentication(AuthMethod::aad_token("another"));
    assert!(count_orders(erp.addr, bad_token).await.is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_named_instance_is_announced_by_the_sql_server_browser() {
    let dir = temp_dir("instance");
    let erp = fake_erp(
        &dir,
        &["--instance", "SQLEXPRESS", "--browser-listen", "127.0.0.1:0"],
    );
    let browser = erp.browser.expect("the browser address is printed");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut request = vec![0x04];
    request.extend_from_slice(b"SQLEXPRESS");
    socket.send_to(&request, browser).unwrap();
    let mut buf = [0u8; 1024];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(buf[0], 0x05, "SVR_RESP");
    let text = String::from_utf8_lossy(&buf[3..n]).into_owned();
    assert!(text.contains("InstanceName;SQLEXPRESS;"), "{text}");
    assert!(
        text.contains(&format!(";tcp;{};", erp.addr.port())),
        "the instance's TCP port: {text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_windows_login_is_configured_from_the_command_line() {
    let dir = temp_dir("windows");
    // Half a Windows login is refused with a message naming both flags.
    let out = Command::new(BIN)
        .current_dir(&dir)
        .args([
            "fake-erp",
            "--listen",
            "127.0.0.1:0",
            "--windows-user",
            r"CORP\alice",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--windows-user and --windows-password go together"),
        "{stderr}"
    );
    // With both, the server starts; its SQL login still works (the NTLM exchange itself is
    // tested in fake-mssql/tests/windows_login.rs with tiberius's sspi-rs client).
    let erp = fake_erp(
        &dir,
        &[
            "--windows-user",
            r"CORP\alice",
            "--windows-password",
            "Winter2026!",
        ],
    );
    let config = Config::from_ado_string(&erp.url).unwrap();
    assert_eq!(count_orders(erp.addr, config).await.unwrap(), 300);
    std::fs::remove_dir_all(&dir).ok();
}
