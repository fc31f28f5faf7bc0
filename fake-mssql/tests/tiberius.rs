//! fake-mssql driven by the real tiberius client: TLS modes, logins, session statements,
//! transactions, `sp_executesql`, big results, every type, faults, SQL Browser, concurrency.

mod common;

use std::time::Duration;

use chrono::{NaiveDate, NaiveTime};
use common::*;
use fake_mssql::{Encryption, Fault, ServerConfig, TlsState, Value};
use futures::TryStreamExt;
use tiberius::{AuthMethod, EncryptionLevel};

// ---------------------------------------------------------------------------------------------
// TLS

/// What a client with `level` gets from a server with `mode`: the TLS state the handler sees,
/// or `None` when the connection must fail.
fn expected_tls(mode: Encryption, level: EncryptionLevel) -> Option<TlsState> {
    use EncryptionLevel as L;
    match (mode, level) {
        // Encryption off: only a client without TLS gets in. tiberius turns "Off" + a server
        // that does not support TLS into "On" (its negotiation falls through to On) and then
        // fails the handshake — a tiberius quirk; SQL Server's own table says "no encryption".
        (Encryption::Off, L::NotSupported) => Some(TlsState::None),
        (Encryption::Off, _) => None,
        (Encryption::Optional, L::NotSupported) => Some(TlsState::None),
        (Encryption::Optional, L::Off) => Some(TlsState::LoginOnly),
        (Encryption::Optional, L::On | L::Required) => Some(TlsState::Full),
        (Encryption::Optional, L::Strict) => Some(TlsState::Strict),
        // Force Encryption: a client without TLS is refused.
        (Encryption::Required, L::NotSupported) => None,
        (Encryption::Required, L::Off | L::On | L::Required) => Some(TlsState::Full),
        (Encryption::Required, L::Strict) => Some(TlsState::Strict),
        (Encryption::Strict, L::Strict) => Some(TlsState::Strict),
        (Encryption::Strict, _) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_encryption_mode_with_every_client_setting() {
    use EncryptionLevel as L;
    let mut failures = Vec::new();
    for mode in [
        Encryption::Off,
        Encryption::Optional,
        Encryption::Required,
        Encryption::Strict,
    ] {
        let (server, tables) = spawn(ServerConfig::default().encryption(mode)).await;
        for level in [L::NotSupported, L::Off, L::On, L::Required, L::Strict] {
            let mut config = config_for(&server);
            config.encryption(level);
            config.trust_cert();
            config.handshake_timeout(Some(Duration::from_secs(10)));
            let outcome = match connect(config).await {
                Ok(mut client) => {
                    let shown = scalar_string(&mut client, "SELECT tls FROM session").await;
                    // The session must be usable after the login whatever TLS did.
                    let names = client
                        .simple_query("SELECT name FROM customers")
                        .await
                        .unwrap()
                        .into_first_result()
                        .await
                        .unwrap();
                    assert_eq!(names.len(), 2);
                    assert_eq!(format!("{:?}", tables.last().tls), shown);
                    Ok(tables.last().tls)
                }
                Err(e) => Err(e.to_string()),
            };
            let expected = expected_tls(mode, level);
            let ok = match (&outcome, expected) {
                (Ok(got), Some(want)) => *got == want,
                (Err(_), None) => true,
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "server {mode} / client {level:?}: expected {expected:?}, got {outcome:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn write_pem(server: &fake_mssql::ServerHandle, tag: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "fake-mssql-test-{}-{}-{tag}.pem",
        std::process::id(),
        server.local_addr().port()
    ));
    std::fs::write(&path, server.certificate_pem().expect("a certificate")).unwrap();
    path
}

#[tokio::test]
async fn the_certificate_is_trusted_through_its_pem_and_refused_without_it() {
    for (mode, level) in [
        (Encryption::Optional, EncryptionLevel::On),
        (Encryption::Required, EncryptionLevel::Required),
        (Encryption::Strict, EncryptionLevel::Strict),
    ] {
        let (server, _) = spawn(ServerConfig::default().encryption(mode)).await;
        let pem = write_pem(&server, &mode.to_string());
        let base = || {
            let mut c = tiberius::Config::new();
            c.host("127.0.0.1");
            c.port(server.local_addr().port());
            c.authentication(AuthMethod::sql_server("sync", "sync"));
            c.database("erp");
            c.encryption(level);
            c
        };
        let mut trusted = base();
        trusted.trust_cert_ca(pem.to_string_lossy());
        let mut client = connect(trusted)
            .await
            .unwrap_or_else(|e| panic!("{mode}: trusted CA refused: {e}"));
        assert_eq!(scalar_string(&mut client, "SELECT DB_NAME()").await, "erp");

        // localhost is in the certificate as well.
        let mut by_name = base();
        by_name.host("localhost");
        by_name.trust_cert_ca(pem.to_string_lossy());
        by_name.hostname_in_certificate("localhost");
        connect(by_name)
            .await
            .unwrap_or_else(|e| panic!("{mode}: localhost refused: {e}"));

        // Without trust the self-signed certificate must be rejected.
        let untrusted = base();
        let e = connect(untrusted)
            .await
            .err()
            .unwrap_or_else(|| panic!("{mode}: untrusted certificate accepted"));
        assert!(
            matches!(
                e,
                tiberius::error::Error::Tls(_) | tiberius::error::Error::Io { .. }
            ),
            "{mode}: {e:?}"
        );

        // A certificate for another name must be rejected too.
        let mut wrong_name = base();
        wrong_name.trust_cert_ca(pem.to_string_lossy());
        wrong_name.hostname_in_certificate("db.example.com");
        assert!(
            connect(wrong_name).await.is_err(),
            "{mode}: certificate name not checked"
        );
        let _ = std::fs::remove_file(pem);
    }
}

#[tokio::test]
async fn encryption_off_has_no_certificate() {
    let (server, _) = spawn(ServerConfig::default().encryption(Encryption::Off)).await;
    assert!(server.certificate_pem().is_none());
    assert!(
        server.ado_string().contains("Encrypt=DANGER_PLAINTEXT"),
        "{}",
        server.ado_string()
    );
    let mut client = connect_to(&server).await;
    assert_eq!(
        scalar_string(&mut client, "SELECT tls FROM session").await,
        "None"
    );
}

#[tokio::test]
async fn fault_tls_aborts_the_handshake() {
    for (mode, level) in [
        (Encryption::Optional, EncryptionLevel::On),
        (Encryption::Optional, EncryptionLevel::Off),
        (Encryption::Required, EncryptionLevel::Required),
        (Encryption::Strict, EncryptionLevel::Strict),
    ] {
        let (server, _) = spawn(ServerConfig::default().encryption(mode).fault(Some(Fault::Tls))).await;
        let mut config = config_for(&server);
        config.encryption(level);
        let e = connect(config)
            .await
            .err()
            .unwrap_or_else(|| panic!("{mode}/{level:?}: TLS fault ignored"));
        assert!(server_error(&e).is_none(), "{e:?}");
        assert_eq!(server.stats().logins(), 0);
    }
    // A client without TLS is not affected by the TLS fault.
    let (server, _) = spawn(ServerConfig::default().fault(Some(Fault::Tls))).await;
    let mut config = config_for(&server);
    config.encryption(EncryptionLevel::NotSupported);
    connect(config).await.expect("plaintext login with fault tls");
}

// ---------------------------------------------------------------------------------------------
// Logins

#[tokio::test]
async fn wrong_user_or_password_is_error_18456() {
    let (server, _) = spawn(ServerConfig::default().login("app", "s3cret")).await;
    for (user, password) in [("sync", "s3cret"), ("app", "wrong"), ("app", "")] {
        let mut config = config_for(&server);
        config.authentication(AuthMethod::sql_server(user, password));
        let e = connect(config).await.expect_err("a wrong login is refused");
        assert_eq!(server_error(&e), Some((18456, 14)), "{user}/{password}: {e:?}");
        assert!(
            e.to_string().contains(&format!("Login failed for user '{user}'")),
            "{e}"
        );
    }
    let mut config = config_for(&server);
    config.authentication(AuthMethod::sql_server("APP", "s3cret"));
    connect(config)
        .await
        .expect("login names are case-insensitive, passwords are not");
    assert_eq!(server.stats().logins(), 1);
}

#[tokio::test]
async fn unknown_database_is_error_4060() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let mut config = config_for(&server);
    config.database("nosuchdb");
    let e = connect(config).await.expect_err("an unknown database is refused");
    // tiberius reports the first error of the login (4060; 18456 follows it on the wire).
    assert_eq!(server_error(&e), Some((4060, 11)), "{e:?}");
    assert!(e.to_string().contains("Cannot open database \"nosuchdb\""), "{e}");

    // The system databases exist.
    let mut config = config_for(&server);
    config.database("master");
    let mut client = connect(config).await.unwrap();
    assert_eq!(scalar_string(&mut client, "SELECT DB_NAME()").await, "master");
}

#[tokio::test]
async fn an_access_token_is_accepted_and_a_wrong_one_refused() {
    let (server, tables) = spawn(ServerConfig::default().access_token("eyJ0eXAi.token")).await;
    let mut config = config_for(&server);
    config.authentication(AuthMethod::AADToken("eyJ0eXAi.token".into()));
    let mut client = connect(config).await.expect("token login");
    assert_eq!(
        scalar_string(&mut client, "SELECT SUSER_SNAME()").await,
        "token-user"
    );
    client
        .simple_query("SELECT name FROM customers")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(tables.last().user, "token-user");

    let mut config = config_for(&server);
    config.authentication(AuthMethod::AADToken("forged".into()));
    let e = connect(config).await.expect_err("a wrong token is refused");
    assert_eq!(server_error(&e), Some((18456, 14)), "{e:?}");

    // Without a configured token, no token is accepted.
    let (server, _) = spawn(ServerConfig::default()).await;
    let mut config = config_for(&server);
    config.authentication(AuthMethod::AADToken("anything".into()));
    let e = connect(config)
        .await
        .expect_err("a token without a configured token");
    assert_eq!(server_error(&e), Some((18456, 14)), "{e:?}");
}

#[tokio::test]
async fn fault_login_refuses_every_login() {
    let (server, tables) = spawn(ServerConfig::default().fault(Some(Fault::Login))).await;
    let e = connect(config_for(&server)).await.expect_err("fault login");
    assert_eq!(server_error(&e), Some((18456, 14)), "{e:?}");
    assert_eq!(server.stats().logins(), 0);
    assert!(tables.seen.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Session statements

#[tokio::test]
async fn session_statements_are_answered_by_the_server() {
    let (server, tables) = spawn(ServerConfig::default()).await;
    let mut client = connect_to(&server).await;

    // pymssql's connection batch, and others drivers send.
    for batch in [
        "SET ARITHABORT ON;SET CONCAT_NULL_YIELDS_NULL ON;SET ANSI_NULLS ON;SET ANSI_NULL_DFLT_ON ON;\
         SET ANSI_PADDING ON;SET ANSI_WARNINGS ON;SET ANSI_NULL_DFLT_ON ON;SET CURSOR_CLOSE_ON_COMMIT ON;\
         SET QUOTED_IDENTIFIER ON;SET TEXTSIZE 2147483647",
        "SET NOCOUNT ON",
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "set implicit_transactions off",
    ] {
        let results = client
            .simple_query(batch)
            .await
            .unwrap()
            .into_results()
            .await
            .unwrap();
        assert!(results.iter().all(Vec::is_empty), "{batch}: {results:?}");
    }
    assert!(tables.seen.lock().unwrap().is_empty(), "SET reached the handler");

    let version = scalar_string(&mut client, "SELECT @@VERSION").await;
    assert!(version.starts_with("Microsoft SQL Server 2022"), "{version}");

    let row = client
        .simple_query("SELECT @@SPID")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    let spid: i16 = row.get(0).unwrap();
    assert!(spid >= 51, "{spid}");

    let row = client
        .simple_query("SELECT 1")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i32, _>(0), Some(1));
    let row = client
        .simple_query("SELECT 1 AS ok, N'x' AS name, @@TRANCOUNT AS tc")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i32, _>("ok"), Some(1));
    assert_eq!(row.get::<&str, _>("name"), Some("x"));
    assert_eq!(row.get::<i32, _>("tc"), Some(0));

    assert_eq!(scalar_string(&mut client, "SELECT DB_NAME()").await, "erp");
    client
        .simple_query("USE master")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(scalar_string(&mut client, "SELECT DB_NAME()").await, "master");
    client
        .simple_query("SELECT name FROM customers")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(
        tables.last().database,
        "master",
        "the handler sees the new database"
    );
    client
        .simple_query("USE [erp]; SELECT 1")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(scalar_string(&mut client, "SELECT DB_NAME()").await, "erp");

    let e = batch(&mut client, "USE nosuchdb")
        .await
        .expect_err("USE nosuchdb");
    assert_eq!(server_error(&e), Some((911, 16)), "{e:?}");
    assert_eq!(
        scalar_string(&mut client, "SELECT DB_NAME()").await,
        "erp",
        "a failed USE changes nothing"
    );

    // The connection survives all of it.
    let names = client
        .simple_query("SELECT name FROM customers")
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(names[1].get::<&str, _>(0), Some("Ørsted A/S"));
}

#[tokio::test]
async fn unknown_statements_are_error_208_and_the_connection_survives() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let mut client = connect_to(&server).await;
    let e = batch(&mut client, "SELECT * FROM dbo.nothing WHERE 1 = 1")
        .await
        .expect_err("unknown table");
    assert_eq!(server_error(&e), Some((208, 16)), "{e:?}");
    assert!(e.to_string().contains("Invalid object name 'dbo.nothing'"), "{e}");

    // Through sp_executesql as well.
    let e = client
        .query("SELECT * FROM dbo.nothing WHERE id = @P1", &[&1i32])
        .await
        .err();
    let e = match e {
        Some(e) => e,
        None => panic!("expected an error"),
    };
    assert_eq!(server_error(&e), Some((208, 16)), "{e:?}");

    // An error in the middle of a batch stops it; the next batch runs.
    let e = batch(
        &mut client,
        "SELECT name FROM customers; SELECT * FROM nothing; SELECT 1",
    )
    .await
    .expect_err("error mid-batch");
    assert_eq!(server_error(&e), Some((208, 16)));
    assert_eq!(scalar_string(&mut client, "SELECT N'alive'").await, "alive");
}

#[tokio::test]
async fn row_counts_and_done_replies() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let mut client = connect_to(&server).await;
    let r = client
        .execute("UPDATE orders SET status = 2 WHERE id = @P1", &[&7i32])
        .await
        .unwrap();
    assert_eq!(r.rows_affected(), &[3]);
    let r = client
        .execute("DELETE FROM orders WHERE 1 = 0", &[])
        .await
        .unwrap();
    assert_eq!(r.total(), 0);
    // SET NOCOUNT ON suppresses the count.
    client
        .simple_query("SET NOCOUNT ON")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let r = client.execute("UPDATE orders SET status = 3", &[]).await.unwrap();
    assert_eq!(r.rows_affected(), &[0]);
}

