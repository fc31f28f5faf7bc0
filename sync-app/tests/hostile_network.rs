//! Hostile clients against the real binary (`sync-app demo` on loopback, bounded loops):
//! slow request headers, idle keep-alive connections and a connection flood beyond
//! `MAX_CONNECTIONS`; and the SQLite file's mode. The timeouts are shortened (`HEADER_READ_TIMEOUT=1s`,
//! `KEEP_ALIVE_TIMEOUT=2s`) so the suite runs in seconds; the figures are printed
//! (`cargo test -p sync-app --test hostile_network -- --nocapture`), never asserted as
//! timings beyond generous bounds.

mod binary;
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use binary::{basic, cmd, free_addr};
use common::temp_dir;

const USER: &str = "ops";
const PASSWORD: &str = "hostile-test-password";

/// A `sync-app demo` on a free loopback port, killed on drop.
struct Demo {
    child: Child,
    addr: String,
    dir: std::path::PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn demo(tag: &str, max_connections: usize) -> Demo {
    let dir = temp_dir(tag);
    let addr = free_addr();
    let mut child = cmd(&dir)
        .arg("demo")
        .env("BIND", &addr)
        .env("ADMIN_USER", USER)
        .env("ADMIN_PASSWORD", PASSWORD)
        .env("MAX_CONNECTIONS", max_connections.to_string())
        .env("HEADER_READ_TIMEOUT", "1s")
        .env("KEEP_ALIVE_TIMEOUT", "2s")
        .env("SYNC_INTERVAL", "1h")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let up = lines
        .by_ref()
        .map_while(Result::ok)
        .take(20)
        .any(|l| l.trim_start().starts_with("Web UI"));
    // Keep reading: a closed pipe would fail the demo's next line of output.
    std::thread::spawn(move || lines.for_each(drop));
    assert!(up, "the demo printed no URL");
    Demo { child, addr, dir }
}

/// Whether the server closed `s` within `limit` (EOF or reset), reading and discarding
/// whatever it sends.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        let wait = (limit - started.elapsed()).clamp(Duration::from_millis(1), Duration::from_millis(200));
        s.set_read_timeout(Some(wait)).ok()?;
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

/// Reads one HTTP/1.1 response with a `Content-Length` from a keep-alive connection;
/// its status.
fn read_response(s: &mut TcpStream) -> u16 {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).expect("read a response"),
            1,
            "closed mid-response"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a content-length");
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).unwrap();
    head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn keep_alive_get(s: &mut TcpStream, addr: &str, path: &str) -> u16 {
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    read_response(s)
}

/// A normal user's page: a new connection, `GET /` with the password; (status, time).
fn normal_page_load(addr: &str) -> (u16, Duration) {
    let started = Instant::now();
    let (status, _) = binary::get(addr, "/", Some(&basic(USER, PASSWORD)));
    (status, started.elapsed())
}

