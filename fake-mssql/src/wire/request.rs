//! Client requests after login (MS-TDS 2.2.6): SQL batches, RPCs with their parameters,
//! transaction manager requests.

use std::io;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};

use super::login7::utf16le;
use super::packet::invalid;
use crate::types::Value;

// Everything here reads client bytes: no indexing, no `expect`, no unchecked arithmetic on
// what the client sent. A malformed request is an `Err` (error 8009 / 8525 for the client),
// never a panic of the connection task.

/// `len` bytes at `at`.
fn bytes(b: &[u8], at: usize, len: usize) -> io::Result<&[u8]> {
    at.checked_add(len)
        .and_then(|end| b.get(at..end))
        .ok_or_else(|| invalid("truncated request"))
}

/// `N` bytes at `at`.
fn array<const N: usize>(b: &[u8], at: usize) -> io::Result<[u8; N]> {
    fixed(bytes(b, at, N)?)
}

/// `v` as exactly `N` bytes.
fn fixed<const N: usize>(v: &[u8]) -> io::Result<[u8; N]> {
    v.try_into()
        .map_err(|_| invalid(format!("expected {N} bytes, got {}", v.len())))
}

fn u16_le(b: &[u8], at: usize) -> io::Result<u16> {
    array(b, at).map(u16::from_le_bytes)
}

fn u32_le(b: &[u8], at: usize) -> io::Result<u32> {
    array(b, at).map(u32::from_le_bytes)
}

/// Skips the ALL_HEADERS block (TDS 7.2+) if present and well-formed.
pub(crate) fn skip_all_headers(p: &[u8]) -> &[u8] {
    let Ok(total) = u32_le(p, 0).map(|t| t as usize) else {
        return p;
    };
    if total < 4 || total > p.len() {
        return p;
    }
    let mut pos = 4;
    while pos < total {
        match u32_le(p, pos).map(|len| (len, pos.checked_add(len as usize))) {
            Ok((len, Some(end))) if len >= 6 && end <= total => pos = end,
            _ => return p,
        }
    }
    p.get(total..).unwrap_or(p)
}

/// The SQL text of a SQL batch request.
pub(crate) fn parse_sql_batch(payload: &[u8]) -> String {
    utf16le(skip_all_headers(payload))
}

/// The procedure an RPC request calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RpcProc {
    /// A well-known procedure id (10 = `sp_executesql`).
    Id(u16),
    /// A procedure called by name.
    Name(String),
}

impl RpcProc {
    pub(crate) fn is_sp_executesql(&self) -> bool {
        match self {
            RpcProc::Id(id) => *id == 10,
            RpcProc::Name(name) => {
                let name = name.to_ascii_lowercase();
                name == "sp_executesql" || name.ends_with(".sp_executesql")
            }
        }
    }
}

impl std::fmt::Display for RpcProc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [&str; 16] = [
            "",
            "sp_cursor",
            "sp_cursoropen",
            "sp_cursorprepare",
            "sp_cursorexecute",
            "sp_cursorprepexec",
            "sp_cursorunprepare",
            "sp_cursorfetch",
            "sp_cursoroption",
            "sp_cursorclose",
            "sp_executesql",
            "sp_prepare",
            "sp_execute",
            "sp_prepexec",
            "sp_prepexecrpc",
            "sp_unprepare",
        ];
        match self {
            RpcProc::Id(id) => match NAMES.get(usize::from(*id)) {
                Some(name) if !name.is_empty() => f.write_str(name),
                _ => write!(f, "procedure #{id}"),
            },
            RpcProc::Name(name) => f.write_str(name),
        }
    }
}

/// One RPC parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcParam {
    pub(crate) name: String,
    pub(crate) output: bool,
    pub(crate) value: Value,
}

/// An RPC request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcRequest {
    pub(crate) proc: RpcProc,
    pub(crate) params: Vec<RpcParam>,
}

