//! fake-mssql driven by a raw TDS client (plain TCP, ENCRYPT_NOT_SUP) for what tiberius cannot
//! express: TDS 7.1 / 7.2 / 7.3 logins, exact token bytes, ATTENTION mid-result,
//! transaction-manager packets, RPCs by name, and the PRELOGIN encryption table.

mod common;

use common::*;
use fake_mssql::{Encryption, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V7_1: u32 = 0x7100_0001;
const V7_2: u32 = 0x7209_0002;
const V7_3B: u32 = 0x730B_0003;
const V7_4: u32 = 0x7400_0004;

const NOT_SUP: u8 = 2;

struct Raw {
    tcp: TcpStream,
    packet_size: usize,
}

impl Raw {
    async fn connect(server: &fake_mssql::ServerHandle) -> Raw {
        Raw {
            tcp: TcpStream::connect(server.local_addr()).await.unwrap(),
            packet_size: 4096,
        }
    }

    async fn send(&mut self, ty: u8, payload: &[u8]) {
        let max = self.packet_size - 8;
        let chunks: Vec<&[u8]> = if payload.is_empty() {
            vec![&[][..]]
        } else {
            payload.chunks(max).collect()
        };
        let mut out = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let eom = u8::from(i + 1 == chunks.len());
            out.extend_from_slice(&[ty, eom]);
            out.extend_from_slice(&((chunk.len() + 8) as u16).to_be_bytes());
            out.extend_from_slice(&[0, 0, (i + 1) as u8, 0]);
            out.extend_from_slice(chunk);
        }
        self.tcp.write_all(&out).await.unwrap();
    }

    /// One packet: (status, payload); `None` at EOF.
    async fn packet(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut header = [0u8; 8];
        if self.tcp.read_exact(&mut header).await.is_err() {
            return None;
        }
        assert_eq!(header[0], 0x04, "a server packet is a REPLY");
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        assert!(
            len <= self.packet_size,
            "packet of {len} bytes, negotiated {}",
            self.packet_size
        );
        let mut payload = vec![0u8; len - 8];
        self.tcp.read_exact(&mut payload).await.ok()?;
        Some((header[1], payload))
    }

    /// A whole message; `None` if the connection closed first.
    async fn recv(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let (status, payload) = self.packet().await?;
            out.extend_from_slice(&payload);
            if status & 1 != 0 {
                return Some(out);
            }
        }
    }

    async fn batch(&mut self, sql: &str, headers: bool) -> Vec<u8> {
        let mut p = if headers { all_headers() } else { Vec::new() };
        p.extend(ucs2(sql));
        self.send(0x01, &p).await;
        self.recv().await.expect("a response")
    }
}

fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn all_headers() -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&22u32.to_le_bytes());
    p.extend_from_slice(&18u32.to_le_bytes());
    p.extend_from_slice(&2u16.to_le_bytes());
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(&1u32.to_le_bytes());
    p
}

fn prelogin(encryption: u8) -> Vec<u8> {
    // VERSION(6), ENCRYPTION(1), INSTOPT(1), THREADID(4), MARS(1), terminator.
    let opts: [(u8, &[u8]); 5] = [
        (0, &[9, 0, 0, 0, 0, 0]),
        (1, &[encryption]),
        (2, &[0]),
        (3, &[0, 0, 0, 1]),
        (4, &[0]),
    ];
    let mut head = Vec::new();
    let mut data = Vec::new();
    let base = opts.len() * 5 + 1;
    for (token, value) in opts {
        head.push(token);
        head.extend_from_slice(&((base + data.len()) as u16).to_be_bytes());
        head.extend_from_slice(&(value.len() as u16).to_be_bytes());
        data.extend_from_slice(value);
    }
    head.push(0xFF);
    head.extend(data);
    head
}

/// The ENCRYPTION option of a PRELOGIN response.
fn prelogin_encryption(p: &[u8]) -> u8 {
    let mut pos = 0;
    while p[pos] != 0xFF {
        if p[pos] == 1 {
            let offset = usize::from(u16::from_be_bytes([p[pos + 1], p[pos + 2]]));
            return p[offset];
        }
        pos += 5;
    }
    panic!("no ENCRYPTION option")
}

fn login7(version: u32, packet_size: u32, user: &str, password: &str, database: &str) -> Vec<u8> {
    let scramble = |s: &str| -> Vec<u8> { ucs2(s).into_iter().map(|b| b.rotate_left(4) ^ 0xA5).collect() };
    // hostname, user, password, app, server, (extension), library, language, database
    let fields: Vec<(Vec<u8>, usize)> = vec![
        (ucs2("rawhost"), 7),
        (ucs2(user), user.encode_utf16().count()),
        (scramble(password), password.encode_utf16().count()),
        (ucs2("raw-test"), 8),
        (ucs2("127.0.0.1"), 9),
        (Vec::new(), 0),
        (ucs2("raw"), 3),
        (Vec::new(), 0),
        (ucs2(database), database.encode_utf16().count()),
    ];
    let mut fixed = Vec::new();
    fixed.extend_from_slice(&0u32.to_le_bytes()); // length, patched below
    fixed.extend_from_slice(&version.to_le_bytes());
    fixed.extend_from_slice(&packet_size.to_le_bytes());
    fixed.extend_from_slice(&7u32.to_le_bytes()); // client prog version
    fixed.extend_from_slice(&1234u32.to_le_bytes()); // pid
    fixed.extend_from_slice(&0u32.to_le_bytes()); // connection id
    fixed.extend_from_slice(&[0xE0, 0x03, 0, 0]); // option flags 1, 2, type flags, flags 3
    fixed.extend_from_slice(&0i32.to_le_bytes()); // time zone
    fixed.extend_from_slice(&0x0409u32.to_le_bytes()); // LCID
    let mut data = Vec::new();
    let data_start = 94;
    for (bytes, chars) in &fields {
        fixed.extend_from_slice(&((data_start + data.len()) as u16).to_le_bytes());
        fixed.extend_from_slice(&(*chars as u16).to_le_bytes());
        data.extend_from_slice(bytes);
    }
    fixed.extend_from_slice(&[0; 6]); // client id
    for _ in 0..3 {
        // SSPI, attach db file, change password
        fixed.extend_from_slice(&((data_start + data.len()) as u16).to_le_bytes());
        fixed.extend_from_slice(&0u16.to_le_bytes());
    }
    fixed.extend_from_slice(&0u32.to_le_bytes()); // SSPI long
    assert_eq!(fixed.len(), 94);
    fixed.extend(data);
    let len = fixed.len() as u32;
    fixed[..4].copy_from_slice(&len.to_le_bytes());
    fixed
}

