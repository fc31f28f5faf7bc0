//! Clients nobody here wrote — FreeTDS `tsql` and `freebcp`, pytds (PyPI `python-tds`) and
//! pymssql — read `dbo.vw_OpenOrders` from `sync-app fake-erp` and must get exactly the rows
//! [`sync_app::fake_erp::order_lines`] says the view holds: every encryption mode each client
//! has, the `modern` and the `classic` schema, packet sizes 512, 4096 and 32767; and they must
//! see SQL Server's error numbers for a wrong password (18456), an unknown database (4060) and
//! a failing query (`--fail sql`, 50000).
//!
//! Each client runs as a child process through a script in `tests/clients/` (`pytds_check.py`,
//! `pymssql_check.py`, `freetds_check.sh --tool tsql|freebcp`), which prints `rows=N
//! sha256=HEX [tls=none|login|full|strict]`, `error=N errors=N,M`, or `unsupported=...`. The
//! checksum is SHA-256 over every cell in one canonical text form (documented at the top of
//! each script; [`canonical_row`] here): NULL `\N`, integers plain, decimals without trailing
//! zeros, dates `YYYY-MM-DD`, datetimes `YYYY-MM-DD HH:MM:SS.fff`, bit `0`/`1`, text with
//! trailing spaces trimmed and `\`, TAB, LF, CR escaped; cells joined by TAB, each row ended by
//! LF.
//!
//! A client missing from the machine skips its cases with a `SKIPPED:` line on stderr, unless
//! `JOBLOG_REQUIRE_TDS_CLIENTS=1` (set by `.ci/run`), which makes it a failure. What a client
//! cannot do at all (strict encryption / TDS 8.0 in pytds and in FreeTDS 1.3) is reported as
//! `N/A ... (client limitation)` and never fails. Every child process has a deadline.
//!
//! ```sh
//! cargo test -p sync-app --test independent_clients -- --nocapture   # one line per case
//! ```

use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sync_app::fake_erp::{OrderLine, order_lines};

const BIN: &str = env!("CARGO_BIN_EXE_sync-app");
/// Rows the fake serves (generation 0): a few thousand, so several packets of every size.
const ORDERS: u64 = 3000;
const SEED: u64 = 7;
/// Login and query timeout the scripts pass to their client (seconds).
const CLIENT_TIMEOUT_SECS: u64 = 10;
/// Hard deadline for one client process (the scripts' own timeouts fire first).
const CLIENT_DEADLINE: Duration = Duration::from_secs(45);
/// How long the fake gets to print its `listening` line.
const SERVER_START: Duration = Duration::from_secs(20);
const REQUIRE_VAR: &str = "JOBLOG_REQUIRE_TDS_CLIENTS";

// ---------------------------------------------------------------------------------------------
// The expected checksum, from the generator.

/// The canonical text of one row (see the scripts in `tests/clients/`), without the final LF.
fn canonical_row(l: &OrderLine) -> String {
    fn text(s: &str) -> String {
        s.trim_end_matches(' ')
            .replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
    }
    fn opt_text(s: Option<&String>) -> String {
        s.map_or_else(|| "\\N".to_string(), |s| text(s))
    }
    fn date(d: Option<chrono::NaiveDate>) -> String {
        d.map_or_else(|| "\\N".to_string(), |d| d.format("%Y-%m-%d").to_string())
    }
    fn dec(d: rust_decimal::Decimal) -> String {
        let s = d.normalize().to_string();
        if s == "-0" { "0".to_string() } else { s }
    }
    assert_eq!(
        l.modified_at.and_utc().timestamp_subsec_nanos() % 1_000_000,
        0,
        "the canonical form assumes millisecond datetimes"
    );
    [
        l.order_no.to_string(),
        l.line_no.to_string(),
        date(Some(l.order_date)),
        text(&l.customer_code),
        text(&l.customer_name),
        text(&l.item_code),
        opt_text(l.item_description.as_ref()),
        dec(l.qty_ordered),
        dec(l.qty_shipped),
        dec(l.qty_open),
        dec(l.unit_price),
        dec(l.line_amount),
        text(&l.currency),
        date(l.requested_date),
        date(l.promised_date),
        opt_text(l.warehouse.as_ref()),
        text(&l.status),
        if l.rush { "1" } else { "0" }.to_string(),
        l.modified_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
    ]
    .join("\t")
}

