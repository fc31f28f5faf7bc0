//! Argon2 password hashes (PHC strings) for [`BasicAuth`](super::BasicAuth), so that a host
//! keeps no plain secret in its configuration.
//!
//! Verifying costs tens of milliseconds of CPU and some MiB of memory by design: it runs on
//! tokio's blocking pool, at most one verification per core at a time (the others wait
//! their turn instead of piling up memory), and the only thing remembered is a keyed
//! digest of the credentials that last verified, which no other password matches.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use tokio::sync::Semaphore;

use super::constant_time_eq;

/// What went wrong with a password hash: a PHC string that is not usable, or hashing
/// that failed. The message names the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordHashError {
    /// The string is not a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`); says why.
    Malformed(String),
    /// A PHC string of another algorithm than Argon2 (`argon2id`, `argon2i`, `argon2d`).
    UnsupportedAlgorithm(String),
    /// The Argon2 version or parameters (`m`, `t`, `p`) are out of range; says which.
    InvalidParams(String),
    /// The operating system's random source failed, so there is no salt and no hash.
    RandomSource,
    /// Argon2 itself failed.
    Hashing(String),
}

impl fmt::Display for PasswordHashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(
                f,
                "not an Argon2 PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash): {why}"
            ),
            Self::UnsupportedAlgorithm(alg) => write!(
                f,
                "the PHC string is for algorithm {alg:?}; only argon2id, argon2i and argon2d \
                 are supported"
            ),
            Self::InvalidParams(why) => write!(f, "unusable Argon2 parameters: {why}"),
            Self::RandomSource => {
                f.write_str("the operating system's random source failed, so no salt could be drawn")
            }
            Self::Hashing(why) => write!(f, "Argon2 hashing failed: {why}"),
        }
    }
}

impl std::error::Error for PasswordHashError {}

/// The most memory one verification may take (Argon2's `m`, in KiB): 1 GiB. A PHC string
/// asking for more is refused up front rather than failing (or swapping) at each login.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;

/// Hashes `password` with Argon2id (the crate's recommended parameters: 19 MiB, 2 passes,
/// 1 lane) and a 16-byte salt from the operating system's random source, as a PHC string
/// for [`BasicAuth::with_password_hash`](super::BasicAuth::with_password_hash).
///
/// # Errors
///
/// [`PasswordHashError::RandomSource`] if the random source fails (there is no fallback
/// to a weaker salt); [`PasswordHashError::Hashing`] if Argon2 fails.
///
/// ```
/// let phc = joblog_web::hash_password("correct horse battery staple")?;
/// assert!(phc.starts_with("$argon2id$v=19$"));
/// let auth = joblog_web::BasicAuth::with_password_hash("admin", &phc)?;
/// # let _ = auth;
/// # Ok::<(), joblog_web::PasswordHashError>(())
/// ```
pub fn hash_password(password: &str) -> Result<String, PasswordHashError> {
    match Argon2::default().hash_password(password.as_bytes()) {
        Ok(hash) => Ok(hash.to_string()),
        Err(argon2::password_hash::Error::RngFailure) => Err(PasswordHashError::RandomSource),
        Err(e) => Err(PasswordHashError::Hashing(e.to_string())),
    }
}

/// How long the credentials that last verified are remembered: a browser sends them with
/// every request, and each verification costs tens of milliseconds.
const REMEMBER_FOR: Duration = Duration::from_secs(10 * 60);

/// A parsed, checked Argon2 PHC string and what verifying against it needs.
pub(crate) struct HashedPassword {
    hash: PasswordHash,
    /// One verification per core at a time.
    permits: Semaphore,
    /// Key of the digest of the credentials that last verified (`None` if the random
    /// source failed: then nothing is remembered and every request pays the hash).
    remember_key: Option<[u8; 32]>,
    remembered: Mutex<Option<([u8; 32], Instant)>>,
}

