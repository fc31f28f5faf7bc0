//! Every column type an ERP view may return, through tiberius over TCP: mapped exactly onto
//! the open-order record or refused with the column, its SQL type and the `CAST` that fixes it;
//! and the fake ERP's classic schema (int / smallint keys, datetime / smalldatetime, padded
//! char / nchar, varchar in code page 1252 and in a _UTF8 collation, money / smallmoney)
//! syncs into the same local rows as its modern schema, on SQLite, PostgreSQL and MySQL.

mod common;

use std::net::SocketAddr;

use chrono::{FixedOffset, NaiveDate, NaiveDateTime, TimeZone};
use fake_mssql::{Collation, Column, Query, Reply, ResultSet, ServerConfig, ServerHandle, SqlType, Value};
use futures::StreamExt;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sync_app::erp::{DEFAULT_SOURCE_QUERY, ErpSource, SourceError};
use sync_app::fake_erp::{FakeErp, FakeErpConfig, Schema, order_lines};
use sync_app::open_orders::OpenOrder;
use sync_app::open_orders::query::{self, OrderQuery};
use sync_app::sync_job::SyncOpenOrdersJob;

use common::{Backend, TestDb};

const SEED: u64 = 11;
/// Enough lines to meet every customer of the catalogue's non-ASCII names.
const ORDERS: u64 = 8_000;

/// Every column of `open_orders` but `synced_at`, in the table's order.
const COLUMNS: [&str; 20] = [
    "id",
    "order_no",
    "line_no",
    "customer_code",
    "customer_name",
    "item_code",
    "item_description",
    "qty_ordered",
    "qty_shipped",
    "qty_open",
    "unit_price",
    "line_amount",
    "currency",
    "order_date",
    "requested_date",
    "promised_date",
    "warehouse",
    "status",
    "rush",
    "erp_modified_at",
];

/// Syncs the fake ERP in `schema` into a fresh database and returns every stored row as the
/// database prints it (each column cast to text), plus the rows as records.
async fn sync_schema(backend: Backend, schema: Schema) -> Option<(Vec<Vec<Option<String>>>, Vec<OpenOrder>)> {
    let db = TestDb::new(backend).await?;
    let erp = FakeErp::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        FakeErpConfig {
            orders: ORDERS,
            seed: SEED,
            schema,
            ..FakeErpConfig::default()
        },
    )
    .await
    .expect("bind fake ERP")
    .spawn();
    let logger = sync_app::database::open(&db.url).await.expect("open");
    let job = SyncOpenOrdersJob::new(
        ErpSource::from_ado(&erp.ado_string()).expect("ado"),
        DEFAULT_SOURCE_QUERY,
        logger.db().clone(),
    );
    let stats = job
        .run(&logger)
        .await
        .unwrap_or_else(|e| panic!("{schema} sync on {backend:?}: {e:#}"));
    assert_eq!(stats.inserted, ORDERS, "{schema}");
    logger.flush().await.unwrap();

    let conn = db.fresh().await;
    let text = match conn.get_database_backend() {
        DbBackend::MySql => "CHAR",
        _ => "TEXT",
    };
    let select: Vec<String> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("CAST({c} AS {text}) AS c{i}"))
        .collect();
    let sql = format!("SELECT {} FROM open_orders ORDER BY id", select.join(", "));
    let raw = conn
        .query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .expect("read open_orders");
    let raw: Vec<Vec<Option<String>>> = raw
        .iter()
        .map(|r| {
            (0..COLUMNS.len())
                .map(|i| r.try_get::<Option<String>>("", &format!("c{i}")).expect("text"))
                .collect()
        })
        .collect();

    let mut records = Vec::new();
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
        records.extend(p.rows.into_iter().map(|r| r.order));
    }
    Some((raw, records))
}

