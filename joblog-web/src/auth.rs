//! HTTP Basic auth as a poem middleware.

use poem::http::StatusCode;
use poem::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

/// Requires HTTP Basic credentials on every request of the endpoint it wraps; anything
/// else gets `401` with `WWW-Authenticate`. The comparison takes the same time whatever
/// the input, and credentials are never logged.
#[derive(Clone)]
pub struct BasicAuth {
    user: String,
    /// SHA-256 of the user name and of the password: comparing digests takes the same
    /// time whatever the input and whatever the secret's length.
    user_digest: [u8; 32],
    password_digest: [u8; 32],
    realm: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("realm", &self.realm)
            .finish()
    }
}

impl BasicAuth {
    /// Accepts exactly `user` / `password`.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        let user = user.into();
        Self {
            user_digest: digest(user.as_bytes()),
            password_digest: digest(password.into().as_bytes()),
            user,
            realm: "joblog".into(),
        }
    }

    /// The realm shown by browsers (default `joblog`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    fn accepts(&self, req: &Request) -> bool {
        let Some(value) = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        // The scheme name is case-insensitive (RFC 7617).
        let Some((scheme, encoded)) = value.split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Some(decoded) = base64_decode(encoded.trim()) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        // Both compared in full, always: no early exit that would time the first mismatch.
        constant_time_eq(&digest(user), &self.user_digest)
            & constant_time_eq(&digest(password), &self.password_digest)
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
        if self.auth.accepts(&req) {
            return self.ep.call(req).await.map(IntoResponse::into_response);
        }
        Ok(Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(
                WWW_AUTHENTICATE,
                format!(
                    "Basic realm=\"{}\", charset=\"UTF-8\"",
                    self.auth
                        .realm
                        .chars()
                        .filter(|c| *c != '"' && !c.is_control())
                        .collect::<String>()
                ),
            )
            .content_type("text/plain; charset=utf-8")
            .body("401 Unauthorized: this page needs a user name and password.\n"))
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

/// Standard base64 with padding (what browsers send).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = s.trim_end_matches('=').as_bytes();
    if bytes.len() % 4 == 1 || s.len() > 4096 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        out.extend_from_slice(&acc.to_be_bytes()[1..=n]);
    }
    Some(out)
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
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
