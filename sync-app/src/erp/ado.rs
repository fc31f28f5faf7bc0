//! Our ADO.NET (Microsoft.Data.SqlClient) connection-string parser.
//!
//! Syntax as `SqlConnection` reads it: `key=value` pairs separated by `;`; keywords are
//! case-insensitive and trimmed; a value is trimmed, or quoted with `'…'` / `"…"` (a doubled
//! quote inside stands for one, and `;` and `=` lose their meaning); `==` in a keyword is a
//! literal `=`; braces are **not** special (`{…}` quoting is ODBC's, not ADO.NET's); empty
//! pairs (`;;`) are skipped; when a keyword (or one of its synonyms) appears twice, the last
//! one wins.
//!
//! Every keyword SqlClient documents is either honoured, accepted with a documented "no
//! effect" (connection-pool settings: the sync opens one connection per run), or refused
//! with an error that names it and says why; a keyword SqlClient does not know is refused
//! too. Nothing is ignored in silence. [`KEYWORDS`] is the table the code follows:
//!
//! | keyword (synonyms) | sync-app |
//! |---|---|
//! | Data Source (Server, Address, Addr, Network Address) | honoured: `[tcp:]host[\\instance][,port]`, `.` / `(local)` = localhost, `[v6]`; an instance without a port is resolved through SQL Server Browser (UDP 1434); `np:` / `lpc:` / `admin:` / `(localdb)` refused |
//! | Initial Catalog (Database) | honoured |
//! | User ID (UID, User), Password (PWD) | honoured (SQL login); `DOMAIN\\user` refused (Windows login, see below) |
//! | Authentication | `SqlPassword`, `ActiveDirectoryAccessToken` (token from `MSSQL_ACCESS_TOKEN` / `MSSQL_ACCESS_TOKEN_FILE`, sent as FEDAUTH) honoured; every other value refused by name |
//! | Integrated Security (Trusted_Connection) | `false`/`no` accepted; `true`/`yes`/`sspi` without a user: the current Kerberos ticket in a build with the `kerberos` feature, refused naming the feature otherwise; with a user and password (NTLM) refused: tiberius's `sspi-rs` cannot be built in this workspace |
//! | Encrypt | `true`/`yes`/`mandatory` (default): TLS for everything, certificate checked; `false`/`no`/`optional`: TLS for the login only, certificate not checked (as SqlClient) unless the server forces encryption, `Server Certificate` or `HostNameInCertificate` is given, plain text against a server without TLS; `strict`: TDS 8.0; `DANGER_PLAINTEXT` (tiberius's extension): no TLS at all |
//! | TrustServerCertificate, HostNameInCertificate, Server Certificate | honoured (`Server Certificate=PATH` trusts that PEM/DER certificate as a root — a self-signed certificate, or the CA that issued it; the host name is still checked). Unlike SqlClient, TrustServerCertificate also applies with `Encrypt=strict` |
//! | Connect Timeout (Connection Timeout, Timeout) | honoured: browser, TCP, TLS and login together; 0 = no limit |
//! | Command Timeout | honoured: total time waiting for the server during the query (ADO.NET's count), also the longest single stall; 0 = no limit |
//! | Packet Size | honoured (512–32768; 32768 is sent as 32767) |
//! | Application Name (App) | honoured (default `sync-app`) |
//! | Application Intent (ApplicationIntent) | honoured (ReadOnly; one redirect followed) |
//! | Multi Subnet Failover (MultiSubnetFailover) | honoured: every address of the host at once, first to answer kept |
//! | Workstation ID (WSID) | honoured |
//! | IP Address Preference (IPAddressPreference) | honoured (IPv4First, IPv6First, UsePlatformDefault) |
//! | Network Library (Network, Net) | `dbmssocn` (TCP) accepted; anything else refused |
//! | Pooling, Max Pool Size, Min Pool Size, Load Balance Timeout (Connection Lifetime), Pool Blocking Period (PoolBlockingPeriod), Connection Reset | accepted, **no effect**: no pool, one connection per sync (values still checked) |
//! | Persist Security Info | accepted, **no effect**: the connection string is never handed back or printed |
//! | Enlist, Transaction Binding | accepted, **no effect**: no System.Transactions |
//! | Asynchronous Processing (Async) | accepted, **no effect**: everything is asynchronous |
//! | Connect Retry Count, Connect Retry Interval | accepted, **no effect**: a connection lives for one sync; the next run reconnects |
//! | Transparent Network IP Resolution | accepted, **no effect**: every resolved address is tried anyway |
//! | Type System Version | `Latest` / `SQL Server 2012` accepted; older refused |
//! | Multiple Active Result Sets, User Instance, Replication, Context Connection | `false` accepted; `true` refused (not in tiberius / not over TCP) |
//! | Column Encryption Setting | `Disabled` accepted; `Enabled` refused (no Always Encrypted) |
//! | Enclave Attestation Url, Attestation Protocol | refused unless empty (no Always Encrypted) |
//! | Failover Partner, Failover Partner SPN, Server SPN, AttachDBFilename (Extended Properties, Initial File Name) | refused unless empty |
//! | Current Language (Language) | refused: tiberius sends no login language |
//! | anything else (`Provider`, `Driver`, typos) | refused by name |

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Default connect timeout (ADO.NET's `Connect Timeout` default).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Default command timeout (ADO.NET's `Command Timeout` default).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The application name sent when the connection string names none.
pub const DEFAULT_APPLICATION_NAME: &str = "sync-app";

