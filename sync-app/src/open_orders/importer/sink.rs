//! The per-backend half of the importer: one dedicated connection, a temporary staging
//! table on it, and the swap transaction.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use joblog::DatabaseConnection;
use sea_orm::DbBackend;
use sea_orm::sqlx::{self, AssertSqlSafe, MySql, Postgres, QueryBuilder, Sqlite, pool::PoolConnection};
use tokio::sync::mpsc;

use crate::open_orders::{FIELDS, Kind, OpenOrder};

const STAGING: &str = "open_orders_incoming";
/// A progress line while staging at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// The dedicated connection, per backend (`None` once closed).
enum Conn {
    Sqlite(Option<PoolConnection<Sqlite>>),
    Postgres(Option<PoolConnection<Postgres>>),
    MySql(Option<PoolConnection<MySql>>),
}

/// The importer's connection. If the import is abandoned half-way (its future dropped
/// while staging or inside the swap transaction), the connection is closed rather than
/// returned to the pool: closing rolls back and drops the temporary table, where a pooled
/// connection could keep SQLite's write lock until its next use.
pub(super) struct Sink {
    conn: Conn,
    clean: bool,
}

impl Drop for Sink {
    fn drop(&mut self) {
        if self.clean {
            return;
        }
        match &mut self.conn {
            Conn::Sqlite(c) => drop(c.take().map(PoolConnection::detach)),
            Conn::Postgres(c) => drop(c.take().map(PoolConnection::detach)),
            Conn::MySql(c) => drop(c.take().map(PoolConnection::detach)),
        }
    }
}

/// Column list of the record (and of `open_orders` minus `id` and `synced_at`).
fn columns() -> String {
    FIELDS.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
}

