//! CSRF protection of the pages' forms: a double-submit cookie bound to a secret shared by
//! every instance on the database, and a strict check of where the form came from.
//!
//! `GET /jobs` sets a random `joblog_csrf` cookie (`HttpOnly; SameSite=Strict`, scoped to
//! the mount point) when the browser has none; every form carries
//! `HMAC-SHA256(secret, cookie)` in a hidden field. A POST is accepted only if
//!
//! - it carries at most one `Origin` header, and that one names this server — scheme, host
//!   and port: the address in [`WebConfig::public_url`](crate::WebConfig::public_url), or
//!   the request's own (the connection's scheme and the `Host` header), unless that would
//!   be plain HTTP below an `https` public URL;
//! - its `Sec-Fetch-Site`, when the browser sends one, is `same-origin` (or `none`);
//! - its form token equals the token derived from its cookie (compared in constant time).
//!
//! Over HTTPS, or behind an `https` public URL, the cookie is `__Host-joblog_csrf` with
//! `Secure` and `Path=/`: a plain-HTTP page or another subdomain cannot plant one. Cookies
//! are not isolated by port, so a browser may send several `joblog_csrf` cookies: the first
//! well-formed one is used, malformed ones are skipped.
//!
//! The secret is [`JobLogger::shared_secret`](joblog::JobLogger::shared_secret)
//! `"joblog-web.csrf"`: kept in the database, created once, read once per router. A form
//! served by one instance posts fine to another on the same database, and after a restart.
//! Another site can neither read the cookie nor compute the token without the secret.
//!
//! Cookies come from the operating system's random source (`getrandom`). If it fails, the
//! page that needs one fails with a 500 that says so: there is no weaker fallback.

use hmac::{Hmac, KeyInit, Mac};
use joblog::JobLogger;
use poem::Request;
use poem::http::header::{HOST, ORIGIN};
use poem::http::uri::Scheme;
use sha2::Sha256;
use tokio::sync::OnceCell;

use crate::PageError;

/// The cookie's name over plain HTTP.
const COOKIE: &str = "joblog_csrf";
/// The cookie's name over HTTPS: browsers only accept it `Secure`, `Path=/`, without a
/// `Domain`, from a secure page.
const SECURE_COOKIE: &str = "__Host-joblog_csrf";
/// The form field's name.
pub(crate) const FIELD: &str = "csrf_token";
/// The name of the shared secret in `joblog_secrets`.
const SECRET_NAME: &str = "joblog-web.csrf";
/// The header browsers send with where a request was made from.
const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// 32 bytes from the operating system's random source.
fn random_bytes() -> Result<[u8; 32], PageError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "joblog-web: the operating system's random source failed");
        PageError::internal(
            "The server's random source failed, so the forms cannot be protected; see the \
             server log. Nothing was changed.",
        )
    })?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 of `msg` under `key`.
fn hmac(key: &[u8], msg: &[u8]) -> Result<[u8; 32], PageError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|e| PageError::internal(format!("The CSRF key is not usable: {e}.")))?;
    mac.update(msg);
    Ok(mac.finalize().into_bytes().into())
}

/// The token a form must carry for cookie value `cookie` under `secret`.
fn token_for(secret: &[u8; 32], cookie: &str) -> Result<String, PageError> {
    Ok(hex(&hmac(secret, cookie.as_bytes())?))
}

/// An origin as browsers compare them: scheme, host (lower case) and port (the scheme's
/// default when none is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    /// `scheme://host[:port]` exactly, as an `Origin` header holds it (no path, no user).
    fn parse_header(text: &str) -> Option<Self> {
        let (scheme, authority) = text.split_once("://")?;
        Self::of(scheme, authority)
    }

    /// The origin of a URL such as `https://jobs.example.com:8443/admin/`.
    pub(crate) fn of_url(url: &str) -> Option<Self> {
        let (scheme, rest) = url.trim().split_once("://")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        Self::of(scheme, &rest[..end])
    }

    /// From a scheme and an authority (`host[:port]`, `[v6][:port]`).
    fn of(scheme: &str, authority: &str) -> Option<Self> {
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return None;
        };
        let (host, port) = split_authority(authority)?;
        Some(Self {
            https,
            host,
            port: port.unwrap_or(if https { 443 } else { 80 }),
        })
    }
}