async fn login_with(
    server: &fake_mssql::ServerHandle,
    version: u32,
    packet_size: u32,
    user: &str,
    password: &str,
    database: &str,
) -> (Raw, Option<Vec<u8>>) {
    let mut raw = Raw::connect(server).await;
    raw.send(0x12, &prelogin(NOT_SUP)).await;
    let pre = raw.recv().await.expect("PRELOGIN response");
    assert_eq!(prelogin_encryption(&pre), NOT_SUP);
    raw.send(0x10, &login7(version, packet_size, user, password, database))
        .await;
    let response = raw.recv().await;
    (raw, response)
}

async fn login(server: &fake_mssql::ServerHandle, version: u32) -> (Raw, Vec<Tok>) {
    let (mut raw, response) = login_with(server, version, 4096, "sync", "sync", "").await;
    let toks = tokens(&response.expect("a login response"), version);
    let size = toks.iter().find_map(|t| match t {
        Tok::Env { ty: 4, new, .. } => Some(String::from_utf16_lossy(&utf16(new)).parse::<usize>().unwrap()),
        _ => None,
    });
    raw.packet_size = size.expect("a packet size ENVCHANGE");
    (raw, toks)
}

fn utf16(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LoginAck {
        tds: u32,
    },
    Env {
        ty: u8,
        new: Vec<u8>,
        old: Vec<u8>,
    },
    Error {
        number: u32,
        state: u8,
        class: u8,
        message: String,
    },
    Info {
        number: u32,
    },
    FeatureExtAck,
    ReturnStatus(i32),
    Done {
        token: u8,
        status: u16,
        cmd: u16,
        rows: u64,
    },
}

/// Parses a response without result sets, checking every token's length.
fn tokens(p: &[u8], tds: u32) -> Vec<Tok> {
    let wide = tds >= V7_2;
    let mut out = Vec::new();
    let mut pos = 0;
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([p[at], p[at + 1]]));
    while pos < p.len() {
        let t = p[pos];
        match t {
            0xAD | 0xE3 | 0xAA | 0xAB => {
                let len = u16_at(pos + 1);
                let b = &p[pos + 3..pos + 3 + len];
                pos += 3 + len;
                out.push(match t {
                    0xAD => Tok::LoginAck {
                        tds: u32::from_be_bytes([b[1], b[2], b[3], b[4]]),
                    },
                    0xE3 => {
                        let ty = b[0];
                        let unit = if matches!(ty, 1..=6) { 2 } else { 1 };
                        let n = usize::from(b[1]) * unit;
                        let new = b[2..2 + n].to_vec();
                        let m = usize::from(b[2 + n]) * unit;
                        let old = b[3 + n..3 + n + m].to_vec();
                        assert_eq!(3 + n + m, len, "ENVCHANGE {ty} length");
                        Tok::Env { ty, new, old }
                    }
                    _ => {
                        let number = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        let mlen = usize::from(u16::from_le_bytes([b[6], b[7]])) * 2;
                        let message = String::from_utf16_lossy(&utf16(&b[8..8 + mlen]));
                        let mut at = 8 + mlen;
                        at += 1 + usize::from(b[at]) * 2; // server
                        at += 1 + usize::from(b[at]) * 2; // procedure
                        assert_eq!(
                            len - at,
                            if wide { 4 } else { 2 },
                            "line number size for TDS {tds:#x}"
                        );
                        if t == 0xAA {
                            Tok::Error {
                                number,
                                state: b[4],
                                class: b[5],
                                message,
                            }
                        } else {
                            Tok::Info { number }
                        }
                    }
                });
            }
            0xAE => {
                pos += 1;
                while p[pos] != 0xFF {
                    let len = u32::from_le_bytes([p[pos + 1], p[pos + 2], p[pos + 3], p[pos + 4]]) as usize;
                    pos += 5 + len;
                }
                pos += 1;
                out.push(Tok::FeatureExtAck);
            }
            0x79 => {
                out.push(Tok::ReturnStatus(i32::from_le_bytes([
                    p[pos + 1],
                    p[pos + 2],
                    p[pos + 3],
                    p[pos + 4],
                ])));
                pos += 5;
            }
            0xFD..=0xFF => {
                let status = u16_at(pos + 1) as u16;
                let cmd = u16_at(pos + 3) as u16;
                let rows = if wide {
                    u64::from_le_bytes(p[pos + 5..pos + 13].try_into().unwrap())
                } else {
                    u64::from(u32::from_le_bytes(p[pos + 5..pos + 9].try_into().unwrap()))
                };
                pos += if wide { 13 } else { 9 };
                out.push(Tok::Done {
                    token: t,
                    status,
                    cmd,
                    rows,
                });
            }
            other => panic!("unexpected token {other:#04x} at {pos} in {p:02x?}"),
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn b_varchar(s: &str) -> Vec<u8> {
    let mut v = vec![s.encode_utf16().count() as u8];
    v.extend(ucs2(s));
    v
}

const CP1252_COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];
const UTF8_COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x24, 0x00];