fn staging_ddl(backend: DbBackend) -> String {
    let mut ddl = match backend {
        DbBackend::Sqlite => format!("CREATE TEMP TABLE {STAGING} (seq INTEGER PRIMARY KEY"),
        DbBackend::Postgres => format!("CREATE TEMP TABLE {STAGING} (seq bigint PRIMARY KEY"),
        _ => format!("CREATE TEMPORARY TABLE {STAGING} (seq BIGINT PRIMARY KEY"),
    };
    for field in FIELDS {
        let (p, s) = field.precision_scale();
        let ty = match (backend, field.kind) {
            (DbBackend::Sqlite, Kind::BigInt | Kind::Int | Kind::Bool) => "INTEGER".to_string(),
            (DbBackend::Sqlite, _) => "TEXT".to_string(),
            (DbBackend::Postgres, Kind::BigInt) => "bigint".into(),
            (DbBackend::Postgres, Kind::Int) => "integer".into(),
            (DbBackend::Postgres, Kind::Text) => "text".into(),
            (DbBackend::Postgres, Kind::Decimal) => format!("numeric({p},{s})"),
            (DbBackend::Postgres, Kind::Date) => "date".into(),
            (DbBackend::Postgres, Kind::DateTime) => "timestamptz".into(),
            (DbBackend::Postgres, Kind::Bool) => "boolean".into(),
            (_, Kind::BigInt) => "BIGINT".into(),
            (_, Kind::Int) => "INT".into(),
            (_, Kind::Text) => format!("VARCHAR({})", field.limit),
            (_, Kind::Decimal) => format!("DECIMAL({p},{s})"),
            (_, Kind::Date) => "DATE".into(),
            (_, Kind::DateTime) => "DATETIME(6)".into(),
            (_, Kind::Bool) => "BOOL".into(),
        };
        let _ = write!(ddl, ", {} {ty}", field.name);
    }
    ddl.push(')');
    if backend == DbBackend::MySql {
        ddl.push_str(" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
    }
    ddl
}

fn drop_staging(backend: DbBackend) -> String {
    match backend {
        DbBackend::Sqlite => format!("DROP TABLE IF EXISTS temp.{STAGING}"),
        DbBackend::Postgres => format!("DROP TABLE IF EXISTS pg_temp.{STAGING}"),
        _ => format!("DROP TEMPORARY TABLE IF EXISTS {STAGING}"),
    }
}

fn utc(at: chrono::NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}

/// A decimal as text with exactly its column's scale (field `i` of [`FIELDS`]), so that
/// every stored value of a column has the same form (SQLite keeps the text).
fn fixed(d: rust_decimal::Decimal, i: usize) -> String {
    let mut d = d;
    d.rescale(FIELDS[i].precision_scale().1);
    d.to_string()
}

/// Pushes one row's values (after `seq`) onto a multi-row INSERT. Decimals go as their
/// exact text (SQLite keeps it as text; MySQL converts it exactly).
macro_rules! push_row {
    ($b:expr, $seq:expr, $o:expr) => {{
        let o: &OpenOrder = $o;
        $b.push_bind($seq as i64)
            .push_bind(o.order_no)
            .push_bind(o.line_no)
            .push_bind(o.customer_code.clone())
            .push_bind(o.customer_name.clone())
            .push_bind(o.item_code.clone())
            .push_bind(o.item_description.clone())
            .push_bind(fixed(o.qty_ordered, 6))
            .push_bind(fixed(o.qty_shipped, 7))
            .push_bind(fixed(o.qty_open, 8))
            .push_bind(fixed(o.unit_price, 9))
            .push_bind(fixed(o.line_amount, 10))
            .push_bind(o.currency.clone())
            .push_bind(o.order_date)
            .push_bind(o.requested_date)
            .push_bind(o.promised_date)
            .push_bind(o.warehouse.clone())
            .push_bind(o.status.clone())
            .push_bind(o.rush)
            .push_bind(o.erp_modified_at.map(utc));
    }};
}

/// One value in PostgreSQL's COPY text format.
fn copy_text(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn copy_row(out: &mut String, seq: u64, o: &OpenOrder) {
    let opt = |out: &mut String, v: Option<&str>| match v {
        Some(v) => copy_text(out, v),
        None => out.push_str("\\N"),
    };
    let _ = write!(out, "{seq}\t{}\t{}\t", o.order_no, o.line_no);
    copy_text(out, &o.customer_code);
    out.push('\t');
    copy_text(out, &o.customer_name);
    out.push('\t');
    copy_text(out, &o.item_code);
    out.push('\t');
    opt(out, o.item_description.as_deref());
    let _ = write!(
        out,
        "\t{}\t{}\t{}\t{}\t{}\t",
        fixed(o.qty_ordered, 6),
        fixed(o.qty_shipped, 7),
        fixed(o.qty_open, 8),
        fixed(o.unit_price, 9),
        fixed(o.line_amount, 10)
    );
    copy_text(out, &o.currency);
    let _ = write!(out, "\t{}\t", o.order_date);
    opt(out, o.requested_date.map(|d| d.to_string()).as_deref());
    out.push('\t');
    opt(out, o.promised_date.map(|d| d.to_string()).as_deref());
    out.push('\t');
    opt(out, o.warehouse.as_deref());
    out.push('\t');
    copy_text(out, &o.status);
    out.push_str(if o.rush { "\tt\t" } else { "\tf\t" });
    match o.erp_modified_at {
        Some(at) => {
            let _ = write!(out, "{}+00", at.format("%Y-%m-%d %H:%M:%S%.f"));
        }
        None => out.push_str("\\N"),
    }
    out.push('\n');
}

struct Reporter<'a> {
    report: &'a (dyn Fn(u64) + Send + Sync),
    last: Instant,
}

impl Reporter<'_> {
    fn tick(&mut self, staged: u64) {
        if self.last.elapsed() >= REPORT_EVERY {
            (self.report)(staged);
            self.last = Instant::now();
        }
    }
}

impl Sink {
    pub(super) async fn open(db: &DatabaseConnection) -> Result<Self, sqlx::Error> {
        let conn = match db.get_database_backend() {
            DbBackend::Sqlite => Conn::Sqlite(Some(db.get_sqlite_connection_pool().acquire().await?)),
            DbBackend::Postgres => Conn::Postgres(Some(db.get_postgres_connection_pool().acquire().await?)),
            _ => Conn::MySql(Some(db.get_mysql_connection_pool().acquire().await?)),
        };
        Ok(Sink { conn, clean: false })
    }

    fn backend(&self) -> DbBackend {
        match &self.conn {
            Conn::Sqlite(_) => DbBackend::Sqlite,
            Conn::Postgres(_) => DbBackend::Postgres,
            Conn::MySql(_) => DbBackend::MySql,
        }
    }

    /// Rows per staged batch: as many as the backend's bind limit allows.
    pub(super) fn batch_rows(&self) -> usize {
        let per_row = FIELDS.len() + 1;
        let limit = joblog_migrations::schema::max_bind_parameters;
        match &self.conn {
            Conn::Sqlite(_) => limit(DbBackend::Sqlite) / per_row,
            // COPY has no binds; this is only the hand-off size between the two tasks.
            Conn::Postgres(_) => 2_000,
            Conn::MySql(_) => limit(DbBackend::MySql) / per_row,
        }
    }

