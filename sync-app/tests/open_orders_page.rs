//! `/open_orders` over real HTTP (a poem server on a free port, raw HTTP/1.1 requests) on
//! SQLite, PostgreSQL and MySQL: Basic auth, the empty table, the last successful sync and
//! exact totals, search (wildcards taken literally), every sort in both directions, pages
//! and their links, bad parameters, escaping and security headers, the navigation.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use chrono::NaiveDate;
use futures::stream;
use joblog::query::{Cursor, RunFilter, RunRecord};
use joblog::{JobLogger, RunStatus};
use rust_decimal::Decimal;
use sea_orm::ConnectionTrait;
use sync_app::erp::{DEFAULT_SOURCE_QUERY, ErpSource, SourceError};
use sync_app::fake_erp::{Failure, FakeErp, FakeErpConfig, FakeErpHandle, order_lines};
use sync_app::open_orders::importer::NoProgress;
use sync_app::open_orders::{OpenOrder, OpenOrdersImporter};
use sync_app::sync_job::{JOB_NAME, SyncOpenOrdersJob};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::TestDb;

/// `ops:pw`, base64.
const AUTH: &str = "b3BzOnB3";
/// `ops:wrong`, base64.
const WRONG: &str = "b3BzOndyb25n";
const PER_PAGE: usize = 50;

// ------------------------------------------------------------------------------------------
// The server and a raw HTTP/1.1 client.

/// The app on a free port, with its logger (the same database).
struct Site {
    addr: SocketAddr,
    logger: JobLogger,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(db: &TestDb) -> Site {
    let logger = sync_app::database::open(&db.url).await.expect("open database");
    let app = sync_app::web::app(
        logger.clone(),
        sync_app::web::web_config(joblog::scheduler::Tz::UTC),
        // These tests try wrong passwords on purpose, more than the login throttle allows
        // from one address (it has tests of its own): a high limit keeps them 401s.
        Some(joblog_web::BasicAuth::new("ops", "pw").throttle(1_000, Duration::from_secs(60))),
        None,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).expect("acceptor");
    let server = tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    });
    Site { addr, logger, server }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let line = std::str::from_utf8(&b[..eol]).unwrap();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// One `GET` with optional Basic credentials (base64 of `user:password`).
async fn request(addr: SocketAddr, path: &str, auth: Option<&str>) -> Reply {
    request_with(addr, "GET", path, auth).await
}

/// One request of `method` without a body, with optional Basic credentials.
async fn request_with(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = auth
        .map(|a| format!("Authorization: Basic {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no complete answer within 10 s"))
        .expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8(buf[..split].to_vec()).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let raw = &buf[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    Reply {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

impl Site {
    /// `GET path` with the right credentials.
    async fn get(&self, path: &str) -> Reply {
        request(self.addr, path, Some(AUTH)).await
    }

    /// `GET path`, expecting 200.
    async fn page(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "GET {path}:\n{}", r.body);
        r.body
    }
}

/// `/open_orders?…` with the pairs URL-encoded.
fn orders_url(pairs: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    format!("/open_orders?{}", q.finish())
}

// ------------------------------------------------------------------------------------------
// Reading the page.

/// Undoes minijinja's HTML escaping (it escapes `/` as `&#x2f;`, also inside attributes).
fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The `order_no/line_no` of every row of the table, in page order.
fn rows(body: &str) -> Vec<(i64, i32)> {
    let Some(start) = body.find("<tbody>") else {
        return Vec::new();
    };
    let end = body[start..].find("</tbody>").expect("</tbody>") + start;
    body[start..end]
        .split("<tr>")
        .skip(1)
        .map(|tr| {
            let cell = tr.split_once("<td class=\"nowrap\">").expect("first cell").1;
            let text = &cell[..cell.find(['<', ' ']).unwrap()];
            let (order, line) = text.trim().split_once('/').expect("order/line");
            (order.parse().unwrap(), line.parse().unwrap())
        })
        .collect()
}

/// The text of the totals line: `N open order lines · EUR 1,234.50 · …`.
fn totals(body: &str) -> &str {
    let start = body.find("<p class=\"count totals\">").expect("the totals line") + 24;
    let end = body[start..].find("</p>").unwrap() + start;
    &body[start..end]
}

/// The target (unescaped) of the link whose text is `label`.
fn link(body: &str, label: &str) -> Option<String> {
    let at = body.find(&format!(">{label}</a>"))?;
    let href = body[..at].rfind("href=\"")? + 6;
    let end = body[href..].find('"')? + href;
    Some(unescape(&body[href..end]))
}

/// The query of a link, decoded.
fn query_of(href: &str) -> BTreeMap<String, String> {
    let q = href.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

// ------------------------------------------------------------------------------------------
// What the page should show.

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn date(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An amount as the page shows it: thousands separators, two decimals.
fn money(a: Decimal) -> String {
    let text = format!("{:.2}", a.abs());
    let (int, frac) = text.split_once('.').unwrap();
    let sign = if a.is_sign_negative() && !a.is_zero() {
        "-"
    } else {
        ""
    };
    format!("{sign}{}.{frac}", thousands(int.parse().unwrap()))
}

/// The totals line for `rows`, summed exactly here.
fn totals_line<'a>(rows: impl IntoIterator<Item = &'a OpenOrder>) -> String {
    let mut n = 0u64;
    let mut by_currency = BTreeMap::<String, Decimal>::new();
    for o in rows {
        n += 1;
        *by_currency.entry(o.currency.clone()).or_default() += o.line_amount;
    }
    let mut line = format!(
        "{} open order line{}",
        thousands(n),
        if n == 1 { "" } else { "s" }
    );
    for (currency, amount) in by_currency {
        line.push_str(&format!(" · {currency} {}", money(amount)));
    }
    line
}

fn keys<'a>(rows: impl IntoIterator<Item = &'a OpenOrder>) -> Vec<(i64, i32)> {
    rows.into_iter().map(|o| (o.order_no, o.line_no)).collect()
}

/// A sort key; a given sort uses one variant only.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Nothing,
    Text(String),
    Number(Decimal),
    Date(Option<NaiveDate>),
}

const SORTS: [&str; 9] = [
    "order",
    "customer",
    "item",
    "qty_open",
    "amount",
    "order_date",
    "requested_date",
    "promised_date",
    "status",
];

fn key(o: &OpenOrder, sort: &str) -> Key {
    match sort {
        "order" => Key::Nothing,
        // The Customer column sorts by name (`Sort::Customer`).
        "customer" => Key::Text(o.customer_name.clone()),
        "item" => Key::Text(o.item_code.clone()),
        "qty_open" => Key::Number(o.qty_open),
        "amount" => Key::Number(o.line_amount),
        "order_date" => Key::Date(Some(o.order_date)),
        "requested_date" => Key::Date(o.requested_date),
        "promised_date" => Key::Date(o.promised_date),
        "status" => Key::Text(o.status.clone()),
        other => panic!("no sort {other}"),
    }
}

/// `rows` in the page's order: the key, then order number and line, all in one direction.
fn sorted<'a>(rows: &'a [OpenOrder], sort: &str, descending: bool) -> Vec<&'a OpenOrder> {
    let mut v: Vec<&OpenOrder> = rows.iter().collect();
    v.sort_by(|a, b| {
        let c = (key(a, sort), a.order_no, a.line_no).cmp(&(key(b, sort), b.order_no, b.line_no));
        if descending { c.reverse() } else { c }
    });
    v
}