#[test]
fn slow_headers_are_cut_off_on_the_first_and_on_a_later_request() {
    let demo = demo("slow-headers", 200);
    const SOCKETS: usize = 60;
    let mut slow: Vec<TcpStream> = (0..SOCKETS)
        .map(|_| {
            let mut s = TcpStream::connect(&demo.addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    // One more trickles a byte every 300 ms: bytes arriving do not extend the deadline.
    let mut trickle = TcpStream::connect(&demo.addr).unwrap();
    let started = Instant::now();
    let mut trickle_closed = None;
    for i in 0..20 {
        if trickle.write_all(b"a").is_err() {
            trickle_closed = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if i > 0 && closed_within(&mut trickle, Duration::from_millis(1)).is_some() {
            trickle_closed = Some(started.elapsed());
            break;
        }
    }
    let trickle_closed = trickle_closed.expect("the trickling client is cut off");
    let mut worst = Duration::ZERO;
    let mut closed = 0;
    for s in &mut slow {
        if closed_within(s, Duration::from_secs(5)).is_some() {
            closed += 1;
            worst = worst.max(started.elapsed());
        }
    }
    println!(
        "slow headers: {closed}/{SOCKETS} partial-header sockets closed, the last {worst:?} after \
         connecting (HEADER_READ_TIMEOUT=1s); a byte every 300 ms cut at {trickle_closed:?}"
    );
    assert_eq!(closed, SOCKETS, "every partial-header connection is closed");
    assert!(trickle_closed < Duration::from_secs(5), "{trickle_closed:?}");

    // A keep-alive connection: the first request is answered, the second, left half-sent,
    // is cut off too.
    let mut s = TcpStream::connect(&demo.addr).unwrap();
    assert_eq!(keep_alive_get(&mut s, &demo.addr, "/healthz"), 200);
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let cut = closed_within(&mut s, Duration::from_secs(5));
    println!("keep-alive: a half-sent second request was cut after {cut:?}");
    assert!(cut.is_some(), "a half-sent second request is cut off");
}

#[test]
fn idle_connections_are_closed() {
    let demo = demo("idle", 200);
    // Never a byte.
    let mut silent: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(&demo.addr).unwrap()).collect();
    // Keep-alive after one answered request.
    let mut after_request: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut s = TcpStream::connect(&demo.addr).unwrap();
            assert_eq!(keep_alive_get(&mut s, &demo.addr, "/healthz"), 200);
            s
        })
        .collect();
    let silent_closed = silent
        .iter_mut()
        .filter_map(|s| closed_within(s, Duration::from_secs(5)))
        .count();
    let started = Instant::now();
    let idle_closed: Vec<Duration> = after_request
        .iter_mut()
        .filter_map(|s| closed_within(s, Duration::from_secs(8)))
        .collect();
    println!(
        "idle: {silent_closed}/10 silent connections closed (HEADER_READ_TIMEOUT=1s); \
         {}/10 idle keep-alive connections closed, within {:?} (KEEP_ALIVE_TIMEOUT=2s)",
        idle_closed.len(),
        started.elapsed()
    );
    assert_eq!(silent_closed, 10);
    assert_eq!(idle_closed.len(), 10);
}

#[test]
fn a_flood_beyond_max_connections_does_not_lock_out_a_normal_user() {
    const MAX: usize = 20;
    const FLOOD: usize = 150;
    let demo = demo("flood", MAX);
    // Before the flood: the page as a user sees it (the first load warms caches).
    let (status, _) = normal_page_load(&demo.addr);
    assert_eq!(status, 200);
    let (_, quiet) = normal_page_load(&demo.addr);

    // A user in the middle of using the pages, on one keep-alive connection.
    let mut busy = TcpStream::connect(&demo.addr).unwrap();
    assert_eq!(keep_alive_get(&mut busy, &demo.addr, "/healthz"), 200);

    // The flood: connections that send half a header and hold on.
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        let mut s = TcpStream::connect(&demo.addr).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n");
        flood.push(s);
    }
    let mut worst = Duration::ZERO;
    let mut loads = 0;
    let started = Instant::now();
    while loads < 20 {
        let (status, took) = normal_page_load(&demo.addr);
        assert_eq!(status, 200, "a normal page load during the flood");
        worst = worst.max(took);
        loads += 1;
        assert_eq!(
            keep_alive_get(&mut busy, &demo.addr, "/healthz"),
            200,
            "the connection in use is not cut"
        );
        // More flood between the loads.
        for s in flood.iter_mut().take(10) {
            if let Ok(mut again) = TcpStream::connect(&demo.addr) {
                let _ = again.write_all(b"GET / HTTP/1.1\r\n");
                *s = again;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let flood_open = flood
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(1)))
        .filter(Option::is_none)
        .count();
    println!(
        "flood: {FLOOD} half-header connections (+10 more per page load) against \
         MAX_CONNECTIONS={MAX}: {loads} normal page loads (GET / with Basic auth, new connection) \
         all 200, worst {worst:?} (quiet: {quiet:?}), over {:?}; the keep-alive user's {loads} \
         requests all answered; flood sockets still open at the end: {flood_open}",
        started.elapsed()
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_sqlite_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("sqlite-mode");
    let file = dir.join("orders.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let logger = sync_app::database::open(&url).await.unwrap();
    let run = logger.start("ModeCheck").await.unwrap();
    run.success().await.unwrap();
    logger.flush().await.unwrap();
    let mut checked = 0;
    for name in ["orders.db", "orders.db-wal", "orders.db-shm"] {
        if let Ok(meta) = std::fs::metadata(dir.join(name)) {
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
            checked += 1;
        }
    }
    assert!(checked >= 2, "the database and its WAL exist");
    drop(logger);
    std::fs::remove_dir_all(&dir).ok();
}
