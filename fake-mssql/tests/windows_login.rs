//! Windows logins (integrated security, NTLM in SSPI tokens) against fake-mssql.
//!
//! The client is tiberius with its `sspi-rs` feature (NTLM through the `sspi` crate, as on
//! Unix), built from `tests/ntlm-client`: a workspace of its own, because `sspi` 0.18 pins
//! release candidates of the RustCrypto crates that cannot share this workspace's lock file
//! with sqlx. The first run builds it (a few minutes); later runs reuse it. A raw TDS client
//! checks what tiberius cannot show: the exact tokens and that the server closes the
//! connection after refusing.
#![cfg(feature = "windows-auth")]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use fake_mssql::{Encryption, Fault, ServerConfig, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USER: &str = r"CORP\alice";
const PASSWORD: &str = "Secret1!";

fn windows_server() -> ServerConfig {
    ServerConfig::default().windows_login(USER, PASSWORD)
}

/// Builds the tiberius NTLM client once per test process; its path.
fn ntlm_client() -> &'static PathBuf {
    static CLIENT: OnceLock<PathBuf> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ntlm-client/Cargo.toml");
        // This test's own target directory (…/target/debug/deps/windows_login-HASH): the
        // client's dependencies are mostly this workspace's, so they are built once.
        let exe = std::env::current_exe().unwrap();
        let target = exe.ancestors().nth(3).expect("target directory").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--locked", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("running cargo to build tests/ntlm-client");
        assert!(status.success(), "building tests/ntlm-client failed: {status}");
        target.join("debug/fake-mssql-ntlm-client")
    })
}

