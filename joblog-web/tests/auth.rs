//! `BasicAuth` on a hostile network: login throttling per client address, Argon2 password
//! hashes, the headers of its 401 and 429, and what it logs.
//!
//! Most tests speak real HTTP/1.1 over loopback, each client from its own source address
//! (127.0.0.2, 127.0.0.3, …: Linux answers on the whole 127/8); the table-size and log
//! tests call the endpoint directly with a chosen remote address. The guessing-rate
//! figures come from an ignored test:
//! `cargo test --release -p joblog-web --test auth -- --ignored --nocapture guesses_per_second`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use joblog_web::{BasicAuth, PasswordHashError, hash_password};
use poem::http::uri::Scheme;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Body, Endpoint, EndpointExt, Request, RequestParts, Route, Server, get, handler};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

const USER: &str = "admin";
const PASSWORD: &str = "correct horse battery";

#[handler]
fn ok() -> &'static str {
    "ok"
}

fn app(auth: BasicAuth) -> impl Endpoint + 'static {
    Route::new().at("/", get(ok)).with(auth)
}

/// Serves `app(auth)` on a loopback port; the server lives as long as the test.
async fn serve(auth: BasicAuth) -> SocketAddr {
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app(auth)));
    addr
}

/// `Basic base64(user:password)`.
fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// One keep-alive HTTP/1.1 connection from a chosen loopback source address.
struct Client {
    stream: BufReader<TcpStream>,
}

/// A response: status, headers (lower-case names), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn retry_after(&self) -> u64 {
        self.header("retry-after")
            .expect("a 429 says when to retry")
            .parse()
            .expect("Retry-After in seconds")
    }
}

impl Client {
    async fn connect(server: SocketAddr, from: Ipv4Addr) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
        let stream = socket.connect(server).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream: BufReader::new(stream),
        }
    }

    async fn get(&mut self, authorization: Option<&str>) -> Answer {
        let mut request = String::from("GET / HTTP/1.1\r\nHost: localhost\r\n");
        if let Some(value) = authorization {
            request.push_str(&format!("Authorization: {value}\r\n"));
        }
        request.push_str("\r\n");
        self.stream.get_mut().write_all(request.as_bytes()).await.unwrap();
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.unwrap();
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
        }
    }
}

