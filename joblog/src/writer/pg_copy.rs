//! PostgreSQL: the writer's transaction on a raw sqlx connection, so that the details go
//! in through `COPY job_log_details … FROM STDIN` instead of multi-row INSERTs.
//!
//! sea-orm's `DatabaseTransaction` keeps its sqlx connection to itself, so on a sqlx
//! PostgreSQL pool the writer takes one connection from that same pool
//! (`DatabaseConnection::get_postgres_connection_pool`), begins the transaction there
//! with sqlx, streams the details, then runs the status changes through [`OnConnection`],
//! which lends that connection to sea-orm's `ConnectionTrait`: `apply_finish` stays one
//! piece of code for every backend. Everything commits or rolls back together, on one
//! connection at a time (a host's one-connection pool works), exactly as the sea-orm
//! transaction does on SQLite and MySQL.
//!
//! A row COPY refuses (a run deleted under its guard, or anything the text encoding
//! below got wrong) fails the whole statement with a data or constraint error, which
//! sends the writer to its row-by-row salvage through ordinary INSERTs.

use std::io::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike, Utc};
use sea_orm::sea_query::Values;
use sea_orm::sqlx::postgres::{PgConnection, PgPool, Postgres};
use sea_orm::sqlx::{self, AssertSqlSafe, Executor};
use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DatabaseConnection, DatabaseConnectionType, DbBackend, DbErr,
    ExecResult, QueryResult, RuntimeErr, Statement,
};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Mutex;

use super::store::{self, Finished};
use super::{DetailRow, Pending};
use crate::Result;

const COPY_DETAILS: &str = "COPY job_log_details (job_log_id, level, message, created_at) FROM STDIN";
/// COPY data is sent in pieces of about this size, so a batch is never encoded whole.
const SEND_BYTES: usize = 1 << 20;

/// The sqlx pool under `db`, when it is one of PostgreSQL (not a mock or a proxy).
pub(super) fn pool(db: &DatabaseConnection) -> Option<&PgPool> {
    match &db.inner {
        DatabaseConnectionType::SqlxPostgresPoolConnection(_) => Some(db.get_postgres_connection_pool()),
        _ => None,
    }
}

/// One transaction: every pending detail through COPY, in order, then every pending
/// status change.
pub(super) async fn write(pool: &PgPool, pending: &Pending) -> Result<Vec<Finished>> {
    let mut txn = pool.begin().await.map_err(acquire_err)?;
    let written = async {
        copy_details(&mut txn, pending.details.iter().map(|d| &d.row)).await?;
        let conn = OnConnection::new(&mut txn);
        let mut outcomes = Vec::with_capacity(pending.finishes.len());
        for (f, _) in &pending.finishes {
            outcomes.push(store::apply_finish(&conn, f).await?);
        }
        Ok(outcomes)
    }
    .await;
    match written {
        Ok(outcomes) => {
            txn.commit().await.map_err(query_err)?;
            Ok(outcomes)
        }
        Err(e) => {
            // At once, as on the other backends, rather than when the connection is next used.
            if let Err(e) = txn.rollback().await {
                tracing::warn!(error = %e, "joblog: rollback failed");
            }
            Err(e)
        }
    }
}

/// Streams `rows` into `job_log_details` in COPY's text format.
async fn copy_details<'r>(
    conn: &mut PgConnection,
    rows: impl ExactSizeIterator<Item = &'r DetailRow>,
) -> Result<()> {
    let expected = rows.len();
    if expected == 0 {
        return Ok(());
    }
    // Should a send fail, dropping `copy` ends the COPY with CopyFail (sqlx's `Drop`), and
    // the caller's rollback discards whatever reached the server.
    let mut copy = conn.copy_in_raw(COPY_DETAILS).await.map_err(exec_err)?;
    let mut buf = Vec::with_capacity(SEND_BYTES + SEND_BYTES / 4);
    for row in rows {
        push_row(&mut buf, row);
        if buf.len() >= SEND_BYTES {
            copy.send(buf.as_slice()).await.map_err(exec_err)?;
            buf.clear();
        }
    }
    copy.send(buf.as_slice()).await.map_err(exec_err)?;
    let written = copy.finish().await.map_err(exec_err)?;
    if written != expected as u64 {
        // A host's BEFORE INSERT trigger may skip rows (as it would skip them from an
        // INSERT): worth a word, not a reason to fail the batch forever.
        tracing::warn!(
            written,
            expected,
            "joblog: COPY job_log_details stored fewer rows than sent"
        );
    }
    Ok(())
}

/// Appends `row` as one line of COPY's text format: `job_log_id`, `level`, `message` and
/// `created_at`, separated by tabs (only the message needs escaping: the level is one of
/// three plain words).
fn push_row(buf: &mut Vec<u8>, row: &DetailRow) {
    // Writing to a `Vec` cannot fail.
    let _ = write!(buf, "{}\t{}\t", row.run_id, row.level.as_str());
    push_escaped(buf, &row.message);
    buf.push(b'\t');
    push_timestamp(buf, row.at);
    buf.push(b'\n');
}

