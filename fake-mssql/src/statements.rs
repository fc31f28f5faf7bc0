//! The statements a SQL Server answers for every client whatever its tables: `SET`, `USE`,
//! transactions, and `SELECT`s of server variables (`@@VERSION`, `@@SPID`, `DB_NAME()`, …).
//! Everything else goes to the [`Handler`](crate::Handler).

/// One statement of a batch, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Statement<'a> {
    /// `SET …`; `nocount` for `SET NOCOUNT ON|OFF`, `fmtonly` for `SET FMTONLY ON|OFF`
    /// (results without rows: what freebcp asks before a `queryout`).
    Set {
        nocount: Option<bool>,
        fmtonly: Option<bool>,
    },
    /// `USE database`.
    Use(String),
    /// `BEGIN TRAN[SACTION]`.
    BeginTran,
    /// `COMMIT [TRAN|TRANSACTION|WORK]`; `only_if_open` for `IF @@TRANCOUNT > 0 COMMIT`.
    Commit { only_if_open: bool },
    /// `ROLLBACK …`; `only_if_open` for `IF @@TRANCOUNT > 0 ROLLBACK`.
    Rollback { only_if_open: bool },
    /// `SAVE TRAN name`.
    Save,
    /// A `SELECT` of server variables and literals only, without `FROM`.
    Select(Vec<(Scalar, String)>),
    /// Anything else: the handler's.
    Other(&'a str),
}

/// A value the server knows by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scalar {
    Version,
    Spid,
    TranCount,
    ServerName,
    ServiceName,
    Language,
    MaxPrecision,
    TextSize,
    RowCount,
    Error,
    DbName,
    UserName,
    SchemaName,
    Now,
    UtcNow,
    ServerProperty(String),
    Int(i64),
    Str { text: String, unicode: bool },
    Null,
}

