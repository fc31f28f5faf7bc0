//! The README's first command, `sync-app demo`, as a newcomer runs it: the real binary in an
//! empty folder, on a free port. Within a minute a sync has succeeded and the pages show it
//! (with the credentials the demo printed); Ctrl-C (SIGINT) stops it cleanly, and no run is
//! left processing in the SQLite file it created.

mod binary;
mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use binary::{basic, cmd, free_addr, get, signal, wait_at_most};
use common::temp_dir;

/// How long the demo may take to start, sync and show it.
const FIRST_SYNC: Duration = Duration::from_secs(60);

/// Kills the demo if the test fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// What the demo prints at start: the pages' address and the login.
#[derive(Debug, Default)]
struct Banner {
    url: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

impl Banner {
    /// Reads `  Web UI     http://…/` and `  Login      user U, password P`.
    fn read(&mut self, line: &str) {
        let line = line.trim();
        if let Some(url) = line.strip_prefix("Web UI") {
            self.url = Some(url.trim().to_string());
        }
        if let Some(login) = line.strip_prefix("Login") {
            let login = login.trim();
            if let Some((user, password)) = login
                .strip_prefix("user ")
                .and_then(|rest| rest.split_once(", password "))
            {
                self.user = Some(user.to_string());
                self.password = Some(password.to_string());
            }
        }
    }

    fn complete(&self) -> bool {
        self.url.is_some() && self.user.is_some() && self.password.is_some()
    }
}

/// The rows of the run list's table that are `SyncOpenOrdersJob` runs with this status.
fn runs_with_status(page: &str, status: &str) -> usize {
    page.split("<tr")
        .filter(|row| row.contains("SyncOpenOrdersJob") && row.contains(&format!("badge-{status}\"")))
        .count()
}

#[cfg(unix)]
#[test]
fn the_demo_syncs_shows_the_orders_and_stops_cleanly_on_ctrl_c() {
    let dir = temp_dir("demo");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "an empty folder");
    let addr = free_addr();
    let started = Instant::now();
    let mut child = cmd(&dir)
        .arg("demo")
        .env("BIND", &addr)
        // As a newcomer runs it: the default log level, so the run's details are printed.
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sync-app demo");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut demo = Running(child);

    // Keep draining both pipes: a full pipe would block the demo.
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let log = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        all
    });

    let mut banner = Banner::default();
    while !banner.complete() {
        let left = FIRST_SYNC.saturating_sub(started.elapsed());
        match lines.recv_timeout(left) {
            Ok(line) => banner.read(&line),
            Err(e) => panic!("the demo printed no URL and login ({e}); so far: {banner:?}"),
        }
    }
    let url = banner.url.unwrap();
    assert_eq!(url, format!("http://{addr}/"), "the demo serves on BIND");
    let (user, password) = (banner.user.unwrap(), banner.password.unwrap());
    assert_eq!(user, "admin");
    assert!(password.len() >= 16, "a generated password: {password}");
    let auth = basic(&user, &password);

    assert_eq!(get(&addr, "/", None).0, 401, "the pages need the login");
    assert_eq!(get(&addr, "/", Some(&basic(&user, "wrong"))).0, 401);

    // A successful sync within the minute.
    let runs = loop {
        let (status, page) = get(&addr, "/", Some(&auth));
        assert_eq!(status, 200, "{page}");
        if runs_with_status(&page, "success") > 0 {
            break page;
        }
        assert!(
            started.elapsed() < FIRST_SYNC,
            "no successful SyncOpenOrdersJob within {FIRST_SYNC:?}:\n{page}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(runs_with_status(&runs, "error"), 0, "{runs}");

    // Its open orders on their page.
    let (status, orders) = get(&addr, "/open_orders", Some(&auth));
    assert_eq!(status, 200, "{orders}");
    assert!(orders.contains("Last successful sync"), "{orders}");
    assert!(orders.contains("open order lines"), "{orders}");
    let rows = orders
        .split("<tbody>")
        .nth(1)
        .and_then(|body| body.split("</tbody>").next())
        .map_or(0, |body| body.matches("<tr>").count());
    assert!(rows > 0, "no order rows on the page:\n{orders}");

    // Ctrl-C: a clean exit, in bounded time.
    signal(&demo.0, "INT");
    let status = wait_at_most(&mut demo.0, Duration::from_secs(45));
    let log = log.join().unwrap();
    assert_eq!(status.code(), Some(0), "a clean exit on SIGINT; its log:\n{log}");
    assert!(
        log.contains("SyncOpenOrdersJob") && log.contains("Sync completed: "),
        "the demo prints the run's details as they are written:\n{log}"
    );

    // The SQLite file it created: a success, nothing left processing.
    let db = dir.join("sync-app.db");
    assert!(db.exists(), "the demo's database is in its working directory");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let logger = joblog::JobLogger::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("open the demo's database");
        let with = |status| joblog::query::RunFilter {
            status: Some(status),
            job: Some("SyncOpenOrdersJob".into()),
            ..joblog::query::RunFilter::default()
        };
        let count = |status| {
            let filter = with(status);
            let logger = &logger;
            async move {
                logger
                    .list_runs(&filter, joblog::query::Cursor::First, 100)
                    .await
                    .expect("list runs")
                    .runs
                    .len()
            }
        };
        assert_eq!(
            count(joblog::RunStatus::Processing).await,
            0,
            "a run left processing"
        );
        assert_eq!(count(joblog::RunStatus::New).await, 0, "a run left new");
        assert!(count(joblog::RunStatus::Success).await >= 1);
    });
    std::fs::remove_dir_all(&dir).ok();
}