/// `host[:port]` into the host (lower case) and the port; `None` for anything else (a user,
/// a path, spaces, an empty host, a port that is no number).
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    if authority.is_empty()
        || authority.bytes().any(|b| {
            b.is_ascii_whitespace() || b.is_ascii_control() || matches!(b, b'@' | b'/' | b'?' | b'#' | b',')
        })
    {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, rest) = v6.split_once(']')?;
        let port = match rest {
            "" => None,
            _ => Some(rest.strip_prefix(':')?),
        };
        (format!("[{addr}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() || (host.contains([':', '[', ']']) && !host.starts_with('[')) {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// The public address the pages are reached at, as [`crate::WebConfig::public_url`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Public {
    /// None configured: the request's own origin is the only one.
    Unset,
    /// This origin.
    At(Origin),
    /// Configured but not a URL: every cross-check fails (and says why).
    Invalid(String),
}

/// The router's CSRF state: the shared secret (read once) and the public address.
#[derive(Debug)]
pub(crate) struct Csrf {
    logger: JobLogger,
    secret: OnceCell<[u8; 32]>,
    public: Public,
}

impl Csrf {
    /// CSRF for pages on `logger`'s database, reached at `public_url` if set.
    pub(crate) fn new(logger: JobLogger, public_url: Option<&str>) -> Self {
        let public = match public_url {
            None => Public::Unset,
            Some(url) => match Origin::of_url(url) {
                Some(origin) => Public::At(origin),
                None => {
                    tracing::error!(
                        public_url = url,
                        "joblog-web: the public URL is not an http(s) URL; the job buttons \
                         refuse every form sent with an Origin"
                    );
                    Public::Invalid(url.to_owned())
                }
            },
        };
        Self {
            logger,
            secret: OnceCell::new(),
            public,
        }
    }

    /// The shared secret, from the database on first use (concurrent first uses wait for
    /// one read; a failure is not kept, the next use asks again).
    async fn load(&self) -> joblog::Result<&[u8; 32]> {
        self.secret
            .get_or_try_init(|| self.logger.shared_secret(SECRET_NAME))
            .await
    }

    /// Reads the secret ahead of the first form, so that the first page does not wait for
    /// it; a failure (a database not migrated yet) is only logged at debug level: the
    /// first page that needs the secret asks again and reports it.
    pub(crate) async fn preload(&self) {
        if let Err(e) = self.load().await {
            tracing::debug!(error = %e, "joblog-web: the CSRF secret is not readable yet");
        }
    }

    /// The shared secret, or the 500 that says it cannot be had.
    async fn secret(&self) -> Result<&[u8; 32], PageError> {
        self.load().await.map_err(|e| {
            tracing::error!(error = %e, "joblog-web: the CSRF secret could not be read or created");
            PageError::internal(
                "The forms' security key could not be read from the database; see the \
                 server log. Nothing was changed.",
            )
        })
    }

    /// The token a form must carry for a browser holding cookie value `cookie`.
    pub(crate) async fn token(&self, cookie: &str) -> Result<String, PageError> {
        token_for(self.secret().await?, cookie)
    }

    /// Whether this request is answered over HTTPS, as the browser sees it: the connection
    /// is TLS, or the public URL is `https` (a TLS proxy in front).
    fn secure(&self, req: &Request) -> bool {
        *req.scheme() == Scheme::HTTPS || matches!(&self.public, Public::At(o) if o.https)
    }

    /// The name of the cookie for `req`.
    fn cookie_name(&self, req: &Request) -> &'static str {
        if self.secure(req) { SECURE_COOKIE } else { COOKIE }
    }

    /// The request's first well-formed CSRF cookie, if any.
    pub(crate) fn cookie_value(&self, req: &Request) -> Option<String> {
        cookie_value(req, self.cookie_name(req))
    }

    /// The `Set-Cookie` value for `value`, for pages mounted at `base` (`""` at the root).
    pub(crate) fn set_cookie(&self, req: &Request, value: &str, base: &str) -> String {
        if self.secure(req) {
            // `__Host-` demands `Path=/`: the cookie is the same for every mount point on
            // this host, which is harmless (a token is bound to the secret as well).
            format!("{SECURE_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict")
        } else {
            let path = if base.is_empty() { "/" } else { base };
            format!("{COOKIE}={value}; Path={path}; HttpOnly; SameSite=Strict")
        }
    }

    /// Checks a POST: a 403 that says why, if it is refused.
    pub(crate) async fn check(&self, req: &Request, form_token: Option<&str>) -> Result<(), PageError> {
        let refuse = |reason: &str| {
            tracing::warn!(
                remote = %crate::pages::jobs::Remote(req.remote_addr()),
                path = req.original_uri().path(),
                reason,
                "joblog-web: form refused"
            );
            Err(PageError::forbidden(reason))
        };
        if let Err(reason) = self.check_origin(req) {
            return refuse(reason);
        }
        let Some(cookie) = self.cookie_value(req) else {
            return refuse(
                "The form's security cookie is missing (cookies blocked, or the page is \
                 too old). Reload the Jobs page and try again; nothing was changed.",
            );
        };
        let Some(sent) = form_token else {
            return refuse(
                "The form carries no security token. Reload the Jobs page and try again; \
                 nothing was changed.",
            );
        };
        let expected = self.token(&cookie).await?;
        if !crate::auth::constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
            return refuse(
                "The form's security token is not valid (the page is too old, or the form \
                 came from elsewhere). Reload the Jobs page and try again; nothing was changed.",
            );
        }
        Ok(())
    }

    /// `Sec-Fetch-Site` and `Origin`: the reason to refuse, if any.
    fn check_origin(&self, req: &Request) -> Result<(), &'static str> {
        const ELSEWHERE: &str = "The form was sent from another site (its Origin is not this \
                                 server). Nothing was changed.";
        let headers = req.headers();
        let mut fetch_site = headers.get_all(SEC_FETCH_SITE).iter();
        if let Some(site) = fetch_site.next() {
            let same = site.to_str().is_ok_and(|s| {
                s.trim().eq_ignore_ascii_case("same-origin") || s.trim().eq_ignore_ascii_case("none")
            });
            if !same || fetch_site.next().is_some() {
                return Err("The form was sent from another site (Sec-Fetch-Site). Nothing was changed.");
            }
        }
        let mut origins = headers.get_all(ORIGIN).iter();
        let Some(origin) = origins.next() else {
            // No browser sends a cross-site POST without `Origin` today; older ones rely on
            // the cookie and the token alone.
            return Ok(());
        };
        if origins.next().is_some() {
            return Err("The form came with several Origin headers. Nothing was changed.");
        }
        let Some(origin) = origin.to_str().ok().and_then(Origin::parse_header) else {
            return Err(ELSEWHERE);
        };
        if let Public::Invalid(_) = self.public {
            return Err(
                "The server's public URL is misconfigured (see the server log), so \
                        forms cannot be checked. Nothing was changed.",
            );
        }
        if let Public::At(public) = &self.public
            && origin == *public
        {
            return Ok(());
        }
        match self.own_origin(req) {
            Some(own) if own == origin => Ok(()),
            _ => Err(ELSEWHERE),
        }
    }

    /// The request's own origin: the connection's scheme and the `Host` header (or the
    /// HTTP/2 authority). None when that would be plain HTTP below an `https` public URL
    /// (a network attacker could serve such a page), or when the host is ambiguous.
    fn own_origin(&self, req: &Request) -> Option<Origin> {
        let https = *req.scheme() == Scheme::HTTPS;
        if !https && matches!(&self.public, Public::At(o) if o.https) {
            return None;
        }
        let mut hosts = req.headers().get_all(HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            (Some(h), None) => h.to_str().ok()?.to_owned(),
            (None, _) => req.uri().authority()?.as_str().to_owned(),
            (Some(_), Some(_)) => return None,
        };
        Origin::of(if https { "https" } else { "http" }, host.trim())
    }
}