/// Timeouts read from the connection string; `None` is "no limit" (a value of 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `Connect Timeout`: SQL Browser lookup, TCP connect, TLS and login, all together.
    pub connect: Option<Duration>,
    /// `Command Timeout`: the time spent waiting for the server during one query, summed
    /// over the whole result (as ADO.NET counts it); also the longest single stall.
    pub command: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Some(DEFAULT_CONNECT_TIMEOUT),
            command: Some(DEFAULT_COMMAND_TIMEOUT),
        }
    }
}

/// A connection string that cannot be used, naming the keyword at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoError {
    /// The keyword as written in the connection string (empty for a syntax error with none).
    pub keyword: String,
    /// What is wrong and, where there is one, what to do instead.
    pub message: String,
}

impl fmt::Display for AdoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.keyword.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.keyword, self.message)
        }
    }
}

impl std::error::Error for AdoError {}

fn err(keyword: &str, message: impl Into<String>) -> AdoError {
    AdoError {
        keyword: keyword.to_string(),
        message: message.into(),
    }
}

/// Splits a connection string into `(keyword as written, value)` pairs, ADO.NET's way.
/// Keywords keep their spelling (trimmed); use [`canonical`] to look them up.
pub fn tokenize(ado: &str) -> Result<Vec<(String, String)>, AdoError> {
    let chars: Vec<char> = ado.chars().collect();
    let mut i = 0;
    let mut out: Vec<(String, String)> = Vec::new();
    loop {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ';') {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        // The keyword: up to a single `=` (`==` is an escaped `=`).
        let mut key = String::new();
        let mut found_eq = false;
        while i < chars.len() {
            match chars[i] {
                '=' if chars.get(i + 1) == Some(&'=') => {
                    key.push('=');
                    i += 2;
                }
                '=' => {
                    found_eq = true;
                    i += 1;
                    break;
                }
                ';' => break,
                c => {
                    key.push(c);
                    i += 1;
                }
            }
        }
        let key = key.trim().to_string();
        if !found_eq {
            // The text itself is not shown: after a `;` inside an unquoted password it is the
            // password's tail.
            let position = chars[..i].len() - key.chars().count();
            if canonical(&key).is_some() {
                // A keyword without a value (`…;Password`): naming it shows nothing secret.
                return Err(err(
                    &key,
                    "has no `=` and value (ADO.NET connection strings are `keyword=value;…`)",
                ));
            }
            return Err(match out.last() {
                Some((previous, _)) => err(
                    previous,
                    format!(
                        "the text after its value (at character {position}) has no `=`: a `;` inside a value \
                         needs the value quoted ('…' or \"…\"; ADO.NET connection strings are `keyword=value;…`)"
                    ),
                ),
                None => err(
                    "",
                    format!(
                        "the connection string starts with text that has no `=` (at character {position}); ADO.NET \
                         connection strings are `keyword=value;…`"
                    ),
                ),
            });
        }
        if key.is_empty() {
            return Err(err(
                "",
                "a value without a keyword (`=…`) in the connection string",
            ));
        }
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let value = match chars.get(i) {
            Some(&q @ ('\'' | '"')) => {
                i += 1;
                let mut value = String::new();
                let mut closed = false;
                while i < chars.len() {
                    if chars[i] == q {
                        if chars.get(i + 1) == Some(&q) {
                            value.push(q);
                            i += 2;
                            continue;
                        }
                        closed = true;
                        i += 1;
                        break;
                    }
                    value.push(chars[i]);
                    i += 1;
                }
                if !closed {
                    return Err(err(&key, format!("the value's opening {q} is never closed")));
                }
                while i < chars.len() && chars[i].is_whitespace() {
                    i += 1;
                }
                if i < chars.len() && chars[i] != ';' {
                    return Err(err(
                        &key,
                        format!("unexpected text after the closing {q} (a quoted value ends the pair)"),
                    ));
                }
                value
            }
            _ => {
                let start = i;
                while i < chars.len() && chars[i] != ';' {
                    i += 1;
                }
                chars[start..i].iter().collect::<String>().trim().to_string()
            }
        };
        out.push((key, value));
    }
    Ok(out)
}

