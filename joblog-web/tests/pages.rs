//! Every route, mounted at `/` and at `/admin/jobs`, on a fresh in-memory SQLite database
//! per test. Pages are fetched from a real server on port 0 with a plain HTTP/1.1 client
//! (the mount point is read from the request's original URI, which only a server sets);
//! the auth middleware is also driven through `poem::test::TestClient`.

use joblog::JobLogger;
use joblog_web::{BasicAuth, NavLink, WebConfig, router};
use poem::http::StatusCode;
use poem::test::TestClient;
use poem::{Endpoint, EndpointExt, Route};

const PREFIXES: [&str; 2] = ["", "/admin/jobs"];

async fn logger() -> JobLogger {
    let logger = JobLogger::connect("sqlite::memory:").await.unwrap();
    logger.migrate().await.unwrap();
    logger
}

fn app(logger: &JobLogger, prefix: &str) -> Route {
    // No list cache: these tests look at the list right after writing runs.
    let config = WebConfig::default()
        .list_cache(std::time::Duration::ZERO)
        .nav_link(NavLink::new("Open Orders", "/open_orders").icon("document"))
        .nav_link(
            NavLink::new("Jobs Monitor", format!("{prefix}/jobs"))
                .colour("blue")
                .icon("clipboard"),
        );
    let pages = router(logger.clone(), config);
    if prefix.is_empty() {
        pages
    } else {
        Route::new().nest(prefix, pages)
    }
}

/// The app served on 127.0.0.1, port 0.
struct Site(std::net::SocketAddr);

impl Site {
    async fn new(app: impl Endpoint + 'static) -> Site {
        use poem::listener::{Acceptor, Listener, TcpListener};
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        Site(addr)
    }
}

/// A GET over a fresh connection: status, headers (lower-case names) and body.
async fn get(site: &Site, uri: &str) -> (StatusCode, String, poem::http::HeaderMap) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(site.0).await.unwrap();
    let request = format!("GET {uri} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = poem::http::HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').unwrap();
        headers.append(
            poem::http::HeaderName::from_bytes(k.trim().to_ascii_lowercase().as_bytes()).unwrap(),
            v.trim().parse().unwrap(),
        );
    }
    if headers.get("transfer-encoding").is_some_and(|v| v == "chunked") {
        body = dechunk(&body);
    }
    (
        StatusCode::from_u16(status).unwrap(),
        String::from_utf8(body).unwrap(),
        headers,
    )
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
}

/// Undoes the HTML escaping minijinja applies (it escapes `/` too).
fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Every `href="…"` of a page, unescaped.
fn links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .map(|s| unescape(&s[..s.find('"').unwrap()]))
        .collect()
}

async fn seed(logger: &JobLogger, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let job = if i % 2 == 0 {
            "SyncOpenOrdersJob"
        } else {
            "CleanupJob"
        };
        let mut run = logger.start(job).await.unwrap();
        run.processing().await.unwrap();
        run.detail(format!("step of run {i}"));
        ids.push(run.id());
        if i % 5 == 0 {
            run.error(&format!("failure number {i}")).await.unwrap();
        } else {
            run.success().await.unwrap();
        }
    }
    ids
}

#[tokio::test]
async fn empty_list_says_so() {
    let logger = logger().await;
    for prefix in PREFIXES {
        let cli = Site::new(app(&logger, prefix)).await;
        let (status, body, headers) = get(&cli, &format!("{prefix}/")).await;
        assert_eq!(status, StatusCode::OK, "{prefix}");
        assert!(body.contains("No job logs yet"), "{body}");
        assert!(
            links(&body)
                .iter()
                .any(|l| l.starts_with(&format!("{prefix}/assets/app.css?v="))),
            "assets under the mount point"
        );
        let csp = headers.get("content-security-policy").unwrap().to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'")
                && !csp.contains("unsafe-inline")
                && csp.contains("frame-ancestors 'none'")
        );
        assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
        let (status, body, _) = get(&cli, &format!("{prefix}/job_logs")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("No job logs yet"));
    }
}

