//! Response tokens (MS-TDS 2.2.7) other than column metadata and rows (see `types`).

use bytes::BufMut;

use crate::handler::SqlError;
use crate::types::TdsVersion;

const TOKEN_RETURNSTATUS: u8 = 0x79;
const TOKEN_FEATUREEXTACK: u8 = 0xAE;
const TOKEN_ERROR: u8 = 0xAA;
const TOKEN_INFO: u8 = 0xAB;
const TOKEN_LOGINACK: u8 = 0xAD;
const TOKEN_ENVCHANGE: u8 = 0xE3;
#[cfg_attr(not(feature = "windows-auth"), allow(dead_code))]
const TOKEN_SSPI: u8 = 0xED;
const TOKEN_DONE: u8 = 0xFD;
const TOKEN_DONEPROC: u8 = 0xFE;
const TOKEN_DONEINPROC: u8 = 0xFF;

/// DONE status bits.
pub(crate) const DONE_FINAL: u16 = 0x0000;
pub(crate) const DONE_MORE: u16 = 0x0001;
pub(crate) const DONE_ERROR: u16 = 0x0002;
pub(crate) const DONE_INXACT: u16 = 0x0004;
pub(crate) const DONE_COUNT: u16 = 0x0010;
pub(crate) const DONE_ATTN: u16 = 0x0020;

/// DONE `CurCmd` values (SQL Server's statement type numbers).
pub(crate) const CMD_NONE: u16 = 0x0000;
pub(crate) const CMD_SELECT: u16 = 0x00C1;
pub(crate) const CMD_EXECUTE: u16 = 0x00E0;

/// ENVCHANGE types.
pub(crate) const ENV_DATABASE: u8 = 1;
pub(crate) const ENV_LANGUAGE: u8 = 2;
pub(crate) const ENV_PACKET_SIZE: u8 = 4;
pub(crate) const ENV_COLLATION: u8 = 7;
pub(crate) const ENV_BEGIN_TRAN: u8 = 8;
pub(crate) const ENV_COMMIT_TRAN: u8 = 9;
pub(crate) const ENV_ROLLBACK_TRAN: u8 = 10;

pub(crate) fn put_b_varchar(out: &mut impl BufMut, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(255).collect();
    out.put_u8(units.len() as u8);
    for u in units {
        out.put_u16_le(u);
    }
}

fn put_us_varchar(out: &mut impl BufMut, s: &str) {
    let units: Vec<u16> = s.encode_utf16().take(65_535).collect();
    out.put_u16_le(units.len() as u16);
    for u in units {
        out.put_u16_le(u);
    }
}

/// Appends a token whose body starts with a USHORT length, filled in by `body`.
fn put_length_prefixed(out: &mut Vec<u8>, token: u8, body: impl FnOnce(&mut Vec<u8>)) {
    out.push(token);
    let len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    body(out);
    let len = (out.len() - len_at - 2) as u16;
    out[len_at..len_at + 2].copy_from_slice(&len.to_le_bytes());
}

/// LOGINACK: interface T-SQL, the negotiated TDS version, the program name and version.
pub(crate) fn put_loginack(out: &mut Vec<u8>, tds_version: u32, version: [u8; 4]) {
    put_length_prefixed(out, TOKEN_LOGINACK, |b| {
        b.push(1); // interface: SQL_TSQL
        b.extend_from_slice(&tds_version.to_be_bytes());
        put_b_varchar(b, "Microsoft SQL Server");
        b.extend_from_slice(&version);
    });
}

/// ENVCHANGE with B_VARCHAR values.
pub(crate) fn put_envchange(out: &mut Vec<u8>, ty: u8, new: &str, old: &str) {
    put_length_prefixed(out, TOKEN_ENVCHANGE, |b| {
        b.push(ty);
        put_b_varchar(b, new);
        put_b_varchar(b, old);
    });
}

/// ENVCHANGE with B_VARBYTE values (collation, transactions).
pub(crate) fn put_envchange_bytes(out: &mut Vec<u8>, ty: u8, new: &[u8], old: &[u8]) {
    put_length_prefixed(out, TOKEN_ENVCHANGE, |b| {
        b.push(ty);
        b.push(new.len() as u8);
        b.extend_from_slice(new);
        b.push(old.len() as u8);
        b.extend_from_slice(old);
    });
}