/// `rows=N sha256=HEX` for what the fake serves with `--orders ORDERS --seed SEED`.
fn expected() -> &'static Checksum {
    static EXPECTED: OnceLock<Checksum> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        let mut sha = Sha256::new();
        let mut rows = 0;
        for line in order_lines(SEED, 0, ORDERS) {
            sha.update(canonical_row(&line).as_bytes());
            sha.update(b"\n");
            rows += 1;
        }
        Checksum {
            rows,
            sha256: sha.hex(),
        }
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Checksum {
    rows: u64,
    sha256: String,
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rows={} sha256={}", self.rows, self.sha256)
    }
}

/// SHA-256 (FIPS 180-4), so the test needs no extra dependency.
#[derive(Debug)]
struct Sha256 {
    h: [u32; 8],
    buf: Vec<u8>,
    len: u64,
}

impl Sha256 {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ];

    fn new() -> Self {
        Sha256 {
            h: [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ],
            buf: Vec::with_capacity(64),
            len: 0,
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while !data.is_empty() {
            let take = (64 - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == 64 {
                let block: [u8; 64] = self.buf[..].try_into().expect("64 bytes");
                self.compress(&block);
                self.buf.clear();
            }
        }
    }

    fn compress(&mut self, block: &[u8; 64]) {
        let mut w = [0u32; 64];
        for (i, chunk) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = self.h;
        for (k, w) in Self::K.iter().zip(w) {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = h
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(*k)
                .wrapping_add(w);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            h = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in self.h.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *x = x.wrapping_add(y);
        }
    }

    fn hex(mut self) -> String {
        let bits = self.len.wrapping_mul(8);
        let mut pad = vec![0x80u8];
        while (self.buf.len() + pad.len()) % 64 != 56 {
            pad.push(0);
        }
        pad.extend_from_slice(&bits.to_be_bytes());
        let len = self.len;
        self.update(&pad);
        self.len = len;
        self.h.iter().map(|x| format!("{x:08x}")).collect()
    }
}

#[test]
fn sha256_and_canonical_form_are_right() {
    for (input, hex) in [
        (
            &b"abc"[..],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            &[b'a'; 55][..],
            "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318",
        ),
    ] {
        let mut s = Sha256::new();
        s.update(input);
        assert_eq!(s.hex(), hex);
    }
    let mut s = Sha256::new();
    s.update(&[b'a'; 1000]);
    assert_eq!(
        s.hex(),
        "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
    );
    // The canonical form of a hand-made row (the generator's values may change).
    let date = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).expect("a date");
    let dec = |s: &str| s.parse::<rust_decimal::Decimal>().expect("a decimal");
    let line = OrderLine {
        order_no: 100_000,
        line_no: 1,
        order_date: date(2023, 10, 16),
        customer_code: "C00273".into(),
        customer_name: "Müller \\ Söhne\t«東京»  ".into(),
        item_code: "CPL-02225".into(),
        item_description: None,
        qty_ordered: dec("10.0000"),
        qty_shipped: dec("0.0000"),
        qty_open: dec("10.0000"),
        unit_price: dec("0.3675"),
        line_amount: dec("3.70"),
        currency: "EUR".into(),
        requested_date: Some(date(2023, 11, 18)),
        promised_date: None,
        warehouse: Some("MAIN".into()),
        status: "Open".into(),
        rush: true,
        modified_at: date(2024, 6, 25)
            .and_hms_milli_opt(8, 28, 19, 960)
            .expect("a time"),
    };
    assert_eq!(
        canonical_row(&line),
        "100000\t1\t2023-10-16\tC00273\tMüller \\\\ Söhne\\t«東京»\tCPL-02225\t\\N\t10\t0\t10\t0.3675\t\
         3.7\tEUR\t2023-11-18\t\\N\tMAIN\tOpen\t1\t2024-06-25 08:28:19.960"
    );
}