/// COLMETADATA bytes of one column (TDS 7.2+: 4-byte user type).
fn col(flags: u16, type_info: &[u8], name: &str) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 0];
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(type_info);
    v.extend(b_varchar(name));
    v
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn login_tokens_like_sql_server() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let (_raw, toks) = login(&server, V7_4).await;
    let env = |ty: u8, new: &str, old: &str| Tok::Env {
        ty,
        new: ucs2(new),
        old: ucs2(old),
    };
    assert_eq!(toks[0], env(1, "erp", "master"));
    assert_eq!(toks[1], Tok::Info { number: 5701 });
    assert_eq!(
        toks[2],
        Tok::Env {
            ty: 7,
            new: CP1252_COLLATION.to_vec(),
            old: vec![]
        }
    );
    assert_eq!(toks[3], env(2, "us_english", ""));
    assert_eq!(toks[4], Tok::Info { number: 5703 });
    assert_eq!(toks[5], Tok::LoginAck { tds: V7_4 });
    assert_eq!(toks[6], env(4, "4096", "4096"));
    assert_eq!(
        toks[7],
        Tok::Done {
            token: 0xFD,
            status: 0,
            cmd: 0,
            rows: 0
        }
    );
    assert_eq!(toks.len(), 8);
}

#[tokio::test]
async fn loginack_carries_the_negotiated_version() {
    let (server, _) = spawn(ServerConfig::default()).await;
    for (asked, answered) in [
        (V7_1, V7_1),
        (V7_2, V7_2),
        (0x730A_0003, 0x730A_0003),
        (V7_3B, V7_3B),
        (V7_4, V7_4),
        (0x7500_0000, V7_4),
        (0x7000_0000, V7_1),
    ] {
        let (mut raw, toks) = login(&server, asked).await;
        assert!(
            toks.contains(&Tok::LoginAck { tds: answered }),
            "{asked:#x}: {toks:?}"
        );
        // The session works in that version: an error and a DONE with the right sizes.
        let toks = tokens(
            &raw.batch("SELECT * FROM nothing", answered >= V7_2).await,
            answered,
        );
        assert!(
            matches!(
                &toks[0],
                Tok::Error {
                    number: 208,
                    class: 16,
                    ..
                }
            ),
            "{asked:#x}: {toks:?}"
        );
        assert!(
            matches!(toks.last(), Some(Tok::Done { status: 2, .. })),
            "{toks:?}"
        );
    }
}

#[tokio::test]
async fn login_errors_on_the_wire() {
    let (server, _) = spawn(ServerConfig::default()).await;
    for version in [V7_4, V7_1] {
        let (mut raw, response) = login_with(&server, version, 4096, "sync", "sync", "nosuchdb").await;
        let toks = tokens(&response.unwrap(), version);
        assert!(
            matches!(&toks[0], Tok::Error { number: 4060, class: 11, message, .. } if message.contains("nosuchdb")),
            "{toks:?}"
        );
        assert!(
            matches!(&toks[1], Tok::Error { number: 18456, class: 14, message, .. } if message == "Login failed for user 'sync'."),
            "{toks:?}"
        );
        assert!(
            matches!(
                toks[2],
                Tok::Done {
                    token: 0xFD,
                    status: 2,
                    ..
                }
            ),
            "{toks:?}"
        );
        assert!(
            raw.recv().await.is_none(),
            "the connection is closed after a failed login"
        );

        let (mut raw, response) = login_with(&server, version, 4096, "sync", "nope", "").await;
        let toks = tokens(&response.unwrap(), version);
        assert!(
            matches!(
                &toks[0],
                Tok::Error {
                    number: 18456,
                    class: 14,
                    state: 8,
                    ..
                }
            ),
            "{toks:?}"
        );
        assert!(raw.recv().await.is_none());
        let (_, response) = login_with(&server, version, 4096, "nobody", "sync", "").await;
        let toks = tokens(&response.unwrap(), version);
        assert!(
            matches!(
                &toks[0],
                Tok::Error {
                    number: 18456,
                    class: 14,
                    state: 5,
                    ..
                }
            ),
            "{toks:?}"
        );
    }
    assert_eq!(server.stats().logins(), 0);
}

#[tokio::test]
async fn tds71_and_72_get_text_instead_of_date_types() {
    let (server, _) = spawn(ServerConfig::default()).await;
    for version in [V7_1, V7_2] {
        let (mut raw, _) = login(&server, version).await;
        let p = raw.batch("SELECT d FROM dates", version >= V7_2).await;
        let nvarchar = |chars: u16| {
            let mut v = vec![0xE7];
            v.extend_from_slice(&(chars * 2).to_le_bytes());
            v.extend_from_slice(&CP1252_COLLATION);
            v
        };
        let user_type: &[u8] = if version >= V7_2 { &[0, 0, 0, 0] } else { &[0, 0] };
        for (name, chars, text) in [
            ("d", 10, "2024-02-29"),
            ("t", 12, "13:14:15.678"),
            ("dt2", 22, "2024-02-29 13:14:15.68"),
            ("dto", 26, "2024-02-29 13:14:15 +02:00"),
        ] {
            let mut meta = user_type.to_vec();
            meta.extend_from_slice(&[0, 0]);
            meta.extend(nvarchar(chars));
            meta.extend(b_varchar(name));
            assert!(
                contains(&p, &meta),
                "{version:#x}: metadata of {name} in {p:02x?}"
            );
            let mut value = (text.len() as u16 * 2).to_le_bytes().to_vec();
            value.extend(ucs2(text));
            assert!(contains(&p, &value), "{version:#x}: value {text:?}");
        }
        // The DONE at the end has the version's size and counts one row.
        let done_len = if version >= V7_2 { 13 } else { 9 };
        let toks = tokens(&p[p.len() - done_len..], version);
        assert_eq!(
            toks,
            vec![Tok::Done {
                token: 0xFD,
                status: 0x10,
                cmd: 0xC1,
                rows: 1
            }]
        );
    }
}