/// How sync-app treats a keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// Read and acted upon.
    Honoured,
    /// Accepted, but it changes nothing (the reason says why).
    NoEffect(&'static str),
    /// Refused whatever its value (the reason says why).
    Refused(&'static str),
    /// Refused unless its value asks for nothing (SqlClient's default, e.g. `false`).
    RefusedUnlessDefault(&'static str),
}

/// One keyword of the table: its canonical name, its synonyms (lower case) and treatment.
#[derive(Debug, Clone, Copy)]
pub struct Keyword {
    /// SqlClient's name for it.
    pub name: &'static str,
    /// Every spelling accepted, lower case, the canonical one first.
    pub spellings: &'static [&'static str],
    /// What sync-app does with it.
    pub treatment: Treatment,
}

const POOL: &str =
    "a connection-pool setting; sync-app opens one connection per sync and closes it, so there is no pool";
const WINDOWS_AUTH: &str = "Windows authentication with a user and password (NTLM) is not available: tiberius's \
     `sspi-rs` feature cannot be built in this workspace (sspi 0.18 pins pre-release crypto crates that conflict \
     with sqlx's in one Cargo.lock); use a SQL login (User ID / Password), Authentication=ActiveDirectoryAccessToken \
     with MSSQL_ACCESS_TOKEN, or Integrated Security=true without a user (the current Kerberos ticket, in a \
     sync-app built with the `kerberos` feature)";
/// Why `Integrated Security=true` is refused by a build without the `kerberos` feature.
#[cfg(not(feature = "kerberos"))]
const KERBEROS_FEATURE: &str = "logging in with the current Kerberos ticket needs sync-app built with the \
     `kerberos` cargo feature (`cargo build --release -p sync-app --features kerberos`; it needs the system's Kerberos \
     library: Debian packages libkrb5-dev and libclang-dev); this build has no Kerberos support";

/// Every keyword Microsoft.Data.SqlClient documents, and what sync-app does with it.
pub const KEYWORDS: &[Keyword] = &[
    kw(
        "Data Source",
        &["data source", "server", "address", "addr", "network address"],
        Treatment::Honoured,
    ),
    kw(
        "Initial Catalog",
        &["initial catalog", "database"],
        Treatment::Honoured,
    ),
    kw("User ID", &["user id", "uid", "user"], Treatment::Honoured),
    kw("Password", &["password", "pwd"], Treatment::Honoured),
    kw(
        "Integrated Security",
        &["integrated security", "trusted_connection"],
        Treatment::Honoured,
    ),
    kw("Authentication", &["authentication"], Treatment::Honoured),
    kw("Encrypt", &["encrypt"], Treatment::Honoured),
    kw(
        "Trust Server Certificate",
        &["trust server certificate", "trustservercertificate"],
        Treatment::Honoured,
    ),
    kw(
        "Host Name In Certificate",
        &["host name in certificate", "hostnameincertificate"],
        Treatment::Honoured,
    ),
    kw(
        "Server Certificate",
        &["server certificate", "servercertificate"],
        Treatment::Honoured,
    ),
    kw(
        "Connect Timeout",
        &["connect timeout", "connection timeout", "timeout"],
        Treatment::Honoured,
    ),
    kw("Command Timeout", &["command timeout"], Treatment::Honoured),
    kw("Packet Size", &["packet size"], Treatment::Honoured),
    kw(
        "Application Name",
        &["application name", "app"],
        Treatment::Honoured,
    ),
    kw(
        "Application Intent",
        &["application intent", "applicationintent"],
        Treatment::Honoured,
    ),
    kw(
        "Multi Subnet Failover",
        &["multi subnet failover", "multisubnetfailover"],
        Treatment::Honoured,
    ),
    kw("Workstation ID", &["workstation id", "wsid"], Treatment::Honoured),
    kw(
        "IP Address Preference",
        &["ip address preference", "ipaddresspreference"],
        Treatment::Honoured,
    ),
    kw(
        "Network Library",
        &["network library", "network", "net"],
        Treatment::Honoured,
    ),
    kw(
        "Current Language",
        &["current language", "language"],
        Treatment::Refused(
            "tiberius sends no login language, so the session would silently keep the login's default; \
         remove it (the sync reads no language-dependent text)",
        ),
    ),
    kw(
        "Persist Security Info",
        &["persist security info", "persistsecurityinfo"],
        Treatment::NoEffect("sync-app never hands the connection string back, and never prints the password"),
    ),
    kw("Pooling", &["pooling"], Treatment::NoEffect(POOL)),
    kw("Max Pool Size", &["max pool size"], Treatment::NoEffect(POOL)),
    kw("Min Pool Size", &["min pool size"], Treatment::NoEffect(POOL)),
    kw(
        "Load Balance Timeout",
        &["load balance timeout", "connection lifetime"],
        Treatment::NoEffect(POOL),
    ),
    kw(
        "Pool Blocking Period",
        &["pool blocking period", "poolblockingperiod"],
        Treatment::NoEffect(POOL),
    ),
    kw(
        "Connection Reset",
        &["connection reset"],
        Treatment::NoEffect(POOL),
    ),
    kw(
        "Enlist",
        &["enlist"],
        Treatment::NoEffect("there are no System.Transactions to enlist in; the sync reads with one query"),
    ),
    kw(
        "Transaction Binding",
        &["transaction binding"],
        Treatment::NoEffect("only matters with Enlist and System.Transactions, which do not exist here"),
    ),
    kw(
        "Asynchronous Processing",
        &["asynchronous processing", "async"],
        Treatment::NoEffect("every call is asynchronous already (tokio)"),
    ),
    kw(
        "Connect Retry Count",
        &["connect retry count", "connectretrycount"],
        Treatment::NoEffect(
            "idle-connection resiliency: a connection lives for one sync; a broken one fails that run and the next \
         scheduled run connects again",
        ),
    ),
    kw(
        "Connect Retry Interval",
        &["connect retry interval", "connectretryinterval"],
        Treatment::NoEffect(
            "idle-connection resiliency: a connection lives for one sync; a broken one fails that run and the next \
         scheduled run connects again",
        ),
    ),
    kw(
        "Transparent Network IP Resolution",
        &[
            "transparent network ip resolution",
            "transparentnetworkipresolution",
        ],
        Treatment::NoEffect(
            "sync-app tries every resolved address in turn (in parallel with MultiSubnetFailover=True) anyway",
        ),
    ),
    kw(
        "Type System Version",
        &["type system version"],
        Treatment::RefusedUnlessDefault(
            "tiberius always exchanges today's types; only `Latest` or `SQL Server 2012` (the same thing) can be honoured",
        ),
    ),
    kw(
        "Multiple Active Result Sets",
        &["multiple active result sets", "multipleactiveresultsets"],
        Treatment::RefusedUnlessDefault(
            "tiberius has no MARS; the sync runs one query at a time and needs none",
        ),
    ),
    kw(
        "Failover Partner",
        &["failover partner"],
        Treatment::RefusedUnlessDefault(
            "database-mirroring failover is not implemented by tiberius; connect to the principal, or to an \
         availability-group listener with MultiSubnetFailover=True",
        ),
    ),
    kw(
        "Failover Partner SPN",
        &["failover partner spn", "failoverpartnerspn"],
        Treatment::RefusedUnlessDefault(
            "an SPN is only used by Windows authentication, and there is no Failover Partner support",
        ),
    ),
    kw(
        "Server SPN",
        &["server spn", "serverspn"],
        Treatment::RefusedUnlessDefault(
            "an SPN is only used by Windows authentication (Kerberos), which is not available",
        ),
    ),
    kw(
        "AttachDBFilename",
        &["attachdbfilename", "extended properties", "initial file name"],
        Treatment::RefusedUnlessDefault(
            "attaching a database file needs a local SQL Server Express user instance; give Initial Catalog instead",
        ),
    ),
    kw(
        "User Instance",
        &["user instance"],
        Treatment::RefusedUnlessDefault(
            "user instances are a local SQL Server Express feature, not available over TCP",
        ),
    ),
    kw(
        "Replication",
        &["replication"],
        Treatment::RefusedUnlessDefault("tiberius cannot mark the login as a replication login"),
    ),
    kw(
        "Context Connection",
        &["context connection"],
        Treatment::RefusedUnlessDefault("only exists inside SQLCLR code running in SQL Server"),
    ),
    kw(
        "Column Encryption Setting",
        &["column encryption setting"],
        Treatment::RefusedUnlessDefault(
            "Always Encrypted is not implemented by tiberius; read through a view that does not return encrypted columns",
        ),
    ),
    kw(
        "Enclave Attestation Url",
        &["enclave attestation url"],
        Treatment::RefusedUnlessDefault(
            "Always Encrypted with secure enclaves is not implemented by tiberius",
        ),
    ),
    kw(
        "Attestation Protocol",
        &["attestation protocol"],
        Treatment::RefusedUnlessDefault(
            "Always Encrypted with secure enclaves is not implemented by tiberius",
        ),
    ),
];

const fn kw(name: &'static str, spellings: &'static [&'static str], treatment: Treatment) -> Keyword {
    Keyword {
        name,
        spellings,
        treatment,
    }
}

/// The table entry for a keyword as written (any case, any synonym), if SqlClient knows it.
pub fn canonical(keyword: &str) -> Option<&'static Keyword> {
    let lower = keyword.trim().to_lowercase();
    KEYWORDS.iter().find(|k| k.spellings.contains(&lower.as_str()))
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    /// Host name or IP address (`.` and `(local)` become `localhost`; IPv6 without brackets).
    pub host: String,
    /// The port given after `,`, if any.
    pub port: Option<u16>,
    /// The named instance after `\`, if any (resolved through SQL Server Browser unless a
    /// port is given).
    pub instance: Option<String>,
}

impl ServerAddress {
    /// Parses `[tcp:]host[\instance][,port]`.
    pub fn parse(keyword: &str, value: &str) -> Result<Self, AdoError> {
        let mut rest = value.trim();
        if let Some((proto, after)) = rest.split_once(':') {
            match proto.trim().to_ascii_lowercase().as_str() {
                "tcp" => rest = after.trim(),
                "np" => {
                    return Err(err(
                        keyword,
                        "named pipes (`np:`) are not supported; sync-app connects over TCP (`tcp:host,port`)",
                    ));
                }
                "lpc" => {
                    return Err(err(
                        keyword,
                        "shared memory (`lpc:`) is not supported; sync-app connects over TCP (`tcp:host,port`)",
                    ));
                }
                "admin" => {
                    return Err(err(
                        keyword,
                        "the dedicated admin connection (`admin:`) is not for a sync; connect over TCP",
                    ));
                }
                _ => {} // an IPv6 address
            }
        }
        let (host_part, port) = match rest.rsplit_once(',') {
            Some((h, p)) => {
                let p = p.trim();
                let port = p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    err(
                        keyword,
                        format!("the port after `,` must be a number from 1 to 65535, got `{p}`"),
                    )
                })?;
                (h.trim(), Some(port))
            }
            None => (rest, None),
        };
        let (host, instance) = match host_part.split_once('\\') {
            Some((h, i)) => {
                let i = i.trim();
                if i.is_empty() {
                    return Err(err(keyword, "an instance name is missing after `\\`"));
                }
                (h.trim(), Some(i.to_string()))
            }
            None => (host_part.trim(), None),
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host = match host.to_ascii_lowercase().as_str() {
            "" => return Err(err(keyword, "names no server")),
            "." | "(local)" => "localhost".to_string(),
            "(localdb)" => {
                return Err(err(
                    keyword,
                    "LocalDB (`(localdb)\\…`) runs only on Windows, in-process; give a TCP address",
                ));
            }
            _ => host.to_string(),
        };
        Ok(ServerAddress { host, port, instance })
    }

    /// `host:port` (`[v6]:port`) for the log and for the connection.
    pub fn host_port(&self, port: u16) -> String {
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

/// `Encrypt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encrypt {
    /// `true` / `yes` / `mandatory` (the default): TLS for everything, certificate checked.
    Mandatory,
    /// `false` / `no` / `optional`: TLS for the login only (as SqlClient, the certificate of
    /// a login-only TLS is not checked unless `Server Certificate` or `HostNameInCertificate`
    /// asks for it); a server without TLS at all is read in plain text.
    Optional,
    /// `strict`: TDS 8.0, TLS from the first byte, certificate checked.
    Strict,
    /// `DANGER_PLAINTEXT` (a tiberius extension, not SqlClient): no TLS at all, the
    /// password travels in clear text.
    Plaintext,
}

/// `IP Address Preference`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpPreference {
    /// `IPv4First` (the default).
    #[default]
    Ipv4First,
    /// `IPv6First`.
    Ipv6First,
    /// `UsePlatformDefault`: the resolver's order.
    PlatformDefault,
}

