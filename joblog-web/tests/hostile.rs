//! The pages against a hostile network: every answer — pages, downloads, JSON, assets, 401,
//! 404, 405, bad parameters, refused forms — carries the full set of security headers and
//! the right `Cache-Control`; the job buttons' CSRF check refuses foreign origins, scheme
//! mismatches, several `Origin` headers and cross-site fetches, survives cookie games, and
//! accepts a form served by another instance on the same database (or before a restart).
//!
//! Driven through `poem::test::TestClient` (no sockets). The cross-instance cases run on a
//! SQLite file, PostgreSQL and MySQL / MariaDB; the servers skip with a loud message when
//! unreachable, unless `JOBLOG_REQUIRE_DBS=1`. Servers: `JOBLOG_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432`) and `JOBLOG_TEST_MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306`).

use std::time::Duration;

use joblog::JobLogger;
use joblog_web::{BasicAuth, WebConfig, router};
use poem::http::{HeaderMap, Method, StatusCode};
use poem::test::TestClient;
use poem::{Endpoint, EndpointExt};

/// `admin:s3cret`, base64.
const AUTH: &str = "Basic YWRtaW46czNjcmV0";
/// `admin:wrong`, base64.
const WRONG: &str = "Basic YWRtaW46d3Jvbmc=";
/// The host every request names (the test client sends no `Host` of its own).
const HOST: &str = "jobs.local:3000";
const FORM: &str = "application/x-www-form-urlencoded";

mod common;

use common::{Backend, TestDb};

// ---- helpers -------------------------------------------------------------------------------

/// Registers `job` every 5 minutes (first run one interval away), then stops the scheduler
/// so that nothing picks up a "run now" while the test looks.
async fn schedule(logger: &JobLogger, job: &str) {
    joblog::scheduler::Scheduler::builder(logger.clone())
        .job_with(
            job,
            joblog::scheduler::Schedule::every(Duration::from_secs(300)),
            joblog::scheduler::JobOptions::default().run_at_start(false),
            |_run| async { Ok::<(), String>(()) },
        )
        .build()
        .start()
        .await
        .unwrap()
        .abort();
}

fn pages(logger: &JobLogger, config: WebConfig) -> TestClient<impl Endpoint + use<>> {
    TestClient::new(router(logger.clone(), config.list_cache(Duration::ZERO))).default_header("host", HOST)
}

/// The CSRF cookie a response sets, as `name=value`, and its whole `Set-Cookie` line.
fn set_cookie(headers: &HeaderMap) -> Option<(String, String)> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.contains("joblog_csrf="))
        .map(|line| (line.split(';').next().unwrap().to_owned(), line))
}

/// The hidden CSRF token of a page's first form.
fn form_token(html: &str) -> String {
    let at = html.find("name=\"csrf_token\" value=\"").expect("a token field") + 25;
    html[at..][..html[at..].find('"').unwrap()].to_owned()
}

/// `GET /jobs` (with `cookie` if given): the cookie it sets (if any) and the form token.
async fn monitor<E: Endpoint>(
    cli: &TestClient<E>,
    cookie: Option<&str>,
) -> (Option<(String, String)>, String) {
    let mut req = cli.get("/jobs");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await;
    resp.assert_status_is_ok();
    let set = set_cookie(resp.0.headers());
    let body = resp.0.into_body().into_string().await.unwrap();
    (set, form_token(&body))
}

/// `POST /jobs/{job}/run_now` with `headers` and the token: the status and the body.
async fn run_now<E: Endpoint>(
    cli: &TestClient<E>,
    job: &str,
    headers: &[(&str, &str)],
    token: &str,
) -> (StatusCode, String) {
    let body = format!("csrf_token={token}");
    let mut req = cli
        .post(format!("/jobs/{job}/run_now"))
        .content_type(FORM)
        .header("content-length", body.len())
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await;
    let status = resp.0.status();
    (status, resp.0.into_body().into_string().await.unwrap())
}

async fn run_now_requested(logger: &JobLogger, job: &str) -> bool {
    logger
        .scheduled_jobs()
        .schedules()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.job == job)
        .unwrap()
        .run_now_requested_at
        .is_some()
}

