//! Maps the source's rows onto [`OpenOrder`] by column name, converting every SQL Server type
//! an ERP view may return exactly — or refusing the value with the column, the SQL type that
//! arrived and the `CAST` that fixes it.
//!
//! # Conversions
//!
//! | SQL type received | text field | whole-number field | decimal field | date field | date-and-time field | bit field |
//! |---|---|---|---|---|---|---|
//! | `nvarchar` `nchar` `ntext` | as is (`nchar` padding trimmed) | refused | refused | refused | refused | refused |
//! | `varchar` `char` `text` | decoded (see below; `char` padding trimmed) | refused | refused | refused | refused | refused |
//! | `tinyint` `smallint` `int` `bigint` | decimal digits (`42`) | exact (range checked) | exact | refused | refused | 0 / 1 only |
//! | `decimal(p,0)` `numeric(p,0)` | decimal digits | exact (range checked) | exact | refused | refused | 0 / 1 only |
//! | `decimal(p,s)` `numeric(p,s)` | refused | refused | exact, trailing zeros dropped, then scale and precision checked | refused | refused | refused |
//! | `money` `smallmoney` | refused | refused | exact (see below), then scale and precision checked | refused | refused | refused |
//! | `float` `real` | refused | refused | refused (not exact) | refused | refused | refused |
//! | `uniqueidentifier` | `6F9619FF-8B86-D011-B42D-00C04FC964FF` (upper case, as SQL Server prints it) | refused | refused | refused | refused | refused |
//! | `date` | refused | refused | refused | as is | at midnight | refused |
//! | `datetime` `smalldatetime` `datetime2` | refused | refused | refused | only at midnight, otherwise refused (never truncated silently) | as is | refused |
//! | `datetimeoffset` | refused | refused | refused | the local date (in the value's own offset), only at local midnight | the instant in UTC | refused |
//! | `bit` | refused | refused | refused | refused | refused | as is |
//! | anything else (`time`, `binary`, `xml`, `sql_variant` of those…) | refused | refused | refused | refused | refused | refused |
//!
//! Every refusal names the column, the SQL type received and, where a conversion on the
//! server fixes it, the expression to select instead (`CAST(col AS date) AS col`…); the alias
//! keeps the name the mapping looks for. A value no `CAST` can fit (a number too large for
//! the local column, text too long) is refused with its SQL type only.
//!
//! ## Money
//!
//! tiberius hands `money` and `smallmoney` over as `f64` (the wire holds an `i64` / `i32` of
//! ten-thousandths, which it divides by 10⁴). The exact value is recovered by taking the
//! `f64`'s exact binary value times 10⁴ and rounding to the nearest integer. That gives back
//! the server's value whenever the `f64`'s spacing (ulp) is below 10⁻⁴, i.e. for every
//! magnitude below 2³⁹ = 549,755,813,888 ([`MONEY_EXACT_LIMIT`]; at 2³⁹ the spacing becomes
//! 2⁻¹³ ≈ 1.22·10⁻⁴ and neighbouring money values share one `f64` — 549,755,813,888.0003 is the
//! first that comes back wrong). Every `smallmoney` is far inside; a `money` beyond it (the
//! type goes to ±922,337,203,685,477.5807) is refused with
//! `CAST(col AS decimal(19,4)) AS col`, which SQL Server sends exactly.
//!
//! ## Text in `_UTF8` collations
//!
//! tiberius decodes `char` / `varchar` / `text` with the code page of the column collation's
//! LCID and ignores the collation's UTF-8 flag (bit `0x0400_0000` of its info word), so
//! `Grüße` in a `Latin1_General_100_CI_AS_SC_UTF8` column arrives as `GrÃ¼ÃŸe`. The collation
//! is not on the query path: tiberius's [`Column`] carries only a name and a
//! [`tiberius::ColumnType`], and rows and result metadata nothing more; the `TYPE_INFO` with
//! the collation is public only through `Client::column_metadata(table, columns)`, which runs
//! `SELECT TOP 0 … FROM table` and so works for a table or view, not for an arbitrary
//! `SOURCE_QUERY`. Hence two routes:
//!
//! - **Collation known** ([`ColumnMap::with_collations`] / [`ColumnMap::with_metadata`], or
//!   by name with [`ColumnMap::with_collation_names`], which the sync uses with what
//!   `sys.dm_exec_describe_first_result_set` says of `SOURCE_QUERY`'s result): a
//!   column whose collation has the UTF-8 flag is re-encoded with the code page tiberius
//!   decoded it with and decoded as UTF-8. Code page 1252 (and every single-byte code page
//!   tiberius uses) maps each of the 256 byte values to one character and back, so this is
//!   lossless; bytes that are not UTF-8 are refused. Other columns are left as decoded.
//! - **Collation unknown** (plain [`ColumnMap::resolve`]; the sync's fallback when the server does
//!   not describe the query): a `char` / `varchar` / `text` value
//!   whose characters, re-encoded in code page 1252, form valid UTF-8 with at least one
//!   multi-byte sequence, and whose UTF-8 reading holds no C1 control character, is taken to be
//!   UTF-8 (logged once per column). Text really written in code page 1252 passes that test
//!   only when every non-ASCII character in it is a letter in `À`–`ô` immediately followed by
//!   one to three characters of the 0x80–0xBF block (`€`, `™`, `½`, `°`, `–`, `"`…), as in
//!   `Ø½"` or `É™`: such a value would be misread. Selecting `CAST(col AS nvarchar(n)) AS col`
//!   makes any column exact, whatever the collation.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use rust_decimal::Decimal;
use tiberius::{Collation, Column, ColumnData, ColumnType, FromSql, MetaDataColumn, Row, TypeInfo};

use crate::open_orders::{FIELDS, Field, Kind, OpenOrder};

/// The largest magnitude (exclusive) of a `money` value that tiberius's `f64` keeps exact:
/// 2³⁹ = 549,755,813,888. See the module documentation.
pub const MONEY_EXACT_LIMIT: f64 = 549_755_813_888.0;

/// The UTF-8 flag in the info word of a TDS collation (`fUTF8`, bit 26).
pub const COLLATION_UTF8_FLAG: u32 = 0x0400_0000;

/// Whether a column collation stores UTF-8 (a `_UTF8` collation, SQL Server 2019 and later).
pub fn collation_is_utf8(collation: Collation) -> bool {
    collation.info() & COLLATION_UTF8_FLAG != 0
}

/// Whether a collation *name* (as `sys.columns.collation_name` or
/// `sys.dm_exec_describe_first_result_set` give it) stores UTF-8: the `_UTF8` collations of
/// SQL Server 2019 and later, whose names all end in `_UTF8` (case-insensitive here).
pub fn collation_name_is_utf8(name: &str) -> bool {
    let name = name.trim();
    name.len() >= 5 && name[name.len() - 5..].eq_ignore_ascii_case("_utf8")
}

/// The code page tiberius decodes a `_UTF8` collation's `varchar` with, from the collation's
/// name, as a [`Collation`] whose encoding is that code page — when the name tells it: the
/// `Latin1_General` family (LCID 0x0409, code page 1252). `None` for other families; their
/// columns keep the recognition by shape.
fn utf8_collation_code_page(name: &str) -> Option<Collation> {
    let name = name.trim();
    let family = "latin1_general_";
    (name.len() > family.len() && name[..family.len()].eq_ignore_ascii_case(family))
        .then(|| Collation::new(0x0409, 0))
}

/// A row that does not fit the open-order record, or a result that lacks a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 0-based index of the row in the result (None: the result's columns are wrong).
    pub row: Option<u64>,
    /// `(order_no, line_no)` when they could be read.
    pub order: Option<(i64, i32)>,
    /// The offending column.
    pub column: &'static str,
    /// What is wrong with it: for a value, the SQL type received in parentheses first, and
    /// the expression to select instead when a `CAST` on the server fixes it.
    pub problem: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.row, self.order) {
            (None, _) => write!(f, "the source query's result {}", self.problem),
            (Some(row), Some((order, line))) => write!(
                f,
                "order {order} line {line} (row {}): column `{}` {}",
                row + 1,
                self.column,
                self.problem
            ),
            (Some(row), None) => write!(f, "row {}: column `{}` {}", row + 1, self.column, self.problem),
        }
    }
}

impl std::error::Error for RowError {}

/// Other names a source column may have for a field.
fn aliases(field: &str) -> &'static [&'static str] {
    match field {
        "erp_modified_at" => &["modified_at", "last_modified"],
        _ => &[],
    }
}

/// How the text of a source column reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charset {
    /// UTF-16 on the wire (`nchar`, `nvarchar`, `ntext`), or not text at all: exact.
    Unicode,
    /// `char` / `varchar` / `text` whose collation is unknown: UTF-8 read as code page 1252 is
    /// recognised by its shape (see the module documentation).
    Unknown,
    /// `char` / `varchar` / `text` in a collation without the UTF-8 flag: exact as decoded.
    CodePage,
    /// `char` / `varchar` / `text` in a `_UTF8` collation; tiberius decoded it with this
    /// collation's code page.
    Utf8(Collation),
}

/// The source column a field is read from.
#[derive(Debug, Clone)]
struct Source {
    index: usize,
    name: String,
    ty: ColumnType,
    charset: Charset,
}

