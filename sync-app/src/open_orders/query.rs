//! Reading `open_orders` for the page: search, sort, pages, totals, last sync.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};

use super::{OpenOrder, search_index};

/// Largest page size accepted.
pub const MAX_PER_PAGE: u32 = 500;

/// Columns the page can sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Order number, then line (the default).
    #[default]
    Order,
    /// Order date.
    OrderDate,
    /// Requested date.
    RequestedDate,
    /// Promised date.
    PromisedDate,
    /// Customer name.
    Customer,
    /// Item code.
    Item,
    /// Open quantity.
    QtyOpen,
    /// Line amount.
    Amount,
    /// Status text.
    Status,
}

impl Sort {
    /// Every sort, with its URL key.
    pub const ALL: [(Sort, &'static str); 9] = [
        (Sort::Order, "order"),
        (Sort::OrderDate, "order_date"),
        (Sort::RequestedDate, "requested_date"),
        (Sort::PromisedDate, "promised_date"),
        (Sort::Customer, "customer"),
        (Sort::Item, "item"),
        (Sort::QtyOpen, "qty_open"),
        (Sort::Amount, "amount"),
        (Sort::Status, "status"),
    ];

    /// The URL key.
    pub fn key(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("order", |(_, k)| k)
    }

    /// The ORDER BY terms for this sort in direction `dir` (`ASC`/`DESC`), then order
    /// number and line. Columns are qualified with `t` (the table or its alias): the SELECT
    /// list aliases the decimals as text.
    fn order_by(self, backend: DbBackend, dir: &str, t: &str) -> String {
        format!(
            "{}, {t}.order_no {dir}, {t}.line_no {dir}",
            self.sort_terms(backend, dir, t)
        )
    }

    /// The column this sort reads besides order number and line, if any.
    fn column(self) -> Option<&'static str> {
        match self {
            Sort::Order => None,
            Sort::OrderDate => Some("order_date"),
            Sort::RequestedDate => Some("requested_date"),
            Sort::PromisedDate => Some("promised_date"),
            Sort::Customer => Some("customer_name"),
            Sort::Item => Some("item_code"),
            Sort::QtyOpen => Some("qty_open"),
            Sort::Amount => Some("line_amount"),
            Sort::Status => Some("status"),
        }
    }

    fn sort_terms(self, backend: DbBackend, dir: &str, t: &str) -> String {
        let number = |col: &str| match backend {
            // SQLite keeps decimals as text with their column's scale: order by the
            // double first, then — where doubles tie beyond 15 digits — by the text, which
            // for equal signs and lengths orders like the number (reversed if negative).
            DbBackend::Sqlite => {
                let other = if dir == "ASC" { "DESC" } else { "ASC" };
                format!(
                    "CAST({t}.{col} AS REAL) {dir}, \
                     CASE WHEN {t}.{col} LIKE '-%' THEN NULL ELSE LENGTH({t}.{col}) END {dir}, \
                     CASE WHEN {t}.{col} LIKE '-%' THEN NULL ELSE {t}.{col} END {dir}, \
                     CASE WHEN {t}.{col} LIKE '-%' THEN LENGTH({t}.{col}) END {other}, \
                     CASE WHEN {t}.{col} LIKE '-%' THEN {t}.{col} END {other}"
                )
            }
            _ => format!("{t}.{col} {dir}"),
        };
        let plain = |col: &str| format!("{t}.{col} {dir}");
        match self {
            Sort::Order => plain("order_no"),
            Sort::OrderDate => plain("order_date"),
            Sort::RequestedDate => plain("requested_date"),
            Sort::PromisedDate => plain("promised_date"),
            Sort::Customer => plain("customer_name"),
            Sort::Item => plain("item_code"),
            Sort::QtyOpen => number("qty_open"),
            Sort::Amount => number("line_amount"),
            Sort::Status => plain("status"),
        }
    }
}

impl FromStr for Sort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == s)
            .map(|(sort, _)| *sort)
            .ok_or_else(|| format!("unknown sort `{s}`"))
    }
}

/// What the page asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderQuery {
    /// Matches an order number exactly, or the start of a customer code / item code, or
    /// any part of a customer name / item description (case-insensitive for ASCII).
    pub search: Option<String>,
    /// Sort column.
    pub sort: Sort,
    /// Descending.
    pub descending: bool,
    /// 1-based page.
    pub page: u32,
    /// Rows per page (clamped to 1..=[`MAX_PER_PAGE`]).
    pub per_page: u32,
}

