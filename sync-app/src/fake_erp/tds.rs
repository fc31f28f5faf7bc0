//! The server side of just enough TDS 7.4 (MS-TDS) for tiberius: packet framing, the PRELOGIN,
//! LOGIN7, SQL batch and RPC requests, and the response tokens.
//!
//! All multi-byte integers are little-endian except the packet header's length and SPID, the
//! PRELOGIN option table and the LOGINACK TDS version, which are big-endian (as in the spec).

use std::io;

use bytes::{BufMut, BytesMut};
use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Packet header size.
pub(crate) const HEADER_LEN: usize = 8;

/// Packet types (MS-TDS 2.2.3.1.1).
pub(crate) const PKT_SQL_BATCH: u8 = 0x01;
pub(crate) const PKT_RPC: u8 = 0x03;
pub(crate) const PKT_REPLY: u8 = 0x04;
pub(crate) const PKT_ATTENTION: u8 = 0x06;
pub(crate) const PKT_LOGIN7: u8 = 0x10;
pub(crate) const PKT_PRELOGIN: u8 = 0x12;

/// Client packet types we recognise (batch, pre-7 login, RPC, attention, bulk load,
/// transaction manager, LOGIN7, SSPI, PRELOGIN).
const KNOWN_PACKET_TYPES: [u8; 9] = [0x01, 0x02, 0x03, 0x06, 0x07, 0x0E, 0x10, 0x11, 0x12];

/// Packet status bits.
const STATUS_NORMAL: u8 = 0x00;
const STATUS_EOM: u8 = 0x01;

/// PRELOGIN `ENCRYPTION` values.
pub(crate) const ENCRYPT_ON: u8 = 0x01;
pub(crate) const ENCRYPT_NOT_SUP: u8 = 0x02;
pub(crate) const ENCRYPT_REQ: u8 = 0x03;

/// Token types.
const TOKEN_COLMETADATA: u8 = 0x81;
const TOKEN_ERROR: u8 = 0xAA;
const TOKEN_LOGINACK: u8 = 0xAD;
const TOKEN_RETURNSTATUS: u8 = 0x79;
const TOKEN_ROW: u8 = 0xD1;
const TOKEN_ENVCHANGE: u8 = 0xE3;
const TOKEN_DONE: u8 = 0xFD;
const TOKEN_DONEPROC: u8 = 0xFE;
const TOKEN_DONEINPROC: u8 = 0xFF;

/// DONE status bits.
pub(crate) const DONE_FINAL: u16 = 0x0000;
pub(crate) const DONE_MORE: u16 = 0x0001;
pub(crate) const DONE_ERROR: u16 = 0x0002;
pub(crate) const DONE_COUNT: u16 = 0x0010;
pub(crate) const DONE_ATTN: u16 = 0x0020;

/// DONE `CurCmd` values.
pub(crate) const CMD_SELECT: u16 = 0x00C1;
pub(crate) const CMD_EXECUTE: u16 = 0x00E0;

/// ENVCHANGE types.
const ENV_DATABASE: u8 = 1;
const ENV_PACKET_SIZE: u8 = 4;

/// TDS 7.4 as sent in LOGINACK (big-endian on the wire).
const TDS_74: u32 = 0x7400_0004;

/// Packet sizes a server may negotiate (tiberius rejects anything outside).
pub(crate) const MIN_PACKET_SIZE: usize = 512;
pub(crate) const MAX_PACKET_SIZE: usize = 32_767;
pub(crate) const DEFAULT_PACKET_SIZE: usize = 4096;

/// Largest client message we accept (a request, not a result).
const MAX_MESSAGE_LEN: usize = 16 * 1024 * 1024;

/// `SQL_Latin1_General_CP1_CI_AS`, the default collation of an English SQL Server.
pub(crate) const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

// ---------------------------------------------------------------------------------------------
// Reading client messages.

/// A complete client message: the payloads of all its packets up to end-of-message.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) ty: u8,
    pub(crate) payload: BytesMut,
}

