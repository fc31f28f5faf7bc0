//! `MSSQL_URL`: our ADO.NET connection-string parser (every SqlClient keyword honoured,
//! accepted without effect, or refused by name), the address forms, and connecting to the
//! fake ERP with them: encryption modes × `Encrypt`, certificate trust, SQL Server Browser,
//! token login, timeouts, packet size and application name.
mod common;

use common::temp_dir;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_mssql::{Encryption, Reply, ServerConfig, SqlError};
use futures::StreamExt;
use sync_app::erp::ado::{AdoSettings, Encrypt, IpPreference, ServerAddress};
use sync_app::erp::{DEFAULT_SOURCE_QUERY, ErpSource, Login, SourceError};
use sync_app::fake_erp::{Failure, FakeErpConfig, FakeErpHandle};

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(ado: &str) -> Result<AdoSettings, String> {
    AdoSettings::parse_with_env(ado, &no_env).map_err(|e| e.to_string())
}

const BASE: &str = "Server=tcp:db.example.com,1433;User ID=sync;Password=pw";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Honoured,
    NoEffect,
    Refused,
}
use Expect::*;

/// Every keyword (and synonym) SqlClient documents, with a value, and what must happen.
const TABLE: &[(&str, &str, Expect)] = &[
    ("Data Source", "tcp:h,1433", Honoured),
    ("Server", "h", Honoured),
    ("Address", "h", Honoured),
    ("Addr", "h", Honoured),
    ("Network Address", "h", Honoured),
    ("Initial Catalog", "erp", Honoured),
    ("Database", "erp", Honoured),
    ("User ID", "u", Honoured),
    ("UID", "u", Honoured),
    ("User", "u", Honoured),
    ("Password", "p", Honoured),
    ("PWD", "p", Honoured),
    ("Integrated Security", "false", Honoured),
    ("Integrated Security", "true", Refused),
    ("Integrated Security", "SSPI", Refused),
    ("Trusted_Connection", "yes", Refused),
    ("Authentication", "SqlPassword", Honoured),
    ("Authentication", "Sql Password", Honoured),
    ("Authentication", "ActiveDirectoryPassword", Refused),
    ("Authentication", "ActiveDirectoryIntegrated", Refused),
    ("Authentication", "ActiveDirectoryInteractive", Refused),
    ("Authentication", "ActiveDirectoryServicePrincipal", Refused),
    ("Authentication", "ActiveDirectoryDeviceCodeFlow", Refused),
    ("Authentication", "ActiveDirectoryManagedIdentity", Refused),
    ("Authentication", "ActiveDirectoryMSI", Refused),
    ("Authentication", "ActiveDirectoryDefault", Refused),
    ("Authentication", "ActiveDirectoryWorkloadIdentity", Refused),
    ("Encrypt", "true", Honoured),
    ("Encrypt", "Strict", Honoured),
    ("Encrypt", "maybe", Refused),
    ("TrustServerCertificate", "true", Honoured),
    ("Trust Server Certificate", "no", Honoured),
    ("HostNameInCertificate", "db.example.com", Honoured),
    ("Host Name In Certificate", "db.example.com", Honoured),
    ("Server Certificate", "/nonexistent/server.pem", Refused), // unreadable file
    ("Connect Timeout", "5", Honoured),
    ("Connection Timeout", "0", Honoured),
    ("Timeout", "5", Honoured),
    ("Connect Timeout", "-1", Refused),
    ("Command Timeout", "0", Honoured),
    ("Command Timeout", "soon", Refused),
    ("Packet Size", "8000", Honoured),
    ("Packet Size", "100", Refused),
    ("Application Name", "nightly", Honoured),
    ("App", "nightly", Honoured),
    ("Application Intent", "ReadOnly", Honoured),
    ("ApplicationIntent", "ReadWrite", Honoured),
    ("ApplicationIntent", "Sideways", Refused),
    ("MultiSubnetFailover", "True", Honoured),
    ("Multi Subnet Failover", "false", Honoured),
    ("Workstation ID", "ws1", Honoured),
    ("WSID", "ws1", Honoured),
    ("IP Address Preference", "IPv6First", Honoured),
    ("IPAddressPreference", "UsePlatformDefault", Honoured),
    ("Network Library", "dbmssocn", Honoured),
    ("Net", "dbnmpntw", Refused),
    ("Network", "dbmslpcn", Refused),
    ("Current Language", "english", Refused),
    ("Language", "deutsch", Refused),
    ("Persist Security Info", "false", NoEffect),
    ("PersistSecurityInfo", "true", NoEffect),
    ("Pooling", "false", NoEffect),
    ("Pooling", "perhaps", Refused),
    ("Max Pool Size", "100", NoEffect),
    ("Min Pool Size", "0", NoEffect),
    ("Connection Lifetime", "0", NoEffect),
    ("Load Balance Timeout", "0", NoEffect),
    ("Pool Blocking Period", "Auto", NoEffect),
    ("PoolBlockingPeriod", "NeverBlock", NoEffect),
    ("Connection Reset", "true", NoEffect),
    ("Enlist", "false", NoEffect),
    ("Transaction Binding", "Implicit Unbind", NoEffect),
    ("Asynchronous Processing", "true", NoEffect),
    ("Async", "true", NoEffect),
    ("Connect Retry Count", "1", NoEffect),
    ("ConnectRetryCount", "256", Refused),
    ("Connect Retry Interval", "10", NoEffect),
    ("ConnectRetryInterval", "10", NoEffect),
    ("TransparentNetworkIPResolution", "false", NoEffect),
    ("Transparent Network IP Resolution", "true", NoEffect),
    ("Type System Version", "Latest", Honoured),
    ("Type System Version", "SQL Server 2005", Refused),
    ("MultipleActiveResultSets", "false", Honoured),
    ("Multiple Active Result Sets", "true", Refused),
    ("Failover Partner", "mirror", Refused),
    ("Failover Partner SPN", "MSSQLSvc/mirror", Refused),
    ("FailoverPartnerSPN", "MSSQLSvc/mirror", Refused),
    ("Server SPN", "MSSQLSvc/h:1433", Refused),
    ("ServerSPN", "MSSQLSvc/h:1433", Refused),
    ("AttachDBFilename", "C:\\data\\erp.mdf", Refused),
    ("Extended Properties", "x.mdf", Refused),
    ("Initial File Name", "x.mdf", Refused),
    ("User Instance", "true", Refused),
    ("User Instance", "false", Honoured),
    ("Replication", "true", Refused),
    ("Replication", "false", Honoured),
    ("Context Connection", "true", Refused),
    ("Column Encryption Setting", "Enabled", Refused),
    ("Column Encryption Setting", "Disabled", Honoured),
    ("Enclave Attestation Url", "https://attest", Refused),
    ("Attestation Protocol", "HGS", Refused),
    ("Provider", "SQLOLEDB", Refused),
    ("Driver", "{ODBC Driver 18 for SQL Server}", Refused),
    ("Initial Catalogue", "erp", Refused), // a typo is an unknown keyword
    ("Encrypted", "true", Refused),
];

