//! `/metrics` of sync-app on SQLite, PostgreSQL and MySQL: behind the Basic login, or
//! behind `METRICS_TOKEN` as a bearer token; joblog's metrics and the sync's own, parsed by
//! the Prometheus project's OpenMetrics parser (`scripts/openmetrics_parse.py`); the
//! database's values the same on an instance that did not run the sync.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;

use joblog_web::BasicAuth;
use poem::{Endpoint, Request};
use sync_app::erp::{DEFAULT_SOURCE_QUERY, ErpSource};
use sync_app::fake_erp::{FakeErp, FakeErpConfig};
use sync_app::metrics::SyncMetrics;
use sync_app::sync_job::{JOB_NAME, SyncOpenOrdersJob};

use common::TestDb;

const TOKEN: &str = "0123456789abcdef-metrics";
/// `ops:pw`, base64.
const BASIC: &str = "Basic b3BzOnB3";
const ROWS: u64 = 137;

/// The samples of a metrics text (OpenMetrics, or with `plain` the Prometheus text format),
/// keyed `name{label="value",…}` with the labels sorted, as the Prometheus project's parser
/// reads them; `None` (after a loud message) when the parser is missing, unless
/// `JOBLOG_REQUIRE_PROMETHEUS_PARSER=1`.
fn parse(text: &str, plain: bool) -> Option<HashMap<String, f64>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/openmetrics_parse.py");
    let required = std::env::var("JOBLOG_REQUIRE_PROMETHEUS_PARSER").is_ok_and(|v| v == "1" || v == "true");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .args(plain.then_some("--text"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) && !required {
        eprintln!("!!! SKIPPED: the OpenMetrics parse: {stderr} (pip install prometheus-client)");
        return None;
    }
    assert!(
        out.status.success(),
        "the Prometheus parser rejected the metrics: {stderr}\n{text}"
    );
    let families: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut samples = HashMap::new();
    for s in families
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["samples"].as_array().unwrap())
    {
        let mut labels: Vec<String> = s[1]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap()))
            .collect();
        labels.sort();
        let key = format!("{}{{{}}}", s[0].as_str().unwrap(), labels.join(","));
        samples.insert(key, s[2].as_f64().unwrap());
    }
    Some(samples)
}

/// What Prometheus sends as `Accept`.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

async fn get(app: &impl Endpoint, authorization: Option<&str>) -> (u16, String, String, String) {
    get_as(app, authorization, PROMETHEUS_ACCEPT).await
}

async fn get_as(
    app: &impl Endpoint,
    authorization: Option<&str>,
    accept: &str,
) -> (u16, String, String, String) {
    let mut req = Request::builder()
        .uri("/metrics".parse().unwrap())
        .header("accept", accept);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = app.get_response(req.finish()).await;
    let status = resp.status().as_u16();
    let header = |name| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (content_type, www) = (header("content-type"), header("www-authenticate"));
    let body = resp.into_body().into_string().await.unwrap();
    (status, content_type, www, body)
}

async fn metrics_behind_the_login_or_a_token(db: TestDb) {
    let erp = FakeErp::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        FakeErpConfig {
            orders: ROWS,
            ..FakeErpConfig::default()
        },
    )
    .await
    .expect("bind fake ERP")
    .spawn();
    let logger = sync_app::database::open(&db.url).await.expect("open");
    // A second instance on the same database, which runs no sync.
    let other = sync_app::database::open(&db.url).await.expect("open again");
    let job = SyncOpenOrdersJob::new(
        ErpSource::from_ado(&erp.ado_string()).expect("ado"),
        DEFAULT_SOURCE_QUERY,
        logger.db().clone(),
    )
    .with_metrics(SyncMetrics::of(&logger));
    job.run(&logger).await.expect("sync");
    logger.flush().await.unwrap();
    let config = sync_app::web::web_config(joblog::scheduler::Tz::UTC);
    let login = || Some(BasicAuth::new("ops", "pw").without_throttle());

    // With METRICS_TOKEN: the bearer token and nothing else.
    let app = sync_app::web::app(logger.clone(), config.clone(), login(), Some(TOKEN.into()));
    for (what, authorization) in [
        ("no credentials", None),
        ("a wrong token", Some("Bearer 0123456789abcdef-metricX")),
        ("the Basic login", Some(BASIC)),
        (
            "the token as Basic",
            Some("Basic MDEyMzQ1Njc4OWFiY2RlZi1tZXRyaWNz"),
        ),
    ] {
        let (status, _, www, body) = get(&app, authorization).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(www.starts_with("Bearer"), "{what}: {www}");
        assert!(!body.contains("joblog_"), "{what}: {body}");
    }
    let (status, content_type, _, text) = get(&app, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let Some(mine) = parse(&text, false) else { return };
    let n = ROWS as f64;
    assert_eq!(
        mine.get("sync_open_orders_rows{phase=\"fetched\"}"),
        Some(&n),
        "{text}"
    );
    assert_eq!(
        mine.get("sync_open_orders_rows{phase=\"inserted\"}"),
        Some(&n),
        "{text}"
    );
    assert_eq!(mine.get("sync_open_orders_last_rows{}"), Some(&n), "{text}");
    let key = format!("joblog_runs_total{{job=\"{JOB_NAME}\",status=\"success\"}}");
    assert_eq!(mine.get(&key), Some(&1.0), "{text}");
    let last = format!("joblog_last_success_timestamp_seconds{{job=\"{JOB_NAME}\"}}");
    let at = *mine.get(&last).expect("last success");
    assert!((at - chrono::Utc::now().timestamp() as f64).abs() < 120.0, "{at}");

    // Without METRICS_TOKEN: `/metrics` is one of the pages, behind the login.
    let app = sync_app::web::app(other.clone(), config, login(), None);
    let (status, _, www, _) = get(&app, None).await;
    assert_eq!(status, 401);
    assert!(www.starts_with("Basic"), "{www}");
    let (status, _, _, _) = get(&app, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, 401, "no token is configured here");
    // `curl` (no OpenMetrics in `Accept`) gets the Prometheus text format.
    let (status, content_type, _, text) = get_as(&app, Some(BASIC), "*/*").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        !text.contains("# EOF") && text.contains("# TYPE joblog_details_dropped_total counter"),
        "{text}"
    );
    let theirs = parse(&text, true).unwrap();
    // What lives in the database is the same here; what this process did is not.
    assert_eq!(theirs.get("sync_open_orders_last_rows{}"), Some(&n), "{text}");
    assert_eq!(theirs.get(&last), Some(&at), "{text}");
    assert_eq!(theirs.get(&key), None, "{text}");
    assert_eq!(
        theirs.get("sync_open_orders_rows{phase=\"fetched\"}"),
        None,
        "{text}"
    );
    erp.shutdown().await;
}

backend_tests!(metrics_behind_the_login_or_a_token);