/// Reads one message; `Ok(None)` when the client closed the connection between messages.
pub(crate) async fn read_message<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Message>> {
    let mut payload = BytesMut::new();
    let mut ty = None;
    loop {
        let mut header = [0u8; HEADER_LEN];
        let mut filled = 0;
        while filled < HEADER_LEN {
            let n = reader.read(&mut header[filled..]).await?;
            if n == 0 {
                return if filled == 0 && ty.is_none() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed mid-message",
                    ))
                };
            }
            filled += n;
        }
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if len < HEADER_LEN {
            return Err(invalid(format!("packet length {len} is shorter than its header")));
        }
        match ty {
            // Reject garbage (e.g. a raw TLS ClientHello from `encrypt=strict`) before trying
            // to read a bogus length, which could block until the client gives up.
            None if !KNOWN_PACKET_TYPES.contains(&header[0]) => {
                return Err(invalid(format!("not a TDS packet (type {:#04x})", header[0])));
            }
            None => ty = Some(header[0]),
            Some(t) if t != header[0] => {
                return Err(invalid(format!(
                    "packet type changed from {t:#04x} to {:#04x}",
                    header[0]
                )));
            }
            Some(_) => {}
        }
        if payload.len() + len > MAX_MESSAGE_LEN {
            return Err(invalid("client message too large"));
        }
        let start = payload.len();
        payload.resize(start + len - HEADER_LEN, 0);
        reader.read_exact(&mut payload[start..]).await?;
        if header[1] & STATUS_EOM != 0 {
            return Ok(Some(Message {
                ty: header[0],
                payload,
            }));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing server messages.

/// Frames a server message into packets of at most the negotiated size.
///
/// Tokens are appended with [`put`](Self::put); the writer cuts packets as it goes and keeps
/// everything in one reusable buffer. A packet is only closed when more data arrives, so the
/// final packet of a message can always be marked end-of-message. Only whole packets are ever
/// written to the socket.
#[derive(Debug)]
pub(crate) struct PacketWriter {
    buf: BytesMut,
    packet_size: usize,
    /// Offset in `buf` of the header of the packet being filled.
    start: usize,
    packet_id: u8,
    spid: u16,
    open: bool,
}

impl PacketWriter {
    pub(crate) fn new(packet_size: usize, spid: u16) -> Self {
        PacketWriter {
            buf: BytesMut::with_capacity(64 * 1024 + 2 * MAX_PACKET_SIZE),
            packet_size: packet_size.clamp(MIN_PACKET_SIZE, MAX_PACKET_SIZE),
            start: 0,
            packet_id: 1,
            spid,
            open: false,
        }
    }

    pub(crate) fn set_packet_size(&mut self, packet_size: usize) {
        self.packet_size = packet_size.clamp(MIN_PACKET_SIZE, MAX_PACKET_SIZE);
    }

    /// Bytes buffered and not yet written.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn open_packet(&mut self) {
        self.start = self.buf.len();
        self.buf.put_bytes(0, HEADER_LEN);
        self.open = true;
    }

    fn close_packet(&mut self, status: u8) {
        let len = self.buf.len() - self.start;
        debug_assert!(len <= self.packet_size);
        let header = &mut self.buf[self.start..self.start + HEADER_LEN];
        header[0] = PKT_REPLY;
        header[1] = status;
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        header[4..6].copy_from_slice(&self.spid.to_be_bytes());
        header[6] = self.packet_id;
        header[7] = 0;
        self.packet_id = self.packet_id.wrapping_add(1);
        self.open = false;
    }

    /// Appends message bytes, starting new packets as needed.
    pub(crate) fn put(&mut self, mut data: &[u8]) {
        if !self.open {
            self.open_packet();
        }
        while !data.is_empty() {
            let room = self.packet_size - (self.buf.len() - self.start);
            if room == 0 {
                self.close_packet(STATUS_NORMAL);
                self.open_packet();
                continue;
            }
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
    }

    /// Writes the packets that are already complete, keeping the one being filled.
    pub(crate) async fn write_full_packets<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        let complete = if self.open { self.start } else { self.buf.len() };
        if complete == 0 {
            return Ok(());
        }
        w.write_all(&self.buf[..complete]).await?;
        let tail = self.buf.len() - complete;
        self.buf.copy_within(complete.., 0);
        self.buf.truncate(tail);
        self.start = 0;
        Ok(())
    }

    /// Closes the message (last packet marked end-of-message) and writes everything.
    pub(crate) async fn end_message<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        if !self.open {
            self.open_packet();
        }
        self.close_packet(STATUS_EOM);
        self.write_all_buffered(w).await
    }

    /// Writes everything sent so far *without* ending the message (the last packet is a
    /// normal one), for failure modes that stop mid-result.
    pub(crate) async fn flush_unfinished<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        if self.open && self.buf.len() > self.start + HEADER_LEN {
            self.close_packet(STATUS_NORMAL);
        } else if self.open {
            self.buf.truncate(self.start);
            self.open = false;
        }
        self.write_all_buffered(w).await
    }

    async fn write_all_buffered<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(&self.buf).await?;
        w.flush().await?;
        self.buf.clear();
        self.start = 0;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// PRELOGIN.

