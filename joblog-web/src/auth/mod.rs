//! HTTP Basic auth as a poem middleware, with login throttling and Argon2 password hashes.
//!
//! [`BasicAuth`] accepts one user, with a plain password (compared in constant time) or
//! an Argon2 PHC string ([`BasicAuth::with_password_hash`], made by [`hash_password`]).
//! Failed logins are counted per client address (see `throttle`): after 5 failures in
//! 5 minutes an address gets `429 Too Many Requests` with `Retry-After` — without its
//! password being looked at — for 5 s, then 10 s, 20 s, … up to 15 minutes; a success
//! starts it over and other addresses are not affected. Every failure is logged at `warn`
//! with the client address and the user name given, never the password.
//!
//! Behind a reverse proxy every request comes from the proxy's address, so one guesser
//! locks everybody out for a while; throttle at the proxy then, or turn this off with
//! [`BasicAuth::without_throttle`].
//!
//! The 401 and 429 answers are plain text (they show nothing of the pages) with the
//! security headers and `Cache-Control: no-store`.

mod hash;
mod throttle;

pub use hash::{PasswordHashError, hash_password};

use std::sync::Arc;
use std::time::Duration;

use poem::http::StatusCode;
use poem::http::header::{AUTHORIZATION, CACHE_CONTROL, RETRY_AFTER, WWW_AUTHENTICATE};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use self::hash::HashedPassword;
use self::throttle::{ClientKey, Limits, Throttle};

/// Requires HTTP Basic credentials on every request of the endpoint it wraps; anything
/// else gets `401` with `WWW-Authenticate`, and an address that keeps guessing gets `429`
/// (see the [module docs](self)). Credentials are never logged.
///
/// Clones share one failure table; each [`BasicAuth::new`] starts its own.
///
/// ```
/// use std::time::Duration;
/// use joblog_web::BasicAuth;
///
/// let auth = BasicAuth::new("admin", "a long secret")
///     .throttle(10, Duration::from_secs(60))
///     .lockout(Duration::from_secs(1), Duration::from_secs(300));
/// # let _ = auth;
/// ```
#[derive(Clone)]
pub struct BasicAuth {
    user: String,
    /// SHA-256 of the user name and of the password: comparing digests takes the same
    /// time whatever the input and whatever the secret's length.
    user_digest: [u8; 32],
    secret: Secret,
    realm: String,
    throttle: Option<Arc<Throttle>>,
}

#[derive(Clone)]
enum Secret {
    /// SHA-256 of the plain password.
    Plain([u8; 32]),
    Hash(Arc<HashedPassword>),
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("user", &self.user)
            .field(
                "password",
                match self.secret {
                    Secret::Plain(_) => &"<redacted>",
                    Secret::Hash(_) => &"<redacted argon2 hash>",
                },
            )
            .field("realm", &self.realm)
            .field("throttle", &self.throttle.as_ref().map(|t| *t.limits()))
            .finish()
    }
}

/// The longest user name a log line shows.
const MAX_LOGGED_USER: usize = 64;

