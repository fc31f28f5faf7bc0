//! The fake ERP against the real tiberius client, over TCP on 127.0.0.1.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use rust_decimal::Decimal;
use sync_app::fake_erp::{
    Failure, FakeErp, FakeErpConfig, FakeErpHandle, OPEN_ORDERS_COLUMNS, OPEN_ORDERS_SQL, OrderLine,
    order_line, order_lines,
};
use tiberius::error::Error;
use tiberius::numeric::Numeric;
use tiberius::{Client, ColumnType, Config, QueryStream, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

type ErpClient = Client<Compat<TcpStream>>;

async fn start(config: FakeErpConfig) -> FakeErpHandle {
    FakeErp::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("bind")
        .spawn()
}

fn with(orders: u64, fail: Option<Failure>) -> FakeErpConfig {
    FakeErpConfig {
        orders,
        fail,
        ..FakeErpConfig::default()
    }
}

async fn connect_with(erp: &FakeErpHandle, config: Config) -> tiberius::Result<ErpClient> {
    let tcp = TcpStream::connect(erp.local_addr()).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

async fn connect(erp: &FakeErpHandle) -> tiberius::Result<ErpClient> {
    connect_with(erp, Config::from_ado_string(&erp.ado_string())?).await
}

async fn orders_query<'a>(client: &'a mut ErpClient, rpc: bool) -> tiberius::Result<QueryStream<'a>> {
    if rpc {
        // `query` goes through sp_executesql; a parameter makes sure extra params are skipped.
        let sql = format!("{OPEN_ORDERS_SQL} OPTION (MAXDOP 1) -- @P1");
        client.query(sql, &[&1i32]).await
    } else {
        client.simple_query(OPEN_ORDERS_SQL).await
    }
}

/// Reads a row of the open-orders result back into an [`OrderLine`].
fn to_order_line(row: &Row) -> OrderLine {
    fn req<'a, T: tiberius::FromSql<'a>>(row: &'a Row, col: &str) -> T {
        row.try_get(col)
            .unwrap_or_else(|e| panic!("{col}: {e}"))
            .unwrap_or_else(|| panic!("{col} is NULL"))
    }
    fn opt<'a, T: tiberius::FromSql<'a>>(row: &'a Row, col: &str) -> Option<T> {
        row.try_get(col).unwrap_or_else(|e| panic!("{col}: {e}"))
    }
    OrderLine {
        order_no: req(row, "order_no"),
        line_no: req(row, "line_no"),
        order_date: req(row, "order_date"),
        customer_code: req::<&str>(row, "customer_code").to_owned(),
        customer_name: req::<&str>(row, "customer_name").to_owned(),
        item_code: req::<&str>(row, "item_code").to_owned(),
        item_description: opt::<&str>(row, "item_description").map(str::to_owned),
        qty_ordered: req(row, "qty_ordered"),
        qty_shipped: req(row, "qty_shipped"),
        qty_open: req(row, "qty_open"),
        unit_price: req(row, "unit_price"),
        line_amount: req(row, "line_amount"),
        currency: req::<&str>(row, "currency").to_owned(),
        requested_date: opt(row, "requested_date"),
        promised_date: opt(row, "promised_date"),
        warehouse: opt::<&str>(row, "warehouse").map(str::to_owned),
        status: req::<&str>(row, "status").to_owned(),
        rush: req(row, "rush"),
        modified_at: req(row, "modified_at"),
    }
}