/// What the client said in its PRELOGIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prelogin {
    pub(crate) encryption: u8,
}

pub(crate) fn parse_prelogin(payload: &[u8]) -> io::Result<Prelogin> {
    let mut pos = 0;
    let mut encryption = ENCRYPT_NOT_SUP;
    loop {
        let token = *payload
            .get(pos)
            .ok_or_else(|| invalid("PRELOGIN option table is not terminated"))?;
        if token == 0xFF {
            break;
        }
        let entry = payload
            .get(pos + 1..pos + 5)
            .ok_or_else(|| invalid("truncated PRELOGIN option"))?;
        let offset = usize::from(u16::from_be_bytes([entry[0], entry[1]]));
        let length = usize::from(u16::from_be_bytes([entry[2], entry[3]]));
        if token == 0x01 && length >= 1 {
            encryption = *payload
                .get(offset)
                .ok_or_else(|| invalid("PRELOGIN ENCRYPTION out of range"))?;
        }
        pos += 5;
    }
    Ok(Prelogin { encryption })
}

/// The PRELOGIN answer: version 16.0, the given encryption, no instance, no MARS.
pub(crate) fn prelogin_response(encryption: u8) -> Vec<u8> {
    // (token, data)
    let options: [(u8, &[u8]); 5] = [
        (0x00, &[16, 0, 0x10, 0x27, 0, 0]), // VERSION: 16.0.4135, sub-build 0
        (0x01, &[encryption]),              // ENCRYPTION
        (0x02, &[0]),                       // INSTOPT: instance accepted
        (0x03, &[]),                        // THREADID: empty from a server
        (0x04, &[0]),                       // MARS off
    ];
    let mut out = Vec::with_capacity(64);
    let mut offset = options.len() * 5 + 1;
    for (token, data) in options {
        out.push(token);
        out.extend_from_slice(&(offset as u16).to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        offset += data.len();
    }
    out.push(0xFF);
    for (_, data) in options {
        out.extend_from_slice(data);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// LOGIN7.

/// The parts of LOGIN7 we use. The password is deliberately not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Login7 {
    pub(crate) tds_version: u32,
    pub(crate) packet_size: u32,
    pub(crate) hostname: String,
    pub(crate) user: String,
    pub(crate) app_name: String,
    pub(crate) database: String,
}

fn u16_le(b: &[u8], at: usize) -> io::Result<u16> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| invalid("truncated message"))
}

fn u32_le(b: &[u8], at: usize) -> io::Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| invalid("truncated message"))
}