impl BasicAuth {
    /// Accepts exactly `user` / `password` (nothing trimmed), with the default throttling.
    #[must_use]
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self::with_secret(user.into(), Secret::Plain(digest(password.into().as_bytes())))
    }

    /// Accepts `user` with the password whose Argon2 hash `phc` is, a PHC string such as
    /// [`hash_password`] makes (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), with the
    /// default throttling. Each check costs what the hash's parameters say (tens of
    /// milliseconds), on tokio's blocking pool, at most one per core at a time.
    ///
    /// # Errors
    ///
    /// A [`PasswordHashError`] naming what is wrong with `phc`: not a PHC string, not
    /// Argon2, parameters out of range (more than 1 GiB of memory included), no salt or
    /// no hash. Nothing is trimmed: surrounding white space is an error.
    pub fn with_password_hash(user: impl Into<String>, phc: &str) -> Result<Self, PasswordHashError> {
        let hashed = HashedPassword::parse(phc)?;
        Ok(Self::with_secret(user.into(), Secret::Hash(Arc::new(hashed))))
    }

    fn with_secret(user: String, secret: Secret) -> Self {
        Self {
            user_digest: digest(user.as_bytes()),
            user,
            secret,
            realm: "joblog".into(),
            throttle: Some(Arc::new(Throttle::new(Limits::default()))),
        }
    }

    /// The realm shown by browsers (default `joblog`).
    #[must_use]
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Locks an address out after `max_failures` failed logins within `window` (default
    /// 5 in 5 minutes; `max_failures` is at least 1). Starts a fresh failure table.
    #[must_use]
    pub fn throttle(self, max_failures: u32, window: Duration) -> Self {
        self.with_limits(|limits| Limits {
            max_failures: max_failures.max(1),
            window,
            ..limits
        })
    }

    /// The first lockout lasts `first`, each further one twice the one before, at most
    /// `max` (default 5 s, up to 15 minutes). Starts a fresh failure table.
    #[must_use]
    pub fn lockout(self, first: Duration, max: Duration) -> Self {
        self.with_limits(|limits| Limits {
            first_lockout: first.max(Duration::from_secs(1)),
            max_lockout: max.max(first).max(Duration::from_secs(1)),
            ..limits
        })
    }

    /// The most client addresses remembered (default 10,000); past it the one heard from
    /// least recently is forgotten. Starts a fresh failure table.
    #[must_use]
    pub fn throttle_capacity(self, clients: usize) -> Self {
        self.with_limits(|limits| Limits {
            capacity: clients.max(1),
            ..limits
        })
    }

    /// No throttling at all: every attempt is checked (for a host that throttles in front,
    /// e.g. at a reverse proxy that makes every client look alike).
    #[must_use]
    pub fn without_throttle(mut self) -> Self {
        self.throttle = None;
        self
    }

    fn with_limits(mut self, change: impl FnOnce(Limits) -> Limits) -> Self {
        let limits = self
            .throttle
            .as_ref()
            .map_or_else(Limits::default, |t| *t.limits());
        self.throttle = Some(Arc::new(Throttle::new(change(limits))));
        self
    }

    /// How many client addresses the failure table holds (for tests and monitoring).
    #[doc(hidden)]
    #[must_use]
    pub fn throttled_clients(&self) -> usize {
        self.throttle.as_ref().map_or(0, |t| t.len())
    }

    /// Whether `user` / `password` are the configured ones; both are always checked in
    /// full, so timing tells neither which one was wrong nor where.
    async fn verify(&self, user: &[u8], password: &[u8]) -> bool {
        let user_ok = constant_time_eq(&digest(user), &self.user_digest);
        match &self.secret {
            Secret::Plain(password_digest) => user_ok & constant_time_eq(&digest(password), password_digest),
            Secret::Hash(hashed) => hashed.verify(user, password, user_ok).await,
        }
    }

    fn unauthorized(&self) -> Response {
        let realm: String = self
            .realm
            .chars()
            .filter(|c| *c != '"' && !c.is_control())
            .collect();
        let resp = Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(
                WWW_AUTHENTICATE,
                format!("Basic realm=\"{realm}\", charset=\"UTF-8\""),
            )
            .content_type("text/plain; charset=utf-8")
            .body("401 Unauthorized: this page needs a user name and password.\n");
        with_headers(resp)
    }
}

/// `429` with `Retry-After`.
fn too_many_attempts(retry_after: u64) -> Response {
    let resp = Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header(RETRY_AFTER, retry_after.to_string())
        .content_type("text/plain; charset=utf-8")
        .body(format!(
            "429 Too Many Requests: too many failed logins from your address; try again in \
             {retry_after} s.\n"
        ));
    with_headers(resp)
}

/// The security headers and `no-store` on a 401 or 429.
fn with_headers(mut resp: Response) -> Response {
    crate::layout::add_security_headers(&mut resp);
    resp.headers_mut()
        .insert(CACHE_CONTROL, poem::http::HeaderValue::from_static("no-store"));
    resp
}

/// The client's address as a log line shows it: `203.0.113.7:4321`, not poem's
/// `socket://203.0.113.7:4321`.
struct Remote<'a>(&'a poem::Addr);

impl std::fmt::Display for Remote<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_socket_addr() {
            Some(addr) => addr.fmt(f),
            None => self.0.fmt(f),
        }
    }
}

/// What the `Authorization` header holds.
enum Credentials {
    /// No header: a browser's first request, not an attempt.
    Missing,
    /// Not `Basic base64(user:password)`: cannot be a guess, so not counted.
    Malformed,
    /// A user name and password to check.
    Basic { user: Vec<u8>, password: Vec<u8> },
}