// ---------------------------------------------------------------------------------------------
// Temporary directories and bounded child processes.

#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "independent-clients-{}-{}-{tag}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` with stdout and stderr in files, killing it at `deadline`. `None`: timed out.
fn run_bounded(cmd: &mut Command, deadline: Duration) -> (Option<ExitStatus>, String, String) {
    let dir = TempDir::new("run");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let spawned = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return (None, String::new(), format!("cannot start {cmd:?}: {e}")),
    };
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    (status, read(&out_path), read(&err_path))
}

// ---------------------------------------------------------------------------------------------
// The fake ERP as a child process.

#[derive(Debug)]
struct FakeErp {
    child: Child,
    port: u16,
    /// The certificate written by `--cert-out` (the clients' CA file).
    ca: Option<PathBuf>,
    args: String,
    _dir: TempDir,
}

impl FakeErp {
    /// `sync-app fake-erp --listen 127.0.0.1:0 --orders ORDERS --seed SEED [extra]
    /// [--cert-out DIR/ca.pem]`; `Err` says why it did not come up.
    fn start(extra: &[&str], cert: bool) -> Result<FakeErp, String> {
        let dir = TempDir::new("erp");
        let mut args: Vec<String> = [
            "fake-erp",
            "--listen",
            "127.0.0.1:0",
            "--orders",
            &ORDERS.to_string(),
            "--seed",
            &SEED.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let ca = cert.then(|| dir.path().join("ca.pem"));
        if let Some(ca) = &ca {
            args.push("--cert-out".into());
            args.push(ca.display().to_string());
        }
        let shown = args[1..].join(" ");
        let err_path = dir.path().join("stderr");
        let mut child = Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&err_path).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot start {BIN}: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining: a closed pipe would kill the server at its next line.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + SERVER_START;
        let port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.trim().strip_prefix("fake ERP listening on ") {
                        match addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()) {
                            Some(port) => break port,
                            None => return Err(format!("unexpected line {line:?}")),
                        }
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
                    let why = match e {
                        mpsc::RecvTimeoutError::Timeout => "printed no `listening` line in time",
                        mpsc::RecvTimeoutError::Disconnected => "exited",
                    };
                    return Err(format!(
                        "`sync-app {shown}` {why}: {}",
                        stderr.trim().lines().take(5).collect::<Vec<_>>().join(" | ")
                    ));
                }
            }
        };
        let erp = FakeErp {
            child,
            port,
            ca,
            args: shown,
            _dir: dir,
        };
        if let Some(ca) = &erp.ca {
            let pem = fs::read_to_string(ca).unwrap_or_default();
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!(
                    "`sync-app {}` wrote no PEM certificate to --cert-out",
                    erp.args
                ));
            }
        }
        Ok(erp)
    }
}

impl Drop for FakeErp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The clients.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Pytds,
    Pymssql,
    Tsql,
    Freebcp,
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Client::Pytds => "pytds",
            Client::Pymssql => "pymssql",
            Client::Tsql => "tsql",
            Client::Freebcp => "freebcp",
        })
    }
}

const ALL_CLIENTS: [Client; 4] = [Client::Pytds, Client::Pymssql, Client::Tsql, Client::Freebcp];

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    let (status, _, _) = run_bounded(Command::new(program).args(args), Duration::from_secs(30));
    status.is_some_and(|s| s.success())
}

