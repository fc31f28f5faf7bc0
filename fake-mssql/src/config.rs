//! How the server is set up: encryption, certificate, logins (SQL, Entra ID token, Windows),
//! instance, faults.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::tls::Identity;

/// The server's encryption setting, as SQL Server's "Force Encryption" / "Force Strict
/// Encryption" and its certificate configure it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encryption {
    /// No certificate: PRELOGIN answers "not supported"; clients that require TLS fail.
    Off,
    /// SQL Server's default: TLS for the login packet only, unless the client asks for
    /// more (then everything). Plaintext for clients that do not support TLS.
    #[default]
    Optional,
    /// "Force Encryption": everything in TLS; clients without TLS are refused.
    Required,
    /// TDS 8.0 ("Force Strict Encryption"): TLS from the first byte, ALPN `tds/8.0`.
    Strict,
}

impl FromStr for Encryption {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Encryption::Off),
            "optional" => Ok(Encryption::Optional),
            "required" => Ok(Encryption::Required),
            "strict" => Ok(Encryption::Strict),
            other => Err(format!(
                "unknown encryption mode {other:?}; expected off, optional, required or strict"
            )),
        }
    }
}

impl fmt::Display for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encryption::Off => "off",
            Encryption::Optional => "optional",
            Encryption::Required => "required",
            Encryption::Strict => "strict",
        })
    }
}

/// A fault the server injects, to test a client's error handling.
///
/// | spelling        | effect |
/// |-----------------|--------|
/// | `login`         | every login (SQL, token or Windows) is refused with error 18456 |
/// | `tls`           | the TLS handshake is aborted (the connection closes after the ClientHello) |
/// | `sql`           | every statement given to the handler fails with error 50000 (`SELECT 1` still works) |
/// | `drop-after:N`  | column metadata and `N` rows are sent, then the TCP connection is closed without `DONE` |
/// | `stall`         | statements given to the handler are read but never answered |
/// | `stall-after:N` | `N` rows are sent, then the server goes silent (the socket stays open) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// Refuse every login with error 18456.
    Login,
    /// Abort the TLS handshake.
    Tls,
    /// Fail every handler statement with error 50000 (severity 16).
    Sql,
    /// Send the column metadata and this many rows, then close the connection abruptly.
    DropAfter(u64),
    /// Never answer handler statements.
    Stall,
    /// Send this many rows, then stop sending (without closing the connection).
    StallAfter(u64),
}

/// The error returned when a fault's spelling is not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFaultError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for ParseFaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid fault {:?}: {}; expected one of login, tls, sql, drop-after:N, stall, stall-after:N",
            self.input, self.reason
        )
    }
}

impl std::error::Error for ParseFaultError {}

impl ParseFaultError {
    /// Why the spelling was refused (without the list of valid modes).
    pub fn reason(&self) -> &str {
        self.reason
    }
}

/// A fault mode as a command line writes it: `name` or `name:N`, case and spaces ignored.
/// [`Fault`]'s parser uses it, and so can a handler's own modes on top of the server's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeSpec {
    name: String,
    arg: Option<String>,
}

impl ModeSpec {
    /// Splits `name[:N]`.
    #[must_use]
    pub fn parse(s: &str) -> Self {
        let text = s.trim().to_ascii_lowercase();
        match text.split_once(':') {
            Some((name, arg)) => ModeSpec {
                name: name.trim().to_owned(),
                arg: Some(arg.trim().to_owned()),
            },
            None => ModeSpec {
                name: text,
                arg: None,
            },
        }
    }

    /// The mode's name, lower-case.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The row count after `:`, or why there is none.
    pub fn count(&self) -> Result<u64, &'static str> {
        match self.arg.as_deref() {
            None | Some("") => Err("this mode needs a row count (MODE:N, e.g. drop-after:500)"),
            Some(n) => n
                .parse()
                .map_err(|_| "the row count must be a non-negative integer"),
        }
    }

    /// `value` for a mode written without `:N`, or why not.
    pub fn no_arg<T>(&self, value: T) -> Result<T, &'static str> {
        match self.arg {
            None => Ok(value),
            Some(_) => Err("this mode takes no `:N` argument"),
        }
    }
}