/// Where each field of the record sits in the source's rows, resolved once per result.
#[derive(Debug, Clone)]
pub struct ColumnMap {
    sources: [Option<Source>; FIELDS.len()],
    /// Per field: UTF-8 was recognised in a column of unknown collation (logged once).
    noticed: Arc<[AtomicBool; FIELDS.len()]>,
}

impl ColumnMap {
    /// Resolves every field by name (case-insensitive). A required field without a column
    /// is an error; an optional one reads as NULL.
    pub fn resolve(columns: &[Column]) -> Result<Self, RowError> {
        let mut sources: [Option<Source>; FIELDS.len()] = std::array::from_fn(|_| None);
        for (slot, field) in sources.iter_mut().zip(FIELDS.iter()) {
            let found = column_for(columns, field);
            if found.is_none() && !field.nullable {
                let names: Vec<&str> = columns.iter().map(Column::name).collect();
                return Err(RowError {
                    row: None,
                    order: None,
                    column: field.name,
                    problem: format!(
                        "has no column `{}` (it returned: {}); SOURCE_QUERY must return the \
                         open-order columns by name",
                        field.name,
                        names.join(", ")
                    ),
                });
            }
            *slot = found.map(|index| {
                let column = &columns[index];
                let ty = column.column_type();
                Source {
                    index,
                    name: column.name().to_owned(),
                    ty,
                    charset: if single_byte_text(ty) {
                        Charset::Unknown
                    } else {
                        Charset::Unicode
                    },
                }
            });
        }
        Ok(Self {
            sources,
            noticed: Arc::new(std::array::from_fn(|_| AtomicBool::new(false))),
        })
    }

    /// Tells the map the collations of source columns (matched by name, case-insensitively),
    /// so that `char` / `varchar` / `text` columns are decoded exactly instead of by shape: a
    /// collation with the UTF-8 flag is re-read as UTF-8, any other is taken as decoded.
    /// Columns not named keep the recognition by shape.
    pub fn with_collations<'a>(mut self, collations: impl IntoIterator<Item = (&'a str, Collation)>) -> Self {
        for (name, collation) in collations {
            for source in self.sources.iter_mut().flatten() {
                if source.charset != Charset::Unicode && source.name.eq_ignore_ascii_case(name) {
                    source.charset = if collation_is_utf8(collation) {
                        Charset::Utf8(collation)
                    } else {
                        Charset::CodePage
                    };
                }
            }
        }
        self
    }

    /// [`with_collations`](Self::with_collations) from collation *names*, as
    /// `sys.dm_exec_describe_first_result_set` gives them: `(column name, collation_name)`,
    /// the name `None` for a column that is not text. A name ending in `_UTF8` (see
    /// [`collation_name_is_utf8`]) is re-read as UTF-8 — from code page 1252 for the
    /// `Latin1_General` family, the code page tiberius decodes it with; a `_UTF8` collation of
    /// another family leaves the column to the recognition by shape, as its code page is not
    /// known from the name. Any other name is taken as decoded. Columns not named, or named
    /// without a collation, keep the recognition by shape.
    pub fn with_collation_names<'a>(
        mut self,
        columns: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Self {
        for (name, collation) in columns {
            let Some(collation) = collation else { continue };
            let charset = if collation_name_is_utf8(collation) {
                match utf8_collation_code_page(collation) {
                    Some(code_page) => Charset::Utf8(code_page),
                    None => continue,
                }
            } else {
                Charset::CodePage
            };
            for source in self.sources.iter_mut().flatten() {
                if source.charset != Charset::Unicode && source.name.eq_ignore_ascii_case(name) {
                    source.charset = charset;
                }
            }
        }
        self
    }

    /// How many of the fields read from `char` / `varchar` / `text` columns have a known
    /// collation (the rest are recognised by shape), for the log.
    pub fn known_collations(&self) -> (usize, usize) {
        let single_byte = self
            .sources
            .iter()
            .flatten()
            .filter(|s| s.charset != Charset::Unicode);
        let (mut known, mut all) = (0, 0);
        for source in single_byte {
            all += 1;
            if source.charset != Charset::Unknown {
                known += 1;
            }
        }
        (known, all)
    }

    /// [`with_collations`](Self::with_collations) from column metadata, e.g. what
    /// `Client::column_metadata("dbo.vw_OpenOrders", &["*"])` returns.
    pub fn with_metadata(self, columns: &[MetaDataColumn<'_>]) -> Self {
        let collations: Vec<(&str, Collation)> = columns
            .iter()
            .filter_map(|c| match c.base().ty() {
                TypeInfo::VarLenSized(cx) => cx.collation().map(|co| (c.col_name(), co)),
                _ => None,
            })
            .collect();
        self.with_collations(collations)
    }

    /// Reads one row.
    pub fn map(&self, row: &Row, row_index: u64) -> Result<OpenOrder, RowError> {
        let mut cells = Cells {
            row,
            map: self,
            row_index,
            order: None,
        };
        let order_no = cells.req(0, big_int)?;
        let line_no = cells.req(1, int)?;
        cells.order = Some((order_no, line_no));
        Ok(OpenOrder {
            order_no,
            line_no,
            customer_code: cells.req(2, text)?,
            customer_name: cells.req(3, text)?,
            item_code: cells.req(4, text)?,
            item_description: cells.opt(5, text)?,
            qty_ordered: cells.req(6, decimal)?,
            qty_shipped: cells.req(7, decimal)?,
            qty_open: cells.req(8, decimal)?,
            unit_price: cells.req(9, decimal)?,
            line_amount: cells.req(10, decimal)?,
            currency: cells.req(11, text)?,
            order_date: cells.req(12, date)?,
            requested_date: cells.opt(13, date)?,
            promised_date: cells.opt(14, date)?,
            warehouse: cells.opt(15, text)?,
            status: cells.req(16, text)?,
            rush: cells.req(17, boolean)?,
            erp_modified_at: cells.opt(18, date_time)?,
        })
    }
}

/// The column a field is read from: the first whose name is the field's (or an alias),
/// case-insensitively.
fn column_for(columns: &[Column], field: &Field) -> Option<usize> {
    columns.iter().position(|c| {
        c.name().eq_ignore_ascii_case(field.name)
            || aliases(field.name)
                .iter()
                .any(|a| c.name().eq_ignore_ascii_case(a))
    })
}

/// How one column of the source's result fares against the record (`sync-app check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnCheck {
    /// The column's name as the result gives it.
    pub column: String,
    /// Its SQL type as refusals name it (`int`, `nvarchar`, `money`…).
    pub sql_type: String,
    /// The record field it feeds; `None`: no field takes it, the sync ignores it.
    pub field: Option<&'static str>,
    /// `None`: its type and every sample value convert. Otherwise the refusal as the sync
    /// words it — the SQL type in parentheses, then what is wrong and the `CAST` that fixes
    /// it where one does.
    pub refusal: Option<String>,
    /// The 0-based sample row whose value was refused; `None` when the type itself is.
    pub row: Option<usize>,
}

/// A result's columns judged against the open-order record, by [`check_columns`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultCheck {
    /// Every column of the result, in its order.
    pub columns: Vec<ColumnCheck>,
    /// Required fields that no column provides: the sync fails before any row.
    pub missing: Vec<&'static str>,
    /// Optional fields that no column provides: they stay NULL.
    pub absent: Vec<&'static str>,
}

impl ResultCheck {
    /// Whether every field the sync needs is there and nothing was refused.
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.columns.iter().all(|c| c.refusal.is_none())
    }
}

/// Judges each column of a result with the conversions [`ColumnMap::map`] uses: first its
/// type alone (a NULL of that type), then its value in each of `rows` (a NULL in a
/// required field is refused too). Columns are matched to fields as
/// [`ColumnMap::resolve`] matches them; unlike it, every missing field is reported.
pub fn check_columns(columns: &[Column], rows: &[Row]) -> ResultCheck {
    let mut fields: Vec<Option<&'static Field>> = vec![None; columns.len()];
    let (mut missing, mut absent) = (Vec::new(), Vec::new());
    for field in FIELDS.iter() {
        match column_for(columns, field) {
            Some(index) => fields[index] = Some(field),
            None if field.nullable => absent.push(field.name),
            None => missing.push(field.name),
        }
    }
    let checks = columns
        .iter()
        .enumerate()
        .map(|(index, column)| {
            let ty = column.column_type();
            let samples: Vec<Option<&ColumnData<'static>>> =
                rows.iter().map(|r| r.get_column_data(index).ok()).collect();
            let probe = null_of(ty);
            // Name the type from a value where the type alone is ambiguous (Intn…).
            let shown = samples
                .iter()
                .flatten()
                .find(|d| !is_null(d))
                .copied()
                .or(samples.iter().flatten().next().copied())
                .or(probe.as_ref());
            let sql_type = match shown {
                Some(data) => sql_type(ty, data).to_owned(),
                None => "sql_variant".to_owned(),
            };
            let mut check = ColumnCheck {
                column: column.name().to_owned(),
                sql_type,
                field: fields[index].map(|f| f.name),
                refusal: None,
                row: None,
            };
            let Some(field) = fields[index] else {
                return check;
            };
            let source = Source {
                index,
                name: column.name().to_owned(),
                ty,
                charset: if single_byte_text(ty) {
                    Charset::Unknown
                } else {
                    Charset::Unicode
                },
            };
            // The mapping of the same rows logs the UTF-8 recognition; not twice.
            let noticed = AtomicBool::new(true);
            let judge = |data: &ColumnData<'static>| {
                let cell = Cell {
                    data,
                    source: &source,
                    field,
                    noticed: &noticed,
                };
                converts(&cell)
            };
            if let Some(Err(refusal)) = probe.as_ref().map(judge) {
                check.refusal = Some(refusal);
                return check;
            }
            for (row, data) in samples.iter().enumerate() {
                let Some(data) = data else { continue };
                let refusal = match judge(data) {
                    Err(refusal) => refusal,
                    Ok(false) if !field.nullable => "is NULL where a value is required".to_owned(),
                    Ok(_) => continue,
                };
                check.refusal = Some(refusal);
                check.row = Some(row);
                break;
            }
            check
        })
        .collect();
    ResultCheck {
        columns: checks,
        missing,
        absent,
    }
}

