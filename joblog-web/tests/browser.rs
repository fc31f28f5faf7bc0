//! The pages in a real browser: headless Chromium driven through chromedriver (WebDriver).
//!
//! Walks list → detail → back, list → Open Orders → back, list → Jobs Monitor; sees a
//! line written after the detail page loaded appear without a reload, and the status
//! change when the run ends; saves screenshots and checks they are not blank.
//!
//! Needs `chromedriver` and `chromium` (Debian: `apt-get install chromium chromium-driver`;
//! `CHROMEDRIVER` / `CHROMIUM` override the paths). Without them the test skips with a loud
//! message, unless `JOBLOG_REQUIRE_BROWSER=1` (set by `.ci/run`) makes that a failure.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use joblog::JobLogger;
use joblog_web::{NavLink, WebConfig, router};
use poem::{Route, get, handler};

fn find_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

fn required() -> bool {
    std::env::var("JOBLOG_REQUIRE_BROWSER").is_ok_and(|v| v == "1" || v == "true")
}

#[handler]
fn open_orders() -> poem::web::Html<&'static str> {
    // The host app's own page (sync-app serves the real one).
    poem::web::Html("<!doctype html><title>Open Orders</title><h1 id=\"host-page\">Open Orders</h1>")
}

async fn serve(app: Route) -> std::net::SocketAddr {
    use poem::listener::{Acceptor, Listener, TcpListener};
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    });
    addr
}