impl FromStr for Fault {
    type Err = ParseFaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseFaultError {
            input: s.to_owned(),
            reason,
        };
        let spec = ModeSpec::parse(s);
        let count = || spec.count().map_err(err);
        let no_arg = |value: Fault| spec.no_arg(value).map_err(err);
        match spec.name() {
            "login" => no_arg(Fault::Login),
            "tls" => no_arg(Fault::Tls),
            "sql" => no_arg(Fault::Sql),
            "stall" => no_arg(Fault::Stall),
            "drop-after" => Ok(Fault::DropAfter(count()?)),
            "stall-after" => Ok(Fault::StallAfter(count()?)),
            _ => Err(err("unknown mode")),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Login => f.write_str("login"),
            Fault::Tls => f.write_str("tls"),
            Fault::Sql => f.write_str("sql"),
            Fault::DropAfter(n) => write!(f, "drop-after:{n}"),
            Fault::Stall => f.write_str("stall"),
            Fault::StallAfter(n) => write!(f, "stall-after:{n}"),
        }
    }
}

/// Everything about the server except what it answers (that is the [`Handler`](crate::Handler)).
///
/// ```
/// use fake_mssql::{Encryption, ServerConfig};
/// let config = ServerConfig::default()
///     .encryption(Encryption::Required)
///     .login("app", "s3cret")
///     .database("shop");
/// ```
#[derive(Clone)]
pub struct ServerConfig {
    pub(crate) encryption: Encryption,
    pub(crate) identity: Option<Identity>,
    pub(crate) cert_names: Vec<String>,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) database: String,
    pub(crate) access_token: Option<String>,
    #[cfg(feature = "windows-auth")]
    pub(crate) windows: Option<crate::ntlm::WindowsAccount>,
    pub(crate) fault: Option<Fault>,
    pub(crate) instance: Option<String>,
    pub(crate) browser_listen: Option<SocketAddr>,
    pub(crate) server_name: String,
    pub(crate) login_timeout: std::time::Duration,
}

/// Passwords and tokens are not shown.
impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ServerConfig");
        d.field("encryption", &self.encryption)
            .field("identity", &self.identity)
            .field("cert_names", &self.cert_names)
            .field("user", &self.user)
            .field("password", &"<not shown>")
            .field("database", &self.database)
            .field("access_token", &self.access_token.as_ref().map(|_| "<not shown>"));
        #[cfg(feature = "windows-auth")]
        d.field("windows_user", &self.get_windows_user());
        d.field("fault", &self.fault)
            .field("instance", &self.instance)
            .field("browser_listen", &self.browser_listen)
            .field("server_name", &self.server_name)
            .field("login_timeout", &self.login_timeout)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            encryption: Encryption::Optional,
            identity: None,
            cert_names: Vec::new(),
            user: "sync".into(),
            password: "sync".into(),
            database: "erp".into(),
            access_token: None,
            #[cfg(feature = "windows-auth")]
            windows: None,
            fault: None,
            instance: None,
            browser_listen: None,
            server_name: "FAKEMSSQL".into(),
            login_timeout: std::time::Duration::from_secs(60),
        }
    }
}

impl ServerConfig {
    /// The encryption setting (default [`Encryption::Optional`], as SQL Server).
    pub fn encryption(mut self, encryption: Encryption) -> Self {
        self.encryption = encryption;
        self
    }

    /// The certificate to present (default: a self-signed one generated at bind time).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Extra DNS names or IP addresses for the generated certificate.
    pub fn cert_name(mut self, name: impl Into<String>) -> Self {
        self.cert_names.push(name.into());
        self
    }

    /// The SQL login accepted (default `sync` / `sync`).
    pub fn login(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = user.into();
        self.password = password.into();
        self
    }

