//! SyncOpenOrdersJob end to end: tiberius over real TCP to the fake ERP, into SQLite,
//! PostgreSQL and MySQL; every failure mode leaves the previous snapshot and an error run
//! whose details carry the cause.

mod common;

use std::net::SocketAddr;

use joblog::query::{Cursor, RunFilter, RunRecord};
use joblog::{JobLogger, Level, RunStatus};
use sync_app::erp::{DEFAULT_SOURCE_QUERY, ErpSource};
use sync_app::fake_erp::{Failure, FakeErp, FakeErpConfig, FakeErpHandle, order_lines};
use sync_app::open_orders::OpenOrder;
use sync_app::open_orders::query::{self, OrderQuery};
use sync_app::sync_job::{JOB_NAME, SyncOpenOrdersJob};

use common::TestDb;

const SEED: u64 = 7;

async fn erp(orders: u64, fail: Option<Failure>) -> FakeErpHandle {
    FakeErp::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        FakeErpConfig {
            orders,
            seed: SEED,
            fail,
            evolve: false,
            ..FakeErpConfig::default()
        },
    )
    .await
    .expect("bind fake ERP")
    .spawn()
}

fn job(ado: &str, logger: &JobLogger) -> SyncOpenOrdersJob {
    SyncOpenOrdersJob::new(
        ErpSource::from_ado(ado).expect("ado"),
        DEFAULT_SOURCE_QUERY,
        logger.db().clone(),
    )
}