async fn classic_and_modern_store_the_same_rows(backend: Backend) {
    let Some((modern, modern_records)) = sync_schema(backend, Schema::Modern).await else {
        return;
    };
    let (classic, classic_records) = sync_schema(backend, Schema::Classic)
        .await
        .expect("the server answered a moment ago");
    let expected: Vec<OpenOrder> = order_lines(SEED, 0, ORDERS).map(OpenOrder::from).collect();
    assert_eq!(modern_records, expected, "modern schema on {backend:?}");

    assert_eq!(classic.len(), modern.len());
    for (i, (c, m)) in classic.iter().zip(&modern).enumerate() {
        for ((name, cv), mv) in COLUMNS.iter().zip(c).zip(m) {
            assert_eq!(cv, mv, "{backend:?} row {i} column {name}: classic vs modern");
        }
    }
    assert_eq!(classic_records, expected, "classic schema on {backend:?}");

    // The rows exercise what the classic schema changes: non-ASCII names from the _UTF8
    // varchar, code page 1252 descriptions, padded codes, money amounts, times of day.
    let names: Vec<&str> = classic_records.iter().map(|o| o.customer_name.as_str()).collect();
    for needle in ["Łódź", "東京精密機械株式会社", "é"] {
        assert!(
            names.iter().any(|n| n.contains(needle)),
            "no customer name with {needle}"
        );
    }
    assert!(
        classic_records
            .iter()
            .filter_map(|o| o.item_description.as_deref())
            .any(|d| !d.is_ascii()),
        "no non-ASCII item description"
    );
    assert!(
        classic_records.iter().any(|o| o.item_code.len() < 20),
        "item codes are shorter than nchar(20)"
    );
    assert!(
        classic_records
            .iter()
            .filter_map(|o| o.erp_modified_at)
            .any(|t| t.and_utc().timestamp_subsec_millis() != 0),
        "no modified_at with milliseconds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_and_modern_store_the_same_rows_sqlite() {
    classic_and_modern_store_the_same_rows(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_and_modern_store_the_same_rows_postgres() {
    classic_and_modern_store_the_same_rows(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_and_modern_store_the_same_rows_mysql() {
    classic_and_modern_store_the_same_rows(Backend::MySql).await;
}

// ---------------------------------------------------------------------------------------
// One hand-made result over the wire.

/// A fake SQL Server answering every query with this one result.
async fn serve(columns: Vec<Column>, rows: Vec<Vec<Value>>) -> ServerHandle {
    fake_mssql::Server::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ServerConfig::default(),
        move |_: &Query<'_>| Reply::Rows(ResultSet::from_values(columns.clone(), rows.clone())),
    )
    .await
    .expect("bind")
    .spawn()
}

async fn read(server: &ServerHandle) -> Vec<Result<OpenOrder, SourceError>> {
    let source = ErpSource::from_ado(&server.ado_string()).expect("ado");
    let (mut conn, _) = source.connect().await.expect("connect");
    let rows: Vec<_> = conn
        .stream_open_orders("SELECT * FROM dbo.vw_OpenOrders")
        .collect()
        .await;
    conn.close().await;
    rows
}

fn cp1252(len: u16) -> SqlType {
    SqlType::VarChar {
        len: Some(len),
        collation: Collation::Latin1Cp1252,
    }
}

fn utf8(len: u16) -> SqlType {
    SqlType::VarChar {
        len: Some(len),
        collation: Collation::Utf8,
    }
}

fn money(ten_thousandths: i64) -> Value {
    Value::Decimal {
        mantissa: i128::from(ten_thousandths),
        scale: 4,
    }
}

fn at(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32, ms: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_milli_opt(h, mi, s, ms)
        .unwrap()
}

/// An open-order result in the given column types (name, type, value); the other fields in
/// plain modern types.
fn result(overrides: Vec<(&'static str, SqlType, Value)>) -> (Vec<Column>, Vec<Vec<Value>>) {
    let dec = |precision, scale| SqlType::Decimal { precision, scale };
    let base: Vec<(&'static str, SqlType, Value)> = vec![
        ("order_no", SqlType::BigInt, Value::Int(100_042)),
        ("line_no", SqlType::Int, Value::Int(3)),
        (
            "order_date",
            SqlType::Date,
            Value::Date(NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()),
        ),
        (
            "customer_code",
            SqlType::NVarChar { len: Some(20) },
            Value::String("C00042".into()),
        ),
        (
            "customer_name",
            SqlType::NVarChar { len: Some(100) },
            Value::String("Acme".into()),
        ),
        (
            "item_code",
            SqlType::NVarChar { len: Some(40) },
            Value::String("IT-1".into()),
        ),
        (
            "item_description",
            SqlType::NVarChar { len: Some(200) },
            Value::Null,
        ),
        (
            "qty_ordered",
            dec(18, 4),
            Value::Decimal {
                mantissa: 120_000,
                scale: 4,
            },
        ),
        (
            "qty_shipped",
            dec(18, 4),
            Value::Decimal {
                mantissa: 25_000,
                scale: 4,
            },
        ),
        (
            "qty_open",
            dec(18, 4),
            Value::Decimal {
                mantissa: 95_000,
                scale: 4,
            },
        ),
        (
            "unit_price",
            dec(19, 4),
            Value::Decimal {
                mantissa: 149_999,
                scale: 4,
            },
        ),
        (
            "line_amount",
            dec(19, 2),
            Value::Decimal {
                mantissa: 142_499,
                scale: 2,
            },
        ),
        (
            "currency",
            SqlType::NVarChar { len: Some(3) },
            Value::String("EUR".into()),
        ),
        ("requested_date", SqlType::Date, Value::Null),
        ("promised_date", SqlType::Date, Value::Null),
        ("warehouse", SqlType::NVarChar { len: Some(10) }, Value::Null),
        (
            "status",
            SqlType::NVarChar { len: Some(20) },
            Value::String("Open".into()),
        ),
        ("rush", SqlType::Bit, Value::Bit(false)),
        (
            "modified_at",
            SqlType::DateTime2 { scale: 3 },
            Value::DateTime(at(2026, 3, 1, 9, 0, 0, 0)),
        ),
    ];
    let mut columns = Vec::new();
    let mut row = Vec::new();
    for (name, ty, value) in base {
        let (ty, value) = match overrides.iter().find(|(n, _, _)| *n == name) {
            Some((_, t, v)) => (*t, v.clone()),
            None => (ty, value),
        };
        columns.push(Column::new(name, ty).nullable());
        row.push(value);
    }
    (columns, vec![row])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_legacy_type_maps_exactly_over_the_wire() {
    let cet = FixedOffset::east_opt(3600).unwrap();
    let plus2 = FixedOffset::east_opt(7200).unwrap();
    let guid = [
        0xFF, 0x19, 0x96, 0x6F, 0x86, 0x8B, 0x11, 0xD0, 0xB4, 0x2D, 0x00, 0xC0, 0x4F, 0xC9, 0x64, 0xFF,
    ];
    let (columns, rows) = result(vec![
        ("order_no", SqlType::Int, Value::Int(100_042)),
        ("line_no", SqlType::SmallInt, Value::Int(3)),
        (
            "order_date",
            SqlType::DateTimeOffset { scale: 7 },
            Value::DateTimeOffset(cet.from_local_datetime(&at(2026, 3, 1, 0, 0, 0, 0)).unwrap()),
        ),
        ("customer_code", SqlType::Int, Value::Int(4711)),
        (
            "customer_name",
            utf8(100),
            Value::String("Grüße aus Łódź, 日本 €".into()),
        ),
        ("item_code", SqlType::UniqueIdentifier, Value::Guid(guid)),
        (
            "item_description",
            cp1252(200),
            Value::String("Précision Mécanique, Kühlmittel 5 € – ½ kg".into()),
        ),
        ("qty_open", SqlType::Money, money(95_000)),
        ("unit_price", SqlType::Money, money(5_497_558_138_879_999)),
        ("line_amount", SqlType::SmallMoney, money(14_249_900)),
        (
            "currency",
            SqlType::Char {
                len: 3,
                collation: Collation::Latin1Cp1252,
            },
            Value::String("EUR".into()),
        ),
        (
            "requested_date",
            SqlType::SmallDateTime,
            Value::DateTime(at(2026, 3, 20, 0, 0, 0, 0)),
        ),
        (
            "promised_date",
            SqlType::DateTime,
            Value::DateTime(at(2026, 4, 2, 0, 0, 0, 0)),
        ),
        (
            "warehouse",
            SqlType::NChar { len: 10 },
            Value::String("W1".into()),
        ),
        ("status", SqlType::NChar { len: 30 }, Value::String("Open".into())),
        ("rush", SqlType::TinyInt, Value::Int(1)),
        (
            "modified_at",
            SqlType::DateTimeOffset { scale: 3 },
            Value::DateTimeOffset(plus2.from_local_datetime(&at(2026, 3, 1, 10, 0, 0, 123)).unwrap()),
        ),
    ]);
    let server = serve(columns, rows).await;
    let rows = read(&server).await;
    assert_eq!(rows.len(), 1);
    let o = rows
        .into_iter()
        .next()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}: {:?}", std::error::Error::source(&e)));
    assert_eq!((o.order_no, o.line_no), (100_042, 3));
    assert_eq!(
        o.order_date,
        NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
        "the local date of a datetimeoffset"
    );
    assert_eq!(o.customer_code, "4711");
    assert_eq!(
        o.customer_name, "Grüße aus Łódź, 日本 €",
        "varchar in a _UTF8 collation"
    );
    assert_eq!(o.item_code, "6F9619FF-8B86-D011-B42D-00C04FC964FF");
    assert_eq!(
        o.item_description.as_deref(),
        Some("Précision Mécanique, Kühlmittel 5 € – ½ kg")
    );
    assert_eq!(o.qty_open.to_string(), "9.5000");
    assert_eq!(
        o.unit_price.to_string(),
        "549755813887.9999",
        "the largest exact money"
    );
    assert_eq!(o.line_amount.to_string(), "1424.99");
    assert_eq!(o.currency, "EUR");
    assert_eq!(o.requested_date, NaiveDate::from_ymd_opt(2026, 3, 20));
    assert_eq!(o.promised_date, NaiveDate::from_ymd_opt(2026, 4, 2));
    assert_eq!(o.warehouse.as_deref(), Some("W1"));
    assert_eq!(o.status, "Open", "nchar(30) padding trimmed");
    assert!(o.rush);
    assert_eq!(
        o.erp_modified_at,
        Some(at(2026, 3, 1, 8, 0, 0, 123)),
        "a datetimeoffset's instant, in UTC"
    );
    server.shutdown().await;
}

async fn refusal(overrides: Vec<(&'static str, SqlType, Value)>) -> String {
    let (columns, rows) = result(overrides);
    let server = serve(columns, rows).await;
    let rows = read(&server).await;
    server.shutdown().await;
    match rows.into_iter().next() {
        Some(Err(SourceError::Row(e))) => e.to_string(),
        other => panic!("expected a refused row, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_column_the_sql_type_and_the_cast() {
    let e = refusal(vec![(
        "order_date",
        SqlType::DateTime,
        Value::DateTime(at(2026, 3, 1, 14, 30, 0, 0)),
    )])
    .await;
    assert_eq!(
        e,
        "order 100042 line 3 (row 1): column `order_date` (datetime) holds 2026-03-01 14:30:00, a time of day \
         the local date field would lose; to drop the time deliberately, select \
         `CAST(order_date AS date) AS order_date` in SOURCE_QUERY"
    );
    let e = refusal(vec![(
        "requested_date",
        SqlType::SmallDateTime,
        Value::DateTime(at(2026, 3, 1, 7, 15, 0, 0)),
    )])
    .await;
    assert!(
        e.contains("column `requested_date` (smalldatetime) holds 2026-03-01 07:15:00"),
        "{e}"
    );

    let e = refusal(vec![("unit_price", SqlType::Money, money(i64::MAX))]).await;
    assert!(
        e.starts_with(
            "order 100042 line 3 (row 1): column `unit_price` (money) value 922337203685477.6 is beyond \
             ±549,755,813,888 (2^39)"
        ),
        "{e}"
    );
    assert!(
        e.ends_with("select `CAST(unit_price AS decimal(19,4)) AS unit_price` in SOURCE_QUERY"),
        "{e}"
    );
    let e = refusal(vec![("unit_price", SqlType::Money, money(5_497_558_138_880_000))]).await;
    assert!(
        e.contains("(money) value 549755813888 is beyond"),
        "2^39 itself is refused: {e}"
    );

    let e = refusal(vec![("line_amount", SqlType::Money, money(12_345))]).await;
    assert!(
        e.contains("(money) value 1.2345 has more than 2 decimal places; to round it on the server, select `CAST(line_amount AS decimal(19,2)) AS line_amount`"),
        "{e}"
    );
    let e = refusal(vec![("qty_open", SqlType::Float, Value::Float(9.5))]).await;
    assert!(
        e.contains("column `qty_open` (float) is not a type the local decimal(18,4) field takes (a floating-point value is not exact); select `CAST(qty_open AS decimal(18,4)) AS qty_open`"),
        "{e}"
    );
    let e = refusal(vec![(
        "customer_code",
        SqlType::Time { scale: 7 },
        Value::Time(chrono::NaiveTime::MIN),
    )])
    .await;
    assert!(e.contains("column `customer_code` (time) is not a type the local nvarchar(20) field takes; select `CAST(customer_code AS nvarchar(20)) AS customer_code`"), "{e}");
    let e = refusal(vec![(
        "modified_at",
        SqlType::VarChar {
            len: Some(30),
            collation: Collation::Latin1Cp1252,
        },
        Value::String("2026-03-01".into()),
    )])
    .await;
    assert!(e.contains("column `erp_modified_at` (varchar) is not a type the local datetime2 field takes; select `CAST(modified_at AS datetime2) AS modified_at`"), "{e}");
}
