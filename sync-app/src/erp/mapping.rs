//! Maps the source's rows onto [`OpenOrder`] by column name, checking each value fits.

use std::fmt;

use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use tiberius::{Column, ColumnData, FromSql, Row};

use crate::open_orders::{FIELDS, Field, OpenOrder};

/// A row that does not fit the open-order record, or a result that lacks a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 0-based index of the row in the result (None: the result's columns are wrong).
    pub row: Option<u64>,
    /// `(order_no, line_no)` when they could be read.
    pub order: Option<(i64, i32)>,
    /// The offending column.
    pub column: &'static str,
    /// What is wrong with it.
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

/// Where each field of the record sits in the source's rows, resolved once per result.
#[derive(Debug, Clone)]
pub struct ColumnMap {
    index: [Option<usize>; FIELDS.len()],
}

impl ColumnMap {
    /// Resolves every field by name (case-insensitive). A required field without a column
    /// is an error; an optional one reads as NULL.
    pub fn resolve(columns: &[Column]) -> Result<Self, RowError> {
        let mut index = [None; FIELDS.len()];
        for (slot, field) in index.iter_mut().zip(FIELDS.iter()) {
            let found = columns.iter().position(|c| {
                c.name().eq_ignore_ascii_case(field.name)
                    || aliases(field.name)
                        .iter()
                        .any(|a| c.name().eq_ignore_ascii_case(a))
            });
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
            *slot = found;
        }
        Ok(Self { index })
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

struct Cells<'r> {
    row: &'r Row,
    map: &'r ColumnMap,
    row_index: u64,
    order: Option<(i64, i32)>,
}

type Convert<T> = fn(&ColumnData<'static>, &Field) -> Result<Option<T>, String>;

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
        let Some(idx) = self.map.index[i] else {
            return Ok(None);
        };
        let data = self
            .row
            .get_column_data(idx)
            .map_err(|e| self.error(field, format!("could not be read: {e}")))?;
        convert(data, field).map_err(|p| self.error(field, p))
    }

    fn req<T>(&self, i: usize, convert: Convert<T>) -> Result<T, RowError> {
        let field = &FIELDS[i];
        self.opt(i, convert)?
            .ok_or_else(|| self.error(field, "is NULL where a value is required".into()))
    }
}