#[tokio::test]
async fn list_pages_filters_and_links_work_at_both_mount_points() {
    let logger = logger().await;
    let ids = seed(&logger, 30).await;
    for prefix in PREFIXES {
        let cli = Site::new(app(&logger, prefix)).await;
        let (status, body, _) = get(&cli, &format!("{prefix}/")).await;
        assert_eq!(status, StatusCode::OK);
        let run_links: Vec<String> = links(&body)
            .into_iter()
            .filter(|l| l.contains("/job_logs/"))
            .collect();
        assert_eq!(run_links.len(), 25, "25 runs a page");
        assert!(
            run_links[0].starts_with(&format!("{prefix}/job_logs/{}", ids[29])),
            "newest first: {}",
            run_links[0]
        );
        assert!(body.contains("badge badge-error") && body.contains("badge badge-success"));
        assert!(
            body.contains("failure number 25"),
            "the error shows as the last message"
        );
        assert!(
            body.contains("Open Orders") && body.contains("Jobs Monitor") && body.contains("icon-clipboard")
        );
        // Older page, then back to the newer one.
        let older = links(&body)
            .into_iter()
            .find(|l| l.contains("before="))
            .expect("an Older link at 30 runs");
        assert!(older.starts_with(&format!("{prefix}/job_logs?")), "{older}");
        let (status, body, _) = get(&cli, &older).await;
        assert_eq!(status, StatusCode::OK);
        let page2: Vec<String> = links(&body)
            .into_iter()
            .filter(|l| l.contains("/job_logs/"))
            .collect();
        assert_eq!(page2.len(), 5);
        let newer = links(&body)
            .into_iter()
            .find(|l| l.contains("after="))
            .expect("a Newer link");
        let (_, body, _) = get(&cli, &newer).await;
        assert_eq!(
            links(&body)
                .into_iter()
                .filter(|l| l.contains("/job_logs/"))
                .count(),
            25
        );
        // Filters, kept in the URL of the pager and of the detail links.
        let (_, body, _) = get(&cli, &format!("{prefix}/job_logs?status=error")).await;
        assert_eq!(
            links(&body)
                .into_iter()
                .filter(|l| l.contains("/job_logs/"))
                .count(),
            6
        );
        assert!(body.contains("<option value=\"error\" selected>"));
        let (_, body, _) = get(&cli, &format!("{prefix}/job_logs?job=CleanupJob&per=10")).await;
        let detail_links: Vec<String> = links(&body)
            .into_iter()
            .filter(|l| l.contains("/job_logs/"))
            .collect();
        assert_eq!(detail_links.len(), 10);
        assert!(
            detail_links[0].contains("back=job%3DCleanupJob%26per%3D10"),
            "{}",
            detail_links[0]
        );
        let (_, detail, _) = get(&cli, &detail_links[0]).await;
        let back = links(&detail)
            .into_iter()
            .find(|l| l.starts_with(&format!("{prefix}/job_logs?")))
            .expect("back link");
        assert_eq!(back, format!("{prefix}/job_logs?job=CleanupJob&per=10"));
        let (_, body, _) = get(&cli, &format!("{prefix}/job_logs?q=run+17")).await;
        assert_eq!(
            links(&body)
                .into_iter()
                .filter(|l| l.contains("/job_logs/"))
                .count(),
            1,
            "search in details"
        );
        assert!(body.contains("1 run match"));
    }
}

