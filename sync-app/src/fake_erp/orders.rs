//! The open-orders view as SQL Server types: the `modern` schema (today's view) and the
//! `classic` one (the same rows as an older ERP stores them), and the row writers.

use std::fmt;
use std::str::FromStr;

use fake_mssql::{Collation, Column, RowSource, RowWriter, SqlError, SqlType, Value};
use rust_decimal::Decimal;

use super::data::{Catalog, LineSpec, LineSpecs, OPEN_ORDERS_COLUMNS, OrderLine, catalog};
use super::failure::Quirks;

const PRICE_PRECISION: u8 = 19;
const OVERFLOW_PRECISION: u8 = 38;
const QTY_PRECISION: u8 = 18;
const AMOUNT_PRECISION: u8 = 19;

/// How the ERP stores its open orders; both hold the same values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Schema {
    /// A current ERP: `bigint`, `date`, `nvarchar`, `decimal`, `datetime2(3)`.
    #[default]
    Modern,
    /// An older ERP: `int` / `smallint` keys, `datetime` / `smalldatetime` dates, `char` /
    /// `nchar` padded codes, `varchar` in code page 1252 and in a `_UTF8` collation,
    /// `money` / `smallmoney` amounts, plus a `uniqueidentifier` row id and `nvarchar(max)`
    /// notes (columns the sync does not read).
    Classic,
}

impl FromStr for Schema {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "modern" => Ok(Schema::Modern),
            "classic" => Ok(Schema::Classic),
            other => Err(format!("unknown schema {other:?}; expected modern or classic")),
        }
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Schema::Modern => "modern",
            Schema::Classic => "classic",
        })
    }
}

/// The columns of `dbo.vw_OpenOrders` in a schema (as altered by the quirks).
pub(crate) fn columns(schema: Schema, quirks: Quirks) -> Vec<Column> {
    let dec = |precision, scale| SqlType::Decimal { precision, scale };
    let nv = |chars| SqlType::NVarChar { len: Some(chars) };
    let price = if quirks.overflow_at.is_some() {
        dec(OVERFLOW_PRECISION, 4)
    } else {
        match schema {
            Schema::Modern => dec(PRICE_PRECISION, 4),
            Schema::Classic => SqlType::SmallMoney,
        }
    };
    let qty_open = if quirks.wrong_type {
        nv(40)
    } else {
        dec(QTY_PRECISION, 4)
    };
    let types: [(SqlType, bool); 19] = match schema {
        Schema::Modern => [
            (SqlType::BigInt, false),
            (SqlType::Int, false),
            (SqlType::Date, false),
            (nv(20), quirks.null_at.is_some()),
            (nv(100), false),
            (nv(40), false),
            (nv(200), true),
            (dec(QTY_PRECISION, 4), false),
            (dec(QTY_PRECISION, 4), false),
            (qty_open, false),
            (price, false),
            (dec(AMOUNT_PRECISION, 2), false),
            (nv(3), false),
            (SqlType::Date, true),
            (SqlType::Date, true),
            (nv(10), true),
            (nv(20), false),
            (SqlType::Bit, false),
            (SqlType::DateTime2 { scale: 3 }, false),
        ],
        Schema::Classic => [
            (SqlType::Int, false),
            (SqlType::SmallInt, false),
            (SqlType::DateTime, false),
            (
                SqlType::Char {
                    len: 10,
                    collation: Collation::Latin1Cp1252,
                },
                quirks.null_at.is_some(),
            ),
            (
                SqlType::VarChar {
                    len: Some(100),
                    collation: Collation::Utf8,
                },
                false,
            ),
            (SqlType::NChar { len: 20 }, false),
            (
                SqlType::VarChar {
                    len: Some(200),
                    collation: Collation::Latin1Cp1252,
                },
                true,
            ),
            (dec(QTY_PRECISION, 4), false),
            (dec(QTY_PRECISION, 4), false),
            (qty_open, false),
            (price, false),
            (SqlType::Money, false),
            (
                SqlType::Char {
                    len: 3,
                    collation: Collation::Latin1Cp1252,
                },
                false,
            ),
            (SqlType::SmallDateTime, true),
            (SqlType::SmallDateTime, true),
            (SqlType::NChar { len: 10 }, true),
            (
                SqlType::VarChar {
                    len: Some(20),
                    collation: Collation::Latin1Cp1252,
                },
                false,
            ),
            (SqlType::Bit, false),
            (SqlType::DateTime, false),
        ],
    };
    let mut out: Vec<Column> = types
        .iter()
        .zip(OPEN_ORDERS_COLUMNS)
        .map(|(&(ty, nullable), name)| {
            let c = Column::new(name, ty);
            if nullable { c.nullable() } else { c }
        })
        .collect();
    if schema == Schema::Classic {
        out.push(Column::new("row_guid", SqlType::UniqueIdentifier));
        out.push(Column::new("notes", SqlType::NVarChar { len: None }).nullable());
    }
    out
}