fn utf16le(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

pub(crate) fn parse_login7(p: &[u8]) -> io::Result<Login7> {
    if p.len() < 94 {
        return Err(invalid(format!("LOGIN7 is too short ({} bytes)", p.len())));
    }
    // OffsetLength table: (offset, length in characters), offsets from the start of LOGIN7.
    let string_at = |table_pos: usize| -> io::Result<String> {
        let offset = usize::from(u16_le(p, table_pos)?);
        let chars = usize::from(u16_le(p, table_pos + 2)?);
        let bytes = p
            .get(offset..offset + 2 * chars)
            .ok_or_else(|| invalid("LOGIN7 string out of range"))?;
        Ok(utf16le(bytes))
    };
    Ok(Login7 {
        tds_version: u32_le(p, 4)?,
        packet_size: u32_le(p, 8)?,
        hostname: string_at(36)?,
        user: string_at(40)?,
        // 44: password (obfuscated) -- never decoded
        app_name: string_at(48)?,
        database: string_at(68)?,
    })
}

// ---------------------------------------------------------------------------------------------
// SQL batch and RPC.

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
        match u32_le(p, pos) {
            Ok(len) if len >= 6 && pos + len as usize <= total => pos += len as usize,
            _ => return p,
        }
    }
    &p[total..]
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
        match self {
            RpcProc::Id(10) => f.write_str("sp_executesql"),
            RpcProc::Id(id) => write!(f, "procedure #{id}"),
            RpcProc::Name(name) => f.write_str(name),
        }
    }
}

/// An RPC request: the procedure and, if it is a string, its first parameter (for
/// `sp_executesql` the statement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RpcRequest {
    pub(crate) proc: RpcProc,
    pub(crate) first_string_param: Option<String>,
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
        let bytes = p
            .get(pos..pos + 2 * usize::from(name_len))
            .ok_or_else(|| invalid("truncated RPC procedure name"))?;
        pos += bytes.len();
        RpcProc::Name(utf16le(bytes))
    };
    pos += 2; // option flags
    if pos >= p.len() {
        return Ok(RpcRequest {
            proc,
            first_string_param: None,
        });
    }
    // First parameter: B_VARCHAR name, status flags, TYPE_INFO, value.
    let name_chars = usize::from(*p.get(pos).ok_or_else(|| invalid("truncated RPC parameter"))?);
    pos += 1 + 2 * name_chars + 1;
    let ty = *p
        .get(pos)
        .ok_or_else(|| invalid("truncated RPC parameter type"))?;
    pos += 1;
    let first_string_param = match ty {
        // NVARCHAR / NCHAR: USHORT max length, 5-byte collation, then the value.
        0xE7 | 0xEF => {
            let max_len = u16_le(p, pos)?;
            pos += 2 + 5;
            if max_len == 0xFFFF {
                read_plp(p, pos)?.map(|b| utf16le(&b))
            } else {
                let len = u16_le(p, pos)?;
                pos += 2;
                if len == 0xFFFF {
                    None
                } else {
                    let bytes = p
                        .get(pos..pos + usize::from(len))
                        .ok_or_else(|| invalid("truncated RPC string parameter"))?;
                    Some(utf16le(bytes))
                }
            }
        }
        _ => None,
    };
    Ok(RpcRequest {
        proc,
        first_string_param,
    })
}

/// A PLP (partially length-prefixed) value starting at `pos`: `None` for PLP NULL.
fn read_plp(p: &[u8], mut pos: usize) -> io::Result<Option<Vec<u8>>> {
    let total = p
        .get(pos..pos + 8)
        .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
        .ok_or_else(|| invalid("truncated PLP length"))?;
    pos += 8;
    if total == u64::MAX {
        return Ok(None);
    }
    let mut out = Vec::new();
    loop {
        let chunk = u32_le(p, pos)? as usize;
        pos += 4;
        if chunk == 0 {
            return Ok(Some(out));
        }
        let bytes = p
            .get(pos..pos + chunk)
            .ok_or_else(|| invalid("truncated PLP chunk"))?;
        out.extend_from_slice(bytes);
        pos += chunk;
    }
}

// ---------------------------------------------------------------------------------------------
// Response tokens.