/// Splits a batch into statements: at `;` outside strings, brackets, comments and
/// parentheses, and after a `SET` / `USE` / transaction statement where the next statement
/// starts without a `;` (`SET NOCOUNT ON SELECT …`).
pub(crate) fn split_batch(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut depth = 0i32;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\'' | b'"' | b'[' => {
                let close = if c == b'[' { b']' } else { c };
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == close {
                        if i + 1 < bytes.len() && bytes[i + 1] == close {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'(' => depth += 1,
            b')' => depth -= 1,
            b';' if depth <= 0 => {
                push_split(&mut out, &sql[start..i]);
                start = i + 1;
            }
            _ if depth <= 0 && c.is_ascii_alphabetic() && (i == 0 || !is_word(bytes[i - 1])) => {
                // A statement keyword after a short session statement starts a new one.
                let word_end = bytes[i..]
                    .iter()
                    .position(|b| !is_word(*b))
                    .map_or(bytes.len(), |n| i + n);
                let word = &sql[i..word_end];
                let current = sql[start..i].trim_start();
                if !current.is_empty() && splits_before(current, word) {
                    push_split(&mut out, &sql[start..i]);
                    start = i;
                }
                i = word_end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    push_split(&mut out, &sql[start.min(sql.len())..]);
    out
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'@' || b == b'#'
}

fn push_split<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    let s = s.trim();
    if !s.is_empty() {
        out.push(s);
    }
}

fn starts_statement(word: &str) -> bool {
    const KEYWORDS: [&str; 14] = [
        "SELECT", "SET", "USE", "BEGIN", "COMMIT", "ROLLBACK", "SAVE", "IF", "EXEC", "EXECUTE", "DECLARE",
        "INSERT", "UPDATE", "DELETE",
    ];
    KEYWORDS.iter().any(|k| word.eq_ignore_ascii_case(k))
}

/// Whether a statement so far is a session statement that cannot contain another keyword
/// of [`starts_statement`] (so the keyword must start a new statement).
fn is_short_statement(current: &str) -> bool {
    let words: Vec<&str> = current.split_whitespace().collect();
    let first = words.first().copied().unwrap_or_default();
    let is = |k: &str| first.eq_ignore_ascii_case(k);
    if is("USE") || is("COMMIT") || is("ROLLBACK") || is("SAVE") {
        return words.len() >= 2 || is("COMMIT") || is("ROLLBACK");
    }
    if is("BEGIN") {
        return words
            .get(1)
            .is_some_and(|w| w.eq_ignore_ascii_case("TRAN") || w.eq_ignore_ascii_case("TRANSACTION"));
    }
    // `SET option value`: complete once it has a value (and is not a variable assignment).
    is("SET") && words.len() >= 3 && !words[1].starts_with('@')
}

/// Whether `word` starts a new statement after `current` (also `SET` after a query:
/// `SET FMTONLY ON SELECT … SET FMTONLY OFF`, as freebcp sends; only `UPDATE` and `MERGE`
/// have a `SET` clause).
fn splits_before(current: &str, word: &str) -> bool {
    if !starts_statement(word) {
        return false;
    }
    if is_short_statement(current) {
        return true;
    }
    let first = current.split_whitespace().next().unwrap_or_default();
    word.eq_ignore_ascii_case("SET")
        && !["UPDATE", "MERGE", "SET", "DECLARE"]
            .iter()
            .any(|k| first.eq_ignore_ascii_case(k))
}

/// A name without its delimiters: `[a]]b]` → `a]b`, `"a""b"` → `a"b`, `'a''b'` → `a'b`.
fn strip_name(name: &str) -> String {
    let name = name.trim();
    let unquote = |open: char, close: char| {
        let inner = name.strip_prefix(open)?.strip_suffix(close)?;
        let doubled: String = [close, close].iter().collect();
        Some(inner.replace(&doubled, &close.to_string()))
    };
    unquote('[', ']')
        .or_else(|| unquote('"', '"'))
        .or_else(|| unquote('\'', '\''))
        .unwrap_or_else(|| name.to_owned())
}

/// Classifies one statement (as returned by [`split_batch`]).
pub(crate) fn classify(stmt: &str) -> Statement<'_> {
    let words: Vec<&str> = stmt.split_whitespace().collect();
    let word = |i: usize| words.get(i).map(|w| w.to_ascii_uppercase()).unwrap_or_default();
    match word(0).as_str() {
        "SET" => {
            let nocount = (word(1) == "NOCOUNT").then(|| word(2) == "ON");
            let fmtonly = (word(1) == "FMTONLY").then(|| word(2) == "ON");
            Statement::Set { nocount, fmtonly }
        }
        "USE" if words.len() == 2 => Statement::Use(strip_name(words[1])),
        "BEGIN" if matches!(word(1).as_str(), "TRAN" | "TRANSACTION") => Statement::BeginTran,
        "COMMIT" => Statement::Commit { only_if_open: false },
        "ROLLBACK" => Statement::Rollback { only_if_open: false },
        "SAVE" => Statement::Save,
        "IF" => {
            let compact: String = stmt
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_ascii_uppercase();
            for prefix in [
                "IF @@TRANCOUNT > 0 ",
                "IF @@TRANCOUNT>0 ",
                "IF (@@TRANCOUNT > 0) ",
            ] {
                if let Some(rest) = compact.strip_prefix(prefix) {
                    if rest.starts_with("COMMIT") {
                        return Statement::Commit { only_if_open: true };
                    }
                    if rest.starts_with("ROLLBACK") {
                        return Statement::Rollback { only_if_open: true };
                    }
                }
            }
            Statement::Other(stmt)
        }
        "SELECT" => match select_list(stmt[6..].trim()) {
            Some(items) => Statement::Select(items),
            None => Statement::Other(stmt),
        },
        _ => Statement::Other(stmt),
    }
}

/// Splits a select list at top-level commas; `None` if any item is not a known scalar or
/// the statement has a `FROM`, `WHERE`, … clause.
fn select_list(list: &str) -> Option<Vec<(Scalar, String)>> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut in_str = false;
    let mut start = 0;
    let bytes = list.as_bytes();
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'\'' => in_str = !in_str,
            b'(' if !in_str => depth += 1,
            b')' if !in_str => depth -= 1,
            b',' if !in_str && depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&list[start..]);
    items.into_iter().map(|item| scalar_item(item.trim())).collect()
}

