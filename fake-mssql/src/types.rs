//! SQL Server column types and their TDS encoding: COLMETADATA (0x81), ROW (0xD1) and
//! NBCROW (0xD2) tokens, byte for byte as SQL Server sends them (MS-TDS 2.2.5.4, 2.2.5.5,
//! 2.2.7.4, 2.2.7.15, 2.2.7.19; TDS 7.1 to 7.4).
//!
//! The hot path is [`RowEncoder::row`] + [`RowWriter`]: values are written straight into the
//! output buffer (no allocation per row, no intermediate copy for a row without NULLs). When a
//! row has NULLs and the NBCROW form is strictly shorter (TDS 7.3B+), the row is rewritten once
//! through a scratch buffer owned by the encoder.
//!
//! Conversions follow SQL Server:
//! * `datetime` is rounded to the nearest 1/300 s (23:59:59.999 becomes the next day);
//! * `smalldatetime` is first rounded to `datetime` ticks and then to the nearest minute, half up,
//!   which gives SQL Server's documented rule "29.998 s or less rounds down, 29.999 s or more
//!   rounds up";
//! * `time` / `datetime2` / `datetimeoffset` are rounded half up to the column's scale
//!   (`datetime2` carries into the next day, `time` wraps to 00:00:00);
//! * decimals are rescaled exactly, or rounded half away from zero when digits are dropped;
//! * strings in a CP1252 collation map characters outside CP1252 to `?` (SQL Server additionally
//!   applies Windows "best fit" mappings, e.g. `ł` → `l`; this module does not);
//! * char / nchar values are padded with spaces to the declared length; values longer than a
//!   column's declared maximum are truncated (SQL Server would have refused to store them).
//!
//! Downgrades for old clients:
//! * below TDS 7.3 (7.1, 7.2) `date`, `time`, `datetime2` and `datetimeoffset` columns are sent
//!   as `nvarchar(n)` holding SQL Server's text form ('YYYY-MM-DD', 'hh:mm:ss[.f…]',
//!   'YYYY-MM-DD hh:mm:ss[.f…]', 'YYYY-MM-DD hh:mm:ss[.f…] +hh:mm');
//! * in TDS 7.1, `varchar(max)` / `nvarchar(max)` are sent as `TEXT` / `NTEXT`.
//!
//! UTF-8 collations: [`Collation::Utf8`] is `Latin1_General_100_CI_AS_SC_UTF8`, sent as
//! `09 04 D0 24 00` (LCID 0x0409, IgnoreCase|IgnoreKana|IgnoreWidth, fUTF8 = bit 26 of the info
//! word (0x0400_0000), collation version 2 (the `_100` generation), sort id 0). SQL Server sends
//! this collation and UTF-8 bytes verbatim; only with trace flag 11813 (SQL Server 2019 CU17+,
//! KB5016780) does it substitute the closest non-UTF-8 collation in what it tells clients that did
//! not announce the UTF8_SUPPORT feature extension. This module always sends the UTF-8 collation
//! and UTF-8 bytes. Note that tiberius 0.13 ignores the fUTF8 bit (it picks the encoding from the
//! LCID / sort id only), so it decodes such values as CP1252 (mojibake for non-ASCII text).

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// A column's SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SqlType {
    /// `tinyint` (0..=255).
    TinyInt,
    /// `smallint`.
    SmallInt,
    /// `int`.
    Int,
    /// `bigint`.
    BigInt,
    /// `bit`.
    Bit,
    /// `decimal(precision, scale)`, precision 1..=38, scale <= precision.
    Decimal {
        /// Total number of digits, 1..=38.
        precision: u8,
        /// Digits after the decimal point.
        scale: u8,
    },
    /// `money` (8 bytes, scale 4).
    Money,
    /// `smallmoney` (4 bytes, scale 4).
    SmallMoney,
    /// `real` (4-byte float).
    Real,
    /// `float` (8-byte float).
    Float,
    /// `date`.
    Date,
    /// `time(scale)`, scale 0..=7.
    Time {
        /// Fractional-second digits, 0..=7.
        scale: u8,
    },
    /// `datetime` (1/300 s precision).
    DateTime,
    /// `smalldatetime` (minute precision).
    SmallDateTime,
    /// `datetime2(scale)`, scale 0..=7.
    DateTime2 {
        /// Fractional-second digits, 0..=7.
        scale: u8,
    },
    /// `datetimeoffset(scale)`, scale 0..=7.
    DateTimeOffset {
        /// Fractional-second digits, 0..=7.
        scale: u8,
    },
    /// `char(len)`, len in bytes (1..=8000).
    Char {
        /// Declared length in bytes.
        len: u16,
        /// Collation (code page) of the column.
        collation: Collation,
    },
    /// `varchar(len)` (len in bytes, 1..=8000) or `varchar(max)` (`None`).
    VarChar {
        /// Declared length in bytes; `None` = `varchar(max)`.
        len: Option<u16>,
        /// Collation (code page) of the column.
        collation: Collation,
    },
    /// `nchar(len)`, len in characters (UTF-16 code units, 1..=4000).
    NChar {
        /// Declared length in characters.
        len: u16,
    },
    /// `nvarchar(len)` (len in characters, 1..=4000) or `nvarchar(max)` (`None`).
    NVarChar {
        /// Declared length in characters; `None` = `nvarchar(max)`.
        len: Option<u16>,
    },
    /// `uniqueidentifier`.
    UniqueIdentifier,
}

/// The collation (and so the code page) of a char / varchar column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Collation {
    /// `SQL_Latin1_General_CP1_CI_AS` (code page 1252), wire bytes `09 04 D0 00 34`.
    Latin1Cp1252,
    /// `Latin1_General_100_CI_AS_SC_UTF8` (UTF-8), wire bytes `09 04 D0 24 00`.
    Utf8,
}

impl Collation {
    /// The 5 bytes of the TDS COLLATION structure (info word LE, then sort id).
    pub fn wire_bytes(self) -> [u8; 5] {
        match self {
            Collation::Latin1Cp1252 => COLLATION_CP1252,
            Collation::Utf8 => COLLATION_UTF8,
        }
    }
}

const COLLATION_CP1252: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];
const COLLATION_UTF8: [u8; 5] = [0x09, 0x04, 0xD0, 0x24, 0x00];

/// One result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name (may be empty).
    pub name: Cow<'static, str>,
    /// SQL type.
    pub ty: SqlType,
    /// Whether the column may hold NULL.
    pub nullable: bool,
}

impl Column {
    /// A NOT NULL column.
    pub fn new(name: impl Into<Cow<'static, str>>, ty: SqlType) -> Self {
        Column {
            name: name.into(),
            ty,
            nullable: false,
        }
    }

    /// Makes the column nullable.
    pub fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }
}

/// A value, for the generic (slower) path and for RPC parameters.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL NULL.
    Null,
    /// Any integer.
    Int(i64),
    /// A bit.
    Bit(bool),
    /// An exact decimal `mantissa / 10^scale`.
    Decimal {
        /// Unscaled value.
        mantissa: i128,
        /// Number of decimal digits.
        scale: u8,
    },
    /// A float.
    Float(f64),
    /// A date.
    Date(NaiveDate),
    /// A time of day.
    Time(NaiveTime),
    /// A date and time without offset.
    DateTime(NaiveDateTime),
    /// A date and time with offset.
    DateTimeOffset(DateTime<FixedOffset>),
    /// A string.
    String(String),
    /// A GUID, bytes in wire order.
    Guid([u8; 16]),
    /// Raw bytes: already-encoded text in the column's encoding (UTF-16LE for nchar/nvarchar),
    /// or 16 GUID bytes for a uniqueidentifier column.
    Bytes(Vec<u8>),
}

/// The TDS version negotiated with the client (what LOGINACK says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TdsVersion {
    /// TDS 7.1 (SQL Server 2000 SP1).
    V7_1,
    /// TDS 7.2 (SQL Server 2005).
    V7_2,
    /// TDS 7.3A (SQL Server 2008).
    V7_3A,
    /// TDS 7.3B (SQL Server 2008 R2).
    V7_3B,
    /// TDS 7.4 (SQL Server 2012 and later).
    V7_4,
}

impl TdsVersion {
    /// From LOGIN7's TDSVersion field (little-endian u32 as read from the wire, e.g. 0x74000004
    /// for 7.4); anything newer is 7.4, anything older than 7.1 is 7.1.
    pub fn from_login7(v: u32) -> Self {
        if v >= 0x7400_0000 {
            TdsVersion::V7_4
        } else if v >= 0x730B_0003 {
            TdsVersion::V7_3B
        } else if v >= 0x730A_0003 {
            TdsVersion::V7_3A
        } else if v >= 0x7209_0002 {
            TdsVersion::V7_2
        } else {
            TdsVersion::V7_1
        }
    }

    /// The value LOGINACK carries (big-endian on the wire).
    pub fn loginack_value(self) -> u32 {
        match self {
            TdsVersion::V7_1 => 0x7100_0001,
            TdsVersion::V7_2 => 0x7209_0002,
            TdsVersion::V7_3A => 0x730A_0003,
            TdsVersion::V7_3B => 0x730B_0003,
            TdsVersion::V7_4 => 0x7400_0004,
        }
    }

    /// Whether DATE / TIME / DATETIME2 / DATETIMEOFFSET may be sent (7.3 and later).
    pub fn has_date_types(self) -> bool {
        self >= TdsVersion::V7_3A
    }

    /// Whether `(max)` types (PLP) may be sent (7.2 and later).
    pub fn has_plp(self) -> bool {
        self >= TdsVersion::V7_2
    }

    /// Whether the NBCROW token may be sent (7.3B and later).
    pub fn has_nbcrow(self) -> bool {
        self >= TdsVersion::V7_3B
    }
}

// ---------------------------------------------------------------------------------------------
// Wire constants
// ---------------------------------------------------------------------------------------------

const TOKEN_COLMETADATA: u8 = 0x81;
const TOKEN_ROW: u8 = 0xD1;
const TOKEN_NBCROW: u8 = 0xD2;

const INT1: u8 = 0x30;
const INT2: u8 = 0x34;
const INT4: u8 = 0x38;
const INT8: u8 = 0x7F;
const INTN: u8 = 0x26;
const BIT: u8 = 0x32;
const BITN: u8 = 0x68;
const MONEY: u8 = 0x3C;
const MONEY4: u8 = 0x7A;
const MONEYN: u8 = 0x6E;
const DATETIME: u8 = 0x3D;
const DATETIM4: u8 = 0x3A;
const DATETIMN: u8 = 0x6F;
const FLT4: u8 = 0x3B;
const FLT8: u8 = 0x3E;
const FLTN: u8 = 0x6D;
const DECIMALN: u8 = 0x6A;
const DATEN: u8 = 0x28;
const TIMEN: u8 = 0x29;
const DATETIME2N: u8 = 0x2A;
const DATETIMEOFFSETN: u8 = 0x2B;
const BIGCHAR: u8 = 0xAF;
const BIGVARCHAR: u8 = 0xA7;
const NCHAR: u8 = 0xEF;
const NVARCHAR: u8 = 0xE7;
const TEXT: u8 = 0x23;
const NTEXT: u8 = 0x63;
const GUIDTYPE: u8 = 0x24;