/// The SQL Server type a value arrived as, for messages.
fn type_name(data: &ColumnData<'_>) -> &'static str {
    match data {
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
    }
}

fn wrong(expected: &str, data: &ColumnData<'_>) -> String {
    format!("should hold {expected}, but the source sent {}", type_name(data))
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

fn big_int(data: &ColumnData<'static>, _: &Field) -> Result<Option<i64>, String> {
    let v = whole(data).map_err(|()| wrong("a whole number", data))?;
    v.map(|v| i64::try_from(v).map_err(|_| format!("value {v} does not fit a 64-bit integer")))
        .transpose()
}

fn int(data: &ColumnData<'static>, _: &Field) -> Result<Option<i32>, String> {
    let v = whole(data).map_err(|()| wrong("a whole number", data))?;
    v.map(|v| i32::try_from(v).map_err(|_| format!("value {v} does not fit a 32-bit integer")))
        .transpose()
}

fn text(data: &ColumnData<'static>, field: &Field) -> Result<Option<String>, String> {
    match data {
        ColumnData::String(v) => match v {
            None => Ok(None),
            Some(s) => {
                if s.contains('\0') {
                    return Err("contains a NUL character, which the local database cannot store".into());
                }
                let chars = s.chars().count();
                if field.limit > 0 && chars > field.limit as usize {
                    Err(format!(
                        "is {chars} characters long, the local column holds {}",
                        field.limit
                    ))
                } else {
                    Ok(Some(s.to_string()))
                }
            }
        },
        _ => Err(wrong("text", data)),
    }
}

fn decimal(data: &ColumnData<'static>, field: &Field) -> Result<Option<Decimal>, String> {
    let value = match data {
        ColumnData::Numeric(None) => return Ok(None),
        ColumnData::Numeric(Some(n)) => {
            // decimal(38,30) holding 1.5 arrives as 15 followed by 29 zeros: drop the
            // trailing zeros first so that only real digits count.
            let (mut value, mut scale) = (n.value(), u32::from(n.scale()));
            while scale > 0 && value % 10 == 0 {
                value /= 10;
                scale -= 1;
            }
            Decimal::try_from_i128_with_scale(value, scale)
                .map_err(|_| format!("value {n} has more digits than an exact decimal holds (28)"))?
        }
        other => match whole(other) {
            Ok(None) => return Ok(None),
            Ok(Some(v)) => Decimal::try_from_i128_with_scale(v, 0)
                .map_err(|_| format!("value {v} has more digits than an exact decimal holds (28)"))?,
            Err(()) => return Err(wrong("a decimal", data)),
        },
    };
    let (precision, scale) = field.precision_scale();
    let normalized = value.normalize();
    if normalized.scale() > scale {
        return Err(format!("value {value} has more than {scale} decimal places"));
    }
    let int_digits = normalized.trunc().abs().to_string().trim_start_matches('0').len() as u32;
    if int_digits > precision - scale {
        return Err(format!(
            "value {value} is too large for decimal({precision},{scale}) ({} digits before the point)",
            precision - scale
        ));
    }
    let mut exact = normalized;
    exact.rescale(scale);
    Ok(Some(exact))
}

fn date(data: &ColumnData<'static>, _: &Field) -> Result<Option<NaiveDate>, String> {
    match data {
        ColumnData::Date(_) => NaiveDate::from_sql(data).map_err(|e| e.to_string()),
        ColumnData::DateTime(_) | ColumnData::DateTime2(_) | ColumnData::SmallDateTime(_) => {
            Ok(NaiveDateTime::from_sql(data)
                .map_err(|e| e.to_string())?
                .map(|d| d.date()))
        }
        _ => Err(wrong("a date", data)),
    }
}

fn date_time(data: &ColumnData<'static>, _: &Field) -> Result<Option<NaiveDateTime>, String> {
    match data {
        ColumnData::DateTime(_) | ColumnData::DateTime2(_) | ColumnData::SmallDateTime(_) => {
            NaiveDateTime::from_sql(data).map_err(|e| e.to_string())
        }
        ColumnData::DateTimeOffset(_) => Ok(chrono::DateTime::<chrono::Utc>::from_sql(data)
            .map_err(|e| e.to_string())?
            .map(|d| d.naive_utc())),
        ColumnData::Date(_) => Ok(NaiveDate::from_sql(data)
            .map_err(|e| e.to_string())?
            .map(|d| d.and_time(chrono::NaiveTime::MIN))),
        _ => Err(wrong("a date and time", data)),
    }
}

fn boolean(data: &ColumnData<'static>, _: &Field) -> Result<Option<bool>, String> {
    match data {
        ColumnData::Bit(v) => Ok(*v),
        other => match whole(other) {
            Ok(None) => Ok(None),
            Ok(Some(0)) => Ok(Some(false)),
            Ok(Some(1)) => Ok(Some(true)),
            Ok(Some(v)) => Err(format!("should be 0 or 1, got {v}")),
            Err(()) => Err(wrong("a bit", data)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiberius::{ColumnType, numeric::Numeric};

    fn row(overrides: &[(&str, ColumnType, ColumnData<'static>)], skip: &[&str]) -> Row {
        let date = |y, m, d| {
            tiberius::time::Date::new(
                (NaiveDate::from_ymd_opt(y, m, d).unwrap() - NaiveDate::from_ymd_opt(1, 1, 1).unwrap())
                    .num_days() as u32,
            )
        };
        let s = |v: &str| ColumnData::String(Some(v.to_string().into()));
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
                ColumnData::Date(Some(date(2026, 3, 1))),
            ),
            ("requested_date", ColumnType::Daten, ColumnData::Date(None)),
            (
                "promised_date",
                ColumnType::Daten,
                ColumnData::Date(Some(date(2026, 4, 2))),
            ),
            ("warehouse", ColumnType::NVarchar, s("W1")),
            ("rush", ColumnType::Bitn, ColumnData::Bit(Some(true))),
        ];
        let mut b = Row::builder();
        for (name, ty, value) in base {
            if skip.contains(&name) {
                continue;
            }
            match overrides.iter().find(|(o, _, _)| *o == name) {
                Some((_, t, v)) => b = b.column(name, *t, v.clone()),
                None => b = b.column(name, ty, value),
            }
        }
        b.build()
    }

    fn map(r: &Row) -> Result<OpenOrder, RowError> {
        ColumnMap::resolve(r.columns())?.map(r, 6)
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
    fn bad_rows_name_the_order_and_the_column() {
        let null = map(&row(
            &[("customer_code", ColumnType::NVarchar, ColumnData::String(None))],
            &[],
        ));
        assert_eq!(
            null.unwrap_err().to_string(),
            "order 100042 line 3 (row 7): column `customer_code` is NULL where a value is required"
        );
        let big = ColumnData::Numeric(Some(Numeric::new_with_scale(10i128.pow(34), 4)));
        let e = map(&row(&[("unit_price", ColumnType::Decimaln, big)], &[])).unwrap_err();
        assert_eq!(e.column, "unit_price");
        assert!(e.problem.contains("more digits"), "{e}");
        let wide = ColumnData::Numeric(Some(Numeric::new_with_scale(10i128.pow(20), 4)));
        let e = map(&row(&[("qty_open", ColumnType::Decimaln, wide)], &[])).unwrap_err();
        assert!(e.to_string().contains("too large for decimal(18,4)"), "{e}");
        let fine = ColumnData::Numeric(Some(Numeric::new_with_scale(123_456, 5)));
        let e = map(&row(&[("qty_open", ColumnType::Decimaln, fine)], &[])).unwrap_err();
        assert!(e.to_string().contains("more than 4 decimal places"), "{e}");
        let text = ColumnData::String(Some("12.5".into()));
        let e = map(&row(&[("qty_open", ColumnType::NVarchar, text)], &[])).unwrap_err();
        assert!(
            e.to_string()
                .contains("should hold a decimal, but the source sent nvarchar"),
            "{e}"
        );
        let long = ColumnData::String(Some("X".repeat(21).into()));
        let e = map(&row(&[("customer_code", ColumnType::NVarchar, long)], &[])).unwrap_err();
        assert!(e.to_string().contains("21 characters long"), "{e}");
        let huge = ColumnData::I64(Some(i64::from(i32::MAX) + 1));
        let e = map(&row(&[("LINE_NO", ColumnType::Intn, huge)], &[])).unwrap_err();
        assert!(e.to_string().starts_with("row 7: column `line_no`"), "{e}");
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
        let o = map(&row(&[("qty_open", ColumnType::Decimaln, wide)], &[])).unwrap();
        assert_eq!(o.qty_open.to_string(), "1.5000", "decimal(38,30) 1.5 fits");
        let nul = ColumnData::String(Some("Acme\0Corp".into()));
        let e = map(&row(&[("customer_name", ColumnType::NVarchar, nul)], &[])).unwrap_err();
        assert!(
            e.to_string()
                .contains("order 100042 line 3 (row 7): column `customer_name` contains a NUL"),
            "{e}"
        );
    }

    #[test]
    fn whole_numbers_are_accepted_as_decimals() {
        let o = map(&row(
            &[("qty_open", ColumnType::Intn, ColumnData::I32(Some(7)))],
            &[],
        ))
        .unwrap();
        assert_eq!(o.qty_open.to_string(), "7.0000");
    }
}