#[tokio::test]
async fn tds71_gets_ntext_and_text_for_max_columns_and_72_gets_plp() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let (mut raw, _) = login(&server, V7_1).await;
    let p = raw.batch("SELECT doc, ascii FROM huge", false).await;
    let mut ntext = vec![0, 0, 0, 0, 0x63];
    ntext.extend_from_slice(&0x7FFF_FFFEu32.to_le_bytes());
    ntext.extend_from_slice(&CP1252_COLLATION);
    ntext.extend_from_slice(&[0, 0]); // table name (US_VARCHAR in 7.1)
    ntext.extend(b_varchar("doc"));
    assert!(contains(&p, &ntext), "NTEXT metadata");
    let mut text = vec![0, 0, 0, 0, 0x23];
    text.extend_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    text.extend_from_slice(&CP1252_COLLATION);
    text.extend_from_slice(&[0, 0]);
    text.extend(b_varchar("ascii"));
    assert!(contains(&p, &text), "TEXT metadata");
    // The NTEXT value: text pointer (16), timestamp (8), 4-byte length, UTF-16.
    let doc = ucs2(&huge_text());
    let mut value = (doc.len() as u32).to_le_bytes().to_vec();
    value.extend_from_slice(&doc[..64]);
    assert!(contains(&p, &value));
    assert_eq!(
        tokens(&p[p.len() - 9..], V7_1),
        vec![Tok::Done {
            token: 0xFD,
            status: 0x10,
            cmd: 0xC1,
            rows: 1
        }]
    );

    let (mut raw, _) = login(&server, V7_2).await;
    let p = raw.batch("SELECT doc, ascii FROM huge", true).await;
    let mut plp = vec![0xE7, 0xFF, 0xFF];
    plp.extend_from_slice(&CP1252_COLLATION);
    plp.extend(b_varchar("doc"));
    assert!(contains(&p, &plp), "nvarchar(max) as PLP in 7.2");
    // PLP: total length, then chunks.
    assert!(contains(&p, &(doc.len() as u64).to_le_bytes()));
}

#[tokio::test]
async fn tds73_gets_the_date_types() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let (mut raw, _) = login(&server, V7_3B).await;
    let p = raw.batch("SELECT d FROM dates", true).await;
    for meta in [
        col(0, &[0x28], "d"),
        col(0, &[0x29, 3], "t"),
        col(0, &[0x2A, 2], "dt2"),
        col(0, &[0x2B, 0], "dto"),
    ] {
        assert!(contains(&p, &meta), "{meta:02x?} in {p:02x?}");
    }
    let days = (chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
        - chrono::NaiveDate::from_ymd_opt(1, 1, 1).unwrap())
    .num_days() as u32;
    let mut date = vec![0xD1, 3];
    date.extend_from_slice(&days.to_le_bytes()[..3]);
    assert!(contains(&p, &date), "DATE value");
}

#[tokio::test]
async fn not_null_columns_use_fixed_length_types_and_nulls_use_nbcrow() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let (mut raw, _) = login(&server, V7_4).await;
    let fixed = raw.batch("SELECT * FROM types", true).await;
    let nullable = raw.batch("SELECT * FROM ntypes", true).await;
    for (name, fixed_ti, nullable_ti) in [
        ("tiny", &[0x30][..], &[0x26, 1][..]),
        ("small", &[0x34], &[0x26, 2]),
        ("int", &[0x38], &[0x26, 4]),
        ("big", &[0x7F], &[0x26, 8]),
        ("bit", &[0x32], &[0x68, 1]),
        ("money", &[0x3C], &[0x6E, 8]),
        ("smallmoney", &[0x7A], &[0x6E, 4]),
        ("real", &[0x3B], &[0x6D, 4]),
        ("float", &[0x3E], &[0x6D, 8]),
        ("dt_tick", &[0x3D], &[0x6F, 8]),
        ("sdt_up", &[0x3A], &[0x6F, 4]),
        ("guid", &[0x24, 16], &[0x24, 16]),
        ("dec", &[0x6A, 9, 18, 4], &[0x6A, 9, 18, 4]),
    ] {
        assert!(contains(&fixed, &col(0, fixed_ti, name)), "NOT NULL {name}");
        assert!(contains(&nullable, &col(1, nullable_ti, name)), "nullable {name}");
    }
    let mut utf8 = vec![0xA7, 50, 0];
    utf8.extend_from_slice(&UTF8_COLLATION);
    assert!(
        contains(&fixed, &col(0, &utf8, "varchar_utf8")),
        "UTF-8 collation"
    );
    assert!(
        contains(&fixed, &[5, 0, b'G', b'r', 0xC3, 0xBC, 0xC3, 0x9F, b'e'][1..]),
        "UTF-8 bytes"
    );
    assert!(contains(&fixed, b"M\xFCller \x80 \x9C \x8A"), "cp1252 bytes");
    assert!(
        contains(
            &fixed,
            &[10, 0, b'a', b'b', b'c', b' ', b' ', b' ', b' ', b' ', b' ', b' ']
        ),
        "char(10) padding"
    );
    let mut nchar = vec![10, 0];
    nchar.extend(ucs2("ab   "));
    assert!(contains(&fixed, &nchar), "nchar(5) padding");
    // money 1234.5678: high 4 bytes then low 4 bytes of 12345678.
    let m: i64 = 12_345_678;
    let mut money = ((m >> 32) as i32).to_le_bytes().to_vec();
    money.extend_from_slice(&(m as i32).to_le_bytes());
    assert!(contains(&fixed, &money));

    // All NULL: one NBCROW, every bit of the bitmap set, nothing after it but DONE.
    let nulls = raw.batch("SELECT * FROM nulls", true).await;
    let ncols = common::types::columns().len();
    let mut bitmap = vec![0xFFu8; ncols / 8];
    if !ncols.is_multiple_of(8) {
        bitmap.push((1u8 << (ncols % 8)) - 1);
    }
    let mut nbc = vec![0xD2];
    nbc.extend_from_slice(&bitmap);
    nbc.extend_from_slice(&[0xFD]);
    assert!(contains(&nulls, &nbc), "NBCROW {nbc:02x?} in {nulls:02x?}");

    // TDS 7.3A has no NBCROW: a ROW with the NULL markers.
    let (mut raw, _) = login(&server, 0x730A_0003).await;
    let nulls = raw.batch("SELECT * FROM nulls", true).await;
    assert!(
        !nulls.contains(&0xD2) || !contains(&nulls, &nbc),
        "no NBCROW before 7.3B"
    );
    assert!(contains(&nulls, &[0xD1, 0, 0, 0, 0]), "ROW with NULL markers");
}