impl fmt::Debug for HashedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashedPassword")
            .field("algorithm", &self.hash.algorithm.as_str())
            .field("hash", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl HashedPassword {
    /// Parses and checks `phc`; an error names the part that is wrong.
    pub(crate) fn parse(phc: &str) -> Result<Self, PasswordHashError> {
        if phc.chars().any(char::is_whitespace) {
            return Err(PasswordHashError::Malformed(
                "it contains white space (was a newline or a space copied with it?)".into(),
            ));
        }
        if !phc.starts_with('$') {
            return Err(PasswordHashError::Malformed(
                "it does not start with `$` followed by the algorithm".into(),
            ));
        }
        let hash = PasswordHash::new(phc).map_err(|e| PasswordHashError::Malformed(e.to_string()))?;
        let algorithm = hash.algorithm.as_str();
        Algorithm::new(algorithm)
            .map_err(|_| PasswordHashError::UnsupportedAlgorithm(algorithm.to_owned()))?;
        if let Some(version) = hash.version {
            Version::try_from(version).map_err(|_| {
                PasswordHashError::InvalidParams(format!("version v={version} (Argon2 has v=16 and v=19)"))
            })?;
        }
        if hash.salt.is_none() {
            return Err(PasswordHashError::Malformed("no salt".into()));
        }
        if hash.hash.is_none() {
            return Err(PasswordHashError::Malformed("no hash after the salt".into()));
        }
        let params = Params::try_from(&hash).map_err(|e| {
            PasswordHashError::InvalidParams(format!("{e} (expected m=<KiB>,t=<passes>,p=<lanes>)"))
        })?;
        if params.m_cost() > MAX_MEMORY_KIB {
            return Err(PasswordHashError::InvalidParams(format!(
                "m={} KiB is more than the {MAX_MEMORY_KIB} KiB (1 GiB) one login may take",
                params.m_cost()
            )));
        }
        let mut remember_key = [0u8; 32];
        let remember_key = getrandom::fill(&mut remember_key).ok().map(|()| remember_key);
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Ok(Self {
            hash,
            permits: Semaphore::new(cores),
            remember_key,
            remembered: Mutex::new(None),
        })
    }

    /// Whether `password` is the hashed one. `user_ok` says whether the user name matched:
    /// the hash is computed either way (so that timing does not tell a wrong user from a
    /// wrong password), and only credentials that are right as a whole are remembered.
    pub(crate) async fn verify(self: &Arc<Self>, user: &[u8], password: &[u8], user_ok: bool) -> bool {
        let digest = self.credentials_digest(user, password);
        if let Some(digest) = &digest
            && self.remembers(digest)
        {
            return user_ok;
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let this = Arc::clone(self);
        let password = zeroing(password);
        let verified = tokio::task::spawn_blocking(move || {
            Argon2::default().verify_password(&password.0, &this.hash).is_ok()
        })
        .await;
        let ok = match verified {
            Ok(ok) => ok,
            Err(e) => {
                tracing::error!(error = %e, "joblog-web: password verification did not finish");
                false
            }
        };
        if ok
            && user_ok
            && let Some(digest) = digest
            && let Ok(mut remembered) = self.remembered.lock()
        {
            *remembered = Some((digest, Instant::now()));
        }
        ok && user_ok
    }

    /// HMAC-SHA256 of the user name and password under this process's random key.
    fn credentials_digest(&self, user: &[u8], password: &[u8]) -> Option<[u8; 32]> {
        let key = self.remember_key.as_ref()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user);
        mac.update(password);
        Some(mac.finalize().into_bytes().into())
    }

    fn remembers(&self, digest: &[u8; 32]) -> bool {
        let Ok(remembered) = self.remembered.lock() else {
            return false;
        };
        remembered
            .as_ref()
            .is_some_and(|(known, at)| at.elapsed() < REMEMBER_FOR && constant_time_eq(known, digest))
    }
}

/// A copy of the password for the blocking task, wiped when dropped.
struct Zeroing(Vec<u8>);

fn zeroing(password: &[u8]) -> Zeroing {
    Zeroing(password.to_vec())
}

impl Drop for Zeroing {
    fn drop(&mut self) {
        // Not a guarantee (the allocator may have copied it), only less left lying about.
        for b in &mut self.0 {
            *b = 0;
        }
        std::hint::black_box(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_strings_name_the_problem() {
        let err = |s: &str| HashedPassword::parse(s).unwrap_err().to_string();
        assert!(err("").contains("does not start with `$`"), "{}", err(""));
        assert!(err("hunter2").contains("does not start with `$`"));
        assert!(err("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\n").contains("white space"));
        assert!(
            err("$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo").contains("pbkdf2-sha256"),
            "{}",
            err("$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo")
        );
        assert!(err("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ").contains("no hash"));
        assert!(err("$argon2id$v=7$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo").contains("v=7"));
        assert!(err("$argon2id$v=19$m=4294967295,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo").contains("1 GiB"));
        assert!(err("$argon2id$v=19$x=1,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo").contains("parameters"));
    }
}
