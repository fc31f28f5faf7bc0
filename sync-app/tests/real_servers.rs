//! Issue 10's "done when": the sync passes against the fake ERP in every encryption mode,
//! both schemas, through the SQL Server Browser and with a token login — on SQLite,
//! PostgreSQL and MySQL/MariaDB — and stores exactly the rows the ERP holds.

mod common;

use std::net::SocketAddr;

use fake_mssql::Encryption;
use sync_app::erp::{DEFAULT_SOURCE_QUERY, ErpSource};
use sync_app::fake_erp::{FakeErp, FakeErpConfig, FakeErpHandle, Schema, order_lines};
use sync_app::open_orders::OpenOrder;
use sync_app::open_orders::query::{self, OrderQuery};
use sync_app::sync_job::SyncOpenOrdersJob;

use common::TestDb;

const SEED: u64 = 23;
const ORDERS: u64 = 400;

async fn erp(config: FakeErpConfig) -> FakeErpHandle {
    FakeErp::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        FakeErpConfig {
            orders: ORDERS,
            seed: SEED,
            ..config
        },
    )
    .await
    .expect("bind fake ERP")
    .spawn()
}

async fn stored(db: &TestDb) -> Vec<OpenOrder> {
    let conn = db.fresh().await;
    let mut out = Vec::new();
    for page in 1.. {
        let q = OrderQuery {
            page,
            per_page: query::MAX_PER_PAGE,
            ..OrderQuery::default()
        };
        let p = query::page(&conn, &q).await.expect("page");
        if p.rows.is_empty() {
            break;
        }
        out.extend(p.rows.into_iter().map(|r| r.order));
    }
    out
}

/// Syncs with `source` and checks the stored rows against the generator.
async fn sync_and_check(db: &TestDb, logger: &joblog::JobLogger, source: ErpSource, what: &str) {
    let job = SyncOpenOrdersJob::new(source, DEFAULT_SOURCE_QUERY, logger.db().clone());
    let stats = job.run(logger).await.unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert_eq!(stats.fetched, ORDERS, "{what}");
    let want: Vec<OpenOrder> = order_lines(SEED, 0, ORDERS).map(OpenOrder::from).collect();
    assert_eq!(stored(db).await, want, "{what}: the stored rows are the ERP's");
}

/// `ado` with `key=value` pairs replaced or added.
fn with(ado: &str, pairs: &[(&str, &str)]) -> String {
    let mut parts: Vec<String> = ado
        .split(';')
        .filter(|p| {
            let key = p.split('=').next().unwrap_or_default().trim();
            !pairs.iter().any(|(k, _)| k.eq_ignore_ascii_case(key))
        })
        .map(str::to_owned)
        .collect();
    parts.extend(pairs.iter().map(|(k, v)| format!("{k}={v}")));
    parts.join(";")
}

async fn every_encryption_mode_and_schema(db: TestDb) {
    let logger = sync_app::database::open(&db.url).await.expect("open");
    let modes = [
        (Encryption::Off, "false"),
        (Encryption::Optional, "false"),
        (Encryption::Optional, "true"),
        (Encryption::Required, "true"),
        (Encryption::Strict, "strict"),
    ];
    for schema in [Schema::Modern, Schema::Classic] {
        for (mode, encrypt) in modes {
            let dir = std::env::temp_dir().join(format!(
                "sync-app-real-servers-{}-{mode}-{schema}-{}",
                std::process::id(),
                db.url.len()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let erp = erp(FakeErpConfig {
                schema,
                encryption: mode,
                ..FakeErpConfig::default()
            })
            .await;
            // Trust the server's own certificate by path, as a user would with a
            // self-signed SQL Server certificate.
            let mut pairs = vec![("Encrypt", encrypt), ("TrustServerCertificate", "false")];
            let pem = dir.join("erp.pem");
            let pem_path;
            if let Some(cert) = erp.certificate_pem() {
                std::fs::write(&pem, cert).unwrap();
                pem_path = pem.display().to_string();
                pairs.push(("Server Certificate", &pem_path));
                pairs.push(("HostNameInCertificate", "localhost"));
            }
            let ado = with(&erp.ado_string(), &pairs);
            let what = format!("{schema} schema, server {mode}, Encrypt={encrypt}");
            let source = ErpSource::from_ado(&ado).unwrap_or_else(|e| panic!("{what}: {e}"));
            sync_and_check(&db, &logger, source, &what).await;
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}

async fn through_the_sql_server_browser_and_with_a_token(db: TestDb) {
    let logger = sync_app::database::open(&db.url).await.expect("open");
    // A free UDP port for the browser (SQL Server's is 1434, which a test cannot count on).
    let browser: SocketAddr = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let erp = erp(FakeErpConfig {
        instance: Some(("ERPINST".into(), browser)),
        access_token: Some("eyJhbGciOi.test.token".into()),
        ..FakeErpConfig::default()
    })
    .await;
    let browser_port = erp.browser_addr().expect("browser").port();
    let ado = "Server=127.0.0.1\\ERPINST;Database=erp;User ID=sync;Password=sync;\
               Encrypt=true;TrustServerCertificate=true;Connect Timeout=5";
    let source = ErpSource::from_ado(ado)
        .expect("ado")
        .with_sql_browser_port(browser_port);
    sync_and_check(&db, &logger, source, "named instance through the browser").await;

    let token_ado = format!(
        "Server=tcp:127.0.0.1,{};Database=erp;Authentication=ActiveDirectoryAccessToken;\
         Encrypt=true;TrustServerCertificate=true",
        erp.local_addr().port()
    );
    let env = |name: &str| (name == "MSSQL_ACCESS_TOKEN").then(|| "eyJhbGciOi.test.token".to_string());
    let source = ErpSource::from_ado_with_env(&token_ado, &env).expect("token ado");
    sync_and_check(&db, &logger, source, "access token").await;
}

backend_tests!(
    every_encryption_mode_and_schema,
    through_the_sql_server_browser_and_with_a_token
);