/// Which of the view's columns a query asks for, in which order, under which names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Projection {
    /// The first `n` columns in the view's order (the documented 19, or all with `*`):
    /// the fast path.
    Prefix(usize),
    /// Any other selection: (index into the view's columns, output name).
    Columns(Vec<(usize, String)>),
}

impl Projection {
    /// The result's columns.
    pub(crate) fn columns(&self, all: &[Column]) -> Vec<Column> {
        match self {
            Projection::Prefix(n) => all[..*n].to_vec(),
            Projection::Columns(list) => list
                .iter()
                .map(|(i, name)| Column {
                    name: name.clone().into(),
                    ..all[*i].clone()
                })
                .collect(),
        }
    }
}

/// Reads the select list of a query on the view: column names (bracketed or qualified),
/// optional aliases, or `*`. A name the view does not have is error 207, as in SQL Server;
/// expressions are refused (the fake ERP does not evaluate SQL).
pub(crate) fn projection(sql: &str, all: &[Column]) -> Result<Projection, SqlError> {
    let lower = sql.to_ascii_lowercase();
    let start = lower.find("select").map(|i| i + "select".len());
    let end = lower.match_indices("from").map(|(i, _)| i).find(|&i| {
        let before = lower[..i].chars().next_back();
        let after = lower[i + 4..].chars().next();
        before.is_some_and(char::is_whitespace) && after.is_some_and(char::is_whitespace)
    });
    let (Some(start), Some(end)) = (start, end) else {
        return Ok(Projection::Prefix(all.len()));
    };
    if end < start {
        return Ok(Projection::Prefix(all.len()));
    }
    let mut list = sql[start..end].trim();
    // TOP (n) / TOP n
    if list.len() > 4 && list[..4].eq_ignore_ascii_case("top ") {
        let rest = list[4..].trim_start();
        let skip = if rest.starts_with('(') {
            rest.find(')').map_or(rest.len(), |i| i + 1)
        } else {
            rest.find(char::is_whitespace).unwrap_or(rest.len())
        };
        list = rest[skip..].trim_start();
    }
    let find = |name: &str| {
        let bare = name.rsplit('.').next().unwrap_or(name);
        let bare = bare.trim_matches(|c| c == '[' || c == ']' || c == '"');
        all.iter()
            .position(|c| c.name.eq_ignore_ascii_case(bare))
            .ok_or_else(|| SqlError::new(207, 16, format!("Invalid column name '{bare}'.")))
    };
    let mut selected = Vec::new();
    for item in list.split(',') {
        let words: Vec<&str> = item.split_whitespace().collect();
        let (name, alias) = match words.as_slice() {
            [name] => (*name, None),
            [name, alias] => (*name, Some(*alias)),
            [name, as_kw, alias] if as_kw.eq_ignore_ascii_case("as") => (*name, Some(*alias)),
            _ => {
                return Err(SqlError::new(
                    50_000,
                    16,
                    format!(
                        "The fake ERP reads column names only, not expressions: '{}'.",
                        item.trim()
                    ),
                ));
            }
        };
        if name.contains('(') {
            return Err(SqlError::new(
                50_000,
                16,
                format!(
                    "The fake ERP reads column names only, not expressions: '{}'.",
                    item.trim()
                ),
            ));
        }
        if name == "*" || name.ends_with(".*") {
            selected.extend(all.iter().enumerate().map(|(i, c)| (i, c.name.to_string())));
            continue;
        }
        let index = find(name)?;
        let output = alias
            .map(|a| a.trim_matches(|c| c == '[' || c == ']' || c == '"').to_owned())
            .unwrap_or_else(|| all[index].name.to_string());
        selected.push((index, output));
    }
    let is_prefix = selected
        .iter()
        .enumerate()
        .all(|(i, (index, name))| *index == i && all[i].name == name.as_str());
    Ok(if is_prefix {
        Projection::Prefix(selected.len())
    } else {
        Projection::Columns(selected)
    })
}

/// Formats a scale-4 decimal as ASCII, e.g. `12.5000`.
fn format_scale4(mantissa: i64, out: &mut [u8; 32]) -> &str {
    let mut pos = out.len();
    let negative = mantissa < 0;
    let mut v = mantissa.unsigned_abs();
    let mut digits = 0;
    while v > 0 || digits < 5 {
        if digits == 4 {
            pos -= 1;
            out[pos] = b'.';
        }
        pos -= 1;
        out[pos] = b'0' + (v % 10) as u8;
        v /= 10;
        digits += 1;
    }
    if negative {
        pos -= 1;
        out[pos] = b'-';
    }
    std::str::from_utf8(&out[pos..]).expect("ASCII digits")
}

