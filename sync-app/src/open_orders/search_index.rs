//! The Open Orders search's index, in one place for the migration that creates it, the
//! sync that rebuilds it beside the shadow table, and the query that uses it.
//!
//! The search matches an order number exactly, the start of a customer or item code, or
//! any part of a customer name or item description. The index finds the candidate rows
//! for a term of [`MIN_INDEXED_CHARS`] or more; the exact conditions then decide, so the
//! index never changes what is found, only how fast:
//!
//! - **SQLite**: an FTS5 table with the trigram tokenizer over the four text columns,
//!   external content (`open_orders`, rowid = `id`): it stores the trigrams, not the text.
//!   The sync fills a new one beside `open_orders_next` and renames it into place with the
//!   table; triggers keep it in step with rows written by anything else.
//! - **PostgreSQL**: a `pg_trgm` GIN index over the four columns (one index, a column
//!   each) — an ordinary index of `open_orders`, so the sync rebuilds it from the catalog
//!   like the others. The exact conditions are its conditions: the planner ORs one bitmap
//!   per column, and the recheck is the exact match itself.
//! - **MySQL / MariaDB**: none (MariaDB has no n-gram full-text parser; a word index
//!   would not find parts of words): the search reads the table.

/// Shortest term the index can serve (a trigram); shorter ones read the table.
pub(crate) const MIN_INDEXED_CHARS: usize = 3;

/// SQLite: the live FTS table.
pub(crate) const FTS: &str = "open_orders_fts";
/// SQLite: the one a sync fills beside `open_orders_next`.
pub(crate) const FTS_NEXT: &str = "open_orders_next_fts";

/// The indexed columns, in the FTS table's order.
const COLUMNS: &str = "customer_code, customer_name, item_code, item_description";

/// PostgreSQL: the index's name.
pub(crate) const PG_INDEX: &str = "idx_open_orders_search";

/// PostgreSQL: the GIN index (needs `pg_trgm`), over each text column: the search's exact
/// conditions (`customer_code ILIKE 'c%'`, `customer_name ILIKE '%n%'`, …) are its conditions.
pub(crate) fn pg_create_index() -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {PG_INDEX} ON open_orders USING gin (customer_code gin_trgm_ops, \
         customer_name gin_trgm_ops, item_code gin_trgm_ops, item_description gin_trgm_ops)"
    )
}

/// PostgreSQL: whether the server can give `pg_trgm` (without it there is no index).
pub(crate) async fn pg_trgm_available(db: &impl sea_orm::ConnectionTrait) -> Result<bool, sea_orm::DbErr> {
    Ok(db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm')",
        ))
        .await?
        .map(|r| r.try_get_by_index::<bool>(0))
        .transpose()?
        .unwrap_or(false))
}

/// SQLite: an empty FTS table named `name`. Its content table is `open_orders` whatever
/// table it indexes for now: after the swap that is the table its rows are in.
pub(crate) fn sqlite_create_fts(name: &str) -> String {
    format!(
        "CREATE VIRTUAL TABLE IF NOT EXISTS main.{name} USING fts5({COLUMNS}, \
         content='open_orders', content_rowid='id', tokenize='trigram')"
    )
}

/// SQLite: indexes the rows of `table` with `first <= id <= last` into `fts`.
pub(crate) fn sqlite_fill(fts: &str, table: &str, first: i64, last: i64) -> String {
    format!(
        "INSERT INTO main.{fts} (rowid, {COLUMNS}) SELECT id, {COLUMNS} FROM main.{table} \
         WHERE id BETWEEN {first} AND {last}"
    )
}

/// SQLite: the triggers that keep [`FTS`] in step with `open_orders` (external content:
/// the index forgets a row only when told its old text).
pub(crate) fn sqlite_triggers() -> [String; 3] {
    let new = "new.customer_code, new.customer_name, new.item_code, new.item_description";
    let old = "old.customer_code, old.customer_name, old.item_code, old.item_description";
    let insert = format!("INSERT INTO {FTS} (rowid, {COLUMNS}) VALUES (new.id, {new});");
    let delete = format!("INSERT INTO {FTS} ({FTS}, rowid, {COLUMNS}) VALUES ('delete', old.id, {old});");
    [
        format!(
            "CREATE TRIGGER IF NOT EXISTS main.{FTS}_insert AFTER INSERT ON open_orders BEGIN {insert} END"
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS main.{FTS}_delete AFTER DELETE ON open_orders BEGIN {delete} END"
        ),
        format!(
            "CREATE TRIGGER IF NOT EXISTS main.{FTS}_update AFTER UPDATE OF id, {COLUMNS} ON open_orders \
             BEGIN {delete} {insert} END"
        ),
    ]
}

/// SQLite: `text` as an FTS5 phrase (a string in double quotes), which the trigram
/// tokenizer matches anywhere in a column, ignoring case.
pub(crate) fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_are_quoted() {
        assert_eq!(fts_phrase("acme"), "\"acme\"");
        assert_eq!(fts_phrase("12\" pipe"), "\"12\"\" pipe\"");
    }

    #[test]
    fn fill_takes_a_range() {
        assert_eq!(
            sqlite_fill(FTS_NEXT, "open_orders_next", 1, 100_000),
            "INSERT INTO main.open_orders_next_fts (rowid, customer_code, customer_name, item_code, \
             item_description) SELECT id, customer_code, customer_name, item_code, item_description \
             FROM main.open_orders_next WHERE id BETWEEN 1 AND 100000"
        );
    }
}