/// Whether the value converts into the cell's field (`Ok(false)`: it is NULL).
fn converts(c: &Cell<'_>) -> Result<bool, String> {
    Ok(match c.field.kind {
        Kind::BigInt => big_int(c)?.is_some(),
        Kind::Int => int(c)?.is_some(),
        Kind::Text => text(c)?.is_some(),
        Kind::Decimal => decimal(c)?.is_some(),
        Kind::Date => date(c)?.is_some(),
        Kind::DateTime => date_time(c)?.is_some(),
        Kind::Bool => boolean(c)?.is_some(),
    })
}

fn is_null(data: &ColumnData<'_>) -> bool {
    match data {
        ColumnData::U8(v) => v.is_none(),
        ColumnData::I16(v) => v.is_none(),
        ColumnData::I32(v) => v.is_none(),
        ColumnData::I64(v) => v.is_none(),
        ColumnData::F32(v) => v.is_none(),
        ColumnData::F64(v) => v.is_none(),
        ColumnData::Bit(v) => v.is_none(),
        ColumnData::String(v) => v.is_none(),
        ColumnData::Guid(v) => v.is_none(),
        ColumnData::Binary(v) => v.is_none(),
        ColumnData::Numeric(v) => v.is_none(),
        ColumnData::Xml(v) => v.is_none(),
        ColumnData::DateTime(v) => v.is_none(),
        ColumnData::SmallDateTime(v) => v.is_none(),
        ColumnData::Time(v) => v.is_none(),
        ColumnData::Date(v) => v.is_none(),
        ColumnData::DateTime2(v) => v.is_none(),
        ColumnData::DateTimeOffset(v) => v.is_none(),
    }
}

/// A NULL as tiberius decodes one of a column of this type; `None` for `sql_variant`,
/// whose values carry their own types.
fn null_of(ty: ColumnType) -> Option<ColumnData<'static>> {
    Some(match ty {
        ColumnType::Bit | ColumnType::Bitn => ColumnData::Bit(None),
        ColumnType::Int1 => ColumnData::U8(None),
        ColumnType::Int2 => ColumnData::I16(None),
        ColumnType::Int4 | ColumnType::Intn | ColumnType::Null => ColumnData::I32(None),
        ColumnType::Int8 => ColumnData::I64(None),
        ColumnType::Float4 => ColumnData::F32(None),
        ColumnType::Float8 | ColumnType::Floatn | ColumnType::Money | ColumnType::Money4 => {
            ColumnData::F64(None)
        }
        ColumnType::Datetime | ColumnType::Datetimen => ColumnData::DateTime(None),
        ColumnType::Datetime4 => ColumnData::SmallDateTime(None),
        ColumnType::Guid => ColumnData::Guid(None),
        ColumnType::Decimaln | ColumnType::Numericn => ColumnData::Numeric(None),
        ColumnType::Daten => ColumnData::Date(None),
        ColumnType::Timen => ColumnData::Time(None),
        ColumnType::Datetime2 => ColumnData::DateTime2(None),
        ColumnType::DatetimeOffsetn => ColumnData::DateTimeOffset(None),
        ColumnType::BigVarChar
        | ColumnType::BigChar
        | ColumnType::NVarchar
        | ColumnType::NChar
        | ColumnType::Text
        | ColumnType::NText => ColumnData::String(None),
        ColumnType::Xml => ColumnData::Xml(None),
        ColumnType::BigVarBin | ColumnType::BigBinary | ColumnType::Image | ColumnType::Udt => {
            ColumnData::Binary(None)
        }
        ColumnType::SSVariant => return None,
    })
}

/// `char`, `varchar` and `text`: single-byte text tiberius decodes with a code page.
fn single_byte_text(ty: ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::BigChar | ColumnType::BigVarChar | ColumnType::Text
    )
}

struct Cells<'r> {
    row: &'r Row,
    map: &'r ColumnMap,
    row_index: u64,
    order: Option<(i64, i32)>,
}

/// One value on its way into one field.
struct Cell<'a> {
    data: &'a ColumnData<'static>,
    source: &'a Source,
    field: &'static Field,
    noticed: &'a AtomicBool,
}

type Convert<T> = fn(&Cell<'_>) -> Result<Option<T>, String>;

impl Cells<'_> {
    fn error(&self, field: &Field, problem: String) -> RowError {
        RowError {
            row: Some(self.row_index),
            order: self.order,
            column: field.name,
            problem,
        }
    }

    fn opt<T>(&self, i: usize, convert: Convert<T>) -> Result<Option<T>, RowError> {
        let field = &FIELDS[i];
        let Some(source) = &self.map.sources[i] else {
            return Ok(None);
        };
        let data = self
            .row
            .get_column_data(source.index)
            .map_err(|e| self.error(field, format!("could not be read: {e}")))?;
        let cell = Cell {
            data,
            source,
            field,
            noticed: &self.map.noticed[i],
        };
        convert(&cell).map_err(|p| self.error(field, p))
    }

    fn req<T>(&self, i: usize, convert: Convert<T>) -> Result<T, RowError> {
        let field = &FIELDS[i];
        self.opt(i, convert)?
            .ok_or_else(|| self.error(field, "is NULL where a value is required".into()))
    }
}

impl Cell<'_> {
    /// The SQL type received, for messages.
    fn sql_type(&self) -> String {
        let name = sql_type(self.source.ty, self.data);
        match self.source.charset {
            Charset::Utf8(_) => format!("{name} in a UTF-8 collation"),
            _ => name.to_owned(),
        }
    }

    /// A problem with the value: `(sql type) what`.
    fn problem(&self, what: impl fmt::Display) -> String {
        format!("({}) {what}", self.sql_type())
    }

    /// What to select instead: the column converted to the field's type, under its name.
    fn fix(&self) -> String {
        let name = quote_name(&self.source.name);
        format!(
            "select `CAST({name} AS {}) AS {name}` in SOURCE_QUERY",
            target_type(self.field)
        )
    }

    /// The type received is not one the field takes.
    fn refuse(&self) -> String {
        let exactly = if matches!(self.data, ColumnData::F32(_) | ColumnData::F64(_)) {
            " (a floating-point value is not exact)"
        } else {
            ""
        };
        self.problem(format_args!(
            "is not a type the local {} field takes{exactly}; {}",
            target_type(self.field),
            self.fix()
        ))
    }

    /// The text as stored on the server, undoing tiberius's code-page reading of UTF-8.
    fn decode<'s>(&self, s: &'s str) -> Result<std::borrow::Cow<'s, str>, String> {
        use std::borrow::Cow::{Borrowed, Owned};
        if s.is_ascii() {
            return Ok(Borrowed(s));
        }
        match self.source.charset {
            Charset::Unicode | Charset::CodePage => Ok(Borrowed(s)),
            Charset::Utf8(collation) => {
                let encoding = collation.encoding().map_err(|e| self.problem(e))?;
                let (bytes, _, unmappable) = encoding.encode(s);
                if unmappable {
                    return Err(self.problem(format_args!(
                        "could not be turned back into the bytes of its {} collation; {}",
                        encoding.name(),
                        self.fix()
                    )));
                }
                String::from_utf8(bytes.into_owned()).map(Owned).map_err(|_| {
                    self.problem(format_args!(
                        "holds bytes that are not UTF-8 although its collation is; {}",
                        self.fix()
                    ))
                })
            }
            Charset::Unknown => Ok(match utf8_read_as_cp1252(s) {
                Some(text) => {
                    if !self.noticed.swap(true, Ordering::Relaxed) {
                        tracing::info!(
                            column = %self.source.name,
                            "column `{}` ({}) holds UTF-8 that tiberius read as code page 1252 \
                             (it ignores _UTF8 collations); reading it as UTF-8. Selecting \
                             CAST({} AS nvarchar(n)) makes this exact",
                            self.source.name,
                            self.sql_type(),
                            quote_name(&self.source.name)
                        );
                    }
                    Owned(text)
                }
                None => Borrowed(s),
            }),
        }
    }
}

/// `s` re-encoded in code page 1252, when those bytes are UTF-8 holding no C1 control
/// character: text of a `_UTF8` column that tiberius read as code page 1252. `None` for
/// anything else (ASCII, real code page 1252 text, text in another code page).
fn utf8_read_as_cp1252(s: &str) -> Option<String> {
    if s.is_ascii() {
        return None;
    }
    // LCID 0x0409 (en-US), sort id 0: the code page of the Latin1_General collations, the one
    // tiberius decodes their _UTF8 variants with.
    let cp1252 = Collation::new(0x0409, 0).encoding().ok()?;
    let (bytes, _, unmappable) = cp1252.encode(s);
    if unmappable {
        return None;
    }
    let text = std::str::from_utf8(&bytes).ok()?;
    if text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)) {
        return None;
    }
    Some(text.to_owned())
}