/// A new cookie value: 64 hex digits.
pub(crate) fn new_cookie_value() -> Result<String, PageError> {
    Ok(hex(&random_bytes()?))
}

/// The request's first well-formed cookie `name` (64 hex digits), skipping malformed ones
/// (another application on the same host, which cookies do not isolate by port, may have
/// set one of the same name).
fn cookie_value(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(poem::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| n.trim() == name)
        .map(|(_, value)| value.trim())
        .find(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 1: a 20-byte key of 0x0b.
        assert_eq!(
            hex(&hmac(&[0x0b; 20], b"Hi There").unwrap()),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn tokens_depend_on_the_cookie_and_the_secret() {
        let (s1, s2) = (random_bytes().unwrap(), random_bytes().unwrap());
        let c1 = new_cookie_value().unwrap();
        let c2 = new_cookie_value().unwrap();
        assert_ne!(c1, c2);
        assert_eq!(c1.len(), 64);
        assert_ne!(token_for(&s1, &c1).unwrap(), token_for(&s1, &c2).unwrap());
        assert_eq!(token_for(&s1, &c1).unwrap(), token_for(&s1, &c1).unwrap());
        assert_ne!(
            token_for(&s1, &c1).unwrap(),
            token_for(&s2, &c1).unwrap(),
            "another secret, another token"
        );
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let o = |s: &str| Origin::parse_header(s);
        assert_eq!(o("http://localhost:8080"), o("HTTP://LocalHost:8080"));
        assert_eq!(o("https://example.com"), o("https://example.com:443"));
        assert_eq!(o("http://example.com"), o("http://example.com:80"));
        assert_ne!(o("http://example.com"), o("https://example.com"));
        assert_ne!(o("http://example.com:8080"), o("http://example.com:8081"));
        assert_eq!(o("http://[::1]:3000").unwrap().host, "[::1]");
        for bad in [
            "null",
            "",
            "example.com",
            "ftp://example.com",
            "http://",
            "http://user@example.com",
            "http://example.com/",
            "http://example.com:abc",
            "http://example.com:99999",
            "http://a.example, http://b.example",
            "http://::1",
        ] {
            assert_eq!(o(bad), None, "{bad}");
        }
        assert_eq!(
            Origin::of_url("https://jobs.example.com/admin/jobs/"),
            o("https://jobs.example.com")
        );
    }

    #[test]
    fn the_first_well_formed_cookie_wins() {
        let good = "ab".repeat(32);
        let req = Request::builder()
            .header("cookie", format!("joblog_csrf=junk; other=1; joblog_csrf={good}"))
            .header("cookie", format!("joblog_csrf={}", "cd".repeat(32)))
            .finish();
        assert_eq!(cookie_value(&req, COOKIE), Some(good));
        assert_eq!(cookie_value(&req, SECURE_COOKIE), None);
    }
}