impl Default for OrderQuery {
    fn default() -> Self {
        Self {
            search: None,
            sort: Sort::Order,
            descending: false,
            page: 1,
            per_page: 50,
        }
    }
}

/// A row of `open_orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    /// Surrogate key (the order in which the sync inserted it).
    pub id: i64,
    /// The order line.
    pub order: OpenOrder,
    /// When the sync that wrote it ran.
    pub synced_at: DateTime<Utc>,
}

/// One page plus totals over every matching row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrdersPage {
    /// The rows of this page.
    pub rows: Vec<StoredOrder>,
    /// Rows matching the search.
    pub total_rows: u64,
    /// Sum of `line_amount` per currency over the matching rows.
    pub amount_by_currency: BTreeMap<String, Decimal>,
}

const SELECT: &str = "id, order_no, line_no, customer_code, customer_name, item_code, item_description, \
     qty_ordered, qty_shipped, qty_open, unit_price, line_amount, currency, order_date, requested_date, \
     promised_date, warehouse, status, rush, erp_modified_at, synced_at";

/// The page's SELECT list: exact decimals and dates as text on every backend.
fn columns(backend: DbBackend, table: &str) -> Vec<String> {
    let cast = |c: &str| match backend {
        DbBackend::Postgres => format!("{table}.{c}::text AS {c}"),
        DbBackend::MySql => format!("CAST({table}.{c} AS CHAR) AS {c}"),
        _ => format!("{table}.{c} AS {c}"),
    };
    SELECT
        .split(", ")
        .map(|c| match c {
            // Exact decimals and dates come back as text on every backend.
            "qty_ordered" | "qty_shipped" | "qty_open" | "unit_price" | "line_amount" | "order_date"
            | "requested_date" | "promised_date" => cast(c),
            "rush" => format!("CASE WHEN {table}.rush THEN 1 ELSE 0 END AS rush"),
            _ => format!("{table}.{c} AS {c}"),
        })
        .collect()
}

struct Where {
    sql: String,
    values: Vec<Value>,
}

fn placeholder(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => "?".into(),
    }
}

/// Escapes LIKE wildcards (escape character `!`).
fn like_escape(s: &str) -> String {
    s.replace('!', "!!").replace('%', "!%").replace('_', "!_")
}

/// The search's WHERE clause: the exact conditions (an order number, the start of a code,
/// a part of a name or description), and, for a term the search index can serve, the
/// candidate rows it finds — so that the exact conditions are checked only on those.
fn search_clause(backend: DbBackend, search: Option<&str>) -> Where {
    let Some(term) = search.map(str::trim).filter(|s| !s.is_empty()) else {
        return Where {
            sql: String::new(),
            values: Vec::new(),
        };
    };
    let like = if backend == DbBackend::Postgres {
        "ILIKE"
    } else {
        "LIKE"
    };
    let mut values: Vec<Value> = Vec::new();
    let mut parts = Vec::new();
    let order_no = term.parse::<i64>().ok();
    if let Some(n) = order_no {
        values.push(n.into());
        parts.push(format!("order_no = {}", placeholder(backend, values.len())));
    }
    let prefix = format!("{}%", like_escape(term));
    let contains = format!("%{}%", like_escape(term));
    // Names and descriptions first: most matches are there, and the database stops at the
    // first condition a row meets (PostgreSQL's `ILIKE` lowercases the whole value each time).
    for (col, pattern) in [
        ("customer_name", &contains),
        ("item_description", &contains),
        ("customer_code", &prefix),
        ("item_code", &prefix),
    ] {
        values.push(pattern.clone().into());
        parts.push(format!(
            "{col} {like} {} ESCAPE '!'",
            placeholder(backend, values.len())
        ));
    }
    let mut sql = format!(" WHERE ({})", parts.join(" OR "));
    // SQLite: the FTS5 index finds a superset of the rows the exact conditions accept
    // (every column match is a match of the indexed text); an order number is looked up on
    // its own.
    // (SQLite's `?` are bound in the order they appear: the order number comes first.)
    let indexed = term.chars().count() >= search_index::MIN_INDEXED_CHARS;
    if indexed && backend == DbBackend::Sqlite {
        let mut candidates = String::new();
        if let Some(n) = order_no {
            values.push(n.into());
            candidates = format!(
                "SELECT id FROM open_orders WHERE order_no = {} UNION ALL ",
                placeholder(backend, values.len())
            );
        }
        values.push(search_index::fts_phrase(term).into());
        candidates.push_str(&format!(
            "SELECT rowid FROM {fts} WHERE {fts} MATCH {}",
            placeholder(backend, values.len()),
            fts = search_index::FTS,
        ));
        sql.push_str(&format!(" AND open_orders.id IN ({candidates})"));
    }
    // PostgreSQL: the exact conditions are the trigram index's own (one index over the four
    // columns), and the order number's unique index serves the first; nothing to add.
    Where { sql, values }
}