// ---------------------------------------------------------------------------------------------
// Transactions

async fn trancount(client: &mut Client) -> i32 {
    let row = client
        .simple_query("SELECT @@TRANCOUNT")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    row.get::<i32, _>(0).unwrap()
}

#[tokio::test]
async fn transactions_in_sql_text() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let mut client = connect_to(&server).await;
    client
        .simple_query("BEGIN TRAN")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(trancount(&mut client).await, 1);
    client
        .simple_query("BEGIN TRANSACTION")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(trancount(&mut client).await, 2);
    client
        .simple_query("COMMIT")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(trancount(&mut client).await, 1);
    client
        .simple_query("COMMIT TRANSACTION")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(trancount(&mut client).await, 0);

    let e = batch(&mut client, "COMMIT")
        .await
        .expect_err("COMMIT without BEGIN");
    assert_eq!(server_error(&e), Some((3902, 16)), "{e:?}");
    let e = batch(&mut client, "ROLLBACK")
        .await
        .expect_err("ROLLBACK without BEGIN");
    assert_eq!(server_error(&e), Some((3903, 16)), "{e:?}");

    client
        .simple_query("BEGIN TRAN; BEGIN TRAN")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    client
        .simple_query("ROLLBACK TRANSACTION")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(trancount(&mut client).await, 0, "ROLLBACK ends all levels");
    client
        .simple_query("IF @@TRANCOUNT > 0 ROLLBACK")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    client
        .simple_query("IF @@TRANCOUNT > 0 COMMIT TRAN")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
}

