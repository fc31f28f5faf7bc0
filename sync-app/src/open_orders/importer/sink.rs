//! The per-backend half of the importer: one dedicated connection holding the sync lock,
//! the shadow table `open_orders_next` it fills and indexes, and the swap.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use joblog::DatabaseConnection;
use sea_orm::DbBackend;
use sea_orm::sqlx::{self, AssertSqlSafe, MySql, Postgres, QueryBuilder, Sqlite, pool::PoolConnection};
use tokio::sync::mpsc;

use crate::open_orders::search_index::{self, FTS, FTS_NEXT};
use crate::open_orders::{FIELDS, OpenOrder};

/// The live table.
const LIVE: &str = "open_orders";
/// The shadow table a sync fills and indexes before swapping it in.
pub(super) const SHADOW: &str = "open_orders_next";
/// MySQL: where `RENAME TABLE` parks the old snapshot until it is dropped.
const OLD: &str = "open_orders_old";
/// Suffix of the shadow's index (and PostgreSQL constraint) names until the swap.
const NEXT: &str = "_next";
/// Rows per staged chunk: one `Batch i` line each, and (SQLite, MySQL) one transaction.
pub(super) const CHUNK_ROWS: u64 = 10_000;
/// SQLite, MySQL: a chunk's transaction is committed early when the source has sent
/// nothing for this long, so that a slow source never keeps SQLite's write lock.
const IDLE_COMMIT: Duration = Duration::from_millis(200);
/// A progress line while staging at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// SQLite: rows of the shadow table indexed for the search per statement (each its own
/// transaction, so that joblog's writes wait for well under a second).
const FTS_CHUNK_ROWS: i64 = 50_000;
/// PostgreSQL: the sort memory the shadow table's index builds get (`maintenance_work_mem`).
const PG_INDEX_MEMORY_MB: i64 = 256;
/// PostgreSQL: the advisory-lock key of the sync (sync-app's migrations use 7411150264).
const PG_SYNC_LOCK: i64 = 7_411_150_265;
/// How long a sync waits for another one to finish.
const LOCK_WAIT: Duration = Duration::from_secs(3_600);

/// The dedicated connection, per backend (`None` once closed).
enum Conn {
    Sqlite(Option<PoolConnection<Sqlite>>),
    Postgres(Option<PoolConnection<Postgres>>),
    MySql(Option<PoolConnection<MySql>>),
}