// ------------------------------------------------------------------------------------------
// Data.

/// An order line with plain defaults; amounts in canonical scale (as the ERP mapping makes them).
fn line(
    order_no: i64,
    line_no: i32,
    code: &str,
    name: &str,
    item: &str,
    amount: &str,
    cur: &str,
) -> OpenOrder {
    OpenOrder {
        order_no,
        line_no,
        customer_code: code.into(),
        customer_name: name.into(),
        item_code: item.into(),
        item_description: Some("Blue gadget".into()),
        qty_ordered: d("3.0000"),
        qty_shipped: d("1.0000"),
        qty_open: d("2.0000"),
        unit_price: d("1.5000"),
        line_amount: d(amount),
        currency: cur.into(),
        order_date: date(2026, 5, 4),
        requested_date: Some(date(2026, 6, 1)),
        promised_date: None,
        warehouse: Some("W1".into()),
        status: "Open".into(),
        rush: false,
        erp_modified_at: None,
    }
}

async fn import(logger: &JobLogger, rows: &[OpenOrder]) {
    let source = stream::iter(rows.iter().cloned().map(Ok::<OpenOrder, SourceError>));
    OpenOrdersImporter::new(logger.db().clone())
        .replace(source, &NoProgress)
        .await
        .expect("import");
}

const NAMES: [&str; 12] = [
    "Alpha Trading",
    "Bravo Metals",
    "Charlie Foods",
    "Delta Plastics",
    "Echo Textiles",
    "Foxtrot Tools",
    "Golf Paper",
    "Hotel Supplies",
    "India Glass",
    "Juliet Chemicals",
    "Kilo Motors",
    "Lima Logistics",
];
const STATUSES: [&str; 4] = ["Backordered", "Open", "Partially shipped", "Released"];
const GRID_ROWS: u64 = 130;
/// Rows of the grid whose item code starts with `IT-`.
const GRID_IT_ROWS: u64 = 120;

/// Row `i` of a 130-row table whose every sortable column orders the rows differently.
/// Names, codes and statuses differ at their first letter in the same case, so every
/// backend's collation agrees with a byte-wise sort.
fn grid(i: u64) -> OpenOrder {
    // Amounts and quantities that sort differently as text and as numbers.
    let amounts = [
        "9.50",
        "10.00",
        "100.00",
        "2.00",
        "-1.50",
        "1000.00",
        "99.99",
        "1234567.89",
    ];
    let quantities = ["9.5000", "10.0000", "100.0000", "2.0000", "0.2500"];
    let line_amount = amounts
        .get(i as usize)
        .map_or_else(|| Decimal::new(((i * 7919) % 100_000) as i64 + 1, 2), |a| d(a));
    let qty_open = quantities.get(i as usize).map_or_else(
        || Decimal::new(((i * 337) % 2_000) as i64 * 100 + 100, 4),
        |q| d(q),
    );
    let day = |base: NaiveDate, n: u64| base + chrono::Days::new(n);
    OpenOrder {
        order_no: 300_000 + ((i * 37) % GRID_ROWS) as i64,
        line_no: 1 + (i % 3) as i32,
        customer_code: format!("C{:05}", (i * 7) % 50),
        customer_name: NAMES[((i * 5) % 12) as usize].into(),
        item_code: if i < GRID_IT_ROWS {
            format!("IT-{:04}", (i * 13) % 100)
        } else {
            format!("XX-{i:04}")
        },
        item_description: Some(format!("Gadget model {}", i % 5)),
        qty_ordered: qty_open,
        qty_shipped: d("0.0000"),
        qty_open,
        unit_price: d("1.5000"),
        line_amount,
        currency: ["EUR", "USD", "GBP"][(i % 3) as usize].into(),
        order_date: day(date(2026, 1, 1), (i * 29) % 97),
        requested_date: Some(day(date(2026, 3, 1), (i * 31) % 89)),
        promised_date: Some(day(date(2026, 4, 1), (i * 43) % 83)),
        warehouse: Some("W1".into()),
        status: STATUSES[((i * 3) % 4) as usize].into(),
        rush: i.is_multiple_of(10),
        erp_modified_at: None,
    }
}

fn grid_rows() -> Vec<OpenOrder> {
    (0..GRID_ROWS).map(grid).collect()
}

/// The grid rows a search for `IT-` finds: item codes starting with it.
fn it_rows(data: &[OpenOrder]) -> Vec<OpenOrder> {
    let matching: Vec<OpenOrder> = data
        .iter()
        .filter(|o| o.item_code.starts_with("IT-"))
        .cloned()
        .collect();
    assert_eq!(matching.len() as u64, GRID_IT_ROWS);
    matching
}

const SCRIPT_NAME: &str = "<script>alert(1)</script>";