pub(crate) fn parse_rpc(payload: &[u8]) -> io::Result<RpcRequest> {
    let p = skip_all_headers(payload);
    let mut pos = 0;
    let name_len = u16_le(p, pos)?;
    pos += 2;
    let proc = if name_len == 0xFFFF {
        let id = u16_le(p, pos)?;
        pos += 2;
        RpcProc::Id(id)
    } else {
        let name =
            bytes(p, pos, 2 * usize::from(name_len)).map_err(|_| invalid("truncated RPC procedure name"))?;
        pos += name.len();
        RpcProc::Name(utf16le(name))
    };
    pos += 2; // option flags
    let mut params = Vec::new();
    // Parameters until the end (or a batch separator 0x80 / 0xFF, which we do not support).
    while let Some(&first) = p.get(pos) {
        if matches!(first, 0x80 | 0xFF | 0xFE) {
            break;
        }
        let name_chars = usize::from(first);
        let name =
            utf16le(bytes(p, pos + 1, 2 * name_chars).map_err(|_| invalid("truncated RPC parameter name"))?);
        pos += 1 + 2 * name_chars;
        let status = *p.get(pos).ok_or_else(|| invalid("truncated RPC parameter"))?;
        pos += 1;
        let (value, next) = read_typed_value(p, pos)?;
        pos = next;
        params.push(RpcParam {
            name,
            output: status & 0x01 != 0,
            value,
        });
    }
    Ok(RpcRequest { proc, params })
}