/// The rows of one open-orders query, generated as they are written.
#[derive(Debug)]
pub(crate) struct OrderRows {
    pub(crate) lines: LineSpecs,
    pub(crate) schema: Schema,
    pub(crate) quirks: Quirks,
    pub(crate) projection: Projection,
    pub(crate) index: u64,
}

impl RowSource for OrderRows {
    fn write_row(&mut self, row: &mut RowWriter<'_>) -> bool {
        let Some(line) = self.lines.next() else {
            return false;
        };
        match (&self.projection, self.schema) {
            (Projection::Prefix(_), Schema::Modern) => {
                modern_row(row, catalog(), &line, self.index, self.quirks)
            }
            (Projection::Prefix(n), Schema::Classic) => classic_row(
                row,
                catalog(),
                &line,
                self.index,
                self.quirks,
                *n > OPEN_ORDERS_COLUMNS.len(),
            ),
            (Projection::Columns(list), schema) => {
                let values = row_values(schema, &line, self.index, self.quirks);
                for (i, _) in list {
                    row.value(&values[*i]);
                }
            }
        }
        self.index += 1;
        true
    }
}

/// Every column of a row as values (the slow path, for selections other than the view's
/// own column order).
fn row_values(schema: Schema, line: &LineSpec, index: u64, quirks: Quirks) -> Vec<Value> {
    let l: OrderLine = line.to_order_line();
    let dec = |d: Decimal| Value::Decimal {
        mantissa: d.mantissa(),
        scale: d.scale() as u8,
    };
    let opt_date = |d: Option<chrono::NaiveDate>| d.map_or(Value::Null, Value::Date);
    let opt_text = |t: Option<String>| t.map_or(Value::Null, Value::String);
    let mut v = vec![
        Value::Int(l.order_no),
        Value::Int(i64::from(l.line_no)),
        Value::Date(l.order_date),
        if quirks.null_at == Some(index) {
            Value::Null
        } else {
            Value::String(l.customer_code)
        },
        Value::String(l.customer_name),
        Value::String(l.item_code),
        opt_text(l.item_description),
        dec(l.qty_ordered),
        dec(l.qty_shipped),
        if quirks.wrong_type {
            let mut buf = [0u8; 32];
            Value::String(format_scale4(line.qty_open(), &mut buf).to_owned())
        } else {
            dec(l.qty_open)
        },
        match quirks.overflow_at {
            Some(n) if n == index => Value::Decimal {
                mantissa: 10i128.pow(34),
                scale: 4,
            },
            _ => dec(l.unit_price),
        },
        dec(l.line_amount),
        Value::String(l.currency),
        opt_date(l.requested_date),
        opt_date(l.promised_date),
        opt_text(l.warehouse),
        Value::String(l.status),
        Value::Bit(l.rush),
        Value::DateTime(l.modified_at),
    ];
    if schema == Schema::Classic {
        v.push(Value::Guid(row_guid(line.order_no, line.line_no)));
        v.push(notes(line).map_or(Value::Null, Value::String));
    }
    v
}

/// The columns both schemas write the same way (quantities and the quirks).
fn quantities_and_price(row: &mut RowWriter<'_>, line: &LineSpec, index: u64, quirks: Quirks) {
    row.decimal(i128::from(line.qty_ordered), 4);
    row.decimal(i128::from(line.qty_shipped), 4);
    if quirks.wrong_type {
        let mut buf = [0u8; 32];
        row.str(format_scale4(line.qty_open(), &mut buf));
    } else {
        row.decimal(i128::from(line.qty_open()), 4);
    }
    match quirks.overflow_at {
        Some(n) if n == index => row.decimal(10i128.pow(34), 4),
        _ => row.decimal(i128::from(line.unit_price), 4),
    }
}

fn modern_row(row: &mut RowWriter<'_>, cat: &Catalog, line: &LineSpec, index: u64, quirks: Quirks) {
    let customer = &cat.customers[line.customer];
    let item = &cat.items[line.item];
    row.int(line.order_no);
    row.int(i64::from(line.line_no));
    row.date(line.order_date);
    if quirks.null_at == Some(index) {
        row.null();
    } else {
        row.ucs2(&customer.code.ucs2);
    }
    row.ucs2(&customer.name.ucs2);
    row.ucs2(&item.code.ucs2);
    match &item.description {
        Some(text) => row.ucs2(&text.ucs2),
        None => row.null(),
    }
    quantities_and_price(row, line, index, quirks);
    row.decimal(i128::from(line.line_amount), 2);
    row.ucs2(&cat.currencies[customer.currency].ucs2);
    match line.requested_date {
        Some(d) => row.date(d),
        None => row.null(),
    }
    match line.promised_date {
        Some(d) => row.date(d),
        None => row.null(),
    }
    match line.warehouse {
        Some(w) => row.ucs2(&cat.warehouses[w].ucs2),
        None => row.null(),
    }
    row.ucs2(&cat.statuses[usize::from(line.status)].ucs2);
    row.bit(line.rush);
    row.datetime(line.modified_at);
}