/// Rows for the searches: look-alikes for every kind of match, names with LIKE wildcards.
fn search_rows() -> Vec<OpenOrder> {
    let mut rows = vec![
        line(
            100042,
            1,
            "C00042",
            "Acme Widgets GmbH",
            "IT-1001",
            "1500.00",
            "EUR",
        ),
        line(
            100042,
            2,
            "C00042",
            "Acme Widgets GmbH",
            "IT-2002",
            "250.25",
            "USD",
        ),
        line(100042, 3, "C00042", "Acme Widgets GmbH", "PX-3", "0.75", "EUR"),
        // Starts with 100042 but is another order.
        line(1000420, 1, "C00420", "Borealis Freight", "BX-7", "42.00", "EUR"),
        line(100043, 1, "C00043", "Cobalt Mining", "IT-1003", "10.10", "CHF"),
        line(100044, 1, "C00410", "WIDGETRY Ltd", "PX-1", "5.00", "USD"),
        line(100045, 1, "C00411", "100% Cotton Ltd", "TX-100", "7.00", "EUR"),
        line(100046, 1, "C00412", "1005 Supplies", "TX-200", "8.00", "EUR"),
        line(100047, 1, "C00413", "Under_score Ltd", "UX-1", "11.00", "USD"),
        line(100048, 1, "C00414", "UnderXscore Ltd", "UX-2", "12.00", "USD"),
        line(100049, 1, "C00415", "Bang! Inc", "BX-8", "13.00", "CHF"),
        line(100050, 1, "C00416", "Back\\slash Co", "BX-9", "14.00", "CHF"),
        line(100051, 1, "C00417", SCRIPT_NAME, "SX-1", "15.00", "EUR"),
        // A code containing C0004's digits, not starting with them.
        line(100052, 1, "X0004", "Delta Dairy", "IT-1050", "16.00", "GBP"),
        line(100053, 1, "C00418", "Müller Maschinen", "MX-1", "17.00", "EUR"),
    ];
    rows[3].item_description = Some("Red gadget".into());
    rows[6].item_description = None;
    rows
}

// ------------------------------------------------------------------------------------------
// Syncs against the fake ERP.

async fn fake_erp(orders: u64, fail: Option<Failure>) -> FakeErpHandle {
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

const SEED: u64 = 11;

fn sync_job(erp: &FakeErpHandle, logger: &JobLogger) -> SyncOpenOrdersJob {
    SyncOpenOrdersJob::new(
        ErpSource::from_ado(&erp.ado_string()).expect("ado"),
        DEFAULT_SOURCE_QUERY,
        logger.db().clone(),
    )
}

/// The newest run of the sync job with `status`.
async fn newest_run(logger: &JobLogger, status: RunStatus) -> RunRecord {
    logger.flush().await.expect("flush");
    let filter = RunFilter {
        status: Some(status),
        job: Some(JOB_NAME.into()),
        text: None,
    };
    let page = logger
        .list_runs(&filter, Cursor::First, 1)
        .await
        .expect("list runs");
    page.runs.into_iter().next().expect("a run").run
}

/// What the fake ERP serves, as stored.
fn erp_rows(orders: u64) -> Vec<OpenOrder> {
    order_lines(SEED, 0, orders).map(OpenOrder::from).collect()
}

fn assert_security_headers(r: &Reply, what: &str) {
    let csp = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy in {:?}", r.headers));
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{what}: CSP {csp}"
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: CSP {csp}");
    assert!(
        matches!(r.header("referrer-policy"), Some("no-referrer" | "same-origin")),
        "{what}: {:?}",
        r.headers
    );
}

/// Every route of the app, its successes and its failures, logged in or not: the full
/// header set, and `Cache-Control: no-store` on everything but the versioned assets (which
/// are `private`, never `public`: they are served behind auth).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_the_app_carries_the_full_header_set() {
    let db = TestDb::new(common::Backend::Sqlite).await.expect("sqlite");
    let site = serve(&db).await;
    let run = site.logger.start(JOB_NAME).await.expect("a run");
    run.detail("a line");
    let id = run.id();
    run.success().await.expect("success");
    site.logger.flush().await.expect("flush");
    let (run_page, lines, log) = (
        format!("/job_logs/{id}"),
        format!("/job_logs/{id}/lines?after=0"),
        format!("/job_logs/{id}/log.txt"),
    );
    let (no_store, private) = ("no-store", "private");
    #[rustfmt::skip]
    let cases: [(&str, &str, Option<&str>, u16, &str); 27] = [
        ("GET", "/healthz", None, 200, no_store),
        ("GET", "/open_orders", Some(AUTH), 200, no_store),
        ("GET", "/open_orders?q=x&sort=customer&dir=desc", Some(AUTH), 200, no_store),
        ("GET", "/", Some(AUTH), 200, no_store),
        ("GET", "/job_logs", Some(AUTH), 200, no_store),
        ("GET", &run_page, Some(AUTH), 200, no_store),
        ("GET", &lines, Some(AUTH), 200, no_store),
        ("GET", &log, Some(AUTH), 200, no_store),
        ("GET", "/jobs", Some(AUTH), 200, no_store),
        ("GET", "/assets/app.css", Some(AUTH), 200, private),
        ("GET", "/assets/app.js?v=1", Some(AUTH), 200, private),
        ("GET", "/open_orders?page=abc", Some(AUTH), 400, no_store),
        ("GET", "/job_logs?before=x", Some(AUTH), 400, no_store),
        ("GET", "/job_logs/1/lines?after=zz", Some(AUTH), 400, no_store),
        ("GET", "/assets/%FF", Some(AUTH), 400, no_store),
        ("GET", "/nothing", Some(AUTH), 404, no_store),
        ("GET", "/job_logs/999999", Some(AUTH), 404, no_store),
        ("GET", "/job_logs/999999/log.txt", Some(AUTH), 404, no_store),
        ("GET", "/assets/nothing.css", Some(AUTH), 404, no_store),
        ("POST", "/open_orders", Some(AUTH), 405, no_store),
        ("POST", "/healthz", None, 405, no_store),
        ("GET", "/jobs/SyncOpenOrdersJob/pause", Some(AUTH), 405, no_store),
        ("POST", "/jobs/SyncOpenOrdersJob/run_now", Some(AUTH), 415, no_store),
        ("GET", "/open_orders", None, 401, no_store),
        ("GET", "/assets/app.css", None, 401, no_store),
        ("GET", "/nothing", Some(WRONG), 401, no_store),
        ("POST", "/jobs/SyncOpenOrdersJob/run_now", None, 401, no_store),
    ];
    for (method, path, auth, status, cache) in cases {
        let what = format!("{method} {path} (auth: {})", auth.is_some());
        let r = request_with(site.addr, method, path, auth).await;
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert_security_headers(&r, &what);
        let cache_control = r.header("cache-control").unwrap_or_default();
        if cache == private {
            assert!(
                cache_control.starts_with("private") && cache_control.contains("max-age="),
                "{what}: Cache-Control {cache_control:?}"
            );
        } else {
            assert_eq!(cache_control, "no-store", "{what}");
        }
    }
}

