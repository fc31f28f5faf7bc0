//! `TLS_CERT` / `TLS_KEY`: `sync-app demo` serves its pages over HTTPS with a self-signed
//! certificate made here, fetched by a rustls client that trusts it; plain HTTP on that
//! port gets no page.

mod binary;
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use binary::{basic, cmd, free_addr};
use common::temp_dir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `path` over TLS trusting `cert_pem` only; the whole response.
async fn https_get(addr: &str, cert_pem: &str, path: &str, auth: Option<&str>) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the served certificate");
    let auth = auth
        .map(|a| format!("Authorization: Basic {a}\r\n"))
        .unwrap_or_default();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    // A server may close without close_notify after `Connection: close`; what arrived counts.
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_serves_https_with_tls_cert_and_tls_key() {
    let dir = temp_dir("https");
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();

    let addr = free_addr();
    let mut child = Kill(
        cmd(&dir)
            .arg("demo")
            .env("BIND", &addr)
            .env("ADMIN_USER", "ops")
            .env("ADMIN_PASSWORD", "https-test-password")
            .env("TLS_CERT", &cert_path)
            .env("TLS_KEY", &key_path)
            .env("SYNC_INTERVAL", "1h")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn demo"),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .take(20)
        .find_map(|l| l.trim().strip_prefix("Web UI").map(|u| u.trim().to_string()));
    // Keep reading: a closed pipe would fail the demo's next line of output.
    std::thread::spawn(move || lines.for_each(drop));
    let result = async {
        assert_eq!(url.as_deref(), Some(format!("https://{addr}/").as_str()));
        let health = https_get(&addr, &cert.pem(), "/healthz", None).await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        let page = https_get(
            &addr,
            &cert.pem(),
            "/",
            Some(&basic("ops", "https-test-password")),
        )
        .await;
        assert!(
            page.starts_with("HTTP/1.1 200"),
            "{}",
            &page[..page.len().min(300)]
        );
        assert!(
            page.contains("SyncOpenOrdersJob") || page.contains("<html"),
            "a page"
        );

        // Plain HTTP on the TLS port: no page, the connection is closed.
        let addr = addr.clone();
        let plain = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
        .await
        .unwrap();
        assert!(!plain.contains("200 OK"), "{plain}");
    }
    .await;
    drop(child);
    std::fs::remove_dir_all(&dir).ok();
    result
}

/// Kills the demo, also when an assertion fails.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
