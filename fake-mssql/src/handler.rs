//! What the server asks of its user: answers to the statements it does not answer itself.

use std::net::SocketAddr;

use crate::types::{Column, RowWriter, TdsVersion, Value};

/// Answers the SQL statements the server does not handle itself (it handles `SET`, `USE`,
/// transactions, `SELECT @@VERSION` and other session statements; see the crate docs).
///
/// Implemented for closures `Fn(&Query<'_>) -> Reply`.
pub trait Handler: Send + Sync + 'static {
    /// Answers one statement: a SQL batch's statement, or the statement of an `sp_executesql`
    /// RPC with its parameters.
    fn execute(&self, query: &Query<'_>) -> Reply;
}

impl<F> Handler for F
where
    F: Fn(&Query<'_>) -> Reply + Send + Sync + 'static,
{
    fn execute(&self, query: &Query<'_>) -> Reply {
        self(query)
    }
}

/// One statement to answer.
#[derive(Debug)]
#[non_exhaustive]
pub struct Query<'a> {
    /// The statement's text (one statement of a batch, trimmed, without a trailing `;`).
    pub sql: &'a str,
    /// `sp_executesql` parameters (`@P1`, …); empty for a SQL batch.
    pub params: &'a [Param],
    /// The connection it came on.
    pub session: &'a SessionInfo,
}

impl Query<'_> {
    /// The parameter called `name` (with or without its `@`, case-insensitive).
    pub fn param(&self, name: &str) -> Option<&Value> {
        let name = name.trim_start_matches('@');
        self.params
            .iter()
            .find(|p| p.name.trim_start_matches('@').eq_ignore_ascii_case(name))
            .map(|p| &p.value)
    }
}

/// An RPC parameter.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Param {
    /// Its name, e.g. `@P1`.
    pub name: String,
    /// Its value.
    pub value: Value,
}

/// How the connection's traffic is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsState {
    /// No TLS at all.
    None,
    /// TLS for the LOGIN7 packet only (SQL Server's default when neither side requires more).
    LoginOnly,
    /// Every packet after PRELOGIN in TLS.
    Full,
    /// TDS 8.0: TLS from the first byte.
    Strict,
}

/// Who is connected, and how.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session id (`@@SPID`).
    pub spid: u16,
    /// The client's address.
    pub peer: SocketAddr,
    /// The login (for a token login, the token's principal as configured).
    pub user: String,
    /// The current database.
    pub database: String,
    /// The application name the client sent.
    pub app_name: String,
    /// The host name the client sent.
    pub host_name: String,
    /// The negotiated TDS version.
    pub tds_version: TdsVersion,
    /// The negotiated packet size.
    pub packet_size: usize,
    /// TLS in use.
    pub tls: TlsState,
}

/// The answer to one statement.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reply {
    /// A result set.
    Rows(ResultSet),
    /// A statement that changed this many rows (`INSERT`, `UPDATE`, …).
    Affected(u64),
    /// A statement with no result and no row count.
    Done,
    /// An error (the batch stops there, as SQL Server does for compile errors).
    Error(SqlError),
}

/// A result set: its columns and a source of rows, pulled one at a time while the server
/// writes, so results of any size stream in constant memory.
pub struct ResultSet {
    pub(crate) columns: Vec<Column>,
    pub(crate) rows: Box<dyn RowSource>,
}

impl std::fmt::Debug for ResultSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultSet")
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

impl ResultSet {
    /// A result set whose rows `rows` writes.
    pub fn new(columns: Vec<Column>, rows: impl RowSource) -> Self {
        ResultSet {
            columns,
            rows: Box::new(rows),
        }
    }

    /// A result set from values held in memory (one `Vec<Value>` per row, in column order).
    pub fn from_values(columns: Vec<Column>, rows: Vec<Vec<Value>>) -> Self {
        ResultSet::new(columns, ValueRows(rows.into_iter()))
    }

    /// The columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
}

/// Produces the rows of a [`ResultSet`].
pub trait RowSource: Send + 'static {
    /// Writes the next row's values in column order on `row` and returns `true`, or returns
    /// `false` (writing nothing) when there are no more rows.
    fn write_row(&mut self, row: &mut RowWriter<'_>) -> bool;
}

struct ValueRows(std::vec::IntoIter<Vec<Value>>);

impl RowSource for ValueRows {
    fn write_row(&mut self, row: &mut RowWriter<'_>) -> bool {
        match self.0.next() {
            Some(values) => {
                for v in &values {
                    row.value(v);
                }
                true
            }
            None => false,
        }
    }
}

/// A SQL Server error message (ERROR token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// The error number, e.g. 208.
    pub number: u32,
    /// Its state.
    pub state: u8,
    /// Its severity (class), e.g. 16.
    pub class: u8,
    /// The text.
    pub message: String,
}

impl SqlError {
    /// An error with state 1.
    pub fn new(number: u32, class: u8, message: impl Into<String>) -> Self {
        SqlError {
            number,
            state: 1,
            class,
            message: message.into(),
        }
    }

    /// Error 208, "Invalid object name 'NAME'.", naming the object a statement refers to.
    pub fn invalid_object(sql: &str) -> Self {
        SqlError::new(208, 16, format!("Invalid object name '{}'.", object_name(sql)))
    }
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Msg {}, Level {}, State {}: {}",
            self.number, self.class, self.state, self.message
        )
    }
}

impl std::error::Error for SqlError {}

/// The object a statement refers to, for "Invalid object name" errors.
fn object_name(sql: &str) -> String {
    let tokens: Vec<&str> = sql.split_whitespace().collect();
    for pair in tokens.windows(2) {
        if ["from", "join", "into", "update"]
            .iter()
            .any(|k| pair[0].eq_ignore_ascii_case(k))
        {
            return pair[1].trim_end_matches([';', ',', ')']).to_owned();
        }
    }
    let text = sql.trim();
    match text.char_indices().nth(128) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_missing_object() {
        assert_eq!(
            object_name("SELECT * FROM dbo.Customers WHERE 1=1"),
            "dbo.Customers"
        );
        assert_eq!(object_name("select x from foo;"), "foo");
        assert_eq!(object_name("EXEC something"), "EXEC something");
    }
}