// ------------------------------------------------------------------------------------------
// Cases that do not depend on the data (SQLite only).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_protects_every_page_but_healthz_and_the_navigation_links() {
    let db = TestDb::new(common::Backend::Sqlite).await.expect("sqlite");
    let site = serve(&db).await;
    for path in ["/open_orders", "/open_orders?q=x", "/", "/jobs", "/job_logs/1"] {
        let r = request(site.addr, path, None).await;
        assert_eq!(r.status, 401, "GET {path} without credentials");
        let challenge = r
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("GET {path}: 401 without WWW-Authenticate: {:?}", r.headers));
        assert!(
            challenge.to_ascii_lowercase().starts_with("basic"),
            "GET {path}: WWW-Authenticate: {challenge}"
        );
        assert!(!r.body.contains("Open Orders"), "GET {path}: 401 leaks the page");
        let r = request(site.addr, path, Some(WRONG)).await;
        assert_eq!(r.status, 401, "GET {path} with a wrong password");
    }
    // Not base64, no colon, another scheme: all refused.
    for auth in ["!!!", "b3Bz", "b3BzOg=="] {
        assert_eq!(
            request(site.addr, "/open_orders", Some(auth)).await.status,
            401,
            "{auth}"
        );
    }
    let r = request(site.addr, "/healthz", None).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "ok"),
        "/healthz needs no login"
    );

    let r = site.get("/open_orders").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{:?}",
        r.headers
    );
    assert_security_headers(&r, "/open_orders");
    let body = r.body;
    assert!(body.contains("<h1>Open Orders</h1>"), "{body}");
    // The navigation buttons (hrefs escaped as `&#x2f;open_orders`).
    let nav_start = body.find("<nav class=\"nav\">").expect("the navigation");
    let nav = &body[nav_start..nav_start + body[nav_start..].find("</nav>").unwrap()];
    assert!(nav.contains("href=\"&#x2f;open_orders\""), "{nav}");
    assert_eq!(link(nav, "Open Orders").as_deref(), Some("/open_orders"), "{nav}");
    assert_eq!(link(nav, "Jobs Monitor").as_deref(), Some("/jobs"), "{nav}");
    // Both lead somewhere, as does the run list the title links to.
    assert!(site.page("/jobs").await.contains("Jobs Monitor"));
    assert!(site.page("/").await.contains("Open Orders"));
}

/// Unmatched routes, wrong methods and bad values anywhere in the app get joblog-web's
/// styled error page — the layout, the navigation, a way back — with the security headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_of_the_app_is_a_styled_page_with_the_security_headers() {
    let db = TestDb::new(common::Backend::Sqlite).await.expect("sqlite");
    let site = serve(&db).await;
    for (method, path, status, text) in [
        ("GET", "/nothing", 404, "There is no page at this address."),
        (
            "GET",
            "/open_orders/extra",
            404,
            "There is no page at this address.",
        ),
        ("GET", "/job_logs/abc", 404, "There is no run abc."),
        ("GET", "/assets/%FF", 400, "A part of this address is not valid."),
        ("GET", "/job_logs?before=x", 400, "before must be a number"),
        ("POST", "/open_orders", 405, "does not answer POST requests"),
        ("POST", "/", 405, "does not answer POST requests"),
        (
            "GET",
            "/jobs/SyncOpenOrdersJob/pause",
            405,
            "does not answer GET requests",
        ),
        ("POST", "/healthz", 405, "does not answer POST requests"),
    ] {
        let what = format!("{method} {path}");
        let r = request_with(site.addr, method, path, Some(AUTH)).await;
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert!(r.body.contains(text), "{what} lacks {text:?}: {}", r.body);
        assert_security_headers(&r, &what);
        assert!(
            r.header("content-security-policy")
                .is_some_and(|c| c.contains("frame-ancestors 'none'")),
            "{what}"
        );
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/html")),
            "{what}: {:?}",
            r.headers
        );
        assert!(
            r.body.contains("<nav class=\"nav\">"),
            "{what}: the layout: {}",
            r.body
        );
        assert_eq!(link(&r.body, "Jobs Monitor").as_deref(), Some("/jobs"), "{what}");
        assert!(
            unescape(&r.body).contains("href=\"/assets/app.css?v="),
            "{what}: {}",
            r.body
        );
        assert!(r.body.contains("Back to the job logs"), "{what}: {}", r.body);
    }
    // Without credentials, the same paths are only a 401 (nothing of the pages shows).
    for path in ["/nothing", "/open_orders/extra"] {
        let r = request(site.addr, path, None).await;
        assert_eq!(r.status, 401, "{path}");
        assert!(!r.body.contains("Open Orders"), "{path}: {}", r.body);
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
    }
}

// ------------------------------------------------------------------------------------------
// Data-dependent cases, on every backend.

async fn empty_table_before_any_sync(db: TestDb) {
    let site = serve(&db).await;
    let body = site.page("/open_orders").await;
    assert!(body.contains("No successful sync yet."), "{body}");
    assert!(
        body.contains("No open orders yet: the first sync has not finished."),
        "{body}"
    );
    assert_eq!(totals(&body), "0 open order lines", "{body}");
    assert!(!body.contains("<tbody>"), "no table when there are no rows");
    assert!(!unescape(&body).contains("/job_logs"), "no run to link yet");
    for path in [
        "/open_orders?q=100042",
        "/open_orders?sort=amount&dir=desc",
        "/open_orders?q=%25&sort=customer",
    ] {
        let body = site.page(path).await;
        assert_eq!(totals(&body), "0 open order lines", "{path}");
    }
    let body = site.page("/open_orders?q=C00042").await;
    assert!(body.contains("No open orders match “C00042”."), "{body}");
    let r = site.get("/open_orders?page=2").await;
    assert!(
        r.status == 200 || r.status == 404,
        "page 2 of nothing: {}",
        r.status
    );

    // A successful sync of an empty view: linked, and the message no longer blames it.
    let erp = fake_erp(0, None).await;
    sync_job(&erp, &site.logger)
        .run(&site.logger)
        .await
        .expect("empty sync");
    let run = newest_run(&site.logger, RunStatus::Success).await;
    let body = site.page("/open_orders").await;
    assert_eq!(
        link(&body, &run.name),
        Some(format!("/job_logs/{}", run.id)),
        "{body}"
    );
    assert!(body.contains("No open orders yet."), "{body}");
    assert!(!body.contains("the first sync has not finished"), "{body}");
    assert_eq!(totals(&body), "0 open order lines");
}