fn loopback(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// Every 401 and 429 wears these.
fn assert_guarded_headers(answer: &Answer) {
    assert_eq!(answer.header("cache-control"), Some("no-store"), "{answer:?}");
    assert_eq!(
        answer.header("x-content-type-options"),
        Some("nosniff"),
        "{answer:?}"
    );
    assert!(
        answer
            .header("content-security-policy")
            .is_some_and(|csp| csp.contains("frame-ancestors 'none'")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn guessing_gets_429_while_other_addresses_still_log_in() {
    let auth = BasicAuth::new(USER, PASSWORD).lockout(Duration::from_secs(30), Duration::from_secs(60));
    let server = serve(auth).await;
    let mut guesser = Client::connect(server, loopback(2)).await;
    for n in 0..5 {
        let answer = guesser.get(Some(&basic(USER, &format!("guess{n}")))).await;
        assert_eq!(answer.status, 401, "guess {n}: {answer:?}");
        assert!(answer.header("www-authenticate").is_some());
        assert_guarded_headers(&answer);
    }
    for guess in ["guess5", PASSWORD] {
        let answer = guesser.get(Some(&basic(USER, guess))).await;
        assert_eq!(
            answer.status, 429,
            "locked out, the password is not even checked: {answer:?}"
        );
        assert!((1..=30).contains(&answer.retry_after()), "{answer:?}");
        assert!(answer.body.contains("Too Many Requests"));
        assert_guarded_headers(&answer);
    }
    // Another address, even on a fresh connection, is not affected.
    let mut user = Client::connect(server, loopback(3)).await;
    let answer = user.get(Some(&basic(USER, PASSWORD))).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, "ok");
    // And the guesser is still locked out on a new connection.
    let mut again = Client::connect(server, loopback(2)).await;
    assert_eq!(again.get(Some(&basic(USER, PASSWORD))).await.status, 429);
}

#[tokio::test]
async fn retry_after_grows_with_each_lockout() {
    let auth = BasicAuth::new(USER, PASSWORD)
        .throttle(3, Duration::from_secs(60))
        .lockout(Duration::from_secs(1), Duration::from_secs(2));
    let server = serve(auth).await;
    let mut guesser = Client::connect(server, loopback(4)).await;
    for _ in 0..3 {
        assert_eq!(guesser.get(Some(&basic(USER, "wrong"))).await.status, 401);
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let answer = guesser.get(Some(&basic(USER, "wrong"))).await;
        assert_eq!(answer.status, 429, "{answer:?}");
        let wait = answer.retry_after();
        seen.push(wait);
        tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
        // After the lockout, one more failure locks again, for twice as long.
        assert_eq!(guesser.get(Some(&basic(USER, "wrong"))).await.status, 401);
    }
    assert_eq!(seen, [1, 2, 2], "doubling up to the cap");
}

#[tokio::test]
async fn success_resets_the_address() {
    let server = serve(BasicAuth::new(USER, PASSWORD)).await;
    let mut client = Client::connect(server, loopback(5)).await;
    for round in 0..3 {
        for _ in 0..4 {
            let answer = client.get(Some(&basic(USER, "typo"))).await;
            assert_eq!(answer.status, 401, "round {round}: {answer:?}");
        }
        assert_eq!(client.get(Some(&basic(USER, PASSWORD))).await.status, 200);
    }
    // Requests without credentials (a browser's first) and malformed headers are no guesses.
    for header in [None, Some("Bearer x"), Some("Basic !!!"), Some("Basic YWRtaW4=")] {
        for _ in 0..3 {
            assert_eq!(client.get(header).await.status, 401);
        }
    }
    for _ in 0..4 {
        assert_eq!(client.get(Some(&basic(USER, "typo"))).await.status, 401);
    }
    assert_eq!(client.get(Some(&basic(USER, "typo"))).await.status, 401);
    assert_eq!(client.get(Some(&basic(USER, "typo"))).await.status, 429);
}

#[tokio::test]
async fn secrets_are_not_trimmed() {
    let server = serve(BasicAuth::new(USER, "  padded  ")).await;
    let mut client = Client::connect(server, loopback(6)).await;
    assert_eq!(client.get(Some(&basic(USER, "padded"))).await.status, 401);
    assert_eq!(client.get(Some(&basic(USER, "  padded  "))).await.status, 200);
}

/// A request for `/` from `remote` with the given credentials, as poem's server makes it.
fn request_from(remote: SocketAddr, user: &str, password: &str) -> Request {
    let (parts, ()) = poem::http::Request::builder()
        .uri("/")
        .header("authorization", basic(user, password))
        .body(())
        .unwrap()
        .into_parts();
    let parts = RequestParts::from((
        parts,
        LocalAddr(Addr::socket("127.0.0.1:3000".parse().unwrap())),
        RemoteAddr(Addr::socket(remote)),
        Scheme::HTTP,
    ));
    Request::from_parts(parts, Body::empty())
}

#[tokio::test]
async fn table_stays_bounded_under_50_000_addresses() {
    let auth = BasicAuth::new(USER, PASSWORD);
    let ep = app(auth.clone());
    let mut most = 0;
    for n in 0..50_000u32 {
        let ip = if n % 2 == 0 {
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
        } else {
            // A different /64 each time (addresses within one /64 are one client).
            IpAddr::V6(Ipv6Addr::from(
                (0x2001_0db8_u128 << 96) | (u128::from(n) << 64) | 1,
            ))
        };
        let resp = ep
            .get_response(request_from(SocketAddr::new(ip, 40_000), USER, "guess"))
            .await;
        assert_eq!(resp.status().as_u16(), 401);
        most = most.max(auth.throttled_clients());
    }
    assert_eq!(most, 10_000, "the table fills up to its cap and no further");
    assert_eq!(auth.throttled_clients(), 10_000);
    // A right password clears its own address and leaves the rest.
    let last = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 49_998)), 1);
    let resp = ep.get_response(request_from(last, USER, PASSWORD)).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(auth.throttled_clients(), 9_999);
}