/// Appends `text` as a value of COPY's text format: backslash, and the tab, newline and
/// carriage return that would end the value or the row, are escaped; every other byte is
/// taken as it is. (`clean_message` has replaced NUL, which `text` cannot hold. Scanning
/// bytes is safe: these ASCII bytes never occur inside a multi-byte UTF-8 character.)
fn push_escaped(buf: &mut Vec<u8>, text: &str) {
    debug_assert!(!text.contains('\0'), "messages are cleaned of NUL before COPY");
    let bytes = text.as_bytes();
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped = match b {
            b'\\' => b'\\',
            b'\t' => b't',
            b'\n' => b'n',
            b'\r' => b'r',
            _ => continue,
        };
        buf.extend_from_slice(&bytes[plain..i]);
        buf.extend_from_slice(&[b'\\', escaped]);
        plain = i + 1;
    }
    buf.extend_from_slice(&bytes[plain..]);
}

/// Appends `at` as a `timestamptz` in ISO form with microseconds (what a bound value
/// stores: PostgreSQL keeps microseconds, sqlx truncates to them), in UTC.
fn push_timestamp(buf: &mut Vec<u8>, at: DateTime<Utc>) {
    let (era, year) = match at.year() {
        y if y >= 1 => ("", y),
        y => (" BC", 1 - y),
    };
    let _ = write!(
        buf,
        "{year:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00{era}",
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        // A leap second's fraction runs past one second: keep it within its second.
        at.timestamp_subsec_micros().min(999_999),
    );
}

/// The transaction's connection, lent to sea-orm's `ConnectionTrait` so that the writer's
/// statements built with [`Sql`](crate::sql::Sql) run on it unchanged. The lock only
/// turns `&self` into the `&mut` sqlx needs: statements run one after the other.
struct OnConnection<'c> {
    conn: Mutex<&'c mut PgConnection>,
}

impl<'c> OnConnection<'c> {
    fn new(conn: &'c mut PgConnection) -> Self {
        Self {
            conn: Mutex::new(conn),
        }
    }
}

/// `stmt` as a sqlx query, its values bound the way sea-orm binds them.
fn query(stmt: &Statement) -> sqlx::query::Query<'_, Postgres, SqlxValues> {
    let values = stmt.values.clone().unwrap_or(Values(Vec::new()));
    sqlx::query_with(AssertSqlSafe(stmt.sql.as_str()), SqlxValues(values))
}

#[async_trait::async_trait]
impl ConnectionTrait for OnConnection<'_> {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let mut conn = self.conn.lock().await;
        let done = query(&stmt).execute(&mut **conn).await.map_err(exec_err)?;
        Ok(done.into())
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let mut conn = self.conn.lock().await;
        let done = conn
            .execute(AssertSqlSafe(sql.to_owned()))
            .await
            .map_err(exec_err)?;
        Ok(done.into())
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let mut conn = self.conn.lock().await;
        let row = query(&stmt)
            .fetch_optional(&mut **conn)
            .await
            .map_err(query_err)?;
        Ok(row.map(Into::into))
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut conn = self.conn.lock().await;
        let rows = query(&stmt).fetch_all(&mut **conn).await.map_err(query_err)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

// sqlx errors wrapped as sea-orm wraps them, so that `is_row_error` and the messages read
// the same on this path.

fn acquire_err(e: sqlx::Error) -> DbErr {
    match e {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        e => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(e))),
    }
}

fn exec_err(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)))
}

fn query_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Level;

    fn line(message: &str, at: DateTime<Utc>) -> String {
        let row = DetailRow {
            run_id: 42,
            level: Level::Warn,
            message: message.to_owned(),
            at,
        };
        let mut buf = Vec::new();
        push_row(&mut buf, &row);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn rows_are_encoded_in_copy_text_format() {
        let at = DateTime::parse_from_rfc3339("2026-12-02T03:04:05.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            line("a\tb\nc\rd\\e \\N é\u{1F600}", at),
            "42\twarn\ta\\tb\\nc\\rd\\\\e \\\\N é\u{1F600}\t2026-12-02 03:04:05.123456+00\n"
        );
        assert_eq!(line("", at), "42\twarn\t\t2026-12-02 03:04:05.123456+00\n");
        assert_eq!(
            line("\\.", at),
            "42\twarn\t\\\\.\t2026-12-02 03:04:05.123456+00\n"
        );
    }

    #[test]
    fn timestamps_outside_the_common_era_are_written_as_postgresql_reads_them() {
        let bc = chrono::NaiveDate::from_ymd_opt(0, 3, 1)
            .unwrap()
            .and_hms_opt(1, 2, 3)
            .unwrap()
            .and_utc();
        assert!(line("m", bc).ends_with("\t0001-03-01 01:02:03.000000+00 BC\n"));
        let far = chrono::NaiveDate::from_ymd_opt(12345, 1, 2)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc();
        assert!(line("m", far).ends_with("\t12345-01-02 00:00:00.000000+00\n"));
    }
}
