//! One open order line, as read from the ERP and stored in `open_orders`.

use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;

/// One open order line. Quantities and amounts are exact decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOrder {
    /// The ERP's order number.
    pub order_no: i64,
    /// The line within the order.
    pub line_no: i32,
    /// Customer code (e.g. `C00042`).
    pub customer_code: String,
    /// Customer name.
    pub customer_name: String,
    /// Item code.
    pub item_code: String,
    /// Item description, when the ERP has one.
    pub item_description: Option<String>,
    /// Quantity ordered.
    pub qty_ordered: Decimal,
    /// Quantity shipped so far.
    pub qty_shipped: Decimal,
    /// Quantity still open.
    pub qty_open: Decimal,
    /// Price of one unit.
    pub unit_price: Decimal,
    /// Amount of the line (the ERP's figure, not recomputed).
    pub line_amount: Decimal,
    /// ISO currency code.
    pub currency: String,
    /// Date the order was placed.
    pub order_date: NaiveDate,
    /// Date the customer asked for.
    pub requested_date: Option<NaiveDate>,
    /// Date the company promised.
    pub promised_date: Option<NaiveDate>,
    /// Warehouse the line ships from.
    pub warehouse: Option<String>,
    /// The ERP's status text (`Open`, `Partially shipped`, …).
    pub status: String,
    /// Rush order.
    pub rush: bool,
    /// When the ERP last changed the line, if it says.
    pub erp_modified_at: Option<NaiveDateTime>,
}

/// What a column of the source result holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 64-bit integer.
    BigInt,
    /// 32-bit integer.
    Int,
    /// Text.
    Text,
    /// Exact decimal.
    Decimal,
    /// Calendar date.
    Date,
    /// Date and time.
    DateTime,
    /// Boolean.
    Bool,
}

/// One column of the open-order record: its name (in the source result and in the
/// local table), what it holds, whether NULL is allowed, and a width limit for text.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The column name.
    pub name: &'static str,
    /// What the column holds.
    pub kind: Kind,
    /// NULL allowed.
    pub nullable: bool,
    /// Maximum length in characters (text) or `(precision, scale)` folded as
    /// `precision * 100 + scale` for decimals; 0 when not limited.
    pub limit: u32,
}

const fn f(name: &'static str, kind: Kind, nullable: bool, limit: u32) -> Field {
    Field {
        name,
        kind,
        nullable,
        limit,
    }
}

/// The record's columns in the order of the local table (and of every INSERT).
pub const FIELDS: [Field; 19] = [
    f("order_no", Kind::BigInt, false, 0),
    f("line_no", Kind::Int, false, 0),
    f("customer_code", Kind::Text, false, 20),
    f("customer_name", Kind::Text, false, 100),
    f("item_code", Kind::Text, false, 40),
    f("item_description", Kind::Text, true, 200),
    f("qty_ordered", Kind::Decimal, false, 1804),
    f("qty_shipped", Kind::Decimal, false, 1804),
    f("qty_open", Kind::Decimal, false, 1804),
    f("unit_price", Kind::Decimal, false, 1904),
    f("line_amount", Kind::Decimal, false, 1902),
    f("currency", Kind::Text, false, 3),
    f("order_date", Kind::Date, false, 0),
    f("requested_date", Kind::Date, true, 0),
    f("promised_date", Kind::Date, true, 0),
    f("warehouse", Kind::Text, true, 10),
    f("status", Kind::Text, false, 20),
    f("rush", Kind::Bool, false, 0),
    f("erp_modified_at", Kind::DateTime, true, 0),
];

impl Field {
    /// `(precision, scale)` of a decimal column.
    pub fn precision_scale(&self) -> (u32, u32) {
        (self.limit / 100, self.limit % 100)
    }
}