#[tokio::test]
async fn ipv6_clients_are_counted_by_64() {
    let ep = app(BasicAuth::new(USER, PASSWORD).throttle(2, Duration::from_secs(60)));
    let from = |host: u128, net: u128| {
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) | (net << 64) | host)),
            1,
        )
    };
    for host in 1..=2 {
        let resp = ep.get_response(request_from(from(host, 7), USER, "x")).await;
        assert_eq!(resp.status().as_u16(), 401);
    }
    let resp = ep.get_response(request_from(from(99, 7), USER, PASSWORD)).await;
    assert_eq!(resp.status().as_u16(), 429, "another host of the same /64");
    let resp = ep.get_response(request_from(from(1, 8), USER, PASSWORD)).await;
    assert_eq!(resp.status().as_u16(), 200, "the next /64 is another client");
}

#[tokio::test]
async fn password_hash_accepts_the_password_and_nothing_else() {
    let phc = hash_password(PASSWORD).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m="), "{phc}");
    assert_ne!(hash_password(PASSWORD).unwrap(), phc, "a fresh salt each time");
    let auth = BasicAuth::with_password_hash(USER, &phc)
        .unwrap()
        .without_throttle();
    assert!(
        !format!("{auth:?}").contains(&phc[30..]),
        "the hash is not shown: {auth:?}"
    );
    let server = serve(auth).await;
    let mut client = Client::connect(server, loopback(7)).await;
    assert_eq!(client.get(Some(&basic(USER, PASSWORD))).await.status, 200);
    for (user, password) in [
        (USER, "correct horse battery "),
        (USER, "Correct horse battery"),
        (USER, ""),
        ("root", PASSWORD),
        ("", PASSWORD),
    ] {
        let answer = client.get(Some(&basic(user, password))).await;
        assert_eq!(answer.status, 401, "{user:?} / {password:?}");
    }
    // The remembered (last verified) credentials still let only themselves in.
    assert_eq!(client.get(Some(&basic(USER, PASSWORD))).await.status, 200);
    assert_eq!(
        client
            .get(Some(&basic(USER, "correct horse batter")))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn password_hash_is_throttled_too() {
    let phc = hash_password(PASSWORD).unwrap();
    let auth = BasicAuth::with_password_hash(USER, &phc)
        .unwrap()
        .throttle(2, Duration::from_secs(60));
    let server = serve(auth).await;
    let mut client = Client::connect(server, loopback(8)).await;
    assert_eq!(client.get(Some(&basic(USER, "a"))).await.status, 401);
    assert_eq!(client.get(Some(&basic(USER, "b"))).await.status, 401);
    assert_eq!(client.get(Some(&basic(USER, PASSWORD))).await.status, 429);
}

#[test]
fn a_malformed_phc_string_is_a_clear_error() {
    let good = hash_password("pw").unwrap();
    let cases: [(String, &str); 7] = [
        (String::new(), "does not start with `$`"),
        ("hunter2".into(), "does not start with `$`"),
        (format!("{good}\n"), "white space"),
        (format!(" {good}"), "white space"),
        (
            "$bcrypt$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
            "\"bcrypt\"",
        ),
        ("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ".into(), "no hash"),
        ("$argon2id$v=19$m=19456,t=2,p=1".into(), "no salt"),
    ];
    for (phc, expected) in cases {
        let err = BasicAuth::with_password_hash(USER, &phc).unwrap_err();
        assert!(err.to_string().contains(expected), "{phc:?}: {err}");
    }
    let err = BasicAuth::with_password_hash(
        USER,
        "$argon2id$v=19$m=19456,t=0,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
    )
    .unwrap_err();
    assert!(matches!(err, PasswordHashError::InvalidParams(_)), "{err:?}");
    assert!(BasicAuth::with_password_hash(USER, &good).is_ok());
}

/// A subscriber that keeps every event as one line: level, message and fields.
#[derive(Debug, Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Line(String);

impl tracing::field::Visit for Line {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = Line(event.metadata().level().to_string());
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(flavor = "current_thread")]
async fn failures_are_logged_with_address_and_user_never_the_password() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let ep = app(BasicAuth::new(USER, PASSWORD).throttle(2, Duration::from_secs(60)));
    let remote: SocketAddr = "203.0.113.7:4321".parse().unwrap();
    for _ in 0..2 {
        ep.get_response(request_from(remote, "mallory", "Tr0ub4dor&3"))
            .await;
    }
    for _ in 0..5 {
        let resp = ep
            .get_response(request_from(remote, "mallory", "Tr0ub4dor&3"))
            .await;
        assert_eq!(resp.status().as_u16(), 429);
    }
    ep.get_response(request_from(
        "198.51.100.1:1".parse().unwrap(),
        "evil\nWARN forged",
        "x",
    ))
    .await;
    let lines = capture.0.lock().unwrap().clone();
    let failures: Vec<_> = lines.iter().filter(|l| l.contains("failed login")).collect();
    assert_eq!(failures.len(), 3, "{lines:#?}");
    assert!(failures[0].starts_with("WARN"), "{lines:#?}");
    assert!(
        failures[0].contains("remote=203.0.113.7:4321") && failures[0].contains(r#"user="mallory""#),
        "{lines:#?}"
    );
    assert!(failures[1].contains("locked_out_secs=5"), "{lines:#?}");
    let refused: Vec<_> = lines.iter().filter(|l| l.contains("refused")).collect();
    assert_eq!(
        refused.len(),
        1,
        "once per lockout, not once per request: {lines:#?}"
    );
    assert!(refused[0].contains("203.0.113.7") && refused[0].contains("mallory"));
    assert!(lines.iter().all(|l| !l.contains("Tr0ub4dor")), "{lines:#?}");
    assert!(
        failures[2].contains(r#"evil\nWARN forged"#) && !failures[2].contains('\n'),
        "a user name cannot forge log lines: {lines:#?}"
    );
}

/// Guesses answered per second on one keep-alive connection over loopback, for `secs`
/// seconds: (answers, of which 401, of which 429).
async fn guess_rate(auth: BasicAuth, from: u8, secs: f64) -> (f64, u64, u64) {
    let server = serve(auth).await;
    let mut client = Client::connect(server, loopback(from)).await;
    let start = Instant::now();
    let (mut unauthorized, mut throttled, mut n) = (0, 0, 0u64);
    while start.elapsed().as_secs_f64() < secs {
        match client.get(Some(&basic(USER, &format!("guess{n}")))).await.status {
            401 => unauthorized += 1,
            429 => throttled += 1,
            other => panic!("unexpected {other}"),
        }
        n += 1;
    }
    (n as f64 / start.elapsed().as_secs_f64(), unauthorized, throttled)
}

/// Not a test: the figures for docs/RELIABILITY.md. Before = every guess checked (the
/// `BasicAuth` of before, i.e. throttling off); after = the default throttling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: prints figures"]
async fn guesses_per_second() {
    let secs = 5.0;
    let (rate, checked, _) = guess_rate(BasicAuth::new(USER, PASSWORD).without_throttle(), 10, secs).await;
    println!("before (no throttle):   {rate:>9.0} answers/s, {checked} passwords checked in {secs} s");
    let (rate, checked, refused) = guess_rate(BasicAuth::new(USER, PASSWORD), 11, secs).await;
    println!(
        "after (default throttle): {rate:>7.0} answers/s, {checked} passwords checked in {secs} s, \
         {refused} refused with 429"
    );
    let phc = hash_password(PASSWORD).unwrap();
    let (rate, checked, _) = guess_rate(
        BasicAuth::with_password_hash(USER, &phc)
            .unwrap()
            .without_throttle(),
        12,
        secs,
    )
    .await;
    println!("argon2id hash, no throttle: {rate:>5.1} answers/s, {checked} passwords checked in {secs} s");
}
