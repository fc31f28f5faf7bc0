//! The certificate a SQL Server presents: fetched over a connection of our own (TDS 7.x in
//! PRELOGIN, TDS 8.0 strict), and named — subject, issuer, names, expiry — in the error of a
//! connect that did not trust it, with the keywords that fix it. Against the fake ERP with
//! its self-signed certificate, and with a certificate issued by a small CA of our own.
mod common;

use common::temp_dir;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fake_mssql::{Encryption, Identity};
use sync_app::erp::certificate::FetchError;
use sync_app::erp::{ErpSource, ServerCertificate, SourceError, fetch_server_certificate};
use sync_app::fake_erp::{FakeErpConfig, FakeErpHandle};

const FAKE_SUBJECT: &str = "CN=localhost, O=fake-mssql";
const CA_SUBJECT: &str = "CN=Acme Test Root CA, O=Acme Trust";
const LEAF_SUBJECT: &str = "CN=erp01.acme.test, O=Acme ERP, OU=Finance";

fn no_env(_: &str) -> Option<String> {
    None
}

async fn erp(config: FakeErpConfig) -> FakeErpHandle {
    common::spawn_erp(FakeErpConfig { orders: 5, ..config }).await
}

use common::erp_mode as mode;

fn base(addr: SocketAddr) -> String {
    format!(
        "Server=tcp:127.0.0.1,{};Database=erp;User ID=sync;Password=sync;Connect Timeout=5",
        addr.port()
    )
}

fn encrypt_for(server: Encryption) -> &'static str {
    if server == Encryption::Strict {
        "strict"
    } else {
        "true"
    }
}

/// Connects (and closes); the error if it fails.
async fn connect(ado: &str) -> Result<(), SourceError> {
    let source = ErpSource::from_ado_with_env(ado, &no_env).unwrap_or_else(|e| panic!("{ado}: {e}"));
    let (conn, _) = source.connect().await?;
    conn.close().await;
    Ok(())
}

/// The error of a connect that must fail on the certificate, with its message.
async fn certificate_error(ado: &str) -> (String, Option<ServerCertificate>) {
    let e = connect(ado).await.expect_err(ado);
    let msg = e.to_string();
    match e {
        SourceError::Certificate { certificate, .. } => (msg, certificate.map(|c| *c)),
        other => panic!("{ado}: expected a certificate error, got {other:?}"),
    }
}

fn assert_keywords(msg: &str) {
    for keyword in ["TrustServerCertificate=true", "Server Certificate=PATH"] {
        assert!(msg.contains(keyword), "{keyword} missing: {msg}");
    }
    assert!(!msg.contains("Config::trust"), "tiberius's API names leak: {msg}");
}

/// A root CA and a leaf it signed for `erp01.acme.test` and 10.1.2.3 (not for 127.0.0.1 or
/// localhost), valid until 2031-05-06: (the server's identity, the CA's PEM).
fn acme_identity() -> (Identity, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "Acme Test Root CA");
    ca.distinguished_name.push(DnType::OrganizationName, "Acme Trust");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();

    let mut leaf =
        CertificateParams::new(vec!["erp01.acme.test".to_string(), "10.1.2.3".to_string()]).unwrap();
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, "erp01.acme.test");
    leaf.distinguished_name.push(DnType::OrganizationName, "Acme ERP");
    leaf.distinguished_name
        .push(DnType::OrganizationalUnitName, "Finance");
    leaf.not_before = rcgen::date_time_ymd(2024, 1, 1);
    leaf.not_after = rcgen::date_time_ymd(2031, 5, 6);
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &*ca).unwrap();
    // The chain as servers send it: the leaf, then the CA.
    let chain = format!("{}{}", cert.pem(), ca.pem());
    let identity = Identity::from_pem(&chain, &key.serialize_pem()).unwrap();
    (identity, ca.pem())
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