    async fn exec(&mut self, sql: String) -> Result<(), sqlx::Error> {
        let sql = AssertSqlSafe(sql);
        match &mut self.conn {
            Conn::Sqlite(Some(c)) => sqlx::raw_sql(sql).execute(&mut **c).await.map(drop),
            Conn::Postgres(Some(c)) => sqlx::raw_sql(sql).execute(&mut **c).await.map(drop),
            Conn::MySql(Some(c)) => sqlx::raw_sql(sql).execute(&mut **c).await.map(drop),
            _ => Err(sqlx::Error::PoolClosed),
        }
    }

    pub(super) async fn create_staging(&mut self) -> Result<(), sqlx::Error> {
        let backend = self.backend();
        self.exec(drop_staging(backend)).await?;
        self.exec(staging_ddl(backend)).await
    }

    /// Writes every batch received into the staging table; returns the row count.
    pub(super) async fn stage(
        &mut self,
        mut rx: mpsc::Receiver<Vec<OpenOrder>>,
        report: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64, sqlx::Error> {
        let mut staged = 0u64;
        let mut reporter = Reporter {
            report,
            last: Instant::now(),
        };
        let insert = format!("INSERT INTO {STAGING} (seq, {}) ", columns());
        match &mut self.conn {
            Conn::Sqlite(Some(c)) => {
                while let Some(batch) = rx.recv().await {
                    let mut qb = QueryBuilder::<Sqlite>::new(insert.clone());
                    let mut seq = staged;
                    qb.push_values(&batch, |mut b, o| {
                        seq += 1;
                        push_row!(b, seq, o)
                    });
                    qb.build().execute(&mut **c).await?;
                    staged += batch.len() as u64;
                    reporter.tick(staged);
                }
            }
            Conn::MySql(Some(c)) => {
                sqlx::raw_sql("START TRANSACTION").execute(&mut **c).await?;
                while let Some(batch) = rx.recv().await {
                    let mut qb = QueryBuilder::<MySql>::new(insert.clone());
                    let mut seq = staged;
                    qb.push_values(&batch, |mut b, o| {
                        seq += 1;
                        push_row!(b, seq, o)
                    });
                    qb.build().execute(&mut **c).await?;
                    staged += batch.len() as u64;
                    reporter.tick(staged);
                }
                sqlx::raw_sql("COMMIT").execute(&mut **c).await?;
            }
            Conn::Postgres(Some(c)) => {
                let statement = format!("COPY {STAGING} (seq, {}) FROM STDIN", columns());
                let mut copy = c.copy_in_raw(&statement).await?;
                let mut buf = String::with_capacity(1 << 20);
                let result: Result<(), sqlx::Error> = async {
                    while let Some(batch) = rx.recv().await {
                        for o in &batch {
                            staged += 1;
                            copy_row(&mut buf, staged, o);
                        }
                        if buf.len() >= 1 << 20 {
                            copy.send(std::mem::take(&mut buf).into_bytes()).await?;
                            buf.reserve(1 << 20);
                        }
                        reporter.tick(staged);
                    }
                    if !buf.is_empty() {
                        copy.send(buf.into_bytes()).await?;
                    }
                    Ok(())
                }
                .await;
                match result {
                    Ok(()) => {
                        copy.finish().await?;
                    }
                    Err(e) => {
                        let _ = copy.abort("sync-app: staging failed").await;
                        return Err(e);
                    }
                }
            }
            _ => return Err(sqlx::Error::PoolClosed),
        }
        Ok(staged)
    }

    /// In one transaction: count and delete the old rows, copy the staged ones across in
    /// batches of `batch` rows (calling `on_batch(i, rows)` after each), commit. Returns
    /// the previous row count and the rows inserted.
    pub(super) async fn swap(
        &mut self,
        total: u64,
        batch: u64,
        synced_at: DateTime<Utc>,
        on_batch: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(u64, u64), sqlx::Error> {
        let cols = columns();
        macro_rules! swap {
            ($c:expr, $db:ty, $begin:expr, $lock:expr, $copy:expr, $rebuild:expr) => {{
                let mut tx = match $begin {
                    Some(begin) => sea_orm::sqlx::Connection::begin_with(&mut **$c, begin).await?,
                    None => sea_orm::sqlx::Connection::begin(&mut **$c).await?,
                };
                // Two swaps at once (a manual `sync` while `serve` runs) take turns; on
                // PostgreSQL the second DELETE would otherwise skip the first one's rows.
                if let Some(lock) = $lock {
                    sqlx::query(lock).execute(&mut *tx).await?;
                }
                let previous = sqlx::query("DELETE FROM open_orders")
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                // SQLite: filling an indexed table row by row inserts into every index at
                // random places; building each index once afterwards, from sorted keys, is
                // several times faster. Readers are not held up (WAL: they keep the old
                // snapshot, indexes included), and the definitions come from the schema
                // the migrations made, so nothing is duplicated here.
                let indexes: Vec<(String, String)> = if $rebuild {
                    sqlx::query_as(
                        "SELECT name, sql FROM main.sqlite_master \
                         WHERE type = 'index' AND tbl_name = 'open_orders' AND sql IS NOT NULL",
                    )
                    .fetch_all(&mut *tx)
                    .await?
                } else {
                    Vec::new()
                };
                for (name, _) in &indexes {
                    let drop = AssertSqlSafe(format!("DROP INDEX main.\"{}\"", name.replace('"', "\"\"")));
                    sqlx::raw_sql(drop).execute(&mut *tx).await?;
                }
                let copy = AssertSqlSafe(format!($copy, cols = cols, staging = STAGING));
                let copy = copy.into_sql_str();
                let mut i = 0;
                let mut from = 0u64;
                let mut inserted = 0u64;
                while from < total {
                    let to = (from + batch).min(total);
                    let done = sqlx::query::<$db>(copy.clone())
                        .bind(synced_at)
                        .bind(from as i64)
                        .bind(to as i64)
                        .execute(&mut *tx)
                        .await?;
                    inserted += done.rows_affected();
                    i += 1;
                    on_batch(i, to - from);
                    from = to;
                }
                for (_, create) in indexes {
                    sqlx::raw_sql(AssertSqlSafe(create))
                        .execute(&mut *tx)
                        .await?;
                }
                if inserted != total {
                    // Dropping `tx` rolls back.
                    return Err(sqlx::Error::Protocol(format!(
                        "staged {total} rows but copied {inserted}; rolled back"
                    )));
                }
                tx.commit().await?;
                Ok((previous, inserted))
            }};
        }
        use sea_orm::sqlx::SqlSafeStr;
        match &mut self.conn {
            Conn::Sqlite(Some(c)) => swap!(
                c,
                Sqlite,
                Some("BEGIN IMMEDIATE"),
                None::<&'static str>,
                "INSERT INTO open_orders ({cols}, synced_at) SELECT {cols}, ? FROM temp.{staging} \
                 WHERE seq > ? AND seq <= ? ORDER BY seq",
                true
            ),
            Conn::Postgres(Some(c)) => swap!(
                c,
                Postgres,
                None::<&'static str>,
                Some("SELECT pg_advisory_xact_lock(7411150265)"),
                "INSERT INTO open_orders ({cols}, synced_at) SELECT {cols}, $1 FROM pg_temp.{staging} \
                 WHERE seq > $2 AND seq <= $3 ORDER BY seq",
                false
            ),
            Conn::MySql(Some(c)) => swap!(
                c,
                MySql,
                None::<&'static str>,
                None::<&'static str>,
                "INSERT INTO open_orders ({cols}, synced_at) SELECT {cols}, ? FROM {staging} \
                 WHERE seq > ? AND seq <= ? ORDER BY seq",
                false
            ),
            _ => Err(sqlx::Error::PoolClosed),
        }
    }

    /// Drops the staging table. If that fails the connection is closed instead of going
    /// back to the pool, so that no half-loaded temporary table outlives the import.
    pub(super) async fn close(&mut self) {
        let backend = self.backend();
        let dropped = self.exec(drop_staging(backend)).await;
        self.clean = true;
        if let Err(e) = dropped {
            tracing::warn!(error = %e, "sync-app: dropping the staging table failed; closing its connection");
            match &mut self.conn {
                Conn::Sqlite(c) => {
                    if let Some(c) = c.take() {
                        let _ = sqlx::Connection::close(c.detach()).await;
                    }
                }
                Conn::Postgres(c) => {
                    if let Some(c) = c.take() {
                        let _ = sqlx::Connection::close(c.detach()).await;
                    }
                }
                Conn::MySql(c) => {
                    if let Some(c) = c.take() {
                        let _ = sqlx::Connection::close(c.detach()).await;
                    }
                }
            }
        }
    }
}
