//! Secrets shared by every instance on one database (`joblog_secrets`): drawn once from
//! the operating system's random source by whichever instance asks first, then read by all.
//!
//! joblog-web keys its CSRF tokens with one, so that a form served by one instance is
//! accepted by another behind the same load balancer, and after a restart.

use sea_orm::DbBackend;

use crate::sql::{Sql, db_now};
use crate::{Error, JobLogger, Result};

/// Longest secret name (the column is `varchar(191)`, MySQL's indexable length).
const MAX_NAME: usize = 191;

impl JobLogger {
    /// The 32-byte secret called `name`, the same for every instance on this database and
    /// across restarts: created on first use from the operating system's random source,
    /// race-free (when two instances create it at once, the database keeps the first
    /// insert and both read that one), never changed afterwards.
    ///
    /// Needs [`JobLogger::migrate`] to have run. Anyone who can read the database can
    /// read the secret: it protects against other web sites, not against the database's
    /// users. Callers should keep the value instead of asking on every request.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an empty or too long name, or when the operating system's
    /// random source fails (there is no weaker fallback); [`Error::Db`] when the database
    /// fails or holds a value that is not 64 hex digits.
    ///
    /// ```no_run
    /// # async fn demo(logger: joblog::JobLogger) -> joblog::Result<()> {
    /// let key: [u8; 32] = logger.shared_secret("my-app.signing").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shared_secret(&self, name: &str) -> Result<[u8; 32]> {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(Error::Config(format!(
                "a shared secret's name must have 1 to {MAX_NAME} bytes, not {}",
                name.len()
            )));
        }
        if let Some(secret) = self.read_secret(name).await? {
            return Ok(secret);
        }
        let mut drawn = [0u8; 32];
        getrandom::fill(&mut drawn).map_err(|e| {
            Error::Config(format!(
                "the operating system gave no randomness for the shared secret {name:?} ({e})"
            ))
        })?;
        let backend = self.db().get_database_backend();
        // Insert unless the name exists; whoever loses the race reads the winner's value.
        let mut insert = Sql::new(
            backend,
            "INSERT INTO joblog_secrets (name, value, created_at) VALUES (",
        );
        insert
            .bind(name)
            .push(", ")
            .bind(hex(&drawn))
            .push(&format!(", {})", db_now(backend)));
        insert.push(if backend == DbBackend::MySql {
            // Not `INSERT IGNORE`, which would also swallow other errors.
            " ON DUPLICATE KEY UPDATE name = name"
        } else {
            " ON CONFLICT (name) DO NOTHING"
        });
        insert.execute(self.db()).await?;
        self.read_secret(name).await?.ok_or_else(|| {
            Error::Db(sea_orm::DbErr::RecordNotFound(format!(
                "the shared secret {name:?} was written but cannot be read back"
            )))
        })
    }

    /// The stored secret `name`, if it exists.
    async fn read_secret(&self, name: &str) -> Result<Option<[u8; 32]>> {
        let backend = self.db().get_database_backend();
        let mut select = Sql::new(backend, "SELECT value FROM joblog_secrets WHERE name = ");
        select.bind(name);
        let Some(row) = select.one(self.db()).await? else {
            return Ok(None);
        };
        let text: String = row.try_get("", "value")?;
        unhex(&text).map(Some).ok_or_else(|| {
            Error::Db(sea_orm::DbErr::Custom(format!(
                "joblog_secrets holds a malformed value for {name:?} (not 64 hex digits)"
            )))
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim().as_bytes();
    if text.len() != 64 || !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let digits = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex(&hex(&bytes).to_uppercase()), Some(bytes));
        assert_eq!(unhex("00"), None);
        assert_eq!(unhex(&"zz".repeat(32)), None);
        assert_eq!(unhex(&"+1".repeat(32)), None, "from_str_radix takes a sign");
    }
}