/// What an answer's `Cache-Control` must be.
#[derive(Debug, Clone, Copy)]
enum Cache {
    /// Behind auth: never stored.
    NoStore,
    /// The versioned assets: the browser's cache only, for a while.
    Private,
}

/// The full header set on one answer.
fn assert_headers(what: &str, headers: &HeaderMap, cache: Cache) {
    let get = |name: &str| {
        let mut all = headers.get_all(name).iter();
        let value = all
            .next()
            .unwrap_or_else(|| panic!("{what}: no {name} in {headers:?}"))
            .to_str()
            .unwrap()
            .to_owned();
        assert!(all.next().is_none(), "{what}: {name} twice");
        value
    };
    let csp = get("content-security-policy");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{what}: CSP lacks {part}: {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: {csp}"
    );
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    let referrer = get("referrer-policy");
    assert!(
        referrer == "no-referrer" || referrer == "same-origin",
        "{what}: Referrer-Policy {referrer}"
    );
    let cache_control = get("cache-control");
    match cache {
        Cache::NoStore => assert_eq!(cache_control, "no-store", "{what}"),
        Cache::Private => assert!(
            cache_control.starts_with("private")
                && cache_control.contains("max-age=")
                && !cache_control.contains("public"),
            "{what}: Cache-Control {cache_control}"
        ),
    }
}