/// `expr`, `expr AS alias`, `expr alias` or `alias = expr`.
fn scalar_item(item: &str) -> Option<(Scalar, String)> {
    if item.is_empty() {
        return None;
    }
    // alias = expr (not inside a string)
    if let Some(eq) = item.find('=')
        && is_alias(&item[..eq])
    {
        let alias = strip_name(&item[..eq]);
        return scalar(item[eq + 1..].trim()).map(|s| (s, alias));
    }
    if let Some(s) = scalar(item) {
        return Some((s, String::new()));
    }
    // expr [AS] alias: the alias is the last word.
    let (expr, alias) = item.rsplit_once(char::is_whitespace)?;
    let expr = expr.trim_end();
    // `… AS`: compared as bytes (the cut may fall inside a multi-byte character before it).
    let expr = match expr.len().checked_sub(3) {
        Some(cut) if expr.as_bytes()[cut..].eq_ignore_ascii_case(b" as") => expr[..cut].trim_end(),
        _ => expr,
    };
    if !is_alias(alias) {
        return None;
    }
    scalar(expr).map(|s| (s, strip_name(alias)))
}

/// Whether `text` is a column alias: one identifier, bare (`ok`), bracketed (`[my name]`),
/// double-quoted or a string literal (`'name'`). Anything else (`* FROM t WHERE 1 `) means the
/// item is not a `SELECT` of server values.
fn is_alias(text: &str) -> bool {
    let t = text.trim();
    let quoted = |open: char, close: char| {
        t.len() >= 2
            && t.starts_with(open)
            && t.ends_with(close)
            && !t[1..t.len() - 1]
                .replace(close.to_string().repeat(2).as_str(), "")
                .contains(close)
    };
    if quoted('[', ']') || quoted('"', '"') || quoted('\'', '\'') {
        return true;
    }
    !t.is_empty()
        && !t.starts_with(|c: char| c.is_ascii_digit() || c == '@')
        && t.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '#' | '$'))
}