/// Saves a screenshot and checks it shows something: many distinct colours.
fn check_screenshot(png_bytes: &[u8], name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, png_bytes).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bytes = &buf[..info.buffer_size()];
    let px = info.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> = bytes.chunks(px).collect();
    assert!(
        info.width >= 800 && info.height >= 600,
        "{name}: {}x{}",
        info.width,
        info.height
    );
    assert!(
        colours.len() > 50,
        "{name} looks blank: {} colours",
        colours.len()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walk_the_pages_in_chromium() {
    let (Some(driver), Some(chromium)) = (
        find_binary("CHROMEDRIVER", &["chromedriver"]),
        find_binary("CHROMIUM", &["chromium", "chromium-browser", "google-chrome"]),
    ) else {
        let msg = "chromedriver or chromium not found";
        if required() {
            panic!("{msg} (JOBLOG_REQUIRE_BROWSER=1 makes this a failure)");
        }
        eprintln!(
            "\n!!!!! SKIPPED: {msg} — apt-get install chromium chromium-driver, or set JOBLOG_REQUIRE_BROWSER=1 to fail instead !!!!!\n"
        );
        return;
    };

    // Two rustls crypto backends are in the dependency tree: pick one for the WebDriver client.
    let _ = rustls::crypto::ring::default_provider().install_default();

    // The app: joblog's pages at the root, with the host's Open Orders page beside them.
    let logger = JobLogger::connect("sqlite::memory:").await.unwrap();
    logger.migrate().await.unwrap();
    for i in 0..3 {
        let mut run = logger.start("SyncOpenOrdersJob").await.unwrap();
        run.processing().await.unwrap();
        run.detail(format!("Fetched {} open orders", 100 + i));
        run.success().await.unwrap();
    }
    let config = WebConfig::default()
        .nav_link(NavLink::new("Open Orders", "/open_orders").icon("document"))
        .nav_link(
            NavLink::new("Jobs Monitor", "/jobs")
                .colour("blue")
                .icon("clipboard"),
        );
    let app = Route::new()
        .at("/open_orders", get(open_orders))
        .nest("/", router(logger.clone(), config));
    let addr = serve(app).await;
    let base = format!("http://{addr}");

    // chromedriver on a free port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut driver = tokio::process::Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900"],
        }),
    );
    let mut client = None;
    for _ in 0..50 {
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let c = client.expect("a WebDriver session");
    let result = async {
        // List → detail → back.
        c.goto(&format!("{base}/")).await?;
        let first = c.find(Locator::Css("table.runs tbody tr td a")).await?;
        let name = first.text().await?;
        let list_shot = c.screenshot().await?;
        first.click().await?;
        let h1 = c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("h1"))
            .await?;
        assert!(h1.text().await?.contains(&name), "the detail page of {name}");
        assert!(
            c.find(Locator::Css("#log"))
                .await?
                .text()
                .await?
                .contains("Fetched 102 open orders")
        );
        let detail_shot = c.screenshot().await?;
        c.find(Locator::Css("a.back")).await?.click().await?;
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("table.runs"))
            .await?;
        assert_eq!(c.current_url().await?.path(), "/job_logs");
        // List → Open Orders → back.
        c.find(Locator::LinkText("Open Orders")).await?.click().await?;
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Id("host-page"))
            .await?;
        c.back().await?;
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("table.runs"))
            .await?;
        // List → Jobs Monitor.
        c.find(Locator::LinkText("Jobs Monitor")).await?.click().await?;
        let table = c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("table.runs"))
            .await?;
        assert!(table.text().await?.contains("SyncOpenOrdersJob"));
        let jobs_shot = c.screenshot().await?;

        // A running job: a line written after the page loaded appears without a reload,
        // then the status and summary follow the end of the run.
        let mut run = logger.start("LiveJob").await.unwrap();
        run.processing().await.unwrap();
        run.detail("first line");
        logger.flush().await.unwrap();
        c.goto(&format!("{base}/job_logs/{}", run.id())).await?;
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("#log .line"))
            .await?;
        assert_eq!(c.find(Locator::Id("status")).await?.text().await?, "processing");
        run.detail("appeared without a reload");
        logger.flush().await.unwrap();
        c.wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::XPath(
                "//div[@id='log']//span[text()='appeared without a reload']",
            ))
            .await?;
        run.success().await.unwrap();
        c.wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::XPath("//span[@id='status' and text()='success']"))
            .await?;
        let completed = c.find(Locator::Id("completed")).await?.text().await?;
        assert_ne!(completed, "running", "the summary follows the end of the run");
        let live_shot = c.screenshot().await?;

        // Jobs Monitor → "Run now" (a POST with its CSRF token) → a new run in the list.
        let scheduler = joblog::scheduler::Scheduler::builder(logger.clone())
            .poll_interval(Duration::from_millis(200))
            .job_with(
                "BrowserJob",
                joblog::scheduler::Schedule::every(Duration::from_secs(3600)),
                joblog::scheduler::JobOptions::default().run_at_start(false),
                |run| async move {
                    run.detail("started from the Run now button");
                    Ok::<_, std::convert::Infallible>(())
                },
            )
            .build()
            .start()
            .await
            .expect("scheduler");
        c.goto(&format!("{base}/jobs")).await?;
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("form[action$='/jobs/BrowserJob/run_now'] button"))
            .await?
            .click()
            .await?;
        c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("table.runs"))
            .await?;
        let mut ran = false;
        for _ in 0..30 {
            c.goto(&format!("{base}/job_logs?job=BrowserJob")).await?;
            let rows = c.find_all(Locator::Css("table.runs tbody tr")).await?;
            if !rows.is_empty() && rows[0].text().await?.contains("BrowserJob") {
                ran = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(ran, "Run now in the browser started a run that the list shows");
        scheduler
            .shutdown(Duration::from_secs(5))
            .await
            .expect("scheduler shutdown");
        Ok::<_, fantoccini::error::CmdError>([list_shot, detail_shot, jobs_shot, live_shot])
    }
    .await;
    let _ = c.close().await;
    let _ = driver.kill().await;
    let shots = result.expect("browser walk");
    for (bytes, name) in shots
        .iter()
        .zip(["list.png", "detail.png", "jobs.png", "live.png"])
    {
        let path = check_screenshot(bytes, name);
        eprintln!("screenshot: {}", path.display());
    }
}