/// What the tiberius client printed: `user=NAME`, `error=N class=C state=S message=TEXT` or
/// `failed=TEXT`.
async fn tiberius_login(server: &ServerHandle, encrypt: &str, user: &str, password: &str) -> String {
    let client = ntlm_client().clone();
    let ado = format!(
        "Server=tcp:127.0.0.1,{};Encrypt={encrypt};TrustServerCertificate=true;\
         Integrated Security=SSPI;User ID={user};Password={password}",
        server.local_addr().port()
    );
    let out = tokio::task::spawn_blocking(move || Command::new(client).arg(&ado).output())
        .await
        .unwrap()
        .expect("running the NTLM client");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let expected_code = match stdout.split('=').next() {
        Some("user") => Some(0),
        Some("error") => Some(2),
        _ => Some(1),
    };
    assert_eq!(
        out.status.code(),
        expected_code,
        "{stdout} / {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn the_windows_user_logs_in_through_tiberius_in_every_encryption_mode() {
    for (mode, encrypt) in [
        (Encryption::Off, "DANGER_PLAINTEXT"),
        (Encryption::Optional, "false"), // TLS for LOGIN7 only; the SSPI exchange is plaintext
        (Encryption::Optional, "true"),
        (Encryption::Required, "true"),
        (Encryption::Strict, "strict"),
    ] {
        let (server, tables) = spawn(windows_server().encryption(mode)).await;
        let got = tiberius_login(&server, encrypt, USER, PASSWORD).await;
        assert_eq!(got, r"user=CORP\alice", "{mode} / Encrypt={encrypt}");
        assert_eq!(tables.last().user, USER, "the handler sees the Windows login");
        assert_eq!(tables.last().sql, "SELECT tls FROM session");
        assert_eq!(server.stats().logins(), 1);
    }
}

#[tokio::test]
async fn user_and_domain_compare_case_insensitively() {
    let (server, tables) = spawn(windows_server()).await;
    let got = tiberius_login(&server, "true", r"corp\ALICE", PASSWORD).await;
    // The client's NTLMv2 hash covers its own spelling; the login keeps the configured one.
    assert_eq!(got, r"user=CORP\alice");
    assert_eq!(tables.last().user, USER);
}

#[tokio::test]
async fn a_wrong_password_is_error_18456() {
    let (server, tables) = spawn(windows_server()).await;
    for password in ["secret1!", "Secret1", ""] {
        let got = tiberius_login(&server, "true", USER, password).await;
        assert_eq!(
            got, r"error=18456 class=14 state=8 message=Login failed for user 'CORP\alice'.",
            "password {password:?}"
        );
    }
    assert_eq!(server.stats().logins(), 0);
    assert!(tables.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_wrong_user_or_domain_is_error_18456() {
    let (server, _) = spawn(windows_server()).await;
    for user in [r"CORP\bob", r"OTHER\alice", "alice"] {
        let got = tiberius_login(&server, "true", user, PASSWORD).await;
        assert_eq!(
            got,
            format!("error=18456 class=14 state=5 message=Login failed for user '{user}'."),
            "user {user:?}"
        );
    }
    assert_eq!(server.stats().logins(), 0);
}

#[tokio::test]
async fn a_sql_login_is_not_a_windows_login() {
    // The Windows account's name and password do not work as a SQL login, and the SQL login
    // still works beside the Windows one.
    let (server, _) = spawn(windows_server()).await;
    let mut config = config_for(&server);
    config.authentication(tiberius::AuthMethod::sql_server(USER, PASSWORD));
    let Err(e) = connect(config).await else {
        panic!("a SQL login with the Windows account's name was accepted")
    };
    assert_eq!(server_error(&e), Some((18456, 14)), "{e:?}");
    let mut client = connect_to(&server).await;
    assert_eq!(scalar_string(&mut client, "SELECT SUSER_SNAME()").await, "sync");
}

#[tokio::test]
async fn without_a_windows_login_integrated_security_is_error_18452() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let got = tiberius_login(&server, "true", USER, PASSWORD).await;
    assert_eq!(
        got,
        "error=18452 class=14 state=1 message=Login failed. The login is from an untrusted domain and \
         cannot be used with Integrated authentication."
    );
}

#[tokio::test]
async fn fault_login_refuses_windows_logins_too() {
    let (server, _) = spawn(windows_server().fault(Some(Fault::Login))).await;
    let got = tiberius_login(&server, "true", USER, PASSWORD).await;
    assert_eq!(
        got,
        r"error=18456 class=14 state=1 message=Login failed for user 'CORP\alice'."
    );
}

// ---------------------------------------------------------------------------------------------
// A raw TDS client (plain TCP, no TLS).

const SSPI_TOKEN: u8 = 0xED;
const ERROR_TOKEN: u8 = 0xAA;

struct Raw(TcpStream);

impl Raw {
    async fn connect(server: &ServerHandle) -> Raw {
        Raw(TcpStream::connect(server.local_addr()).await.unwrap())
    }

    async fn send(&mut self, ty: u8, payload: &[u8]) {
        let mut out = vec![ty, 1];
        out.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 1, 0]);
        out.extend_from_slice(payload);
        self.0.write_all(&out).await.unwrap();
    }

    /// A whole message; `None` if the server closed the connection first.
    async fn recv(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let mut header = [0u8; 8];
            self.0.read_exact(&mut header).await.ok()?;
            let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let mut payload = vec![0u8; len - 8];
            self.0.read_exact(&mut payload).await.ok()?;
            out.extend_from_slice(&payload);
            if header[1] & 1 != 0 {
                return Some(out);
            }
        }
    }

    /// PRELOGIN without TLS, then LOGIN7 with integrated security and `sspi`; the answer.
    async fn integrated_login(server: &ServerHandle, sspi: &[u8]) -> (Raw, Vec<u8>) {
        let mut raw = Raw::connect(server).await;
        // VERSION, ENCRYPTION = NOT_SUP, terminator.
        let prelogin = [0, 0, 11, 0, 6, 1, 0, 17, 0, 1, 0xFF, 9, 0, 0, 0, 0, 0, 2];
        raw.send(0x12, &prelogin).await;
        raw.recv().await.expect("PRELOGIN response");
        raw.send(0x10, &login7(sspi)).await;
        let answer = raw.recv().await.expect("an answer to LOGIN7");
        (raw, answer)
    }

    /// Whether the server has closed the connection (EOF or reset, within five seconds).
    async fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(5), self.0.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// A TDS 7.4 LOGIN7 with fIntSecurity and `sspi` as its SSPI data; no user or password.
