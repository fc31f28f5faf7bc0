//! The `sync-app` binary: exit codes, configuration errors, `fake-erp` + `sync` as
//! separate processes, and `serve` (auth, pages, graceful shutdown on SIGTERM).

mod common;

use common::temp_dir;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sync-app");

/// The binary with a clean environment (no inherited DATABASE_URL, MSSQL_URL, …) in `dir`.
fn cmd(dir: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c.env("RUST_LOG", "warn");
    c
}

fn run(c: &mut Command) -> Output {
    c.stdin(Stdio::null()).output().expect("run sync-app")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A `sync-app fake-erp` process and its MSSQL_URL (read from its first lines).
fn fake_erp(dir: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let mut child = cmd(dir)
        .args(["fake-erp", "--listen", "127.0.0.1:0", "--orders", "800"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn fake-erp");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("fake-erp printed its MSSQL_URL").unwrap();
        if let Some(url) = line.strip_prefix("MSSQL_URL='") {
            return (child, url.trim_end_matches('\'').to_string());
        }
    }
}

#[test]
fn usage_and_configuration_errors_exit_2_and_name_the_variable() {
    let dir = temp_dir("config");
    let out = run(&mut cmd(&dir));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("error: no command given"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("Usage: sync-app <command>"));

    let out = run(cmd(&dir).arg("--help"));
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("SYNC_INTERVAL"));

    let out = run(cmd(&dir).arg("launch"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown command `launch`"));

    let out = run(cmd(&dir).arg("sync"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("MSSQL_URL"), "{}", text(&out.stderr));

    let out = run(cmd(&dir).args(["serve"]).env("SYNC_INTERVAL", "often"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("SYNC_INTERVAL") && text(&out.stderr).contains("5m"));

    let out = run(cmd(&dir)
        .args(["serve", "--sync-interval", "1x"])
        .env("SYNC_INTERVAL", "5m"));
    assert_eq!(out.status.code(), Some(2), "the flag wins over the variable");
    assert!(text(&out.stderr).contains("SYNC_INTERVAL"));

    let out = run(cmd(&dir).arg("serve").env(
        "MSSQL_URL",
        "server=tcp:127.0.0.1,1;user id=u;password=p;encrypt=DANGER_PLAINTEXT",
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("ADMIN_USER"), "{}", text(&out.stderr));

    let out = run(cmd(&dir).arg("sync").env("DATABASE_URL", "oracle://x"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("DATABASE_URL"));

    let out = run(cmd(&dir).args(["fake-erp", "--fail", "explode"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--fail"), "{}", text(&out.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sync_exits_0_on_success_and_1_on_error_without_printing_secrets() {
    let dir = temp_dir("sync");
    let (mut erp, url) = fake_erp(&dir, &[]);
    let out = run(cmd(&dir).arg("sync").env("MSSQL_URL", &url));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("sync succeeded: 800 rows fetched, 800 inserted"));
    assert!(
        dir.join("sync-app.db").exists(),
        "the default database is a SQLite file in the working directory"
    );
    erp.kill().ok();
    erp.wait().ok();

    let (mut bad, url) = fake_erp(&dir, &["--fail", "login"]);
    let url = url.replace("Password=sync", "Password=S3cret-Pa55");
    assert!(url.contains("S3cret-Pa55"), "{url}");
    let out = run(cmd(&dir)
        .arg("sync")
        .env("MSSQL_URL", &url)
        .env("RUST_LOG", "debug"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("sync failed: connecting to SQL Server"),
        "{stderr}"
    );
    assert!(stderr.contains("Login failed for user 'sync'"), "{stderr}");
    let all = format!("{stderr}{}", text(&out.stdout));
    assert!(!all.contains("S3cret-Pa55"), "the password was printed: {all}");
    bad.kill().ok();
    bad.wait().ok();
    std::fs::remove_dir_all(&dir).ok();
}

/// One HTTP/1.1 GET with optional Basic credentials; returns (status, body).
fn get(addr: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: Basic {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, buf)
}

#[cfg(unix)]
#[test]
fn serve_protects_the_pages_and_stops_gracefully_on_sigterm() {
    let dir = temp_dir("serve");
    // The ERP stalls after 100 rows: the sync is still running when SIGTERM arrives.
    let (mut erp, url) = fake_erp(&dir, &["--fail", "stall-after:100"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut serve = cmd(&dir)
        .arg("serve")
        .env("MSSQL_URL", format!("{url};Command Timeout=120"))
        .env("ADMIN_USER", "ops")
        .env("ADMIN_PASSWORD", "pw")
        .env("BIND", &addr)
        .env("SHUTDOWN_GRACE", "1s")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains(&format!("http://{addr}/")), "{first}");

    assert_eq!(get(&addr, "/healthz", None).0, 200, "healthz needs no login");
    let (status, head) = get(&addr, "/", None);
    assert_eq!(status, 401);
    assert!(
        head.to_ascii_lowercase().contains("www-authenticate: basic"),
        "{head}"
    );
    assert_eq!(
        get(&addr, "/open_orders", Some("b3BzOndyb25n")).0,
        401,
        "wrong password"
    ); // ops:wrong
    let ok = "b3BzOnB3"; // ops:pw
    let started = Instant::now();
    let body = loop {
        let (status, body) = get(&addr, "/", Some(ok));
        assert_eq!(status, 200);
        if body.contains("badge-processing") || started.elapsed() > Duration::from_secs(20) {
            break body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        body.contains("SyncOpenOrdersJob") && body.contains("badge-processing"),
        "{body}"
    );
    let (status, page) = get(&addr, "/open_orders", Some(ok));
    assert_eq!(status, 200);
    assert!(
        page.contains("Open Orders") && page.contains("No successful sync yet"),
        "{page}"
    );
    assert_eq!(get(&addr, "/open_orders?sort=bogus", Some(ok)).0, 400);
    assert_eq!(get(&addr, "/open_orders?page=0", Some(ok)).0, 400);

    let t0 = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = serve.wait().unwrap();
    assert_eq!(status.code(), Some(0), "serve exits cleanly on SIGTERM");
    assert!(t0.elapsed() < Duration::from_secs(60));
    erp.kill().ok();
    erp.wait().ok();

    // The sync that was running is recorded as error (cancelled), not left processing.
    let out = run(cmd(&dir).args(["prune", "3650"]));
    assert_eq!(out.status.code(), Some(0));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}/sync-app.db", dir.display());
        let logger = joblog::JobLogger::connect(&url).await.unwrap();
        let page = logger
            .list_runs(&joblog::RunFilter::default(), joblog::Cursor::First, 10)
            .await
            .unwrap();
        assert_eq!(page.runs.len(), 1);
        let run = &page.runs[0].run;
        assert_eq!(run.status, joblog::RunStatus::Error);
        let details = logger.details(run.id, None, 100).await.unwrap();
        let last = &details.last().unwrap().message;
        assert!(last.contains("cancelled"), "{last}");
    });
    std::fs::remove_dir_all(&dir).ok();
}

/// Reads the newest run and its last detail from the SQLite file in `dir`.
fn last_run(dir: &std::path::Path) -> (joblog::RunStatus, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("sqlite://{}/sync-app.db", dir.display());
        let logger = joblog::JobLogger::connect(&url).await.unwrap();
        let page = logger
            .list_runs(&joblog::RunFilter::default(), joblog::Cursor::First, 1)
            .await
            .unwrap();
        let run = &page.runs[0].run;
        let details = logger.details(run.id, None, 100).await.unwrap();
        (run.status, details.last().unwrap().message.clone())
    })
}

#[cfg(unix)]
#[test]
fn sync_stops_on_sigterm_and_records_the_run_as_cancelled() {
    let dir = temp_dir("sync-term");
    let (mut erp, url) = fake_erp(&dir, &["--fail", "stall"]);
    let mut sync = cmd(&dir)
        .arg("sync")
        .env("MSSQL_URL", format!("{url};Command Timeout=120"))
        .env("SHUTDOWN_GRACE", "1s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sync");
    // Wait until the run is recorded as processing (the query is then stalled).
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if dir.join("sync-app.db").exists()
            && std::panic::catch_unwind(|| last_run(&dir)).is_ok_and(|(s, m)| {
                s == joblog::RunStatus::Processing && m.starts_with("Fetching open orders")
            })
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &sync.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut stderr = String::new();
    sync.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = sync.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("did not finish within SHUTDOWN_GRACE"),
        "{stderr}"
    );
    let (status, last) = last_run(&dir);
    assert_eq!(status, joblog::RunStatus::Error, "never left processing");
    assert!(last.contains("cancelled"), "{last}");
    erp.kill().ok();
    erp.wait().ok();
    std::fs::remove_dir_all(&dir).ok();
}