fn put_b_varchar(out: &mut impl BufMut, s: &str) {
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

pub(crate) fn put_loginack(out: &mut Vec<u8>) {
    put_length_prefixed(out, TOKEN_LOGINACK, |b| {
        b.push(1); // interface: SQL_TSQL
        b.extend_from_slice(&TDS_74.to_be_bytes());
        put_b_varchar(b, "Microsoft SQL Server");
        b.extend_from_slice(&[16, 0, 0x10, 0x27]); // 16.0.4135
    });
}

pub(crate) fn put_envchange(out: &mut Vec<u8>, ty: u8, new: &str, old: &str) {
    put_length_prefixed(out, TOKEN_ENVCHANGE, |b| {
        b.push(ty);
        put_b_varchar(b, new);
        put_b_varchar(b, old);
    });
}

pub(crate) fn put_envchange_database(out: &mut Vec<u8>, new: &str) {
    put_envchange(out, ENV_DATABASE, new, "master");
}

pub(crate) fn put_envchange_packet_size(out: &mut Vec<u8>, new: usize) {
    put_envchange(
        out,
        ENV_PACKET_SIZE,
        &new.to_string(),
        &DEFAULT_PACKET_SIZE.to_string(),
    );
}

/// An ERROR token (severity `class`, state 1, line 1).
pub(crate) fn put_error(out: &mut Vec<u8>, number: u32, class: u8, message: &str) {
    put_length_prefixed(out, TOKEN_ERROR, |b| {
        b.extend_from_slice(&number.to_le_bytes());
        b.push(1); // state
        b.push(class);
        put_us_varchar(b, message);
        put_b_varchar(b, "FAKEERP");
        put_b_varchar(b, "");
        b.extend_from_slice(&1u32.to_le_bytes());
    });
}

fn put_done_token(out: &mut impl BufMut, token: u8, status: u16, cur_cmd: u16, rows: u64) {
    out.put_u8(token);
    out.put_u16_le(status);
    out.put_u16_le(cur_cmd);
    out.put_u64_le(rows);
}

pub(crate) fn put_done(out: &mut impl BufMut, status: u16, cur_cmd: u16, rows: u64) {
    put_done_token(out, TOKEN_DONE, status, cur_cmd, rows);
}

pub(crate) fn put_done_proc(out: &mut impl BufMut, status: u16, cur_cmd: u16, rows: u64) {
    put_done_token(out, TOKEN_DONEPROC, status, cur_cmd, rows);
}

pub(crate) fn put_done_in_proc(out: &mut impl BufMut, status: u16, cur_cmd: u16, rows: u64) {
    put_done_token(out, TOKEN_DONEINPROC, status, cur_cmd, rows);
}

pub(crate) fn put_return_status(out: &mut impl BufMut, status: i32) {
    out.put_u8(TOKEN_RETURNSTATUS);
    out.put_i32_le(status);
}

// ---------------------------------------------------------------------------------------------
// Column metadata and values.

/// A column's SQL type, as far as the fake ERP needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColType {
    /// `int` (INTN, 4).
    Int,
    /// `bigint` (INTN, 8).
    BigInt,
    /// `bit` (BITN).
    Bit,
    /// `date` (DATEN).
    Date,
    /// `datetime2(scale)` (DATETIME2N).
    DateTime2 { scale: u8 },
    /// `decimal(precision, scale)` (DECIMALN).
    Decimal { precision: u8, scale: u8 },
    /// `nvarchar(chars)` (NVARCHAR, max length in bytes = 2 * chars).
    NVarChar { chars: u16 },
}

/// One column of a COLMETADATA token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Column<'a> {
    pub(crate) name: &'a str,
    pub(crate) ty: ColType,
    pub(crate) nullable: bool,
}