/// Streams the whole result and compares it value by value with `expected`.
async fn assert_stream_matches(
    stream: QueryStream<'_>,
    expected: impl IntoIterator<Item = OrderLine>,
) -> u64 {
    let mut rows = stream.into_row_stream();
    let mut expected = expected.into_iter();
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await.expect("row") {
        if count == 0 {
            let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
            assert_eq!(names, OPEN_ORDERS_COLUMNS);
            let types: Vec<ColumnType> = row.columns().iter().map(|c| c.column_type()).collect();
            assert_eq!(types[0], ColumnType::Int8);
            assert_eq!(types[1], ColumnType::Int4);
            assert_eq!(types[2], ColumnType::Daten);
            assert_eq!(types[3], ColumnType::NVarchar);
            assert_eq!(types[7], ColumnType::Decimaln);
            assert_eq!(
                types[17],
                ColumnType::Bit,
                "NOT NULL columns use the fixed-length types"
            );
            assert_eq!(types[18], ColumnType::Datetime2);
        }
        let want = expected
            .next()
            .unwrap_or_else(|| panic!("unexpected extra row {count}"));
        assert_eq!(to_order_line(&row), want, "row {count}");
        count += 1;
    }
    assert!(expected.next().is_none(), "only {count} rows arrived");
    count
}

async fn collect_orders(client: &mut ErpClient) -> Vec<OrderLine> {
    let stream = orders_query(client, false).await.expect("query");
    stream
        .into_row_stream()
        .map_ok(|row| to_order_line(&row))
        .try_collect()
        .await
        .expect("rows")
}

/// The error of a result whose success type is not `Debug`.
fn failed<T>(result: tiberius::Result<T>, what: &str) -> Error {
    match result {
        Ok(_) => panic!("{what} succeeded"),
        Err(e) => e,
    }
}