// ---- every answer --------------------------------------------------------------------------

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let logger = db.logger().await;
    let run = logger.start("Nightly").await.unwrap();
    run.detail("a line");
    let id = run.id();
    run.success().await.unwrap();
    logger.flush().await.unwrap();
    schedule(&logger, "Nightly").await;
    let app = router(logger.clone(), WebConfig::default())
        .with(BasicAuth::new("admin", "s3cret"))
        .with(joblog_web::security_headers());
    let cli = TestClient::new(app).default_header("host", HOST);
    let resp = cli.get("/jobs").header("authorization", AUTH).send().await;
    resp.assert_status_is_ok();
    let (cookie, _) = set_cookie(resp.0.headers()).expect("a CSRF cookie");
    let token = form_token(&resp.0.into_body().into_string().await.unwrap());
    let good = format!("csrf_token={token}");
    let big = "a".repeat(5_000);

    use Cache::{NoStore, Private};
    /// Method, URI, extra headers, body, the status expected, the cache expected.
    type Case<'a> = (
        &'a str,
        String,
        Vec<(&'a str, &'a str)>,
        &'a str,
        StatusCode,
        Cache,
    );
    #[rustfmt::skip]
    let cases: Vec<Case<'_>> = vec![
        // Pages, downloads, JSON, assets.
        ("GET", "/".into(), vec![], "", StatusCode::OK, NoStore),
        ("GET", "/job_logs?status=error".into(), vec![], "", StatusCode::OK, NoStore),
        ("GET", format!("/job_logs/{id}"), vec![], "", StatusCode::OK, NoStore),
        ("GET", format!("/job_logs/{id}/lines?after=0"), vec![], "", StatusCode::OK, NoStore),
        ("GET", format!("/job_logs/{id}/log.txt"), vec![], "", StatusCode::OK, NoStore),
        ("GET", "/jobs".into(), vec![], "", StatusCode::OK, NoStore),
        ("GET", "/assets/app.css?v=1".into(), vec![], "", StatusCode::OK, Private),
        ("GET", "/assets/app.js".into(), vec![], "", StatusCode::OK, Private),
        // The buttons: accepted, refused, unknown job.
        ("POST", "/jobs/Nightly/run_now".into(), vec![("cookie", &cookie)], &good, StatusCode::SEE_OTHER, NoStore),
        ("POST", "/jobs/Nightly/pause".into(), vec![], &good, StatusCode::FORBIDDEN, NoStore),
        ("POST", "/jobs/Nightly/resume".into(), vec![("cookie", &cookie), ("origin", "http://evil.example")], &good, StatusCode::FORBIDDEN, NoStore),
        ("POST", "/jobs/NoSuchJob/run_now".into(), vec![("cookie", &cookie)], &good, StatusCode::NOT_FOUND, NoStore),
        // Failures: 404, 405, bad parameters, bodies refused.
        ("GET", "/nothing".into(), vec![], "", StatusCode::NOT_FOUND, NoStore),
        ("GET", "/job_logs/999999".into(), vec![], "", StatusCode::NOT_FOUND, NoStore),
        ("GET", "/job_logs/abc".into(), vec![], "", StatusCode::NOT_FOUND, NoStore),
        ("GET", "/job_logs/999999/log.txt".into(), vec![], "", StatusCode::NOT_FOUND, NoStore),
        ("GET", "/job_logs/999999/lines".into(), vec![], "", StatusCode::NOT_FOUND, NoStore),
        ("GET", "/assets/nothing.css".into(), vec![], "", StatusCode::NOT_FOUND, NoStore),
        ("GET", "/assets/%FF".into(), vec![], "", StatusCode::BAD_REQUEST, NoStore),
        ("GET", "/job_logs?before=abc".into(), vec![], "", StatusCode::BAD_REQUEST, NoStore),
        ("GET", "/job_logs?status=finished".into(), vec![], "", StatusCode::BAD_REQUEST, NoStore),
        ("GET", format!("/job_logs/{id}?from=zz"), vec![], "", StatusCode::BAD_REQUEST, NoStore),
        ("GET", format!("/job_logs/{id}/lines?after=zz"), vec![], "", StatusCode::BAD_REQUEST, NoStore),
        ("POST", "/".into(), vec![], "", StatusCode::METHOD_NOT_ALLOWED, NoStore),
        ("DELETE", "/job_logs".into(), vec![], "", StatusCode::METHOD_NOT_ALLOWED, NoStore),
        ("GET", "/jobs/Nightly/pause".into(), vec![], "", StatusCode::METHOD_NOT_ALLOWED, NoStore),
        ("PUT", "/assets/app.css".into(), vec![], "", StatusCode::METHOD_NOT_ALLOWED, NoStore),
        ("POST", "/jobs/Nightly/run_now".into(), vec![], &big, StatusCode::PAYLOAD_TOO_LARGE, NoStore),
        ("POST", "/jobs/%FF/run_now".into(), vec![], &good, StatusCode::BAD_REQUEST, NoStore),
        // Not logged in.
        ("GET", "/jobs".into(), vec![("authorization", "")], "", StatusCode::UNAUTHORIZED, NoStore),
        ("GET", "/assets/app.css".into(), vec![("authorization", WRONG)], "", StatusCode::UNAUTHORIZED, NoStore),
    ];
    for (method, uri, headers, body, expected, cache) in cases {
        let what = format!("{method} {uri} {headers:?}");
        let mut req = cli
            .request(Method::from_bytes(method.as_bytes()).unwrap(), uri.clone())
            .content_type(FORM)
            .header("content-length", body.len())
            .body(body.to_owned());
        if !headers.iter().any(|(k, _)| *k == "authorization") {
            req = req.header("authorization", AUTH);
        }
        for (k, v) in &headers {
            if !v.is_empty() {
                req = req.header(*k, *v);
            }
        }
        let resp = req.send().await;
        assert_eq!(resp.0.status(), expected, "{what}");
        assert_headers(&what, resp.0.headers(), cache);
    }
    assert!(run_now_requested(&logger, "Nightly").await);
    db.drop().await;
}

// ---- CSRF ----------------------------------------------------------------------------------