/// How to log in.
#[derive(Clone, PartialEq, Eq)]
pub enum Login {
    /// A SQL login.
    Sql {
        /// `User ID`.
        user: String,
        /// `Password`.
        password: String,
    },
    /// An Entra ID access token (sent as FEDAUTH), from `MSSQL_ACCESS_TOKEN` or
    /// `MSSQL_ACCESS_TOKEN_FILE`.
    AccessToken(String),
    /// The current Kerberos ticket (`Integrated Security=true`, feature `kerberos`).
    #[cfg(feature = "kerberos")]
    Integrated,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Login::Sql { user, .. } => f.debug_struct("Sql").field("user", user).finish_non_exhaustive(),
            Login::AccessToken(_) => f.write_str("AccessToken(…)"),
            #[cfg(feature = "kerberos")]
            Login::Integrated => f.write_str("Integrated"),
        }
    }
}

/// Everything sync-app takes from a connection string (and the access-token variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoSettings {
    /// `Data Source`.
    pub server: ServerAddress,
    /// `Initial Catalog` (none: the login's default database).
    pub database: Option<String>,
    /// The login.
    pub login: Login,
    /// `Encrypt`.
    pub encrypt: Encrypt,
    /// `TrustServerCertificate`.
    pub trust_server_certificate: bool,
    /// `HostNameInCertificate`.
    pub host_name_in_certificate: Option<String>,
    /// `Server Certificate` (a PEM or DER file).
    pub server_certificate: Option<PathBuf>,
    /// `Connect Timeout` and `Command Timeout`.
    pub timeouts: Timeouts,
    /// `Packet Size`.
    pub packet_size: Option<u32>,
    /// `Application Name` (default `sync-app`).
    pub application_name: String,
    /// `ApplicationIntent=ReadOnly`.
    pub read_only: bool,
    /// `MultiSubnetFailover`.
    pub multi_subnet_failover: bool,
    /// `Workstation ID`.
    pub workstation_id: Option<String>,
    /// `IP Address Preference`.
    pub ip_preference: IpPreference,
    /// Keywords accepted without effect, as written (for a warning in the log).
    pub without_effect: Vec<String>,
}