fn server_error(err: Error) -> tiberius::error::TokenError {
    match err {
        Error::Server(e) => e,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn login_and_select_one_via_batch_and_rpc() {
    let erp = start(FakeErpConfig::default()).await;
    let mut client = connect(&erp).await.expect("login");

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
        .query("SELECT 1", &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i32, _>(0), Some(1));

    let row = client
        .query("select 1 as ok;", &[&"ignored"])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.columns()[0].name(), "ok");
    assert_eq!(row.get::<i32, _>("ok"), Some(1));

    assert_eq!(
        (
            erp.stats().connections(),
            erp.stats().logins(),
            erp.stats().queries()
        ),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn unknown_objects_fail_like_sql_server_and_the_connection_survives() {
    let erp = start(FakeErpConfig::default()).await;
    let mut client = connect(&erp).await.unwrap();

    let err = server_error(
        client
            .simple_query("SELECT * FROM dbo.Customers")
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code(), 208);
    assert_eq!(err.message(), "Invalid object name 'dbo.Customers'.");

    let err = server_error(
        client
            .query("SELECT name FROM sys.tables WHERE 1 = @P1", &[&1i32])
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code(), 208);

    let row = client
        .simple_query("SELECT 1")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i32, _>(0), Some(1));
}

#[tokio::test]
async fn one_hundred_thousand_orders_arrive_intact_via_batch_and_rpc() {
    let orders = 100_000;
    let erp = start(with(orders, None)).await;
    let mut client = connect(&erp).await.unwrap();
    let seed = erp.config().seed;

    let n = assert_stream_matches(
        orders_query(&mut client, false).await.unwrap(),
        order_lines(seed, 0, orders),
    )
    .await;
    assert_eq!(n, orders);
    let n = assert_stream_matches(
        orders_query(&mut client, true).await.unwrap(),
        order_lines(seed, 0, orders),
    )
    .await;
    assert_eq!(n, orders);

    // still usable afterwards
    let row = client
        .simple_query("SELECT 1")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i32, _>(0), Some(1));
    assert_eq!(erp.stats().queries(), 2);
    assert_eq!(erp.stats().rows_sent(), 2 * orders);
}

#[tokio::test]
async fn negotiated_packet_sizes_are_honoured() {
    for packet_size in [512u32, 32_767] {
        let erp = start(with(5_000, None)).await;
        let mut config = Config::from_ado_string(&erp.ado_string()).unwrap();
        config.packet_size(packet_size);
        let mut client = connect_with(&erp, config).await.unwrap();
        let stream = orders_query(&mut client, true).await.unwrap();
        assert_eq!(
            assert_stream_matches(stream, order_lines(42, 0, 5_000)).await,
            5_000
        );
    }
}

/// `ado` with its `Encrypt=` value replaced.
fn with_encrypt(ado: &str, encrypt: &str) -> String {
    let mut parts: Vec<String> = ado
        .split(';')
        .filter(|p| !p.to_ascii_lowercase().starts_with("encrypt="))
        .map(str::to_owned)
        .collect();
    parts.push(format!("Encrypt={encrypt}"));
    parts.join(";")
}

/// tiberius against every encryption setting of the server, as against SQL Server: TLS for
/// the login only, TLS for everything, or none; clients that want what the server will not do
/// fail fast with an error.
#[tokio::test]
async fn tiberius_in_every_encryption_mode() {
    use fake_mssql::Encryption::{Off, Optional, Required};
    let cases = [
        (Off, "DANGER_PLAINTEXT", true),
        (Off, "true", false),
        (Off, "false", false),
        (Optional, "DANGER_PLAINTEXT", true),
        (Optional, "false", true),
        (Optional, "true", true),
        (Required, "DANGER_PLAINTEXT", false),
        (Required, "false", true),
        (Required, "true", true),
    ];
    for (mode, encrypt, works) in cases {
        let erp = start(FakeErpConfig {
            orders: 3_000,
            encryption: mode,
            ..FakeErpConfig::default()
        })
        .await;
        let config = Config::from_ado_string(&with_encrypt(&erp.ado_string(), encrypt)).unwrap();
        let result = timeout(Duration::from_secs(5), connect_with(&erp, config))
            .await
            .unwrap_or_else(|_| panic!("{mode}/{encrypt}: must answer, not hang"));
        match (result, works) {
            (Ok(mut client), true) => {
                let stream = orders_query(&mut client, false).await.unwrap();
                assert_eq!(
                    assert_stream_matches(stream, order_lines(42, 0, 3_000)).await,
                    3_000,
                    "{mode}/{encrypt}"
                );
            }
            (Err(e), false) => {
                let text = e.to_string();
                assert!(
                    text.contains("encryption") || matches!(e, Error::Io { .. } | Error::Tls(_)),
                    "{mode}/{encrypt}: {e:?}"
                );
                assert_eq!(erp.stats().logins(), 0);
            }
            (Ok(_), false) => panic!("{mode}/{encrypt}: connected, but should have been refused"),
            (Err(e), true) => panic!("{mode}/{encrypt}: {e}"),
        }
    }
}

#[tokio::test]
async fn failure_login_is_error_18456() {
    let erp = start(with(10, Some(Failure::Server(fake_mssql::Fault::Login)))).await;
    let err = server_error(failed(connect(&erp).await, "login"));
    assert_eq!(err.code(), 18456);
    assert_eq!(err.message(), "Login failed for user 'sync'.");
    assert_eq!(erp.stats().logins(), 0);
}

#[tokio::test]
async fn failure_sql_fails_the_orders_query_but_not_select_one() {
    let erp = start(with(10, Some(Failure::Sql))).await;
    let mut client = connect(&erp).await.unwrap();
    for rpc in [false, true] {
        let err = server_error(failed(orders_query(&mut client, rpc).await, "orders query"));
        assert_eq!(err.code(), 50_000);
        assert_eq!(err.class(), 16);
        assert_eq!(err.message(), "The view dbo.vw_OpenOrders is being rebuilt");
    }
    let row = client
        .simple_query("SELECT 1")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i32, _>(0), Some(1));
    assert_eq!(erp.stats().queries(), 2);
}

#[tokio::test]
async fn failure_drop_after_sends_exactly_n_rows_then_an_io_error() {
    let n = 500;
    let erp = start(with(
        10_000,
        Some(Failure::Server(fake_mssql::Fault::DropAfter(n))),
    ))
    .await;
    let mut client = connect(&erp).await.unwrap();
    let mut rows = orders_query(&mut client, false).await.unwrap().into_row_stream();
    let mut expected = order_lines(42, 0, 10_000);
    let mut count = 0;
    let err = loop {
        match timeout(Duration::from_secs(5), rows.try_next())
            .await
            .expect("no hang")
        {
            Ok(Some(row)) => {
                assert_eq!(to_order_line(&row), expected.next().unwrap());
                count += 1;
            }
            Ok(None) => panic!("stream ended cleanly after {count} rows"),
            Err(e) => break e,
        }
    };
    assert_eq!(count, n);
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

#[tokio::test]
async fn failure_stall_never_answers() {
    let erp = start(with(100, Some(Failure::Server(fake_mssql::Fault::Stall)))).await;
    let mut client = connect(&erp).await.unwrap();
    let started = Instant::now();
    let result = timeout(Duration::from_secs(2), orders_query(&mut client, false)).await;
    assert!(result.is_err(), "the stalled query completed");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(erp.stats().queries(), 1);

    // SELECT 1 on another connection still works
    let mut other = connect(&erp).await.unwrap();
    let row = other
        .simple_query("SELECT 1")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i32, _>(0), Some(1));
}