#[tokio::test]
async fn detail_page_shows_the_log_escaped_and_live_state() {
    let logger = logger().await;
    let mut run = logger.start("XssJob").await.unwrap();
    run.processing().await.unwrap();
    run.detail("<script>alert(1)</script>");
    run.warn("careful");
    logger.flush().await.unwrap();
    let id = run.id();
    for prefix in PREFIXES {
        let cli = Site::new(app(&logger, prefix)).await;
        let (status, body, _) = get(&cli, &format!("{prefix}/job_logs/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            !body.contains("<script>alert(1)</script>"),
            "a message is never HTML"
        );
        assert!(body.contains("&lt;script&gt;alert(1)&lt;"), "shown as text");
        assert!(body.contains("line warn") && body.contains("Job started - XssJob"));
        assert!(
            body.contains("data-live=\"true\""),
            "a processing run is tailed: {}",
            &body[body.find("<section").unwrap()..][..400]
        );
        assert!(body.contains("(running)") && body.contains("Completed at</dt><dd id=\"completed\">running"));
        assert!(unescape(&body).contains(&format!("data-lines-url=\"{prefix}/job_logs/{id}/lines\"")));
        // The live tail: lines after the last one shown.
        let last: i64 = body
            .split("data-after=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        run.detail("written after the page loaded");
        logger.flush().await.unwrap();
        let (status, json, headers) = get(&cli, &format!("{prefix}/job_logs/{id}/lines?after={last}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers.get("content-type").unwrap(), "application/json");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["lines"].as_array().unwrap().len(), 1);
        assert_eq!(v["lines"][0]["message"], "written after the page loaded");
        assert_eq!(v["status"], "processing");
        assert_eq!(v["live"], true);
        let (_, json, _) = get(
            &cli,
            &format!("{prefix}/job_logs/{id}/lines?after={}", v["lines"][0]["id"]),
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(v["lines"].as_array().unwrap().is_empty());
    }
    run.success().await.unwrap();
    let cli = Site::new(app(&logger, "")).await;
    let (_, json, _) = get(&cli, &format!("/job_logs/{id}/lines")).await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["live"].as_bool()),
        (Some("success"), Some(false))
    );
    let (_, body, _) = get(&cli, &format!("/job_logs/{id}")).await;
    assert!(body.contains("data-live=\"false\""));
    // Download as plain text.
    let (status, text, headers) = get(&cli, &format!("/job_logs/{id}/log.txt")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers
            .get("content-disposition")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert!(text.contains("[warn] careful") && text.contains("<script>alert(1)</script>"));
}

#[tokio::test]
async fn long_logs_are_paged() {
    let logger = logger().await;
    let run = logger.start("ChattyJob").await.unwrap();
    for i in 0..2_500 {
        run.detail(format!("line {i}"));
    }
    let id = run.id();
    run.success().await.unwrap();
    let cli = Site::new(app(&logger, "")).await;
    // The link of a button, by its label.
    fn button(body: &str, label: &str) -> Option<String> {
        let end = body.find(&format!("\">{label}</a>"))?;
        let start = body[..end].rfind("href=\"")? + 6;
        Some(unescape(&body[start..end]))
    }
    let (_, body, _) = get(&cli, &format!("/job_logs/{id}")).await;
    assert_eq!(body.matches("<div class=\"line").count(), 1_000);
    assert!(
        button(&body, "Earlier lines").is_none(),
        "nothing before the first page"
    );
    let (_, body, _) = get(&cli, &button(&body, "Later lines").expect("later lines")).await;
    assert_eq!(body.matches("<div class=\"line").count(), 1_000);
    assert!(body.contains("line 999<") && body.contains("line 1998<"));
    let (_, last, _) = get(&cli, &button(&body, "Later lines").expect("and the last page")).await;
    assert_eq!(last.matches("<div class=\"line").count(), 501);
    assert!(
        button(&last, "Later lines").is_none(),
        "no later page after the last"
    );
    // And back, page by page.
    let (_, body, _) = get(&cli, &button(&last, "Earlier lines").expect("earlier lines")).await;
    assert_eq!(body.matches("<div class=\"line").count(), 1_000);
    assert!(
        body.contains("line 999<") && body.contains("line 1998<"),
        "the second page again"
    );
    let (_, body, _) = get(&cli, &button(&body, "Earlier lines").expect("earlier again")).await;
    assert!(
        body.contains("Job started - ChattyJob") && body.contains("line 998<"),
        "the first page"
    );
    assert!(button(&body, "Earlier lines").is_none());
    // The download has every line (streamed).
    let (status, text, _) = get(&cli, &format!("/job_logs/{id}/log.txt")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text.lines().count(), 1 + 2_501);
    assert!(text.ends_with("[info] line 2499\n"));
}

#[tokio::test]
async fn bad_input_gets_a_clear_page() {
    let logger = logger().await;
    seed(&logger, 3).await;
    for prefix in PREFIXES {
        let cli = Site::new(app(&logger, prefix)).await;
        for (uri, expected) in [
            ("/job_logs/999999", StatusCode::NOT_FOUND),
            ("/job_logs/abc", StatusCode::NOT_FOUND),
            ("/job_logs/99999999999999999999999", StatusCode::NOT_FOUND),
            ("/job_logs/-1", StatusCode::NOT_FOUND),
            ("/job_logs/abc/lines", StatusCode::NOT_FOUND),
            ("/job_logs/1/lines?after=zz", StatusCode::BAD_REQUEST),
            ("/job_logs/1?from=zz", StatusCode::BAD_REQUEST),
            ("/job_logs/1/log.txt/extra", StatusCode::NOT_FOUND),
            ("/job_logs?status=finished", StatusCode::BAD_REQUEST),
            ("/job_logs?before=abc", StatusCode::BAD_REQUEST),
            ("/job_logs?after=1e9", StatusCode::BAD_REQUEST),
            ("/job_logs?before=99999999999999999999", StatusCode::BAD_REQUEST),
            ("/assets/nothing.css", StatusCode::NOT_FOUND),
        ] {
            let (status, body, _) = get(&cli, &format!("{prefix}{uri}")).await;
            assert_eq!(status, expected, "{prefix}{uri}: {body}");
            if uri.contains("/lines") {
                // The live tail answers JSON, errors included.
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert!(v["error"].is_string(), "{uri}: {body}");
            } else {
                // Unmatched routes included: every failure is a page.
                assert!(body.contains("Back to the job logs"), "{uri} gets a page: {body}");
            }
        }
        // Garbage that is harmless is tolerated: odd page sizes are clamped, odd text searched.
        for uri in [
            "/job_logs?per=100000",
            "/job_logs?per=-5",
            "/job_logs?per=abc",
            "/job_logs?q=%25%25_%27%22",
            "/job_logs?q=%FF%FE",
            "/job_logs?zzz=1",
        ] {
            let (status, _, _) = get(&cli, &format!("{prefix}{uri}")).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
        }
        // A parameter given twice is refused with a sentence, not serde's words.
        for (uri, name) in [
            ("/job_logs?status=error&status=success", "status"),
            ("/job_logs?job=a&job=b", "job"),
            ("/job_logs/1?from=1&from=2", "from"),
        ] {
            let (status, body, _) = get(&cli, &format!("{prefix}{uri}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert!(
                body.contains(&format!("gives <code>{name}</code> more than once"))
                    || body.contains(&format!("gives `{name}` more than once")),
                "{uri}: {body}"
            );
            assert!(!body.contains("duplicate field"), "{uri}: {body}");
        }
    }
}

#[tokio::test]
async fn jobs_monitor_lists_each_job() {
    let logger = logger().await;
    seed(&logger, 6).await;
    let cli = Site::new(app(&logger, "/admin/jobs")).await;
    let (status, body, _) = get(&cli, "/admin/jobs/jobs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("SyncOpenOrdersJob") && body.contains("CleanupJob"));
    assert!(links(&body).contains(&"/admin/jobs/job_logs?job=CleanupJob".to_owned()));
    assert!(body.matches("67 %").count() == 2, "success rates: {body}");
}

#[tokio::test]
async fn basic_auth_guards_everything() {
    let logger = logger().await;
    let app = app(&logger, "").with(BasicAuth::new("admin", "s3cret"));
    let cli = TestClient::new(app);
    let resp = cli.get("/").send().await;
    resp.assert_status(StatusCode::UNAUTHORIZED);
    resp.assert_header("www-authenticate", "Basic realm=\"joblog\", charset=\"UTF-8\"");
    resp.assert_header("x-content-type-options", "nosniff");
    for bad in [
        "Basic YWRtaW46d3Jvbmc=",
        "Basic !!!",
        "Bearer x",
        "Basic YWRtaW4=",
        "Basic",
        "",
    ] {
        let resp = cli.get("/").header("authorization", bad).send().await;
        resp.assert_status(StatusCode::UNAUTHORIZED);
    }
    // admin:s3cret
    let resp = cli
        .get("/")
        .header("authorization", "Basic YWRtaW46czNjcmV0")
        .send()
        .await;
    resp.assert_status_is_ok();
    let resp = cli
        .get("/assets/app.css")
        .header("authorization", "Basic YWRtaW46czNjcmV0")
        .send()
        .await;
    resp.assert_status_is_ok();
}

#[tokio::test]
async fn pager_appears_at_26_runs_and_keeps_the_filters() {
    let logger = logger().await;
    seed(&logger, 25).await;
    let site = Site::new(app(&logger, "")).await;
    let (_, body, _) = get(&site, "/").await;
    assert!(!body.contains("class=\"pager\""), "25 runs fit on one page");
    seed(&logger, 1).await;
    let (_, body, _) = get(&site, "/").await;
    assert!(
        body.contains("class=\"pager\""),
        "the 26th run opens a second page"
    );
    // Filtered pages page within the filter.
    seed(&logger, 40).await;
    let (_, body, _) = get(&site, "/job_logs?job=CleanupJob&q=step").await;
    let older = links(&body)
        .into_iter()
        .find(|l| l.contains("before="))
        .expect("an Older link");
    assert!(
        older.contains("job=CleanupJob") && older.contains("q=step"),
        "{older}"
    );
    let (_, body, _) = get(&site, &older).await;
    assert!(
        !body.contains("SyncOpenOrdersJob</td>"),
        "the second page keeps the job filter"
    );
}

#[tokio::test]
async fn the_list_cache_serves_a_page_for_its_ttl_only() {
    let logger = logger().await;
    seed(&logger, 1).await;
    let pages = router(
        logger.clone(),
        WebConfig::default().list_cache(std::time::Duration::from_secs(3)),
    );
    let site = Site::new(pages).await;
    let (_, first, _) = get(&site, "/").await;
    seed(&logger, 1).await;
    let (_, again, _) = get(&site, "/").await;
    assert_eq!(first, again, "within the TTL the same page is served");
    let (_, other_url, _) = get(&site, "/job_logs").await;
    assert_eq!(
        links(&other_url)
            .iter()
            .filter(|l| l.contains("/job_logs/"))
            .count(),
        2,
        "each URL has its own entry"
    );
    tokio::time::sleep(std::time::Duration::from_millis(3_200)).await;
    let (_, later, _) = get(&site, "/").await;
    assert_eq!(
        links(&later).iter().filter(|l| l.contains("/job_logs/")).count(),
        2,
        "after the TTL the new run shows"
    );
}

#[tokio::test]
async fn the_mount_point_without_its_slash_and_other_edges() {
    let logger = logger().await;
    seed(&logger, 4).await;
    let site = Site::new(app(&logger, "/admin/jobs")).await;
    let (status, body, _) = get(&site, "/admin/jobs").await;
    assert_eq!(status, StatusCode::OK);
    let hrefs = links(&body);
    assert!(
        hrefs
            .iter()
            .any(|l| l.starts_with("/admin/jobs/assets/app.css?v=")),
        "{hrefs:?}"
    );
    assert!(
        hrefs
            .iter()
            .filter(|l| l.contains("/job_logs/"))
            .all(|l| l.starts_with("/admin/jobs/job_logs/")),
        "{hrefs:?}"
    );
    // Status in any case filters and stays selected.
    let (status, body, _) = get(&site, "/admin/jobs/job_logs?status=ERROR").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<option value=\"error\" selected>"));
    // An empty page reached by a cursor says so (and is not "No job logs yet").
    let (_, body, _) = get(&site, "/admin/jobs/job_logs?before=1").await;
    assert!(body.contains("No runs on this page.") && !body.contains("No job logs yet"));
    assert!(
        links(&body).iter().any(|l| l.contains("after=")),
        "a way back to newer runs"
    );
}

#[tokio::test]
async fn basic_auth_scheme_is_case_insensitive() {
    let logger = logger().await;
    let cli = TestClient::new(app(&logger, "").with(BasicAuth::new("admin", "s3cret")));
    // admin:s3cret
    let resp = cli
        .get("/")
        .header("authorization", "BASIC YWRtaW46czNjcmV0")
        .send()
        .await;
    resp.assert_status_is_ok();
}

/// A request over a fresh connection, with extra headers and a body: status, headers
/// (lower-case names) and body.
async fn send(
    site: &Site,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, String, poem::http::HeaderMap) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(site.0).await.unwrap();
    let mut request = format!(
        "{method} {uri} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        site.0,
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = poem::http::HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').unwrap();
        headers.append(
            poem::http::HeaderName::from_bytes(k.trim().to_ascii_lowercase().as_bytes()).unwrap(),
            v.trim().parse().unwrap(),
        );
    }
    if headers.get("transfer-encoding").is_some_and(|v| v == "chunked") {
        body = dechunk(&body);
    }
    (
        StatusCode::from_u16(status).unwrap(),
        String::from_utf8(body).unwrap(),
        headers,
    )
}

/// A logger on a fresh SQLite file (the scheduler and the pages share it).
async fn file_logger(name: &str) -> (JobLogger, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!(
        "joblog-web-{name}-{}-{}.db",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let logger = JobLogger::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    logger.migrate().await.unwrap();
    (logger, path)
}

/// Registers `jobs` every 5 minutes (first run one interval away), then stops the
/// scheduler so that nothing picks up a "run now" while the test looks.
async fn schedule(logger: &JobLogger, jobs: &[&str]) {
    let mut builder = joblog::scheduler::Scheduler::builder(logger.clone());
    for job in jobs {
        builder = builder.job_with(
            *job,
            joblog::scheduler::Schedule::every(std::time::Duration::from_secs(300)),
            joblog::scheduler::JobOptions::default().run_at_start(false),
            |_run| async { Ok::<(), String>(()) },
        );
    }
    builder.build().start().await.unwrap().abort();
}

/// The `joblog_csrf` cookie a response sets (`name=value`), if any.
fn csrf_cookie(headers: &poem::http::HeaderMap) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("joblog_csrf="))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// The hidden CSRF token of the page's first form.
fn form_token(html: &str) -> String {
    let at = html.find("name=\"csrf_token\" value=\"").expect("a token field") + 25;
    html[at..][..html[at..].find('"').unwrap()].to_owned()
}

/// Every form action of a page, unescaped.
fn actions(html: &str) -> Vec<String> {
    html.split("action=\"")
        .skip(1)
        .map(|s| unescape(&s[..s.find('"').unwrap()]))
        .collect()
}

async fn schedule_of(logger: &JobLogger, job: &str) -> joblog::scheduler::ScheduleRecord {
    logger
        .scheduled_jobs()
        .schedules()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.job == job)
        .unwrap()
}

#[tokio::test]
async fn jobs_monitor_shows_schedules_and_its_buttons_work_behind_csrf() {
    let (logger, path) = file_logger("monitor").await;
    seed(&logger, 6).await;
    schedule(&logger, &["SyncOpenOrdersJob", "Nightly report"]).await;
    for prefix in PREFIXES {
        let site = Site::new(app(&logger, prefix)).await;
        let jobs_url = format!("{prefix}/jobs");
        let (status, body, headers) = get(&site, &jobs_url).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // The union: a job with runs only, a job with both, a job with a schedule only.
        for job in ["CleanupJob", "SyncOpenOrdersJob", "Nightly report"] {
            assert!(body.contains(job), "{job} listed");
        }
        assert!(body.contains("not scheduled"), "CleanupJob has no schedule");
        assert_eq!(body.matches("every 5 minutes").count(), 2, "{body}");
        assert_eq!(
            body.matches("data-countdown=\"").count(),
            2,
            "a countdown per schedule"
        );
        assert!(
            body.contains("<svg class=\"spark\"") && body.contains("<polyline"),
            "sparkline"
        );
        assert!(body.contains("spark-error"), "error runs marked");
        assert!(!body.contains("badge-paused"));
        let cookie = csrf_cookie(&headers).expect("GET /jobs sets the CSRF cookie");
        let set = headers.get("set-cookie").unwrap().to_str().unwrap();
        let cookie_path = if prefix.is_empty() { "/" } else { prefix };
        assert!(
            set.contains("HttpOnly")
                && set.contains("SameSite=Strict")
                && set.contains(&format!("Path={cookie_path};")),
            "{set}"
        );
        let acts = actions(&body);
        let run_now = format!("{prefix}/jobs/Nightly%20report/run_now");
        for a in [
            run_now.clone(),
            format!("{prefix}/jobs/Nightly%20report/pause"),
            format!("{prefix}/jobs/SyncOpenOrdersJob/run_now"),
            format!("{prefix}/jobs/SyncOpenOrdersJob/pause"),
        ] {
            assert!(acts.contains(&a), "{a} in {acts:?}");
        }
        assert_eq!(acts.len(), 4, "no buttons for an unscheduled job");
        assert!(body.matches("method=\"post\"").count() == 4);
        // With the cookie, the page keeps it and renders the token it derives.
        let (_, body2, headers2) = get_with_cookie(&site, &jobs_url, &cookie).await;
        assert!(csrf_cookie(&headers2).is_none(), "an existing cookie is kept");
        let token = form_token(&body2);
        assert_eq!(token, form_token(&body));

        let before = schedule_of(&logger, "Nightly report").await;
        // Refused: no token, a wrong token, no cookie, a foreign Origin.
        let good_form = format!("csrf_token={token}");
        let form_ct = ("content-type", "application/x-www-form-urlencoded");
        let other_cookie = format!("joblog_csrf={}", "ab".repeat(32));
        for (headers, form) in [
            (vec![form_ct, ("cookie", cookie.as_str())], String::new()),
            (
                vec![form_ct, ("cookie", cookie.as_str())],
                "csrf_token=00ff".to_owned(),
            ),
            (
                vec![form_ct, ("cookie", cookie.as_str())],
                format!("csrf_token={}", "0".repeat(64)),
            ),
            (vec![form_ct], good_form.clone()),
            (
                vec![form_ct, ("cookie", other_cookie.as_str())],
                good_form.clone(),
            ),
            (
                vec![
                    form_ct,
                    ("cookie", cookie.as_str()),
                    ("origin", "http://evil.example"),
                ],
                good_form.clone(),
            ),
        ] {
            let (status, body, _) = send(&site, "POST", &run_now, &headers, &form).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?} {form}: {body}");
            assert!(
                body.contains("Nothing was changed") || body.contains("nothing was changed"),
                "{body}"
            );
        }
        assert_eq!(
            schedule_of(&logger, "Nightly report").await,
            before,
            "nothing changed"
        );

        // Accepted: cookie + token (and a same-origin Origin).
        let origin = format!("http://{}", site.0);
        let (status, _, headers) = send(
            &site,
            "POST",
            &run_now,
            &[form_ct, ("cookie", &cookie), ("origin", &origin)],
            &good_form,
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers.get("location").unwrap(), &jobs_url);
        assert!(
            schedule_of(&logger, "Nightly report")
                .await
                .run_now_requested_at
                .is_some()
        );

        // Pause → the page says paused and offers Resume; resume → back.
        let pause = format!("{prefix}/jobs/Nightly%20report/pause");
        let (status, _, _) = send(&site, "POST", &pause, &[form_ct, ("cookie", &cookie)], &good_form).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(schedule_of(&logger, "Nightly report").await.paused);
        let (_, body, _) = get_with_cookie(&site, &jobs_url, &cookie).await;
        assert!(body.contains("badge-paused"));
        let resume = format!("{prefix}/jobs/Nightly%20report/resume");
        assert!(actions(&body).contains(&resume), "a Resume button");
        assert!(body.contains(">Resume</button>"));
        let (status, _, _) = send(
            &site,
            "POST",
            &resume,
            &[form_ct, ("cookie", &cookie)],
            &good_form,
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(!schedule_of(&logger, "Nightly report").await.paused);
        let (_, body, _) = get_with_cookie(&site, &jobs_url, &cookie).await;
        assert!(!body.contains("badge-paused") && !body.contains(">Resume</button>"));

        // Unknown job → 404 page; unscheduled job → 404; wrong method → 405.
        for job in ["NoSuchJob", "CleanupJob"] {
            let (status, body, _) = send(
                &site,
                "POST",
                &format!("{prefix}/jobs/{job}/run_now"),
                &[form_ct, ("cookie", &cookie)],
                &good_form,
            )
            .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{job}");
            assert!(body.contains("Back to the job logs"), "{body}");
        }
        let (status, _, _) = get(&site, &run_now).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        // Reset for the other mount point.
        logger.scheduled_jobs().resume("Nightly report").await.unwrap();
    }
    drop(logger);
    let _ = std::fs::remove_file(path);
}

async fn get_with_cookie(
    site: &Site,
    uri: &str,
    cookie: &str,
) -> (StatusCode, String, poem::http::HeaderMap) {
    send(site, "GET", uri, &[("cookie", cookie)], "").await
}

#[tokio::test]
async fn jobs_monitor_flags_missed_and_skipped_runs_and_a_running_run() {
    use sea_orm::ConnectionTrait;
    let (logger, path) = file_logger("missed").await;
    seed(&logger, 4).await;
    schedule(&logger, &["Nightly report"]).await;
    logger
        .db()
        .execute_unprepared(
            "UPDATE job_schedules SET \
             last_success_at = strftime('%Y-%m-%d %H:%M:%f', 'now', '-17 minutes'), \
             last_run_at = strftime('%Y-%m-%d %H:%M:%f', 'now', '-17 minutes'), \
             skipped_count = 3, \
             last_skipped_at = strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 minutes') \
             WHERE job = 'Nightly report'",
        )
        .await
        .unwrap();
    // A webhook that keeps failing (what joblog's alert delivery records).
    logger
        .db()
        .execute_unprepared(
            "INSERT INTO job_alert_states (job, state, error, error_at) VALUES ('Nightly report', 1, \
             'HTTP 503 (attempt 3; next in 4s) <b>', strftime('%Y-%m-%d %H:%M:%f', 'now', '-2 minutes'))",
        )
        .await
        .unwrap();
    let rec = schedule_of(&logger, "Nightly report").await;
    assert!(rec.overdue, "{rec:?}");
    let mut run = logger.start("CleanupJob").await.unwrap();
    run.processing().await.unwrap();
    for prefix in PREFIXES {
        let site = Site::new(app(&logger, prefix)).await;
        let (status, body, _) = get(&site, &format!("{prefix}/jobs")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains(&format!("last success 17 min ago — {} runs missed", rec.missed)),
            "{body}"
        );
        assert!(body.contains("class=\"overdue\"") && body.contains("class=\"warning\""));
        assert!(body.contains("3 skipped, last "), "{body}");
        assert!(
            body.contains("alert webhook failing since ")
                && body.contains("HTTP 503 (attempt 3; next in 4s) &lt;b&gt;"),
            "the webhook's failure, escaped: {body}"
        );
        assert!(
            body.contains("running for ") && body.contains("(p50 "),
            "elapsed against p50"
        );
        // The run list flags it too.
        let (status, list, _) = get(&site, &format!("{prefix}/")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            list.contains("class=\"missed-banner\"")
                && list.contains(&format!("last success 17 min ago — {} runs missed", rec.missed)),
            "{list}"
        );
    }
    run.success().await.unwrap();
    drop(logger);
    let _ = std::fs::remove_file(path);
}

/// An error page: the layout (navigation, CSS under the mount point, a way back) and every
/// security header.
fn assert_styled_error(prefix: &str, what: &str, body: &str, headers: &poem::http::HeaderMap) {
    let csp = headers
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP in {headers:?}"))
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline")
            && csp.contains("frame-ancestors 'none'"),
        "{what}: {csp}"
    );
    assert_eq!(
        headers.get("x-content-type-options").unwrap(),
        "nosniff",
        "{what}"
    );
    assert_eq!(headers.get("x-frame-options").unwrap(), "DENY", "{what}");
    assert!(
        headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{what}: {headers:?}"
    );
    let hrefs = links(body);
    assert!(
        hrefs
            .iter()
            .any(|l| l.starts_with(&format!("{prefix}/assets/app.css?v="))),
        "{what}: the layout's CSS under {prefix:?}: {hrefs:?}"
    );
    assert!(
        body.contains("<nav class=\"nav\">") && body.contains("Jobs Monitor"),
        "{what}: {body}"
    );
    assert!(body.contains("Back to the job logs"), "{what}: {body}");
    assert!(
        hrefs.contains(&format!("{prefix}/")),
        "{what}: the way back: {hrefs:?}"
    );
}

#[tokio::test]
async fn every_failure_is_a_styled_page_with_the_security_headers() {
    let logger = logger().await;
    seed(&logger, 2).await;
    let form_ct = ("content-type", "application/x-www-form-urlencoded");
    for prefix in PREFIXES {
        let site = Site::new(app(&logger, prefix)).await;
        // Unmatched routes (poem's plain 404 before), handler 404s, bad query values.
        for (uri, expected, message) in [
            (
                "/nothing",
                StatusCode::NOT_FOUND,
                "There is no page at this address.",
            ),
            (
                "/job_logs/1/log.txt/extra",
                StatusCode::NOT_FOUND,
                "There is no page at this address.",
            ),
            (
                "/assets/",
                StatusCode::NOT_FOUND,
                "There is no page at this address.",
            ),
            ("/job_logs/abc", StatusCode::NOT_FOUND, "There is no run abc."),
            (
                "/job_logs/999999",
                StatusCode::NOT_FOUND,
                "There is no run 999999.",
            ),
            ("/assets/nothing.css", StatusCode::NOT_FOUND, "There is no asset"),
            (
                "/assets/%FF",
                StatusCode::BAD_REQUEST,
                "A part of this address is not valid.",
            ),
            (
                "/job_logs?before=abc",
                StatusCode::BAD_REQUEST,
                "before must be a number, not &quot;abc&quot;.",
            ),
            (
                "/job_logs?status=finished",
                StatusCode::BAD_REQUEST,
                "Unknown status",
            ),
            (
                "/job_logs/1?from=zz",
                StatusCode::BAD_REQUEST,
                "from must be a number",
            ),
            (
                "/jobs/Nightly/pause",
                StatusCode::METHOD_NOT_ALLOWED,
                "does not answer GET requests",
            ),
        ] {
            if uri.contains("%FF") && !prefix.is_empty() {
                // A path that is not UTF-8 fails in the host's own `nest` before it reaches
                // the pages: a host that wraps its app in `ErrorPages` styles it (below).
                continue;
            }
            let what = format!("GET {prefix}{uri}");
            let (status, body, headers) = get(&site, &format!("{prefix}{uri}")).await;
            assert_eq!(status, expected, "{what}: {body}");
            assert!(body.contains(message), "{what} lacks {message:?}: {body}");
            assert_styled_error(prefix, &what, &body, &headers);
        }
        // Wrong methods, a job name that is not UTF-8, forms that cannot be read.
        for (method, uri, headers, form, expected) in [
            ("POST", "/", vec![], "", StatusCode::METHOD_NOT_ALLOWED),
            ("DELETE", "/job_logs", vec![], "", StatusCode::METHOD_NOT_ALLOWED),
            ("PUT", "/jobs", vec![], "", StatusCode::METHOD_NOT_ALLOWED),
            (
                "POST",
                "/jobs/%FF/run_now",
                vec![form_ct],
                "csrf_token=x",
                StatusCode::BAD_REQUEST,
            ),
            (
                "POST",
                "/jobs/Nightly/run_now",
                vec![("content-type", "text/plain")],
                "x",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                "POST",
                "/jobs/Nightly/run_now",
                vec![form_ct],
                &"a".repeat(5_000),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                "POST",
                "/jobs/Nightly/run_now",
                vec![form_ct],
                "csrf_token=x",
                StatusCode::FORBIDDEN,
            ),
            (
                "POST",
                "/jobs/Nightly/bogus",
                vec![form_ct],
                "csrf_token=x",
                StatusCode::NOT_FOUND,
            ),
            (
                "POST",
                "/jobs/Nightly/xpause",
                vec![form_ct],
                "csrf_token=x",
                StatusCode::NOT_FOUND,
            ),
            (
                "POST",
                "/jobs/Nightly/pausex",
                vec![form_ct],
                "csrf_token=x",
                StatusCode::NOT_FOUND,
            ),
        ] {
            if uri.contains("%FF") && !prefix.is_empty() {
                continue;
            }
            let what = format!("{method} {prefix}{uri}");
            let (status, body, headers) =
                send(&site, method, &format!("{prefix}{uri}"), &headers, form).await;
            assert_eq!(status, expected, "{what}: {body}");
            assert_styled_error(prefix, &what, &body, &headers);
        }
        // The live tail stays JSON, with the headers too.
        let (status, body, headers) = get(&site, &format!("{prefix}/job_logs/1/lines?after=zz")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers.get("content-type").unwrap(), "application/json");
        assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "after must be a number, not \"zz\".");
    }
}