/// SQLite's sync lock: an exclusive `flock` on a file beside the database (held by the
/// open file; the kernel releases it when the process dies), or, for a database with no
/// file, a process-wide mutex.
enum FileLock {
    File(#[allow(dead_code)] std::fs::File),
    Memory(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>),
}

static MEMORY_LOCK: LazyLock<Arc<tokio::sync::Mutex<()>>> = LazyLock::new(Arc::default);

/// One secondary index (or, on PostgreSQL, also the primary key) of the live table, as its
/// catalog describes it.
struct LiveIndex {
    /// Its name.
    name: String,
    /// SQLite: its `CREATE INDEX` text in `sqlite_master`; PostgreSQL: `pg_get_indexdef`;
    /// MySQL: the `ADD … INDEX` clause rebuilt from `information_schema.STATISTICS`.
    definition: String,
    /// PostgreSQL: the constraint the index backs (`PRIMARY KEY`, `UNIQUE`), as
    /// `(name, pg_get_constraintdef)`.
    constraint: Option<(String, String)>,
}

/// The importer's connection. If the import is abandoned half-way (its future dropped),
/// the connection is closed rather than returned to the pool: closing rolls back and
/// releases the sync lock (PostgreSQL, MySQL: they are the session's; SQLite: the lock
/// file is closed with the `Sink`). The half-built shadow table stays until the next sync
/// drops it.
pub(super) struct Sink {
    conn: Conn,
    clean: bool,
    /// SQLite: the database file, for the lock file beside it.
    sqlite_file: Option<PathBuf>,
    file_lock: Option<FileLock>,
    /// PostgreSQL, MySQL: the session holds the sync lock.
    session_locked: bool,
    indexes: Vec<LiveIndex>,
    /// SQLite: the live table has the search's FTS table, so the shadow gets one too.
    fts: bool,
    /// SQLite: the catalog text of the live FTS table and of its own tables, `(name, sql)`:
    /// renaming rewrites their quotes, and the swap writes them back as they were.
    fts_catalog: Vec<(String, String)>,
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

fn dq(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn bq(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
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

/// Pushes one row's values (and `synced_at`) onto a multi-row INSERT. Decimals go as
/// their exact text (SQLite keeps it as text; MySQL converts it exactly).
macro_rules! push_row {
    // The row is consumed: its strings move into the arguments (no copy per value).
    ($b:expr, $o:expr, $at:expr) => {{
        let o: OpenOrder = $o;
        $b.push_bind(o.order_no)
            .push_bind(o.line_no)
            .push_bind(o.customer_code)
            .push_bind(o.customer_name)
            .push_bind(o.item_code)
            .push_bind(o.item_description)
            .push_bind(fixed(o.qty_ordered, 6))
            .push_bind(fixed(o.qty_shipped, 7))
            .push_bind(fixed(o.qty_open, 8))
            .push_bind(fixed(o.unit_price, 9))
            .push_bind(fixed(o.line_amount, 10))
            .push_bind(o.currency)
            .push_bind(o.order_date)
            .push_bind(o.requested_date)
            .push_bind(o.promised_date)
            .push_bind(o.warehouse)
            .push_bind(o.status)
            .push_bind(o.rush)
            .push_bind(o.erp_modified_at.map(utc))
            .push_bind($at);
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

fn copy_row(out: &mut String, o: &OpenOrder, synced_at: &str) {
    let opt = |out: &mut String, v: Option<&str>| match v {
        Some(v) => copy_text(out, v),
        None => out.push_str("\\N"),
    };
    let _ = write!(out, "{}\t{}\t", o.order_no, o.line_no);
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
    out.push('\t');
    out.push_str(synced_at);
    out.push('\n');
}

/// The byte length of the SQL identifier `s` starts with (`"a""b"`, `[a]`, `` `a` ``, or
/// a bare word).
fn ident_len(s: &str) -> Option<usize> {
    let close = match s.chars().next()? {
        '"' => '"',
        '`' => '`',
        '[' => ']',
        _ => {
            let n = s
                .find(|c: char| c.is_whitespace() || c == '(' || c == '.')
                .unwrap_or(s.len());
            return (n > 0).then_some(n);
        }
    };
    let mut i = 1;
    let b = s.as_bytes();
    while i < b.len() {
        if b[i] == close as u8 {
            if close != ']' && b.get(i + 1) == Some(&(close as u8)) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// SQLite: `CREATE [UNIQUE] INDEX [IF NOT EXISTS] name ON table (…)…` as the same index
/// named `name_next` on the shadow table.
fn sqlite_index_on_shadow(sql: &str, name: &str) -> Option<String> {
    let upper = sql.to_ascii_uppercase();
    let mut at = upper.find("INDEX")? + "INDEX".len();
    at += sql[at..].len() - sql[at..].trim_start().len();
    if upper[at..].starts_with("IF NOT EXISTS") {
        at += "IF NOT EXISTS".len();
        at += sql[at..].len() - sql[at..].trim_start().len();
    }
    let head = &sql[..at];
    let mut rest = &sql[at + ident_len(&sql[at..])?..];
    rest = rest.trim_start();
    if !rest.to_ascii_uppercase().starts_with("ON") {
        return None;
    }
    rest = rest[2..].trim_start();
    let table = ident_len(rest)?;
    if rest[table..].starts_with('.') {
        return None; // schema-qualified: not what the migrations write
    }
    Some(format!(
        "{head}{} ON {} {}",
        dq(&format!("{name}{NEXT}")),
        dq(SHADOW),
        rest[table..].trim_start()
    ))
}

/// SQLite: the live table's `CREATE TABLE` text, naming the shadow table instead.
fn sqlite_table_as_shadow(sql: &str) -> Option<String> {
    let paren = sql.find('(')?;
    let head = &sql[..paren];
    let at = head.rfind(LIVE)?;
    Some(format!(
        "{}{SHADOW}{}{}",
        &head[..at],
        &head[at + LIVE.len()..],
        &sql[paren..]
    ))
}

/// PostgreSQL: `pg_get_indexdef` of a live index as the same index named `name_next` on
/// the shadow table.
fn pg_index_on_shadow(def: &str, name: &str) -> Option<String> {
    let unique = if def.starts_with("CREATE UNIQUE INDEX ") {
        "UNIQUE "
    } else if def.starts_with("CREATE INDEX ") {
        ""
    } else {
        return None;
    };
    let on = def.find(" ON ")?;
    let using = on + def[on..].find(" USING ")?;
    Some(format!(
        "CREATE {unique}INDEX {} ON {SHADOW}{}",
        dq(&format!("{name}{NEXT}")),
        &def[using..]
    ))
}

/// MySQL: one row of `information_schema.STATISTICS`: index name, `NON_UNIQUE`, index
/// type, column, `SUB_PART`, `COLLATION`.
type StatisticsRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn schema_error(what: String) -> sqlx::Error {
    sqlx::Error::Protocol(what)
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

/// Counts rows into chunks of [`CHUNK_ROWS`], calling `on_chunk(i, rows, staged)` as each
/// completes.
struct Chunks<'a> {
    on_chunk: &'a (dyn Fn(u64, u64, u64) + Send + Sync),
    index: u64,
    rows: u64,
}

impl Chunks<'_> {
    /// `n` more rows staged (`staged` in all); true when a chunk just completed.
    fn add(&mut self, n: u64, staged: u64) -> bool {
        self.rows += n;
        if staged.is_multiple_of(CHUNK_ROWS) {
            self.close(staged);
            return true;
        }
        false
    }
    fn close(&mut self, staged: u64) {
        if self.rows > 0 {
            self.index += 1;
            (self.on_chunk)(self.index, self.rows, staged);
            self.rows = 0;
        }
    }
}

impl Sink {
    pub(super) async fn open(db: &DatabaseConnection) -> Result<Self, sqlx::Error> {
        let mut sqlite_file = None;
        let conn = match db.get_database_backend() {
            DbBackend::Sqlite => {
                let pool = db.get_sqlite_connection_pool();
                let file = pool.connect_options().get_filename().to_owned();
                if file.is_file() {
                    sqlite_file = Some(file);
                }
                Conn::Sqlite(Some(pool.acquire().await?))
            }
            DbBackend::Postgres => Conn::Postgres(Some(db.get_postgres_connection_pool().acquire().await?)),
            _ => Conn::MySql(Some(db.get_mysql_connection_pool().acquire().await?)),
        };
        Ok(Sink {
            conn,
            clean: false,
            sqlite_file,
            file_lock: None,
            session_locked: false,
            indexes: Vec::new(),
            fts: false,
            fts_catalog: Vec::new(),
        })
    }

    /// Rows per INSERT (as many as the backend's bind limit allows) or, for PostgreSQL's
    /// COPY, per hand-off between the reading and the writing task. Always divides
    /// [`CHUNK_ROWS`] or is cut at its multiples by the reader.
    pub(super) fn batch_rows(&self) -> usize {
        let per_row = FIELDS.len() + 1;
        let limit = joblog_migrations::schema::max_bind_parameters;
        match &self.conn {
            Conn::Sqlite(_) => limit(DbBackend::Sqlite) / per_row,
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

    async fn count(&mut self, table: &str) -> Result<u64, sqlx::Error> {
        let sql = AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        let n: i64 = match &mut self.conn {
            Conn::Sqlite(Some(c)) => sqlx::query_scalar(sql).fetch_one(&mut **c).await?,
            Conn::Postgres(Some(c)) => sqlx::query_scalar(sql).fetch_one(&mut **c).await?,
            Conn::MySql(Some(c)) => sqlx::query_scalar(sql).fetch_one(&mut **c).await?,
            _ => return Err(sqlx::Error::PoolClosed),
        };
        Ok(n as u64)
    }

    /// Waits until no other sync of this database runs, and keeps it so until
    /// [`close`](Self::close) or the connection is closed.
    pub(super) async fn lock(&mut self) -> Result<(), sqlx::Error> {
        match &mut self.conn {
            Conn::Sqlite(_) => {
                let lock = match &self.sqlite_file {
                    Some(db) => {
                        let mut path = db.clone().into_os_string();
                        path.push("-sync-lock");
                        let file = std::fs::OpenOptions::new()
                            .create(true)
                            .truncate(false)
                            .write(true)
                            .open(&path)?;
                        let started = Instant::now();
                        loop {
                            match file.try_lock() {
                                Ok(()) => break,
                                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                                Err(std::fs::TryLockError::WouldBlock) => {
                                    return Err(schema_error(
                                        "another sync held the lock for an hour".into(),
                                    ));
                                }
                                Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
                            }
                        }
                        FileLock::File(file)
                    }
                    None => FileLock::Memory(MEMORY_LOCK.clone().lock_owned().await),
                };
                self.file_lock = Some(lock);
            }
            Conn::Postgres(Some(c)) => {
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(PG_SYNC_LOCK)
                    .execute(&mut **c)
                    .await?;
                self.session_locked = true;
            }
            Conn::MySql(Some(c)) => {
                let got: Option<i64> =
                    sqlx::query_scalar("SELECT GET_LOCK(CONCAT('sync_app_open_orders.', DATABASE()), ?)")
                        .bind(LOCK_WAIT.as_secs() as i64)
                        .fetch_one(&mut **c)
                        .await?;
                if got != Some(1) {
                    return Err(schema_error("another sync held the lock for an hour".into()));
                }
                self.session_locked = true;
            }
            _ => return Err(sqlx::Error::PoolClosed),
        }
        Ok(())
    }

    /// Drops what a killed sync left, reads the live table's indexes from the catalog and
    /// creates the shadow table from the live one's definition, without its secondary
    /// indexes.
    pub(super) async fn create_shadow(&mut self) -> Result<(), sqlx::Error> {
        match &mut self.conn {
            Conn::Sqlite(Some(c)) => {
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP TABLE IF EXISTS main.{SHADOW}; DROP TABLE IF EXISTS main.{FTS_NEXT}"
                )))
                .execute(&mut **c)
                .await?;
                self.fts = sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM main.sqlite_master WHERE type = 'table' AND name = ?",
                )
                .bind(FTS)
                .fetch_one(&mut **c)
                .await?
                    > 0;
                self.fts_catalog = sqlx::query_as(
                    "SELECT name, sql FROM main.sqlite_master WHERE type = 'table' \
                     AND (name = ? OR name LIKE ? ESCAPE '!') ORDER BY name",
                )
                .bind(FTS)
                .bind(format!("{}!_%", FTS.replace('_', "!_")))
                .fetch_all(&mut **c)
                .await?;
                let table: Option<String> = sqlx::query_scalar(
                    "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?",
                )
                .bind(LIVE)
                .fetch_optional(&mut **c)
                .await?;
                let table =
                    table.ok_or_else(|| schema_error(format!("no table {LIVE}: run the migrations")))?;
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT name, sql FROM main.sqlite_master \
                     WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL ORDER BY name",
                )
                .bind(LIVE)
                .fetch_all(&mut **c)
                .await?;
                self.indexes = rows
                    .into_iter()
                    .map(|(name, definition)| LiveIndex {
                        name,
                        definition,
                        constraint: None,
                    })
                    .collect();
                for index in &self.indexes {
                    if sqlite_index_on_shadow(&index.definition, &index.name).is_none() {
                        return Err(schema_error(format!(
                            "cannot read index {}: {}",
                            index.name, index.definition
                        )));
                    }
                }
                let shadow = sqlite_table_as_shadow(&table)
                    .ok_or_else(|| schema_error(format!("cannot read the definition of {LIVE}: {table}")))?;
                sqlx::raw_sql(AssertSqlSafe(shadow)).execute(&mut **c).await?;
            }
            Conn::Postgres(Some(c)) => {
                sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS {SHADOW}")))
                    .execute(&mut **c)
                    .await?;
                let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT i.relname::text, pg_get_indexdef(i.oid), con.conname::text, \
                     pg_get_constraintdef(con.oid) \
                     FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
                     LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid \
                     WHERE x.indrelid = to_regclass($1) ORDER BY i.relname",
                )
                .bind(LIVE)
                .fetch_all(&mut **c)
                .await?;
                self.indexes = rows
                    .into_iter()
                    .map(|(name, definition, con, condef)| LiveIndex {
                        name,
                        definition,
                        constraint: con.zip(condef),
                    })
                    .collect();
                for index in &self.indexes {
                    if index.constraint.is_none()
                        && pg_index_on_shadow(&index.definition, &index.name).is_none()
                    {
                        return Err(schema_error(format!(
                            "cannot read index {}: {}",
                            index.name, index.definition
                        )));
                    }
                }
                // Columns, defaults, identity, CHECK constraints, storage and comments;
                // the primary key and indexes come after the rows.
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "CREATE TABLE {SHADOW} (LIKE {LIVE} INCLUDING ALL EXCLUDING INDEXES)"
                )))
                .execute(&mut **c)
                .await?;
            }
            Conn::MySql(Some(c)) => {
                sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS {SHADOW}, {OLD}")))
                    .execute(&mut **c)
                    .await?;
                let rows: Vec<StatisticsRow> = sqlx::query_as(
                    "SELECT CAST(INDEX_NAME AS CHAR), CAST(NON_UNIQUE AS CHAR), CAST(INDEX_TYPE AS CHAR), \
                         CAST(COLUMN_NAME AS CHAR), CAST(SUB_PART AS CHAR), CAST(COLLATION AS CHAR) \
                         FROM information_schema.STATISTICS \
                         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME <> 'PRIMARY' \
                         ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                )
                .bind(LIVE)
                .fetch_all(&mut **c)
                .await?;
                let mut indexes: Vec<(String, String, String, Vec<String>)> = Vec::new();
                for (name, non_unique, kind, column, sub_part, collation) in rows {
                    let column = column.ok_or_else(|| {
                        schema_error(format!(
                            "index {name} has an expression part, which the sync cannot rebuild"
                        ))
                    })?;
                    let mut part = bq(&column);
                    if let Some(n) = sub_part {
                        let _ = write!(part, "({n})");
                    }
                    if collation.as_deref() == Some("D") {
                        part.push_str(" DESC");
                    }
                    match indexes.last_mut() {
                        Some(last) if last.0 == name => last.3.push(part),
                        _ => indexes.push((name, non_unique, kind, vec![part])),
                    }
                }
                let mut built = Vec::new();
                for (name, non_unique, kind, parts) in indexes {
                    let head = match (kind.as_str(), non_unique.as_str()) {
                        ("BTREE", "0") => "UNIQUE INDEX",
                        ("BTREE", _) => "INDEX",
                        ("FULLTEXT", _) => "FULLTEXT INDEX",
                        (other, _) => {
                            return Err(schema_error(format!(
                                "index {name} is of type {other}, which the sync cannot rebuild"
                            )));
                        }
                    };
                    let definition = format!("ADD {head} {} ({})", bq(&name), parts.join(", "));
                    built.push(LiveIndex {
                        name,
                        definition,
                        constraint: None,
                    });
                }
                self.indexes = built;
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE TABLE {SHADOW} LIKE {LIVE}")))
                    .execute(&mut **c)
                    .await?;
                if !self.indexes.is_empty() {
                    let drops: Vec<String> = self
                        .indexes
                        .iter()
                        .map(|i| format!("DROP INDEX {}", bq(&i.name)))
                        .collect();
                    sqlx::raw_sql(AssertSqlSafe(format!(
                        "ALTER TABLE {SHADOW} {}",
                        drops.join(", ")
                    )))
                    .execute(&mut **c)
                    .await?;
                }
            }
            _ => return Err(sqlx::Error::PoolClosed),
        }
        Ok(())
    }

    /// Writes every batch received into the shadow table, stamped `synced_at`; returns the
    /// row count. SQLite and MySQL commit every [`CHUNK_ROWS`] rows (and whenever the
    /// source pauses), PostgreSQL streams one COPY.
    pub(super) async fn stage(
        &mut self,
        mut rx: mpsc::Receiver<Vec<OpenOrder>>,
        synced_at: DateTime<Utc>,
        report: &(dyn Fn(u64) + Send + Sync),
        on_chunk: &(dyn Fn(u64, u64, u64) + Send + Sync),
    ) -> Result<u64, sqlx::Error> {
        let mut staged = 0u64;
        let mut reporter = Reporter {
            report,
            last: Instant::now(),
        };
        let mut chunks = Chunks {
            on_chunk,
            index: 0,
            rows: 0,
        };
        let insert = format!("INSERT INTO {SHADOW} ({}, synced_at) ", columns());
        macro_rules! stage_in_chunks {
            ($c:expr, $db:ty, $begin:expr) => {{
                let mut in_txn = false;
                loop {
                    let next = if in_txn {
                        match tokio::time::timeout(IDLE_COMMIT, rx.recv()).await {
                            Ok(next) => next,
                            Err(_) => {
                                // The source is slow: let other writers in meanwhile.
                                sqlx::raw_sql("COMMIT").execute(&mut **$c).await?;
                                in_txn = false;
                                rx.recv().await
                            }
                        }
                    } else {
                        rx.recv().await
                    };
                    let Some(batch) = next else { break };
                    if !in_txn {
                        sqlx::raw_sql($begin).execute(&mut **$c).await?;
                        in_txn = true;
                    }
                    let rows = batch.len() as u64;
                    let mut qb = QueryBuilder::<$db>::new(insert.clone());
                    qb.push_values(batch, |mut b, o| push_row!(b, o, synced_at));
                    qb.build().execute(&mut **$c).await?;
                    staged += rows;
                    if staged.is_multiple_of(CHUNK_ROWS) {
                        sqlx::raw_sql("COMMIT").execute(&mut **$c).await?;
                        in_txn = false;
                    }
                    chunks.add(rows, staged);
                    reporter.tick(staged);
                }
                if in_txn {
                    sqlx::raw_sql("COMMIT").execute(&mut **$c).await?;
                }
            }};
        }
        match &mut self.conn {
            Conn::Sqlite(Some(c)) => stage_in_chunks!(c, Sqlite, "BEGIN IMMEDIATE"),
            Conn::MySql(Some(c)) => stage_in_chunks!(c, MySql, "START TRANSACTION"),
            Conn::Postgres(Some(c)) => {
                let statement = format!("COPY {SHADOW} ({}, synced_at) FROM STDIN", columns());
                let at = synced_at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
                let mut copy = c.copy_in_raw(&statement).await?;
                let mut buf = String::with_capacity(1 << 20);
                let result: Result<(), sqlx::Error> = async {
                    while let Some(batch) = rx.recv().await {
                        for o in &batch {
                            copy_row(&mut buf, o, &at);
                        }
                        staged += batch.len() as u64;
                        if buf.len() >= 1 << 20 {
                            copy.send(std::mem::take(&mut buf).into_bytes()).await?;
                            buf.reserve(1 << 20);
                        }
                        chunks.add(batch.len() as u64, staged);
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
        chunks.close(staged);
        Ok(staged)
    }

    /// How many indexes [`build_indexes`](Self::build_indexes) builds (on SQLite, the
    /// search's FTS table counts as one).
    pub(super) fn index_count(&self) -> u64 {
        self.indexes.len() as u64 + u64::from(self.fts)
    }

    /// Builds the live table's indexes on the shadow table, each in a transaction of its
    /// own (SQLite: under `<name>_next`; PostgreSQL: `<name>_next`, constraints too;
    /// MySQL: the final names, in one `ALTER TABLE`). Calls `on_index(i)` as each is done.
    pub(super) async fn build_indexes(
        &mut self,
        on_index: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), sqlx::Error> {
        let mut statements = Vec::new();
        match &self.conn {
            Conn::Sqlite(_) => {
                for index in &self.indexes {
                    statements.push(
                        sqlite_index_on_shadow(&index.definition, &index.name)
                            .ok_or_else(|| schema_error(format!("cannot read index {}", index.name)))?,
                    );
                }
            }
            Conn::Postgres(_) => {
                for index in &self.indexes {
                    statements.push(match &index.constraint {
                        Some((name, def)) => format!(
                            "ALTER TABLE {SHADOW} ADD CONSTRAINT {} {def}",
                            dq(&format!("{name}{NEXT}"))
                        ),
                        None => pg_index_on_shadow(&index.definition, &index.name)
                            .ok_or_else(|| schema_error(format!("cannot read index {}", index.name)))?,
                    });
                }
            }
            Conn::MySql(_) => {
                if !self.indexes.is_empty() {
                    let adds: Vec<&str> = self.indexes.iter().map(|i| i.definition.as_str()).collect();
                    statements.push(format!("ALTER TABLE {SHADOW} {}", adds.join(", ")));
                }
            }
        }
        let all = statements.len() as u64;
        let per_statement = all + u64::from(self.fts) == self.index_count();
        // PostgreSQL's index builds get more than the default 64 MB of sort memory; this
        // session only, and never less than the server's own setting. (Measured at 1 M
        // rows: 32.6 → 30.7 s for all of them; the search's GIN index gains little.)
        let pg = matches!(self.conn, Conn::Postgres(_));
        if pg {
            self.exec(format!(
                "SELECT set_config('maintenance_work_mem', GREATEST(pg_size_bytes(current_setting('maintenance_work_mem')), \
                 {PG_INDEX_MEMORY_MB}::bigint * 1024 * 1024) / 1024 || 'kB', false)"
            ))
            .await?;
        }
        for (i, sql) in statements.into_iter().enumerate() {
            self.exec(sql).await?;
            if per_statement {
                on_index(i as u64 + 1);
            }
        }
        if pg {
            self.exec("RESET maintenance_work_mem".into()).await?;
        }
        if self.fts {
            self.fill_fts().await?;
        }
        if !per_statement || self.fts {
            on_index(self.index_count());
        }
        Ok(())
    }

    /// SQLite: the search's FTS table for the shadow's rows, filled in ranges of ids of
    /// [`FTS_CHUNK_ROWS`], each its own transaction.
    async fn fill_fts(&mut self) -> Result<(), sqlx::Error> {
        let Conn::Sqlite(Some(c)) = &mut self.conn else {
            return Err(sqlx::Error::PoolClosed);
        };
        let c = &mut **c;
        sqlx::raw_sql(AssertSqlSafe(search_index::sqlite_create_fts(FTS_NEXT)))
            .execute(&mut *c)
            .await?;
        let (lo, hi): (Option<i64>, Option<i64>) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT MIN(id), MAX(id) FROM main.{SHADOW}"
        )))
        .fetch_one(&mut *c)
        .await?;
        let (Some(mut lo), Some(hi)) = (lo, hi) else {
            return Ok(());
        };
        loop {
            let last = lo.saturating_add(FTS_CHUNK_ROWS - 1).min(hi);
            sqlx::raw_sql(AssertSqlSafe(search_index::sqlite_fill(
                FTS_NEXT, SHADOW, lo, last,
            )))
            .execute(&mut *c)
            .await?;
            if last >= hi {
                break;
            }
            lo = last + 1;
        }
        Ok(())
    }

    /// Rows of the live table (the snapshot about to be replaced; only syncs write it,
    /// and this one holds the sync lock).
    pub(super) async fn count_live(&mut self) -> Result<u64, sqlx::Error> {
        self.count(LIVE).await
    }

    /// In one short transaction: the old table goes, the shadow takes its name, its
    /// indexes (and constraints, sequence) take the names the old ones had.
    pub(super) async fn swap(&mut self) -> Result<(), sqlx::Error> {
        let indexes = std::mem::take(&mut self.indexes);
        let result = self.swap_inner(&indexes).await;
        self.indexes = indexes;
        result
    }

    async fn swap_inner(&mut self, indexes: &[LiveIndex]) -> Result<(), sqlx::Error> {
        match &mut self.conn {
            Conn::Sqlite(Some(c)) => {
                // SQLite has no ALTER INDEX … RENAME and index names are unique in the
                // schema, so the shadow's indexes were built as `<name>_next`; the names
                // (and the CREATE INDEX text, byte for byte the old one's) are written into
                // sqlite_master directly. Only the name and the text change: the index's
                // b-tree (rootpage), table and columns are what SQLite built, and DROP/ALTER
                // in this transaction already changed the schema cookie, so every other
                // connection reloads the schema; `writable_schema = RESET` reloads ours.
                let c = &mut **c;
                sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *c).await?;
                // The old table's search triggers go with it; the new FTS table takes the
                // old one's name and the triggers are made again for the new table.
                let mut sql = format!("DROP TABLE main.{LIVE}; ALTER TABLE main.{SHADOW} RENAME TO {LIVE};");
                if self.fts {
                    let _ = write!(
                        sql,
                        " DROP TABLE IF EXISTS main.{FTS}; ALTER TABLE main.{FTS_NEXT} RENAME TO {FTS};"
                    );
                    for trigger in search_index::sqlite_triggers() {
                        let _ = write!(sql, " {trigger};");
                    }
                }
                sql.push_str(" PRAGMA writable_schema = ON");
                sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *c).await?;
                for (name, text) in &self.fts_catalog {
                    let restored = sqlx::query(
                        "UPDATE main.sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                    )
                    .bind(text)
                    .bind(name)
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
                    if restored != 1 {
                        return Err(schema_error(format!("table {name} not found in the swap")));
                    }
                }
                for index in indexes {
                    let renamed = sqlx::query(
                        "UPDATE main.sqlite_master SET name = ?, sql = ? \
                         WHERE type = 'index' AND name = ? AND tbl_name = ?",
                    )
                    .bind(&index.name)
                    .bind(&index.definition)
                    .bind(format!("{}{NEXT}", index.name))
                    .bind(LIVE)
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
                    if renamed != 1 {
                        return Err(schema_error(format!(
                            "index {}{NEXT} not found in the swap",
                            index.name
                        )));
                    }
                }
                sqlx::raw_sql("PRAGMA writable_schema = RESET")
                    .execute(&mut *c)
                    .await?;
                sqlx::raw_sql("COMMIT").execute(&mut *c).await?;
            }
            Conn::Postgres(Some(c)) => {
                let mut tx = sqlx::Connection::begin(&mut **c).await?;
                let mut sql = format!("DROP TABLE {LIVE}; ALTER TABLE {SHADOW} RENAME TO {LIVE};");
                for index in indexes {
                    match &index.constraint {
                        Some((name, _)) => {
                            let _ = write!(
                                sql,
                                " ALTER TABLE {LIVE} RENAME CONSTRAINT {} TO {};",
                                dq(&format!("{name}{NEXT}")),
                                dq(name)
                            );
                        }
                        None => {
                            let _ = write!(
                                sql,
                                " ALTER INDEX {} RENAME TO {};",
                                dq(&format!("{}{NEXT}", index.name)),
                                dq(&index.name)
                            );
                        }
                    }
                }
                sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
                // What LIKE named after the shadow table: the identity sequence (its own
                // name follows the table's), CHECK constraints named by default.
                let renames: Vec<(String, String)> = sqlx::query_as(
                    "SELECT 'SEQUENCE', s.relname::text FROM pg_depend d \
                     JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
                     WHERE d.classid = 'pg_class'::regclass AND d.refobjid = to_regclass($1) \
                     AND d.deptype IN ('a', 'i') AND strpos(s.relname, $2) = 1 \
                     UNION ALL SELECT 'CONSTRAINT', conname::text FROM pg_constraint \
                     WHERE conrelid = to_regclass($1) AND strpos(conname, $2) = 1",
                )
                .bind(LIVE)
                .bind(SHADOW)
                .fetch_all(&mut *tx)
                .await?;
                for (kind, name) in renames {
                    let new = format!("{LIVE}{}", &name[SHADOW.len()..]);
                    let sql = if kind == "SEQUENCE" {
                        format!("ALTER SEQUENCE {} RENAME TO {}", dq(&name), dq(&new))
                    } else {
                        format!(
                            "ALTER TABLE {LIVE} RENAME CONSTRAINT {} TO {}",
                            dq(&name),
                            dq(&new)
                        )
                    };
                    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            Conn::MySql(Some(c)) => {
                // Atomic: readers see the old table or the new one, never neither.
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "RENAME TABLE {LIVE} TO {OLD}, {SHADOW} TO {LIVE}"
                )))
                .execute(&mut **c)
                .await?;
                sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {OLD}")))
                    .execute(&mut **c)
                    .await?;
            }
            _ => return Err(sqlx::Error::PoolClosed),
        }
        Ok(())
    }

    /// Ends the sync: after a failure, rolls back and drops the shadow table; releases the
    /// sync lock; the connection goes back to the pool. If any of that fails the
    /// connection is closed instead (which releases the lock and ends any transaction);
    /// a shadow table left behind is dropped by the next sync.
    pub(super) async fn close(&mut self, failed: bool) {
        let cleanup = async {
            if failed {
                // Outside a transaction this is a no-op (PostgreSQL: a warning).
                if !matches!(self.conn, Conn::Postgres(_)) {
                    let _ = self.exec("ROLLBACK".into()).await;
                } else {
                    self.exec("ROLLBACK".into()).await?;
                }
                if matches!(self.conn, Conn::Sqlite(_)) {
                    // In case the swap failed half-way (the transaction is rolled back).
                    self.exec("PRAGMA writable_schema = RESET".into()).await?;
                }
                self.exec(format!("DROP TABLE IF EXISTS {SHADOW}")).await?;
                if matches!(self.conn, Conn::Sqlite(_)) {
                    self.exec(format!("DROP TABLE IF EXISTS main.{FTS_NEXT}")).await?;
                }
            }
            if self.session_locked {
                match &self.conn {
                    Conn::Postgres(_) => {
                        self.exec(format!("SELECT pg_advisory_unlock({PG_SYNC_LOCK})"))
                            .await?
                    }
                    _ => {
                        self.exec("DO RELEASE_LOCK(CONCAT('sync_app_open_orders.', DATABASE()))".into())
                            .await?
                    }
                }
                self.session_locked = false;
            }
            Ok::<(), sqlx::Error>(())
        };
        let done = tokio::time::timeout(Duration::from_secs(30), cleanup).await;
        self.file_lock = None;
        match done {
            Ok(Ok(())) => self.clean = true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "sync-app: ending the sync failed; closing its connection");
            }
            Err(_) => {
                tracing::warn!("sync-app: ending the sync timed out; closing its connection");
            }
        }
        if !self.clean {
            self.clean = true;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_definitions_move_to_the_shadow_table() {
        assert_eq!(
            sqlite_index_on_shadow(
                r#"CREATE UNIQUE INDEX "uq_open_orders_order_line" ON "open_orders" ("order_no", "line_no")"#,
                "uq_open_orders_order_line"
            )
            .as_deref(),
            Some(
                r#"CREATE UNIQUE INDEX "uq_open_orders_order_line_next" ON "open_orders_next" ("order_no", "line_no")"#
            )
        );
        assert_eq!(
            sqlite_index_on_shadow(
                "create index if not exists ix on open_orders(status) where x",
                "ix"
            )
            .as_deref(),
            Some(r#"create index if not exists "ix_next" ON "open_orders_next" (status) where x"#)
        );
        assert_eq!(
            sqlite_table_as_shadow(r#"CREATE TABLE "open_orders" ( "id" integer )"#).as_deref(),
            Some(r#"CREATE TABLE "open_orders_next" ( "id" integer )"#)
        );
        assert_eq!(
            pg_index_on_shadow(
                "CREATE INDEX idx_open_orders_status ON public.open_orders USING btree (status)",
                "idx_open_orders_status"
            )
            .as_deref(),
            Some(r#"CREATE INDEX "idx_open_orders_status_next" ON open_orders_next USING btree (status)"#)
        );
    }
}