#[tokio::test]
async fn transactions_through_transaction_manager_requests() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let mut client = connect_to(&server).await;
    client.begin_transaction().await.expect("TM begin");
    assert_eq!(trancount(&mut client).await, 1);
    client.execute("UPDATE orders SET status = 1", &[]).await.unwrap();
    client.commit_transaction().await.expect("TM commit");
    assert_eq!(trancount(&mut client).await, 0);
    client.begin_transaction().await.unwrap();
    client.save_transaction("sp1").await.expect("TM save");
    client.rollback_transaction().await.expect("TM rollback");
    assert_eq!(trancount(&mut client).await, 0);
    // A transaction begun in SQL text and committed by TM request, and the reverse.
    client
        .simple_query("BEGIN TRAN")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    client.commit_transaction().await.unwrap();
    assert_eq!(trancount(&mut client).await, 0);
}

// ---------------------------------------------------------------------------------------------
// sp_executesql

#[tokio::test]
async fn sp_executesql_parameters_reach_the_handler() {
    let (server, tables) = spawn(ServerConfig::default()).await;
    let mut client = connect_to(&server).await;
    let when = NaiveDate::from_ymd_opt(2024, 3, 1)
        .unwrap()
        .and_hms_opt(8, 30, 0)
        .unwrap();
    let none: Option<i32> = None;
    let rows = client
        .query(
            "SELECT * FROM params",
            &[
                &42i32,
                &"zwölf €",
                &1.25f64,
                &true,
                &when,
                &none,
                &i64::MIN,
                &"x".repeat(5000),
            ],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows[0].get::<i32, _>(0), Some(8));
    let seen = tables.last();
    assert_eq!(seen.sql, "SELECT * FROM params");
    let q = |name: &str| {
        seen.params
            .iter()
            .find(|p| p.name.trim_start_matches('@').eq_ignore_ascii_case(name))
            .map(|p| p.value.clone())
    };
    assert_eq!(q("P1"), Some(Value::Int(42)));
    assert_eq!(q("P2"), Some(Value::String("zwölf €".into())));
    assert_eq!(q("P3"), Some(Value::Float(1.25)));
    assert_eq!(q("P4"), Some(Value::Bit(true)));
    match q("P5") {
        Some(Value::DateTime(dt)) => assert_eq!(dt, when),
        other => panic!("P5: {other:?}"),
    }
    assert_eq!(q("P6"), Some(Value::Null));
    assert_eq!(q("P7"), Some(Value::Int(i64::MIN)));
    assert_eq!(q("P8"), Some(Value::String("x".repeat(5000))));
    assert_eq!(seen.params.len(), 8);

    // Query::param itself (name with or without @, any case) is checked by a handler closure.
    let handler = |q: &fake_mssql::Query<'_>| {
        let ok = q.param("p1") == Some(&Value::Int(7))
            && q.param("@P2") == Some(&Value::String("a".into()))
            && q.param("P3").is_none();
        fake_mssql::Reply::Rows(fake_mssql::ResultSet::from_values(
            vec![fake_mssql::Column::new("ok", fake_mssql::SqlType::Bit)],
            vec![vec![Value::Bit(ok)]],
        ))
    };
    let server = fake_mssql::Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default(), handler)
        .await
        .unwrap()
        .spawn();
    let mut client = connect_to(&server).await;
    let row = client
        .query("SELECT ok FROM t WHERE a = @P1 AND b = @P2", &[&7i32, &"a"])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<bool, _>(0), Some(true));
}