/// Reads a TYPE_INFO and the value that follows; returns the value and the next position.
/// Every length is checked against its type, so a malformed value is an error, not a panic.
fn read_typed_value(p: &[u8], mut pos: usize) -> io::Result<(Value, usize)> {
    let byte = |at: usize| p.get(at).copied().ok_or_else(|| invalid("truncated RPC value"));
    let slice = |at: usize, len: usize| bytes(p, at, len).map_err(|_| invalid("truncated RPC value"));
    let ty = byte(pos)?;
    pos += 1;
    let bad_len = |len: usize| invalid(format!("bad RPC value length {len} for type {ty:#04x}"));
    match ty {
        // Fixed-length types.
        0x30 | 0x34 | 0x38 | 0x7F => {
            let len = match ty {
                0x30 => 1,
                0x34 => 2,
                0x38 => 4,
                _ => 8,
            };
            Ok((Value::Int(int_le(slice(pos, len)?)?), pos + len))
        }
        0x32 => Ok((Value::Bit(byte(pos)? != 0), pos + 1)),
        0x1F => Ok((Value::Null, pos)),
        0x3E => Ok((Value::Float(f64::from_le_bytes(array(p, pos)?)), pos + 8)),
        0x3B => Ok((
            Value::Float(f64::from(f32::from_le_bytes(array(p, pos)?))),
            pos + 4,
        )),
        // One-byte max length, one-byte value length.
        0x26 | 0x68 | 0x6D | 0x6E | 0x6F | 0x24 => {
            pos += 1; // max length
            let len = usize::from(byte(pos)?);
            pos += 1;
            let v = slice(pos, len)?;
            let value = match (ty, len) {
                (_, 0) => Value::Null,
                (0x26, 1 | 2 | 4 | 8) => Value::Int(int_le(v)?),
                (0x68, 1) => Value::Bit(v.iter().any(|&b| b != 0)),
                (0x6D, 4) => Value::Float(f64::from(f32::from_le_bytes(fixed(v)?))),
                (0x6D, 8) => Value::Float(f64::from_le_bytes(fixed(v)?)),
                (0x6E, 4) => Value::Decimal {
                    mantissa: i128::from(i32::from_le_bytes(fixed(v)?)),
                    scale: 4,
                },
                (0x6E, 8) => {
                    let [h0, h1, h2, h3, l0, l1, l2, l3] = fixed(v)?;
                    let high = i64::from(i32::from_le_bytes([h0, h1, h2, h3]));
                    let low = i64::from(u32::from_le_bytes([l0, l1, l2, l3]));
                    Value::Decimal {
                        mantissa: i128::from((high << 32) | low),
                        scale: 4,
                    }
                }
                (0x6F, 4) => {
                    let [d0, d1, m0, m1] = fixed(v)?;
                    let days = u16::from_le_bytes([d0, d1]);
                    let minutes = u16::from_le_bytes([m0, m1]);
                    if minutes >= 24 * 60 {
                        return Err(invalid(format!("bad smalldatetime minutes {minutes}")));
                    }
                    Value::DateTime(datetime_1900(
                        i64::from(days),
                        TimeDelta::try_minutes(i64::from(minutes)),
                    )?)
                }
                (0x6F, 8) => {
                    let [d0, d1, d2, d3, t0, t1, t2, t3] = fixed(v)?;
                    let days = i32::from_le_bytes([d0, d1, d2, d3]);
                    // 1/300 s since midnight.
                    let ticks = u32::from_le_bytes([t0, t1, t2, t3]);
                    if ticks >= 300 * 86_400 {
                        return Err(invalid(format!("bad datetime time {ticks}")));
                    }
                    Value::DateTime(datetime_1900(
                        i64::from(days),
                        Some(TimeDelta::nanoseconds(i64::from(ticks) * 10_000_000 / 3)),
                    )?)
                }
                (0x24, 16) => Value::Guid(fixed(v)?),
                _ => return Err(bad_len(len)),
            };
            Ok((value, pos + len))
        }
        // DECIMALN / NUMERICN: max length, precision, scale, then length-prefixed value.
        0x6A | 0x6C => {
            let max = usize::from(byte(pos)?);
            let precision = byte(pos + 1)?;
            let scale = byte(pos + 2)?;
            pos += 3;
            if !(1..=38).contains(&precision) || scale > precision {
                return Err(invalid(format!("bad decimal({precision},{scale})")));
            }
            let len = usize::from(byte(pos)?);
            pos += 1;
            if len == 0 {
                return Ok((Value::Null, pos));
            }
            if !matches!(len, 5 | 9 | 13 | 17) || len > max {
                return Err(bad_len(len));
            }
            let (&sign, digits) = slice(pos, len)?.split_first().ok_or_else(|| bad_len(len))?;
            let mut magnitude = [0u8; 16];
            magnitude
                .get_mut(..digits.len())
                .ok_or_else(|| bad_len(len))?
                .copy_from_slice(digits);
            let m = i128::try_from(u128::from_le_bytes(magnitude))
                .map_err(|_| invalid("decimal value out of range"))?;
            let mantissa = if sign == 0 { m.checked_neg() } else { Some(m) }
                .ok_or_else(|| invalid("decimal value out of range"))?;
            Ok((Value::Decimal { mantissa, scale }, pos + len))
        }
        0x28 => {
            let len = usize::from(byte(pos)?);
            pos += 1;
            match len {
                0 => Ok((Value::Null, pos)),
                3 => Ok((Value::Date(date_from(array(p, pos)?)?), pos + len)),
                _ => Err(bad_len(len)),
            }
        }
        0x29..=0x2B => {
            let scale = byte(pos)?;
            pos += 1;
            if scale > 7 {
                return Err(invalid(format!("bad time scale {scale}")));
            }
            let len = usize::from(byte(pos)?);
            pos += 1;
            if len == 0 {
                return Ok((Value::Null, pos));
            }
            let time_len = match scale {
                0..=2 => 3,
                3..=4 => 4,
                _ => 5,
            };
            let need = time_len
                + match ty {
                    0x29 => 0,
                    0x2A => 3,
                    _ => 5,
                };
            if len < need {
                return Err(bad_len(len));
            }
            let v = slice(pos, len)?;
            let mut t = [0u8; 8];
            for (to, from) in t.iter_mut().zip(bytes(v, 0, time_len)?) {
                *to = *from;
            }
            let nanos = u64::from_le_bytes(t)
                .checked_mul(10u64.pow(9 - u32::from(scale)))
                .ok_or_else(|| invalid("bad time value"))?;
            let time = u32::try_from(nanos / 1_000_000_000)
                .ok()
                .and_then(|secs| {
                    NaiveTime::from_num_seconds_from_midnight_opt(secs, (nanos % 1_000_000_000) as u32)
                })
                .ok_or_else(|| invalid("bad time value"))?;
            let value = match ty {
                0x29 => Value::Time(time),
                0x2A => Value::DateTime(date_from(array(v, time_len)?)?.and_time(time)),
                _ => {
                    let utc = date_from(array(v, time_len)?)?.and_time(time);
                    let offset = i16::from_le_bytes(array(v, time_len + 3)?);
                    let tz = chrono::FixedOffset::east_opt(i32::from(offset) * 60)
                        .ok_or_else(|| invalid("bad offset"))?;
                    Value::DateTimeOffset(chrono::DateTime::from_naive_utc_and_offset(utc, tz))
                }
            };
            Ok((value, pos + len))
        }
        // USHORT max length (+ collation for character types).
        0xA7 | 0xAF | 0xE7 | 0xEF | 0xA5 | 0xAD => {
            let max = u16_le(p, pos)?;
            pos += 2;
            let text = matches!(ty, 0xA7 | 0xAF | 0xE7 | 0xEF);
            let unicode = matches!(ty, 0xE7 | 0xEF);
            if text {
                pos += 5;
            }
            let (bytes, next) = if max == 0xFFFF {
                read_plp(p, pos)?
            } else {
                let len = u16_le(p, pos)?;
                pos += 2;
                if len == 0xFFFF {
                    (None, pos)
                } else {
                    let len = usize::from(len);
                    (Some(slice(pos, len)?.to_vec()), pos + len)
                }
            };
            let value = match bytes {
                None => Value::Null,
                Some(b) if unicode => Value::String(utf16le(&b)),
                Some(b) if text => Value::String(b.iter().map(|&c| cp1252_char(c)).collect()),
                Some(b) => Value::Bytes(b),
            };
            Ok((value, next))
        }
        // NTEXT / TEXT / IMAGE: LONG max length, collation (text), then table name parts? No:
        // in RPC parameters they carry LONG max length, collation, then LONG value length.
        0x63 | 0x23 | 0x22 => {
            pos += 4;
            if ty != 0x22 {
                pos += 5;
            }
            let len = u32_le(p, pos)?;
            pos += 4;
            if len == 0xFFFF_FFFF {
                return Ok((Value::Null, pos));
            }
            let b = slice(pos, len as usize)?;
            let value = match ty {
                0x63 => Value::String(utf16le(b)),
                0x23 => Value::String(b.iter().map(|&c| cp1252_char(c)).collect()),
                _ => Value::Bytes(b.to_vec()),
            };
            Ok((value, pos + b.len()))
        }
        other => Err(invalid(format!("unsupported RPC parameter type {other:#04x}"))),
    }
}

