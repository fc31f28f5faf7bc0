//! The sync asks the server for the collations of `SOURCE_QUERY`'s result
//! (`sys.dm_exec_describe_first_result_set`) and decodes `varchar` exactly with them; a server
//! that cannot tell leaves the text columns to the recognition by shape. The fake ERP answers
//! that statement without counting it as an open-orders query.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use fake_mssql::{Collation, Column, Query, Reply, ResultSet, ServerConfig, ServerHandle, SqlType, Value};
use futures::StreamExt;
use sync_app::erp::{DEFAULT_SOURCE_QUERY, ErpSource};
use sync_app::fake_erp::{FakeErp, FakeErpConfig, FakeErpHandle, Schema, order_lines};
use sync_app::open_orders::OpenOrder;
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;
use tracing::Instrument;

const UTF8_COLLATION: &str = "Latin1_General_100_CI_AS_SC_UTF8";
const CP1252_COLLATION: &str = "SQL_Latin1_General_CP1_CI_AS";

/// Code page 1252 text shaped exactly like UTF-8 read as code page 1252: the recognition by
/// shape misreads it (bytes D8 BD are the UTF-8 of U+023D).
const CP1252_BLIND_SPOT: &str = "Rohr Ø½";
/// UTF-8 text holding a C1 control (NEL): the recognition by shape leaves it as tiberius
/// decoded it.
const UTF8_WITH_C1: &str = "Zeile\u{85}Ø½ Grüße";

fn varchar(len: u16, collation: Collation) -> SqlType {
    SqlType::VarChar {
        len: Some(len),
        collation,
    }
}

fn nvarchar(len: u16) -> SqlType {
    SqlType::NVarChar { len: Some(len) }
}

/// One open-order row whose `customer_name` is a `_UTF8` varchar and `item_description` a
/// code page 1252 varchar.
fn order_columns() -> Vec<Column> {
    vec![
        Column::new("order_no", SqlType::BigInt),
        Column::new("line_no", SqlType::Int),
        Column::new("customer_code", nvarchar(20)),
        Column::new("customer_name", varchar(100, Collation::Utf8)),
        Column::new("item_code", nvarchar(40)),
        Column::new("item_description", varchar(200, Collation::Latin1Cp1252)).nullable(),
        Column::new(
            "qty_ordered",
            SqlType::Decimal {
                precision: 18,
                scale: 4,
            },
        ),
        Column::new(
            "qty_shipped",
            SqlType::Decimal {
                precision: 18,
                scale: 4,
            },
        ),
        Column::new(
            "qty_open",
            SqlType::Decimal {
                precision: 18,
                scale: 4,
            },
        ),
        Column::new(
            "unit_price",
            SqlType::Decimal {
                precision: 19,
                scale: 4,
            },
        ),
        Column::new(
            "line_amount",
            SqlType::Decimal {
                precision: 19,
                scale: 2,
            },
        ),
        Column::new("currency", nvarchar(3)),
        Column::new("order_date", SqlType::Date),
        Column::new("status", nvarchar(20)),
        Column::new("rush", SqlType::Bit),
    ]
}

fn order_values(customer_name: &str, item_description: &str) -> Vec<Value> {
    let dec = |mantissa: i128, scale: u8| Value::Decimal { mantissa, scale };
    vec![
        Value::Int(100_042),
        Value::Int(3),
        Value::String("C00042".into()),
        Value::String(customer_name.into()),
        Value::String("IT-1".into()),
        Value::String(item_description.into()),
        dec(120_000, 4),
        dec(25_000, 4),
        dec(95_000, 4),
        dec(149_999, 4),
        dec(142_499, 2),
        Value::String("EUR".into()),
        Value::Date(chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()),
        Value::String("Open".into()),
        Value::Bit(true),
    ]
}