/// An ERROR or INFO token's body. The line number is a LONG from TDS 7.2 on, a USHORT in
/// TDS 7.1 (MS-TDS 2.2.7.10, 2.2.7.13).
fn put_message(out: &mut Vec<u8>, tds: TdsVersion, token: u8, e: &SqlError, server: &str) {
    put_length_prefixed(out, token, |b| {
        b.extend_from_slice(&e.number.to_le_bytes());
        b.push(e.state);
        b.push(e.class);
        put_us_varchar(b, &e.message);
        put_b_varchar(b, server);
        put_b_varchar(b, ""); // procedure
        if tds.has_plp() {
            b.extend_from_slice(&1u32.to_le_bytes()); // line
        } else {
            b.extend_from_slice(&1u16.to_le_bytes());
        }
    });
}

/// An ERROR token.
pub(crate) fn put_error(out: &mut Vec<u8>, tds: TdsVersion, e: &SqlError, server: &str) {
    put_message(out, tds, TOKEN_ERROR, e, server);
}

/// An INFO token (class 0).
pub(crate) fn put_info(
    out: &mut Vec<u8>,
    tds: TdsVersion,
    number: u32,
    state: u8,
    message: &str,
    server: &str,
) {
    let mut info = SqlError::new(number, 0, message);
    info.state = state;
    put_message(out, tds, TOKEN_INFO, &info, server);
}

/// SSPI (MS-TDS 2.2.7.22): the server's authentication token, e.g. the NTLM CHALLENGE.
#[cfg_attr(not(feature = "windows-auth"), allow(dead_code))]
pub(crate) fn put_sspi(out: &mut Vec<u8>, data: &[u8]) {
    put_length_prefixed(out, TOKEN_SSPI, |b| b.extend_from_slice(data));
}

/// FEATUREEXTACK acknowledging FEDAUTH (no nonce, no signature) and, if asked, UTF8_SUPPORT.
pub(crate) fn put_featureextack(out: &mut Vec<u8>, fedauth: bool, utf8: bool) {
    out.push(TOKEN_FEATUREEXTACK);
    if fedauth {
        out.push(0x02);
        out.extend_from_slice(&0u32.to_le_bytes());
    }
    if utf8 {
        out.push(0x0A);
        out.extend_from_slice(&1u32.to_le_bytes());
        out.push(1);
    }
    out.push(0xFF);
}

/// DONE, DONEPROC or DONEINPROC. The row count is a ULONGLONG from TDS 7.2 on, a 4-byte LONG
/// in TDS 7.1 (MS-TDS 2.2.7.6): a 7.1 client reading 8 bytes would lose its place in the stream.
fn put_done_token(out: &mut impl BufMut, tds: TdsVersion, token: u8, status: u16, cur_cmd: u16, rows: u64) {
    out.put_u8(token);
    out.put_u16_le(status);
    out.put_u16_le(cur_cmd);
    if tds.has_plp() {
        out.put_u64_le(rows);
    } else {
        out.put_u32_le(u32::try_from(rows).unwrap_or(u32::MAX));
    }
}

pub(crate) fn put_done(out: &mut impl BufMut, tds: TdsVersion, status: u16, cur_cmd: u16, rows: u64) {
    put_done_token(out, tds, TOKEN_DONE, status, cur_cmd, rows);
}

pub(crate) fn put_done_proc(out: &mut impl BufMut, tds: TdsVersion, status: u16, cur_cmd: u16, rows: u64) {
    put_done_token(out, tds, TOKEN_DONEPROC, status, cur_cmd, rows);
}

pub(crate) fn put_done_in_proc(out: &mut impl BufMut, tds: TdsVersion, status: u16, cur_cmd: u16, rows: u64) {
    put_done_token(out, tds, TOKEN_DONEINPROC, status, cur_cmd, rows);
}

pub(crate) fn put_return_status(out: &mut impl BufMut, status: i32) {
    out.put_u8(TOKEN_RETURNSTATUS);
    out.put_i32_le(status);
}
