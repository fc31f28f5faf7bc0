//! Unique timestamp names for runs: `YYYYMMDD_HHMMSS`, then `_1`, `_2`, … when taken.
//!
//! Race-free across tasks, processes and hosts: the UNIQUE index on `job_logs.name`
//! decides, and a loser looks up the first free suffix after the one it lost and tries it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sea_orm::{ConnectionTrait, DbBackend, SqlErr};

use crate::sql::{Sql, db_now};
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

/// Hands out suffixes within one process, so that this process's own runs started in the
/// same second do not race each other for one name (each lost race costs a failed INSERT
/// and a lookup); races with other processes are still settled by the UNIQUE index.
#[derive(Debug, Default)]
pub(crate) struct Reservations {
    inner: std::sync::Mutex<(String, u64)>,
}

impl Reservations {
    /// The suffix to try first for `base` (0 = the bare base).
    pub(crate) fn reserve(&self, base: &str) -> u64 {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (last_base, next) = &mut *guard;
        if last_base != base {
            *last_base = base.to_owned();
            *next = 0;
        }
        let suffix = *next;
        *next += 1;
        suffix
    }

    /// Records that `suffix` of `base` was taken, so later reservations start above it.
    fn taken(&self, base: &str, suffix: u64) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (last_base, next) = &mut *guard;
        if last_base == base {
            *next = (*next).max(suffix + 1);
        }
    }
}

fn with_suffix(base: &str, suffix: u64) -> String {
    if suffix == 0 {
        base.to_owned()
    } else {
        format!("{base}_{suffix}")
    }
}

/// Inserts the run under the first free name from its reserved suffix on; returns
/// `(id, name)`.
pub(crate) async fn insert_run(
    db: &impl ConnectionTrait,
    base: &str,
    reservations: &Reservations,
    run: &NewRun<'_>,
) -> Result<(i64, String)> {
    let mut suffix = reservations.reserve(base);
    let mut name = with_suffix(base, suffix);
    for _ in 0..MAX_ATTEMPTS {
        match insert_with_name(db, &name, run).await {
            Ok(id) => return Ok((id, name)),
            Err(Error::Db(e)) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                // Lost the race for `name` (to another process): look beyond it.
                suffix = first_free_suffix(db, base, suffix + 1).await?;
                reservations.taken(base, suffix);
                name = with_suffix(base, suffix);
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
        .push(db_now(backend))
        .push(")");
    if backend == DbBackend::Postgres {
        // `all`, not `one`: it reads the response to the end, so an error raised after the
        // row (at commit) is not missed.
        q.push(" RETURNING id");
        let rows = q.all(db).await?;
        let row = rows.first().ok_or(Error::Db(sea_orm::DbErr::RecordNotInserted))?;
        return Ok(row.try_get_by_index(0)?);
    }
    // SQLite and MySQL: run the INSERT to completion, then read the new rowid. (With
    // SQLite's RETURNING, the row arrives before the statement commits; a commit that then
    // fails — a full disk — would leave an id that does not exist.)
    let res = db.execute_raw(q.build()).await?;
    i64::try_from(res.last_insert_id()).map_err(|_| Error::Db(sea_orm::DbErr::RecordNotInserted))
}

/// The first `_n` (from `from` on) not yet taken for `base`.
///
/// Looks names up by equality in blocks of 64 rather than by a range or `LIKE` scan:
/// equality uses the unique index under every backend's collation (a range over
/// punctuation would not be reliable under, say, PostgreSQL's `en_US` collation).
async fn first_free_suffix(db: &impl ConnectionTrait, base: &str, from: u64) -> Result<u64> {
    const BLOCK: u64 = 64;
    let mut start = from.max(1);
    loop {
        let names: Vec<String> = (start..start + BLOCK).map(|n| format!("{base}_{n}")).collect();
        let mut q = Sql::new(
            db.get_database_backend(),
            "SELECT name FROM job_logs WHERE name IN (",
        );
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.bind(name.as_str());
        }
        q.push(")");
        let taken: HashSet<String> = q
            .all(db)
            .await?
            .iter()
            .map(|row| row.try_get_by_index(0))
            .collect::<Result<_, _>>()?;
        if let Some(free) = (start..start + BLOCK)
            .zip(&names)
            .find(|(_, name)| !taken.contains(*name))
        {
            return Ok(free.0);
        }
        start += BLOCK;
    }
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