/// Byte length of a DECIMALN value (sign byte + magnitude) for a precision.
pub(crate) fn decimal_len(precision: u8) -> u8 {
    match precision {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

pub(crate) fn put_colmetadata(out: &mut Vec<u8>, columns: &[Column<'_>]) {
    out.push(TOKEN_COLMETADATA);
    out.put_u16_le(columns.len() as u16);
    for col in columns {
        out.put_u32_le(0); // user type
        out.put_u16_le(u16::from(col.nullable)); // flags: fNullable
        match col.ty {
            ColType::Int => out.extend_from_slice(&[0x26, 4]),
            ColType::BigInt => out.extend_from_slice(&[0x26, 8]),
            ColType::Bit => out.extend_from_slice(&[0x68, 1]),
            ColType::Date => out.push(0x28),
            ColType::DateTime2 { scale } => out.extend_from_slice(&[0x2A, scale]),
            ColType::Decimal { precision, scale } => {
                out.extend_from_slice(&[0x6A, decimal_len(precision), precision, scale])
            }
            ColType::NVarChar { chars } => {
                out.push(0xE7);
                out.put_u16_le(chars * 2);
                out.extend_from_slice(&COLLATION);
            }
        }
        put_b_varchar(out, col.name);
    }
}

/// Starts a ROW token.
#[inline]
pub(crate) fn put_row_token(out: &mut Vec<u8>) {
    out.push(TOKEN_ROW);
}

/// NULL for a column with a one-byte length prefix (INTN, BITN, DATEN, DECIMALN, DATETIME2N).
#[inline]
pub(crate) fn put_null(out: &mut Vec<u8>) {
    out.push(0);
}

#[inline]
pub(crate) fn put_int(out: &mut Vec<u8>, v: i32) {
    out.push(4);
    out.extend_from_slice(&v.to_le_bytes());
}

#[inline]
pub(crate) fn put_bigint(out: &mut Vec<u8>, v: i64) {
    out.push(8);
    out.extend_from_slice(&v.to_le_bytes());
}

#[inline]
pub(crate) fn put_bit(out: &mut Vec<u8>, v: bool) {
    out.extend_from_slice(&[1, u8::from(v)]);
}

/// Days since 0001-01-01 as the 3 bytes of a DATE.
#[inline]
fn date_bytes(d: NaiveDate) -> [u8; 3] {
    let days = (d.num_days_from_ce() - 1) as u32;
    let b = days.to_le_bytes();
    [b[0], b[1], b[2]]
}

#[inline]
pub(crate) fn put_date(out: &mut Vec<u8>, d: NaiveDate) {
    out.push(3);
    out.extend_from_slice(&date_bytes(d));
}

/// DATETIME2N of the given scale (0..=7): time in 10^-scale s units, then the date.
#[inline]
pub(crate) fn put_datetime2(out: &mut Vec<u8>, dt: NaiveDateTime, scale: u8) {
    let time_len: usize = match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    };
    let t = dt.time();
    let nanos = u64::from(t.nanosecond().min(999_999_999));
    let per_unit = 10u64.pow(9 - u32::from(scale.min(7)));
    let increments =
        u64::from(t.num_seconds_from_midnight()) * 10u64.pow(u32::from(scale.min(7))) + nanos / per_unit;
    out.push((time_len + 3) as u8);
    out.extend_from_slice(&increments.to_le_bytes()[..time_len]);
    out.extend_from_slice(&date_bytes(dt.date()));
}

/// DECIMALN with the byte length of `precision`; `mantissa` is the value times 10^scale.
#[inline]
pub(crate) fn put_decimal(out: &mut Vec<u8>, precision: u8, mantissa: i128) {
    let len = decimal_len(precision);
    out.push(len);
    out.push(u8::from(mantissa >= 0));
    out.extend_from_slice(&mantissa.unsigned_abs().to_le_bytes()[..usize::from(len - 1)]);
}

/// An NVARCHAR value from its UTF-16LE bytes.
#[inline]
pub(crate) fn put_nvarchar_ucs2(out: &mut Vec<u8>, ucs2: &[u8]) {
    out.extend_from_slice(&(ucs2.len() as u16).to_le_bytes());
    out.extend_from_slice(ucs2);
}

/// An NVARCHAR value from ASCII text.
#[inline]
pub(crate) fn put_nvarchar_ascii(out: &mut Vec<u8>, ascii: &[u8]) {
    out.extend_from_slice(&((ascii.len() * 2) as u16).to_le_bytes());
    for &b in ascii {
        out.extend_from_slice(&[b, 0]);
    }
}

/// NULL for a (non-max) NVARCHAR.
#[inline]
pub(crate) fn put_nvarchar_null(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xFF, 0xFF]);
}