#[tokio::test]
async fn attention_mid_result_is_acknowledged_with_done_attn() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let (mut raw, _) = login(&server, V7_4).await;
    let mut p = all_headers();
    p.extend(ucs2("SELECT id, name, amount FROM endless"));
    raw.send(0x01, &p).await;
    for _ in 0..20 {
        let (status, _) = raw.packet().await.unwrap();
        assert_eq!(status & 1, 0, "an endless result does not end by itself");
    }
    raw.send(0x06, &[]).await;
    let rest = raw.recv().await.expect("the rest of the cancelled response");
    let done = &rest[rest.len() - 13..];
    assert_eq!(done[0], 0xFD, "{done:02x?}");
    let status = u16::from_le_bytes([done[1], done[2]]);
    assert_ne!(status & 0x20, 0, "DONE_ATTN");
    assert_eq!(status & 0x01, 0, "final DONE");
    // Still usable.
    let p = raw.batch("SELECT 1", true).await;
    assert!(contains(&p, &[0xD1, 1, 0, 0, 0]), "{p:02x?}");
    // ATTENTION while idle: a DONE with DONE_ATTN at once.
    raw.send(0x06, &[]).await;
    let toks = tokens(&raw.recv().await.unwrap(), V7_4);
    assert_eq!(
        toks,
        vec![Tok::Done {
            token: 0xFD,
            status: 0x20,
            cmd: 0,
            rows: 0
        }]
    );
    let toks = tokens(&raw.batch("SET NOCOUNT ON", true).await, V7_4);
    assert_eq!(
        toks,
        vec![Tok::Done {
            token: 0xFD,
            status: 0,
            cmd: 0,
            rows: 0
        }]
    );
}

fn tm(ty: u16, body: &[u8]) -> Vec<u8> {
    let mut p = all_headers();
    p.extend_from_slice(&ty.to_le_bytes());
    p.extend_from_slice(body);
    p
}

#[tokio::test]
async fn transactions_on_the_wire() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let (mut raw, _) = login(&server, V7_4).await;
    // TM_BEGIN_XACT: isolation level, empty name.
    raw.send(0x0E, &tm(5, &[0, 0])).await;
    let toks = tokens(&raw.recv().await.unwrap(), V7_4);
    let Tok::Env { ty: 8, new: id, old } = &toks[0] else {
        panic!("{toks:?}")
    };
    assert_eq!((id.len(), old.len()), (8, 0));
    assert!(matches!(toks[1], Tok::Done { status: 0, .. }));
    // TM_COMMIT_XACT: empty name, no new transaction.
    raw.send(0x0E, &tm(7, &[0, 0])).await;
    let toks = tokens(&raw.recv().await.unwrap(), V7_4);
    assert_eq!(
        toks[0],
        Tok::Env {
            ty: 9,
            new: vec![],
            old: id.clone()
        }
    );
    // TM_ROLLBACK_XACT with fBeginXact: ends nothing, begins a new one.
    raw.send(0x0E, &tm(8, &[0, 1])).await;
    let toks = tokens(&raw.recv().await.unwrap(), V7_4);
    assert!(
        matches!(&toks[0], Tok::Env { ty: 8, new, .. } if new != id),
        "{toks:?}"
    );
    raw.send(0x0E, &tm(8, &[0, 0])).await;
    let toks = tokens(&raw.recv().await.unwrap(), V7_4);
    assert!(
        matches!(&toks[0], Tok::Env { ty: 10, new, old } if new.is_empty() && old.len() == 8),
        "{toks:?}"
    );
    // An unsupported TM request (TM_PROMOTE_XACT) is an error, not a disconnect.
    raw.send(0x0E, &tm(6, &[])).await;
    let toks = tokens(&raw.recv().await.unwrap(), V7_4);
    assert!(matches!(&toks[0], Tok::Error { number: 8525, .. }), "{toks:?}");

    // The same through SQL text.
    let toks = tokens(&raw.batch("BEGIN TRAN", true).await, V7_4);
    let Tok::Env { ty: 8, new: id, .. } = &toks[0] else {
        panic!("{toks:?}")
    };
    let id = id.clone();
    let toks = tokens(&raw.batch("UPDATE orders SET x = 1", true).await, V7_4);
    assert_eq!(
        toks,
        vec![Tok::Done {
            token: 0xFD,
            status: 0x10 | 0x04,
            cmd: 0xC1,
            rows: 3
        }],
        "DONE_INXACT"
    );
    let toks = tokens(&raw.batch("ROLLBACK TRAN", true).await, V7_4);
    assert_eq!(
        toks[0],
        Tok::Env {
            ty: 10,
            new: vec![],
            old: id
        }
    );
    let toks = tokens(&raw.batch("BEGIN TRAN; COMMIT", true).await, V7_4);
    assert!(
        matches!(toks[0], Tok::Env { ty: 8, .. }) && matches!(toks[1], Tok::Env { ty: 9, .. }),
        "{toks:?}"
    );
    let toks = tokens(&raw.batch("COMMIT TRANSACTION", true).await, V7_4);
    assert!(
        matches!(
            &toks[0],
            Tok::Error {
                number: 3902,
                class: 16,
                ..
            }
        ),
        "{toks:?}"
    );
    assert!(
        matches!(toks.last(), Some(Tok::Done { status: 2, .. })),
        "{toks:?}"
    );
}