#[tokio::test]
async fn failure_stall_after_sends_n_rows_then_nothing() {
    let n = 300;
    let erp = start(with(
        10_000,
        Some(Failure::Server(fake_mssql::Fault::StallAfter(n))),
    ))
    .await;
    let mut client = connect(&erp).await.unwrap();
    let mut rows = orders_query(&mut client, true).await.unwrap().into_row_stream();
    for i in 0..n {
        let row = timeout(Duration::from_secs(5), rows.try_next())
            .await
            .expect("row in time")
            .unwrap()
            .unwrap();
        assert_eq!(to_order_line(&row), order_line(42, i));
    }
    let next = timeout(Duration::from_secs(1), rows.try_next()).await;
    assert!(next.is_err(), "expected silence after {n} rows, got {next:?}");
    assert_eq!(erp.stats().rows_sent(), n);
}

#[tokio::test]
async fn failure_null_at_puts_null_into_customer_code() {
    let at = 3;
    let erp = start(with(50, Some(Failure::NullAt(at)))).await;
    let mut client = connect(&erp).await.unwrap();
    let rows = orders_query(&mut client, false)
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows.len(), 50);
    for (i, row) in rows.iter().enumerate() {
        let code: Option<&str> = row.try_get("customer_code").unwrap();
        if i as u64 == at {
            assert_eq!(code, None);
        } else {
            assert_eq!(code, Some(order_line(42, i as u64).customer_code.as_str()));
        }
    }
}

#[tokio::test]
async fn failure_overflow_at_makes_unit_price_unreadable_as_decimal() {
    let at = 7;
    let erp = start(with(50, Some(Failure::OverflowAt(at)))).await;
    let mut client = connect(&erp).await.unwrap();
    let rows = orders_query(&mut client, true)
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows.len(), 50);
    for (i, row) in rows.iter().enumerate() {
        if i as u64 == at {
            // On the wire: decimal(38,4) holding 10^30.
            let raw: Numeric = row.try_get("unit_price").unwrap().unwrap();
            assert_eq!((raw.value(), raw.scale()), (10i128.pow(34), 4));
            assert!(Decimal::try_from_i128_with_scale(raw.value(), 4).is_err());
            // tiberius 0.13 converts with `Decimal::from_i128_with_scale`, which panics on
            // overflow instead of returning Err; either way the read must not succeed.
            let read = catch_unwind(AssertUnwindSafe(|| row.try_get::<Decimal, _>("unit_price")));
            assert!(!matches!(read, Ok(Ok(_))), "{read:?}");
        } else {
            let price: Decimal = row.try_get("unit_price").unwrap().unwrap();
            assert_eq!(price, order_line(42, i as u64).unit_price);
        }
    }
}

#[tokio::test]
async fn failure_wrong_type_sends_qty_open_as_text() {
    let erp = start(with(20, Some(Failure::WrongType))).await;
    let mut client = connect(&erp).await.unwrap();
    let rows = orders_query(&mut client, false)
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows.len(), 20);
    assert_eq!(rows[0].columns()[9].column_type(), ColumnType::NVarchar);
    for (i, row) in rows.iter().enumerate() {
        assert!(matches!(
            row.try_get::<Decimal, _>("qty_open"),
            Err(Error::Conversion(_))
        ));
        let text: &str = row.try_get("qty_open").unwrap().unwrap();
        assert_eq!(text, order_line(42, i as u64).qty_open.to_string());
        let shipped: Decimal = row.try_get("qty_shipped").unwrap().unwrap();
        assert_eq!(shipped, order_line(42, i as u64).qty_shipped);
    }
}