/// A little-endian integer of 1 (unsigned), 2, 4 or 8 bytes.
fn int_le(v: &[u8]) -> io::Result<i64> {
    Ok(match v.len() {
        1 => i64::from(u8::from_le_bytes(fixed(v)?)),
        2 => i64::from(i16::from_le_bytes(fixed(v)?)),
        4 => i64::from(i32::from_le_bytes(fixed(v)?)),
        8 => i64::from_le_bytes(fixed(v)?),
        n => return Err(invalid(format!("bad integer length {n}"))),
    })
}

/// `datetime` / `smalldatetime`: days since 1900-01-01 plus the time of day; an error when
/// the date is out of range (instead of the panic of `NaiveDateTime + TimeDelta`).
fn datetime_1900(days: i64, time: Option<TimeDelta>) -> io::Result<NaiveDateTime> {
    NaiveDate::from_ymd_opt(1900, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .zip(TimeDelta::try_days(days))
        .and_then(|(base, days)| base.checked_add_signed(days))
        .zip(time)
        .and_then(|(date, time)| date.checked_add_signed(time))
        .ok_or_else(|| invalid(format!("datetime out of range ({days} days)")))
}

/// A 3-byte day count since 0001-01-01.
fn date_from([b0, b1, b2]: [u8; 3]) -> io::Result<NaiveDate> {
    let days = i32::from_le_bytes([b0, b1, b2, 0]);
    NaiveDate::from_num_days_from_ce_opt(days + 1).ok_or_else(|| invalid(format!("bad date {days}")))
}

/// Windows-1252 to Unicode (the code page of SQL_Latin1_General_CP1).
pub(crate) fn cp1252_char(b: u8) -> char {
    const HIGH: [u16; 32] = [
        0x20AC, 0xFFFD, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
        0x0152, 0xFFFD, 0x017D, 0xFFFD, 0xFFFD, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
        0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0xFFFD, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9F => HIGH
            .get(usize::from(b - 0x80))
            .and_then(|&c| char::from_u32(u32::from(c)))
            .unwrap_or('\u{FFFD}'),
        _ => char::from(b),
    }
}

/// A PLP (partially length-prefixed) value starting at `pos`: `None` for PLP NULL.
fn read_plp(p: &[u8], mut pos: usize) -> io::Result<(Option<Vec<u8>>, usize)> {
    let total = array(p, pos)
        .map(u64::from_le_bytes)
        .map_err(|_| invalid("truncated PLP length"))?;
    pos += 8;
    if total == u64::MAX {
        return Ok((None, pos));
    }
    let mut out = Vec::new();
    loop {
        let chunk = u32_le(p, pos)? as usize;
        pos += 4;
        if chunk == 0 {
            return Ok((Some(out), pos));
        }
        let bytes = bytes(p, pos, chunk).map_err(|_| invalid("truncated PLP chunk"))?;
        out.extend_from_slice(bytes);
        pos += chunk;
    }
}

/// A transaction manager request (MS-TDS 2.2.6.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransactionRequest {
    /// TM_BEGIN_XACT.
    Begin,
    /// TM_COMMIT_XACT, optionally beginning a new transaction at once.
    Commit { begin_new: bool },
    /// TM_ROLLBACK_XACT, optionally beginning a new transaction at once.
    Rollback { begin_new: bool },
    /// TM_SAVE_XACT (a savepoint).
    Save,
    /// Anything else (DTC requests).
    Other(u16),
}