/// A server answering the orders query with one row, and the describe statement (with the
/// described query in `@P1`) when `describes`; otherwise the describe fails as on a server
/// without permission. Records the queries it was asked to describe.
async fn serve(
    customer_name: &'static str,
    item_description: &'static str,
    describes: bool,
) -> (ServerHandle, Arc<Mutex<Vec<String>>>) {
    let described = Arc::new(Mutex::new(Vec::new()));
    let seen = described.clone();
    let handler = move |q: &Query<'_>| {
        if q.sql.contains("dm_exec_describe_first_result_set") {
            if let Some(Value::String(sql)) = q.param("P1") {
                seen.lock().unwrap().push(sql.clone());
            }
            if !describes {
                return Reply::Error(fake_mssql::SqlError::new(
                    229,
                    14,
                    "The SELECT permission was denied on the object 'dm_exec_describe_first_result_set'.",
                ));
            }
            let rows = order_columns()
                .into_iter()
                .map(|c| {
                    let collation = match c.ty {
                        SqlType::VarChar {
                            collation: Collation::Utf8,
                            ..
                        } => Value::String(UTF8_COLLATION.into()),
                        SqlType::VarChar { .. } | SqlType::NVarChar { .. } => {
                            Value::String(CP1252_COLLATION.into())
                        }
                        _ => Value::Null,
                    };
                    vec![Value::String(c.name.into_owned()), collation]
                })
                .collect();
            let name = nvarchar(128);
            return Reply::Rows(ResultSet::from_values(
                vec![
                    Column::new("name", name).nullable(),
                    Column::new("collation_name", name).nullable(),
                ],
                rows,
            ));
        }
        Reply::Rows(ResultSet::from_values(
            order_columns(),
            vec![order_values(customer_name, item_description)],
        ))
    };
    let server = fake_mssql::Server::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ServerConfig::default(),
        handler,
    )
    .await
    .expect("bind")
    .spawn();
    (server, described)
}

async fn read(ado: &str, query: &str) -> Vec<OpenOrder> {
    let source = ErpSource::from_ado(ado).expect("ado");
    let (mut conn, _) = source.connect().await.expect("connect");
    let rows: Vec<_> = conn.stream_open_orders(query).collect().await;
    conn.close().await;
    rows.into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e:#}")))
        .collect()
}

const QUERY: &str = "SELECT * FROM dbo.vw_OpenOrders";

#[tokio::test]
async fn known_collations_decode_varchar_exactly() {
    captured_log();
    let (server, described) = serve(UTF8_WITH_C1, CP1252_BLIND_SPOT, true).await;
    let rows = read(&server.ado_string(), QUERY).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].customer_name, UTF8_WITH_C1);
    assert_eq!(rows[0].item_description.as_deref(), Some(CP1252_BLIND_SPOT));
    assert_eq!(*described.lock().unwrap(), vec![QUERY.to_string()]);
    assert_eq!(server.stats().queries(), 2, "the describe, then the query");
}

#[tokio::test]
async fn without_the_describe_answer_the_shape_decides() {
    captured_log();
    let (server, described) = serve(UTF8_WITH_C1, CP1252_BLIND_SPOT, false).await;
    let rows = read(&server.ado_string(), QUERY).await;
    assert_eq!(rows.len(), 1);
    // The documented blind spots of the recognition by shape.
    assert_eq!(rows[0].item_description.as_deref(), Some("Rohr \u{63d}"));
    let tiberius_reading: String = encoding_free_cp1252(UTF8_WITH_C1);
    assert_eq!(rows[0].customer_name, tiberius_reading);
    assert_eq!(described.lock().unwrap().len(), 1, "it was asked");

    // Ordinary UTF-8 and code page 1252 text is still right by shape.
    let (server, _) = serve("Grüße Ø½", "Müller Straße", false).await;
    let rows = read(&server.ado_string(), QUERY).await;
    assert_eq!(rows[0].customer_name, "Grüße Ø½");
    assert_eq!(rows[0].item_description.as_deref(), Some("Müller Straße"));
}

/// UTF-8 bytes decoded one by one as code page 1252, as tiberius does for a `_UTF8` varchar
/// (for the text used here: every byte is a code page 1252 character, 0x85 being `…`).
fn encoding_free_cp1252(text: &str) -> String {
    text.as_bytes()
        .iter()
        .map(|&b| match b {
            0x85 => '…',
            0x98 => '˜',
            0x9F => 'Ÿ',
            b => char::from(b),
        })
        .collect()
}

async fn fake(schema: Schema, evolve: bool) -> FakeErpHandle {
    FakeErp::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        FakeErpConfig {
            orders: 300,
            seed: 7,
            schema,
            evolve,
            ..FakeErpConfig::default()
        },
    )
    .await
    .expect("bind fake ERP")
    .spawn()
}

