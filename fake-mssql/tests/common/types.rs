//! One column of every `SqlType`, the value the handler sends, for the round-trip tests.

use chrono::{DateTime, NaiveDate, NaiveTime};
use fake_mssql::{Collation, Column, Reply, ResultSet, SqlType, Value};

pub const GUID_WIRE: [u8; 16] = [
    0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
];

fn dt(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, nanos: u32) -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(y, mo, d)
        .unwrap()
        .and_hms_nano_opt(h, mi, s, nanos)
        .unwrap()
}

/// Column name, type and the value sent.
pub fn columns() -> Vec<(&'static str, SqlType, Value)> {
    let cp1252 = Collation::Latin1Cp1252;
    vec![
        ("tiny", SqlType::TinyInt, Value::Int(255)),
        ("small", SqlType::SmallInt, Value::Int(-32768)),
        ("int", SqlType::Int, Value::Int(i64::from(i32::MIN))),
        ("big", SqlType::BigInt, Value::Int(i64::MAX)),
        ("bit", SqlType::Bit, Value::Bit(true)),
        (
            "dec",
            SqlType::Decimal {
                precision: 18,
                scale: 4,
            },
            Value::Decimal {
                mantissa: -123_456_789,
                scale: 4,
            },
        ),
        // 1.5 rescaled to decimal(10,2) = 1.50
        (
            "dec_rescaled",
            SqlType::Decimal {
                precision: 10,
                scale: 2,
            },
            Value::Decimal {
                mantissa: 15,
                scale: 1,
            },
        ),
        (
            "dec38",
            SqlType::Decimal {
                precision: 38,
                scale: 0,
            },
            Value::Decimal {
                mantissa: 10i128.pow(37),
                scale: 0,
            },
        ),
        (
            "money",
            SqlType::Money,
            Value::Decimal {
                mantissa: 12_345_678,
                scale: 4,
            },
        ),
        (
            "money_min",
            SqlType::Money,
            Value::Decimal {
                mantissa: i128::from(i64::MIN),
                scale: 4,
            },
        ),
        (
            "smallmoney",
            SqlType::SmallMoney,
            Value::Decimal {
                mantissa: 2_147_483_647,
                scale: 4,
            },
        ),
        ("real", SqlType::Real, Value::Float(1.5)),
        ("float", SqlType::Float, Value::Float(1e300)),
        (
            "date",
            SqlType::Date,
            Value::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
        ),
        (
            "time7",
            SqlType::Time { scale: 7 },
            Value::Time(NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_900).unwrap()),
        ),
        (
            "time0",
            SqlType::Time { scale: 0 },
            Value::Time(NaiveTime::from_hms_milli_opt(12, 34, 56, 500).unwrap()),
        ),
        // datetime: 23:59:59.999 rounds to the next day; .002 to 1/300 s; .005 to 2/300 s.
        (
            "dt_carry",
            SqlType::DateTime,
            Value::DateTime(dt(2024, 12, 31, 23, 59, 59, 999_000_000)),
        ),
        (
            "dt_tick",
            SqlType::DateTime,
            Value::DateTime(dt(2024, 1, 1, 12, 0, 0, 2_000_000)),
        ),
        (
            "dt_half",
            SqlType::DateTime,
            Value::DateTime(dt(2024, 1, 1, 12, 0, 0, 5_000_000)),
        ),
        (
            "sdt_down",
            SqlType::SmallDateTime,
            Value::DateTime(dt(2024, 5, 5, 10, 20, 29, 998_000_000)),
        ),
        (
            "sdt_up",
            SqlType::SmallDateTime,
            Value::DateTime(dt(2024, 5, 5, 10, 20, 29, 999_000_000)),
        ),
        (
            "dt2",
            SqlType::DateTime2 { scale: 3 },
            Value::DateTime(dt(2024, 12, 31, 23, 59, 59, 999_600_000)),
        ),
        (
            "dt2_7",
            SqlType::DateTime2 { scale: 7 },
            Value::DateTime(dt(1, 1, 1, 0, 0, 0, 100)),
        ),
        (
            "dto",
            SqlType::DateTimeOffset { scale: 7 },
            Value::DateTimeOffset(DateTime::parse_from_rfc3339("2024-06-01T10:00:00.1234567+02:00").unwrap()),
        ),
        (
            "char",
            SqlType::Char {
                len: 10,
                collation: cp1252,
            },
            Value::String("abc".into()),
        ),
        (
            "varchar",
            SqlType::VarChar {
                len: Some(50),
                collation: cp1252,
            },
            Value::String("Müller € œ Š".into()),
        ),
        (
            "varchar_lossy",
            SqlType::VarChar {
                len: Some(10),
                collation: cp1252,
            },
            Value::String("łódź".into()),
        ),
        (
            "varchar_trunc",
            SqlType::VarChar {
                len: Some(3),
                collation: cp1252,
            },
            Value::String("abcdef".into()),
        ),
        (
            "varchar_utf8",
            SqlType::VarChar {
                len: Some(50),
                collation: Collation::Utf8,
            },
            Value::String("Grüße".into()),
        ),
        (
            "varchar_max",
            SqlType::VarChar {
                len: None,
                collation: cp1252,
            },
            Value::String("Straße".into()),
        ),
        ("nchar", SqlType::NChar { len: 5 }, Value::String("ab".into())),
        (
            "nvarchar",
            SqlType::NVarChar { len: Some(20) },
            Value::String("Grüße 😀 ∑".into()),
        ),
        (
            "nvarchar_max",
            SqlType::NVarChar { len: None },
            Value::String("Ünïcødé".into()),
        ),
        ("guid", SqlType::UniqueIdentifier, Value::Guid(GUID_WIRE)),
    ]
}

/// `SELECT * FROM types` (NOT NULL columns), `… FROM ntypes` (nullable columns, same values),
/// `… FROM nulls` (nullable columns, all NULL), `… FROM mixed` (nullable, every other NULL).
pub fn reply(sql: &str) -> Option<Reply> {
    let cols = columns();
    let (nullable, values): (bool, Vec<Value>) = match sql {
        "SELECT * FROM types" => (false, cols.iter().map(|c| c.2.clone()).collect()),
        "SELECT * FROM ntypes" => (true, cols.iter().map(|c| c.2.clone()).collect()),
        "SELECT * FROM nulls" => (true, cols.iter().map(|_| Value::Null).collect()),
        "SELECT * FROM mixed" => (
            true,
            cols.iter()
                .enumerate()
                .map(|(i, c)| if i % 2 == 0 { Value::Null } else { c.2.clone() })
                .collect(),
        ),
        _ => return None,
    };
    let columns = cols
        .iter()
        .map(|(name, ty, _)| {
            let c = Column::new(*name, *ty);
            if nullable { c.nullable() } else { c }
        })
        .collect();
    Some(Reply::Rows(ResultSet::from_values(columns, vec![values])))
}