pub(crate) fn parse_transaction(payload: &[u8]) -> io::Result<TransactionRequest> {
    let p = skip_all_headers(payload);
    let ty = u16_le(p, 0)?;
    // COMMIT / ROLLBACK: name B_VARCHAR, then flags (fBeginXact 0x01).
    let begin_new = || -> io::Result<bool> {
        let name_chars = usize::from(*p.get(2).ok_or_else(|| invalid("truncated TM request"))?);
        Ok(p.get(3 + 2 * name_chars).is_some_and(|f| f & 0x01 != 0))
    };
    Ok(match ty {
        5 => TransactionRequest::Begin,
        7 => TransactionRequest::Commit {
            begin_new: begin_new()?,
        },
        8 => TransactionRequest::Rollback {
            begin_new: begin_new()?,
        },
        9 => TransactionRequest::Save,
        other => TransactionRequest::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ucs2(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn all_headers_are_skipped_only_when_well_formed() {
        let mut p = Vec::new();
        p.extend_from_slice(&22u32.to_le_bytes());
        p.extend_from_slice(&18u32.to_le_bytes());
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&ucs2("SELECT 1"));
        assert_eq!(parse_sql_batch(&p), "SELECT 1");
        assert_eq!(parse_sql_batch(&ucs2("SELECT 1")), "SELECT 1");
    }

    #[test]
    fn rpc_parameters_are_decoded() {
        let mut p = Vec::new();
        p.extend_from_slice(&0xFFFFu16.to_le_bytes());
        p.extend_from_slice(&10u16.to_le_bytes());
        p.extend_from_slice(&0u16.to_le_bytes());
        // @stmt nvarchar(4000) 'SELECT @P1'
        let stmt = ucs2("SELECT @P1");
        p.push(0);
        p.push(0);
        p.push(0xE7);
        p.extend_from_slice(&8000u16.to_le_bytes());
        p.extend_from_slice(&[0x09, 0x04, 0xD0, 0x00, 0x34]);
        p.extend_from_slice(&(stmt.len() as u16).to_le_bytes());
        p.extend_from_slice(&stmt);
        // @P1 int 7
        let name = ucs2("@P1");
        p.push(3);
        p.extend_from_slice(&name);
        p.push(0);
        p.extend_from_slice(&[0x26, 4, 4, 7, 0, 0, 0]);
        // decimal(10,2) -1.25
        p.push(0);
        p.push(0);
        p.extend_from_slice(&[0x6A, 17, 10, 2, 5, 0, 125, 0, 0, 0]);
        let rpc = parse_rpc(&p).unwrap();
        assert!(rpc.proc.is_sp_executesql());
        assert_eq!(rpc.params.len(), 3);
        assert_eq!(rpc.params[0].value, Value::String("SELECT @P1".into()));
        assert_eq!(rpc.params[1].name, "@P1");
        assert_eq!(rpc.params[1].value, Value::Int(7));
        assert_eq!(
            rpc.params[2].value,
            Value::Decimal {
                mantissa: -125,
                scale: 2
            }
        );
    }
}