fn text(row: &QueryResult, col: &str) -> Result<String, DbErr> {
    row.try_get::<String>("", col)
}

fn decimal(row: &QueryResult, col: &str) -> Result<Decimal, DbErr> {
    let t = text(row, col)?;
    Decimal::from_str(&t).map_err(|e| DbErr::Type(format!("{col}: `{t}` is not a decimal: {e}")))
}

fn date(row: &QueryResult, col: &str) -> Result<Option<NaiveDate>, DbErr> {
    match row.try_get::<Option<String>>("", col)? {
        None => Ok(None),
        Some(t) => NaiveDate::parse_from_str(&t, "%Y-%m-%d")
            .map(Some)
            .map_err(|e| DbErr::Type(format!("{col}: `{t}` is not a date: {e}"))),
    }
}

fn stored(row: &QueryResult) -> Result<StoredOrder, DbErr> {
    let modified: Option<DateTime<Utc>> = row.try_get("", "erp_modified_at")?;
    let rush: i64 = row
        .try_get::<i32>("", "rush")
        .map(i64::from)
        .or_else(|_| row.try_get("", "rush"))?;
    Ok(StoredOrder {
        id: row.try_get("", "id")?,
        order: OpenOrder {
            order_no: row.try_get("", "order_no")?,
            line_no: row.try_get("", "line_no")?,
            customer_code: text(row, "customer_code")?,
            customer_name: text(row, "customer_name")?,
            item_code: text(row, "item_code")?,
            item_description: row.try_get("", "item_description")?,
            qty_ordered: decimal(row, "qty_ordered")?,
            qty_shipped: decimal(row, "qty_shipped")?,
            qty_open: decimal(row, "qty_open")?,
            unit_price: decimal(row, "unit_price")?,
            line_amount: decimal(row, "line_amount")?,
            currency: text(row, "currency")?,
            order_date: date(row, "order_date")?.ok_or_else(|| DbErr::Type("order_date is NULL".into()))?,
            requested_date: date(row, "requested_date")?,
            promised_date: date(row, "promised_date")?,
            warehouse: row.try_get("", "warehouse")?,
            status: text(row, "status")?,
            rush: rush != 0,
            erp_modified_at: modified.map(|m| m.naive_utc()),
        },
        synced_at: row.try_get("", "synced_at")?,
    })
}

/// [`page`] inside one read-only transaction (repeatable read where the database has
/// it), so that its rows and totals come from the same snapshot even if a sync commits in
/// between.
pub async fn page_consistent(db: &sea_orm::DatabaseConnection, q: &OrderQuery) -> Result<OrdersPage, DbErr> {
    use sea_orm::{AccessMode, IsolationLevel, TransactionTrait};
    let (isolation, access) = match db.get_database_backend() {
        // SQLite: every transaction reads one snapshot; it has no isolation levels to set.
        DbBackend::Sqlite => (None, None),
        _ => (Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)),
    };
    let txn = db.begin_with_config(isolation, access).await?;
    if txn.get_database_backend() == DbBackend::Postgres {
        // A plan for the term at hand: a generic plan cannot tell that a two-letter term
        // gives the trigram index nothing to look up (it would read the whole index).
        txn.execute_unprepared("SET LOCAL plan_cache_mode = force_custom_plan")
            .await?;
    }
    let result = page(&txn, q).await;
    txn.commit().await?;
    result
}