/// Two instances (two loggers, two routers) on one database accept each other's forms, and
/// a form stays valid across a restart; the secret is created once even when many
/// instances ask at the same moment.
async fn forms_work_across_instances_and_restarts(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    // Many instances ask for the secret of a fresh database at once: one value.
    let mut loggers = Vec::new();
    for _ in 0..6 {
        loggers.push(db.logger().await);
    }
    let secrets = futures::future::join_all(loggers.iter().map(|l| l.shared_secret("race"))).await;
    let first = *secrets[0].as_ref().unwrap();
    assert!(
        secrets.iter().all(|s| s.as_ref().ok() == Some(&first)),
        "{backend:?}: one secret for all"
    );
    assert_ne!(first, [0; 32]);
    assert_ne!(
        loggers[0].shared_secret("another").await.unwrap(),
        first,
        "one per name"
    );
    assert!(loggers[0].shared_secret("").await.is_err());
    drop(loggers);

    let a = db.logger().await;
    let b = db.logger().await;
    schedule(&a, "Nightly").await;
    let (cli_a, cli_b) = (pages(&a, WebConfig::default()), pages(&b, WebConfig::default()));
    let (set, token) = monitor(&cli_a, None).await;
    let (cookie, _) = set.expect("a fresh cookie");
    // B derives the same token from the same cookie, and takes A's form.
    let (set_b, token_b) = monitor(&cli_b, Some(&cookie)).await;
    assert!(set_b.is_none(), "B keeps A's cookie");
    assert_eq!(token_b, token, "{backend:?}: one secret for both instances");
    let origin = format!("http://{HOST}");
    let (status, body) = run_now(
        &cli_b,
        "Nightly",
        &[("cookie", &cookie), ("origin", &origin)],
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{backend:?}: {body}");
    assert!(run_now_requested(&a, "Nightly").await);

    // A restart: every instance gone, a new one on the same database.
    drop((cli_a, cli_b));
    drop((a, b));
    let c = db.logger().await;
    let cli_c = pages(&c, WebConfig::default());
    let (status, body) = run_now(
        &cli_c,
        "Nightly",
        &[("cookie", &cookie), ("origin", &origin)],
        &token,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "{backend:?} after a restart: {body}"
    );
    // And a token from nowhere is still refused.
    let (status, _) = run_now(&cli_c, "Nightly", &[("cookie", &cookie)], &"0".repeat(64)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    drop((cli_c, c));
    db.drop().await;
}

#[tokio::test]
async fn forms_work_across_instances_and_restarts_on_sqlite() {
    forms_work_across_instances_and_restarts(Backend::Sqlite).await;
}

#[tokio::test]
async fn forms_work_across_instances_and_restarts_on_postgres() {
    forms_work_across_instances_and_restarts(Backend::Postgres).await;
}

#[tokio::test]
async fn forms_work_across_instances_and_restarts_on_mysql() {
    forms_work_across_instances_and_restarts(Backend::MySql).await;
}

#[tokio::test]
async fn foreign_origins_and_cross_site_fetches_are_refused() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let logger = db.logger().await;
    schedule(&logger, "Nightly").await;
    let cli = pages(&logger, WebConfig::default());
    let (set, token) = monitor(&cli, None).await;
    let (cookie, line) = set.unwrap();
    assert!(
        line.starts_with("joblog_csrf=") && !line.contains("Secure"),
        "plain HTTP: {line}"
    );
    let own = format!("http://{HOST}");
    let c = ("cookie", cookie.as_str());
    for (what, headers) in [
        ("a foreign site", vec![c, ("origin", "http://evil.example")]),
        ("another port", vec![c, ("origin", "http://jobs.local:3001")]),
        ("the default port", vec![c, ("origin", "http://jobs.local")]),
        (
            "https for an http page",
            vec![c, ("origin", "https://jobs.local:3000")],
        ),
        ("a null origin", vec![c, ("origin", "null")]),
        (
            "an origin with a path",
            vec![c, ("origin", "http://jobs.local:3000/jobs")],
        ),
        (
            "two origins",
            vec![c, ("origin", own.as_str()), ("origin", own.as_str())],
        ),
        (
            "two origins, one foreign",
            vec![c, ("origin", own.as_str()), ("origin", "http://evil.example")],
        ),
        ("cross-site", vec![c, ("sec-fetch-site", "cross-site")]),
        (
            "cross-site with our origin",
            vec![c, ("origin", own.as_str()), ("sec-fetch-site", "cross-site")],
        ),
        ("same-site (a sibling)", vec![c, ("sec-fetch-site", "same-site")]),
        (
            "an unknown Sec-Fetch-Site",
            vec![c, ("sec-fetch-site", "elsewhere")],
        ),
    ] {
        let (status, body) = run_now(&cli, "Nightly", &headers, &token).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
        assert!(
            body.to_lowercase().contains("nothing was changed"),
            "{what}: {body}"
        );
    }
    assert!(!run_now_requested(&logger, "Nightly").await, "nothing changed");
    for (what, headers) in [
        ("no Origin", vec![c]),
        ("our origin", vec![c, ("origin", own.as_str())]),
        (
            "our origin, upper case",
            vec![c, ("origin", "HTTP://JOBS.LOCAL:3000")],
        ),
        (
            "same-origin fetch",
            vec![c, ("origin", own.as_str()), ("sec-fetch-site", "same-origin")],
        ),
    ] {
        let (status, body) = run_now(&cli, "Nightly", &headers, &token).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{what}: {body}");
    }
    drop(cli);
    db.drop().await;
}

#[tokio::test]
async fn a_malformed_duplicate_cookie_is_skipped() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let logger = db.logger().await;
    schedule(&logger, "Nightly").await;
    let cli = pages(&logger, WebConfig::default());
    // Only a malformed one (another app on another port of this host): a fresh cookie.
    let (set, _) = monitor(&cli, Some("joblog_csrf=not-ours")).await;
    let (cookie, _) = set.expect("a well-formed cookie is set beside the malformed one");
    let (_, token) = monitor(&cli, Some(&cookie)).await;
    // Both sent, the malformed one first (a more specific path): the good one is used.
    let both = format!("joblog_csrf=not-ours; theme=dark; {cookie}");
    let (set, token_both) = monitor(&cli, Some(&both)).await;
    assert!(set.is_none(), "the good cookie is kept");
    assert_eq!(token_both, token);
    let (status, body) = run_now(&cli, "Nightly", &[("cookie", &both)], &token).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    // In two Cookie headers too.
    let (status, body) = run_now(
        &cli,
        "Nightly",
        &[("cookie", "joblog_csrf="), ("cookie", &cookie)],
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    drop(cli);
    db.drop().await;
}

#[tokio::test]
async fn behind_an_https_public_url_the_cookie_is_secure_and_http_is_refused() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let logger = db.logger().await;
    schedule(&logger, "Nightly").await;
    let config = WebConfig::default().public_url("https://jobs.example.com/admin/");
    let cli = pages(&logger, config);
    let (set, token) = monitor(&cli, None).await;
    let (cookie, line) = set.unwrap();
    assert!(cookie.starts_with("__Host-joblog_csrf="), "{line}");
    for attribute in ["Path=/;", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(line.contains(attribute), "{attribute} in {line}");
    }
    assert!(!line.contains("Domain"), "{line}");
    let plain = cookie.replacen("__Host-joblog_csrf=", "joblog_csrf=", 1);
    let c = ("cookie", cookie.as_str());
    for (what, headers) in [
        ("http below https", vec![c, ("origin", "http://jobs.example.com")]),
        (
            "the proxy's own http origin",
            vec![c, ("origin", "http://jobs.local:3000")],
        ),
        ("another host", vec![c, ("origin", "https://evil.example")]),
        (
            "another port",
            vec![c, ("origin", "https://jobs.example.com:8443")],
        ),
        (
            "the cookie without its prefix",
            vec![("cookie", plain.as_str()), ("origin", "https://jobs.example.com")],
        ),
    ] {
        let (status, body) = run_now(&cli, "Nightly", &headers, &token).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
    }
    for (what, headers) in [
        (
            "the public origin",
            vec![c, ("origin", "https://jobs.example.com")],
        ),
        (
            "with its default port",
            vec![c, ("origin", "https://jobs.example.com:443")],
        ),
        ("no Origin", vec![c]),
    ] {
        let (status, body) = run_now(&cli, "Nightly", &headers, &token).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{what}: {body}");
    }
    drop(cli);

    // An http public URL: a plain cookie, both that origin and the request's own accepted.
    let cli = pages(
        &logger,
        WebConfig::default().public_url("http://jobs.example.com:8080"),
    );
    let (set, token) = monitor(&cli, None).await;
    let (cookie, line) = set.unwrap();
    assert!(
        cookie.starts_with("joblog_csrf=") && !line.contains("Secure"),
        "{line}"
    );
    for origin in ["http://jobs.example.com:8080", "http://jobs.local:3000"] {
        let (status, body) = run_now(
            &cli,
            "Nightly",
            &[("cookie", &cookie), ("origin", origin)],
            &token,
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{origin}: {body}");
    }
    let (status, _) = run_now(
        &cli,
        "Nightly",
        &[("cookie", &cookie), ("origin", "https://jobs.example.com:8080")],
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    drop(cli);
    db.drop().await;
}