#[tokio::test]
async fn evolve_changes_the_data_between_queries_deterministically() {
    let config = FakeErpConfig {
        orders: 2_000,
        seed: 9,
        fail: None,
        evolve: true,
        ..FakeErpConfig::default()
    };
    let erp = start(config.clone()).await;
    let mut client = connect(&erp).await.unwrap();
    let first = collect_orders(&mut client).await;
    let second = collect_orders(&mut client).await;
    let third = collect_orders(&mut client).await;
    assert_eq!(first, order_lines(9, 0, 2_000).collect::<Vec<_>>());
    assert_eq!(second, order_lines(9, 1, 2_000).collect::<Vec<_>>());
    assert_eq!(third, order_lines(9, 2, 2_000).collect::<Vec<_>>());
    assert_ne!(first, second);
    assert_ne!(second, third);

    // A second server with the same seed replays the same generations.
    let twin = start(config).await;
    let mut twin_client = connect(&twin).await.unwrap();
    assert_eq!(collect_orders(&mut twin_client).await, first);
    assert_eq!(collect_orders(&mut twin_client).await, second);
}

#[tokio::test]
async fn same_seed_same_data_different_seed_different_data() {
    let a = start(FakeErpConfig {
        seed: 1,
        orders: 1_000,
        ..FakeErpConfig::default()
    })
    .await;
    let b = start(FakeErpConfig {
        seed: 1,
        orders: 1_000,
        ..FakeErpConfig::default()
    })
    .await;
    let c = start(FakeErpConfig {
        seed: 2,
        orders: 1_000,
        ..FakeErpConfig::default()
    })
    .await;
    let rows_a = collect_orders(&mut connect(&a).await.unwrap()).await;
    let rows_a_again = collect_orders(&mut connect(&a).await.unwrap()).await;
    let rows_b = collect_orders(&mut connect(&b).await.unwrap()).await;
    let rows_c = collect_orders(&mut connect(&c).await.unwrap()).await;
    assert_eq!(
        rows_a, rows_a_again,
        "without evolve every query returns the same rows"
    );
    assert_eq!(rows_a, rows_b);
    assert_ne!(rows_a, rows_c);
    assert_eq!(rows_c.len(), 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_at_once() {
    let orders = 10_000;
    let erp = start(with(orders, None)).await;
    let clients = (0..8).map(|i| {
        let ado = erp.ado_string();
        let addr = erp.local_addr();
        tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let config = Config::from_ado_string(&ado).unwrap();
            let mut client = Client::connect(config, tcp.compat_write()).await.unwrap();
            let stream = orders_query(&mut client, i % 2 == 0).await.unwrap();
            let n = assert_stream_matches(stream, order_lines(42, 0, orders)).await;
            let row = client
                .simple_query("SELECT 1")
                .await
                .unwrap()
                .into_row()
                .await
                .unwrap()
                .unwrap();
            assert_eq!(row.get::<i32, _>(0), Some(1));
            n
        })
    });
    let counts = futures::future::try_join_all(clients).await.unwrap();
    assert_eq!(counts, vec![orders; 8]);
    let stats = erp.stats();
    assert_eq!((stats.connections(), stats.logins(), stats.queries()), (8, 8, 8));
    assert_eq!(stats.rows_sent(), 8 * orders);
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    let erp = start(FakeErpConfig::default()).await;
    let addr = erp.local_addr();
    erp.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());
}