/// Bytes per PLP chunk for values longer than this.
const PLP_CHUNK: usize = 8000;
const PLP_NULL: u64 = u64::MAX;
/// The 16-byte text pointer sent with TEXT / NTEXT values (any non-empty value works).
const TEXTPTR: [u8; 16] = [
    0x64, 0x75, 0x6D, 0x6D, 0x79, 0x20, 0x74, 0x65, 0x78, 0x74, 0x70, 0x74, 0x72, 0x00, 0x00, 0x00,
];
const TEXT_TIMESTAMP: [u8; 8] = [0; 8];

/// `NaiveDate::num_days_from_ce()` of 1900-01-01.
const CE_DAYS_1900: i32 = 693_596;
const DATETIME_TICKS_PER_DAY: u64 = 86_400 * 300;
const NANOS_PER_DAY: u64 = 86_400 * 1_000_000_000;

const POW10_U64: [u64; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

fn pow10_i128(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

// ---------------------------------------------------------------------------------------------
// Per-column wire description
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enc {
    Utf16,
    Cp1252,
    Utf8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// USHORT length prefix, NULL = 0xFFFF.
    Short,
    /// Partially length-prefixed ((max) types), NULL = 0xFFFFFFFFFFFFFFFF.
    Plp,
    /// TEXT / NTEXT (TDS 7.1 stand-in for (max) types), NULL = textptr length 0.
    Legacy,
}

/// How temporal values are rendered into a text column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextTemporal {
    /// An ordinary string column: the form follows the value.
    Any,
    Date,
    Time(u8),
    DateTime2(u8),
    Dto(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StrCol {
    type_byte: u8,
    enc: Enc,
    form: Form,
    /// Maximum byte length (Short form).
    max: u16,
    /// char / nchar: pad with spaces to `max`.
    pad: bool,
    collation: [u8; 5],
    temporal: TextTemporal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Integer of this many bytes (1, 2, 4, 8).
    Int(u8),
    Bit,
    Decimal {
        precision: u8,
        scale: u8,
        len: u8,
    },
    /// Money of this many bytes (8 or 4).
    Money(u8),
    /// Float of this many bytes (4 or 8).
    Float(u8),
    DateTime,
    SmallDateTime,
    Date,
    Time(u8),
    DateTime2(u8),
    Dto(u8),
    Guid,
    Str(StrCol),
}

#[derive(Debug, Clone, Copy)]
struct ColEnc {
    kind: Kind,
    nullable: bool,
    /// Size of the NULL marker in a ROW token (0: the wire type has no NULL).
    null_len: u8,
}

fn decimal_len(precision: u8) -> u8 {
    match precision {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

fn time_len(scale: u8) -> u8 {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

fn frac_len(scale: u8) -> u16 {
    if scale > 0 { 1 + scale as u16 } else { 0 }
}

fn string_col(
    type_byte: u8,
    enc: Enc,
    max_bytes: Option<u32>,
    pad: bool,
    collation: [u8; 5],
    tds: TdsVersion,
) -> StrCol {
    let (form, max, type_byte) = match max_bytes {
        Some(n) if n <= 8000 => (Form::Short, n as u16, type_byte),
        _ => {
            // (max), or a declared length SQL Server would not accept: treat as (max).
            debug_assert!(max_bytes.is_none(), "string column longer than 8000 bytes");
            if tds.has_plp() {
                (Form::Plp, 0xFFFF, type_byte)
            } else {
                (Form::Legacy, 0, if enc == Enc::Utf16 { NTEXT } else { TEXT })
            }
        }
    };
    StrCol {
        type_byte,
        enc,
        form,
        max,
        pad: pad && form == Form::Short,
        collation,
        temporal: TextTemporal::Any,
    }
}

fn coll_enc(c: Collation) -> Enc {
    match c {
        Collation::Latin1Cp1252 => Enc::Cp1252,
        Collation::Utf8 => Enc::Utf8,
    }
}

fn col_enc(col: &Column, tds: TdsVersion) -> ColEnc {
    let n = col.nullable;
    let downlevel_text = |chars: u16, temporal: TextTemporal| {
        let mut s = string_col(
            NVARCHAR,
            Enc::Utf16,
            Some(chars as u32 * 2),
            false,
            COLLATION_CP1252,
            tds,
        );
        s.temporal = temporal;
        Kind::Str(s)
    };
    let kind = match col.ty {
        SqlType::TinyInt => Kind::Int(1),
        SqlType::SmallInt => Kind::Int(2),
        SqlType::Int => Kind::Int(4),
        SqlType::BigInt => Kind::Int(8),
        SqlType::Bit => Kind::Bit,
        SqlType::Decimal { precision, scale } => {
            debug_assert!(
                (1..=38).contains(&precision) && scale <= precision,
                "bad decimal({precision},{scale})"
            );
            let precision = precision.clamp(1, 38);
            Kind::Decimal {
                precision,
                scale: scale.min(precision),
                len: decimal_len(precision),
            }
        }
        SqlType::Money => Kind::Money(8),
        SqlType::SmallMoney => Kind::Money(4),
        SqlType::Real => Kind::Float(4),
        SqlType::Float => Kind::Float(8),
        SqlType::DateTime => Kind::DateTime,
        SqlType::SmallDateTime => Kind::SmallDateTime,
        SqlType::Date if tds.has_date_types() => Kind::Date,
        SqlType::Date => downlevel_text(10, TextTemporal::Date),
        SqlType::Time { scale } if tds.has_date_types() => Kind::Time(scale.min(7)),
        SqlType::Time { scale } => {
            let s = scale.min(7);
            downlevel_text(8 + frac_len(s), TextTemporal::Time(s))
        }
        SqlType::DateTime2 { scale } if tds.has_date_types() => Kind::DateTime2(scale.min(7)),
        SqlType::DateTime2 { scale } => {
            let s = scale.min(7);
            downlevel_text(19 + frac_len(s), TextTemporal::DateTime2(s))
        }
        SqlType::DateTimeOffset { scale } if tds.has_date_types() => Kind::Dto(scale.min(7)),
        SqlType::DateTimeOffset { scale } => {
            let s = scale.min(7);
            downlevel_text(26 + frac_len(s), TextTemporal::Dto(s))
        }
        SqlType::Char { len, collation } => Kind::Str(string_col(
            BIGCHAR,
            coll_enc(collation),
            Some(len as u32),
            true,
            collation.wire_bytes(),
            tds,
        )),
        SqlType::VarChar { len, collation } => Kind::Str(string_col(
            BIGVARCHAR,
            coll_enc(collation),
            len.map(u32::from),
            false,
            collation.wire_bytes(),
            tds,
        )),
        SqlType::NChar { len } => Kind::Str(string_col(
            NCHAR,
            Enc::Utf16,
            Some(len as u32 * 2),
            true,
            COLLATION_CP1252,
            tds,
        )),
        SqlType::NVarChar { len } => Kind::Str(string_col(
            NVARCHAR,
            Enc::Utf16,
            len.map(|l| l as u32 * 2),
            false,
            COLLATION_CP1252,
            tds,
        )),
        SqlType::UniqueIdentifier => Kind::Guid,
    };
    let null_len = match kind {
        Kind::Int(_) | Kind::Bit | Kind::Money(_) | Kind::Float(_) | Kind::DateTime | Kind::SmallDateTime => {
            if n {
                1
            } else {
                0
            }
        }
        Kind::Decimal { .. }
        | Kind::Date
        | Kind::Time(_)
        | Kind::DateTime2(_)
        | Kind::Dto(_)
        | Kind::Guid => 1,
        Kind::Str(s) => match s.form {
            Form::Short => 2,
            Form::Plp => 8,
            Form::Legacy => 1,
        },
    };
    ColEnc {
        kind,
        nullable: n,
        null_len,
    }
}

// ---------------------------------------------------------------------------------------------
// RowEncoder
// ---------------------------------------------------------------------------------------------

/// Encodes the rows of one result set. Built once per result set.
#[derive(Debug)]
pub struct RowEncoder {
    tds: TdsVersion,
    columns: Vec<Column>,
    cols: Vec<ColEnc>,
    /// Start of each column's value, relative to the start of the row's values.
    offsets: Vec<u32>,
    /// NULL bitmap of the current row.
    bitmap: Vec<u8>,
    /// Copy of a row being rewritten as NBCROW.
    scratch: Vec<u8>,
    /// Encoded text of a PLP / TEXT value.
    text: Vec<u8>,
}

impl RowEncoder {
    /// Prepares the encoding of rows with these columns for a client speaking `tds`.
    pub fn new(columns: &[Column], tds: TdsVersion) -> Self {
        let cols: Vec<ColEnc> = columns.iter().map(|c| col_enc(c, tds)).collect();
        RowEncoder {
            tds,
            columns: columns.to_vec(),
            offsets: vec![0; cols.len()],
            bitmap: vec![0; cols.len().div_ceil(8)],
            cols,
            scratch: Vec::new(),
            text: Vec::new(),
        }
    }

    /// Appends the COLMETADATA token (0x81) for these columns.
    pub fn put_colmetadata(&self, out: &mut Vec<u8>) {
        out.push(TOKEN_COLMETADATA);
        out.extend_from_slice(&(self.cols.len() as u16).to_le_bytes());
        for (col, enc) in self.columns.iter().zip(&self.cols) {
            // UserType: USHORT up to TDS 7.1, ULONG from 7.2.
            if self.tds.has_plp() {
                out.extend_from_slice(&0u32.to_le_bytes());
            } else {
                out.extend_from_slice(&0u16.to_le_bytes());
            }
            let flags: u16 = if enc.nullable { 0x0001 } else { 0 };
            out.extend_from_slice(&flags.to_le_bytes());
            put_type_info(out, enc, self.tds);
            // ColName: B_VARCHAR (length in UTF-16 code units, at most 255).
            let pos = out.len();
            out.push(0);
            let mut n = 0u8;
            for u in col.name.encode_utf16() {
                if n == 255 {
                    break;
                }
                out.extend_from_slice(&u.to_le_bytes());
                n += 1;
            }
            out[pos] = n;
        }
    }

    /// Starts a row; write each column's value in order on the returned writer, then call `finish`.
    /// (Dropping the writer without `finish` leaves a partial ROW in `out`.)
    pub fn row<'a>(&'a mut self, out: &'a mut Vec<u8>) -> RowWriter<'a> {
        out.push(TOKEN_ROW);
        let start = out.len();
        RowWriter {
            enc: self,
            out,
            start,
            idx: 0,
            null_bytes: 0,
            any_null: false,
        }
    }

    /// The columns this encoder was built for.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
}

fn put_type_info(out: &mut Vec<u8>, c: &ColEnc, tds: TdsVersion) {
    let n = c.nullable;
    match c.kind {
        Kind::Int(size) => {
            if n {
                out.extend_from_slice(&[INTN, size]);
            } else {
                out.push(match size {
                    1 => INT1,
                    2 => INT2,
                    4 => INT4,
                    _ => INT8,
                });
            }
        }
        Kind::Bit => {
            if n {
                out.extend_from_slice(&[BITN, 1]);
            } else {
                out.push(BIT);
            }
        }
        Kind::Decimal {
            precision,
            scale,
            len,
        } => out.extend_from_slice(&[DECIMALN, len, precision, scale]),
        Kind::Money(size) => {
            if n {
                out.extend_from_slice(&[MONEYN, size]);
            } else {
                out.push(if size == 8 { MONEY } else { MONEY4 });
            }
        }
        Kind::Float(size) => {
            if n {
                out.extend_from_slice(&[FLTN, size]);
            } else {
                out.push(if size == 8 { FLT8 } else { FLT4 });
            }
        }
        Kind::DateTime => {
            if n {
                out.extend_from_slice(&[DATETIMN, 8]);
            } else {
                out.push(DATETIME);
            }
        }
        Kind::SmallDateTime => {
            if n {
                out.extend_from_slice(&[DATETIMN, 4]);
            } else {
                out.push(DATETIM4);
            }
        }
        Kind::Date => out.push(DATEN),
        Kind::Time(s) => out.extend_from_slice(&[TIMEN, s]),
        Kind::DateTime2(s) => out.extend_from_slice(&[DATETIME2N, s]),
        Kind::Dto(s) => out.extend_from_slice(&[DATETIMEOFFSETN, s]),
        Kind::Guid => out.extend_from_slice(&[GUIDTYPE, 16]),
        Kind::Str(s) => {
            out.push(s.type_byte);
            match s.form {
                Form::Short | Form::Plp => {
                    out.extend_from_slice(&s.max.to_le_bytes());
                    out.extend_from_slice(&s.collation);
                }
                Form::Legacy => {
                    // LONG max length: 2^31-1 bytes for TEXT, 2^30-1 characters for NTEXT.
                    let max: u32 = if s.type_byte == NTEXT {
                        0x7FFF_FFFE
                    } else {
                        0x7FFF_FFFF
                    };
                    out.extend_from_slice(&max.to_le_bytes());
                    out.extend_from_slice(&s.collation);
                    // TableName: US_VARCHAR up to 7.1, B_BYTE part count + US_VARCHARs from 7.2.
                    if tds.has_plp() {
                        out.push(0);
                    } else {
                        out.extend_from_slice(&0u16.to_le_bytes());
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RowWriter
// ---------------------------------------------------------------------------------------------

/// Writes one row's values, column by column.
pub struct RowWriter<'a> {
    enc: &'a mut RowEncoder,
    out: &'a mut Vec<u8>,
    /// Position in `out` of the first value (just after the token byte).
    start: usize,
    idx: usize,
    /// Bytes of NULL markers written so far (what NBCROW would save).
    null_bytes: usize,
    any_null: bool,
}

impl fmt::Debug for RowWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowWriter").field("column", &self.idx).finish()
    }
}

/// A date and/or time, with optional offset, in local time.
#[derive(Debug, Clone, Copy)]
struct Temporal {
    date: Option<NaiveDate>,
    time: Option<NaiveTime>,
    /// Offset from UTC in seconds.
    offset: Option<i32>,
}

fn base_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(1900, 1, 1).unwrap()
}

impl RowWriter<'_> {
    #[inline]
    fn begin(&mut self) -> ColEnc {
        let i = self.idx;
        assert!(
            i < self.enc.cols.len(),
            "row has more values than the {} columns",
            self.enc.cols.len()
        );
        self.enc.offsets[i] = (self.out.len() - self.start) as u32;
        self.idx = i + 1;
        self.enc.cols[i]
    }

    #[cold]
    #[inline(never)]
    fn mismatch(&self, what: &str) -> ! {
        let i = self.idx - 1;
        panic!(
            "column {i} ({:?}): cannot write {what} into {:?}",
            self.enc.columns[i].name, self.enc.columns[i].ty
        )
    }

    /// NULL (a debug assertion fails if the column is NOT NULL; in release the NULL marker is
    /// written anyway, or zero bytes for the fixed-length types, which have no NULL).
    pub fn null(&mut self) {
        let c = self.begin();
        debug_assert!(c.nullable, "NULL written into NOT NULL column {}", self.idx - 1);
        match c.null_len {
            0 => {
                let size = match c.kind {
                    Kind::Int(n) | Kind::Money(n) | Kind::Float(n) => n as usize,
                    Kind::Bit => 1,
                    Kind::DateTime => 8,
                    _ => 4,
                };
                self.out.resize(self.out.len() + size, 0);
                return;
            }
            1 => self.out.push(0),
            2 => self.out.extend_from_slice(&0xFFFFu16.to_le_bytes()),
            _ => self.out.extend_from_slice(&PLP_NULL.to_le_bytes()),
        }
        let i = self.idx - 1;
        self.enc.bitmap[i / 8] |= 1 << (i % 8);
        self.null_bytes += c.null_len as usize;
        self.any_null = true;
    }

    /// Integer columns (tinyint..bigint), decimal / money / float columns, bit (v != 0), and
    /// string columns (as decimal text).
    pub fn int(&mut self, v: i64) {
        let c = self.begin();
        match c.kind {
            Kind::Int(size) => put_int(self.out, size, c.nullable, v),
            _ => self.exact(c, v as i128, 0),
        }
    }

    /// `bit` columns; integer / decimal / string columns get 1 or 0.
    pub fn bit(&mut self, v: bool) {
        let c = self.begin();
        match c.kind {
            Kind::Bit => {
                if c.nullable {
                    self.out.push(1);
                }
                self.out.push(v as u8);
            }
            _ => self.exact(c, v as i128, 0),
        }
    }

    /// Decimal / money / smallmoney / float / integer columns, rescaled to the column's scale
    /// (exact, or rounded half away from zero); text columns get the decimal text.
    pub fn decimal(&mut self, mantissa: i128, scale: u8) {
        let c = self.begin();
        self.exact(c, mantissa, scale);
    }

    fn exact(&mut self, c: ColEnc, m: i128, scale: u8) {
        match c.kind {
            Kind::Int(size) => put_int(self.out, size, c.nullable, sat_i64(rescale(m, scale, 0))),
            Kind::Bit => {
                if c.nullable {
                    self.out.push(1);
                }
                self.out.push((m != 0) as u8);
            }
            Kind::Decimal {
                precision,
                scale: cs,
                len,
            } => {
                put_decimal(self.out, precision, len, rescale(m, scale, cs));
            }
            Kind::Money(size) => put_money(self.out, size, c.nullable, sat_i64(rescale(m, scale, 4))),
            Kind::Float(size) => {
                let v = m as f64 / 10f64.powi(scale as i32);
                put_float(self.out, size, c.nullable, v);
            }
            Kind::Str(s) => {
                let mut b = StackBuf::new();
                fmt_decimal(&mut b, m, scale);
                self.put_str(s, b.as_str());
            }
            _ => self.mismatch("a number"),
        }
    }

    /// `real` / `float` columns; decimal / money / integer columns get the value rounded to
    /// their scale; text columns get Rust's shortest round-trip text.
    pub fn float(&mut self, v: f64) {
        let c = self.begin();
        match c.kind {
            Kind::Float(size) => put_float(self.out, size, c.nullable, v),
            Kind::Int(_) | Kind::Bit => self.exact(c, v.round() as i128, 0),
            Kind::Decimal { scale, .. } => {
                self.exact(c, (v * 10f64.powi(scale as i32)).round() as i128, scale)
            }
            Kind::Money(_) => self.exact(c, (v * 1e4).round() as i128, 4),
            Kind::Str(s) => {
                let mut b = StackBuf::new();
                let _ = write!(b, "{v}");
                self.put_str(s, b.as_str());
            }
            _ => self.mismatch("a float"),
        }
    }

    /// date, datetime, smalldatetime, datetime2, datetimeoffset (+00:00) and text columns.
    pub fn date(&mut self, d: NaiveDate) {
        let c = self.begin();
        self.temporal(
            c,
            Temporal {
                date: Some(d),
                time: None,
                offset: None,
            },
        );
    }

    /// datetime (rounded to 1/300 s), smalldatetime (rounded to the minute), datetime2 (to the
    /// column's scale), date (date part), time (time part), datetimeoffset (+00:00) and text
    /// columns.
    pub fn datetime(&mut self, dt: NaiveDateTime) {
        let c = self.begin();
        self.temporal(
            c,
            Temporal {
                date: Some(dt.date()),
                time: Some(dt.time()),
                offset: None,
            },
        );
    }

    /// datetimeoffset columns; other date / time columns get the local date and time (the
    /// offset dropped, as SQL Server converts); text columns get 'YYYY-MM-DD hh:mm:ss.fffffff +hh:mm'.
    pub fn datetimeoffset(&mut self, dt: DateTime<FixedOffset>) {
        let c = self.begin();
        let local = dt.naive_local();
        self.temporal(
            c,
            Temporal {
                date: Some(local.date()),
                time: Some(local.time()),
                offset: Some(dt.offset().local_minus_utc()),
            },
        );
    }

    /// time columns; datetime-like columns get 1900-01-01 with this time; text columns get
    /// 'hh:mm:ss.fffffff'.
    pub fn time(&mut self, t: NaiveTime) {
        let c = self.begin();
        self.temporal(
            c,
            Temporal {
                date: None,
                time: Some(t),
                offset: None,
            },
        );
    }

    fn temporal(&mut self, c: ColEnc, t: Temporal) {
        let out = &mut *self.out;
        let date = t.date.unwrap_or_else(base_date);
        let time = t.time.unwrap_or(NaiveTime::MIN);
        match c.kind {
            Kind::Date => {
                out.push(3);
                put_date3(out, date);
            }
            Kind::Time(s) => {
                let (ticks, _) = time_ticks(time, s);
                let l = time_len(s);
                out.push(l);
                out.extend_from_slice(&ticks.to_le_bytes()[..l as usize]);
            }
            Kind::DateTime2(s) => {
                let (ticks, carry) = time_ticks(time, s);
                let l = time_len(s);
                out.push(l + 3);
                out.extend_from_slice(&ticks.to_le_bytes()[..l as usize]);
                put_date3(
                    out,
                    if carry {
                        date.succ_opt().unwrap_or(date)
                    } else {
                        date
                    },
                );
            }
            Kind::Dto(s) => {
                let off = t.offset.unwrap_or(0);
                let utc = date.and_time(time) - chrono::Duration::seconds(off as i64);
                let (ticks, carry) = time_ticks(utc.time(), s);
                let l = time_len(s);
                out.push(l + 5);
                out.extend_from_slice(&ticks.to_le_bytes()[..l as usize]);
                let d = utc.date();
                put_date3(out, if carry { d.succ_opt().unwrap_or(d) } else { d });
                out.extend_from_slice(&((off / 60) as i16).to_le_bytes());
            }
            Kind::DateTime => {
                let (days, ticks) = datetime_ticks(date, time);
                if c.nullable {
                    out.push(8);
                }
                out.extend_from_slice(&days.to_le_bytes());
                out.extend_from_slice(&ticks.to_le_bytes());
            }
            Kind::SmallDateTime => {
                let (days, mins) = smalldatetime_parts(date, time);
                if c.nullable {
                    out.push(4);
                }
                out.extend_from_slice(&days.to_le_bytes());
                out.extend_from_slice(&mins.to_le_bytes());
            }
            Kind::Str(s) => {
                let mut b = StackBuf::new();
                fmt_temporal(&mut b, s.temporal, t);
                self.put_str(s, b.as_str());
            }
            _ => self.mismatch("a date/time"),
        }
    }

    /// Any string column: nvarchar / nchar as UTF-16LE, varchar / char in the column's code page;
    /// char / nchar padded with spaces; (max) columns as PLP (or TEXT / NTEXT in TDS 7.1).
    pub fn str(&mut self, s: &str) {
        let c = self.begin();
        match c.kind {
            Kind::Str(sc) => self.put_str(sc, s),
            _ => self.mismatch("a string"),
        }
    }

    /// Fast path for nvarchar / nchar: already-encoded UTF-16LE (truncated to the column's
    /// length, padded for nchar). Other string columns get it re-encoded (slow path).
    pub fn ucs2(&mut self, utf16le: &[u8]) {
        let c = self.begin();
        match c.kind {
            Kind::Str(sc) if sc.enc == Enc::Utf16 => put_encoded(self.out, sc, utf16le),
            Kind::Str(sc) => {
                let units = utf16le.chunks_exact(2).map(|p| u16::from_le_bytes([p[0], p[1]]));
                let s: String = char::decode_utf16(units)
                    .map(|r| r.unwrap_or('\u{FFFD}'))
                    .collect();
                self.put_str(sc, &s);
            }
            _ => self.mismatch("UTF-16 text"),
        }
    }

    /// uniqueidentifier (bytes in wire order); string columns get the canonical (uppercase) text.
    pub fn guid(&mut self, bytes: [u8; 16]) {
        let c = self.begin();
        match c.kind {
            Kind::Guid => {
                self.out.push(16);
                self.out.extend_from_slice(&bytes);
            }
            Kind::Str(sc) => {
                let mut b = StackBuf::new();
                fmt_guid(&mut b, &bytes);
                self.put_str(sc, b.as_str());
            }
            _ => self.mismatch("a GUID"),
        }
    }

    /// Dispatches to the typed writers; `Value::Bytes` is already-encoded text (UTF-16LE for
    /// nchar / nvarchar, the column's code page for char / varchar) or 16 GUID bytes.
    pub fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.null(),
            Value::Int(i) => self.int(*i),
            Value::Bit(b) => self.bit(*b),
            Value::Decimal { mantissa, scale } => self.decimal(*mantissa, *scale),
            Value::Float(f) => self.float(*f),
            Value::Date(d) => self.date(*d),
            Value::Time(t) => self.time(*t),
            Value::DateTime(dt) => self.datetime(*dt),
            Value::DateTimeOffset(dt) => self.datetimeoffset(*dt),
            Value::String(s) => self.str(s),
            Value::Guid(g) => self.guid(*g),
            Value::Bytes(b) => {
                let c = self.begin();
                match c.kind {
                    Kind::Str(sc) => put_encoded(self.out, sc, b),
                    Kind::Guid if b.len() == 16 => {
                        self.out.push(16);
                        self.out.extend_from_slice(b);
                    }
                    _ => self.mismatch("bytes"),
                }
            }
        }
    }

    fn put_str(&mut self, c: StrCol, s: &str) {
        match c.form {
            Form::Short => put_short_str(self.out, c, s),
            Form::Plp | Form::Legacy => {
                let text = &mut self.enc.text;
                text.clear();
                encode_into(text, c.enc, s, usize::MAX);
                put_encoded(self.out, c, text);
            }
        }
    }

    /// Ends the row: appends ROW (0xD1) or, when it is shorter, NBCROW (0xD2, TDS 7.3B+ only).
    /// Panics if fewer values than columns were written.
    pub fn finish(self) {
        let RowWriter {
            enc,
            out,
            start,
            idx,
            null_bytes,
            any_null,
        } = self;
        let n = enc.cols.len();
        assert_eq!(idx, n, "row has {idx} values for {n} columns");
        if !any_null {
            return;
        }
        let bitmap_len = enc.bitmap.len();
        if enc.tds.has_nbcrow() && null_bytes > bitmap_len {
            // Rewrite as NBCROW: token, bitmap, then only the non-NULL values.
            enc.scratch.clear();
            enc.scratch.extend_from_slice(&out[start..]);
            let row_len = enc.scratch.len();
            out.truncate(start - 1);
            out.push(TOKEN_NBCROW);
            out.extend_from_slice(&enc.bitmap);
            let mut run: Option<usize> = None; // start of the current run of non-NULL values
            for i in 0..n {
                let is_null = enc.bitmap[i / 8] & (1 << (i % 8)) != 0;
                let off = enc.offsets[i] as usize;
                match (is_null, run) {
                    (true, Some(r)) => {
                        out.extend_from_slice(&enc.scratch[r..off]);
                        run = None;
                    }
                    (false, None) => run = Some(off),
                    _ => {}
                }
            }
            if let Some(r) = run {
                out.extend_from_slice(&enc.scratch[r..row_len]);
            }
        }
        enc.bitmap.iter_mut().for_each(|b| *b = 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Value encoders
// ---------------------------------------------------------------------------------------------

fn sat_i64(v: i128) -> i64 {
    debug_assert!(i64::try_from(v).is_ok(), "value {v} out of range");
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Rescales `m / 10^from` to `?/10^to`: exact when widening, rounded half away from zero when
/// narrowing. Saturates (debug panic) on overflow.
fn rescale(m: i128, from: u8, to: u8) -> i128 {
    if to >= from {
        match pow10_i128((to - from) as u32).and_then(|p| m.checked_mul(p)) {
            Some(v) => v,
            None => {
                debug_assert!(false, "decimal overflow rescaling {m}e-{from} to scale {to}");
                if m < 0 { i128::MIN } else { i128::MAX }
            }
        }
    } else {
        let Some(p) = pow10_i128((from - to) as u32) else {
            return 0;
        };
        let q = m / p;
        let r = m % p;
        if r.unsigned_abs() * 2 >= p as u128 {
            if m < 0 { q - 1 } else { q + 1 }
        } else {
            q
        }
    }
}

fn put_int(out: &mut Vec<u8>, size: u8, nullable: bool, v: i64) {
    debug_assert!(
        match size {
            1 => (0..=255).contains(&v),
            2 => i16::try_from(v).is_ok(),
            4 => i32::try_from(v).is_ok(),
            _ => true,
        },
        "{v} out of range for a {size}-byte integer column"
    );
    if nullable {
        out.push(size);
    }
    out.extend_from_slice(&v.to_le_bytes()[..size as usize]);
}

/// money: value * 10^4 as i64, high 32 bits (LE) then low 32 bits (LE); smallmoney: i32 LE.
/// Out-of-range smallmoney values saturate (debug panic).
fn put_money(out: &mut Vec<u8>, size: u8, nullable: bool, v: i64) {
    if nullable {
        out.push(size);
    }
    if size == 8 {
        out.extend_from_slice(&((v >> 32) as i32).to_le_bytes());
        out.extend_from_slice(&(v as u32).to_le_bytes());
    } else {
        debug_assert!(i32::try_from(v).is_ok(), "smallmoney out of range");
        let v = v.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_float(out: &mut Vec<u8>, size: u8, nullable: bool, v: f64) {
    if nullable {
        out.push(size);
    }
    if size == 4 {
        out.extend_from_slice(&(v as f32).to_le_bytes());
    } else {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// DECIMALN value: length, sign (1 = positive), magnitude LE in `len - 1` bytes.
fn put_decimal(out: &mut Vec<u8>, precision: u8, len: u8, m: i128) {
    let mag = m.unsigned_abs();
    debug_assert!(
        pow10_i128(precision as u32).is_none_or(|p| mag < p as u128),
        "{m} does not fit decimal({precision})"
    );
    out.push(len);
    out.push(if m < 0 { 0 } else { 1 });
    out.extend_from_slice(&mag.to_le_bytes()[..len as usize - 1]);
}

fn put_date3(out: &mut Vec<u8>, d: NaiveDate) {
    let days = (d.num_days_from_ce() - 1).max(0) as u32;
    out.extend_from_slice(&days.to_le_bytes()[..3]);
}

fn nanos_of_day(t: NaiveTime) -> u64 {
    // Leap-second representation (nanos >= 1e9) is clamped into the last second.
    t.num_seconds_from_midnight() as u64 * 1_000_000_000 + t.nanosecond().min(999_999_999) as u64
}

/// Time of day in units of 10^-scale s, rounded half up; `true` when it rounded to the next day
/// (the ticks are then wrapped to 0).
fn time_ticks(t: NaiveTime, scale: u8) -> (u64, bool) {
    let unit = POW10_U64[9 - scale.min(7) as usize];
    let ticks = (nanos_of_day(t) + unit / 2) / unit;
    let per_day = NANOS_PER_DAY / unit;
    if ticks >= per_day {
        (ticks - per_day, true)
    } else {
        (ticks, false)
    }
}

/// datetime: days since 1900-01-01 and 1/300 s ticks, rounded to the nearest tick (half up).
fn datetime_ticks(d: NaiveDate, t: NaiveTime) -> (i32, u32) {
    let mut days = d.num_days_from_ce() - CE_DAYS_1900;
    let mut ticks = (nanos_of_day(t) * 3 + 5_000_000) / 10_000_000;
    if ticks >= DATETIME_TICKS_PER_DAY {
        ticks -= DATETIME_TICKS_PER_DAY;
        days += 1;
    }
    (days, ticks as u32)
}

/// smalldatetime: days since 1900-01-01 and minutes; rounded like SQL Server: to datetime ticks
/// first, then to the minute, half up (29.998 s → down, 29.999 s → up). Saturates outside
/// 1900-01-01..=2079-06-06 (debug panic).
fn smalldatetime_parts(d: NaiveDate, t: NaiveTime) -> (u16, u16) {
    let (mut days, ticks) = datetime_ticks(d, t);
    let mut mins = (ticks + 9_000) / 18_000;
    if mins >= 1440 {
        mins -= 1440;
        days += 1;
    }
    debug_assert!((0..=65535).contains(&days), "smalldatetime out of range");
    (days.clamp(0, 65535) as u16, mins as u16)
}

// ---------------------------------------------------------------------------------------------
// Strings
// ---------------------------------------------------------------------------------------------

/// Unicode → CP1252 for U+0080..U+009F's CP1252 neighbours (bytes 0x80..=0x9F).
const CP1252_HIGH: [u16; 32] = [
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152,
    0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122,
    0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
];

fn cp1252_byte(ch: char) -> u8 {
    let c = ch as u32;
    if c < 0x80 || (0xA0..=0xFF).contains(&c) {
        return c as u8;
    }
    match CP1252_HIGH.iter().position(|&u| u as u32 == c) {
        Some(i) => 0x80 + i as u8,
        None => b'?',
    }
}

/// Appends `s` in encoding `enc`, at most `limit` bytes (never splitting a character); returns
/// the number of bytes written.
fn encode_into(out: &mut Vec<u8>, enc: Enc, s: &str, limit: usize) -> usize {
    match enc {
        Enc::Utf16 => {
            if s.is_ascii() {
                let n = s.len().min(limit / 2);
                let at = out.len();
                out.resize(at + 2 * n, 0);
                for (dst, &b) in out[at..].chunks_exact_mut(2).zip(s.as_bytes()) {
                    dst[0] = b;
                }
                return 2 * n;
            }
            let mut written = 0;
            let mut buf = [0u16; 2];
            for ch in s.chars() {
                let units = ch.encode_utf16(&mut buf);
                if written + 2 * units.len() > limit {
                    break;
                }
                for u in units.iter() {
                    out.extend_from_slice(&u.to_le_bytes());
                }
                written += 2 * units.len();
            }
            written
        }
        Enc::Cp1252 => {
            if s.is_ascii() {
                let n = s.len().min(limit);
                out.extend_from_slice(&s.as_bytes()[..n]);
                return n;
            }
            let mut written = 0;
            for ch in s.chars() {
                if written == limit {
                    break;
                }
                out.push(cp1252_byte(ch));
                written += 1;
            }
            written
        }
        Enc::Utf8 => {
            let mut n = s.len().min(limit);
            while !s.is_char_boundary(n) {
                n -= 1;
            }
            out.extend_from_slice(&s.as_bytes()[..n]);
            n
        }
    }
}

fn put_pad(out: &mut Vec<u8>, enc: Enc, from: usize, to: usize) {
    if enc == Enc::Utf16 {
        for _ in (from..to).step_by(2) {
            out.extend_from_slice(&[0x20, 0x00]);
        }
    } else {
        out.resize(out.len() + (to - from), 0x20);
    }
}

fn put_short_str(out: &mut Vec<u8>, c: StrCol, s: &str) {
    let pos = out.len();
    out.extend_from_slice(&[0, 0]);
    let mut n = encode_into(out, c.enc, s, c.max as usize);
    if c.pad && n < c.max as usize {
        put_pad(out, c.enc, n, c.max as usize);
        n = c.max as usize;
    }
    out[pos..pos + 2].copy_from_slice(&(n as u16).to_le_bytes());
}

/// Writes already-encoded bytes in the column's framing.
fn put_encoded(out: &mut Vec<u8>, c: StrCol, bytes: &[u8]) {
    match c.form {
        Form::Short => {
            let mut n = bytes.len().min(c.max as usize);
            if c.enc == Enc::Utf16 {
                n &= !1;
            }
            let total = if c.pad { (c.max as usize).max(n) } else { n };
            out.extend_from_slice(&(total as u16).to_le_bytes());
            out.extend_from_slice(&bytes[..n]);
            if total > n {
                put_pad(out, c.enc, n, total);
            }
        }
        Form::Plp => {
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            for chunk in bytes.chunks(PLP_CHUNK) {
                out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
                out.extend_from_slice(chunk);
            }
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        Form::Legacy => {
            out.push(TEXTPTR.len() as u8);
            out.extend_from_slice(&TEXTPTR);
            out.extend_from_slice(&TEXT_TIMESTAMP);
            let n = bytes.len().min(i32::MAX as usize);
            out.extend_from_slice(&(n as i32).to_le_bytes());
            out.extend_from_slice(&bytes[..n]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Text forms
// ---------------------------------------------------------------------------------------------

/// A small formatting buffer on the stack.
struct StackBuf {
    buf: [u8; 96],
    len: usize,
}

impl StackBuf {
    fn new() -> Self {
        StackBuf { buf: [0; 96], len: 0 }
    }
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `m / 10^scale` as SQL Server prints a decimal: '-12.340', '0.05', '7'.
fn fmt_decimal(b: &mut StackBuf, m: i128, scale: u8) {
    let mut digits = [0u8; 48];
    let mut n = 0;
    let mut mag = m.unsigned_abs();
    loop {
        digits[n] = b'0' + (mag % 10) as u8;
        mag /= 10;
        n += 1;
        if mag == 0 || n == digits.len() {
            break;
        }
    }
    let scale = (scale as usize).min(40);
    while n <= scale && n < digits.len() {
        digits[n] = b'0';
        n += 1;
    }
    if m < 0 {
        let _ = b.write_char('-');
    }
    for i in (0..n).rev() {
        if i + 1 == scale {
            let _ = b.write_char('.');
        }
        let _ = b.write_char(digits[i] as char);
    }
}

fn fmt_date(b: &mut StackBuf, d: NaiveDate) {
    let _ = write!(b, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day());
}

/// 'hh:mm:ss[.fff…]' with `scale` fraction digits, from ticks at that scale.
fn fmt_time_ticks(b: &mut StackBuf, ticks: u64, scale: u8) {
    let per_sec = POW10_U64[scale as usize];
    let secs = ticks / per_sec;
    let _ = write!(b, "{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if scale > 0 {
        let _ = write!(b, ".{:0width$}", ticks % per_sec, width = scale as usize);
    }
}

fn fmt_offset(b: &mut StackBuf, secs: i32) {
    let sign = if secs < 0 { '-' } else { '+' };
    let m = secs.unsigned_abs() / 60;
    let _ = write!(b, " {sign}{:02}:{:02}", m / 60, m % 60);
}

/// SQL Server's text form of a temporal value, as the column (or the value) dictates.
fn fmt_temporal(b: &mut StackBuf, form: TextTemporal, t: Temporal) {
    let form = match form {
        TextTemporal::Any => match (t.date, t.time, t.offset) {
            (_, _, Some(_)) => TextTemporal::Dto(7),
            (Some(_), None, None) => TextTemporal::Date,
            (None, _, None) => TextTemporal::Time(7),
            (Some(_), Some(_), None) => TextTemporal::DateTime2(7),
        },
        f => f,
    };
    let date = t.date.unwrap_or_else(base_date);
    let time = t.time.unwrap_or(NaiveTime::MIN);
    match form {
        TextTemporal::Date => fmt_date(b, date),
        TextTemporal::Time(s) => fmt_time_ticks(b, time_ticks(time, s).0, s),
        TextTemporal::DateTime2(s) | TextTemporal::Dto(s) => {
            let (ticks, carry) = time_ticks(time, s);
            fmt_date(
                b,
                if carry {
                    date.succ_opt().unwrap_or(date)
                } else {
                    date
                },
            );
            let _ = b.write_char(' ');
            fmt_time_ticks(b, ticks, s);
            if matches!(form, TextTemporal::Dto(_)) {
                fmt_offset(b, t.offset.unwrap_or(0));
            }
        }
        TextTemporal::Any => unreachable!(),
    }
}

/// Canonical uppercase text of a GUID given in wire order (first three groups little-endian).
fn fmt_guid(b: &mut StackBuf, g: &[u8; 16]) {
    let _ = write!(
        b,
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
        g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9]
    );
    for x in &g[10..] {
        let _ = write!(b, "{x:02X}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V74: TdsVersion = TdsVersion::V7_4;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }
    fn t(h: u32, m: u32, s: u32, nanos: u32) -> NaiveTime {
        NaiveTime::from_hms_nano_opt(h, m, s, nanos).unwrap()
    }
    fn dt(y: i32, mo: u32, day: u32, h: u32, mi: u32, s: u32, nanos: u32) -> NaiveDateTime {
        d(y, mo, day).and_time(t(h, mi, s, nanos))
    }
    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
    }

    /// TYPE_INFO of a single column named "a" (checks the surrounding bytes too).
    fn type_info(col: Column, tds: TdsVersion) -> Vec<u8> {
        let nullable = col.nullable;
        let enc = RowEncoder::new(&[col], tds);
        let mut out = Vec::new();
        enc.put_colmetadata(&mut out);
        let ut = if tds >= TdsVersion::V7_2 { 4 } else { 2 };
        assert_eq!(&out[..3], &[0x81, 1, 0]);
        assert!(out[3..3 + ut].iter().all(|&b| b == 0), "UserType");
        assert_eq!(&out[3 + ut..5 + ut], &[nullable as u8, 0], "Flags");
        assert_eq!(&out[out.len() - 3..], &[1, b'a', 0], "ColName");
        out[5 + ut..out.len() - 3].to_vec()
    }
    fn ti(ty: SqlType) -> Vec<u8> {
        type_info(Column::new("a", ty), V74)
    }
    fn tin(ty: SqlType) -> Vec<u8> {
        type_info(Column::new("a", ty).nullable(), V74)
    }

    /// The value bytes of a one-column row (after the ROW token).
    fn one(col: Column, tds: TdsVersion, f: impl FnOnce(&mut RowWriter<'_>)) -> Vec<u8> {
        let mut enc = RowEncoder::new(&[col], tds);
        let mut out = Vec::new();
        let mut w = enc.row(&mut out);
        f(&mut w);
        w.finish();
        assert_eq!(out[0], TOKEN_ROW);
        out[1..].to_vec()
    }
    // 7.3A: all types, never NBCROW (so a lone NULL shows its ROW marker)
    fn val(ty: SqlType, f: impl FnOnce(&mut RowWriter<'_>)) -> Vec<u8> {
        one(Column::new("a", ty), TdsVersion::V7_3A, f)
    }
    fn valn(ty: SqlType, f: impl FnOnce(&mut RowWriter<'_>)) -> Vec<u8> {
        one(Column::new("a", ty).nullable(), TdsVersion::V7_3A, f)
    }

    const CP: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

    #[test]
    fn tds_versions() {
        assert_eq!(TdsVersion::from_login7(0x7400_0004), TdsVersion::V7_4);
        assert_eq!(TdsVersion::from_login7(0x7500_0000), TdsVersion::V7_4);
        assert_eq!(TdsVersion::from_login7(0x730B_0003), TdsVersion::V7_3B);
        assert_eq!(TdsVersion::from_login7(0x730A_0003), TdsVersion::V7_3A);
        assert_eq!(TdsVersion::from_login7(0x7209_0002), TdsVersion::V7_2);
        assert_eq!(TdsVersion::from_login7(0x7100_0001), TdsVersion::V7_1);
        assert_eq!(TdsVersion::from_login7(0x7000_0000), TdsVersion::V7_1);
        for v in [
            TdsVersion::V7_1,
            TdsVersion::V7_2,
            TdsVersion::V7_3A,
            TdsVersion::V7_3B,
            TdsVersion::V7_4,
        ] {
            assert_eq!(TdsVersion::from_login7(v.loginack_value()), v);
        }
        assert!(!TdsVersion::V7_2.has_date_types());
        assert!(TdsVersion::V7_3A.has_date_types());
        assert_eq!(CE_DAYS_1900, d(1900, 1, 1).num_days_from_ce());
    }

    #[test]
    fn colmetadata_fixed_and_n_types() {
        use SqlType::*;
        for (ty, fixed, n) in [
            (TinyInt, vec![0x30], vec![0x26, 1]),
            (SmallInt, vec![0x34], vec![0x26, 2]),
            (Int, vec![0x38], vec![0x26, 4]),
            (BigInt, vec![0x7F], vec![0x26, 8]),
            (Bit, vec![0x32], vec![0x68, 1]),
            (Money, vec![0x3C], vec![0x6E, 8]),
            (SmallMoney, vec![0x7A], vec![0x6E, 4]),
            (DateTime, vec![0x3D], vec![0x6F, 8]),
            (SmallDateTime, vec![0x3A], vec![0x6F, 4]),
            (Real, vec![0x3B], vec![0x6D, 4]),
            (Float, vec![0x3E], vec![0x6D, 8]),
            (
                Decimal {
                    precision: 9,
                    scale: 2,
                },
                vec![0x6A, 5, 9, 2],
                vec![0x6A, 5, 9, 2],
            ),
            (
                Decimal {
                    precision: 10,
                    scale: 0,
                },
                vec![0x6A, 9, 10, 0],
                vec![0x6A, 9, 10, 0],
            ),
            (
                Decimal {
                    precision: 28,
                    scale: 4,
                },
                vec![0x6A, 13, 28, 4],
                vec![0x6A, 13, 28, 4],
            ),
            (
                Decimal {
                    precision: 38,
                    scale: 38,
                },
                vec![0x6A, 17, 38, 38],
                vec![0x6A, 17, 38, 38],
            ),
            (Date, vec![0x28], vec![0x28]),
            (Time { scale: 7 }, vec![0x29, 7], vec![0x29, 7]),
            (DateTime2 { scale: 3 }, vec![0x2A, 3], vec![0x2A, 3]),
            (DateTimeOffset { scale: 0 }, vec![0x2B, 0], vec![0x2B, 0]),
            (UniqueIdentifier, vec![0x24, 16], vec![0x24, 16]),
        ] {
            assert_eq!(ti(ty), fixed, "{ty:?}");
            assert_eq!(tin(ty), n, "{ty:?} NULL");
        }
    }

    #[test]
    fn colmetadata_strings() {
        let mut e = vec![0xE7, 0x14, 0x00];
        e.extend_from_slice(&CP);
        assert_eq!(tin(SqlType::NVarChar { len: Some(10) }), e);
        let mut e = vec![0xE7, 0xFF, 0xFF];
        e.extend_from_slice(&CP);
        assert_eq!(ti(SqlType::NVarChar { len: None }), e);
        let mut e = vec![0xEF, 0x08, 0x00];
        e.extend_from_slice(&CP);
        assert_eq!(ti(SqlType::NChar { len: 4 }), e);
        let mut e = vec![0xAF, 0x03, 0x00];
        e.extend_from_slice(&CP);
        assert_eq!(
            ti(SqlType::Char {
                len: 3,
                collation: Collation::Latin1Cp1252
            }),
            e
        );
        assert_eq!(
            ti(SqlType::VarChar {
                len: Some(8000),
                collation: Collation::Utf8
            }),
            vec![0xA7, 0x40, 0x1F, 0x09, 0x04, 0xD0, 0x24, 0x00]
        );
        assert_eq!(
            ti(SqlType::VarChar {
                len: None,
                collation: Collation::Utf8
            }),
            vec![0xA7, 0xFF, 0xFF, 0x09, 0x04, 0xD0, 0x24, 0x00]
        );
        // Multi-column token and non-ASCII names.
        let enc = RowEncoder::new(
            &[
                Column::new("id", SqlType::Int),
                Column::new("é", SqlType::Bit).nullable(),
            ],
            V74,
        );
        let mut out = Vec::new();
        enc.put_colmetadata(&mut out);
        assert_eq!(
            out,
            vec![
                0x81, 2, 0, //
                0, 0, 0, 0, 0, 0, 0x38, 2, b'i', 0, b'd', 0, //
                0, 0, 0, 0, 1, 0, 0x68, 1, 1, 0xE9, 0
            ]
        );
    }

    #[test]
    fn integers_and_bits() {
        assert_eq!(val(SqlType::TinyInt, |w| w.int(255)), [0xFF]);
        assert_eq!(val(SqlType::SmallInt, |w| w.int(-2)), [0xFE, 0xFF]);
        assert_eq!(val(SqlType::Int, |w| w.int(1)), [1, 0, 0, 0]);
        assert_eq!(val(SqlType::BigInt, |w| w.int(-1)), [0xFF; 8]);
        assert_eq!(valn(SqlType::Int, |w| w.int(5)), [4, 5, 0, 0, 0]);
        assert_eq!(
            valn(SqlType::BigInt, |w| w.int(0x0102)),
            [8, 2, 1, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(valn(SqlType::Int, |w| w.null()), [0]);
        assert_eq!(val(SqlType::Bit, |w| w.bit(true)), [1]);
        assert_eq!(valn(SqlType::Bit, |w| w.bit(true)), [1, 1]);
        assert_eq!(valn(SqlType::Bit, |w| w.null()), [0]);
        assert_eq!(val(SqlType::Int, |w| w.decimal(15, 1)), [2, 0, 0, 0]); // 1.5 -> 2
        assert_eq!(val(SqlType::Int, |w| w.float(-2.5)), [0xFD, 0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn decimals() {
        let ty = SqlType::Decimal {
            precision: 10,
            scale: 2,
        };
        assert_eq!(
            val(ty, |w| w.decimal(12345, 2)),
            [9, 1, 0x39, 0x30, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(val(ty, |w| w.int(1)), [9, 1, 100, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(valn(ty, |w| w.null()), [0]);
        let ty = SqlType::Decimal {
            precision: 5,
            scale: 2,
        };
        assert_eq!(val(ty, |w| w.decimal(-15, 1)), [5, 0, 150, 0, 0, 0]);
        // rounding half away from zero
        assert_eq!(val(ty, |w| w.decimal(1005, 3)), [5, 1, 101, 0, 0, 0]);
        assert_eq!(val(ty, |w| w.decimal(-1005, 3)), [5, 0, 101, 0, 0, 0]);
        assert_eq!(val(ty, |w| w.decimal(1004, 3)), [5, 1, 100, 0, 0, 0]);
        assert_eq!(val(ty, |w| w.float(1.25)), [5, 1, 125, 0, 0, 0]);
        let ty = SqlType::Decimal {
            precision: 38,
            scale: 0,
        };
        let big = 10i128.pow(38) - 1;
        let mut e = vec![17, 1];
        e.extend_from_slice(&big.to_le_bytes());
        assert_eq!(val(ty, |w| w.decimal(big, 0)), e);
        assert_eq!(rescale(25, 1, 0), 3);
        assert_eq!(rescale(-25, 1, 0), -3);
        assert_eq!(rescale(24, 1, 0), 2);
        assert_eq!(rescale(7, 0, 3), 7000);
    }

    #[test]
    fn money_and_floats() {
        assert_eq!(val(SqlType::Money, |w| w.int(1)), [0, 0, 0, 0, 0x10, 0x27, 0, 0]);
        assert_eq!(
            val(SqlType::Money, |w| w.int(-1)),
            [0xFF, 0xFF, 0xFF, 0xFF, 0xF0, 0xD8, 0xFF, 0xFF]
        );
        assert_eq!(
            val(SqlType::Money, |w| w.decimal(0x1_0000_0001, 4)),
            [1, 0, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(
            valn(SqlType::Money, |w| w.decimal(12345, 2)),
            [8, 0, 0, 0, 0, 0x44, 0xD6, 0x12, 0]
        );
        assert_eq!(val(SqlType::SmallMoney, |w| w.int(1)), [0x10, 0x27, 0, 0]);
        assert_eq!(
            valn(SqlType::SmallMoney, |w| w.float(-1.0)),
            [4, 0xF0, 0xD8, 0xFF, 0xFF]
        );
        assert_eq!(val(SqlType::Real, |w| w.float(1.5)), [0, 0, 0xC0, 0x3F]);
        assert_eq!(
            val(SqlType::Float, |w| w.float(1.5)),
            [0, 0, 0, 0, 0, 0, 0xF8, 0x3F]
        );
        assert_eq!(
            valn(SqlType::Float, |w| w.decimal(15, 1)),
            [8, 0, 0, 0, 0, 0, 0, 0xF8, 0x3F]
        );
        assert_eq!(valn(SqlType::Real, |w| w.int(0)), [4, 0, 0, 0, 0]);
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(val(SqlType::Date, |w| w.date(d(1, 1, 1))), [3, 0, 0, 0]);
        assert_eq!(
            val(SqlType::Date, |w| w.date(d(2000, 1, 1))),
            [3, 0x07, 0x24, 0x0B]
        );
        assert_eq!(
            val(SqlType::Date, |w| w.datetime(dt(
                2000,
                1,
                1,
                23,
                59,
                59,
                999_999_999
            ))),
            [3, 0x07, 0x24, 0x0B]
        );
        assert_eq!(valn(SqlType::Date, |w| w.null()), [0]);
        assert_eq!(
            val(SqlType::Time { scale: 7 }, |w| w.time(t(12, 34, 56, 123_456_700))),
            [5, 0x87, 0xEE, 0x97, 0x76, 0x69]
        );
        // time(0): 23:59:59.6 rounds to 24:00:00, which wraps.
        assert_eq!(
            val(SqlType::Time { scale: 0 }, |w| w.time(t(23, 59, 59, 600_000_000))),
            [3, 0, 0, 0]
        );
        assert_eq!(
            val(SqlType::Time { scale: 2 }, |w| w.time(t(0, 0, 1, 5_000_000))),
            [3, 101, 0, 0]
        );
        // datetime2(3): 12:00:00.0005 rounds up to .001
        assert_eq!(
            val(SqlType::DateTime2 { scale: 3 }, |w| w
                .datetime(dt(2000, 1, 1, 12, 0, 0, 500_000))),
            [7, 0x01, 0x2E, 0x93, 0x02, 0x07, 0x24, 0x0B]
        );
        // datetime2(0): 23:59:59.5 carries into the next day.
        assert_eq!(
            val(SqlType::DateTime2 { scale: 0 }, |w| w.datetime(dt(
                1999,
                12,
                31,
                23,
                59,
                59,
                500_000_000
            ))),
            [6, 0, 0, 0, 0x07, 0x24, 0x0B]
        );
        assert_eq!(
            val(SqlType::DateTime2 { scale: 0 }, |w| w.date(d(2000, 1, 1))),
            [6, 0, 0, 0, 0x07, 0x24, 0x0B]
        );
        // datetimeoffset(7): 2000-01-01 01:00 +02:00 is 1999-12-31 23:00 UTC.
        let off = FixedOffset::east_opt(2 * 3600).unwrap();
        let v = dt(2000, 1, 1, 1, 0, 0, 0).and_local_timezone(off).unwrap();
        assert_eq!(
            val(SqlType::DateTimeOffset { scale: 7 }, |w| w.datetimeoffset(v)),
            [10, 0x00, 0x58, 0xA5, 0xC8, 0xC0, 0x06, 0x24, 0x0B, 120, 0]
        );
        let west = FixedOffset::west_opt(90 * 60).unwrap();
        let v = dt(2000, 1, 1, 0, 0, 0, 0).and_local_timezone(west).unwrap();
        // 01:30 UTC, offset -90 minutes
        assert_eq!(
            val(SqlType::DateTimeOffset { scale: 0 }, |w| w.datetimeoffset(v)),
            [8, 0x18, 0x15, 0x00, 0x07, 0x24, 0x0B, 0xA6, 0xFF]
        );
        assert_eq!(
            val(SqlType::DateTimeOffset { scale: 0 }, |w| w.date(d(2000, 1, 1))),
            [8, 0, 0, 0, 0x07, 0x24, 0x0B, 0, 0]
        );
        // datetime2 gets the local time of a datetimeoffset
        assert_eq!(
            val(SqlType::DateTime2 { scale: 0 }, |w| w.datetimeoffset(v)),
            [6, 0, 0, 0, 0x07, 0x24, 0x0B]
        );
    }

    #[test]
    fn datetime_rounding() {
        let ty = SqlType::DateTime;
        assert_eq!(val(ty, |w| w.datetime(dt(1900, 1, 1, 0, 0, 0, 0))), [0; 8]);
        assert_eq!(val(ty, |w| w.date(d(2000, 1, 1))), [0xAC, 0x8E, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            val(ty, |w| w.datetime(dt(1899, 12, 31, 0, 0, 1, 0))),
            [0xFF, 0xFF, 0xFF, 0xFF, 0x2C, 1, 0, 0]
        );
        assert_eq!(
            valn(ty, |w| w.datetime(dt(2000, 1, 1, 12, 0, 0, 0))),
            [8, 0xAC, 0x8E, 0, 0, 0x00, 0xC1, 0xC5, 0]
        );
        // 23:59:59.999 rounds to the next day, as in SQL Server
        assert_eq!(
            val(ty, |w| w.datetime(dt(1999, 12, 31, 23, 59, 59, 999_000_000))),
            [0xAC, 0x8E, 0, 0, 0, 0, 0, 0]
        );
        // 23:59:59.998 -> .997 (tick 25919999)
        assert_eq!(
            val(ty, |w| w.datetime(dt(2000, 1, 1, 23, 59, 59, 998_000_000))),
            [0xAC, 0x8E, 0, 0, 0xFF, 0x81, 0x8B, 0x01]
        );
        // .001 -> tick 0, .002 -> tick 1 (.003), .005 -> tick 2 (.007)
        for (ms, tick) in [(1, 0u32), (2, 1), (3, 1), (5, 2), (7, 2), (8, 2), (9, 3)] {
            let v = val(ty, |w| w.datetime(dt(1900, 1, 1, 0, 0, 0, ms * 1_000_000)));
            assert_eq!(&v[4..], &tick.to_le_bytes(), "{ms} ms");
        }
        assert_eq!(valn(ty, |w| w.null()), [0]);
    }

    #[test]
    fn smalldatetime_rounding() {
        let ty = SqlType::SmallDateTime;
        assert_eq!(
            val(ty, |w| w.datetime(dt(2000, 1, 1, 0, 0, 29, 998_000_000))),
            [0xAC, 0x8E, 0, 0]
        );
        assert_eq!(
            val(ty, |w| w.datetime(dt(2000, 1, 1, 0, 0, 29, 999_000_000))),
            [0xAC, 0x8E, 1, 0]
        );
        assert_eq!(
            val(ty, |w| w.datetime(dt(2000, 1, 1, 0, 0, 30, 0))),
            [0xAC, 0x8E, 1, 0]
        );
        assert_eq!(
            val(ty, |w| w.datetime(dt(2000, 1, 1, 23, 59, 29, 998_000_000))),
            [0xAC, 0x8E, 0x9F, 0x05]
        );
        assert_eq!(
            val(ty, |w| w.datetime(dt(1999, 12, 31, 23, 59, 30, 0))),
            [0xAC, 0x8E, 0, 0]
        );
        assert_eq!(valn(ty, |w| w.time(t(0, 2, 0, 0))), [4, 0, 0, 2, 0]);
    }

    #[test]
    fn strings() {
        let nv = SqlType::NVarChar { len: Some(3) };
        assert_eq!(val(nv, |w| w.str("ab")), [4, 0, b'a', 0, b'b', 0]);
        assert_eq!(val(nv, |w| w.str("abcdef")), [6, 0, b'a', 0, b'b', 0, b'c', 0]);
        assert_eq!(val(nv, |w| w.str("é€")), [4, 0, 0xE9, 0, 0xAC, 0x20]);
        assert_eq!(val(nv, |w| w.str("")), [0, 0]);
        assert_eq!(valn(nv, |w| w.null()), [0xFF, 0xFF]);
        assert_eq!(
            val(nv, |w| w.ucs2(&utf16("xyzw"))),
            [6, 0, b'x', 0, b'y', 0, b'z', 0]
        );
        // a surrogate pair is not split by truncation
        assert_eq!(val(nv, |w| w.str("ab😀")), [4, 0, b'a', 0, b'b', 0]);
        let nc = SqlType::NChar { len: 4 };
        assert_eq!(
            val(nc, |w| w.str("ab")),
            [8, 0, b'a', 0, b'b', 0, 0x20, 0, 0x20, 0]
        );
        assert_eq!(
            val(nc, |w| w.ucs2(&utf16("a"))),
            [8, 0, b'a', 0, 0x20, 0, 0x20, 0, 0x20, 0]
        );
        let vc = SqlType::VarChar {
            len: Some(20),
            collation: Collation::Latin1Cp1252,
        };
        assert_eq!(val(vc, |w| w.str("é ü €")), [5, 0, 0xE9, 0x20, 0xFC, 0x20, 0x80]);
        assert_eq!(val(vc, |w| w.str("日本")), [2, 0, b'?', b'?']);
        assert_eq!(val(vc, |w| w.str("Œ™")), [2, 0, 0x8C, 0x99]);
        let c = SqlType::Char {
            len: 3,
            collation: Collation::Latin1Cp1252,
        };
        assert_eq!(val(c, |w| w.str("a")), [3, 0, b'a', 0x20, 0x20]);
        assert_eq!(val(c, |w| w.str("abcd")), [3, 0, b'a', b'b', b'c']);
        let u8c = SqlType::VarChar {
            len: Some(3),
            collation: Collation::Utf8,
        };
        assert_eq!(val(u8c, |w| w.str("é")), [2, 0, 0xC3, 0xA9]);
        assert_eq!(val(u8c, |w| w.str("aéé")), [3, 0, b'a', 0xC3, 0xA9]);
        // numbers, guids and dates into text
        let nv = SqlType::NVarChar { len: Some(40) };
        let text = |f: &dyn Fn(&mut RowWriter<'_>)| -> String {
            let v = val(nv, |w| f(w));
            let units: Vec<u16> = v[2..]
                .chunks(2)
                .map(|p| u16::from_le_bytes([p[0], p[1]]))
                .collect();
            assert_eq!(v[0] as usize + 256 * v[1] as usize, v.len() - 2);
            String::from_utf16(&units).unwrap()
        };
        assert_eq!(text(&|w| w.int(-42)), "-42");
        assert_eq!(text(&|w| w.decimal(-1234, 2)), "-12.34");
        assert_eq!(text(&|w| w.decimal(5, 2)), "0.05");
        assert_eq!(text(&|w| w.decimal(5, 0)), "5");
        assert_eq!(text(&|w| w.float(1.5)), "1.5");
        assert_eq!(text(&|w| w.bit(true)), "1");
        assert_eq!(text(&|w| w.date(d(2024, 2, 29))), "2024-02-29");
        assert_eq!(text(&|w| w.time(t(1, 2, 3, 400))), "01:02:03.0000004");
        assert_eq!(
            text(&|w| w.datetime(dt(2024, 2, 29, 1, 2, 3, 0))),
            "2024-02-29 01:02:03.0000000"
        );
        let g = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
        ];
        assert_eq!(text(&|w| w.guid(g)), "00112233-4455-6677-8899-AABBCCDDEEFF");
    }

    #[test]
    fn guids() {
        let g: [u8; 16] = std::array::from_fn(|i| i as u8);
        let mut e = vec![16];
        e.extend_from_slice(&g);
        assert_eq!(val(SqlType::UniqueIdentifier, |w| w.guid(g)), e);
        assert_eq!(valn(SqlType::UniqueIdentifier, |w| w.null()), [0]);
        assert_eq!(
            val(SqlType::UniqueIdentifier, |w| w.value(&Value::Bytes(g.to_vec()))),
            e
        );
    }

    #[test]
    fn plp() {
        let ty = SqlType::NVarChar { len: None };
        assert_eq!(
            val(ty, |w| w.str("ab")),
            [4, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, b'a', 0, b'b', 0, 0, 0, 0, 0]
        );
        assert_eq!(val(ty, |w| w.str("")), [0; 12]);
        assert_eq!(valn(ty, |w| w.null()), [0xFF; 8]);
        // 10000 bytes: chunks of 8000 and 2000, then the terminator.
        let s = "x".repeat(5000);
        let v = val(ty, |w| w.str(&s));
        assert_eq!(&v[..8], &10000u64.to_le_bytes());
        assert_eq!(&v[8..12], &8000u32.to_le_bytes());
        assert_eq!(&v[12 + 8000..16 + 8000], &2000u32.to_le_bytes());
        assert_eq!(&v[16 + 10000..], &[0, 0, 0, 0]);
        assert_eq!(v.len(), 8 + 4 + 8000 + 4 + 2000 + 4);
        assert!(v[12..12 + 8000].chunks(2).all(|p| p == [b'x', 0]));
        // exactly 8000 bytes: a single chunk
        let v = val(
            SqlType::VarChar {
                len: None,
                collation: Collation::Latin1Cp1252,
            },
            |w| w.str(&"y".repeat(8000)),
        );
        assert_eq!(v.len(), 8 + 4 + 8000 + 4);
        assert_eq!(&v[8..12], &8000u32.to_le_bytes());
        let v = val(
            SqlType::VarChar {
                len: None,
                collation: Collation::Latin1Cp1252,
            },
            |w| w.str("é"),
        );
        assert_eq!(v, [1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xE9, 0, 0, 0, 0]);
    }

    #[test]
    fn tds71_max_types_as_text() {
        let v71 = TdsVersion::V7_1;
        let mut e = vec![0x63, 0xFE, 0xFF, 0xFF, 0x7F];
        e.extend_from_slice(&CP);
        e.extend_from_slice(&[0, 0]);
        assert_eq!(
            type_info(Column::new("a", SqlType::NVarChar { len: None }).nullable(), v71),
            e
        );
        let mut e = vec![0x23, 0xFF, 0xFF, 0xFF, 0x7F];
        e.extend_from_slice(&CP);
        e.extend_from_slice(&[0, 0]);
        assert_eq!(
            type_info(
                Column::new(
                    "a",
                    SqlType::VarChar {
                        len: None,
                        collation: Collation::Latin1Cp1252
                    }
                ),
                v71
            ),
            e
        );
        let v = one(
            Column::new("a", SqlType::NVarChar { len: None }).nullable(),
            v71,
            |w| w.str("ab"),
        );
        let mut e = vec![16];
        e.extend_from_slice(&TEXTPTR);
        e.extend_from_slice(&[0; 8]);
        e.extend_from_slice(&[4, 0, 0, 0, b'a', 0, b'b', 0]);
        assert_eq!(v, e);
        let v = one(
            Column::new("a", SqlType::NVarChar { len: None }).nullable(),
            v71,
            |w| w.null(),
        );
        assert_eq!(v, [0]);
        // 7.2 keeps PLP
        assert_eq!(
            &type_info(
                Column::new("a", SqlType::NVarChar { len: None }),
                TdsVersion::V7_2
            )[..3],
            &[0xE7, 0xFF, 0xFF]
        );
    }

    #[test]
    fn pre73_dates_as_nvarchar() {
        for tds in [TdsVersion::V7_1, TdsVersion::V7_2] {
            let check = |ty: SqlType, chars: u16, f: &dyn Fn(&mut RowWriter<'_>), text: &str| {
                let mut e = vec![0xE7];
                e.extend_from_slice(&(chars * 2).to_le_bytes());
                e.extend_from_slice(&CP);
                assert_eq!(type_info(Column::new("a", ty).nullable(), tds), e, "{ty:?}");
                let v = one(Column::new("a", ty).nullable(), tds, |w| f(w));
                let mut e = ((text.len() * 2) as u16).to_le_bytes().to_vec();
                e.extend_from_slice(&utf16(text));
                assert_eq!(v, e, "{ty:?}");
                assert_eq!(
                    one(Column::new("a", ty).nullable(), tds, |w| w.null()),
                    [0xFF, 0xFF]
                );
            };
            let x = dt(2000, 1, 2, 3, 4, 5, 123_456_789);
            check(SqlType::Date, 10, &|w| w.date(d(2000, 1, 2)), "2000-01-02");
            check(SqlType::Date, 10, &|w| w.datetime(x), "2000-01-02");
            check(SqlType::Time { scale: 0 }, 8, &|w| w.time(x.time()), "03:04:05");
            check(
                SqlType::Time { scale: 3 },
                12,
                &|w| w.time(x.time()),
                "03:04:05.123",
            );
            check(
                SqlType::Time { scale: 7 },
                16,
                &|w| w.datetime(x),
                "03:04:05.1234568",
            );
            check(
                SqlType::DateTime2 { scale: 0 },
                19,
                &|w| w.datetime(x),
                "2000-01-02 03:04:05",
            );
            check(
                SqlType::DateTime2 { scale: 7 },
                27,
                &|w| w.datetime(x),
                "2000-01-02 03:04:05.1234568",
            );
            check(
                SqlType::DateTime2 { scale: 3 },
                23,
                &|w| w.date(d(2000, 1, 2)),
                "2000-01-02 00:00:00.000",
            );
            let off = FixedOffset::west_opt(5 * 3600 + 30 * 60).unwrap();
            let o = x.and_local_timezone(off).unwrap();
            check(
                SqlType::DateTimeOffset { scale: 7 },
                34,
                &|w| w.datetimeoffset(o),
                "2000-01-02 03:04:05.1234568 -05:30",
            );
            check(
                SqlType::DateTimeOffset { scale: 0 },
                26,
                &|w| w.datetime(x),
                "2000-01-02 03:04:05 +00:00",
            );
        }
    }

    fn row_bytes(cols: &[Column], tds: TdsVersion, f: impl FnOnce(&mut RowWriter<'_>)) -> Vec<u8> {
        let mut enc = RowEncoder::new(cols, tds);
        let mut out = Vec::new();
        let mut w = enc.row(&mut out);
        f(&mut w);
        w.finish();
        out
    }

    #[test]
    fn nbcrow_only_when_shorter() {
        let ints: Vec<Column> = (0..3).map(|_| Column::new("", SqlType::Int).nullable()).collect();
        // one NULL: 1 byte saved, 1-byte bitmap: not shorter -> ROW
        let r = row_bytes(&ints, V74, |w| {
            w.int(1);
            w.null();
            w.int(3)
        });
        assert_eq!(r, [0xD1, 4, 1, 0, 0, 0, 0, 4, 3, 0, 0, 0]);
        // two NULLs: 2 bytes saved > 1 -> NBCROW
        let r = row_bytes(&ints, V74, |w| {
            w.null();
            w.int(2);
            w.null()
        });
        assert_eq!(r, [0xD2, 0b101, 4, 2, 0, 0, 0]);
        // but not before 7.3B
        let r = row_bytes(&ints, TdsVersion::V7_3A, |w| {
            w.null();
            w.int(2);
            w.null()
        });
        assert_eq!(r, [0xD1, 0, 4, 2, 0, 0, 0, 0]);
        // nvarchar NULL (2 bytes) beats a 1-byte bitmap; runs of non-NULL values are kept
        let cols = vec![
            Column::new("", SqlType::Int),
            Column::new("", SqlType::NVarChar { len: Some(5) }).nullable(),
            Column::new("", SqlType::Int),
            Column::new("", SqlType::Bit),
        ];
        let r = row_bytes(&cols, V74, |w| {
            w.int(7);
            w.null();
            w.int(8);
            w.bit(true)
        });
        assert_eq!(r, [0xD2, 0b10, 7, 0, 0, 0, 8, 0, 0, 0, 1]);
        // 9 nullable ints, all NULL: 9 bytes saved > 2-byte bitmap
        let cols: Vec<Column> = (0..9).map(|_| Column::new("", SqlType::Int).nullable()).collect();
        let r = row_bytes(&cols, V74, |w| (0..9).for_each(|_| w.null()));
        assert_eq!(r, [0xD2, 0xFF, 0x01]);
        // 9 columns, one PLP NULL (8 bytes saved > 2)
        let mut cols: Vec<Column> = (0..8).map(|_| Column::new("", SqlType::TinyInt)).collect();
        cols.push(Column::new("", SqlType::NVarChar { len: None }).nullable());
        let r = row_bytes(&cols, V74, |w| {
            (0..8).for_each(|i| w.int(i));
            w.null()
        });
        assert_eq!(r, [0xD2, 0, 1, 0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn bitmap_resets_between_rows() {
        let cols: Vec<Column> = (0..3).map(|_| Column::new("", SqlType::Int).nullable()).collect();
        let mut enc = RowEncoder::new(&cols, V74);
        let mut out = Vec::new();
        let mut w = enc.row(&mut out);
        w.null();
        w.null();
        w.int(1);
        w.finish();
        let mut w = enc.row(&mut out);
        w.int(1);
        w.int(2);
        w.null();
        w.finish();
        let mut w = enc.row(&mut out);
        w.int(1);
        w.null();
        w.null();
        w.finish();
        assert_eq!(
            out,
            [
                0xD2, 0b011, 4, 1, 0, 0, 0, //
                0xD1, 4, 1, 0, 0, 0, 4, 2, 0, 0, 0, 0, //
                0xD2, 0b110, 4, 1, 0, 0, 0
            ]
        );
    }

    #[test]
    fn value_dispatch() {
        let cols = vec![
            Column::new("", SqlType::Int),
            Column::new("", SqlType::Bit),
            Column::new(
                "",
                SqlType::Decimal {
                    precision: 5,
                    scale: 1,
                },
            ),
            Column::new("", SqlType::NVarChar { len: Some(2) }),
            Column::new(
                "",
                SqlType::VarChar {
                    len: Some(2),
                    collation: Collation::Latin1Cp1252,
                },
            ),
            Column::new("", SqlType::Date).nullable(),
        ];
        let r = row_bytes(&cols, TdsVersion::V7_3A, |w| {
            for v in [
                Value::Int(1),
                Value::Bit(true),
                Value::Decimal {
                    mantissa: 25,
                    scale: 2,
                },
                Value::String("é".into()),
                Value::Bytes(vec![0xE9]),
                Value::Null,
            ] {
                w.value(&v);
            }
        });
        assert_eq!(
            r,
            [
                0xD1, 1, 0, 0, 0, 1, 5, 1, 3, 0, 0, 0, 2, 0, 0xE9, 0, 1, 0, 0xE9, 0
            ]
        );
    }

    #[test]
    #[should_panic(expected = "row has 1 values for 2 columns")]
    fn missing_values_panic() {
        let cols = vec![Column::new("", SqlType::Int), Column::new("", SqlType::Int)];
        row_bytes(&cols, V74, |w| w.int(1));
    }

    fn bench_columns() -> Vec<Column> {
        use SqlType::*;
        let dec = Decimal {
            precision: 18,
            scale: 2,
        };
        vec![
            Column::new("id", BigInt),
            Column::new("n", Int),
            Column::new("day", Date),
            Column::new("s1", NVarChar { len: Some(50) }),
            Column::new("s2", NVarChar { len: Some(50) }),
            Column::new("s3", NVarChar { len: Some(100) }),
            Column::new("s4", NVarChar { len: Some(20) }),
            Column::new("d1", dec),
            Column::new("d2", dec),
            Column::new("d3", dec),
            Column::new(
                "d4",
                Decimal {
                    precision: 10,
                    scale: 4,
                },
            ),
            Column::new(
                "d5",
                Decimal {
                    precision: 5,
                    scale: 0,
                },
            ),
            Column::new("ccy", NVarChar { len: Some(3) }),
            Column::new("o1", Date).nullable(),
            Column::new("o2", Date).nullable(),
            Column::new("o3", NVarChar { len: Some(30) }).nullable(),
            Column::new("note", NVarChar { len: Some(200) }),
            Column::new("flag", Bit),
            Column::new("ts", DateTime2 { scale: 3 }),
        ]
    }

    fn bench_row(w: &mut RowWriter<'_>, i: i64, day: NaiveDate, ts: NaiveDateTime) {
        w.int(i);
        w.int(i & 0xFFFF);
        w.date(day);
        w.str("customer name");
        w.str("some street 12");
        w.str("a somewhat longer description value");
        w.str("Zürich");
        w.decimal(i as i128 * 100 + 99, 2);
        w.decimal(123_456, 2);
        w.decimal(-5, 1);
        w.decimal(31_415, 4);
        w.int(42);
        w.ucs2(&[b'E', 0, b'U', 0, b'R', 0]);
        if i % 2 == 0 {
            w.date(day);
        } else {
            w.null();
        }
        w.null();
        w.null();
        w.str("note");
        w.bit(i % 3 == 0);
        w.datetime(ts);
    }

    #[test]
    fn bench_row_shape() {
        let cols = bench_columns();
        let day = d(2024, 5, 17);
        let ts = dt(2024, 5, 17, 10, 11, 12, 345_000_000);
        let r = row_bytes(&cols, V74, |w| bench_row(w, 1, day, ts));
        // o1, o2 (dates) and o3 (nvarchar) are NULL: 1 + 1 + 2 = 4 bytes saved > 3-byte bitmap
        assert_eq!(r[0], 0xD2);
        assert_eq!(&r[1..4], &[0, 0b1110_0000, 0]);
        let r = row_bytes(&cols, V74, |w| bench_row(w, 2, day, ts));
        // only 3 bytes saved: ROW
        assert_eq!(r[0], 0xD1);
    }

    #[test]
    #[ignore]
    fn bench_19_columns() {
        let cols = bench_columns();
        let mut enc = RowEncoder::new(&cols, V74);
        let mut out = Vec::with_capacity(1 << 20);
        let day = d(2024, 5, 17);
        let ts = dt(2024, 5, 17, 10, 11, 12, 345_000_000);
        let n = 2_000_000i64;
        let mut bytes = 0usize;
        let start = std::time::Instant::now();
        for i in 0..n {
            let mut w = enc.row(&mut out);
            bench_row(&mut w, i, day, ts);
            w.finish();
            if out.len() > (1 << 20) - 4096 {
                bytes += out.len();
                out.clear();
            }
        }
        bytes += out.len();
        let el = start.elapsed();
        println!(
            "{n} rows of 19 columns in {el:?}: {:.0} rows/s, {:.1} MB/s, {:.1} bytes/row",
            n as f64 / el.as_secs_f64(),
            bytes as f64 / el.as_secs_f64() / 1e6,
            bytes as f64 / n as f64
        );
    }
}