#[test]
fn every_keyword_is_honoured_accepted_or_refused_by_name() {
    let mut failures = Vec::new();
    for &(keyword, value, expect) in TABLE {
        // The keyword last, so that it wins over BASE's own where it is a synonym.
        let ado = format!("{BASE};{keyword}={value}");
        match (parse(&ado), expect) {
            (Ok(s), Honoured) if s.without_effect.is_empty() => {}
            (Ok(s), NoEffect) if s.without_effect == vec![keyword.to_string()] => {}
            (Err(e), Refused) if e.contains(&format!("`{keyword}`")) => {}
            (got, _) => failures.push(format!("{keyword}={value}: expected {expect:?}, got {got:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn keywords_are_case_insensitive_and_spaces_are_trimmed() {
    let s = parse(
        "  sErVeR = tcp:h , 1500 ;  INITIAL CATALOG =  erp  ; uid=u; PWD = ' p w ' ;APP= Nightly Sync ",
    )
    .unwrap();
    assert_eq!(s.server.port, Some(1500));
    assert_eq!(s.database.as_deref(), Some("erp"));
    assert_eq!(s.application_name, "Nightly Sync");
    assert_eq!(
        s.login,
        Login::Sql {
            user: "u".into(),
            password: " p w ".into()
        }
    );
}

#[test]
fn quoting_duplicates_and_non_ascii() {
    let pw = |ado: &str| match parse(ado).unwrap().login {
        Login::Sql { password, .. } => password,
        other => panic!("{other:?}"),
    };
    assert_eq!(pw("Server=h;User ID=u;Password='a;b=c'"), "a;b=c");
    assert_eq!(pw("Server=h;User ID=u;Password=\"it's\""), "it's");
    assert_eq!(pw("Server=h;User ID=u;Password='it''s'"), "it's");
    assert_eq!(pw("Server=h;User ID=u;Password=\"say \"\"hi\"\"\""), "say \"hi\"");
    // `{…}` is ODBC quoting, not ADO.NET's: braces are part of the value.
    assert_eq!(pw("Server=h;User ID=u;Password={abc}"), "{abc}");
    // …so `{a;b}` ends at the `;`; the error names `Password`, never the password's tail.
    let e = parse("Server=h;User ID=u;Password={se;cret};Command Timeout=abc").unwrap_err();
    assert!(e.contains("`Password`") && !e.contains("cret"), "{e}");
    // The last duplicate wins, across synonyms too.
    assert_eq!(pw("Server=h;User ID=u;Password=one;PWD=two"), "two");
    assert_eq!(
        parse("Server=a;Data Source=b;Addr=c;User ID=u")
            .unwrap()
            .server
            .host,
        "c"
    );
    assert_eq!(
        parse("Server=h;User ID=u;Database=a;Initial Catalog=b")
            .unwrap()
            .database
            .as_deref(),
        Some("b")
    );
    // Non-ASCII values, quoted and not.
    assert_eq!(pw("Server=h;User ID=u;Password=Grüße€😀"), "Grüße€😀");
    assert_eq!(pw("Server=h;User ID=u;Password='пароль;ü'"), "пароль;ü");
    let s = parse("Server=h;User ID=Jürgen;Password=x;Database=Bücher;App=Überweisung").unwrap();
    assert_eq!(s.database.as_deref(), Some("Bücher"));
    assert_eq!(s.application_name, "Überweisung");
    // Syntax errors name the keyword.
    assert!(
        parse("Server=h;User ID=u;Password='open")
            .unwrap_err()
            .contains("`Password`")
    );
    assert!(
        parse("Server=h;User ID=u;Password")
            .unwrap_err()
            .contains("`Password`")
    );
    // `==` is an escaped `=` in a keyword (which then is unknown, and named).
    assert!(parse("Server=h;User ID=u;a==b=c").unwrap_err().contains("`a=b`"));
}

#[test]
fn address_forms() {
    let addr = |v: &str| parse(&format!("Server={v};User ID=u")).map(|s| s.server);
    let a = |host: &str, port: Option<u16>, instance: Option<&str>| ServerAddress {
        host: host.into(),
        port,
        instance: instance.map(Into::into),
    };
    assert_eq!(addr("tcp:db,1433").unwrap(), a("db", Some(1433), None));
    assert_eq!(addr("TCP:db , 1500").unwrap(), a("db", Some(1500), None));
    assert_eq!(addr("Tcp: db ,1500 ").unwrap(), a("db", Some(1500), None));
    assert_eq!(addr("db").unwrap(), a("db", None, None));
    assert_eq!(addr("(local)").unwrap(), a("localhost", None, None));
    assert_eq!(addr(".").unwrap(), a("localhost", None, None));
    assert_eq!(
        addr(".\\SQLEXPRESS").unwrap(),
        a("localhost", None, Some("SQLEXPRESS"))
    );
    assert_eq!(addr("(local),1500").unwrap(), a("localhost", Some(1500), None));
    assert_eq!(addr("db\\ERP").unwrap(), a("db", None, Some("ERP")));
    assert_eq!(
        addr("tcp:db\\ERP,1600").unwrap(),
        a("db", Some(1600), Some("ERP"))
    );
    assert_eq!(addr("[::1],1433").unwrap(), a("::1", Some(1433), None));
    assert_eq!(addr("::1,1433").unwrap(), a("::1", Some(1433), None));
    assert_eq!(addr("tcp:[fe80::1]").unwrap(), a("fe80::1", None, None));
    for bad in [
        "np:\\\\db\\pipe\\sql\\query",
        "lpc:db",
        "admin:db",
        "db,port",
        "db,0",
        "db\\",
        "(localdb)\\v11",
        "",
    ] {
        let e = addr(bad).unwrap_err();
        assert!(e.contains("`Server`"), "{bad}: {e}");
    }
    let s = parse("Server=db;User ID=u;IP Address Preference=IPv6First").unwrap();
    assert_eq!(s.ip_preference, IpPreference::Ipv6First);
}

#[test]
fn logins() {
    // A Windows account, Integrated Security and a missing login are refused by name.
    let e = parse("Server=h;User ID=CORP\\sync;Password=p").unwrap_err();
    assert!(e.contains("`User ID`") && e.contains("sspi-rs"), "{e}");
    // Without a user: the current Kerberos ticket, which needs the `kerberos` feature.
    #[cfg(not(feature = "kerberos"))]
    {
        let e = parse("Server=h;Trusted_Connection=True").unwrap_err();
        assert!(
            e.contains("`Trusted_Connection`") && e.contains("`kerberos` cargo feature"),
            "{e}"
        );
    }
    #[cfg(feature = "kerberos")]
    assert!(parse("Server=h;Trusted_Connection=True").is_ok());
    // With a user and password (NTLM): refused in any build, naming sspi-rs.
    let e = parse("Server=h;Integrated Security=SSPI;User ID=CORP\\alice;Password=x").unwrap_err();
    assert!(
        e.contains("`Integrated Security`") && e.contains("sspi-rs"),
        "{e}"
    );
    let e = parse("Server=h").unwrap_err();
    assert!(e.contains("`User ID`"), "{e}");
    // The access token.
    let env = |name: &str| (name == "MSSQL_ACCESS_TOKEN").then(|| "tok-123\n".to_string());
    let s = AdoSettings::parse_with_env("Server=h;Authentication=ActiveDirectoryAccessToken", &env).unwrap();
    assert_eq!(s.login, Login::AccessToken("tok-123".into()));
    let e = AdoSettings::parse_with_env("Server=h;Authentication=ActiveDirectoryAccessToken", &no_env)
        .unwrap_err();
    assert!(e.to_string().contains("`Authentication`") && e.to_string().contains("MSSQL_ACCESS_TOKEN"));
    let e = AdoSettings::parse_with_env(
        "Server=h;User ID=u;Authentication=ActiveDirectoryAccessToken",
        &env,
    )
    .unwrap_err();
    assert!(e.to_string().contains("`User ID`"), "{e}");
    // From a file.
    let dir = temp_dir("token");
    let file = dir.join("token");
    std::fs::write(&file, "tok-from-file\n").unwrap();
    let file_s = file.display().to_string();
    let env = move |name: &str| (name == "MSSQL_ACCESS_TOKEN_FILE").then(|| file_s.clone());
    let s = AdoSettings::parse_with_env("Server=h;Authentication=ActiveDirectoryAccessToken", &env).unwrap();
    assert_eq!(s.login, Login::AccessToken("tok-from-file".into()));
}

#[test]
fn timeouts_zero_is_no_limit_and_app_name_default() {
    let s = parse("Server=h;User ID=u;Connect Timeout=0;Command Timeout=0").unwrap();
    assert_eq!(s.timeouts.connect, None);
    assert_eq!(s.timeouts.command, None);
    let source = ErpSource::from_ado_with_env("Server=h;User ID=u;Connect Timeout=0", &no_env).unwrap();
    assert_eq!(source.tiberius_config().get_handshake_timeout(), None);
    let s = parse("Server=h;User ID=u;Timeout=7;Command Timeout=120").unwrap();
    assert_eq!(s.timeouts.connect, Some(Duration::from_secs(7)));
    assert_eq!(s.timeouts.command, Some(Duration::from_secs(120)));
    assert_eq!(parse("Server=h;User ID=u").unwrap().application_name, "sync-app");
    assert_eq!(
        parse("Server=h;User ID=u;Encrypt=no").unwrap().encrypt,
        Encrypt::Optional
    );
    assert_eq!(
        parse("Server=h;User ID=u;Encrypt=Mandatory").unwrap().encrypt,
        Encrypt::Mandatory
    );
    assert_eq!(
        parse("Server=h;User ID=u;Encrypt=optional").unwrap().encrypt,
        Encrypt::Optional
    );
    assert!(
        parse("Server=h;User ID=u;TrustServerCertificate=true;Server Certificate=/etc/hostname")
            .unwrap_err()
            .contains("`Server Certificate`")
    );
}

// ---------------------------------------------------------------- against the fake ERP

async fn erp(config: FakeErpConfig) -> FakeErpHandle {
    common::spawn_erp(FakeErpConfig { orders: 25, ..config }).await
}

use common::erp_mode as mode;

/// Connects and reads every open order; the number read.
async fn read_all(source: &ErpSource) -> Result<usize, SourceError> {
    let (mut conn, _) = source.connect().await?;
    let mut rows = std::pin::pin!(conn.stream_open_orders(DEFAULT_SOURCE_QUERY));
    let mut n = 0;
    while let Some(r) = rows.next().await {
        r?;
        n += 1;
    }
    Ok(n)
}

fn source(ado: &str) -> ErpSource {
    ErpSource::from_ado_with_env(ado, &no_env).unwrap_or_else(|e| panic!("{ado}: {e}"))
}

fn base(addr: SocketAddr) -> String {
    format!(
        "Server=tcp:127.0.0.1,{};Database=erp;User ID=sync;Password=sync;Connect Timeout=3",
        addr.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_encryption_mode_by_every_encrypt_value() {
    use Encryption::*;
    // (server mode, Encrypt=, connects?)
    let cases = [
        (Off, "false", true), // tiberius alone fails a client Off against NOT_SUP; we read in clear text
        (Off, "no", true),
        (Off, "true", false),
        (Off, "strict", false),
        (Off, "DANGER_PLAINTEXT", true),
        (Optional, "false", true),
        (Optional, "optional", true),
        (Optional, "true", true),
        (Optional, "yes", true),
        (Optional, "strict", true), // as SQL Server 2022: TDS 8.0 whenever it has a certificate
        (Optional, "DANGER_PLAINTEXT", true),
        (Required, "false", true),
        (Required, "true", true),
        (Required, "mandatory", true),
        (Required, "strict", true),
        (Required, "DANGER_PLAINTEXT", false),
        (Strict, "strict", true),
        (Strict, "false", false),
        (Strict, "true", false),
        (Strict, "DANGER_PLAINTEXT", false),
    ];
    let mut failures = Vec::new();
    for (server, encrypt, ok) in cases {
        let erp = erp(mode(server)).await;
        let ado = format!(
            "{};Encrypt={encrypt};TrustServerCertificate=true",
            base(erp.local_addr())
        );
        let got = read_all(&source(&ado)).await;
        match (&got, ok) {
            (Ok(25), true) | (Err(_), false) => {}
            _ => failures.push(format!(
                "server {server:?}, Encrypt={encrypt}: expected ok={ok}, got {got:?}"
            )),
        }
        if let (Err(e), Off, "true") = (&got, server, encrypt) {
            let msg = format!("{e}");
            assert!(msg.contains("has no TLS") && msg.contains("Encrypt"), "{msg}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_trusted_by_path_by_trust_server_certificate_or_not_at_all() {
    for server in [Encryption::Required, Encryption::Optional, Encryption::Strict] {
        let erp = erp(mode(server)).await;
        let encrypt = if server == Encryption::Strict {
            "strict"
        } else {
            "true"
        };
        let pem = erp.certificate_pem().expect("a certificate");
        let dir = temp_dir("cert");
        let path = dir.join("erp.pem");
        std::fs::write(&path, pem).unwrap();
        let base = format!("{};Encrypt={encrypt}", base(erp.local_addr()));

        let by_path = format!("{base};Server Certificate={}", path.display());
        assert_eq!(
            read_all(&source(&by_path)).await.unwrap(),
            25,
            "{server:?} by path"
        );
        let by_trust = format!("{base};TrustServerCertificate=true");
        assert_eq!(
            read_all(&source(&by_trust)).await.unwrap(),
            25,
            "{server:?} TrustServerCertificate"
        );

        let e = read_all(&source(&base)).await.unwrap_err();
        assert!(matches!(e, SourceError::Certificate { .. }), "{server:?}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("TrustServerCertificate=true") && msg.contains("Server Certificate=PATH"),
            "{msg}"
        );
        assert!(
            !msg.contains("Config::trust_cert"),
            "tiberius's API names leak: {msg}"
        );

        // The right certificate under another name: HostNameInCertificate names it.
        let wrong_name = format!("{by_path};HostNameInCertificate=other.example.com");
        let e = read_all(&source(&wrong_name)).await.unwrap_err();
        assert!(e.to_string().contains("HostNameInCertificate"), "{e}");
        let right_name = format!("{by_path};HostNameInCertificate=localhost");
        assert_eq!(read_all(&source(&right_name)).await.unwrap(), 25);
    }
    // Encrypt=false: the login-only TLS is not checked (SqlClient), unless the server forces
    // encryption — then it is.
    let optional = erp(mode(Encryption::Optional)).await;
    let ado = format!("{};Encrypt=false", base(optional.local_addr()));
    assert_eq!(read_all(&source(&ado)).await.unwrap(), 25);
    let forced = erp(mode(Encryption::Required)).await;
    let ado = format!("{};Encrypt=false", base(forced.local_addr()));
    let e = read_all(&source(&ado)).await.unwrap_err();
    assert!(matches!(e, SourceError::Certificate { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_instance_through_sql_server_browser() {
    let erp = erp(FakeErpConfig {
        instance: Some(("SQLEXPRESS".into(), "127.0.0.1:0".parse().unwrap())),
        ..FakeErpConfig::default()
    })
    .await;
    let browser = erp.browser_addr().expect("a browser");
    let ado = "Server=127.0.0.1\\sqlexpress;Database=erp;User ID=sync;Password=sync;TrustServerCertificate=true;Connect Timeout=3";
    let s = source(ado).with_sql_browser_port(browser.port());
    let (conn, info) = s.connect().await.expect("connect through the browser");
    assert_eq!(info.addr, format!("127.0.0.1:{}", erp.local_addr().port()));
    conn.close().await;
    // `.\INSTANCE` is localhost.
    let s = source(&ado.replace("127.0.0.1", ".")).with_sql_browser_port(browser.port());
    assert_eq!(read_all(&s).await.unwrap(), 25);

    // An instance the browser does not know: no answer; the error names the instance and the browser.
    let started = Instant::now();
    let s = source(
        &ado.replace("sqlexpress", "NOPE")
            .replace("Timeout=3", "Timeout=1"),
    )
    .with_sql_browser_port(browser.port());
    let e = s.connect().await.unwrap_err().to_string();
    assert!(
        e.contains("NOPE")
            && e.contains("SQL Server Browser")
            && e.contains(&format!("127.0.0.1:{}", browser.port())),
        "{e}"
    );
    assert!(e.contains("Connect Timeout"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by Connect Timeout"
    );

    // Nothing listening on the browser port at all.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    drop(silent);
    let s = source(&ado.replace("Timeout=3", "Timeout=1")).with_sql_browser_port(port);
    let e = s.connect().await.unwrap_err().to_string();
    assert!(
        e.contains("sqlexpress") && e.contains("SQL Server Browser"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_login() {
    let erp = erp(FakeErpConfig {
        access_token: Some("eyJ0b2tlbiI6dHJ1ZX0".into()),
        ..FakeErpConfig::default()
    })
    .await;
    let ado = format!(
        "Server=tcp:127.0.0.1,{};Database=erp;Authentication=ActiveDirectoryAccessToken;TrustServerCertificate=true",
        erp.local_addr().port()
    );
    let good = |n: &str| (n == "MSSQL_ACCESS_TOKEN").then(|| "eyJ0b2tlbiI6dHJ1ZX0".to_string());
    let s = ErpSource::from_ado_with_env(&ado, &good).unwrap();
    assert_eq!(read_all(&s).await.unwrap(), 25);
    let bad = |n: &str| (n == "MSSQL_ACCESS_TOKEN").then(|| "not-the-token".to_string());
    let s = ErpSource::from_ado_with_env(&ado, &bad).unwrap();
    assert!(matches!(
        read_all(&s).await.unwrap_err(),
        SourceError::Login { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_zero_multi_subnet_failover_and_ip_preference() {
    let erp = erp(FakeErpConfig::default()).await;
    let port = erp.local_addr().port();
    let ado = format!(
        "Server=tcp:127.0.0.1,{port};Database=erp;User ID=sync;Password=sync;TrustServerCertificate=true"
    );
    assert_eq!(
        read_all(&source(&format!("{ado};Connect Timeout=0")))
            .await
            .unwrap(),
        25
    );
    // localhost is ::1 and 127.0.0.1; the fake listens on the second only.
    let local = ado.replace("127.0.0.1", "localhost");
    for extra in [
        "MultiSubnetFailover=True",
        "IPAddressPreference=IPv6First",
        "MultiSubnetFailover=True;IPAddressPreference=IPv6First",
    ] {
        assert_eq!(
            read_all(&source(&format!("{local};{extra}"))).await.unwrap(),
            25,
            "{extra}"
        );
    }
    // Nothing listening: the error names the address.
    drop(erp);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = read_all(&source(&format!("{ado};Connect Timeout=2")))
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_size_and_application_name_reach_the_server() {
    let seen: Arc<Mutex<Vec<(usize, String, String)>>> = Arc::default();
    let record = seen.clone();
    let server = fake_mssql::Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default()
            .encryption(Encryption::Optional)
            .login("sync", "sync")
            .database("erp"),
        move |q: &fake_mssql::Query<'_>| {
            let s = q.session;
            record
                .lock()
                .unwrap()
                .push((s.packet_size, s.app_name.clone(), s.host_name.clone()));
            Reply::Error(SqlError::new(50_000, 16, "recorded"))
        },
    )
    .await
    .unwrap()
    .spawn();
    let ado = format!(
        "Server=tcp:127.0.0.1,{};Database=erp;User ID=sync;Password=sync;TrustServerCertificate=true",
        server.local_addr().port()
    );
    for (extra, size, app, wsid) in [
        ("", 4096, "sync-app", None),
        (
            ";Packet Size=8000;App=Nightly ERP import;WSID=ws-07",
            8000,
            "Nightly ERP import",
            Some("ws-07"),
        ),
        (";Packet Size=512;Application Name='a;b'", 512, "a;b", None),
        (";Packet Size=32767", 32767, "sync-app", None),
    ] {
        let s = source(&format!("{ado}{extra}"));
        let (mut conn, _) = s.connect().await.unwrap();
        let r = std::pin::pin!(conn.stream_open_orders("SELECT * FROM openorders"))
            .next()
            .await;
        assert!(matches!(r, Some(Err(SourceError::Query(_)))), "{r:?}");
        let (got_size, got_app, got_host) = seen.lock().unwrap().pop().expect("the query reached the server");
        assert_eq!((got_size, got_app.as_str()), (size, app), "{extra}");
        if let Some(wsid) = wsid {
            assert_eq!(got_host, wsid);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_timeout_catches_a_stalled_query() {
    let erp = erp(FakeErpConfig {
        fail: Some(Failure::Server(fake_mssql::Fault::StallAfter(5))),
        ..FakeErpConfig::default()
    })
    .await;
    let ado = format!(
        "Server=tcp:127.0.0.1,{};Database=erp;User ID=sync;Password=sync;TrustServerCertificate=true;Command Timeout=1",
        erp.local_addr().port()
    );
    let started = Instant::now();
    let e = read_all(&source(&ado)).await.unwrap_err();
    assert!(
        matches!(e, SourceError::Stalled(1) | SourceError::CommandTimeout(1)),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------- exit codes

const BIN: &str = env!("CARGO_BIN_EXE_sync-app");

fn sync_with(url: &str) -> std::process::Output {
    let dir = temp_dir("cli");
    Command::new(BIN)
        .arg("sync")
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "off")
        .env("MSSQL_URL", url)
        .stdin(Stdio::null())
        .output()
        .expect("run sync-app")
}

#[test]
fn a_refused_keyword_exits_2_naming_it() {
    for (url, keyword) in [
        (
            "Server=h;User ID=u;Password=p;Failover Partner=mirror",
            "`Failover Partner`",
        ),
        ("Server=h;User ID=u;Password=p;Colour=blue", "`Colour`"),
        (
            "Server=h;Integrated Security=SSPI;User ID=CORP\\alice;Password=x",
            "`Integrated Security`",
        ),
        (
            "Server=h;Authentication=ActiveDirectoryPassword;User ID=u;Password=p",
            "`Authentication`",
        ),
    ] {
        let out = sync_with(url);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(err.contains(keyword), "{url}: {err}");
        assert!(
            !err.contains("Password=p"),
            "the connection string is not echoed: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_exits_1_naming_the_keywords() {
    let erp = erp(mode(Encryption::Required)).await;
    let url = format!("{};Encrypt=true", base(erp.local_addr()));
    let out = tokio::task::spawn_blocking(move || sync_with(&url))
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("TrustServerCertificate=true") && err.contains("Server Certificate=PATH"),
        "{err}"
    );
}

/// `Integrated Security=true` without a user goes to tiberius's GSSAPI (feature `kerberos`).
/// A test machine has no Kerberos ticket, so the login fails in GSSAPI — on the client,
/// before the server is asked — and says so.
#[cfg(feature = "kerberos")]
#[tokio::test]
async fn integrated_security_uses_the_kerberos_ticket() {
    let erp = erp(mode(Encryption::Optional)).await;
    let ado = format!(
        "Server=tcp:127.0.0.1,{};Database=erp;Integrated Security=true;Encrypt=true;\
         TrustServerCertificate=true;Connect Timeout=5",
        erp.local_addr().port()
    );
    let source = ErpSource::from_ado(&ado).expect("Integrated Security=true is accepted");
    let err = source.connect().await.expect_err("no Kerberos ticket here");
    let mut chain = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        chain.push_str(&format!(": {c}"));
        cause = c.source();
    }
    assert!(chain.contains("GSSAPI"), "{chain}");
    assert_eq!(erp.stats().logins(), 0);
}