#[tokio::test]
async fn sp_executesql_runs_session_statements_too() {
    let (server, tables) = spawn(ServerConfig::default()).await;
    let mut client = connect_to(&server).await;
    let row = client
        .query("SELECT @@SPID", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert!(row.get::<i16, _>(0).unwrap() >= 51);
    client.execute("SET NOCOUNT ON", &[]).await.unwrap();
    assert!(tables.seen.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Big results

async fn read_big(client: &mut Client) -> u64 {
    let mut stream = client
        .simple_query("SELECT id, name, amount FROM big")
        .await
        .unwrap()
        .into_row_stream();
    let mut n = 0u64;
    while let Some(row) = stream.try_next().await.unwrap() {
        assert_eq!(row.get::<i32, _>(0), Some(n as i32));
        if n.is_multiple_of(9973) {
            assert_eq!(row.get::<&str, _>(1), Some(format!("row {n}").as_str()));
            let amount: tiberius::numeric::Numeric = row.get(2).unwrap();
            assert_eq!((amount.value(), amount.scale()), (i128::from(n) * 100 + 25, 2));
        }
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_results_at_every_packet_size() {
    for (size, mode) in [
        (512u32, Encryption::Optional),
        (4096, Encryption::Required),
        (32767, Encryption::Strict),
        (32767, Encryption::Off),
    ] {
        let (server, tables) = spawn(ServerConfig::default().encryption(mode)).await;
        let mut config = config_for(&server);
        config.packet_size(size);
        let mut client = connect(config).await.unwrap();
        assert_eq!(
            read_big(&mut client).await,
            BIG_ROWS,
            "packet size {size}, {mode}"
        );
        assert_eq!(tables.last().packet_size, size as usize);

        let row = client
            .simple_query("SELECT doc, ascii FROM huge")
            .await
            .unwrap()
            .into_row()
            .await
            .unwrap()
            .unwrap();
        let doc = row.get::<&str, _>(0).unwrap();
        assert!(doc.len() * 2 > 64 * 1024);
        assert_eq!(doc, huge_text(), "nvarchar(max) at packet size {size}");
        assert_eq!(
            row.get::<&str, _>(1).unwrap(),
            huge_ascii(),
            "varchar(max) at packet size {size}"
        );
        // A nullable (max) column with a NULL.
        let rows = client
            .simple_query("SELECT note FROM memo")
            .await
            .unwrap()
            .into_first_result()
            .await
            .unwrap();
        assert_eq!(rows[0].get::<&str, _>(0), Some("hi"));
        assert_eq!(rows[1].get::<&str, _>(0), None);
        assert!(server.stats().rows_sent() > BIG_ROWS);
    }
}

#[tokio::test]
async fn packet_sizes_outside_the_range_are_clamped() {
    let (server, tables) = spawn(ServerConfig::default()).await;
    for (asked, got) in [(100u32, 512usize), (65_000, 32_767)] {
        let mut config = config_for(&server);
        config.packet_size(asked);
        let mut client = connect(config).await.unwrap();
        assert_eq!(read_big(&mut client).await, BIG_ROWS);
        assert_eq!(tables.last().packet_size, got);
    }
}

// ---------------------------------------------------------------------------------------------
// Types

fn check_types(row: &tiberius::Row, nulls: bool) {
    use chrono::{DateTime, FixedOffset, NaiveDateTime};
    let dt = |y, mo, d, h, mi, s, ns| {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_nano_opt(h, mi, s, ns)
            .unwrap()
    };
    macro_rules! check {
        ($name:literal, $ty:ty, $want:expr) => {{
            let got: Option<$ty> = row.try_get($name).unwrap_or_else(|e| panic!("{}: {e}", $name));
            let want: Option<$ty> = if nulls { None } else { Some($want) };
            assert_eq!(got, want, "column {}", $name);
        }};
    }
    check!("tiny", u8, 255);
    check!("small", i16, -32768);
    check!("int", i32, i32::MIN);
    check!("big", i64, i64::MAX);
    check!("bit", bool, true);
    let num = |name: &str| {
        row.try_get::<tiberius::numeric::Numeric, _>(name)
            .unwrap()
            .map(|n| (n.value(), n.scale()))
    };
    assert_eq!(num("dec"), (!nulls).then_some((-123_456_789, 4)));
    assert_eq!(num("dec_rescaled"), (!nulls).then_some((150, 2)));
    assert_eq!(num("dec38"), (!nulls).then_some((10i128.pow(37), 0)));
    // tiberius hands money and smallmoney out as f64 only.
    check!("money", f64, 1234.5678);
    check!("money_min", f64, i64::MIN as f64 / 1e4);
    check!("smallmoney", f64, 214_748.364_7);
    check!("real", f32, 1.5);
    check!("float", f64, 1e300);
    check!("date", NaiveDate, NaiveDate::from_ymd_opt(2024, 2, 29).unwrap());
    check!(
        "time7",
        NaiveTime,
        NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_900).unwrap()
    );
    check!("time0", NaiveTime, NaiveTime::from_hms_opt(12, 34, 57).unwrap());
    check!("dt_carry", NaiveDateTime, dt(2025, 1, 1, 0, 0, 0, 0));
    check!("dt_tick", NaiveDateTime, dt(2024, 1, 1, 12, 0, 0, 3_333_333));
    check!("dt_half", NaiveDateTime, dt(2024, 1, 1, 12, 0, 0, 6_666_666));
    check!("sdt_down", NaiveDateTime, dt(2024, 5, 5, 10, 20, 0, 0));
    check!("sdt_up", NaiveDateTime, dt(2024, 5, 5, 10, 21, 0, 0));
    check!("dt2", NaiveDateTime, dt(2025, 1, 1, 0, 0, 0, 0));
    check!("dt2_7", NaiveDateTime, dt(1, 1, 1, 0, 0, 0, 100));
    check!(
        "dto",
        DateTime<FixedOffset>,
        DateTime::parse_from_rfc3339("2024-06-01T10:00:00.1234567+02:00").unwrap()
    );
    let s = |name: &str| row.try_get::<&str, _>(name).unwrap().map(str::to_owned);
    let want = |v: &str| (!nulls).then(|| v.to_owned());
    assert_eq!(s("char"), want("abc       "), "char is padded");
    assert_eq!(s("varchar"), want("Müller € œ Š"), "cp1252");
    assert_eq!(
        s("varchar_lossy"),
        want("?ód?"),
        "characters outside cp1252 become ?"
    );
    assert_eq!(s("varchar_trunc"), want("abc"));
    // tiberius ignores the UTF-8 flag of the collation and decodes by LCID: cp1252 mojibake.
    assert_eq!(
        s("varchar_utf8"),
        want("GrÃ¼ÃŸe"),
        "tiberius decodes UTF-8 collation varchar as cp1252"
    );
    assert_eq!(s("varchar_max"), want("Straße"));
    assert_eq!(s("nchar"), want("ab   "), "nchar is padded");
    assert_eq!(s("nvarchar"), want("Grüße 😀 ∑"));
    assert_eq!(s("nvarchar_max"), want("Ünïcødé"));
    check!(
        "guid",
        tiberius::Uuid,
        tiberius::Uuid::from_bytes_le(common::types::GUID_WIRE)
    );
}

#[tokio::test]
async fn every_type_round_trips_through_tiberius() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let mut client = connect_to(&server).await;
    let row = client
        .simple_query("SELECT * FROM types")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    // NOT NULL columns use the fixed-length types (tiberius reports INTN(4) as Int4 too, so
    // bit and datetime tell; wire.rs checks the exact bytes).
    let ty = |name: &str| {
        row.columns()
            .iter()
            .find(|c| c.name() == name)
            .unwrap()
            .column_type()
    };
    use tiberius::ColumnType as C;
    for (name, want) in [
        ("tiny", C::Int1),
        ("small", C::Int2),
        ("int", C::Int4),
        ("big", C::Int8),
        ("bit", C::Bit),
        ("money", C::Money),
        ("smallmoney", C::Money4),
        ("real", C::Float4),
        ("float", C::Float8),
        ("dt_tick", C::Datetime),
        ("sdt_up", C::Datetime4),
        ("guid", C::Guid),
        ("char", C::BigChar),
        ("nvarchar_max", C::NVarchar),
    ] {
        assert_eq!(ty(name), want, "{name}");
    }
    check_types(&row, false);

    let row = client
        .simple_query("SELECT * FROM ntypes")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    let ty = |name: &str| {
        row.columns()
            .iter()
            .find(|c| c.name() == name)
            .unwrap()
            .column_type()
    };
    for (name, want) in [
        ("bit", C::Bitn),
        ("dt_tick", C::Datetimen),
        ("sdt_up", C::Datetimen),
    ] {
        assert_eq!(ty(name), want, "nullable {name}");
    }
    check_types(&row, false);

    // All NULL: the server sends NBCROW; tiberius must still see every column NULL.
    let row = client
        .simple_query("SELECT * FROM nulls")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    check_types(&row, true);

    // Every other column NULL.
    let row = client
        .simple_query("SELECT * FROM mixed")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    let cols = common::types::columns();
    for (i, (name, _, _)) in cols.iter().enumerate() {
        let data = row.cells().nth(i).unwrap().1;
        let is_null = format!("{data:?}").contains("(None)");
        assert_eq!(is_null, i % 2 == 0, "{name}: {data:?}");
    }

    // The same values through sp_executesql (RPC: DONEINPROC / DONEPROC).
    let row = client
        .query("SELECT * FROM types", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    check_types(&row, false);
}

// ---------------------------------------------------------------------------------------------
// ATTENTION (tiberius's cancel)

#[tokio::test]
async fn cancelling_an_endless_result_leaves_the_connection_usable() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let mut client = connect_to(&server).await;
    {
        let mut stream = client
            .simple_query("SELECT id, name, amount FROM endless")
            .await
            .unwrap()
            .into_row_stream();
        for i in 0..1000 {
            let row = stream.try_next().await.unwrap().unwrap();
            assert_eq!(row.get::<i32, _>(0), Some(i));
        }
    }
    client
        .cancel_query()
        .await
        .expect("the server acknowledges ATTENTION with DONE_ATTN");
    assert_eq!(read_big(&mut client).await, BIG_ROWS);
    // ATTENTION with nothing running is acknowledged as well.
    client.cancel_query().await.expect("idle ATTENTION");
    assert_eq!(
        scalar_string(&mut client, "SELECT N'still here'").await,
        "still here"
    );
}

// ---------------------------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn fault_sql_fails_handler_statements_only() {
    let (server, _) = spawn(ServerConfig::default().fault(Some(Fault::Sql))).await;
    let mut client = connect_to(&server).await;
    let e = batch(&mut client, "SELECT name FROM customers")
        .await
        .expect_err("fault sql");
    assert_eq!(server_error(&e), Some((50000, 16)), "{e:?}");
    let e = client
        .query("SELECT name FROM customers", &[])
        .await
        .expect_err("fault sql via RPC");
    assert_eq!(server_error(&e), Some((50000, 16)), "{e:?}");
    let row = client
        .simple_query("SELECT 1")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i32, _>(0), Some(1));
    assert_eq!(server.stats().queries(), 2);
}

#[tokio::test]
async fn fault_drop_after_closes_the_connection_mid_result() {
    for n in [0u64, 1, 5000] {
        let (server, _) = spawn(ServerConfig::default().fault(Some(Fault::DropAfter(n)))).await;
        let mut client = connect_to(&server).await;
        let mut stream = client
            .simple_query("SELECT id, name, amount FROM big")
            .await
            .unwrap()
            .into_row_stream();
        let mut got = 0u64;
        let err = loop {
            match stream.try_next().await {
                Ok(Some(_)) => got += 1,
                Ok(None) => panic!("drop-after:{n}: the result ended normally after {got} rows"),
                Err(e) => break e,
            }
        };
        assert_eq!(got, n, "drop-after:{n}: {err}");
        drop(stream);
        // The connection is gone.
        assert!(client.simple_query("SELECT 1").await.is_err());
        // Session statements are not affected: a new connection can still log in.
        let mut c2 = connect_to(&server).await;
        assert_eq!(scalar_string(&mut c2, "SELECT N'ok'").await, "ok");
    }
}

#[tokio::test]
async fn fault_stall_never_answers() {
    let (server, _) = spawn(ServerConfig::default().fault(Some(Fault::Stall))).await;
    let mut config = config_for(&server);
    config.command_timeout(Some(Duration::from_millis(300)));
    let mut client = connect(config).await.unwrap();
    // Session statements still work.
    assert_eq!(scalar_string(&mut client, "SELECT N'ok'").await, "ok");
    let e = match client.simple_query("SELECT name FROM customers").await {
        Ok(stream) => stream.into_results().await.expect_err("a stalled statement"),
        Err(e) => e,
    };
    assert!(
        matches!(
            e,
            tiberius::error::Error::Io {
                kind: std::io::ErrorKind::TimedOut,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(server.stats().queries(), 1);
}

#[tokio::test]
async fn fault_stall_after_sends_n_rows_then_nothing() {
    let (server, _) = spawn(ServerConfig::default().fault(Some(Fault::StallAfter(1234)))).await;
    let mut config = config_for(&server);
    config.command_timeout(Some(Duration::from_millis(500)));
    let mut client = connect(config).await.unwrap();
    let mut stream = client
        .simple_query("SELECT id, name, amount FROM big")
        .await
        .unwrap()
        .into_row_stream();
    let mut got = 0u64;
    let err = loop {
        match stream.try_next().await {
            Ok(Some(_)) => got += 1,
            Ok(None) => panic!("the result ended"),
            Err(e) => break e,
        }
    };
    assert_eq!(got, 1234, "{err}");
    assert!(
        matches!(
            err,
            tiberius::error::Error::Io {
                kind: std::io::ErrorKind::TimedOut,
                ..
            }
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// SQL Browser

#[tokio::test]
async fn the_sql_browser_resolves_the_named_instance() {
    use tiberius::SqlBrowser;
    let (server, _) =
        spawn(ServerConfig::default().instance("SQLEXPRESS", "127.0.0.1:0".parse().unwrap())).await;
    let browser = server.browser_addr().expect("a browser address");
    assert_ne!(browser.port(), server.local_addr().port());

    let mut config = config_for(&server);
    config.host("127.0.0.1");
    config.port(browser.port());
    config.instance_name("sqlexpress");
    let tcp = tokio::net::TcpStream::connect_named(&config)
        .await
        .expect("instance resolved");
    assert_eq!(tcp.peer_addr().unwrap(), server.local_addr());
    use tokio_util::compat::TokioAsyncWriteCompatExt;
    let mut client = tiberius::Client::connect(config, tcp.compat_write())
        .await
        .expect("login to the instance");
    assert_eq!(
        scalar_string(&mut client, "SELECT @@SERVICENAME").await,
        "SQLEXPRESS"
    );

    // Another instance name: the browser stays silent (tiberius gives up after its timeout).
    let mut other = config_for(&server);
    other.host("127.0.0.1");
    other.port(browser.port());
    other.instance_name("OTHER");
    assert!(tokio::net::TcpStream::connect_named(&other).await.is_err());
}

#[tokio::test]
async fn the_sql_browser_ignores_other_instances() {
    let (server, _) =
        spawn(ServerConfig::default().instance("SQLEXPRESS", "127.0.0.1:0".parse().unwrap())).await;
    let browser = server.browser_addr().unwrap();
    let asker = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let witness = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    asker.send_to(b"\x04OTHER\0", browser).await.unwrap();
    asker.send_to(b"\x04", browser).await.unwrap(); // no name: malformed for CLNT_UCAST_INST
    asker.send_to(b"\x42junk", browser).await.unwrap();
    // The browser answers in order, so once the witness has its answer, any answer to the
    // asker's requests would already be waiting.
    witness.send_to(b"\x04SQLEXPRESS", browser).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = witness.recv(&mut buf).await.unwrap();
    assert_eq!(buf[0], 0x05);
    let text = std::str::from_utf8(&buf[3..n]).unwrap();
    assert!(
        text.contains(&format!(";tcp;{};", server.local_addr().port())),
        "{text}"
    );
    assert!(text.contains("InstanceName;SQLEXPRESS;"), "{text}");
    assert_eq!(usize::from(u16::from_le_bytes([buf[1], buf[2]])), n - 3);
    assert!(matches!(asker.try_recv(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));

    // A default instance (no browser) connected with an instance name in PRELOGIN: the
    // server says the instance does not match, tiberius refuses.
    let (plain, _) = spawn(ServerConfig::default()).await;
    let mut config = config_for(&plain);
    config.instance_name("SOMEWHERE");
    assert!(connect(config).await.is_err());
}

// ---------------------------------------------------------------------------------------------
// Concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_clients_at_once() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut config = config_for(&server);
        config.packet_size([512, 4096, 8192, 32767][i % 4]);
        config.encryption(
            [
                EncryptionLevel::On,
                EncryptionLevel::Off,
                EncryptionLevel::NotSupported,
                EncryptionLevel::Strict,
            ][i % 4],
        );
        tasks.push(tokio::spawn(async move {
            let mut client = connect(config).await.unwrap();
            let spid = client
                .simple_query("SELECT @@SPID")
                .await
                .unwrap()
                .into_row()
                .await
                .unwrap()
                .unwrap()
                .get::<i16, _>(0)
                .unwrap();
            let n = read_big(&mut client).await;
            (spid, n)
        }));
    }
    let mut spids = Vec::new();
    for t in tasks {
        let (spid, n) = t.await.unwrap();
        assert_eq!(n, BIG_ROWS);
        spids.push(spid);
    }
    spids.sort();
    spids.dedup();
    assert_eq!(spids.len(), 8, "every session has its own SPID");
    assert_eq!(server.stats().logins(), 8);
    assert_eq!(server.stats().rows_sent(), 8 * BIG_ROWS);
}

// ---------------------------------------------------------------------------------------------
// Found by review

/// A client that connects and never logs in is dropped after the login timeout (SQL Server
/// does the same): silent after connecting, and silent after asking for TLS.
#[tokio::test]
async fn connections_that_never_log_in_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, _tables) = spawn(ServerConfig::default().login_timeout(Duration::from_millis(300))).await;
    // Silent from the start.
    let mut idle = tokio::net::TcpStream::connect(addr(&server)).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(30), idle.read(&mut buf))
        .await
        .expect("the server closes the connection; it must not wait for ever")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    // PRELOGIN asking for encryption, then nothing: the server waits in the TLS handshake.
    let mut half = tokio::net::TcpStream::connect(addr(&server)).await.unwrap();
    let prelogin = [0x01, 0x00, 0x06, 0x00, 0x01, 0xFF, 0x01];
    let mut packet = vec![0x12, 0x01, 0x00, (8 + prelogin.len()) as u8, 0, 0, 1, 0];
    packet.extend_from_slice(&prelogin);
    half.write_all(&packet).await.unwrap();
    let mut all = Vec::new();
    // The read ends (EOF or a reset) instead of waiting for ever.
    let _ = tokio::time::timeout(Duration::from_secs(30), half.read_to_end(&mut all))
        .await
        .expect("the server closes the connection; it must not wait for ever");
    assert!(!all.is_empty(), "the PRELOGIN answer came before the close");
    assert_eq!(server.stats().logins(), 0);
    // A normal client still logs in.
    let mut client = connect_to(&server).await;
    assert_eq!(scalar_string(&mut client, "SELECT N'ok'").await, "ok");
}

/// Literals that do not fit nvarchar(4000) / varchar(8000), and non-ASCII before an alias.
#[tokio::test]
async fn long_and_non_ascii_literals() {
    let (server, _tables) = spawn(ServerConfig::default()).await;
    let mut client = connect_to(&server).await;
    let long = "é".repeat(5_000);
    assert_eq!(
        scalar_string(&mut client, &format!("SELECT N'{long}'")).await,
        long
    );
    let ascii = "x".repeat(9_000);
    assert_eq!(
        scalar_string(&mut client, &format!("SELECT '{ascii}'")).await,
        ascii
    );
    assert_eq!(scalar_string(&mut client, "SELECT N'日本' x").await, "日本");
}

/// Passwords and tokens stay out of Debug output (and so out of debug logs).
#[test]
fn the_configuration_does_not_show_secrets() {
    let config = ServerConfig::default()
        .login("app", "S3cretPw")
        .access_token("TOKEN-SECRET")
        .windows_login(r"CORP\bob", "WinSecret1");
    let shown = format!("{config:?}");
    for secret in ["S3cretPw", "TOKEN-SECRET", "WinSecret1"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("app") && shown.contains(r"CORP\\bob"), "{shown}");
}