/// What the fake ERP holds, as the record the sync should store.
fn expected(orders: u64) -> Vec<OpenOrder> {
    order_lines(SEED, 0, orders).map(OpenOrder::from).collect()
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

async fn last_run(logger: &JobLogger) -> (RunRecord, Vec<(Level, String)>) {
    let filter = RunFilter {
        job: Some(JOB_NAME.into()),
        ..RunFilter::default()
    };
    let page = logger.list_runs(&filter, Cursor::First, 1).await.expect("list");
    let run = page.runs.into_iter().next().expect("a run").run;
    let details = logger.details(run.id, None, 10_000).await.expect("details");
    (run, details.into_iter().map(|d| (d.level, d.message)).collect())
}

async fn syncs_end_to_end_and_survives_every_failure(db: TestDb) {
    let logger = sync_app::database::open(&db.url).await.expect("open");
    let good = erp(1_500, None).await;
    let stats = job(&good.ado_string(), &logger)
        .run(&logger)
        .await
        .expect("first sync");
    assert_eq!((stats.fetched, stats.inserted, stats.previous), (1_500, 1_500, 0));
    logger.flush().await.unwrap();
    let snapshot = stored(&db).await;
    assert_eq!(snapshot, expected(1_500), "every value round-trips from the ERP");
    let (run, details) = last_run(&logger).await;
    assert_eq!(run.status, RunStatus::Success);
    let messages: Vec<&str> = details.iter().map(|(_, m)| m.as_str()).collect();
    let expected_lines = [
        "Job started - SyncOpenOrdersJob".to_string(),
        format!(
            "Connecting to SQL Server 127.0.0.1:{}/erp...",
            good.local_addr().port()
        ),
        format!(
            "Connected to SQL Server 127.0.0.1:{} in",
            good.local_addr().port()
        ),
        "Fetching open orders: SELECT order_no".into(),
        "Batch 1 (1,500 rows, 1,500 staged)".into(),
        "Fetched 1,500 open orders in".into(),
        "Indexed the new snapshot (1,500 rows, ".into(),
        "Replaced open_orders: 1,500 rows (previous snapshot: 0 rows)".into(),
        "Sync completed: 1,500 rows fetched, 1,500 rows inserted".into(),
    ];
    assert_eq!(messages.len(), expected_lines.len(), "{messages:#?}");
    for (got, want) in messages.iter().zip(&expected_lines) {
        assert!(
            got.starts_with(want.as_str()),
            "`{got}` should start with `{want}`"
        );
    }

    let cases: Vec<(&str, Option<Failure>, &str)> = vec![
        (
            "login refused",
            Some(Failure::Server(fake_mssql::Fault::Login)),
            "Login failed for user 'sync'",
        ),
        ("SQL error", Some(Failure::Sql), "is being rebuilt"),
        (
            "dropped after 700 rows",
            Some(Failure::Server(fake_mssql::Fault::DropAfter(700))),
            "the source failed after 700 rows",
        ),
        (
            "stalled past the command timeout",
            Some(Failure::Server(fake_mssql::Fault::Stall)),
            "SQL Server sent nothing for 2 s (Command Timeout)",
        ),
        (
            "stalled mid-stream",
            Some(Failure::Server(fake_mssql::Fault::StallAfter(300))),
            "the source failed after 300 rows",
        ),
        (
            "a NULL in a required column",
            Some(Failure::NullAt(1_200)),
            "column `customer_code` is NULL",
        ),
        (
            "a decimal overflow",
            Some(Failure::OverflowAt(42)),
            "column `unit_price`",
        ),
        (
            "a wrong type",
            Some(Failure::WrongType),
            "column `qty_open` (nvarchar) is not a type the local decimal(18,4) field takes; select `CAST(qty_open AS decimal(18,4)) AS qty_open` in SOURCE_QUERY",
        ),
    ];
    for (what, fail, cause) in cases {
        let bad = erp(1_500, fail).await;
        let ado = format!("{};Command Timeout=2;Connect Timeout=3", bad.ado_string());
        let err = job(&ado, &logger).run(&logger).await.expect_err(what);
        let chain = format!("{err:#}");
        assert!(chain.contains(cause), "{what}: `{cause}` not in `{chain}`");
        logger.flush().await.unwrap();
        let (run, details) = last_run(&logger).await;
        assert_eq!(run.status, RunStatus::Error, "{what}");
        let (level, last) = details.last().unwrap();
        assert_eq!(*level, Level::Error, "{what}");
        assert!(
            last.contains(cause),
            "{what}: the error detail `{last}` lacks `{cause}`"
        );
        assert_eq!(stored(&db).await, snapshot, "{what}: previous snapshot intact");
        bad.shutdown().await;
    }

    // Nothing listening: a port that was just free.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ado = format!(
        "server=tcp:127.0.0.1,{port};database=erp;user id=sync;password=x;encrypt=DANGER_PLAINTEXT;Connect Timeout=3"
    );
    let err = job(&ado, &logger)
        .run(&logger)
        .await
        .expect_err("nothing listening");
    assert!(
        format!("{err:#}").contains(&format!("could not reach SQL Server at 127.0.0.1:{port}")),
        "{err:#}"
    );
    logger.flush().await.unwrap();
    assert_eq!(last_run(&logger).await.0.status, RunStatus::Error);
    assert_eq!(
        stored(&db).await,
        snapshot,
        "nothing listening: previous snapshot intact"
    );

    // And a good sync after all that.
    job(&good.ado_string(), &logger)
        .run(&logger)
        .await
        .expect("sync after failures");
    assert_eq!(stored(&db).await.len(), 1_500);
    logger.flush().await.unwrap();
}

async fn syncs_100_000_rows(db: TestDb) {
    let logger = sync_app::database::open(&db.url).await.expect("open");
    let big = erp(100_000, None).await;
    let stats = job(&big.ado_string(), &logger).run(&logger).await.expect("sync");
    assert_eq!(
        (stats.fetched, stats.inserted, stats.batches),
        (100_000, 100_000, 10)
    );
    let conn = db.fresh().await;
    let page = query::page(&conn, &OrderQuery::default()).await.unwrap();
    assert_eq!(page.total_rows, 100_000);
    let mut totals = std::collections::BTreeMap::<String, rust_decimal::Decimal>::new();
    for o in expected(100_000) {
        *totals.entry(o.currency).or_default() += o.line_amount;
    }
    assert_eq!(page.amount_by_currency, totals, "exact totals over 100,000 rows");
    assert_eq!(big.stats().rows_sent(), 100_000);
    logger.flush().await.unwrap();
}

backend_tests!(syncs_end_to_end_and_survives_every_failure, syncs_100_000_rows);