/// A column name as T-SQL needs it in an expression.
fn quote_name(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("[{}]", name.replace(']', "]]"))
    }
}

/// The SQL Server type that stores a field exactly (the `CAST` target).
fn target_type(field: &Field) -> String {
    match field.kind {
        Kind::BigInt => "bigint".into(),
        Kind::Int => "int".into(),
        Kind::Text => format!("nvarchar({})", field.limit),
        Kind::Decimal => {
            let (p, s) = field.precision_scale();
            format!("decimal({p},{s})")
        }
        Kind::Date => "date".into(),
        Kind::DateTime => "datetime2".into(),
        Kind::Bool => "bit".into(),
    }
}

/// The SQL Server type a value arrived as, for messages: from the column's type where it
/// says more than the value (money vs float, char vs varchar), else from the value.
fn sql_type(ty: ColumnType, data: &ColumnData<'_>) -> &'static str {
    match ty {
        ColumnType::Bit | ColumnType::Bitn => "bit",
        ColumnType::Int1 => "tinyint",
        ColumnType::Int2 => "smallint",
        ColumnType::Int4 => "int",
        ColumnType::Int8 => "bigint",
        ColumnType::Datetime4 => "smalldatetime",
        ColumnType::Datetime => "datetime",
        ColumnType::Float4 => "real",
        ColumnType::Float8 => "float",
        // A nullable smallmoney is announced as MONEYN of length 4, which tiberius's
        // ColumnType does not tell from money.
        ColumnType::Money => "money",
        ColumnType::Money4 => "smallmoney",
        ColumnType::Guid => "uniqueidentifier",
        ColumnType::Decimaln => "decimal",
        ColumnType::Numericn => "numeric",
        ColumnType::Daten => "date",
        ColumnType::Timen => "time",
        ColumnType::Datetime2 => "datetime2",
        ColumnType::DatetimeOffsetn => "datetimeoffset",
        ColumnType::BigVarBin => "varbinary",
        ColumnType::BigBinary => "binary",
        ColumnType::BigVarChar => "varchar",
        ColumnType::BigChar => "char",
        ColumnType::NVarchar => "nvarchar",
        ColumnType::NChar => "nchar",
        ColumnType::Xml => "xml",
        ColumnType::Udt => "a CLR user-defined type",
        ColumnType::Text => "text",
        ColumnType::Image => "image",
        ColumnType::NText => "ntext",
        ColumnType::SSVariant => "sql_variant",
        ColumnType::Null | ColumnType::Intn | ColumnType::Floatn | ColumnType::Datetimen => match data {
            ColumnData::U8(_) => "tinyint",
            ColumnData::I16(_) => "smallint",
            ColumnData::I32(_) => "int",
            ColumnData::I64(_) => "bigint",
            ColumnData::F32(_) => "real",
            ColumnData::F64(_) => "float",
            ColumnData::Bit(_) => "bit",
            ColumnData::String(_) => "nvarchar",
            ColumnData::Guid(_) => "uniqueidentifier",
            ColumnData::Binary(_) => "varbinary",
            ColumnData::Numeric(_) => "decimal",
            ColumnData::Xml(_) => "xml",
            ColumnData::DateTime(_) => "datetime",
            ColumnData::SmallDateTime(_) => "smalldatetime",
            ColumnData::Time(_) => "time",
            ColumnData::Date(_) => "date",
            ColumnData::DateTime2(_) => "datetime2",
            ColumnData::DateTimeOffset(_) => "datetimeoffset",
        },
    }
}

fn whole(data: &ColumnData<'static>) -> Result<Option<i128>, ()> {
    Ok(match data {
        ColumnData::U8(v) => v.map(i128::from),
        ColumnData::I16(v) => v.map(i128::from),
        ColumnData::I32(v) => v.map(i128::from),
        ColumnData::I64(v) => v.map(i128::from),
        ColumnData::Numeric(Some(n)) if n.scale() == 0 => Some(n.value()),
        ColumnData::Numeric(None) => None,
        _ => return Err(()),
    })
}

fn big_int(c: &Cell<'_>) -> Result<Option<i64>, String> {
    let v = whole(c.data).map_err(|()| c.refuse())?;
    v.map(|v| {
        i64::try_from(v).map_err(|_| c.problem(format_args!("value {v} does not fit a 64-bit integer")))
    })
    .transpose()
}

fn int(c: &Cell<'_>) -> Result<Option<i32>, String> {
    let v = whole(c.data).map_err(|()| c.refuse())?;
    v.map(|v| {
        i32::try_from(v).map_err(|_| c.problem(format_args!("value {v} does not fit a 32-bit integer")))
    })
    .transpose()
}

fn text(c: &Cell<'_>) -> Result<Option<String>, String> {
    let value = match c.data {
        ColumnData::String(None) | ColumnData::Guid(None) => return Ok(None),
        ColumnData::String(Some(s)) => {
            let decoded = c.decode(s)?;
            if matches!(c.source.ty, ColumnType::BigChar | ColumnType::NChar) {
                // char(n) / nchar(n) are padded with spaces to their length.
                decoded.trim_end_matches(' ').to_owned()
            } else {
                decoded.into_owned()
            }
        }
        // As SQL Server prints it (CAST(guid AS nvarchar(36))).
        ColumnData::Guid(Some(g)) => g.hyphenated().to_string().to_ascii_uppercase(),
        other => match whole(other) {
            Ok(None) => return Ok(None),
            Ok(Some(v)) => v.to_string(),
            Err(()) => return Err(c.refuse()),
        },
    };
    if value.contains('\0') {
        return Err(c.problem("contains a NUL character, which the local database cannot store"));
    }
    let chars = value.chars().count();
    if c.field.limit > 0 && chars > c.field.limit as usize {
        return Err(c.problem(format_args!(
            "is {chars} characters long, the local column holds {}",
            c.field.limit
        )));
    }
    Ok(Some(value))
}

/// The exact `money` value behind tiberius's `f64`, or `None` beyond [`MONEY_EXACT_LIMIT`].
///
/// The `f64` is `mantissa · 2^exponent` exactly; times 10⁴, rounded to the nearest integer,
/// it is the server's count of ten-thousandths (the error of tiberius's division is at most
/// half the `f64`'s spacing, below 0.5·10⁻⁴ under the limit). Done in integers: no second
/// rounding.
fn money(f: f64) -> Option<Decimal> {
    if !f.is_finite() || f.abs() >= MONEY_EXACT_LIMIT {
        return None;
    }
    let bits = f.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = i128::from(bits & ((1u64 << 52) - 1));
    let (mantissa, exponent) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1i128 << 52), biased - 1075)
    };
    let scaled = mantissa * 10_000; // < 2^67
    let ten_thousandths = if exponent >= 0 {
        scaled << exponent // not reached under the limit
    } else if exponent < -126 {
        0
    } else {
        let shift = -exponent;
        (scaled + (1i128 << (shift - 1))) >> shift
    };
    let signed = if bits >> 63 == 1 {
        -ten_thousandths
    } else {
        ten_thousandths
    };
    Some(Decimal::from_i128_with_scale(signed, 4))
}

fn decimal(c: &Cell<'_>) -> Result<Option<Decimal>, String> {
    let too_many_digits = |v: &dyn fmt::Display| {
        c.problem(format_args!(
            "value {v} has more digits than an exact decimal holds (28)"
        ))
    };
    let value = match c.data {
        ColumnData::Numeric(None) => return Ok(None),
        ColumnData::Numeric(Some(n)) => {
            // decimal(38,30) holding 1.5 arrives as 15 followed by 29 zeros: drop the
            // trailing zeros first so that only real digits count.
            let (mut value, mut scale) = (n.value(), u32::from(n.scale()));
            while scale > 0 && value % 10 == 0 {
                value /= 10;
                scale -= 1;
            }
            Decimal::try_from_i128_with_scale(value, scale).map_err(|_| too_many_digits(n))?
        }
        ColumnData::F64(v) if matches!(c.source.ty, ColumnType::Money | ColumnType::Money4) => match v {
            None => return Ok(None),
            Some(f) => money(*f).ok_or_else(|| {
                c.problem(format_args!(
                    "value {f} is beyond ±549,755,813,888 (2^39), the largest money value \
                     tiberius reads exactly (it decodes money as a 64-bit float); {}",
                    c.fix()
                ))
            })?,
        },
        other => match whole(other) {
            Ok(None) => return Ok(None),
            Ok(Some(v)) => Decimal::try_from_i128_with_scale(v, 0).map_err(|_| too_many_digits(&v))?,
            Err(()) => return Err(c.refuse()),
        },
    };
    let (precision, scale) = c.field.precision_scale();
    let normalized = value.normalize();
    if normalized.scale() > scale {
        return Err(c.problem(format_args!(
            "value {value} has more than {scale} decimal places; to round it on the server, {}",
            c.fix()
        )));
    }
    let int_digits = normalized.trunc().abs().to_string().trim_start_matches('0').len() as u32;
    if int_digits > precision - scale {
        return Err(c.problem(format_args!(
            "value {value} is too large for decimal({precision},{scale}) ({} digits before the point)",
            precision - scale
        )));
    }
    let mut exact = normalized;
    exact.rescale(scale);
    Ok(Some(exact))
}