async fn tiberius_client(erp: &FakeErpHandle) -> tiberius::Client<tokio_util::compat::Compat<TcpStream>> {
    let config = tiberius::Config::from_ado_string(&erp.ado_string()).unwrap();
    let tcp = TcpStream::connect(erp.local_addr()).await.unwrap();
    tiberius::Client::connect(config, tcp.compat_write())
        .await
        .unwrap()
}

async fn describe(erp: &FakeErpHandle, query: &str) -> Vec<(String, Option<String>)> {
    let mut client = tiberius_client(erp).await;
    let rows = client
        .query(
            "SELECT name, collation_name FROM sys.dm_exec_describe_first_result_set(@P1, NULL, 0)",
            &[&query],
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.get::<&str, _>(0).unwrap().to_owned(),
                r.get::<&str, _>(1).map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_fake_erp_describes_its_view() {
    captured_log();
    let erp = fake(Schema::Classic, false).await;
    let got = describe(&erp, DEFAULT_SOURCE_QUERY).await;
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..3], ["order_no", "line_no", "order_date"]);
    assert_eq!(names.len(), 19);
    let collation = |name: &str| got.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(collation("customer_name").as_deref(), Some(UTF8_COLLATION));
    assert_eq!(collation("item_description").as_deref(), Some(CP1252_COLLATION));
    assert_eq!(collation("customer_code").as_deref(), Some(CP1252_COLLATION));
    assert_eq!(collation("item_code").as_deref(), Some(CP1252_COLLATION), "nchar");
    assert_eq!(collation("order_no"), None);
    assert_eq!(collation("qty_open"), None);

    // A projection with aliases, as the query would return it.
    let got = describe(
        &erp,
        "SELECT [customer_name] AS name, o.order_no FROM dbo.vw_OpenOrders o",
    )
    .await;
    assert_eq!(
        got,
        vec![
            ("name".to_string(), Some(UTF8_COLLATION.to_string())),
            ("order_no".to_string(), None)
        ]
    );
    let got = describe(&fake(Schema::Modern, false).await, DEFAULT_SOURCE_QUERY).await;
    assert!(got.iter().all(|(_, c)| c.as_deref() != Some(UTF8_COLLATION)));
    // Not an open-orders query.
    assert_eq!((erp.stats().queries(), erp.stats().rows_sent()), (0, 0));
}

/// The log of this test binary: a global subscriber (a thread's own one would miss events
/// whose callsites another test's thread registered first), captured in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Captured::default();
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        log
    })
}

#[tokio::test]
async fn a_classic_sync_reads_the_collations_and_is_not_counted() {
    let log = captured_log();
    // The sync's lines of this test carry the span's name (its stream runs on this thread).
    let span = tracing::info_span!("classic_probe");
    let erp = fake(Schema::Classic, true).await;
    for generation in 0..2 {
        let rows = read(&erp.ado_string(), DEFAULT_SOURCE_QUERY)
            .instrument(span.clone())
            .await;
        let expected: Vec<_> = order_lines(7, generation, 300).collect();
        assert_eq!(rows.len(), expected.len(), "generation {generation}");
        for (got, want) in rows.iter().zip(&expected) {
            assert_eq!(got.customer_name, want.customer_name, "generation {generation}");
            assert_eq!(got.item_description, want.item_description);
        }
    }
    // Two open-orders queries: the describes neither advanced the generation nor count.
    assert_eq!(erp.stats().queries(), 2);
    assert_eq!(erp.stats().rows_sent(), rows_of_generations(&[0, 1]));

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let exact: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("classic_probe"))
        .filter(|l| l.contains("collations of SOURCE_QUERY's text columns from the server"))
        .collect();
    assert_eq!(exact.len(), 2, "{text}");
    // customer_code, customer_name, item_description, currency, status are varchar / char;
    // item_code and warehouse are nchar: all five single-byte columns are known.
    assert!(
        exact
            .iter()
            .all(|l| l.contains("known=5") && l.contains("text=5")),
        "{exact:?}"
    );
    let probe: Vec<&str> = text.lines().filter(|l| l.contains("classic_probe")).collect();
    assert!(probe.iter().all(|l| !l.contains("did not describe")), "{probe:?}");
    assert!(
        probe.iter().all(|l| !l.contains("read as code page 1252")),
        "no recognition by shape: {probe:?}"
    );
}

fn rows_of_generations(generations: &[u64]) -> u64 {
    generations
        .iter()
        .map(|&g| order_lines(7, g, 300).count() as u64)
        .sum()
}