impl Credentials {
    fn of(req: &Request) -> Self {
        let Some(value) = req.headers().get(AUTHORIZATION) else {
            return Self::Missing;
        };
        let Ok(value) = value.to_str() else {
            return Self::Malformed;
        };
        // The scheme name is case-insensitive (RFC 7617).
        let Some((scheme, encoded)) = value.split_once(' ') else {
            return Self::Malformed;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return Self::Malformed;
        }
        // Only the transport's white space around the token: the decoded secret is
        // never trimmed.
        let Some(mut decoded) = base64_decode(encoded.trim()) else {
            return Self::Malformed;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return Self::Malformed;
        };
        let password = decoded.split_off(colon + 1);
        decoded.truncate(colon);
        Self::Basic {
            user: decoded,
            password,
        }
    }

    /// The user name as a log line shows it (lossy, cut short; Debug-formatted by the
    /// caller so that control characters cannot forge lines).
    fn logged_user(&self) -> Option<String> {
        match self {
            Self::Basic { user, .. } => Some(
                String::from_utf8_lossy(user)
                    .chars()
                    .take(MAX_LOGGED_USER)
                    .collect(),
            ),
            Self::Missing | Self::Malformed => None,
        }
    }
}

impl<E: Endpoint> Middleware<E> for BasicAuth {
    type Output = BasicAuthEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        BasicAuthEndpoint {
            auth: self.clone(),
            ep,
        }
    }
}

/// The endpoint [`BasicAuth`] wraps.
#[derive(Debug)]
pub struct BasicAuthEndpoint<E> {
    auth: BasicAuth,
    ep: E,
}

impl<E: Endpoint> Endpoint for BasicAuthEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let credentials = Credentials::of(&req);
        let remote = Remote(req.remote_addr());
        let attempt = match &self.auth.throttle {
            None => None,
            Some(throttle) => match throttle.begin(ClientKey::of(remote.0)) {
                Ok(attempt) => Some(attempt),
                Err(refusal) => {
                    if refusal.first_of_lockout {
                        tracing::warn!(
                            remote = %remote,
                            user = ?credentials.logged_user().unwrap_or_default(),
                            retry_after_secs = refusal.retry_after,
                            "joblog-web: login attempts refused: too many failures from this address"
                        );
                    }
                    return Ok(too_many_attempts(refusal.retry_after));
                }
            },
        };
        let Credentials::Basic { user, password } = &credentials else {
            if matches!(credentials, Credentials::Malformed) {
                tracing::debug!(remote = %remote, "joblog-web: malformed Authorization header");
            }
            // Dropped unfinished: neither a success nor a failure.
            drop(attempt);
            return Ok(self.auth.unauthorized());
        };
        if self.auth.verify(user, password).await {
            if let Some(attempt) = attempt {
                attempt.succeeded();
            }
            return self.ep.call(req).await.map(IntoResponse::into_response);
        }
        let locked_for = attempt.and_then(throttle::Attempt::failed);
        tracing::warn!(
            remote = %remote,
            user = ?credentials.logged_user().unwrap_or_default(),
            locked_out_secs = locked_for.map(|d| d.as_secs()),
            "joblog-web: failed login"
        );
        Ok(self.auth.unauthorized())
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// Equal in time independent of where the inputs differ (Basic auth compares two 32-byte
/// digests; the CSRF check two tokens).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Longest credentials accepted, encoded.
const MAX_ENCODED: usize = 4_096;

/// Standard base64 as browsers send it (padding optional, as before).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const STANDARD_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    if s.len() > MAX_ENCODED {
        return None;
    }
    STANDARD_ANY_PADDING.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_decode("YWRtaW46c2VjcmV0").unwrap(), b"admin:secret");
        assert_eq!(base64_decode("YTpi").unwrap(), b"a:b");
        assert_eq!(base64_decode("YTpiYw==").unwrap(), b"a:bc");
        assert_eq!(base64_decode("YTpiY2Q=").unwrap(), b"a:bcd");
        assert!(base64_decode("!!!!").is_none());
        assert!(base64_decode("Y").is_none());
        assert_eq!(base64_decode("YTpiYw").unwrap(), b"a:bc", "padding is optional");
        assert!(base64_decode(&"A".repeat(MAX_ENCODED + 4)).is_none());
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