fn classic_row(
    row: &mut RowWriter<'_>,
    cat: &Catalog,
    line: &LineSpec,
    index: u64,
    quirks: Quirks,
    extras: bool,
) {
    let customer = &cat.customers[line.customer];
    let item = &cat.items[line.item];
    row.int(line.order_no);
    row.int(i64::from(line.line_no));
    row.date(line.order_date);
    if quirks.null_at == Some(index) {
        row.null();
    } else {
        row.str(&customer.code.text);
    }
    row.str(&customer.name.text);
    row.str(&item.code.text);
    match &item.description {
        Some(text) => row.str(&text.text),
        None => row.null(),
    }
    quantities_and_price(row, line, index, quirks);
    row.decimal(i128::from(line.line_amount), 2);
    row.str(&cat.currencies[customer.currency].text);
    match line.requested_date {
        Some(d) => row.date(d),
        None => row.null(),
    }
    match line.promised_date {
        Some(d) => row.date(d),
        None => row.null(),
    }
    match line.warehouse {
        Some(w) => row.str(&cat.warehouses[w].text),
        None => row.null(),
    }
    row.str(&cat.statuses[usize::from(line.status)].text);
    row.bit(line.rush);
    row.datetime(line.modified_at);
    if extras {
        row.guid(row_guid(line.order_no, line.line_no));
        match notes(line) {
            Some(text) => row.str(&text),
            None => row.null(),
        }
    }
}

/// A stable row id derived from the key.
fn row_guid(order_no: i64, line_no: i32) -> [u8; 16] {
    let a = (order_no as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(line_no as u32);
    let b = a.rotate_left(29).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out[7] = (out[7] & 0x0F) | 0x40; // version 4
    out[8] = (out[8] & 0x3F) | 0x80; // variant
    out
}

/// Free-text notes on some lines; a few are long enough (> 8,000 bytes) to arrive in several
/// PLP chunks.
fn notes(line: &LineSpec) -> Option<String> {
    match line.order_no % 97 {
        0 => Some(format!(
            "Deliver to gate 3 — call 30 min ahead. Order {}.",
            line.order_no
        )),
        1 if line.line_no == 1 => Some("Prüfzeugnis 3.1 nach EN 10204 beilegen. ".repeat(120)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale4_formatting() {
        let mut buf = [0u8; 32];
        assert_eq!(format_scale4(125_000, &mut buf), "12.5000");
        assert_eq!(format_scale4(5, &mut buf), "0.0005");
        assert_eq!(format_scale4(0, &mut buf), "0.0000");
        assert_eq!(format_scale4(-10_000, &mut buf), "-1.0000");
    }

    #[test]
    fn schemas_parse_and_classic_has_the_extra_columns() {
        assert_eq!("Classic".parse::<Schema>(), Ok(Schema::Classic));
        assert!("old".parse::<Schema>().is_err());
        let modern = columns(Schema::Modern, Quirks::default());
        let classic = columns(Schema::Classic, Quirks::default());
        assert_eq!(modern.len(), 19);
        assert_eq!(classic.len(), 21);
        assert_eq!(classic[19].name, "row_guid");
        assert_eq!(classic[20].name, "notes");
    }

    #[test]
    fn select_lists_pick_columns_like_sql_server() {
        let all = columns(Schema::Classic, Quirks::default());
        let documented = super::super::OPEN_ORDERS_SQL;
        assert_eq!(projection(documented, &all).unwrap(), Projection::Prefix(19));
        assert_eq!(
            projection("SELECT * FROM dbo.vw_OpenOrders", &all).unwrap(),
            Projection::Prefix(21)
        );
        assert_eq!(
            projection(
                "SELECT TOP (5) [line_no], o.order_no AS [no] FROM dbo.vw_OpenOrders o",
                &all
            )
            .unwrap(),
            Projection::Columns(vec![(1, "line_no".into()), (0, "no".into())])
        );
        let e = projection("SELECT order_no, colour FROM dbo.vw_OpenOrders", &all).unwrap_err();
        assert_eq!(
            (e.number, e.message.as_str()),
            (207, "Invalid column name 'colour'.")
        );
        assert!(projection("SELECT CAST(order_no AS int) FROM dbo.vw_OpenOrders", &all).is_err());
    }
}