    /// The login's default database (default `erp`); `master` and `tempdb` exist too.
    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.database = database.into();
        self
    }

    /// Also accept this Entra ID access token (FEDAUTH in LOGIN7).
    pub fn access_token(mut self, token: impl Into<String>) -> Self {
        self.access_token = Some(token.into());
        self
    }

    /// Also accept this Windows login (integrated security, `Integrated Security=SSPI`), as
    /// SQL Server does for a domain account: `user` is `DOMAIN\user` (or a bare `user`, a
    /// local account of the server, which SQL Server names `SERVER\user`).
    ///
    /// The client authenticates with NTLM carried in SSPI tokens (MS-TDS 3.2.5.1): its LOGIN7
    /// carries the NTLM NEGOTIATE, the server answers with an SSPI token holding the CHALLENGE,
    /// the client sends the AUTHENTICATE, and the server verifies its NTLMv2 response itself
    /// against `password` — there is no domain controller. User and domain compare
    /// case-insensitively. A wrong user or password is refused with error 18456 ("Login
    /// failed for user 'DOMAIN\user'."), a token the server cannot use (Kerberos, SPNEGO,
    /// NTLMv1) with 18452; without this setting every integrated login gets 18452. The
    /// handler sees the session's user as `DOMAIN\user`.
    ///
    /// Needs the `windows-auth` feature (on by default).
    ///
    /// ```
    /// let config = fake_mssql::ServerConfig::default().windows_login(r"CORP\alice", "Secret1!");
    /// assert_eq!(config.get_windows_user().as_deref(), Some(r"CORP\alice"));
    /// ```
    #[cfg(feature = "windows-auth")]
    pub fn windows_login(mut self, user: impl AsRef<str>, password: impl Into<String>) -> Self {
        self.windows = Some(crate::ntlm::WindowsAccount::parse(user.as_ref(), password.into()));
        self
    }

    /// Inject a fault.
    pub fn fault(mut self, fault: Option<Fault>) -> Self {
        self.fault = fault;
        self
    }

    /// Serve as the named instance `NAME`, announced by a SQL Server Browser on
    /// `browser_listen` (UDP; SQL Server's is port 1434).
    pub fn instance(mut self, name: impl Into<String>, browser_listen: SocketAddr) -> Self {
        self.instance = Some(name.into());
        self.browser_listen = Some(browser_listen);
        self
    }

    /// How long a connection may take from its first byte to a completed login (PRELOGIN,
    /// TLS, LOGIN7, an NTLM exchange) before the server closes it (default 60 s).
    pub fn login_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.login_timeout = timeout;
        self
    }

    /// The server name shown in messages and `@@SERVERNAME` (default `FAKEMSSQL`).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = name.into();
        self
    }

    /// The encryption setting.
    pub fn get_encryption(&self) -> Encryption {
        self.encryption
    }

    /// The SQL login's user name.
    pub fn get_user(&self) -> &str {
        &self.user
    }

    /// The SQL login's password.
    pub fn get_password(&self) -> &str {
        &self.password
    }

    /// The Windows login accepted, as `DOMAIN\user` (see [`windows_login`](Self::windows_login)).
    #[cfg(feature = "windows-auth")]
    pub fn get_windows_user(&self) -> Option<String> {
        self.windows.as_ref().map(|w| w.login_name(&self.server_name))
    }

    /// The default database.
    pub fn get_database(&self) -> &str {
        &self.database
    }

    /// The injected fault.
    pub fn get_fault(&self) -> Option<Fault> {
        self.fault
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_round_trip_and_bad_spellings_are_explained() {
        for fault in [
            Fault::Login,
            Fault::Tls,
            Fault::Sql,
            Fault::DropAfter(5),
            Fault::Stall,
            Fault::StallAfter(0),
        ] {
            assert_eq!(fault.to_string().parse::<Fault>(), Ok(fault));
        }
        assert_eq!(" Drop-After: 3 ".parse(), Ok(Fault::DropAfter(3)));
        for bad in ["", "drop", "drop-after", "drop-after:x", "login:3"] {
            let e = bad.parse::<Fault>().unwrap_err();
            assert!(e.to_string().contains("drop-after:N"), "{e}");
        }
    }

    #[test]
    fn encryption_modes_parse() {
        for mode in ["off", "optional", "required", "strict"] {
            assert_eq!(mode.parse::<Encryption>().unwrap().to_string(), mode);
        }
        assert!("yes".parse::<Encryption>().is_err());
    }
}