/// Throughput: `cargo test -p sync-app --release --test fake_erp -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_one_million_rows() {
    let orders = 1_000_000;
    let erp = start(with(orders, None)).await;
    for (label, packet_size) in [("default 4096", None), ("32767", Some(32_767))] {
        let mut config = Config::from_ado_string(&erp.ado_string()).unwrap();
        if let Some(size) = packet_size {
            config.packet_size(size);
        }
        let mut client = connect_with(&erp, config).await.unwrap();
        let started = Instant::now();
        let mut rows = orders_query(&mut client, false).await.unwrap().into_row_stream();
        let mut count = 0u64;
        let mut checksum = 0i64;
        while let Some(row) = rows.try_next().await.unwrap() {
            checksum = checksum.wrapping_add(row.get::<i64, _>(0).unwrap());
            count += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(count, orders);
        println!(
            "packet size {label}: tiberius drained {count} rows in {secs:.2} s = {:.0} rows/s (checksum {checksum})",
            count as f64 / secs
        );
    }
    let mut client = connect(&erp).await.unwrap();
    let started = Instant::now();
    let mut rows = orders_query(&mut client, false).await.unwrap().into_row_stream();
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await.unwrap() {
        std::hint::black_box(to_order_line(&row));
        count += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "with full OrderLine conversion: {:.0} rows/s",
        count as f64 / secs
    );
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status
            .lines()
            .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
        {
            println!("{line}");
        }
    }
}

/// Writes one client message as a single packet.
async fn send_packet(tcp: &mut TcpStream, ty: u8, payload: &[u8]) {
    let mut packet = vec![ty, 0x01];
    packet.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0, 1, 0]);
    packet.extend_from_slice(payload);
    tcp.write_all(&packet).await.unwrap();
}

/// Reads one server message, returning (packets, payload bytes).
async fn drain_message(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> (u64, u64) {
    let (mut packets, mut bytes) = (0, 0);
    loop {
        let mut header = [0u8; 8];
        tcp.read_exact(&mut header).await.unwrap();
        let len = usize::from(u16::from_be_bytes([header[2], header[3]])) - 8;
        buf.resize(len, 0);
        tcp.read_exact(buf).await.unwrap();
        packets += 1;
        bytes += len as u64;
        if header[1] & 1 == 1 {
            return (packets, bytes);
        }
    }
}

/// The server alone, drained by a raw TDS client that does not decode rows:
/// `cargo test -p sync-app --release --test fake_erp -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_raw_socket_one_million_rows() {
    let orders = 1_000_000;
    let erp = start(with(orders, None)).await;
    for packet_size in [4096u32, 32_767] {
        let mut tcp = TcpStream::connect(erp.local_addr()).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut buf = Vec::new();
        // PRELOGIN: just ENCRYPTION = NOT_SUP
        send_packet(&mut tcp, 0x12, &[0x01, 0x00, 0x06, 0x00, 0x01, 0xFF, 0x02]).await;
        drain_message(&mut tcp, &mut buf).await;
        // LOGIN7 with every string empty
        let mut login = vec![0u8; 94];
        login[0..4].copy_from_slice(&94u32.to_le_bytes());
        login[4..8].copy_from_slice(&0x7400_0004u32.to_le_bytes());
        login[8..12].copy_from_slice(&packet_size.to_le_bytes());
        for table in (36..90).step_by(4) {
            login[table..table + 2].copy_from_slice(&94u16.to_le_bytes());
        }
        send_packet(&mut tcp, 0x10, &login).await;
        drain_message(&mut tcp, &mut buf).await;
        // SQL batch
        let mut batch = Vec::new();
        batch.extend_from_slice(&22u32.to_le_bytes());
        batch.extend_from_slice(&18u32.to_le_bytes());
        batch.extend_from_slice(&2u16.to_le_bytes());
        batch.extend_from_slice(&[0; 8]);
        batch.extend_from_slice(&1u32.to_le_bytes());
        batch.extend(OPEN_ORDERS_SQL.encode_utf16().flat_map(u16::to_le_bytes));
        let started = Instant::now();
        send_packet(&mut tcp, 0x01, &batch).await;
        let (packets, bytes) = drain_message(&mut tcp, &mut buf).await;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "raw client, packet size {packet_size}: {orders} rows ({packets} packets, {:.0} MB) in {secs:.2} s \
             = {:.0} rows/s",
            bytes as f64 / 1e6,
            orders as f64 / secs
        );
    }
}