#[tokio::test]
async fn an_unknown_procedure_is_error_2812() {
    let (server, tables) = spawn(ServerConfig::default()).await;
    let (mut raw, _) = login(&server, V7_4).await;
    let mut p = all_headers();
    p.extend_from_slice(&6u16.to_le_bytes());
    p.extend(ucs2("sp_who"));
    p.extend_from_slice(&0u16.to_le_bytes()); // option flags
    raw.send(0x03, &p).await;
    let toks = tokens(&raw.recv().await.unwrap(), V7_4);
    assert!(
        matches!(&toks[0], Tok::Error { number: 2812, class: 16, message, .. } if message.contains("sp_who")),
        "{toks:?}"
    );
    assert_eq!(toks[1], Tok::ReturnStatus(1));
    assert!(
        matches!(
            toks[2],
            Tok::Done {
                token: 0xFE,
                status: 2,
                ..
            }
        ),
        "{toks:?}"
    );
    assert!(tables.seen.lock().unwrap().is_empty());
    // Still usable.
    assert!(matches!(
        tokens(&raw.batch("USE master", true).await, V7_4)[0],
        Tok::Env { ty: 1, .. }
    ));
    let toks = tokens(&raw.batch("USE nosuchdb", true).await, V7_4);
    assert!(matches!(&toks[0], Tok::Error { number: 911, .. }), "{toks:?}");
}

#[tokio::test]
async fn packet_sizes_are_negotiated_and_respected() {
    let (server, _) = spawn(ServerConfig::default()).await;
    for (asked, got) in [
        (512u32, "512"),
        (32767, "32767"),
        (100, "512"),
        (60000, "32767"),
        (0, "4096"),
    ] {
        let (mut raw, response) = login_with(&server, V7_4, asked, "sync", "sync", "").await;
        let toks = tokens(&response.unwrap(), V7_4);
        assert!(
            toks.contains(&Tok::Env {
                ty: 4,
                new: ucs2(got),
                old: ucs2("4096")
            }),
            "{asked}: {toks:?}"
        );
        raw.packet_size = got.parse().unwrap();
        // Every packet of a big result fits (Raw::packet asserts it) and all rows arrive.
        let mut p = all_headers();
        p.extend(ucs2("SELECT id, name, amount FROM big"));
        raw.send(0x01, &p).await;
        let body = raw.recv().await.unwrap();
        let toks = tokens(&body[body.len() - 13..], V7_4);
        assert_eq!(
            toks,
            vec![Tok::Done {
                token: 0xFD,
                status: 0x10,
                cmd: 0xC1,
                rows: BIG_ROWS
            }]
        );
    }
}

#[tokio::test]
async fn the_prelogin_encryption_answer_follows_the_ms_tds_table() {
    // Client: OFF, ON, NOT_SUP, REQ.
    for (mode, answers) in [
        (Encryption::Off, [2, 2, 2, 2]),
        (Encryption::Optional, [0, 1, 2, 1]),
        (Encryption::Required, [3, 3, 3, 3]),
    ] {
        let (server, _) = spawn(ServerConfig::default().encryption(mode)).await;
        for (client, want) in [0u8, 1, 2, 3].into_iter().zip(answers) {
            let mut raw = Raw::connect(&server).await;
            raw.send(0x12, &prelogin(client)).await;
            let p = raw.recv().await.unwrap();
            assert_eq!(prelogin_encryption(&p), want, "{mode}, client {client}");
        }
    }
}

#[tokio::test]
async fn required_encryption_refuses_a_client_without_tls() {
    let (server, _) = spawn(ServerConfig::default().encryption(Encryption::Required)).await;
    let mut raw = Raw::connect(&server).await;
    raw.send(0x12, &prelogin(NOT_SUP)).await;
    assert_eq!(prelogin_encryption(&raw.recv().await.unwrap()), 3);
    raw.send(0x10, &login7(V7_4, 4096, "sync", "sync", "")).await;
    assert!(raw.recv().await.is_none(), "a plaintext login was answered");
    assert_eq!(server.stats().logins(), 0);

    // Strict: a client that starts with PRELOGIN in plaintext is refused too.
    let (server, _) = spawn(ServerConfig::default().encryption(Encryption::Strict)).await;
    let mut raw = Raw::connect(&server).await;
    raw.send(0x12, &prelogin(NOT_SUP)).await;
    assert!(raw.recv().await.is_none());
}

// ---------------------------------------------------------------------------------------------
// Malformed requests: an error answer, never a dropped connection.