fn boolean(keyword: &str, value: &str) -> Result<bool, AdoError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" => Ok(true),
        "false" | "no" => Ok(false),
        _ => Err(err(
            keyword,
            format!("must be true/yes or false/no, got `{value}`"),
        )),
    }
}

fn number(keyword: &str, value: &str, range: std::ops::RangeInclusive<u64>) -> Result<u64, AdoError> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            err(
                keyword,
                format!(
                    "must be a whole number from {} to {}, got `{value}`",
                    range.start(),
                    range.end()
                ),
            )
        })
}

fn seconds(keyword: &str, value: &str) -> Result<Option<Duration>, AdoError> {
    let n = number(keyword, value, 0..=i32::MAX as u64)?;
    Ok((n > 0).then(|| Duration::from_secs(n)))
}

/// Does `value` ask for nothing, for a keyword refused unless it is left at its default?
fn is_default_value(name: &str, value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    match name {
        "Integrated Security"
        | "Multiple Active Result Sets"
        | "User Instance"
        | "Replication"
        | "Context Connection" => v == "false" || v == "no",
        "Type System Version" => v == "latest" || v == "sql server 2012",
        "Column Encryption Setting" => v == "disabled",
        "Attestation Protocol" => v.is_empty() || v == "notspecified",
        _ => v.is_empty(),
    }
}