async fn links_the_last_successful_sync_with_exact_totals(db: TestDb) {
    const ORDERS: u64 = 300;
    let site = serve(&db).await;
    let erp = fake_erp(ORDERS, None).await;
    let stats = sync_job(&erp, &site.logger)
        .run(&site.logger)
        .await
        .expect("sync");
    assert_eq!(stats.inserted, ORDERS);
    let good = newest_run(&site.logger, RunStatus::Success).await;
    // A later failing sync leaves the snapshot and the link as they were.
    let broken = fake_erp(ORDERS, Some(Failure::Sql)).await;
    sync_job(&broken, &site.logger)
        .run(&site.logger)
        .await
        .expect_err("the ERP fails the query");
    let failed = newest_run(&site.logger, RunStatus::Error).await;
    assert_ne!(failed.id, good.id);

    let body = site.page("/open_orders").await;
    let href = link(&body, &good.name).unwrap_or_else(|| panic!("no link to run {}:\n{body}", good.name));
    assert_eq!(href, format!("/job_logs/{}", good.id));
    assert!(body.contains("Last successful sync: <a href="), "{body}");
    assert!(body.contains("This snapshot was written at"), "{body}");
    assert!(
        !unescape(&body).contains(&format!("/job_logs/{}\"", failed.id)),
        "the failed run is not the last successful sync"
    );
    let run_page = site.page(&href).await;
    assert!(
        run_page.contains(JOB_NAME) && run_page.contains(&good.name),
        "{run_page}"
    );

    let expected = erp_rows(ORDERS);
    assert_eq!(expected.len() as u64, ORDERS);
    assert_eq!(
        totals(&body),
        totals_line(&expected),
        "totals over the whole snapshot"
    );
    let first: Vec<(i64, i32)> = keys(sorted(&expected, "order", false).into_iter().take(PER_PAGE));
    assert_eq!(rows(&body), first, "page 1 in order-number order");
    assert!(body.contains("Page 1 of 6"), "{body}");
}

/// A search, the rows it should show, what it checks.
type SearchCase = (&'static str, Vec<(i64, i32)>, &'static str);

async fn search_matches_numbers_codes_and_names_literally(db: TestDb) {
    let site = serve(&db).await;
    let data = search_rows();
    import(&site.logger, &data).await;
    let k = |o: i64, l: i32| (o, l);
    let acme = [k(100042, 1), k(100042, 2), k(100042, 3)];
    let cases: Vec<SearchCase> = vec![
        ("100042", acme.to_vec(), "order number, exactly (not 1000420)"),
        ("  100042  ", acme.to_vec(), "order number, trimmed"),
        ("1000420", vec![k(1000420, 1)], "the longer order number"),
        (
            "C0004",
            [&acme[..], &[k(100043, 1)]].concat(),
            "customer code prefix",
        ),
        ("0004", vec![], "a customer code matches by its start only"),
        (
            "widget",
            [&acme[..], &[k(100044, 1)]].concat(),
            "part of a customer name, any case",
        ),
        ("wIdGeTs gMbH", acme.to_vec(), "customer name, mixed case"),
        (
            "IT-1",
            vec![k(100042, 1), k(100043, 1), k(100052, 1)],
            "item code prefix",
        ),
        ("T-1", vec![], "an item code matches by its start only"),
        ("100%", vec![k(100045, 1)], "`%` is literal (not 1005 Supplies)"),
        ("%", vec![k(100045, 1)], "a lone `%` is literal"),
        (
            "Under_score",
            vec![k(100047, 1)],
            "`_` is literal (not UnderXscore)",
        ),
        ("_", vec![k(100047, 1)], "a lone `_` is literal"),
        (
            "Bang!",
            vec![k(100049, 1)],
            "the LIKE escape character `!` is literal",
        ),
        ("Back\\slash", vec![k(100050, 1)], "a backslash is literal"),
        ("Müller", vec![k(100053, 1)], "non-ASCII name"),
        ("<script>", vec![k(100051, 1)], "markup in a name"),
        (
            "GADGET",
            keys(data.iter().filter(|o| o.item_description.is_some())),
            "part of an item description",
        ),
    ];
    let mut failures = Vec::new();
    for (q, mut want, what) in cases {
        want.sort();
        let url = orders_url(&[("q", q)]);
        let r = site.get(&url).await;
        if r.status != 200 {
            failures.push(format!("{what}: q={q:?} → HTTP {}", r.status));
            continue;
        }
        let got = rows(&r.body);
        let matching: Vec<&OpenOrder> = data
            .iter()
            .filter(|o| want.contains(&(o.order_no, o.line_no)))
            .collect();
        if got != want {
            failures.push(format!("{what}: q={q:?} shows {got:?}, expected {want:?}"));
        } else if totals(&r.body) != totals_line(matching.iter().copied()) {
            failures.push(format!(
                "{what}: q={q:?} totals `{}`, expected `{}`",
                totals(&r.body),
                totals_line(matching.iter().copied())
            ));
        }
        if want.is_empty() {
            let message = format!("No open orders match “{}”.", q.trim());
            if !r.body.contains(&message) {
                failures.push(format!("{what}: q={q:?} lacks `{message}`"));
            }
        }
        // The box keeps the search (escaped).
        let echoed = format!("name=\"q\" value=\"{}\"", q.trim());
        if !unescape(&r.body).contains(&echoed) {
            failures.push(format!("{what}: q={q:?} is not kept in the search box"));
        }
    }
    assert!(
        failures.is_empty(),
        "searches that went wrong:\n{}",
        failures.join("\n")
    );

    let body = site.page(&orders_url(&[("q", "nothing-like-this")])).await;
    assert!(
        body.contains("No open orders match “nothing-like-this”."),
        "{body}"
    );
    assert_eq!(totals(&body), "0 open order lines");
    assert!(!body.contains("<tbody>"));
    // The whole table is back without a search, with totals over everything.
    let body = site.page("/open_orders").await;
    assert_eq!(totals(&body), totals_line(&data));
    assert_eq!(rows(&body), keys(sorted(&data, "order", false)));
}

/// The sort column's values in the order of `rows`, for readable failures.
fn shown(data: &[OpenOrder], rows: &[(i64, i32)], sort: &str) -> String {
    let values: Vec<String> = rows
        .iter()
        .take(12)
        .map(|k| {
            let o = data.iter().find(|o| (o.order_no, o.line_no) == *k).unwrap();
            match key(o, sort) {
                Key::Nothing => format!("{}/{}", o.order_no, o.line_no),
                Key::Text(t) => t,
                Key::Number(n) => n.to_string(),
                Key::Date(d) => d.map_or("-".into(), |d| d.to_string()),
            }
        })
        .collect();
    let more = if rows.len() > values.len() { ", …" } else { "" };
    format!("[{}{more}]", values.join(", "))
}