/// A date field takes a date, or a date and time at midnight: a time of day is never dropped
/// silently (select `CAST(col AS date)` to drop it on purpose).
fn date(c: &Cell<'_>) -> Result<Option<NaiveDate>, String> {
    let (local, shown) = match c.data {
        ColumnData::Date(_) => return NaiveDate::from_sql(c.data).map_err(|e| c.problem(e)),
        ColumnData::DateTime(_) | ColumnData::DateTime2(_) | ColumnData::SmallDateTime(_) => {
            match NaiveDateTime::from_sql(c.data).map_err(|e| c.problem(e))? {
                None => return Ok(None),
                Some(dt) => (dt, dt.to_string()),
            }
        }
        // The date where the value was recorded (its own offset), as CAST(col AS date) gives.
        ColumnData::DateTimeOffset(_) => {
            match DateTime::<FixedOffset>::from_sql(c.data).map_err(|e| c.problem(e))? {
                None => return Ok(None),
                Some(dt) => (dt.naive_local(), dt.to_string()),
            }
        }
        _ => return Err(c.refuse()),
    };
    if local.time() == NaiveTime::MIN {
        Ok(Some(local.date()))
    } else {
        Err(c.problem(format_args!(
            "holds {shown}, a time of day the local date field would lose; to drop the time \
             deliberately, {}",
            c.fix()
        )))
    }
}

/// A date-and-time field takes any date/time type; a `datetimeoffset` is stored as its
/// instant in UTC, a `date` at midnight.
fn date_time(c: &Cell<'_>) -> Result<Option<NaiveDateTime>, String> {
    match c.data {
        ColumnData::DateTime(_) | ColumnData::DateTime2(_) | ColumnData::SmallDateTime(_) => {
            NaiveDateTime::from_sql(c.data).map_err(|e| c.problem(e))
        }
        // Not tiberius's DateTime<Utc> conversion: it subtracts the offset from the UTC
        // instant the wire carries a second time. DateTime<FixedOffset> reads it right.
        ColumnData::DateTimeOffset(_) => Ok(DateTime::<FixedOffset>::from_sql(c.data)
            .map_err(|e| c.problem(e))?
            .map(|d| d.naive_utc())),
        ColumnData::Date(_) => Ok(NaiveDate::from_sql(c.data)
            .map_err(|e| c.problem(e))?
            .map(|d| d.and_time(NaiveTime::MIN))),
        _ => Err(c.refuse()),
    }
}