fn login7(sspi: &[u8]) -> Vec<u8> {
    let strings = [
        ucs2("rawhost"),
        Vec::new(),
        Vec::new(),
        ucs2("raw-test"),
        ucs2("127.0.0.1"),
    ];
    let more = [Vec::new(), ucs2("raw"), Vec::new(), Vec::new()]; // extension, library, language, db
    let mut fixed = Vec::new();
    fixed.extend_from_slice(&0u32.to_le_bytes()); // length, patched below
    fixed.extend_from_slice(&0x7400_0004u32.to_le_bytes());
    fixed.extend_from_slice(&4096u32.to_le_bytes());
    fixed.extend_from_slice(&[7, 0, 0, 0, 0xD2, 0x04, 0, 0, 0, 0, 0, 0]); // version, pid, conn id
    fixed.extend_from_slice(&[0xE0, 0x83, 0, 0]); // OptionFlags2 0x80: fIntSecurity
    fixed.extend_from_slice(&[0, 0, 0, 0, 0x09, 0x04, 0, 0]); // time zone, LCID
    let mut data = Vec::new();
    let mut put = |fixed: &mut Vec<u8>, bytes: &[u8], units: usize| {
        fixed.extend_from_slice(&((94 + data.len()) as u16).to_le_bytes());
        fixed.extend_from_slice(&(units as u16).to_le_bytes());
        data.extend_from_slice(bytes);
    };
    for s in strings.iter().chain(&more) {
        put(&mut fixed, s, s.len() / 2);
    }
    fixed.extend_from_slice(&[0; 6]); // client id
    put(&mut fixed, sspi, sspi.len());
    put(&mut fixed, &[], 0); // attach db file
    put(&mut fixed, &[], 0); // change password
    fixed.extend_from_slice(&0u32.to_le_bytes()); // SSPI long
    assert_eq!(fixed.len(), 94);
    fixed.extend(data);
    let len = fixed.len() as u32;
    fixed[..4].copy_from_slice(&len.to_le_bytes());
    fixed
}

/// NTLM NEGOTIATE: Unicode, request target, NTLM, extended session security.
fn ntlm_negotiate() -> Vec<u8> {
    let mut m = b"NTLMSSP\0".to_vec();
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&0x0008_0205u32.to_le_bytes());
    m.extend_from_slice(&[0; 16]);
    m
}

/// An NTLM AUTHENTICATE for `domain\user` whose NTLMv2 response proves nothing (a zero
/// NTProofStr over a minimal blob).
fn ntlm_authenticate(domain: &str, user: &str) -> Vec<u8> {
    let mut nt = vec![0u8; 16];
    nt.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    nt.extend_from_slice(&[0; 8]); // timestamp
    nt.extend_from_slice(&[0x11; 8]); // client challenge
    nt.extend_from_slice(&[0; 4]);
    nt.extend_from_slice(&[0; 4]); // MsvAvEOL
    let (domain, user) = (ucs2(domain), ucs2(user));
    let fields = |m: &mut Vec<u8>, len: usize, offset: usize| {
        m.extend_from_slice(&(len as u16).to_le_bytes());
        m.extend_from_slice(&(len as u16).to_le_bytes());
        m.extend_from_slice(&(offset as u32).to_le_bytes());
    };
    let base = 88;
    let mut m = b"NTLMSSP\0".to_vec();
    m.extend_from_slice(&3u32.to_le_bytes());
    fields(&mut m, 0, base); // LM response
    fields(&mut m, nt.len(), base + domain.len() + user.len());
    fields(&mut m, domain.len(), base);
    fields(&mut m, user.len(), base + domain.len());
    fields(&mut m, 0, base); // workstation
    fields(&mut m, 0, base); // encrypted random session key
    m.extend_from_slice(&0x0008_0205u32.to_le_bytes());
    m.extend_from_slice(&[0; 8 + 16]); // version, MIC
    assert_eq!(m.len(), base);
    m.extend(domain);
    m.extend(user);
    m.extend(nt);
    m
}