async fn every_column_sorts_both_ways(db: TestDb) {
    let site = serve(&db).await;
    let data = grid_rows();
    import(&site.logger, &data).await;
    let mut failures = Vec::new();
    for sort in SORTS {
        for (dir, descending) in [("asc", false), ("desc", true)] {
            let want = keys(sorted(&data, sort, descending));
            // Every page, so that the order holds across page boundaries too.
            let mut got = Vec::new();
            for page in 1..=3 {
                let url = format!("/open_orders?sort={sort}&dir={dir}&page={page}");
                got.extend(rows(&site.page(&url).await));
            }
            if got != want {
                // From the first row out of place.
                let at = got.iter().zip(&want).take_while(|(g, w)| g == w).count();
                failures.push(format!(
                    "sort={sort}&dir={dir}, from row {}:\n  shows    {}\n  expected {}",
                    at + 1,
                    shown(&data, &got[at..], sort),
                    shown(&data, &want[at..], sort)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{:?}: {} of 18 sorts put the rows in the wrong order:\n{}",
        db.backend,
        failures.len(),
        failures.join("\n")
    );
    // No parameters: order number ascending.
    let body = site.page("/open_orders").await;
    assert_eq!(
        rows(&body),
        keys(sorted(&data, "order", false).into_iter().take(PER_PAGE))
    );
}

/// A searched page sorts, pages and totals like the whole table does, over the matching
/// rows only (the search reads its rows and totals in one statement of its own).
async fn searched_pages_sort_and_total_over_the_matches(db: TestDb) {
    let site = serve(&db).await;
    let data = grid_rows();
    import(&site.logger, &data).await;
    // `IT-` (the index's smallest term) is in 120 of the 130 item codes: three pages.
    let matching = it_rows(&data);
    let want_totals = totals_line(&matching);
    let mut failures = Vec::new();
    for sort in SORTS {
        for (dir, descending) in [("asc", false), ("desc", true)] {
            let want = keys(sorted(&matching, sort, descending));
            let mut got = Vec::new();
            for page in 1..=3 {
                let page = page.to_string();
                let url = orders_url(&[("q", "IT-"), ("sort", sort), ("dir", dir), ("page", &page)]);
                let body = site.page(&url).await;
                if totals(&body) != want_totals {
                    failures.push(format!(
                        "q=IT-&sort={sort}&dir={dir}&page={page}: totals `{}`, expected `{want_totals}`",
                        totals(&body)
                    ));
                }
                got.extend(rows(&body));
            }
            if got != want {
                let at = got.iter().zip(&want).take_while(|(g, w)| g == w).count();
                failures.push(format!(
                    "q=IT-&sort={sort}&dir={dir}, from row {} of {}:\n  shows    {}\n  expected {}",
                    at + 1,
                    want.len(),
                    shown(&matching, &got[at.min(got.len())..], sort),
                    shown(&matching, &want[at..], sort)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{:?}: searched pages that went wrong:\n{}",
        db.backend,
        failures.join("\n")
    );
}

/// Amounts and open quantities sort as numbers, not as their text (`10.00` < `9.50`).
async fn amounts_and_quantities_sort_as_numbers(db: TestDb) {
    let site = serve(&db).await;
    let amounts = ["9.50", "10.00", "100.00", "2.00", "-1.50"];
    let quantities = ["10.0000", "9.5000", "0.2500", "100.0000", "2.0000"];
    let data: Vec<OpenOrder> = amounts
        .iter()
        .zip(quantities)
        .enumerate()
        .map(|(i, (a, q))| {
            let mut o = line(700_001 + i as i64, 1, "C1", "Alpha", "IT-1", a, "EUR");
            o.qty_open = d(q);
            o
        })
        .collect();
    import(&site.logger, &data).await;
    for (sort, dir, want) in [
        ("amount", "asc", "-1.50, 2.00, 9.50, 10.00, 100.00"),
        ("amount", "desc", "100.00, 10.00, 9.50, 2.00, -1.50"),
        ("qty_open", "asc", "0.2500, 2.0000, 9.5000, 10.0000, 100.0000"),
        ("qty_open", "desc", "100.0000, 10.0000, 9.5000, 2.0000, 0.2500"),
    ] {
        let got = rows(&site.page(&format!("/open_orders?sort={sort}&dir={dir}")).await);
        let values: Vec<String> = got
            .iter()
            .map(|k| {
                let o = data.iter().find(|o| o.order_no == k.0).unwrap();
                if sort == "amount" {
                    o.line_amount
                } else {
                    o.qty_open
                }
                .to_string()
            })
            .collect();
        assert_eq!(
            values.join(", "),
            want,
            "{:?}: sort={sort}&dir={dir} orders the values as text, not as numbers",
            db.backend
        );
    }
}

/// Rows without a promised date stay together at one end; the rest are in date order.
async fn rows_without_a_date_sort_together(db: TestDb) {
    let site = serve(&db).await;
    let mut data = grid_rows();
    for o in data.iter_mut().step_by(4) {
        o.promised_date = None;
    }
    import(&site.logger, &data).await;
    let dated: Vec<OpenOrder> = data
        .iter()
        .filter(|o| o.promised_date.is_some())
        .cloned()
        .collect();
    let undated: Vec<OpenOrder> = data
        .iter()
        .filter(|o| o.promised_date.is_none())
        .cloned()
        .collect();
    for (dir, descending) in [("asc", false), ("desc", true)] {
        let mut got = Vec::new();
        for page in 1..=3 {
            let url = format!("/open_orders?sort=promised_date&dir={dir}&page={page}");
            got.extend(rows(&site.page(&url).await));
        }
        let dated_keys = keys(sorted(&dated, "promised_date", descending));
        let undated_keys = keys(sorted(&undated, "order", descending));
        let first = [&undated_keys[..], &dated_keys[..]].concat();
        let last = [&dated_keys[..], &undated_keys[..]].concat();
        assert!(
            got == first || got == last,
            "sort=promised_date&dir={dir}: rows without a date neither all first nor all last: {}",
            shown(&data, &got, "promised_date")
        );
        eprintln!(
            "{:?}: sort=promised_date&dir={dir} puts rows without a date {}",
            db.backend,
            if got == first { "first" } else { "last" }
        );
    }
}

async fn pages_carry_search_and_sort_and_bad_parameters_are_400(db: TestDb) {
    let site = serve(&db).await;
    let data = grid_rows();
    import(&site.logger, &data).await;
    let matching = it_rows(&data);
    let want = keys(sorted(&matching, "customer", true));

    // Page 1 of 3.
    let body = site.page("/open_orders?q=IT-&sort=customer&dir=desc").await;
    assert_eq!(
        totals(&body),
        totals_line(&matching),
        "totals of the search, not of the table"
    );
    assert!(totals(&body).starts_with("120 open order lines"));
    assert_eq!(rows(&body), want[..50]);
    assert!(body.contains("Page 1 of 3"), "{body}");
    assert_eq!(link(&body, "← Previous"), None);
    // The active column shows its direction; clicking it flips it and keeps the search.
    assert!(body.contains("Customer ▼</a>"), "{body}");
    let flip = query_of(&link(&body, "Customer ▼").unwrap());
    assert_eq!(flip.get("dir").map(String::as_str), Some("asc"));
    assert_eq!(flip.get("q").map(String::as_str), Some("IT-"));
    let other = query_of(&link(&body, "Amount").unwrap());
    assert_eq!(
        (other["sort"].as_str(), other["dir"].as_str(), other["q"].as_str()),
        ("amount", "asc", "IT-")
    );

    let next = link(&body, "Next →").expect("a Next link on page 1");
    let q = query_of(&next);
    assert!(next.starts_with("/open_orders?"), "{next}");
    for (k, v) in [("q", "IT-"), ("sort", "customer"), ("dir", "desc"), ("page", "2")] {
        assert_eq!(q.get(k).map(String::as_str), Some(v), "{k} in {next}");
    }
    // Page 2, reached by the link.
    let body = site.page(&next).await;
    assert_eq!(rows(&body), want[50..100]);
    assert!(body.contains("Page 2 of 3"), "{body}");
    let prev = link(&body, "← Previous").expect("a Previous link on page 2");
    let q = query_of(&prev);
    for (k, v) in [("q", "IT-"), ("sort", "customer"), ("dir", "desc")] {
        assert_eq!(q.get(k).map(String::as_str), Some(v), "{k} in {prev}");
    }
    assert!(q.get("page").is_none_or(|p| p == "1"), "{prev}");
    assert_eq!(rows(&site.page(&prev).await), want[..50]);
    let next = link(&body, "Next →").expect("a Next link on page 2");
    // Page 3: the last 20.
    let body = site.page(&next).await;
    assert_eq!(rows(&body).len(), 20);
    assert_eq!(rows(&body), want[100..]);
    assert!(body.contains("Page 3 of 3"), "{body}");
    assert_eq!(link(&body, "Next →"), None);
    assert_eq!(totals(&body), totals_line(&matching), "totals on every page");

    // A search with a space survives the links too.
    let body = site
        .page(&orders_url(&[("q", "gadget model"), ("sort", "status")]))
        .await;
    let next = link(&body, "Next →").expect("a Next link");
    assert_eq!(query_of(&next).get("q").map(String::as_str), Some("gadget model"));
    assert_eq!(
        rows(&site.page(&next).await),
        keys(sorted(&data, "status", false))[50..100]
    );

    // Past the end.
    let r = site.get("/open_orders?q=IT-&sort=customer&dir=desc&page=4").await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("There are 3 pages of results."), "{}", r.body);
    assert_security_headers(&r, "404");
    // Without the search: 130 rows, the third page has 30.
    let body = site.page("/open_orders?page=3").await;
    assert_eq!(rows(&body), keys(sorted(&data, "order", false))[100..]);
    assert_eq!(site.get("/open_orders?page=4").await.status, 404);

    // Bad parameters: 400 with a readable page, never 500.
    let bad = [
        ("page=0", "page must be a whole number from 1."),
        ("page=abc", "page must be a whole number from 1."),
        ("page=-1", "page must be a whole number from 1."),
        ("page=1.5", "page must be a whole number from 1."),
        ("page=99999999999999999999", "page must be a whole number from 1."),
        (
            "sort=bogus",
            "unknown sort `bogus`; use one of: order, order_date",
        ),
        ("sort=ORDER", "unknown sort `ORDER`"),
        (
            "dir=sideways",
            "dir must be asc or desc, not &quot;sideways&quot;.",
        ),
        ("sort=%3Cb%3E", "unknown sort `&lt;b&gt;`"),
    ];
    for (query, message) in bad {
        let r = site.get(&format!("/open_orders?{query}")).await;
        assert_eq!(r.status, 400, "?{query}: {}", r.body);
        assert!(r.body.contains("<h1>Bad request</h1>"), "?{query}: {}", r.body);
        assert!(r.body.contains(message), "?{query} lacks `{message}`: {}", r.body);
        assert!(r.body.contains("Back to Open Orders"), "?{query}");
        assert!(!r.body.contains("<b>"), "?{query}: the value is escaped");
        assert_security_headers(&r, query);
    }
}

async fn markup_in_data_and_search_is_escaped(db: TestDb) {
    let site = serve(&db).await;
    import(&site.logger, &search_rows()).await;
    let r = site.get("/open_orders").await;
    assert_eq!(r.status, 200);
    assert_security_headers(&r, "/open_orders");
    assert!(
        !r.body.contains(SCRIPT_NAME),
        "the name is markup on the page:\n{}",
        r.body
    );
    assert!(
        r.body
            .contains("<span class=\"muted\">&lt;script&gt;alert(1)&lt;&#x2f;script&gt;</span>"),
        "the name is not shown as text:\n{}",
        r.body
    );
    assert!(!r.body.contains("<script>"), "no inline script at all");
    assert!(r.body.contains("Back\\slash Co") && r.body.contains("Bang! Inc"));

    let q = "<script>alert(2)</script>\"'";
    let r = site.get(&orders_url(&[("q", q)])).await;
    assert_eq!(r.status, 200);
    assert_security_headers(&r, "search");
    assert!(
        !r.body.contains("alert(2)</script>"),
        "the search is reflected as markup"
    );
    assert!(
        r.body
            .contains("No open orders match “&lt;script&gt;alert(2)&lt;&#x2f;script&gt;&quot;&#x27;”."),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("value=\"&lt;script&gt;alert(2)&lt;&#x2f;script&gt;&quot;&#x27;\""),
        "{}",
        r.body
    );
}

/// Amounts of 17 integer digits (decimal(19,2) allows them) and quantities of 18 significant
/// digits sort exactly, and their sums are exact. (Chosen so that their text sorts like their
/// value: this is about precision, not about text versus number.)
async fn amounts_sort_exactly_beyond_double_precision(db: TestDb) {
    let site = serve(&db).await;
    let mut data = vec![
        line(500001, 1, "C1", "Alpha", "IT-1", "12345678901234567.89", "EUR"),
        line(500002, 1, "C2", "Bravo", "IT-2", "12345678901234567.88", "EUR"),
        line(500003, 1, "C3", "Charlie", "IT-3", "12345678901234567.87", "EUR"),
        line(500004, 1, "C4", "Delta", "IT-4", "1.00", "EUR"),
    ];
    for (o, q) in data.iter_mut().zip([
        "12345678901234.0003",
        "12345678901234.0002",
        "12345678901234.0001",
        "1.0000",
    ]) {
        o.qty_open = d(q);
    }
    import(&site.logger, &data).await;
    let body = site.page("/open_orders").await;
    assert_eq!(totals(&body), totals_line(&data), "exact sums");
    // The same through a search (its own statement; SQLite's integer sum of cents cannot
    // hold these amounts and must hand over to the exact sum).
    let body = site.page(&orders_url(&[("q", "IT-"), ("sort", "amount")])).await;
    assert_eq!(totals(&body), totals_line(&data), "exact sums of a search");
    assert_eq!(
        rows(&body),
        keys(sorted(&data, "amount", false)),
        "a search's amount sort"
    );
    let mut failures = Vec::new();
    for (sort, dir, descending) in [
        ("amount", "asc", false),
        ("amount", "desc", true),
        ("qty_open", "asc", false),
        ("qty_open", "desc", true),
    ] {
        let got = rows(&site.page(&format!("/open_orders?sort={sort}&dir={dir}")).await);
        let want = keys(sorted(&data, sort, descending));
        if got != want {
            failures.push(format!(
                "sort={sort}&dir={dir}: shows {}, expected {}",
                shown(&data, &got, sort),
                shown(&data, &want, sort)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{:?}: values that differ only beyond a double's 15-16 significant digits sort as equal \
         (then by order number):\n{}",
        db.backend,
        failures.join("\n")
    );
}

/// The importer takes any `Decimal`: amounts whose scale is not 2 (`9.5`, `10`) are the same
/// amounts, and the totals must still be exact.
async fn totals_are_exact_whatever_the_scale_of_the_amounts(db: TestDb) {
    let site = serve(&db).await;
    let data = vec![
        line(600001, 1, "C1", "Alpha", "IT-1", "9.5", "EUR"),
        line(600002, 1, "C2", "Bravo", "IT-2", "10", "EUR"),
        line(600003, 1, "C3", "Charlie", "IT-3", "0.05", "EUR"),
        line(600004, 1, "C4", "Delta", "IT-4", "1234.5", "EUR"),
    ];
    import(&site.logger, &data).await;
    let body = site.page("/open_orders").await;
    assert!(
        body.contains("9.50 EUR") && body.contains("1,234.50 EUR"),
        "{body}"
    );
    assert_eq!(
        totals(&body),
        "4 open order lines · EUR 1,254.05",
        "9.5 + 10 + 0.05 + 1234.5 = 1254.05"
    );
}

/// The search's index is kept by the database: a row written by hand-written SQL is found
/// at once, an updated one under its new name only, a deleted one no more — and the next
/// sync's rebuilt index agrees with its rows (SQLite: FTS5's own integrity check).
async fn search_finds_rows_written_by_raw_sql(db: TestDb) {
    let site = serve(&db).await;
    let data = search_rows();
    import(&site.logger, &data).await;
    let conn = db.fresh().await;
    let exec = |sql: &'static str| {
        let conn = conn.clone();
        async move {
            conn.execute_unprepared(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    };
    exec(
        "INSERT INTO open_orders (order_no, line_no, customer_code, customer_name, item_code, \
         item_description, qty_ordered, qty_shipped, qty_open, unit_price, line_amount, currency, \
         order_date, status, rush, synced_at) SELECT 900001, 1, 'Q901', 'Quixotic Handmade Ltd', \
         'QQ-1', 'Hand-thrown teapot', qty_ordered, qty_shipped, qty_open, unit_price, line_amount, \
         currency, order_date, status, rush, synced_at FROM open_orders WHERE order_no = 100043",
    )
    .await;
    let found = |q: &str| {
        let url = orders_url(&[("q", q)]);
        let site = &site;
        async move { rows(&site.page(&url).await) }
    };
    assert_eq!(
        found("xotic hand").await,
        [(900001, 1)],
        "{:?}: an inserted name",
        db.backend
    );
    assert_eq!(
        found("thrown tea").await,
        [(900001, 1)],
        "{:?}: an inserted description",
        db.backend
    );
    exec("UPDATE open_orders SET customer_name = 'Zephyr Ceramics' WHERE order_no = 900001").await;
    assert_eq!(
        found("Quixotic").await,
        [],
        "{:?}: the old name is gone",
        db.backend
    );
    assert_eq!(
        found("phyr cera").await,
        [(900001, 1)],
        "{:?}: the new name",
        db.backend
    );
    exec("DELETE FROM open_orders WHERE order_no = 900001").await;
    assert_eq!(found("phyr cera").await, [], "{:?}: a deleted row", db.backend);
    assert_eq!(
        found("Cobalt").await,
        [(100043, 1)],
        "{:?}: the others stay",
        db.backend
    );
    // The next sync indexes its own rows.
    let mut next = search_rows();
    next[4].customer_name = "Cobalt Quarrying".into();
    import(&site.logger, &next).await;
    assert_eq!(
        found("quarrying").await,
        [(100043, 1)],
        "{:?}: after a sync",
        db.backend
    );
    assert_eq!(
        found("Mining").await,
        [],
        "{:?}: the old snapshot's text",
        db.backend
    );
    if db.backend == common::Backend::Sqlite {
        conn.execute_unprepared(
            "INSERT INTO open_orders_fts (open_orders_fts, rank) VALUES ('integrity-check', 1)",
        )
        .await
        .expect("the FTS index matches open_orders");
    }
    conn.close().await.ok();
}

backend_tests!(
    empty_table_before_any_sync,
    links_the_last_successful_sync_with_exact_totals,
    search_matches_numbers_codes_and_names_literally,
    search_finds_rows_written_by_raw_sql,
    every_column_sorts_both_ways,
    searched_pages_sort_and_total_over_the_matches,
    amounts_and_quantities_sort_as_numbers,
    rows_without_a_date_sort_together,
    pages_carry_search_and_sort_and_bad_parameters_are_400,
    markup_in_data_and_search_is_escaped,
    amounts_sort_exactly_beyond_double_precision,
    totals_are_exact_whatever_the_scale_of_the_amounts,
);
