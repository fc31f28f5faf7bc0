//! Unique timestamp names for runs: `YYYYMMDD_HHMMSS`, then `_1`, `_2`, … when taken.
//!
//! Race-free across tasks, processes and hosts: the UNIQUE index on `job_logs.name`
//! decides, and a loser looks up the highest suffix in use and tries the next one.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sea_orm::{ConnectionTrait, DbBackend, SqlErr};

use crate::sql::Sql;
use crate::{Error, Result};

/// Attempts before giving up (each attempt is one lost race).
const MAX_ATTEMPTS: u32 = 1_000;

/// The base name of a run started at `at`, in `tz`.
pub(crate) fn base_name(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%Y%m%d_%H%M%S").to_string()
}

/// What a new `job_logs` row holds besides its name.
#[derive(Debug)]
pub(crate) struct NewRun<'a> {
    pub(crate) job: &'a str,
    pub(crate) host: &'a str,
    pub(crate) pid: i64,
    pub(crate) at: DateTime<Utc>,
}

/// Inserts the run under the first free name; returns `(id, name)`.
pub(crate) async fn insert_run(
    db: &impl ConnectionTrait,
    base: &str,
    run: &NewRun<'_>,
) -> Result<(i64, String)> {
    let mut name = base.to_owned();
    for _ in 0..MAX_ATTEMPTS {
        match insert_with_name(db, &name, run).await {
            Ok(id) => return Ok((id, name)),
            Err(Error::Db(e)) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                let next = highest_suffix(db, base).await?.map_or(1, |n| n + 1);
                name = format!("{base}_{next}");
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::NameExhausted {
        base: base.to_owned(),
        attempts: MAX_ATTEMPTS,
    })
}

async fn insert_with_name(db: &impl ConnectionTrait, name: &str, run: &NewRun<'_>) -> Result<i64> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(
        backend,
        "INSERT INTO job_logs (name, job, status, host, pid, created_at, updated_at, heartbeat_at) VALUES (",
    );
    q.bind(name)
        .push(", ")
        .bind(run.job)
        .push(", 0, ")
        .bind(run.host)
        .push(", ")
        .bind(run.pid)
        .push(", ")
        .bind(run.at)
        .push(", ")
        .bind(run.at)
        .push(", ")
        .bind(run.at)
        .push(")");
    if backend == DbBackend::MySql {
        let res = db.execute_raw(q.build()).await?;
        return Ok(i64::try_from(res.last_insert_id()).unwrap_or(i64::MAX));
    }
    q.push(" RETURNING id");
    let row = q
        .one(db)
        .await?
        .ok_or_else(|| Error::Db(sea_orm::DbErr::RecordNotInserted))?;
    Ok(row.try_get_by_index(0)?)
}

/// The highest `_n` in use for `base` (`Some(0)` when only `base` itself is taken).
async fn highest_suffix(db: &impl ConnectionTrait, base: &str) -> Result<Option<u64>> {
    // Every name with this prefix sorts in [base, base + "~"): digits and '_' sort below '~'.
    let mut q = Sql::new(
        db.get_database_backend(),
        "SELECT name FROM job_logs WHERE name >= ",
    );
    q.bind(base).push(" AND name < ").bind(format!("{base}~"));
    let mut highest = None;
    for row in q.all(db).await? {
        let name: String = row.try_get_by_index(0)?;
        let suffix = match name.strip_prefix(base) {
            Some("") => Some(0),
            Some(rest) => rest.strip_prefix('_').and_then(|n| n.parse::<u64>().ok()),
            None => None,
        };
        highest = highest.max(suffix);
    }
    Ok(highest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn base_name_uses_the_timezone() {
        let at = Utc.with_ymd_and_hms(2026, 11, 28, 23, 30, 5).unwrap();
        assert_eq!(base_name(at, chrono_tz::UTC), "20261128_233005");
        assert_eq!(base_name(at, chrono_tz::Europe::Berlin), "20261129_003005");
    }
}