/// The environment variables holding an access token.
pub const ACCESS_TOKEN_VARS: [&str; 2] = ["MSSQL_ACCESS_TOKEN", "MSSQL_ACCESS_TOKEN_FILE"];

/// Reads the access token from `MSSQL_ACCESS_TOKEN` or the file `MSSQL_ACCESS_TOKEN_FILE` names.
fn access_token(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, AdoError> {
    let direct = env(ACCESS_TOKEN_VARS[0]).filter(|t| !t.trim().is_empty());
    let file = env(ACCESS_TOKEN_VARS[1]).filter(|t| !t.trim().is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => Err(err(
            "Authentication",
            "both MSSQL_ACCESS_TOKEN and MSSQL_ACCESS_TOKEN_FILE are set; set one",
        )),
        (Some(t), None) => Ok(Some(t.trim().to_string())),
        (None, Some(path)) => match std::fs::read_to_string(path.trim()) {
            Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_string())),
            Ok(_) => Err(err(
                "Authentication",
                format!("MSSQL_ACCESS_TOKEN_FILE ({path}) is empty"),
            )),
            Err(e) => Err(err(
                "Authentication",
                format!("MSSQL_ACCESS_TOKEN_FILE ({path}) cannot be read: {e}"),
            )),
        },
        (None, None) => Ok(None),
    }
}

impl AdoSettings {
    /// Parses a connection string, reading the access token (if any) from the process
    /// environment.
    pub fn parse(ado: &str) -> Result<Self, AdoError> {
        Self::parse_with_env(ado, &|name| std::env::var(name).ok())
    }

    /// Parses a connection string, reading `MSSQL_ACCESS_TOKEN` / `MSSQL_ACCESS_TOKEN_FILE`
    /// through `env`.
    pub fn parse_with_env(ado: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, AdoError> {
        // Last one wins, across synonyms; remember how the user wrote it for messages.
        let mut given: HashMap<&'static str, (String, String)> = HashMap::new();
        for (key, value) in tokenize(ado)? {
            let Some(k) = canonical(&key) else {
                let lower = key.to_lowercase();
                let why = if ["provider", "driver", "dsn"].contains(&lower.as_str()) {
                    "is an OLE DB / ODBC keyword; MSSQL_URL is an ADO.NET (SqlClient) connection string"
                } else {
                    "is not a keyword SqlClient knows (check its spelling), so sync-app refuses it rather than ignore it"
                };
                return Err(err(&key, why));
            };
            given.insert(k.name, (key, value));
        }
        let mut without_effect = Vec::new();
        for k in KEYWORDS {
            let Some((key, value)) = given.get(k.name) else {
                continue;
            };
            match k.treatment {
                Treatment::Honoured => {}
                Treatment::NoEffect(_) => without_effect.push(key.clone()),
                Treatment::Refused(why) => return Err(err(key, format!("is not supported: {why}"))),
                Treatment::RefusedUnlessDefault(why) => {
                    if !is_default_value(k.name, value) {
                        return Err(err(key, format!("`{value}` is not supported: {why}")));
                    }
                }
            }
        }
        let get = |name: &str| given.get(name).map(|(k, v)| (k.as_str(), v.as_str()));

        // Pool-style values are still checked: a typo is an error, not "no effect".
        for name in [
            "Pooling",
            "Enlist",
            "Persist Security Info",
            "Asynchronous Processing",
            "Connection Reset",
        ] {
            if let Some((k, v)) = get(name) {
                boolean(k, v)?;
            }
        }
        for name in ["Max Pool Size", "Min Pool Size", "Load Balance Timeout"] {
            if let Some((k, v)) = get(name) {
                number(k, v, 0..=i32::MAX as u64)?;
            }
        }
        if let Some((k, v)) = get("Connect Retry Count") {
            number(k, v, 0..=255)?;
        }
        if let Some((k, v)) = get("Connect Retry Interval") {
            number(k, v, 1..=60)?;
        }
        if let Some((k, v)) = get("Transparent Network IP Resolution") {
            boolean(k, v)?;
        }
        if let Some((k, v)) = get("Pool Blocking Period")
            && !["auto", "alwaysblock", "neverblock"].contains(&v.trim().to_ascii_lowercase().as_str())
        {
            return Err(err(
                k,
                format!("must be Auto, AlwaysBlock or NeverBlock, got `{v}`"),
            ));
        }
        if let Some((k, v)) = get("Transaction Binding")
            && !["implicit unbind", "explicit unbind"].contains(&v.trim().to_ascii_lowercase().as_str())
        {
            return Err(err(
                k,
                format!("must be Implicit Unbind or Explicit Unbind, got `{v}`"),
            ));
        }
        // `Integrated Security=true|yes|sspi`: the current Kerberos ticket (feature `kerberos`).
        let integrated = match get("Integrated Security") {
            Some((_, v)) if v.trim().eq_ignore_ascii_case("sspi") => get("Integrated Security"),
            Some((k, v)) => boolean(k, v)?.then_some((k, v)),
            None => None,
        };

        let server = match get("Data Source") {
            Some((k, v)) => ServerAddress::parse(k, v)?,
            None => {
                return Err(err(
                    "Data Source",
                    "is missing: name the server (`Server=tcp:host,1433`)",
                ));
            }
        };
        if let Some((k, v)) = get("Network Library") {
            match v.trim().to_ascii_lowercase().as_str() {
                "dbmssocn" | "tcp" => {}
                _ => {
                    return Err(err(
                        k,
                        format!("`{v}` is not supported: sync-app connects over TCP/IP only (`dbmssocn`)"),
                    ));
                }
            }
        }
        let database = get("Initial Catalog")
            .map(|(_, v)| v.to_string())
            .filter(|d| !d.is_empty());

        let encrypt = match get("Encrypt") {
            None => Encrypt::Mandatory,
            Some((k, v)) => match v.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "mandatory" => Encrypt::Mandatory,
                "false" | "no" | "optional" => Encrypt::Optional,
                "strict" => Encrypt::Strict,
                "danger_plaintext" => Encrypt::Plaintext,
                _ => {
                    return Err(err(
                        k,
                        format!("must be true/yes/mandatory, false/no/optional or strict, got `{v}`"),
                    ));
                }
            },
        };
        let trust_server_certificate = match get("Trust Server Certificate") {
            Some((k, v)) => boolean(k, v)?,
            None => false,
        };
        let host_name_in_certificate = get("Host Name In Certificate")
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty());
        let server_certificate = get("Server Certificate")
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        if let (Some(path), true) = (&server_certificate, trust_server_certificate) {
            return Err(err(
                "Server Certificate",
                format!(
                    "`{}` and TrustServerCertificate=true contradict each other: trust that certificate, or any; \
                     choose one",
                    path.display()
                ),
            ));
        }
        if let Some(path) = &server_certificate
            && let Err(e) = std::fs::metadata(path)
        {
            return Err(err(
                "Server Certificate",
                format!("`{}` cannot be read: {e}", path.display()),
            ));
        }