impl Client {
    /// Why this client cannot run here, if it cannot.
    fn missing(self) -> Option<String> {
        static FOUND: OnceLock<[Option<String>; 4]> = OnceLock::new();
        let found = FOUND.get_or_init(|| {
            let python = |modules: &str, install: &str| {
                (!succeeds("python3", &["-c", &format!("import {modules}")]))
                    .then(|| format!("python3 cannot import {modules} (pip install {install})"))
            };
            let freetds = |tool: &str| {
                if !succeeds("sh", &["-c", &format!("command -v {tool}")]) {
                    return Some(format!("`{tool}` is not installed (apt-get install freetds-bin)"));
                }
                if !succeeds("python3", &["-c", ""]) {
                    return Some("python3 (used to read the output) is missing".into());
                }
                let locales = fs::read_to_string("/etc/freetds/locales.conf").unwrap_or_default();
                let iso = locales.lines().any(|l| {
                    let l: String = l.split_whitespace().collect::<Vec<_>>().join(" ");
                    l == "date format = %Y-%m-%d %H:%M:%S.%z"
                });
                (!iso).then(|| {
                    "FreeTDS prints dates without seconds: /etc/freetds/locales.conf needs \
                     `[default]` `date format = %Y-%m-%d %H:%M:%S.%z` (as .ci/run writes it)"
                        .to_string()
                })
            };
            [
                python("pytds, OpenSSL", "python-tds pyOpenSSL"),
                python("pymssql", "pymssql"),
                freetds("tsql"),
                freetds("freebcp"),
            ]
        });
        let index = ALL_CLIENTS.iter().position(|c| *c == self).expect("a client");
        found[index].clone()
    }

    /// Whether this client's cases run: a missing client is skipped loudly, or fails the test
    /// when JOBLOG_REQUIRE_TDS_CLIENTS=1.
    fn usable(self) -> bool {
        match self.missing() {
            None => true,
            Some(why) => {
                if std::env::var(REQUIRE_VAR).as_deref() == Ok("1") {
                    panic!("{self} is required ({REQUIRE_VAR}=1) but unusable: {why}");
                }
                eprintln!("SKIPPED: {self}: {why} (set {REQUIRE_VAR}=1 to make this a failure)");
                false
            }
        }
    }

    fn command(self, erp: &FakeErp, o: &Opts) -> Command {
        let dir = scripts();
        let mut cmd = match self {
            Client::Pytds | Client::Pymssql => {
                let mut c = Command::new("python3");
                c.arg(dir.join(format!("{self}_check.py")));
                c
            }
            Client::Tsql | Client::Freebcp => {
                let mut c = Command::new("bash");
                c.arg(dir.join("freetds_check.sh"))
                    .args(["--tool", &self.to_string()]);
                c
            }
        };
        cmd.args(["--host", "localhost", "--port", &erp.port.to_string()])
            .args([
                "--user",
                o.user,
                "--password",
                o.password,
                "--database",
                o.database,
            ])
            .args(["--encryption", o.encryption])
            .args(["--packet-size", &o.packet_size.to_string()])
            .args(["--timeout", &CLIENT_TIMEOUT_SECS.to_string()]);
        if let Some(ca) = &erp.ca {
            cmd.arg("--cafile").arg(ca);
        }
        if o.autocommit && matches!(self, Client::Pytds | Client::Pymssql) {
            cmd.arg("--autocommit");
        }
        // pytds reports the negotiated encryption always; the FreeTDS-based scripts only from
        // a TDSDUMP log (~0.5 s and 5 MB per 3000 rows), which they also need to list every
        // server message of a failed login. Only `login` can silently end up in plaintext
        // (FreeTDS `request` accepts a server without encryption); `full` and `strict` fail then.
        if self != Client::Pytds && (o.trace || o.encryption == "login") {
            cmd.arg("--trace-messages");
        }
        cmd
    }