fn boolean(c: &Cell<'_>) -> Result<Option<bool>, String> {
    match c.data {
        ColumnData::Bit(v) => Ok(*v),
        other => match whole(other) {
            Ok(None) => Ok(None),
            Ok(Some(0)) => Ok(Some(false)),
            Ok(Some(1)) => Ok(Some(true)),
            Ok(Some(v)) => Err(c.problem(format_args!("should be 0 or 1, got {v}"))),
            Err(()) => Err(c.refuse()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiberius::numeric::Numeric;
    use tiberius::time::{Date, DateTime as TdsDateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
    use tiberius::{BaseMetaDataColumn, Uuid, VarLenContext, VarLenType};

    fn days_since(y: i32, m: u32, d: u32, base: NaiveDate) -> i64 {
        (NaiveDate::from_ymd_opt(y, m, d).unwrap() - base).num_days()
    }
    fn date0(y: i32, m: u32, d: u32) -> Date {
        Date::new(days_since(y, m, d, NaiveDate::from_ymd_opt(1, 1, 1).unwrap()) as u32)
    }
    fn days1900(y: i32, m: u32, d: u32) -> i64 {
        days_since(y, m, d, NaiveDate::from_ymd_opt(1900, 1, 1).unwrap())
    }
    fn s(v: &str) -> ColumnData<'static> {
        ColumnData::String(Some(v.to_string().into()))
    }

    fn row(overrides: &[(&str, ColumnType, ColumnData<'static>)], skip: &[&str]) -> Row {
        let n = |v: i128, scale: u8| ColumnData::Numeric(Some(Numeric::new_with_scale(v, scale)));
        // Deliberately not in the record's order: mapping is by name.
        let base: Vec<(&str, ColumnType, ColumnData<'static>)> = vec![
            ("status", ColumnType::NVarchar, s("Open")),
            ("order_no", ColumnType::Intn, ColumnData::I64(Some(100_042))),
            ("LINE_NO", ColumnType::Intn, ColumnData::I32(Some(3))),
            ("customer_code", ColumnType::NVarchar, s("C00042")),
            ("customer_name", ColumnType::NVarchar, s("Müller GmbH")),
            ("item_code", ColumnType::NVarchar, s("IT-1")),
            ("item_description", ColumnType::NVarchar, ColumnData::String(None)),
            ("qty_ordered", ColumnType::Decimaln, n(120_000, 4)),
            ("qty_shipped", ColumnType::Decimaln, n(25_000, 4)),
            ("qty_open", ColumnType::Decimaln, n(95_000, 4)),
            ("unit_price", ColumnType::Decimaln, n(149_999, 4)),
            ("line_amount", ColumnType::Decimaln, n(142_499, 2)),
            ("currency", ColumnType::NVarchar, s("EUR")),
            (
                "order_date",
                ColumnType::Daten,
                ColumnData::Date(Some(date0(2026, 3, 1))),
            ),
            ("requested_date", ColumnType::Daten, ColumnData::Date(None)),
            (
                "promised_date",
                ColumnType::Daten,
                ColumnData::Date(Some(date0(2026, 4, 2))),
            ),
            ("warehouse", ColumnType::NVarchar, s("W1")),
            ("rush", ColumnType::Bitn, ColumnData::Bit(Some(true))),
        ];
        let mut b = Row::builder();
        for (name, ty, value) in base {
            if skip.contains(&name) {
                continue;
            }
            match overrides.iter().find(|(o, _, _)| o.eq_ignore_ascii_case(name)) {
                Some((_, t, v)) => b = b.column(name, *t, v.clone()),
                None => b = b.column(name, ty, value),
            }
        }
        for (name, t, v) in overrides {
            if ![
                "status",
                "order_no",
                "line_no",
                "customer_code",
                "customer_name",
                "item_code",
            ]
            .iter()
            .chain(&[
                "item_description",
                "qty_ordered",
                "qty_shipped",
                "qty_open",
                "unit_price",
                "line_amount",
                "currency",
                "order_date",
                "requested_date",
                "promised_date",
                "warehouse",
                "rush",
            ])
            .any(|k| k.eq_ignore_ascii_case(name))
            {
                b = b.column(*name, *t, v.clone()); // extra columns, e.g. modified_at
            }
        }
        b.build()
    }

    fn map(r: &Row) -> Result<OpenOrder, RowError> {
        ColumnMap::resolve(r.columns())?.map(r, 6)
    }

    fn one(name: &str, ty: ColumnType, value: ColumnData<'static>) -> Result<OpenOrder, RowError> {
        map(&row(&[(name, ty, value)], &[]))
    }

    fn refusal(name: &str, ty: ColumnType, value: ColumnData<'static>) -> String {
        one(name, ty, value).unwrap_err().to_string()
    }

    #[test]
    fn maps_by_name_with_exact_decimals_and_nulls() {
        let o = map(&row(&[], &[])).unwrap();
        assert_eq!((o.order_no, o.line_no), (100_042, 3));
        assert_eq!(o.qty_ordered.to_string(), "12.0000");
        assert_eq!(o.unit_price.to_string(), "14.9999");
        assert_eq!(o.line_amount.to_string(), "1424.99");
        assert_eq!(o.customer_name, "Müller GmbH");
        assert_eq!(o.item_description, None);
        assert_eq!(o.requested_date, None);
        assert_eq!(o.promised_date, NaiveDate::from_ymd_opt(2026, 4, 2));
        assert_eq!(o.erp_modified_at, None, "an optional column may be missing");
        assert!(o.rush);
    }

    #[test]
    fn bad_rows_name_the_order_the_column_and_the_sql_type() {
        let null = map(&row(
            &[("customer_code", ColumnType::NVarchar, ColumnData::String(None))],
            &[],
        ));
        assert_eq!(
            null.unwrap_err().to_string(),
            "order 100042 line 3 (row 7): column `customer_code` is NULL where a value is required"
        );
        let big = ColumnData::Numeric(Some(Numeric::new_with_scale(10i128.pow(34), 4)));
        let e = one("unit_price", ColumnType::Decimaln, big).unwrap_err();
        assert_eq!(e.column, "unit_price");
        assert!(e.problem.starts_with("(decimal) value"), "{e}");
        assert!(e.problem.contains("more digits"), "{e}");
        let wide = ColumnData::Numeric(Some(Numeric::new_with_scale(10i128.pow(20), 4)));
        let e = refusal("qty_open", ColumnType::Decimaln, wide);
        assert!(
            e.contains("(decimal) value 10000000000000000 is too large for decimal(18,4)"),
            "{e}"
        );
        let fine = ColumnData::Numeric(Some(Numeric::new_with_scale(123_456, 5)));
        let e = refusal("qty_open", ColumnType::Numericn, fine);
        assert!(
            e.contains(
                "(numeric) value 1.23456 has more than 4 decimal places; to round it on the server, \
                 select `CAST(qty_open AS decimal(18,4)) AS qty_open` in SOURCE_QUERY"
            ),
            "{e}"
        );
        let e = refusal("qty_open", ColumnType::NVarchar, s("12.5"));
        assert!(
            e.ends_with(
                "column `qty_open` (nvarchar) is not a type the local decimal(18,4) field takes; \
                 select `CAST(qty_open AS decimal(18,4)) AS qty_open` in SOURCE_QUERY"
            ),
            "{e}"
        );
        let e = refusal("customer_code", ColumnType::NVarchar, s(&"X".repeat(21)));
        assert!(
            e.contains("(nvarchar) is 21 characters long, the local column holds 20"),
            "{e}"
        );
        let huge = ColumnData::I64(Some(i64::from(i32::MAX) + 1));
        let e = refusal("LINE_NO", ColumnType::Int8, huge);
        assert!(
            e.starts_with("row 7: column `line_no` (bigint) value 2147483648 does not fit a 32-bit integer"),
            "{e}"
        );
        let e = refusal("order_no", ColumnType::NVarchar, s("42"));
        assert!(e.contains("select `CAST(order_no AS bigint) AS order_no`"), "{e}");
    }

    #[test]
    fn a_missing_required_column_fails_before_any_row() {
        let r = row(&[], &["qty_open"]);
        let e = ColumnMap::resolve(r.columns()).unwrap_err();
        assert!(e.to_string().contains("has no column `qty_open`"), "{e}");
    }

    #[test]
    fn wide_scales_and_nul_characters() {
        let wide = ColumnData::Numeric(Some(Numeric::new_with_scale(15 * 10i128.pow(29), 30)));
        let o = one("qty_open", ColumnType::Decimaln, wide).unwrap();
        assert_eq!(o.qty_open.to_string(), "1.5000", "decimal(38,30) 1.5 fits");
        let e = refusal("customer_name", ColumnType::NVarchar, s("Acme\0Corp"));
        assert!(
            e.contains("order 100042 line 3 (row 7): column `customer_name` (nvarchar) contains a NUL"),
            "{e}"
        );
    }

    #[test]
    fn whole_numbers_are_accepted_as_decimals() {
        let o = one("qty_open", ColumnType::Intn, ColumnData::I32(Some(7))).unwrap();
        assert_eq!(o.qty_open.to_string(), "7.0000");
        let o = one("order_no", ColumnType::Int4, ColumnData::I32(Some(9))).unwrap();
        assert_eq!(o.order_no, 9);
        let o = one("line_no", ColumnType::Int2, ColumnData::I16(Some(2))).unwrap();
        assert_eq!(o.line_no, 2);
        let o = one("line_no", ColumnType::Int1, ColumnData::U8(Some(200))).unwrap();
        assert_eq!(o.line_no, 200);
    }

    /// What tiberius makes of a money / smallmoney on the wire (its money::decode).
    fn wire_money(ten_thousandths: i64) -> f64 {
        let high = ten_thousandths >> 32;
        let low = (ten_thousandths as u64 & 0xffff_ffff) as f64;
        ((high << 32) as f64 + low) / 1e4
    }
    fn wire_smallmoney(ten_thousandths: i32) -> f64 {
        ten_thousandths as f64 / 1e4
    }

    #[test]
    fn money_and_smallmoney_are_exact_below_two_to_the_39() {
        let limit = 549_755_813_888i64 * 10_000; // 2^39 in ten-thousandths
        let mut samples: Vec<i64> = vec![0, 1, -1, 5, 12_345, 149_999, 99_999_999, limit - 1, -(limit - 1)];
        for p in 0..=52 {
            for d in [-3i64, -1, 0, 1, 3] {
                let k = (1i64 << p) + d;
                if k.abs() < limit {
                    samples.push(k);
                    samples.push(-k);
                }
            }
        }
        // Dense around the top, where the f64 spacing is closest to 10^-4.
        samples.extend((limit - 200_000..limit).step_by(7));
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % limit as u64) as i64;
            samples.push(if x & 1 == 1 { -k } else { k });
        }
        for k in samples {
            let got = money(wire_money(k)).unwrap_or_else(|| panic!("{k} refused"));
            assert_eq!(got, Decimal::from_i128_with_scale(i128::from(k), 4), "money {k}");
        }
        for k in [i32::MIN, i32::MAX, 0, -1, 1, 12_345, -2_147_483_647] {
            assert_eq!(
                money(wire_smallmoney(k)).unwrap(),
                Decimal::from_i128_with_scale(i128::from(k), 4),
                "smallmoney {k}"
            );
        }
        // The first money value that does not survive f64, and the type's extremes.
        assert_eq!(
            wire_money(limit + 3),
            wire_money(limit + 2),
            "neighbours share one f64 at 2^39"
        );
        for k in [limit, limit + 3, -limit, i64::MAX, i64::MIN] {
            assert_eq!(
                money(wire_money(k)),
                None,
                "{k} cannot be read exactly and must be refused"
            );
        }
    }

    #[test]
    fn money_maps_into_decimal_fields_and_is_refused_where_it_cannot_be_exact() {
        let m = |f: f64| ColumnData::F64(Some(f));
        let o = one("unit_price", ColumnType::Money4, m(wire_smallmoney(149_999))).unwrap();
        assert_eq!(o.unit_price.to_string(), "14.9999");
        let o = one("line_amount", ColumnType::Money, m(wire_money(14_249_900))).unwrap();
        assert_eq!(o.line_amount.to_string(), "1424.99");
        let top = 549_755_813_888i64 * 10_000 - 1;
        let o = one("unit_price", ColumnType::Money, m(wire_money(top))).unwrap();
        assert_eq!(o.unit_price.to_string(), "549755813887.9999");

        let e = refusal("unit_price", ColumnType::Money, m(wire_money(i64::MIN)));
        assert!(
            e.contains(
                "column `unit_price` (money) value -922337203685477.6 is beyond ±549,755,813,888 (2^39)"
            ),
            "{e}"
        );
        assert!(
            e.ends_with("select `CAST(unit_price AS decimal(19,4)) AS unit_price` in SOURCE_QUERY"),
            "{e}"
        );
        let e = refusal("line_amount", ColumnType::Money, m(wire_money(12_345)));
        assert!(
            e.contains(
                "(money) value 1.2345 has more than 2 decimal places; to round it on the server, \
                 select `CAST(line_amount AS decimal(19,2)) AS line_amount`"
            ),
            "{e}"
        );
        let e = refusal("qty_open", ColumnType::Float8, m(1.5));
        assert!(
            e.contains(
                "(float) is not a type the local decimal(18,4) field takes (a floating-point value \
                 is not exact); select `CAST(qty_open AS decimal(18,4)) AS qty_open`"
            ),
            "{e}"
        );
        let e = refusal("qty_open", ColumnType::Float4, ColumnData::F32(Some(1.5)));
        assert!(e.contains("(real) is not a type"), "{e}");
        let e = refusal("customer_code", ColumnType::Money, m(1.5));
        assert!(
            e.contains("(money) is not a type the local nvarchar(20) field takes"),
            "{e}"
        );
    }

    #[test]
    fn date_and_time_types_into_date_fields_only_at_midnight() {
        let dt = |y, m, d, fragments| {
            ColumnData::DateTime(Some(TdsDateTime::new(days1900(y, m, d) as i32, fragments)))
        };
        let sdt = |y, m, d, mins| {
            ColumnData::SmallDateTime(Some(SmallDateTime::new(days1900(y, m, d) as u16, mins)))
        };
        let dt2 =
            |y, m, d, inc| ColumnData::DateTime2(Some(DateTime2::new(date0(y, m, d), Time::new(inc, 7))));
        let march1 = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();

        assert_eq!(
            one("order_date", ColumnType::Datetime, dt(2026, 3, 1, 0))
                .unwrap()
                .order_date,
            march1
        );
        assert_eq!(
            one("order_date", ColumnType::Datetime4, sdt(2026, 3, 1, 0))
                .unwrap()
                .order_date,
            march1
        );
        assert_eq!(
            one("order_date", ColumnType::Datetime2, dt2(2026, 3, 1, 0))
                .unwrap()
                .order_date,
            march1
        );
        let o = one(
            "requested_date",
            ColumnType::Datetimen,
            ColumnData::SmallDateTime(None),
        )
        .unwrap();
        assert_eq!(o.requested_date, None);

        let e = refusal("order_date", ColumnType::Datetime, dt(2026, 3, 1, 300 * 52_200));
        assert_eq!(
            e,
            "order 100042 line 3 (row 7): column `order_date` (datetime) holds 2026-03-01 14:30:00, a time \
             of day the local date field would lose; to drop the time deliberately, select \
             `CAST(order_date AS date) AS order_date` in SOURCE_QUERY"
        );
        let e = refusal("promised_date", ColumnType::Datetimen, sdt(2026, 3, 1, 1));
        assert!(e.contains("(smalldatetime) holds 2026-03-01 00:01:00"), "{e}");
        let e = refusal("order_date", ColumnType::Datetime2, dt2(2026, 3, 1, 1));
        assert!(
            e.contains("(datetime2) holds 2026-03-01 00:00:00.000000100"),
            "{e}"
        );
        let e = refusal(
            "order_date",
            ColumnType::Timen,
            ColumnData::Time(Some(Time::new(0, 7))),
        );
        assert!(
            e.contains("(time) is not a type the local date field takes"),
            "{e}"
        );
        let e = refusal("order_date", ColumnType::NVarchar, s("2026-03-01"));
        assert!(
            e.contains("select `CAST(order_date AS date) AS order_date`"),
            "{e}"
        );
    }

    /// A datetimeoffset as the wire carries it: the UTC date and time, then the offset.
    fn dto(local: NaiveDateTime, offset_minutes: i16) -> ColumnData<'static> {
        let utc = local - chrono::Duration::minutes(i64::from(offset_minutes));
        let base = NaiveDate::from_ymd_opt(1, 1, 1).unwrap();
        let date = Date::new((utc.date() - base).num_days() as u32);
        let nanos = (utc.time() - NaiveTime::MIN).num_nanoseconds().unwrap() as u64;
        let time = Time::new(nanos / 100, 7);
        ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
            DateTime2::new(date, time),
            offset_minutes,
        )))
    }

    fn at(y: i32, m: u32, d: u32, h: u32, mi: u32, sec: u32, ms: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_milli_opt(h, mi, sec, ms)
            .unwrap()
    }

    #[test]
    fn datetimeoffset_into_date_and_timestamp_fields() {
        // Midnight in Berlin is 23:00 the day before in UTC: the date is the local one.
        let o = one(
            "order_date",
            ColumnType::DatetimeOffsetn,
            dto(at(2026, 3, 1, 0, 0, 0, 0), 60),
        )
        .unwrap();
        assert_eq!(o.order_date, NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
        let o = one(
            "promised_date",
            ColumnType::DatetimeOffsetn,
            dto(at(2026, 3, 1, 0, 0, 0, 0), -300),
        )
        .unwrap();
        assert_eq!(o.promised_date, NaiveDate::from_ymd_opt(2026, 3, 1));
        let e = refusal(
            "order_date",
            ColumnType::DatetimeOffsetn,
            dto(at(2026, 3, 1, 10, 0, 0, 0), 60),
        );
        assert!(
            e.contains("(datetimeoffset) holds 2026-03-01 10:00:00 +01:00, a time of day"),
            "{e}"
        );
        assert!(e.contains("`CAST(order_date AS date) AS order_date`"), "{e}");

        let o = one(
            "modified_at",
            ColumnType::DatetimeOffsetn,
            dto(at(2026, 3, 1, 10, 0, 0, 123), 120),
        )
        .unwrap();
        assert_eq!(
            o.erp_modified_at,
            Some(at(2026, 3, 1, 8, 0, 0, 123)),
            "the instant, in UTC"
        );
        let o = one(
            "modified_at",
            ColumnType::DatetimeOffsetn,
            ColumnData::DateTimeOffset(None),
        )
        .unwrap();
        assert_eq!(o.erp_modified_at, None);
    }

    #[test]
    fn date_and_time_types_into_timestamp_fields_keep_their_time() {
        // datetime ticks are 1/300 s: 10 ms steps are 3 ticks, exact.
        let dt = ColumnData::DateTime(Some(TdsDateTime::new(
            days1900(2026, 3, 1) as i32,
            300 * 3723 + 3 * 41,
        )));
        let o = one("modified_at", ColumnType::Datetime, dt).unwrap();
        assert_eq!(o.erp_modified_at, Some(at(2026, 3, 1, 1, 2, 3, 410)));
        let sdt = ColumnData::SmallDateTime(Some(SmallDateTime::new(days1900(2026, 3, 1) as u16, 61)));
        let o = one("modified_at", ColumnType::Datetime4, sdt).unwrap();
        assert_eq!(o.erp_modified_at, Some(at(2026, 3, 1, 1, 1, 0, 0)));
        let dt2 = ColumnData::DateTime2(Some(DateTime2::new(date0(2026, 3, 1), Time::new(3_723_123, 3))));
        let o = one("modified_at", ColumnType::Datetime2, dt2).unwrap();
        assert_eq!(o.erp_modified_at, Some(at(2026, 3, 1, 1, 2, 3, 123)));
        let o = one(
            "modified_at",
            ColumnType::Daten,
            ColumnData::Date(Some(date0(2026, 3, 1))),
        )
        .unwrap();
        assert_eq!(o.erp_modified_at, Some(at(2026, 3, 1, 0, 0, 0, 0)));
        let e = refusal("modified_at", ColumnType::NVarchar, s("2026-03-01"));
        assert!(
            e.contains(
                "column `erp_modified_at` (nvarchar) is not a type the local datetime2 field takes; \
                 select `CAST(modified_at AS datetime2) AS modified_at`"
            ),
            "{e}"
        );
    }

    #[test]
    fn char_and_nchar_padding_is_trimmed_varchar_is_not() {
        let padded = format!("Open{}", " ".repeat(26));
        let o = one("status", ColumnType::NChar, s(&padded)).unwrap();
        assert_eq!(o.status, "Open", "nchar(30) holding Open");
        let o = one("customer_code", ColumnType::BigChar, s("C00042    ")).unwrap();
        assert_eq!(o.customer_code, "C00042");
        let o = one("item_code", ColumnType::NChar, s("  IT-1  ")).unwrap();
        assert_eq!(o.item_code, "  IT-1", "leading spaces are data");
        let e = refusal("status", ColumnType::NVarchar, s(&padded));
        assert!(
            e.contains("(nvarchar) is 30 characters long"),
            "trailing spaces of nvarchar are data: {e}"
        );
    }

    #[test]
    fn integers_and_uniqueidentifiers_into_text_fields() {
        let o = one("customer_code", ColumnType::Int4, ColumnData::I32(Some(4711))).unwrap();
        assert_eq!(o.customer_code, "4711");
        let o = one("customer_code", ColumnType::Int8, ColumnData::I64(Some(-12))).unwrap();
        assert_eq!(o.customer_code, "-12");
        let o = one("customer_code", ColumnType::Int2, ColumnData::I16(Some(7))).unwrap();
        assert_eq!(o.customer_code, "7");
        let o = one("customer_code", ColumnType::Int1, ColumnData::U8(Some(255))).unwrap();
        assert_eq!(o.customer_code, "255");
        let whole = ColumnData::Numeric(Some(Numeric::new_with_scale(123_456, 0)));
        let o = one("customer_code", ColumnType::Numericn, whole).unwrap();
        assert_eq!(o.customer_code, "123456");
        let o = one("warehouse", ColumnType::Intn, ColumnData::I32(None)).unwrap();
        assert_eq!(o.warehouse, None);

        let guid = Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").unwrap();
        let o = one("item_code", ColumnType::Guid, ColumnData::Guid(Some(guid))).unwrap();
        assert_eq!(o.item_code, "6F9619FF-8B86-D011-B42D-00C04FC964FF");
        let e = refusal("customer_code", ColumnType::Guid, ColumnData::Guid(Some(guid)));
        assert!(
            e.contains("(uniqueidentifier) is 36 characters long, the local column holds 20"),
            "{e}"
        );

        let fraction = ColumnData::Numeric(Some(Numeric::new_with_scale(12_345, 2)));
        let e = refusal("customer_code", ColumnType::Decimaln, fraction);
        assert!(
            e.contains(
                "(decimal) is not a type the local nvarchar(20) field takes; select \
                 `CAST(customer_code AS nvarchar(20)) AS customer_code`"
            ),
            "{e}"
        );
        let e = refusal("customer_code", ColumnType::Bit, ColumnData::Bit(Some(true)));
        assert!(e.contains("(bit) is not a type"), "{e}");
        let e = refusal(
            "customer_code",
            ColumnType::BigVarBin,
            ColumnData::Binary(Some(vec![1u8].into())),
        );
        assert!(e.contains("(varbinary) is not a type"), "{e}");
    }

    /// UTF-8 text as tiberius decodes it from a `_UTF8` varchar column: byte by byte in
    /// code page 1252.
    fn read_as_cp1252(text: &str) -> String {
        let cp1252 = Collation::new(0x0409, 0).encoding().unwrap();
        let (decoded, malformed) = cp1252.decode_without_bom_handling(text.as_bytes());
        assert!(!malformed);
        decoded.into_owned()
    }

    const UTF8_INFO: u32 = u32::from_le_bytes([0x09, 0x04, 0xD0, 0x24]);
    const CP1252_INFO: u32 = u32::from_le_bytes([0x09, 0x04, 0xD0, 0x00]);

    #[test]
    fn code_page_1252_maps_every_byte_one_to_one() {
        let cp1252 = Collation::new(CP1252_INFO, 0x34).encoding().unwrap();
        let bytes: Vec<u8> = (0..=255).collect();
        let decoded = cp1252
            .decode_without_bom_handling_and_without_replacement(&bytes)
            .unwrap();
        assert_eq!(decoded.chars().count(), 256);
        let (encoded, _, unmappable) = cp1252.encode(&decoded);
        assert!(!unmappable);
        assert_eq!(&*encoded, &bytes[..]);
        assert!(collation_is_utf8(Collation::new(UTF8_INFO, 0)));
        assert!(!collation_is_utf8(Collation::new(CP1252_INFO, 0x34)));
        assert_eq!(
            Collation::new(UTF8_INFO, 0).encoding().unwrap().name(),
            "windows-1252"
        );
    }

    #[test]
    fn varchar_in_a_utf8_collation_is_recognised_without_the_collation() {
        assert_eq!(read_as_cp1252("Grüße"), "GrÃ¼ÃŸe");
        for text in [
            "Grüße",
            "é",
            "ü",
            "€ 5",
            "日本",
            "Łódź Metal Works",
            "東京精密機械株式会社",
            "Société Générale d'Équipement",
        ] {
            let o = one("customer_name", ColumnType::BigVarChar, s(&read_as_cp1252(text))).unwrap();
            assert_eq!(o.customer_name, text);
            // Padded char in a UTF-8 collation: decoded, then trimmed.
            let o = one(
                "item_code",
                ColumnType::BigChar,
                s(&format!("{}   ", read_as_cp1252(text))),
            )
            .unwrap();
            assert_eq!(o.item_code, text);
        }
        // Code page 1252 text stays as it is.
        for text in [
            "Müller Straße",
            "Précision Mécanique",
            "€ 5 – ½ kg",
            "naïve café",
            "Ærø ©",
        ] {
            let o = one("customer_name", ColumnType::BigVarChar, s(text)).unwrap();
            assert_eq!(o.customer_name, text);
        }
        // nvarchar is never touched, whatever it holds.
        let o = one("customer_name", ColumnType::NVarchar, s("GrÃ¼ÃŸe")).unwrap();
        assert_eq!(o.customer_name, "GrÃ¼ÃŸe");
        // The documented blind spot: code page 1252 text shaped exactly like UTF-8.
        let o = one("item_description", ColumnType::BigVarChar, s("Rohr Ø½")).unwrap();
        assert_ne!(o.item_description.as_deref(), Some("Rohr Ø½"));
        assert_eq!(utf8_read_as_cp1252("Rohr Ø½"), Some("Rohr \u{63d}".into()));
        // A C1 control in the UTF-8 reading rules it out.
        assert_eq!(utf8_read_as_cp1252("Â\u{81}"), None);
    }

    fn with(
        collations: &[(&str, u32)],
        overrides: &[(&str, ColumnType, ColumnData<'static>)],
    ) -> Result<OpenOrder, RowError> {
        let r = row(overrides, &[]);
        ColumnMap::resolve(r.columns())?
            .with_collations(collations.iter().map(|(n, info)| (*n, Collation::new(*info, 0))))
            .map(&r, 0)
    }

    #[test]
    fn a_known_collation_decides_exactly() {
        let mojibake = read_as_cp1252("Grüße 日本 €");
        let o = with(
            &[("CUSTOMER_NAME", UTF8_INFO)],
            &[("customer_name", ColumnType::BigVarChar, s(&mojibake))],
        )
        .unwrap();
        assert_eq!(o.customer_name, "Grüße 日本 €");
        // Known code page 1252: the blind spot is gone.
        let o = with(
            &[("item_description", CP1252_INFO)],
            &[("item_description", ColumnType::BigVarChar, s("Rohr Ø½"))],
        )
        .unwrap();
        assert_eq!(o.item_description.as_deref(), Some("Rohr Ø½"));
        let o = with(
            &[("customer_name", CP1252_INFO)],
            &[("customer_name", ColumnType::BigVarChar, s(&mojibake))],
        )
        .unwrap();
        assert_eq!(o.customer_name, mojibake);
        // A UTF-8 collation whose bytes are not UTF-8.
        let e = with(
            &[("customer_name", UTF8_INFO)],
            &[("customer_name", ColumnType::BigVarChar, s("Grüße"))],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "order 100042 line 3 (row 1): column `customer_name` (varchar in a UTF-8 collation) holds bytes \
             that are not UTF-8 although its collation is; select \
             `CAST(customer_name AS nvarchar(100)) AS customer_name` in SOURCE_QUERY"
        );
        // The same through column metadata, as Client::column_metadata returns it.
        let meta = |name: &str, ty: VarLenType, info: u32| MetaDataColumn {
            base: BaseMetaDataColumn {
                flags: Default::default(),
                ty: TypeInfo::VarLenSized(VarLenContext::new(ty, 100, Some(Collation::new(info, 0)))),
                table_name: None,
            },
            col_name: name.to_owned().into(),
        };
        let r = row(&[("customer_name", ColumnType::BigVarChar, s(&mojibake))], &[]);
        let map = ColumnMap::resolve(r.columns()).unwrap().with_metadata(&[meta(
            "customer_name",
            VarLenType::BigVarChar,
            UTF8_INFO,
        )]);
        assert_eq!(map.map(&r, 0).unwrap().customer_name, "Grüße 日本 €");
    }

    #[test]
    fn collation_names_tell_utf8() {
        for name in [
            "Latin1_General_100_CI_AS_SC_UTF8",
            "latin1_general_100_bin2_utf8",
            "Japanese_XJIS_140_CI_AS_UTF8",
            " Latin1_General_100_CI_AS_KS_WS_SC_UTF8 ",
        ] {
            assert!(collation_name_is_utf8(name), "{name}");
        }
        for name in [
            "SQL_Latin1_General_CP1_CI_AS",
            "Latin1_General_100_CI_AS_SC",
            "Latin1_General_CI_AS",
            "UTF8",
            "_UTF",
            "",
            "Latin1_General_UTF8_CI_AS",
        ] {
            assert!(!collation_name_is_utf8(name), "{name}");
        }
        assert_eq!(
            utf8_collation_code_page("Latin1_General_100_CI_AS_SC_UTF8")
                .unwrap()
                .encoding()
                .unwrap()
                .name(),
            "windows-1252"
        );
        assert_eq!(utf8_collation_code_page("Japanese_XJIS_140_CI_AS_UTF8"), None);
    }

    fn named(
        collations: &[(&str, Option<&str>)],
        overrides: &[(&str, ColumnType, ColumnData<'static>)],
    ) -> Result<OpenOrder, RowError> {
        let r = row(overrides, &[]);
        ColumnMap::resolve(r.columns())?
            .with_collation_names(collations.iter().copied())
            .map(&r, 0)
    }

    #[test]
    fn a_known_collation_name_decides_exactly() {
        let mojibake = read_as_cp1252("Grüße 日本 €");
        let utf8 = Some("Latin1_General_100_CI_AS_SC_UTF8");
        let cp1252 = Some("SQL_Latin1_General_CP1_CI_AS");
        let o = named(
            &[("Customer_Name", utf8)],
            &[("customer_name", ColumnType::BigVarChar, s(&mojibake))],
        )
        .unwrap();
        assert_eq!(o.customer_name, "Grüße 日本 €");
        // UTF-8 text shaped like the blind spot: exact with the name, misread without.
        let rohr = read_as_cp1252("Rohr Ø½");
        let o = named(
            &[("item_description", utf8)],
            &[("item_description", ColumnType::BigVarChar, s(&rohr))],
        )
        .unwrap();
        assert_eq!(o.item_description.as_deref(), Some("Rohr Ø½"));
        // Code page 1252 text shaped like UTF-8: the blind spot is gone with the name.
        let o = named(
            &[("item_description", cp1252)],
            &[("item_description", ColumnType::BigVarChar, s("Rohr Ø½"))],
        )
        .unwrap();
        assert_eq!(o.item_description.as_deref(), Some("Rohr Ø½"));
        let o = named(
            &[("customer_name", cp1252)],
            &[("customer_name", ColumnType::BigVarChar, s(&mojibake))],
        )
        .unwrap();
        assert_eq!(o.customer_name, mojibake);
        // No collation (not text), another column, a UTF-8 collation of an unknown code
        // page: recognised by shape.
        for collations in [
            vec![("customer_name", None)],
            vec![("item_code", cp1252)],
            vec![("customer_name", Some("Japanese_XJIS_140_CI_AS_UTF8"))],
        ] {
            let o = named(
                &collations,
                &[("customer_name", ColumnType::BigVarChar, s(&mojibake))],
            )
            .unwrap();
            assert_eq!(o.customer_name, "Grüße 日本 €", "{collations:?}");
        }
        // nvarchar is never touched.
        let o = named(
            &[("customer_name", utf8)],
            &[("customer_name", ColumnType::NVarchar, s(&mojibake))],
        )
        .unwrap();
        assert_eq!(o.customer_name, mojibake);
        let r = row(&[("customer_name", ColumnType::BigVarChar, s(&mojibake))], &[]);
        let map = ColumnMap::resolve(r.columns()).unwrap();
        let (_, all) = map.known_collations();
        assert!(all >= 1);
        assert_eq!(map.known_collations().0, 0);
        let map = map.with_collation_names([("customer_name", utf8)]);
        assert_eq!(map.known_collations().0, 1);
    }

    #[test]
    fn bits() {
        assert!(
            !one("rush", ColumnType::Int4, ColumnData::I32(Some(0)))
                .unwrap()
                .rush
        );
        assert!(
            one("rush", ColumnType::Int1, ColumnData::U8(Some(1)))
                .unwrap()
                .rush
        );
        let e = refusal("rush", ColumnType::Int4, ColumnData::I32(Some(2)));
        assert!(e.contains("(int) should be 0 or 1, got 2"), "{e}");
        let e = refusal("rush", ColumnType::BigChar, s("Y"));
        assert!(
            e.contains("(char) is not a type the local bit field takes; select `CAST(rush AS bit) AS rush`"),
            "{e}"
        );
    }

    #[test]
    fn names_are_quoted_in_the_fix() {
        assert_eq!(quote_name("order_date"), "order_date");
        assert_eq!(quote_name("Order Date"), "[Order Date]");
        assert_eq!(quote_name("a]b"), "[a]]b]");
        assert_eq!(quote_name("1st"), "[1st]");
    }
}