/// The first ERROR token's number and message.
fn first_error(p: &[u8]) -> (u32, String) {
    assert_eq!(
        p[0], ERROR_TOKEN,
        "the answer starts with an ERROR token: {p:02x?}"
    );
    let number = u32::from_le_bytes([p[3], p[4], p[5], p[6]]);
    let chars = usize::from(u16::from_le_bytes([p[9], p[10]]));
    let text: Vec<u16> = p[11..11 + chars * 2]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    (number, String::from_utf16(&text).unwrap())
}

#[tokio::test]
async fn the_server_answers_negotiate_with_an_sspi_token_and_closes_after_a_refusal() {
    let (server, _) = spawn(windows_server().encryption(Encryption::Off)).await;
    let (mut raw, answer) = Raw::integrated_login(&server, &ntlm_negotiate()).await;
    // SSPI token (0xED, USHORT length) holding an NTLM CHALLENGE, and nothing else.
    assert_eq!(answer[0], SSPI_TOKEN, "{answer:02x?}");
    let len = usize::from(u16::from_le_bytes([answer[1], answer[2]]));
    assert_eq!(answer.len(), 3 + len, "the SSPI token is the whole message");
    let challenge = &answer[3..];
    assert!(challenge.starts_with(b"NTLMSSP\0\x02\0\0\0"), "{challenge:02x?}");

    // An AUTHENTICATE for the right account that does not prove the password.
    raw.send(0x11, &ntlm_authenticate("CORP", "alice")).await;
    let refusal = raw.recv().await.expect("a refusal");
    assert_eq!(
        first_error(&refusal),
        (18456, r"Login failed for user 'CORP\alice'.".to_owned())
    );
    assert!(
        raw.closed_by_server().await,
        "the connection is closed after the refusal"
    );

    // Another account: 18456 as well, naming the account the client claimed.
    let (mut raw, _) = Raw::integrated_login(&server, &ntlm_negotiate()).await;
    raw.send(0x11, &ntlm_authenticate("CORP", "mallory")).await;
    let refusal = raw.recv().await.expect("a refusal");
    assert_eq!(
        first_error(&refusal),
        (18456, r"Login failed for user 'CORP\mallory'.".to_owned())
    );
    assert!(raw.closed_by_server().await);

    // Anonymous NTLM.
    let (mut raw, _) = Raw::integrated_login(&server, &ntlm_negotiate()).await;
    let mut anonymous = ntlm_authenticate("", "");
    anonymous[20..22].copy_from_slice(&[0, 0]); // no NT response
    raw.send(0x11, &anonymous).await;
    let refusal = raw.recv().await.expect("a refusal");
    assert_eq!(first_error(&refusal).0, 18456);
    assert!(raw.closed_by_server().await);
    assert_eq!(server.stats().logins(), 0);
}

#[tokio::test]
async fn tokens_other_than_ntlm_and_unconfigured_servers_get_18452_and_a_closed_connection() {
    // Kerberos / SPNEGO (an ASN.1 token) against a server with a Windows login.
    let (server, _) = spawn(windows_server().encryption(Encryption::Off)).await;
    let (mut raw, answer) = Raw::integrated_login(&server, &[0x60, 0x82, 0x01, 0x00, 0x06]).await;
    assert_eq!(first_error(&answer).0, 18452);
    assert!(raw.closed_by_server().await);

    // NTLM against a server without a Windows login: refused at LOGIN7, before any challenge.
    let (server, _) = spawn(ServerConfig::default().encryption(Encryption::Off)).await;
    let (mut raw, answer) = Raw::integrated_login(&server, &ntlm_negotiate()).await;
    let (number, message) = first_error(&answer);
    assert_eq!(number, 18452);
    assert!(message.contains("untrusted domain"), "{message}");
    assert!(raw.closed_by_server().await);
}