/// A response, or `None` if the connection closed; a hang fails the test instead of blocking it.
async fn recv_within(raw: &mut Raw, what: &str) -> Option<Vec<u8>> {
    tokio::time::timeout(std::time::Duration::from_secs(20), raw.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 20 s"))
}

/// The connection still works: `SELECT 1` answers its row and a final DONE.
async fn still_answers_select_1(raw: &mut Raw, what: &str) {
    let mut p = all_headers();
    p.extend(ucs2("SELECT 1"));
    raw.send(0x01, &p).await;
    let p = recv_within(raw, what)
        .await
        .unwrap_or_else(|| panic!("{what}: the connection closed before SELECT 1"));
    assert!(
        contains(&p, &[0xD1, 1, 0, 0, 0]),
        "{what}: SELECT 1 answered {p:02x?}"
    );
}

/// The answer to a malformed request: an ERROR (class 16) with one of `numbers`, a final DONE /
/// DONEPROC with the error bit; the same connection then still answers `SELECT 1`.
async fn answers_error_and_goes_on(raw: &mut Raw, numbers: &[u32], what: &str) {
    let p = recv_within(raw, what)
        .await
        .unwrap_or_else(|| panic!("{what}: the server closed the connection instead of answering"));
    let toks = tokens(&p, V7_4);
    assert!(
        matches!(toks.first(), Some(Tok::Error { number, class: 16, .. }) if numbers.contains(number)),
        "{what}: expected error {numbers:?}, got {toks:?}"
    );
    assert!(
        matches!(toks.last(), Some(Tok::Done { status, .. }) if status & 0x02 != 0 && status & 0x01 == 0),
        "{what}: expected a final DONE with the error bit, got {toks:?}"
    );
    still_answers_select_1(raw, what).await;
}

/// `sp_executesql` (by id) of `SELECT @P1` with `@P1` given as raw TYPE_INFO and value bytes.
fn rpc_with_param(param: &[u8]) -> Vec<u8> {
    let mut p = all_headers();
    p.extend_from_slice(&0xFFFFu16.to_le_bytes());
    p.extend_from_slice(&10u16.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes()); // option flags
    for text in ["SELECT @P1", "@P1 int"] {
        let text = ucs2(text);
        p.extend_from_slice(&[0, 0, 0xE7]); // no name, no status, nvarchar
        p.extend_from_slice(&8000u16.to_le_bytes());
        p.extend_from_slice(&CP1252_COLLATION);
        p.extend_from_slice(&(text.len() as u16).to_le_bytes());
        p.extend(text);
    }
    p.extend(b_varchar("@P1"));
    p.push(0); // status
    p.extend_from_slice(param);
    p
}

/// TYPE_INFO + value bytes of RPC parameters a client must not be able to crash the server with.
fn malformed_params() -> Vec<(&'static str, Vec<u8>)> {
    let with = |head: &[u8], value: &[u8]| [head, value].concat();
    let mut decimal_min = vec![0x6A, 17, 38, 0, 17, 0];
    decimal_min.extend_from_slice(&(1u128 << 127).to_le_bytes());
    let mut datetime_max = vec![0x6F, 8, 8];
    datetime_max.extend_from_slice(&i32::MAX.to_le_bytes());
    datetime_max.extend_from_slice(&0u32.to_le_bytes());
    let mut datetime_min = vec![0x6F, 8, 8];
    datetime_min.extend_from_slice(&i32::MIN.to_le_bytes());
    datetime_min.extend_from_slice(&0u32.to_le_bytes());
    vec![
        ("INTN length 3", vec![0x26, 4, 3, 1, 2, 3]),
        ("INTN length 5", vec![0x26, 8, 5, 1, 2, 3, 4, 5]),
        ("BITN length 2", vec![0x68, 1, 2, 1, 0]),
        ("FLTN length 5", vec![0x6D, 8, 5, 1, 2, 3, 4, 5]),
        ("MONEYN length 2", vec![0x6E, 8, 2, 1, 2]),
        ("DATETIMEN length 2", vec![0x6F, 8, 2, 1, 2]),
        ("DATETIMEN days i32::MAX", datetime_max),
        ("DATETIMEN days i32::MIN", datetime_min),
        ("GUID length 15", with(&[0x24, 16, 15], &[7; 15])),
        ("DECIMALN length 30", with(&[0x6A, 17, 38, 0, 30], &[1; 30])),
        (
            "DECIMALN length 17 over max 9",
            with(&[0x6A, 9, 18, 0, 17], &[1; 17]),
        ),
        ("DECIMALN length 4", with(&[0x6A, 17, 38, 0, 4], &[1; 4])),
        ("DECIMALN length 1", vec![0x6A, 17, 38, 0, 1, 1]),
        ("DECIMALN -(2^127)", decimal_min),
        ("DECIMALN 2^127", {
            let mut v = vec![0x6A, 17, 38, 0, 17, 1];
            v.extend_from_slice(&(1u128 << 127).to_le_bytes());
            v
        }),
        ("DECIMALN scale 200", vec![0x6A, 5, 38, 200, 5, 1, 1, 0, 0, 0]),
        ("DATE length 2", vec![0x28, 2, 1, 2]),
        ("TIME(7) length 4", vec![0x29, 7, 4, 1, 2, 3, 4]),
        ("TIME scale 9", vec![0x29, 9, 5, 1, 2, 3, 4, 5]),
        ("DATETIME2(7) length 4", vec![0x2A, 7, 4, 1, 2, 3, 4]),
        ("DATETIME2(0) length 3", vec![0x2A, 0, 3, 0, 0, 0]),
        ("DATETIME2(7) length 7", vec![0x2A, 7, 7, 1, 2, 3, 4, 5, 6, 7]),
        ("DATETIMEOFFSET(0) length 6", vec![0x2B, 0, 6, 0, 0, 0, 1, 2, 3]),
        ("DATETIMEOFFSET(7) length 9", with(&[0x2B, 7, 9], &[1; 9])),
        ("DATETIMEOFFSET(7) scale 8", with(&[0x2B, 8, 10], &[0; 10])),
    ]
}

#[tokio::test]
async fn malformed_rpc_parameters_are_error_8009_and_the_connection_goes_on() {
    let (server, tables) = spawn(ServerConfig::default()).await;
    let (mut raw, _) = login(&server, V7_4).await;
    // The well-formed request is executed (the handler answers 208 for `SELECT @P1`).
    raw.send(0x03, &rpc_with_param(&[0x26, 4, 4, 7, 0, 0, 0])).await;
    let toks = tokens(&raw.recv().await.unwrap(), V7_4);
    assert!(matches!(&toks[0], Tok::Error { number: 208, .. }), "{toks:?}");
    assert_eq!(tables.last().sql, "SELECT @P1");
    let executed = tables.seen.lock().unwrap().len();
    for (what, param) in malformed_params() {
        raw.send(0x03, &rpc_with_param(&param)).await;
        answers_error_and_goes_on(&mut raw, &[8009], what).await;
    }
    // Cut anywhere inside the last parameter (name, status, TYPE_INFO, value): 8009.
    let whole = rpc_with_param(&[
        0x6A, 17, 38, 2, 17, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
    ]);
    let name_at = whole.len() - 22 - 8; // B_VARCHAR "@P1" and the status byte come first
    for cut in name_at + 1..whole.len() {
        raw.send(0x03, &whole[..cut]).await;
        answers_error_and_goes_on(&mut raw, &[8009], &format!("RPC cut at {cut} of {}", whole.len())).await;
    }
    let seen = tables.seen.lock().unwrap();
    assert!(
        seen[executed..].iter().all(|s| s.sql != "SELECT @P1"),
        "a malformed RPC reached the handler: {:?}",
        &seen[executed..]
    );
}

#[tokio::test]
async fn malformed_tm_requests_are_errors_and_the_connection_goes_on() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let (mut raw, _) = login(&server, V7_4).await;
    let mut truncated_headers = all_headers();
    truncated_headers.truncate(10);
    for (what, payload) in [
        ("empty TM request", Vec::new()),
        ("one byte", vec![7]),
        ("ALL_HEADERS only", all_headers()),
        ("ALL_HEADERS and one byte", [all_headers(), vec![7]].concat()),
        ("COMMIT without its name", tm(7, &[])),
        ("ROLLBACK without its name", tm(8, &[])),
    ] {
        raw.send(0x0E, &payload).await;
        answers_error_and_goes_on(&mut raw, &[8525], what).await;
    }
    // Cut inside ALL_HEADERS: the headers are not skipped, their first bytes read as a TM type.
    raw.send(0x0E, &truncated_headers).await;
    answers_error_and_goes_on(&mut raw, &[8525], "cut ALL_HEADERS").await;
}