/// UTF-16LE bytes of a string.
pub(crate) fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a written byte stream into (status, packet length, payload) triples.
    fn packets(bytes: &[u8]) -> Vec<(u8, usize, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            assert_eq!(bytes[pos], PKT_REPLY);
            let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
            assert!(len >= HEADER_LEN);
            out.push((bytes[pos + 1], len, bytes[pos + HEADER_LEN..pos + len].to_vec()));
            pos += len;
        }
        assert_eq!(pos, bytes.len(), "trailing partial packet");
        out
    }

    #[tokio::test]
    async fn packets_never_exceed_the_negotiated_size_and_only_the_last_is_eom() {
        for packet_size in [512usize, 4096, 8000, 32_767] {
            let mut w = PacketWriter::new(packet_size, 51);
            let mut sink: Vec<u8> = Vec::new();
            let mut expected = Vec::new();
            // rows of varying sizes, some larger than a packet, flushed periodically
            for i in 0..5_000usize {
                let row: Vec<u8> = (0..(i * 37) % 1500).map(|b| (b ^ i) as u8).collect();
                w.put(&row);
                expected.extend_from_slice(&row);
                if w.buffered() > 20_000 {
                    w.write_full_packets(&mut sink).await.unwrap();
                }
            }
            w.end_message(&mut sink).await.unwrap();

            let packets = packets(&sink);
            assert!(packets.len() > 10);
            let (last, rest) = packets.split_last().unwrap();
            assert_eq!(last.0, STATUS_EOM);
            for (status, len, _) in rest {
                assert_eq!(*status, STATUS_NORMAL);
                assert_eq!(*len, packet_size, "non-final packets are full");
            }
            assert!(last.1 <= packet_size);
            let payload: Vec<u8> = packets.iter().flat_map(|p| p.2.clone()).collect();
            assert_eq!(payload, expected);
        }
    }

    #[tokio::test]
    async fn an_empty_or_exactly_full_message_still_ends_with_eom() {
        let mut w = PacketWriter::new(512, 1);
        let mut sink = Vec::new();
        w.end_message(&mut sink).await.unwrap();
        assert_eq!(packets(&sink), vec![(STATUS_EOM, HEADER_LEN, vec![])]);

        let mut sink = Vec::new();
        w.put(&[7; 512 - HEADER_LEN]);
        w.end_message(&mut sink).await.unwrap();
        let p = packets(&sink);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].0, p[0].1), (STATUS_EOM, 512));
    }

    #[tokio::test]
    async fn unfinished_messages_have_no_eom() {
        let mut w = PacketWriter::new(512, 1);
        let mut sink = Vec::new();
        w.put(&[1; 1000]);
        w.flush_unfinished(&mut sink).await.unwrap();
        let p = packets(&sink);
        assert_eq!(p.len(), 2);
        assert!(
            p.iter()
                .all(|(status, len, _)| *status == STATUS_NORMAL && *len <= 512)
        );
    }

    #[test]
    fn prelogin_round_trip() {
        let response = prelogin_response(ENCRYPT_NOT_SUP);
        assert_eq!(parse_prelogin(&response).unwrap().encryption, ENCRYPT_NOT_SUP);
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
    fn value_encodings() {
        let mut out = Vec::new();
        put_decimal(&mut out, 18, -125_000);
        assert_eq!(out, [9, 0, 0x48, 0xE8, 0x01, 0, 0, 0, 0, 0]);

        out.clear();
        put_decimal(&mut out, 38, 10i128.pow(34));
        assert_eq!(out.len(), 18);
        assert_eq!(u128::from_le_bytes(out[2..].try_into().unwrap()), 10u128.pow(34));

        out.clear();
        put_date(&mut out, NaiveDate::from_ymd_opt(1, 1, 2).unwrap());
        assert_eq!(out, [3, 1, 0, 0]);

        out.clear();
        let dt = NaiveDate::from_ymd_opt(2025, 1, 1)
            .unwrap()
            .and_hms_milli_opt(0, 0, 1, 500)
            .unwrap();
        put_datetime2(&mut out, dt, 3);
        assert_eq!(out[0], 7);
        assert_eq!(u32::from_le_bytes(out[1..5].try_into().unwrap()), 1500);
    }
}