/// One page of open orders with totals over the whole search.
///
/// With a search, one statement finds the matching rows once and returns both the page and
/// the totals (the rows a term matches are looked up, checked and read once, not once for
/// the page and again for the totals). Without one, the page reads its rows in index order
/// and the totals are one more statement over the table.
pub async fn page(db: &impl ConnectionTrait, q: &OrderQuery) -> Result<OrdersPage, DbErr> {
    let backend = db.get_database_backend();
    let per_page = q.per_page.clamp(1, MAX_PER_PAGE);
    let page = q.page.max(1);
    let filter = search_clause(backend, q.search.as_deref());
    let dir = if q.descending { "DESC" } else { "ASC" };
    let offset = u64::from(page - 1) * u64::from(per_page);
    // (Tried on PostgreSQL: the page and the totals as two statements. A fragment got faster
    // — the page walked the order's index — but an order number took 2.8 s: the planner
    // walked the whole index for the one row. The CTE finds the matches first, always.)
    if !filter.sql.is_empty() {
        match searched_page(db, q, &filter, per_page, offset).await {
            Err(e) if backend == DbBackend::Sqlite && e.to_string().contains("integer overflow") => {}
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
        // Amounts beyond 64-bit cents (SQLite): the page, then the totals summed here.
    }
    let order = q.sort.order_by(backend, dir, "open_orders");
    let sql = format!(
        "SELECT {} FROM open_orders{} ORDER BY {order} LIMIT {per_page} OFFSET {offset}",
        columns(backend, "open_orders").join(", "),
        filter.sql
    );
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            filter.values.clone(),
        ))
        .await?
        .iter()
        .map(stored)
        .collect::<Result<Vec<_>, _>>()?;

    let (total_rows, amount_by_currency) = totals(db, &filter).await?;
    Ok(OrdersPage {
        rows,
        total_rows,
        amount_by_currency,
    })
}

/// The sum of `line_amount` as text and, on SQLite, the longest amount (which says whether
/// the integer sum of cents could have overflowed).
fn sum_expressions(backend: DbBackend) -> (&'static str, &'static str) {
    // SQLite keeps decimals as canonical text with exactly two decimals: dropping the
    // point gives whole cents, summed exactly as integers. Amounts too long for a 64-bit
    // integer, or a sum that overflows one, are summed in Rust instead, exactly.
    match backend {
        DbBackend::Sqlite => (
            "CAST(SUM(CAST(REPLACE(line_amount, '.', '') AS INTEGER)) AS TEXT)",
            "MAX(LENGTH(line_amount))",
        ),
        DbBackend::Postgres => ("SUM(line_amount)::text", "CAST(NULL AS BIGINT)"),
        _ => ("CAST(SUM(line_amount) AS CHAR)", "CAST(NULL AS SIGNED)"),
    }
}

/// Adds one row of totals (`currency`, `n`, `total`, `longest`) to the running totals;
/// `false` when SQLite's integer sum cannot be trusted (amounts of 19 characters or more).
fn add_totals_row(
    backend: DbBackend,
    row: &QueryResult,
    total_rows: &mut u64,
    by_currency: &mut BTreeMap<String, Decimal>,
) -> Result<bool, DbErr> {
    if backend == DbBackend::Sqlite && row.try_get::<Option<i64>>("", "longest")?.unwrap_or(0) >= 19 {
        return Ok(false);
    }
    let n: i64 = row.try_get("", "n")?;
    *total_rows += n as u64;
    let mut total = decimal(row, "total")?;
    if backend == DbBackend::Sqlite {
        total.set_scale(2).map_err(|e| DbErr::Type(e.to_string()))?;
    }
    by_currency.insert(text(row, "currency")?, total);
    Ok(true)
}