// ---------------------------------------------------------------- fetching

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_reads_the_fake_erps_certificate_over_tds7_and_tds8() {
    // (server mode, strict probe)
    let cases = [
        (Encryption::Optional, false),
        (Encryption::Optional, true),
        (Encryption::Required, false),
        (Encryption::Required, true),
        (Encryption::Strict, true),
    ];
    for (server, strict) in cases {
        let erp = erp(FakeErpConfig {
            cert_names: vec!["erp.example.com".into()],
            ..mode(server)
        })
        .await;
        let addr = erp.local_addr().to_string();
        let c = fetch_server_certificate(&addr, strict, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{server:?}, strict {strict}: {e}"));
        let case = format!("{server:?}, strict {strict}: {c:?}");
        assert_eq!(c.subject, FAKE_SUBJECT, "{case}");
        assert_eq!(c.issuer, FAKE_SUBJECT, "{case}");
        assert!(c.self_signed, "{case}");
        for name in ["localhost", "127.0.0.1", "::1", "erp.example.com"] {
            assert!(c.dns_names.iter().any(|n| n == name), "{name}: {case}");
        }
        assert!(
            c.is_valid_for("127.0.0.1") && !c.is_valid_for("db.example.com"),
            "{case}"
        );
        let now = chrono::Utc::now();
        assert!(c.not_before <= now && c.not_after > now, "{case}");
        // Exactly the certificate the server holds.
        assert_eq!(
            c.pem().trim(),
            erp.certificate_pem().unwrap().replace("\r\n", "\n").trim(),
            "{case}"
        );
        assert!(erp.stats().logins() == 0, "the probe does not log in: {case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_fails_cleanly_without_tls_or_against_the_wrong_protocol() {
    let off = erp(mode(Encryption::Off)).await;
    let e = fetch_server_certificate(&off.local_addr().to_string(), false, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::NoTls), "{e:?}");
    assert!(
        fetch_server_certificate(&off.local_addr().to_string(), true, Duration::from_secs(5))
            .await
            .is_err()
    );
    // A strict (TDS 8.0) server refuses a TDS 7.x PRELOGIN.
    let strict = erp(mode(Encryption::Strict)).await;
    assert!(
        fetch_server_certificate(&strict.local_addr().to_string(), false, Duration::from_secs(5))
            .await
            .is_err()
    );
    // Silence is bounded by the timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            open.push(tcp);
        }
    });
    let started = Instant::now();
    for strict in [false, true] {
        let e = fetch_server_certificate(&addr, strict, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::Timeout(_)), "{e:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_reads_a_ca_issued_certificate_and_its_names() {
    let (identity, _) = acme_identity();
    for server in [Encryption::Required, Encryption::Strict] {
        let erp = erp(FakeErpConfig {
            identity: Some(identity.clone()),
            ..mode(server)
        })
        .await;
        let c = fetch_server_certificate(
            &format!("localhost:{}", erp.local_addr().port()),
            server == Encryption::Strict,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(c.subject, LEAF_SUBJECT);
        assert_eq!(c.issuer, CA_SUBJECT);
        assert!(!c.self_signed);
        assert_eq!(c.dns_names, ["erp01.acme.test", "10.1.2.3"]);
        assert_eq!(c.not_after.format("%Y-%m-%d").to_string(), "2031-05-06");
        assert_eq!(c.not_before.format("%Y-%m-%d").to_string(), "2024-01-01");
    }
}

// ---------------------------------------------------------------- the connect error

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_self_signed_certificate_is_named_in_the_error() {
    for server in [Encryption::Optional, Encryption::Required, Encryption::Strict] {
        let erp = erp(mode(server)).await;
        let ado = format!("{};Encrypt={}", base(erp.local_addr()), encrypt_for(server));
        let (msg, cert) = certificate_error(&ado).await;
        assert!(
            msg.contains(&format!(
                "(subject {FAKE_SUBJECT}; issuer the same — self-signed; valid for localhost, 127.0.0.1, ::1"
            )),
            "{server:?}: {msg}"
        );
        assert!(msg.contains("; expires "), "{server:?}: {msg}");
        assert!(
            msg.contains("was not trusted: it is self-signed, and not trusted here (UnknownIssuer)"),
            "{server:?}: {msg}"
        );
        assert_keywords(&msg);
        // 127.0.0.1 is among its names: no HostNameInCertificate advice.
        assert!(!msg.contains("HostNameInCertificate"), "{server:?}: {msg}");
        let cert = cert.expect("the certificate in the error");
        assert_eq!(
            cert.pem().trim(),
            erp.certificate_pem().unwrap().replace("\r\n", "\n").trim()
        );

        // What the message says works: that very certificate, by path.
        let dir = temp_dir("self");
        let path = write(&dir, "fetched.pem", &cert.pem());
        connect(&format!("{ado};Server Certificate={}", path.display()))
            .await
            .unwrap_or_else(|e| panic!("{server:?}: trusting the fetched certificate: {e}"));
    }
    // Encrypt=false against a server that forces encryption: checked, and named too.
    let forced = erp(mode(Encryption::Required)).await;
    let (msg, _) = certificate_error(&format!("{};Encrypt=false", base(forced.local_addr()))).await;
    assert!(msg.contains(FAKE_SUBJECT), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_host_name_in_certificate_names_the_names_it_is_valid_for() {
    let erp = erp(mode(Encryption::Required)).await;
    let dir = temp_dir("name");
    let path = write(&dir, "erp.pem", erp.certificate_pem().unwrap());
    let ado = format!(
        "{};Encrypt=true;Server Certificate={};HostNameInCertificate=other.example.com",
        base(erp.local_addr()),
        path.display()
    );
    let (msg, _) = certificate_error(&ado).await;
    assert!(
        msg.contains("it is not valid for other.example.com, only for localhost, 127.0.0.1, ::1"),
        "{msg}"
    );
    assert!(msg.contains("HostNameInCertificate=localhost"), "{msg}");
    assert!(msg.contains(&format!("subject {FAKE_SUBJECT}")), "{msg}");
    assert_keywords(&msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_issued_certificate_names_subject_issuer_and_the_fix_that_works() {
    let (identity, ca_pem) = acme_identity();
    let dir = temp_dir("acme");
    let ca_path = write(&dir, "acme-ca.pem", &ca_pem);
    for server in [Encryption::Required, Encryption::Strict] {
        let erp = erp(FakeErpConfig {
            identity: Some(identity.clone()),
            ..mode(server)
        })
        .await;
        let ado = format!("{};Encrypt={}", base(erp.local_addr()), encrypt_for(server));

        // Untrusted: subject, issuer, names, expiry and the keywords.
        let (msg, cert) = certificate_error(&ado).await;
        assert!(
            msg.contains(&format!(
                "(subject {LEAF_SUBJECT}; issuer {CA_SUBJECT}; valid for erp01.acme.test, 10.1.2.3; expires 2031-05-06)"
            )),
            "{server:?}: {msg}"
        );
        assert!(
            msg.contains(&format!(
                "Trust its issuer with `Server Certificate=PATH` (the PEM or DER file of the CA certificate {CA_SUBJECT})"
            )),
            "{server:?}: {msg}"
        );
        assert!(
            msg.contains("was not trusted: its issuer is not a CA trusted here (UnknownIssuer)"),
            "{server:?}: {msg}"
        );
        assert!(
            msg.contains("it is not valid for 127.0.0.1, only for erp01.acme.test, 10.1.2.3")
                && msg.contains("HostNameInCertificate=erp01.acme.test"),
            "{server:?}: {msg}"
        );
        assert_keywords(&msg);
        let cert = cert.unwrap();
        assert_eq!(
            (cert.subject.as_str(), cert.issuer.as_str()),
            (LEAF_SUBJECT, CA_SUBJECT)
        );

        // The CA trusted but the name not given: still refused, and the name is advised.
        let by_ca = format!("{ado};Server Certificate={}", ca_path.display());
        let (msg, _) = certificate_error(&by_ca).await;
        assert!(
            msg.contains("HostNameInCertificate=erp01.acme.test"),
            "{server:?}: {msg}"
        );
        assert!(msg.contains(&format!("issuer {CA_SUBJECT}")), "{server:?}: {msg}");

        // A wrong name: the names it is valid for.
        let (msg, _) = certificate_error(&format!("{by_ca};HostNameInCertificate=erp02.acme.test")).await;
        assert!(
            msg.contains("it is not valid for erp02.acme.test, only for erp01.acme.test, 10.1.2.3"),
            "{server:?}: {msg}"
        );

        // The advice followed: the CA by path and the name it gave.
        connect(&format!("{by_ca};HostNameInCertificate=erp01.acme.test"))
            .await
            .unwrap_or_else(|e| panic!("{server:?}: following the advice: {e}"));
    }
}

/// Forwards the first connection to `to` and closes every later one at once: the connect
/// meets the certificate, the probe meets a closed door.
async fn first_connection_only(to: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if seen.fetch_add(1, Ordering::SeqCst) > 0 {
                drop(client);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_probe_fails_the_message_is_todays() {
    let erp = erp(mode(Encryption::Required)).await;
    let (proxy, task) = first_connection_only(erp.local_addr()).await;
    let ado = format!("{};Encrypt=true", base(proxy));
    let (msg, cert) = certificate_error(&ado).await;
    assert!(cert.is_none(), "{cert:?}");
    assert!(!msg.contains("subject"), "{msg}");
    assert!(
        msg.contains("was not trusted: UnknownIssuer. Trust exactly that certificate"),
        "{msg}"
    );
    assert_keywords(&msg);
    task.abort();
}

// ---------------------------------------------------------------- the command line

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_exits_1_naming_subject_issuer_and_keywords() {
    let (identity, _) = acme_identity();
    let erp = erp(FakeErpConfig {
        identity: Some(identity),
        ..mode(Encryption::Required)
    })
    .await;
    let url = format!("{};Encrypt=true", base(erp.local_addr()));
    let dir = temp_dir("cli");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_sync-app"))
            .arg("sync")
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "off")
            .env("MSSQL_URL", url)
            .stdin(Stdio::null())
            .output()
            .expect("run sync-app")
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for part in [
        LEAF_SUBJECT,
        CA_SUBJECT,
        "TrustServerCertificate=true",
        "Server Certificate=PATH",
        "HostNameInCertificate=erp01.acme.test",
    ] {
        assert!(err.contains(part), "{part} missing: {err}");
    }
}