    fn run(self, erp: &FakeErp, o: &Opts) -> Outcome {
        let (status, stdout, stderr) = run_bounded(&mut self.command(erp, o), CLIENT_DEADLINE);
        let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        let fields = |line: &str| -> Vec<(String, String)> {
            line.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let get =
            |f: &[(String, String)], k: &str| f.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let stderr_tail = || {
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            lines[lines.len().saturating_sub(6)..].join(" | ")
        };
        match status.and_then(|s| s.code()) {
            None => Outcome::Failed(format!(
                "no result within {CLIENT_DEADLINE:?} (killed): {}",
                stderr_tail()
            )),
            Some(0) if line.starts_with("rows=") => {
                let f = fields(line);
                Outcome::Rows {
                    checksum: Checksum {
                        rows: get(&f, "rows").and_then(|r| r.parse().ok()).unwrap_or(u64::MAX),
                        sha256: get(&f, "sha256").unwrap_or_default(),
                    },
                    tls: get(&f, "tls"),
                }
            }
            Some(2) if line.starts_with("error=") => {
                let f = fields(line);
                let errors = get(&f, "errors")
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|n| n.parse().ok())
                    .collect();
                Outcome::Error(errors)
            }
            Some(4) if line.starts_with("unsupported=") => {
                Outcome::Unsupported(line.trim_start_matches("unsupported=").to_string())
            }
            Some(code) => {
                let crashed = if stderr.contains("Traceback (most recent call last)") {
                    "crashed (a Python traceback), "
                } else {
                    ""
                };
                Outcome::Failed(format!("{crashed}exit status {code}: {line} {}", stderr_tail()))
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Opts {
    user: &'static str,
    password: &'static str,
    database: &'static str,
    encryption: &'static str,
    packet_size: u32,
    trace: bool,
    /// pytds / pymssql: autocommit on instead of the library's default (off: the client opens
    /// a transaction right after the login).
    autocommit: bool,
}

impl Opts {
    fn mode(encryption: &'static str) -> Opts {
        Opts {
            user: "sync",
            password: "sync",
            database: "erp",
            encryption,
            packet_size: 4096,
            trace: false,
            autocommit: false,
        }
    }
}

#[derive(Debug)]
enum Outcome {
    Rows { checksum: Checksum, tls: Option<String> },
    Error(Vec<u32>),
    Unsupported(String),
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Rows { checksum, tls } => {
                write!(f, "{checksum}")?;
                if let Some(tls) = tls {
                    write!(f, " tls={tls}")?;
                }
                Ok(())
            }
            Outcome::Error(numbers) => write!(f, "server error(s) {numbers:?}"),
            Outcome::Unsupported(why) => write!(f, "unsupported: {why}"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cases and their report.

/// What a case must produce.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The expected rows; with `Some(tls)`, that negotiated encryption where the client tells.
    Rows(Option<&'static str>),
    /// A server error with this number among those the client saw.
    Error(u32),
    /// No rows: the client must give up (e.g. no encryption against `required`).
    Refused,
}

#[derive(Debug, Default)]
struct Report {
    failures: Vec<String>,
}

impl Report {
    fn case(&mut self, client: Client, erp: &Result<FakeErp, String>, label: &str, o: Opts, expect: Expect) {
        let label = format!("{client} {label}");
        let erp = match erp {
            Ok(erp) => erp,
            Err(why) => {
                eprintln!("FAIL    {label}: server did not start: {why}");
                self.failures
                    .push(format!("{label}: server did not start: {why}"));
                return;
            }
        };
        let started = Instant::now();
        let outcome = client.run(erp, &o);
        let took = started.elapsed().as_secs_f32();
        let verdict: Result<(), String> = match (&outcome, expect) {
            (Outcome::Unsupported(why), _) => {
                // Not a skip: no installation can fix it, so JOBLOG_REQUIRE_TDS_CLIENTS ignores it.
                eprintln!("N/A     {label}: {why} (client limitation)");
                return;
            }
            (Outcome::Rows { checksum, tls }, Expect::Rows(want_tls)) => {
                if checksum != expected() {
                    Err(format!("got {checksum}, expected {}", expected()))
                } else {
                    match (want_tls, tls) {
                        (Some(want), Some(got)) if want != got => {
                            Err(format!("right rows but encryption {got}, expected {want}"))
                        }
                        (Some(want), None) => Err(format!(
                            "right rows, but the client did not report its encryption (expected {want})"
                        )),
                        _ => Ok(()),
                    }
                }
            }
            (Outcome::Error(numbers), Expect::Error(want)) if numbers.contains(&want) => Ok(()),
            (Outcome::Error(_), Expect::Refused) => Ok(()),
            // The client gave up on its own: not killed for hanging, not a script crash.
            (Outcome::Failed(why), Expect::Refused)
                if !why.starts_with("no result within") && !why.starts_with("crashed") =>
            {
                Ok(())
            }
            (_, Expect::Rows(_)) => Err(format!("expected {}, {outcome}", expected())),
            (_, Expect::Error(want)) => Err(format!("expected server error {want}, {outcome}")),
            (_, Expect::Refused) => Err(format!("expected the client to give up, {outcome}")),
        };
        match verdict {
            Ok(()) => eprintln!("ok      {label} ({took:.1} s): {outcome}"),
            Err(why) => {
                eprintln!("FAIL    {label} ({took:.1} s): {why}");
                self.failures
                    .push(format!("{label} [server: {}]: {why}", erp.args));
            }
        }
    }

    fn finish(self, what: &str) {
        assert!(
            self.failures.is_empty(),
            "{what}: {} case(s) failed:\n  {}",
            self.failures.len(),
            self.failures.join("\n  ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Every encryption mode of one client against the modern schema:
/// server `optional` (the default): none, login, full; server `required`: login (the server
/// insists: everything encrypted), full, and none (refused); server `strict`: strict. pytds and
/// pymssql run with their default (a transaction opened after login) and, once, autocommit.
fn encryption_modes(client: Client) {
    if !client.usable() {
        return;
    }
    let plain = FakeErp::start(&[], false);
    let optional = FakeErp::start(&[], true);
    let required = FakeErp::start(&["--encryption", "required"], true);
    let strict = FakeErp::start(&["--encryption", "strict"], true);
    let mut r = Report::default();
    // Every client reports the encryption it negotiated (FreeTDS's from its trace).
    let m = |encryption| Opts {
        trace: true,
        ..Opts::mode(encryption)
    };
    r.case(
        client,
        &plain,
        "server optional, no certificate given, client none",
        m("none"),
        Expect::Rows(Some("none")),
    );
    if matches!(client, Client::Pytds | Client::Pymssql) {
        let o = Opts {
            autocommit: true,
            ..m("none")
        };
        r.case(
            client,
            &plain,
            "server optional, no certificate given, client none, autocommit",
            o,
            Expect::Rows(Some("none")),
        );
    }
    r.case(
        client,
        &optional,
        "server optional, client none",
        m("none"),
        Expect::Rows(Some("none")),
    );
    r.case(
        client,
        &optional,
        "server optional, client login",
        m("login"),
        Expect::Rows(Some("login")),
    );
    r.case(
        client,
        &optional,
        "server optional, client full",
        m("full"),
        Expect::Rows(Some("full")),
    );
    r.case(
        client,
        &required,
        "server required, client login",
        m("login"),
        Expect::Rows(Some("full")),
    );
    r.case(
        client,
        &required,
        "server required, client full",
        m("full"),
        Expect::Rows(Some("full")),
    );
    r.case(
        client,
        &required,
        "server required, client none",
        m("none"),
        Expect::Refused,
    );
    r.case(
        client,
        &strict,
        "server strict, client strict",
        m("strict"),
        Expect::Rows(Some("strict")),
    );
    r.finish(&format!("{client}, modern schema"));
}

#[test]
fn pytds_reads_the_view_in_every_encryption_mode() {
    encryption_modes(Client::Pytds);
}

#[test]
fn pymssql_reads_the_view_in_every_encryption_mode() {
    encryption_modes(Client::Pymssql);
}

#[test]
fn tsql_reads_the_view_in_every_encryption_mode() {
    encryption_modes(Client::Tsql);
}

#[test]
fn freebcp_reads_the_view_in_every_encryption_mode() {
    encryption_modes(Client::Freebcp);
}

/// `--schema classic`: other SQL types (MONEY, DATETIME, char/nchar, varchar, smallint, …), the
/// same values, so the same checksum; without and with TLS.
#[test]
fn classic_schema_gives_every_client_the_same_values() {
    let clients: Vec<Client> = ALL_CLIENTS.into_iter().filter(|c| c.usable()).collect();
    if clients.is_empty() {
        return;
    }
    let classic = FakeErp::start(&["--schema", "classic"], true);
    let mut r = Report::default();
    for client in clients {
        r.case(
            client,
            &classic,
            "classic schema, client none",
            Opts::mode("none"),
            Expect::Rows(None),
        );
        r.case(
            client,
            &classic,
            "classic schema, client login",
            Opts::mode("login"),
            Expect::Rows(None),
        );
    }
    r.finish("classic schema");
}

/// A wrong password gets 18456, an unknown database 4060 (then 18456), and `--fail sql` makes
/// the view query fail with 50000 — as each client reports them.
#[test]
fn every_client_sees_the_server_errors() {
    let clients: Vec<Client> = ALL_CLIENTS.into_iter().filter(|c| c.usable()).collect();
    if clients.is_empty() {
        return;
    }
    let erp = FakeErp::start(&[], false);
    let failing = FakeErp::start(&["--fail", "sql"], false);
    let mut r = Report::default();
    for client in clients {
        let o = Opts {
            trace: true,
            ..Opts::mode("none")
        };
        r.case(
            client,
            &erp,
            "wrong password",
            Opts {
                password: "not-the-password",
                ..o
            },
            Expect::Error(18456),
        );
        r.case(
            client,
            &erp,
            "unknown user",
            Opts { user: "nobody", ..o },
            Expect::Error(18456),
        );
        r.case(
            client,
            &erp,
            "unknown database",
            Opts {
                database: "no_such_db",
                ..o
            },
            Expect::Error(4060),
        );
        r.case(client, &failing, "--fail sql", o, Expect::Error(50_000));
    }
    r.finish("server errors");
}

/// Packet sizes 512 (the minimum), 4096 (the default) and 32767 (the maximum): every client in
/// plaintext, pytds also with the whole session in TLS. FreeTDS never asks for less than 4096,
/// so its 512 case runs with 4096.
#[test]
fn packet_sizes_512_4096_32767() {
    let clients: Vec<Client> = ALL_CLIENTS.into_iter().filter(|c| c.usable()).collect();
    if clients.is_empty() {
        return;
    }
    let plain = FakeErp::start(&[], false);
    let tls = FakeErp::start(&[], true);
    let mut r = Report::default();
    for client in clients {
        for size in [512, 4096, 32767] {
            let o = Opts {
                packet_size: size,
                ..Opts::mode("none")
            };
            r.case(
                client,
                &plain,
                &format!("packet size {size}, client none"),
                o,
                Expect::Rows(None),
            );
            if client == Client::Pytds {
                let o = Opts {
                    packet_size: size,
                    ..Opts::mode("full")
                };
                r.case(
                    client,
                    &tls,
                    &format!("packet size {size}, client full"),
                    o,
                    Expect::Rows(Some("full")),
                );
            }
        }
    }
    r.finish("packet sizes");
}