/// A searched page and its totals in one statement: the matching rows are found once (a
/// materialized CTE), then the page is sorted from them and the totals grouped from them.
/// `None` when SQLite's integer sums cannot be trusted (the caller sums by hand).
async fn searched_page(
    db: &impl ConnectionTrait,
    q: &OrderQuery,
    filter: &Where,
    per_page: u32,
    offset: u64,
) -> Result<Option<OrdersPage>, DbErr> {
    let backend = db.get_database_backend();
    let dir = if q.descending { "DESC" } else { "ASC" };
    let page_columns = columns(backend, "open_orders");
    let (sum, longest) = sum_expressions(backend);
    let (null_bigint, null_text) = match backend {
        DbBackend::Postgres => ("CAST(NULL AS BIGINT)", "CAST(NULL AS TEXT)"),
        DbBackend::MySql => ("CAST(NULL AS SIGNED)", "CAST(NULL AS CHAR)"),
        _ => ("NULL", "NULL"),
    };
    // The totals branch fills the page's columns with NULL, except the currency.
    let totals_columns: Vec<&str> = SELECT
        .split(", ")
        .map(|c| if c == "currency" { "currency" } else { "NULL" })
        .collect();
    // The matches, once, with only what the page's order and the totals need; then the
    // page's rows read by id. MySQL / MariaDB know no MATERIALIZED (nor LIMIT inside IN).
    let materialized = if backend == DbBackend::MySql {
        ""
    } else {
        "MATERIALIZED "
    };
    let mut kept = vec!["id", "order_no", "line_no", "currency", "line_amount"];
    if let Some(col) = q.sort.column().filter(|c| !kept.contains(c)) {
        kept.push(col);
    }
    let sql = format!(
        "WITH m AS {materialized}(SELECT {kept} FROM open_orders{filter}) \
         SELECT 0 AS part, ROW_NUMBER() OVER (ORDER BY {page_order}) AS rn, {page_columns}, \
         {null_bigint} AS n, {null_text} AS total, {null_bigint} AS longest \
         FROM (SELECT id FROM m ORDER BY {m_order} LIMIT {per_page} OFFSET {offset}) shown \
         JOIN open_orders ON open_orders.id = shown.id \
         UNION ALL \
         SELECT 1, NULL, {totals_columns}, COUNT(*), {sum}, {longest} FROM m GROUP BY currency \
         ORDER BY part, rn",
        kept = kept.join(", "),
        filter = filter.sql,
        page_order = q.sort.order_by(backend, dir, "open_orders"),
        m_order = q.sort.order_by(backend, dir, "m"),
        page_columns = page_columns.join(", "),
        totals_columns = totals_columns.join(", "),
    );
    let result = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            filter.values.clone(),
        ))
        .await?;
    let mut rows = Vec::new();
    let mut total_rows = 0u64;
    let mut amount_by_currency = BTreeMap::new();
    for row in &result {
        let part: i64 = row
            .try_get::<i32>("", "part")
            .map(i64::from)
            .or_else(|_| row.try_get("", "part"))?;
        if part == 0 {
            rows.push(stored(row)?);
        } else if !add_totals_row(backend, row, &mut total_rows, &mut amount_by_currency)? {
            return Ok(None);
        }
    }
    Ok(Some(OrdersPage {
        rows,
        total_rows,
        amount_by_currency,
    }))
}

/// Row count and exact `line_amount` sums per currency of the rows matching `filter`.
async fn totals(
    db: &impl ConnectionTrait,
    filter: &Where,
) -> Result<(u64, BTreeMap<String, Decimal>), DbErr> {
    let backend = db.get_database_backend();
    let (sum, longest) = sum_expressions(backend);
    let sql = format!(
        "SELECT currency, COUNT(*) AS n, {sum} AS total, {longest} AS longest \
         FROM open_orders{} GROUP BY currency",
        filter.sql
    );
    let result = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            sql,
            filter.values.clone(),
        ))
        .await;
    let rows = match result {
        Ok(rows) => rows,
        Err(e) if backend == DbBackend::Sqlite && e.to_string().contains("integer overflow") => {
            return totals_by_hand(db, filter).await;
        }
        Err(e) => return Err(e),
    };
    let mut total_rows = 0u64;
    let mut by_currency = BTreeMap::new();
    for row in rows {
        if !add_totals_row(backend, &row, &mut total_rows, &mut by_currency)? {
            return totals_by_hand(db, filter).await;
        }
    }
    Ok((total_rows, by_currency))
}

/// The exact sums computed from every matching row (SQLite, amounts beyond 64-bit cents).
async fn totals_by_hand(
    db: &impl ConnectionTrait,
    filter: &Where,
) -> Result<(u64, BTreeMap<String, Decimal>), DbErr> {
    let sql = format!("SELECT currency, line_amount FROM open_orders{}", filter.sql);
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            filter.values.clone(),
        ))
        .await?;
    let mut by_currency = BTreeMap::<String, Decimal>::new();
    for row in &rows {
        let amount = decimal(row, "line_amount")?;
        let slot = by_currency.entry(text(row, "currency")?).or_default();
        *slot = slot
            .checked_add(amount)
            .ok_or_else(|| DbErr::Type("line_amount total exceeds 28 digits".into()))?;
    }
    Ok((rows.len() as u64, by_currency))
}

/// When the current snapshot was written (`synced_at` of its rows), if there is one.
pub async fn snapshot_time(db: &impl ConnectionTrait) -> Result<Option<DateTime<Utc>>, DbErr> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT synced_at FROM open_orders ORDER BY id LIMIT 1",
        ))
        .await?;
    row.map(|r| r.try_get("", "synced_at")).transpose()
}
