//! CSRF protection of the pages' forms: a double-submit cookie bound to a per-process
//! secret.
//!
//! `GET /jobs` sets a random `joblog_csrf` cookie (`HttpOnly; SameSite=Strict`, scoped to
//! the mount point) when the browser has none; every form carries
//! `HMAC-SHA256(secret, cookie)` in a hidden field. A POST is accepted only if its form
//! token equals the token derived from its cookie (compared in constant time) and its
//! `Origin`, when present, names the request's own `Host`. Another site can neither read
//! the cookie nor compute the token without the secret, which never leaves the process
//! (a restart invalidates open forms: reload the page).

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use poem::Request;
use sha2::{Digest, Sha256};

/// The cookie's name.
pub(crate) const COOKIE: &str = "joblog_csrf";
/// The form field's name.
pub(crate) const FIELD: &str = "csrf_token";

/// 32 random bytes: the OS's random source, mixed with `RandomState`'s random keys, the
/// time and a counter (so that a missing `/dev/urandom` still yields unpredictable bytes).
fn random_bytes() -> [u8; 32] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    let mut os = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut os);
    }
    h.update(os);
    for i in 0..4u64 {
        let mut s = std::collections::hash_map::RandomState::new().build_hasher();
        s.write_u64(i);
        s.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.update(s.finish().to_le_bytes());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.update(now.as_nanos().to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.finalize().into()
}

fn secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(random_bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-SHA256 (RFC 2104) of `msg` under `key` (32 bytes, shorter than the block).
fn hmac(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner: [u8; 32] = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize()
        .into();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// The token a form must carry for a browser holding cookie value `cookie`.
pub(crate) fn token(cookie: &str) -> String {
    hex(&hmac(secret(), cookie.as_bytes()))
}

/// A new cookie value: 64 hex digits.
pub(crate) fn new_cookie_value() -> String {
    hex(&random_bytes())
}

/// The request's well-formed `joblog_csrf` cookie, if any.
pub(crate) fn cookie_value(req: &Request) -> Option<String> {
    req.headers()
        .get_all(poem::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value for `value`, scoped to the mount point `base` (`""` at the root).
pub(crate) fn set_cookie(value: &str, base: &str) -> String {
    let path = if base.is_empty() { "/" } else { base };
    format!("{COOKIE}={value}; Path={path}; HttpOnly; SameSite=Strict")
}

/// Whether `origin` (`scheme://host[:port]`) names `host` (the `Host` header).
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    let authority = authority.trim_end_matches('/');
    !host.is_empty() && authority.eq_ignore_ascii_case(host.trim())
}

/// Checks a POST: `Err` with the reason, for the 403 page.
pub(crate) fn check(req: &Request, form_token: Option<&str>) -> Result<(), &'static str> {
    if let Some(origin) = req.headers().get(poem::http::header::ORIGIN) {
        let host = req
            .headers()
            .get(poem::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        if !origin.to_str().is_ok_and(|o| same_origin(o, host)) {
            return Err(
                "The form was sent from another site (its Origin is not this server). \
                        Nothing was changed.",
            );
        }
    }
    let Some(cookie) = cookie_value(req) else {
        return Err(
            "The form's security cookie is missing (cookies blocked, or the page is \
                    too old). Reload the Jobs page and try again; nothing was changed.",
        );
    };
    let Some(sent) = form_token else {
        return Err(
            "The form carries no security token. Reload the Jobs page and try again; \
                    nothing was changed.",
        );
    };
    if !crate::auth::constant_time_eq(sent.as_bytes(), token(&cookie).as_bytes()) {
        return Err(
            "The form's security token is not valid (the page is too old, or the form \
                    came from elsewhere). Reload the Jobs page and try again; nothing was changed.",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 1: a 20-byte key of 0x0b; HMAC pads keys with zeros, so 32 bytes with
        // 12 zeros after it is the same key.
        let mut key = [0u8; 32];
        key[..20].fill(0x0b);
        assert_eq!(
            hex(&hmac(&key, b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn tokens_depend_on_the_cookie() {
        let c1 = new_cookie_value();
        let c2 = new_cookie_value();
        assert_ne!(c1, c2);
        assert_eq!(c1.len(), 64);
        assert_ne!(token(&c1), token(&c2));
        assert_eq!(token(&c1), token(&c1));
    }

    #[test]
    fn origins_compare_by_authority() {
        assert!(same_origin("http://localhost:8080", "localhost:8080"));
        assert!(same_origin("https://Example.com", "example.com"));
        assert!(!same_origin("http://evil.example", "localhost:8080"));
        assert!(!same_origin("null", "localhost"));
        assert!(!same_origin("http://localhost:8080", ""));
    }
}
