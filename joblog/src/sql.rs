//! A small SQL text builder with backend-correct placeholders, and backend facts.
//!
//! joblog's statements are few and hand-tuned (keyset pages, multi-row inserts sized to
//! the bind limit), so they are written as SQL text with bound values rather than
//! through an ORM layer.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement, Value};

use crate::Result;

/// SQL text plus its bound values; `bind` writes `$n` on PostgreSQL and `?` elsewhere.
#[derive(Debug)]
pub(crate) struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(backend: DbBackend, text: &str) -> Self {
        Self {
            backend,
            text: text.to_owned(),
            values: Vec::new(),
        }
    }

    /// The backend the placeholders are written for.
    pub(crate) fn backend(&self) -> DbBackend {
        self.backend
    }

    /// Appends literal SQL.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        if self.backend == DbBackend::Postgres {
            self.text.push('$');
            self.text.push_str(&self.values.len().to_string());
        } else {
            self.text.push('?');
        }
        self
    }

    /// Appends `(?, ?, …)` for a list of ids.
    pub(crate) fn bind_list(&mut self, ids: &[i64]) -> &mut Self {
        self.push("(");
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(*id);
        }
        self.push(")")
    }

    pub(crate) fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }

    pub(crate) async fn execute(self, db: &impl ConnectionTrait) -> Result<u64> {
        Ok(db.execute_raw(self.build()).await?.rows_affected())
    }

    pub(crate) async fn all(self, db: &impl ConnectionTrait) -> Result<Vec<QueryResult>> {
        Ok(db.query_all_raw(self.build()).await?)
    }

    pub(crate) async fn one(self, db: &impl ConnectionTrait) -> Result<Option<QueryResult>> {
        Ok(db.query_one_raw(self.build()).await?)
    }
}

/// The most bind parameters one statement may carry on `backend`.
pub(crate) fn bind_limit(backend: DbBackend) -> usize {
    joblog_migrations::schema::max_bind_parameters(backend)
}

/// The database's clock, as an SQL expression that yields a value comparable with the
/// stored timestamps. Heartbeats and the reaper's cutoff use it, so that hosts whose clocks
/// disagree cannot reap each other's live runs. (On SQLite, one host: its clock.)
pub(crate) fn db_now(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "CURRENT_TIMESTAMP",
        DbBackend::MySql => "UTC_TIMESTAMP(6)",
        // The same shape as the RFC 3339 text sqlx writes, so that text comparison works.
        _ => "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')",
    }
}

/// `db_now(backend)` minus `age`, as an SQL expression.
pub(crate) fn db_now_minus(backend: DbBackend, age: std::time::Duration) -> String {
    let micros = i64::try_from(age.as_micros())
        .unwrap_or(i64::MAX / 2)
        .min(100 * 365 * 86_400 * 1_000_000);
    match backend {
        DbBackend::Postgres => format!("(CURRENT_TIMESTAMP - INTERVAL '{micros} microseconds')"),
        DbBackend::MySql => format!("(UTC_TIMESTAMP(6) - INTERVAL {micros} MICROSECOND)"),
        _ => format!(
            "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '-{}.{:06} seconds')",
            micros / 1_000_000,
            micros % 1_000_000
        ),
    }
}

/// Timestamps are kept at microsecond precision on every backend, so what is written
/// compares equal to what is read back.
pub(crate) fn now() -> DateTime<Utc> {
    truncate_micros(Utc::now())
}

pub(crate) fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::{DurationRound, TimeDelta};
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

/// Escapes `%`, `_` and the escape character `!` for `LIKE … ESCAPE '!'`.
pub(crate) fn like_contains(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '!') {
            out.push('!');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// `LIKE` that ignores case on every backend (PostgreSQL's `LIKE` does not).
pub(crate) fn like_ci(backend: DbBackend) -> &'static str {
    if backend == DbBackend::Postgres {
        " ILIKE "
    } else {
        " LIKE "
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_backend() {
        let mut q = Sql::new(DbBackend::Postgres, "SELECT 1 WHERE a = ");
        q.bind(1i64).push(" AND b IN ").bind_list(&[2, 3]);
        assert_eq!(q.build().sql, "SELECT 1 WHERE a = $1 AND b IN ($2, $3)");
        let mut q = Sql::new(DbBackend::MySql, "SELECT 1 WHERE a = ");
        q.bind(1i64);
        assert_eq!(q.build().sql, "SELECT 1 WHERE a = ?");
    }

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(like_contains("50%_off!"), "%50!%!_off!!%");
    }
}