        let mut timeouts = Timeouts::default();
        if let Some((k, v)) = get("Connect Timeout") {
            timeouts.connect = seconds(k, v)?;
        }
        if let Some((k, v)) = get("Command Timeout") {
            timeouts.command = seconds(k, v)?;
        }
        let packet_size = match get("Packet Size") {
            Some((k, v)) => Some(number(k, v, 512..=32_768)? as u32),
            None => None,
        };
        let application_name = match get("Application Name") {
            Some((k, v)) => {
                if v.chars().count() > 128 {
                    return Err(err(k, "is longer than 128 characters"));
                }
                if v.is_empty() {
                    DEFAULT_APPLICATION_NAME.to_string()
                } else {
                    v.to_string()
                }
            }
            None => DEFAULT_APPLICATION_NAME.to_string(),
        };
        let read_only = match get("Application Intent") {
            Some((k, v)) => match v.trim().to_ascii_lowercase().as_str() {
                "readonly" => true,
                "readwrite" => false,
                _ => return Err(err(k, format!("must be ReadOnly or ReadWrite, got `{v}`"))),
            },
            None => false,
        };
        let multi_subnet_failover = match get("Multi Subnet Failover") {
            Some((k, v)) => boolean(k, v)?,
            None => false,
        };
        let workstation_id = get("Workstation ID")
            .map(|(_, v)| v.to_string())
            .filter(|v| !v.is_empty());
        let ip_preference = match get("IP Address Preference") {
            Some((k, v)) => match v.trim().to_ascii_lowercase().as_str() {
                "ipv4first" => IpPreference::Ipv4First,
                "ipv6first" => IpPreference::Ipv6First,
                "useplatformdefault" => IpPreference::PlatformDefault,
                _ => {
                    return Err(err(
                        k,
                        format!("must be IPv4First, IPv6First or UsePlatformDefault, got `{v}`"),
                    ));
                }
            },
            None => IpPreference::default(),
        };