#[tokio::test]
async fn a_host_gets_the_same_error_pages_for_its_own_routes() {
    use joblog_web::ErrorPages;
    use poem::handler;

    #[handler]
    fn hello() -> &'static str {
        "hello"
    }
    let logger = logger().await;
    let prefix = "/admin/jobs";
    let config = WebConfig::default().nav_link(NavLink::new("Jobs Monitor", format!("{prefix}/jobs")));
    let host = Route::new()
        .at("/hello", poem::get(hello))
        .nest(prefix, router(logger.clone(), config.clone()))
        .with(ErrorPages::new(config, prefix));
    let site = Site::new(host).await;
    let (status, body, _) = get(&site, "/hello").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
    for (method, uri, expected) in [
        ("GET", "/nothing", StatusCode::NOT_FOUND),
        ("POST", "/hello", StatusCode::METHOD_NOT_ALLOWED),
        ("PUT", "/nothing/%FF", StatusCode::NOT_FOUND),
        ("GET", "/admin/jobs/nothing", StatusCode::NOT_FOUND),
        ("DELETE", "/admin/jobs/nothing", StatusCode::NOT_FOUND),
        ("POST", "/admin/jobs/job_logs", StatusCode::METHOD_NOT_ALLOWED),
        ("GET", "/admin/jobs/job_logs?before=x", StatusCode::BAD_REQUEST),
        ("GET", "/admin/jobs/assets/%FF", StatusCode::BAD_REQUEST),
    ] {
        let what = format!("{method} {uri}");
        let (status, body, headers) = send(&site, method, uri, &[], "").await;
        assert_eq!(status, expected, "{what}: {body}");
        assert_styled_error(prefix, &what, &body, &headers);
    }
}