fn scalar(expr: &str) -> Option<Scalar> {
    let upper: String = expr
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    Some(match upper.as_str() {
        "@@VERSION" => Scalar::Version,
        "@@SPID" => Scalar::Spid,
        "@@TRANCOUNT" => Scalar::TranCount,
        "@@SERVERNAME" => Scalar::ServerName,
        "@@SERVICENAME" => Scalar::ServiceName,
        "@@LANGUAGE" => Scalar::Language,
        "@@MAX_PRECISION" => Scalar::MaxPrecision,
        "@@TEXTSIZE" => Scalar::TextSize,
        "@@ROWCOUNT" => Scalar::RowCount,
        "@@ERROR" => Scalar::Error,
        "DB_NAME()" => Scalar::DbName,
        "SUSER_SNAME()" | "SUSER_NAME()" | "SYSTEM_USER" | "ORIGINAL_LOGIN()" => Scalar::UserName,
        "USER_NAME()" | "CURRENT_USER" | "USER" | "SCHEMA_NAME()" => Scalar::SchemaName,
        "GETDATE()" | "SYSDATETIME()" | "CURRENT_TIMESTAMP" => Scalar::Now,
        "GETUTCDATE()" | "SYSUTCDATETIME()" => Scalar::UtcNow,
        "NULL" => Scalar::Null,
        _ => {
            if let Some(arg) = upper
                .strip_prefix("SERVERPROPERTY('")
                .and_then(|r| r.strip_suffix("')"))
            {
                return Some(Scalar::ServerProperty(arg.to_owned()));
            }
            if let Ok(n) = upper.parse::<i64>() {
                return Some(Scalar::Int(n));
            }
            let trimmed = expr.trim();
            let (unicode, quoted) = match trimmed.strip_prefix(['N', 'n']) {
                Some(rest) if rest.starts_with('\'') => (true, rest),
                _ => (false, trimmed),
            };
            let inner = quoted.strip_prefix('\'')?.strip_suffix('\'')?;
            if inner.replace("''", "").contains('\'') {
                return None;
            }
            Scalar::Str {
                text: inner.replace("''", "'"),
                unicode,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_batches_like_sql_server() {
        assert_eq!(
            split_batch("SET NOCOUNT ON; SELECT 1;"),
            vec!["SET NOCOUNT ON", "SELECT 1"]
        );
        assert_eq!(
            split_batch("SET NOCOUNT ON\nSELECT a FROM t WHERE b = ';'"),
            vec!["SET NOCOUNT ON", "SELECT a FROM t WHERE b = ';'"]
        );
        assert_eq!(
            split_batch("SET ARITHABORT ON;SET CONCAT_NULL_YIELDS_NULL ON;SET TEXTSIZE 2147483647;"),
            vec![
                "SET ARITHABORT ON",
                "SET CONCAT_NULL_YIELDS_NULL ON",
                "SET TEXTSIZE 2147483647"
            ]
        );
        assert_eq!(
            split_batch("select x from t where y in (select 1; ) -- a;b\n"),
            vec!["select x from t where y in (select 1; ) -- a;b"]
        );
        assert_eq!(split_batch("USE [erp] SELECT 1"), vec!["USE [erp]", "SELECT 1"]);
        assert_eq!(
            split_batch("SET FMTONLY ON select a from t SET FMTONLY OFF"),
            vec!["SET FMTONLY ON", "select a from t", "SET FMTONLY OFF"]
        );
        assert_eq!(
            split_batch("UPDATE t SET a = 1 WHERE b = 2"),
            vec!["UPDATE t SET a = 1 WHERE b = 2"]
        );
        assert_eq!(
            split_batch("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"),
            vec!["SET TRANSACTION ISOLATION LEVEL READ COMMITTED"]
        );
        assert_eq!(
            split_batch("IF @@TRANCOUNT > 0 COMMIT TRAN"),
            vec!["IF @@TRANCOUNT > 0 COMMIT TRAN"]
        );
    }

    #[test]
    fn classifies_session_statements() {
        assert_eq!(
            classify("SET NOCOUNT ON"),
            Statement::Set {
                nocount: Some(true),
                fmtonly: None
            }
        );
        assert_eq!(
            classify("SET FMTONLY ON"),
            Statement::Set {
                nocount: None,
                fmtonly: Some(true)
            }
        );
        assert_eq!(
            classify("set textsize 100"),
            Statement::Set {
                nocount: None,
                fmtonly: None
            }
        );
        assert_eq!(classify("USE [erp]"), Statement::Use("erp".into()));
        assert_eq!(classify("BEGIN TRANSACTION"), Statement::BeginTran);
        assert_eq!(
            classify("IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION"),
            Statement::Rollback { only_if_open: true }
        );
        assert_eq!(
            classify("SELECT @@VERSION"),
            Statement::Select(vec![(Scalar::Version, String::new())])
        );
        assert_eq!(
            classify("select 1 as ok, N'x' [name], spid = @@spid, db_name()"),
            Statement::Select(vec![
                (Scalar::Int(1), "ok".into()),
                (
                    Scalar::Str {
                        text: "x".into(),
                        unicode: true
                    },
                    "name".into()
                ),
                (Scalar::Spid, "spid".into()),
                (Scalar::DbName, String::new()),
            ])
        );
        assert_eq!(
            classify("SELECT CAST(SERVERPROPERTY('ProductVersion') AS varchar(20))"),
            Statement::Other("SELECT CAST(SERVERPROPERTY('ProductVersion') AS varchar(20))")
        );
        assert_eq!(classify("SELECT a FROM t"), Statement::Other("SELECT a FROM t"));
        // A multi-byte character where `AS` would be: no panic, the alias form still found.
        assert_eq!(
            classify("SELECT N'日本' x"),
            Statement::Select(vec![(
                Scalar::Str {
                    text: "日本".into(),
                    unicode: true
                },
                "x".into()
            )])
        );
        assert_eq!(classify("SELECT 1 FROM t"), Statement::Other("SELECT 1 FROM t"));
        // `=` in a WHERE clause is not an alias assignment.
        for other in [
            "SELECT * FROM dbo.nothing WHERE 1 = 1",
            "SELECT 1 WHERE 1 = 0",
            "SELECT a.b = 1",
            "SELECT 1 x y",
        ] {
            assert_eq!(classify(other), Statement::Other(other), "{other}");
        }
        assert_eq!(
            classify("SELECT [my col] = 1, \"q\" = 2, 'lit' = 3"),
            Statement::Select(vec![
                (Scalar::Int(1), "my col".into()),
                (Scalar::Int(2), "q".into()),
                (Scalar::Int(3), "lit".into()),
            ])
        );
    }
}