        let user = get("User ID").filter(|(_, v)| !v.is_empty());
        let password = get("Password");
        let token = access_token(env)?;
        let authentication = get("Authentication")
            .map(|(k, v)| (k, v.split_whitespace().collect::<String>().to_ascii_lowercase()));
        let sql_login = |user: Option<(&str, &str)>| -> Result<Login, AdoError> {
            let Some((k, u)) = user else {
                return Err(err(
                    "User ID",
                    "is missing: give User ID and Password (a SQL login), or Authentication=ActiveDirectoryAccessToken \
                     with the token in MSSQL_ACCESS_TOKEN",
                ));
            };
            if u.contains('\\') {
                return Err(err(
                    k,
                    format!("`{u}` is a Windows account (DOMAIN\\user): {WINDOWS_AUTH}"),
                ));
            }
            Ok(Login::Sql {
                user: u.to_string(),
                password: password.map(|(_, p)| p.to_string()).unwrap_or_default(),
            })
        };
        if let Some((k, v)) = integrated {
            if let Some((uk, _)) = user.or(password) {
                return Err(err(
                    k,
                    format!("`{v}` with a {uk} (a Windows account and its password): {WINDOWS_AUTH}"),
                ));
            }
            #[cfg(not(feature = "kerberos"))]
            return Err(err(k, format!("`{v}` is not supported: {KERBEROS_FEATURE}")));
        }
        let login = match authentication.as_ref().map(|(k, v)| (*k, v.as_str())) {
            #[cfg(feature = "kerberos")]
            None | Some((_, "notspecified")) if integrated.is_some() => Login::Integrated,
            None | Some((_, "notspecified")) => match token {
                // As SqlConnection.AccessToken: used when set, and exclusive with a user/password.
                Some(t) if user.is_none() && password.is_none() => Login::AccessToken(t),
                Some(_) => {
                    return Err(err(
                        user.map_or("Password", |(k, _)| k),
                        "and MSSQL_ACCESS_TOKEN (or _FILE) are both given: log in with one or the other",
                    ));
                }
                None => sql_login(user)?,
            },
            Some((_, "sqlpassword")) => sql_login(user)?,
            Some((k, "activedirectoryaccesstoken" | "accesstoken")) => {
                if let Some((uk, _)) = user.or(password) {
                    return Err(err(
                        uk,
                        format!("cannot be combined with {k}=ActiveDirectoryAccessToken"),
                    ));
                }
                match token {
                    Some(t) => Login::AccessToken(t),
                    None => {
                        return Err(err(
                            k,
                            "ActiveDirectoryAccessToken needs the token in MSSQL_ACCESS_TOKEN (or a file named by \
                             MSSQL_ACCESS_TOKEN_FILE); neither is set",
                        ));
                    }
                }
            }
            Some((k, "activedirectoryintegrated")) => {
                return Err(err(
                    k,
                    format!("ActiveDirectoryIntegrated is not supported: {WINDOWS_AUTH}"),
                ));
            }
            Some((k, _)) => {
                let v = get("Authentication").map(|(_, v)| v).unwrap_or_default();
                return Err(err(
                    k,
                    format!(
                        "`{v}` is not supported: sync-app cannot obtain Entra ID tokens itself; get one (e.g. `az account \
                         get-access-token --resource https://database.windows.net/`) and use \
                         Authentication=ActiveDirectoryAccessToken with MSSQL_ACCESS_TOKEN, or use SqlPassword"
                    ),
                ));
            }
        };

        Ok(AdoSettings {
            server,
            database,
            login,
            encrypt,
            trust_server_certificate,
            host_name_in_certificate,
            server_certificate,
            timeouts,
            packet_size,
            application_name,
            read_only,
            multi_subnet_failover,
            workstation_id,
            ip_preference,
            without_effect,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(ado: &str) -> Result<AdoSettings, AdoError> {
        AdoSettings::parse_with_env(ado, &no_env)
    }

    #[test]
    fn tokenizes_the_ado_net_way() {
        let p = tokenize(" Server = tcp:h,1 ;; Password='a;b=c' ; pwd=\"it\"\"s\" ;key==x=y=z;").unwrap();
        assert_eq!(p[0], ("Server".into(), "tcp:h,1".into()));
        assert_eq!(p[1], ("Password".into(), "a;b=c".into()));
        assert_eq!(p[2], ("pwd".into(), "it\"s".into()));
        assert_eq!(p[3], ("key=x".into(), "y=z".into()));
        // Braces are not quotes in ADO.NET: `{a;b}` ends at the `;`, leaving `b}` without `=`;
        // the error names the keyword before it, never the text (a password's tail).
        let e = tokenize("Password={se;cret};Server=x").unwrap_err();
        assert_eq!(e.keyword, "Password");
        assert!(!e.to_string().contains("cret"), "{e}");
        assert!(e.message.contains("quoted"), "{e}");
        let e = tokenize("Password=hunter2;rest;Database=x").unwrap_err();
        assert!(
            !e.to_string().contains("rest") && !e.to_string().contains("hunter2"),
            "{e}"
        );
        assert_eq!(tokenize("Password={ab}").unwrap()[0].1, "{ab}");
        assert!(
            tokenize("Password='open")
                .unwrap_err()
                .message
                .contains("never closed")
        );
        assert!(
            tokenize("Password='a'b;")
                .unwrap_err()
                .message
                .contains("after the closing")
        );
        assert!(tokenize("=x").is_err());
        assert_eq!(tokenize("password='it''s;secret'").unwrap()[0].1, "it's;secret");
    }

    #[test]
    fn every_spelling_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in KEYWORDS {
            assert_eq!(k.spellings[0], k.name.to_lowercase(), "{}", k.name);
            for s in k.spellings {
                assert!(seen.insert(*s), "{s} twice");
            }
        }
    }

    #[test]
    fn defaults() {
        let s = parse("Server=h;User ID=u;Password=p").unwrap();
        assert_eq!(s.encrypt, Encrypt::Mandatory);
        assert_eq!(s.timeouts, Timeouts::default());
        assert_eq!(s.application_name, "sync-app");
        assert_eq!(
            s.server,
            ServerAddress {
                host: "h".into(),
                port: None,
                instance: None
            }
        );
        assert!(
            parse("User ID=u")
                .unwrap_err()
                .to_string()
                .contains("Data Source")
        );
    }
}
