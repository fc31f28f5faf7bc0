//! The `sync-app` binary: exit codes, configuration errors, help and version, odd
//! environments, `fake-erp` + `sync` as separate processes (and what `sync` prints while it
//! works), and `serve` (auth, pages, graceful shutdown on SIGTERM).

mod binary;
mod common;

use binary::{cmd, get, run, text};
use common::temp_dir;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `sync-app fake-erp` process and its MSSQL_URL (read from its first lines).
fn fake_erp(dir: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let mut child = cmd(dir)
        .args(["fake-erp", "--listen", "127.0.0.1:0", "--orders", "800"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn fake-erp");
    let url = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix("MSSQL_URL='")
                .map(|url| url.trim_end_matches('\'').to_string())
        });
    match url {
        Some(url) => (child, url),
        None => {
            child.kill().ok();
            child.wait().ok();
            panic!("fake-erp printed no MSSQL_URL");
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
        .env("ADMIN_PASSWORD", "pw-long-enough")
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
    let ok = &binary::basic("ops", "pw-long-enough");
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
            .list_runs(
                &joblog::query::RunFilter::default(),
                joblog::query::Cursor::First,
                10,
            )
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
            .list_runs(
                &joblog::query::RunFilter::default(),
                joblog::query::Cursor::First,
                1,
            )
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

#[test]
fn version_and_help_for_every_command() {
    let dir = temp_dir("help");
    let out = run(cmd(&dir).arg("--version"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("sync-app {}", env!("CARGO_PKG_VERSION"))
    );
    for command in ["demo", "serve", "check", "sync", "migrate", "prune", "fake-erp"] {
        let by_help = run(cmd(&dir).args(["help", command]));
        let by_flag = run(cmd(&dir).args([command, "--help"]));
        assert_eq!(by_help.status.code(), Some(0), "help {command}");
        assert_eq!(by_flag.status.code(), Some(0), "{command} --help");
        let help = text(&by_flag.stdout);
        assert_eq!(
            text(&by_help.stdout),
            help,
            "`help {command}` is `{command} --help`"
        );
        assert!(help.contains(&format!("Usage: sync-app {command}")), "{help}");
    }
    let serve = text(&run(cmd(&dir).args(["serve", "--help"])).stdout);
    for needle in [
        "--bind <ADDR>",
        "[env: BIND",
        "[env: SYNC_INTERVAL",
        "[env: ADMIN_USER",
        "--admin-password-file <FILE>",
        "[env: ADMIN_PASSWORD_FILE",
        "[env: SHUTDOWN_GRACE",
        "[env: SYNC_LEASE",
        "[env: TIMEZONE",
        "[env: DATABASE_URL",
        "[env: MSSQL_URL",
        "[env: SOURCE_QUERY",
    ] {
        assert!(serve.contains(needle), "{needle} missing:\n{serve}");
    }
    let out = run(cmd(&dir)
        .args(["serve", "--help"])
        .env("MSSQL_URL", "server=tcp:erp,1433;password=S3cret-Pa55")
        .env("DATABASE_URL", "postgres://app:S3cret-Pa55@db/app")
        .env("ADMIN_PASSWORD", "S3cret-Pa55"));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !text(&out.stdout).contains("S3cret-Pa55"),
        "help shows no secret: {}",
        text(&out.stdout)
    );

    // Usage errors exit 2 and name what is wrong.
    for (args, needle) in [
        (&["sync", "--orders", "5"][..], "--orders"),
        (&["migrate", "--bind", "127.0.0.1:1"][..], "--bind"),
        (&["prune", "0"][..], "0"),
        (&["prune", "soon"][..], "soon"),
        (&["fake-erp", "--orders", "many"][..], "--orders"),
        (&["serve", "--bind"][..], "--bind"),
    ] {
        let out = run(cmd(&dir).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(needle),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn secrets_are_refused_on_the_command_line() {
    let dir = temp_dir("secret-flags");
    let out = run(cmd(&dir).args(["serve", "--admin-user", "ops", "--admin-password", "hunter2"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("ADMIN_PASSWORD") && err.contains("--admin-password-file"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    let out = run(cmd(&dir).args(["sync", "--mssql-access-token", "eyJ0eXAi.secret"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("MSSQL_ACCESS_TOKEN") && err.contains("--mssql-access-token-file"),
        "{err}"
    );
    assert!(!err.contains("eyJ0eXAi.secret"), "{err}");

    let out = run(cmd(&dir).args([
        "demo",
        "--admin-user",
        "ops",
        "--admin-password-file",
        "missing.txt",
    ]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("ADMIN_PASSWORD_FILE") && err.contains("missing.txt"),
        "{err}"
    );
    assert!(!dir.join("sync-app.db").exists(), "nothing started");
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(unix)]
#[test]
fn odd_environments_never_panic() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let dir = temp_dir("odd-env");
    let latin1 = OsStr::from_bytes(b"caf\xe9");
    // A variable that is not ours, not UTF-8 in its value nor in its name: ignored.
    let out = run(cmd(&dir)
        .arg("migrate")
        .env("UNRELATED", latin1)
        .env(OsStr::from_bytes(b"NAME_\xff"), "x"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(dir.join("sync-app.db").exists());

    // One of ours that is not UTF-8: a configuration error naming it.
    for (command, variable) in [
        ("serve", "SYNC_INTERVAL"),
        ("migrate", "DATABASE_URL"),
        ("sync", "MSSQL_URL"),
        ("demo", "ADMIN_PASSWORD"),
        ("demo", "BIND"),
        ("check", "SOURCE_QUERY"),
    ] {
        let out = run(cmd(&dir).arg(command).env(variable, latin1));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command} with {variable}: {err}");
        assert!(
            err.contains(variable) && err.contains("UTF-8"),
            "{command}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // An argument that is not UTF-8: a usage error.
    let out = run(cmd(&dir).arg(OsStr::from_bytes(b"s\xffnc")));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("panicked"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sync_prints_the_details_as_plain_lines_when_not_on_a_terminal() {
    let dir = temp_dir("sync-lines");
    let (mut erp, url) = fake_erp(&dir, &[]);
    // No RUST_LOG: the default, info.
    let out = run(cmd(&dir)
        .arg("sync")
        .env("MSSQL_URL", &url)
        .env_remove("RUST_LOG"));
    erp.kill().ok();
    erp.wait().ok();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains('\x1b'), "no escape codes when piped: {stderr:?}");
    assert!(!stderr.contains('\r'), "no bar redrawn in place: {stderr:?}");
    let details: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" SyncOpenOrdersJob "))
        .collect();
    let expected = [
        "Job started - SyncOpenOrdersJob",
        "Connecting to SQL Server 127.0.0.1:",
        "Connected to SQL Server 127.0.0.1:",
        "Fetching open orders: SELECT order_no",
        "Batch 1 (800 rows, 800 staged)",
        "Fetched 800 open orders in ",
        "Indexed the new snapshot (800 rows, ",
        "Replaced open_orders: 800 rows (previous snapshot: 0 rows) in ",
        "Sync completed: 800 rows fetched, 800 rows inserted, ",
    ];
    assert_eq!(details.len(), expected.len(), "{stderr}");
    let run_name = details[0]
        .split(" SyncOpenOrdersJob ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap()
        .to_string();
    for (line, want) in details.iter().zip(expected) {
        assert!(
            line.contains(&format!("  INFO SyncOpenOrdersJob {run_name}: {want}")),
            "`{line}` should show `{want}` of run {run_name}"
        );
    }
    assert!(
        text(&out.stdout).contains("sync succeeded: 800 rows fetched, 800 inserted"),
        "the summary stays on stdout: {}",
        text(&out.stdout)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_access_token_comes_from_the_environment_or_a_file() {
    let dir = temp_dir("token");
    let (mut erp, url) = fake_erp(&dir, &["--access-token", "eyJ0b2tlbiI6dHJ1ZX0"]);
    let port = url
        .split("tcp:127.0.0.1,")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_string();
    let ado = format!(
        "Server=tcp:127.0.0.1,{port};Database=erp;Authentication=ActiveDirectoryAccessToken;TrustServerCertificate=true"
    );
    let token_file = dir.join("token");
    std::fs::write(&token_file, "eyJ0b2tlbiI6dHJ1ZX0\n").unwrap();

    let out = run(cmd(&dir)
        .arg("sync")
        .env("MSSQL_URL", &ado)
        .env("MSSQL_ACCESS_TOKEN", "eyJ0b2tlbiI6dHJ1ZX0"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = run(cmd(&dir)
        .arg("sync")
        .arg("--mssql-access-token-file")
        .arg(&token_file)
        .env("MSSQL_URL", &ado)
        .env("MSSQL_ACCESS_TOKEN", "not-the-token"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "the flag wins over the variable: {}",
        text(&out.stderr)
    );

    let out = run(cmd(&dir)
        .arg("sync")
        .env("MSSQL_URL", &ado)
        .env("MSSQL_ACCESS_TOKEN", "not-the-token"));
    assert_eq!(out.status.code(), Some(1), "a wrong token fails the sync");

    let out = run(cmd(&dir)
        .arg("sync")
        .env("MSSQL_URL", &ado)
        .env("MSSQL_ACCESS_TOKEN", "eyJ0b2tlbiI6dHJ1ZX0")
        .env("MSSQL_ACCESS_TOKEN_FILE", &token_file));
    assert_eq!(out.status.code(), Some(2), "two variables: one too many");
    let err = text(&out.stderr);
    assert!(
        err.contains("MSSQL_ACCESS_TOKEN_FILE") && !err.contains("eyJ0b2tlbiI6dHJ1ZX0"),
        "{err}"
    );
    erp.kill().ok();
    erp.wait().ok();
    std::fs::remove_dir_all(&dir).ok();
}

/// A valid-looking `serve` environment but for the setting under test.
fn serve_env(dir: &std::path::Path) -> Command {
    let mut c = cmd(dir);
    c.arg("serve")
        .env("MSSQL_URL", "server=tcp:127.0.0.1,1;user id=u;password=p")
        .env("ADMIN_USER", "ops")
        .env("BIND", "127.0.0.1:0");
    c
}

#[test]
fn hostile_network_settings_are_checked_and_named() {
    let dir = temp_dir("hostile-config");
    let pem = dir.join("garbage.pem");
    std::fs::write(&pem, "not a certificate").unwrap();
    let missing = dir.join("missing.pem");
    let cases: Vec<(&str, Vec<(&str, std::ffi::OsString)>)> = vec![
        ("ADMIN_PASSWORD", vec![("ADMIN_PASSWORD", "short-pw".into())]),
        (
            "ADMIN_PASSWORD_HASH",
            vec![("ADMIN_PASSWORD_HASH", "not-a-phc-string".into())],
        ),
        (
            "ADMIN_PASSWORD_HASH",
            vec![
                ("ADMIN_PASSWORD", "long-enough-password".into()),
                (
                    "ADMIN_PASSWORD_HASH",
                    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
                ),
            ],
        ),
        (
            "TLS_CERT",
            vec![
                ("TLS_CERT", missing.clone().into()),
                ("TLS_KEY", pem.clone().into()),
            ],
        ),
        (
            "TLS_CERT",
            vec![("TLS_CERT", pem.clone().into()), ("TLS_KEY", pem.clone().into())],
        ),
        ("TLS_KEY", vec![("TLS_CERT", pem.clone().into())]),
        ("TLS_CERT", vec![("TLS_KEY", pem.clone().into())]),
        ("PUBLIC_URL", vec![("PUBLIC_URL", "jobs.example.com".into())]),
        (
            "PUBLIC_URL",
            vec![("PUBLIC_URL", "ftp://jobs.example.com".into())],
        ),
        ("PUBLIC_URL", vec![("PUBLIC_URL", "https://".into())]),
        ("MAX_CONNECTIONS", vec![("MAX_CONNECTIONS", "0".into())]),
        ("MAX_CONNECTIONS", vec![("MAX_CONNECTIONS", "lots".into())]),
        (
            "HEADER_READ_TIMEOUT",
            vec![("HEADER_READ_TIMEOUT", "never".into())],
        ),
        ("KEEP_ALIVE_TIMEOUT", vec![("KEEP_ALIVE_TIMEOUT", "0s".into())]),
    ];
    for (variable, env) in cases {
        let mut c = serve_env(&dir);
        if !env.iter().any(|(k, _)| k.starts_with("ADMIN_PASSWORD")) {
            c.env("ADMIN_PASSWORD", "long-enough-password");
        }
        for (k, v) in &env {
            c.env(k, v);
        }
        let out = run(&mut c);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{variable} {env:?}: {err}");
        assert!(
            err.contains(&format!("error: {variable}:")),
            "{variable} {env:?}: {err}"
        );
        assert!(!err.contains("short-pw"), "the password is not printed: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn hash_password_reads_stdin_and_prints_a_phc_string_serve_accepts() {
    use std::io::Write;
    let dir = temp_dir("hash-password");
    let hash = |input: &str| {
        let mut child = cmd(&dir)
            .arg("hash-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hash-password");
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = hash(" a long password \n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let phc = text(&out.stdout).trim().to_string();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    assert!(!phc.contains("long password"));
    let out = hash("short\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("12 characters"),
        "{}",
        text(&out.stderr)
    );

    // serve takes it instead of ADMIN_PASSWORD (and then stops at the missing ERP source).
    let out = run(cmd(&dir)
        .arg("serve")
        .env("ADMIN_USER", "ops")
        .env("ADMIN_PASSWORD_HASH", &phc));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("MSSQL_URL") && !err.contains("ADMIN_PASSWORD"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