/// xorshift64*: a fixed, dependency-free sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A seeded, bounded loop of truncated, bit-flipped and random RPC, SQL batch and TM payloads
/// on one connection: every one gets a complete answer, and `SELECT 1` still works after it.
#[tokio::test]
async fn random_garbage_requests_get_an_answer_and_the_connection_goes_on() {
    let (server, _) = spawn(ServerConfig::default()).await;
    let (mut raw, _) = login(&server, V7_4).await;
    let mut batch = all_headers();
    batch.extend(ucs2("SELECT 1"));
    let mut rpc_params = vec![
        vec![0x26, 8, 8, 1, 2, 3, 4, 5, 6, 7, 8],
        vec![
            0x6A, 17, 38, 2, 17, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        ],
        vec![0x6F, 8, 8, 1, 2, 3, 4, 5, 6, 7, 8],
        vec![0x2B, 7, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        vec![
            0x24, 16, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        ],
        vec![
            0xE7, 0xFF, 0xFF, 0x09, 0x04, 0xD0, 0x00, 0x34, 4, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, b'a', 0,
            b'b', 0, 0, 0, 0, 0,
        ],
    ];
    rpc_params.extend(malformed_params().into_iter().map(|(_, p)| p));
    let mut rng = Rng(0x005E_ED0F_FA4E_u64);
    for round in 0..400 {
        let (ty, base) = match round % 3 {
            0 => (0x03u8, rpc_with_param(&rpc_params[rng.below(rpc_params.len())])),
            1 => (0x01, batch.clone()),
            _ => (0x0E, tm([5u16, 7, 8, 9][rng.below(4)], &[0, 1])),
        };
        let payload = match rng.below(3) {
            // A truncation.
            0 => base[..rng.below(base.len())].to_vec(),
            // A few bytes changed.
            1 => {
                let mut p = base;
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(p.len());
                    p[at] = rng.next() as u8;
                }
                p
            }
            // Garbage.
            _ => (0..rng.below(80)).map(|_| rng.next() as u8).collect(),
        };
        let what = format!("round {round}: type {ty:#04x}, payload {payload:02x?}");
        raw.send(ty, &payload).await;
        let p = recv_within(&mut raw, &what)
            .await
            .unwrap_or_else(|| panic!("{what}: the server closed the connection instead of answering"));
        // The answer ends with a final DONE / DONEPROC.
        let done = &p[p.len().saturating_sub(13)..];
        assert!(
            done.len() == 13 && matches!(done[0], 0xFD | 0xFE) && done[1] & 0x01 == 0,
            "{what}: answered {p:02x?}"
        );
        // A request that could not be parsed: the error and a DONE with the error bit.
        if p[0] == 0xAA {
            let toks = tokens(&p, V7_4);
            if matches!(
                toks[0],
                Tok::Error {
                    number: 8009 | 8525,
                    ..
                }
            ) {
                assert!(
                    matches!(toks.last(), Some(Tok::Done { status, .. }) if status & 0x02 != 0),
                    "{what}: {toks:?}"
                );
            }
        }
        still_answers_select_1(&mut raw, &what).await;
    }
}
