//! The server half of NTLM (MS-NLMP) for Windows logins: answers the client's NEGOTIATE with a
//! CHALLENGE and verifies the NTLMv2 response in its AUTHENTICATE against the configured
//! Windows account, as a domain controller would for SQL Server.
//!
//! Verified: the user and domain the client names, its NTProofStr
//! (`HMAC-MD5(NTOWFv2, ServerChallenge ‖ blob)` with
//! `NTOWFv2 = HMAC-MD5(MD4(UTF-16LE(password)), UTF-16LE(UPPER(user) ‖ domain))`), and the
//! message integrity code (MIC) over the three messages when the client sends one. Refused:
//! anonymous logins, NTLMv1 / LM responses, SPNEGO- or Kerberos-wrapped tokens.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use md4::Md4;
use md5::{Digest, Md5};

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
const NEGOTIATE: u32 = 1;
const CHALLENGE: u32 = 2;
const AUTHENTICATE: u32 = 3;

// NegotiateFlags (MS-NLMP 2.2.2.5).
const UNICODE: u32 = 0x0000_0001;
const OEM: u32 = 0x0000_0002;
const REQUEST_TARGET: u32 = 0x0000_0004;
const SIGN: u32 = 0x0000_0010;
const SEAL: u32 = 0x0000_0020;
const NTLM: u32 = 0x0000_0200;
const ALWAYS_SIGN: u32 = 0x0000_8000;
const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
const TARGET_TYPE_SERVER: u32 = 0x0002_0000;
const EXTENDED_SESSION_SECURITY: u32 = 0x0008_0000;
const TARGET_INFO: u32 = 0x0080_0000;
const VERSION: u32 = 0x0200_0000;
const NEGOTIATE_128: u32 = 0x2000_0000;
const KEY_EXCH: u32 = 0x4000_0000;
const NEGOTIATE_56: u32 = 0x8000_0000;
/// Flags the server grants when the client asks for them.
const ECHOED: u32 = REQUEST_TARGET
    | SIGN
    | SEAL
    | ALWAYS_SIGN
    | EXTENDED_SESSION_SECURITY
    | VERSION
    | NEGOTIATE_128
    | KEY_EXCH
    | NEGOTIATE_56;

// AV_PAIR ids (MS-NLMP 2.2.2.1).
const AV_EOL: u16 = 0;
const AV_NB_COMPUTER_NAME: u16 = 1;
const AV_NB_DOMAIN_NAME: u16 = 2;
const AV_DNS_COMPUTER_NAME: u16 = 3;
const AV_DNS_DOMAIN_NAME: u16 = 4;
const AV_FLAGS: u16 = 6;
const AV_TIMESTAMP: u16 = 7;
/// MsvAvFlags bit: the AUTHENTICATE message carries a MIC.
const AV_FLAG_MIC: u32 = 0x2;

/// Where the MIC sits in an AUTHENTICATE message (after the 8-byte Version).
const MIC_AT: usize = 72;
/// The NTLMv2 response: NTProofStr (16 bytes), then the blob, whose fixed part is 28 bytes.
const NT_PROOF_LEN: usize = 16;
const BLOB_FIXED_LEN: usize = 28;
/// Windows Server 2022 (10.0.20348), NTLM revision 15.
const OS_VERSION: [u8; 8] = [10, 0, 0x7C, 0x4F, 0, 0, 0, 15];
/// 100-ns intervals from 1601-01-01 (FILETIME) to 1970-01-01.
const FILETIME_UNIX_EPOCH: u64 = 116_444_736_000_000_000;

/// The Windows account a server accepts: `DOMAIN\user` (or `user`, a local account of the server).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct WindowsAccount {
    pub(crate) domain: Option<String>,
    pub(crate) user: String,
    pub(crate) password: String,
}

impl WindowsAccount {
    pub(crate) fn parse(name: &str, password: String) -> Self {
        match name.split_once('\\') {
            Some((domain, user)) => WindowsAccount {
                domain: Some(domain.to_owned()),
                user: user.to_owned(),
                password,
            },
            None => WindowsAccount {
                domain: None,
                user: name.to_owned(),
                password,
            },
        }
    }

    /// The login's name as SQL Server shows it (`SUSER_SNAME()`): `DOMAIN\user`, or
    /// `SERVER\user` for a local account.
    pub(crate) fn login_name(&self, server_name: &str) -> String {
        format!("{}\\{}", self.domain.as_deref().unwrap_or(server_name), self.user)
    }

    /// Whether the client's user and domain name this account (case-insensitively, as Windows
    /// compares them). A local account also answers to an empty domain and to `.`.
    fn is_named_by(&self, user: &str, domain: &str, server_name: &str) -> bool {
        let domain_ok = match &self.domain {
            Some(d) => d.eq_ignore_ascii_case(domain) || d.to_uppercase() == domain.to_uppercase(),
            None => domain.is_empty() || domain == "." || domain.eq_ignore_ascii_case(server_name),
        };
        domain_ok && (self.user.eq_ignore_ascii_case(user) || self.user.to_uppercase() == user.to_uppercase())
    }
}

impl fmt::Debug for WindowsAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowsAccount")
            .field("domain", &self.domain)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Why a Windows login failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The token is not an NTLM message the server can use (SPNEGO, Kerberos, NTLMv1,
    /// malformed, out of sequence, a MIC that does not match): SQL Server's 18452.
    Handshake(String),
    /// An anonymous NTLM login (no user, no response).
    Anonymous,
    /// The client named an account other than the configured one.
    UnknownUser { claimed: String },
    /// The right account, but the NTLMv2 response does not prove its password.
    WrongPassword { claimed: String },
}

/// One NTLM exchange on the server side: created from the client's NEGOTIATE, it holds the
/// CHALLENGE it sent until the AUTHENTICATE arrives.
#[derive(Debug)]
pub(crate) struct ServerContext {
    negotiate: Vec<u8>,
    challenge: Vec<u8>,
    server_challenge: [u8; 8],
}

impl ServerContext {
    /// Reads the client's NEGOTIATE and makes the CHALLENGE to send back. `target_domain` is
    /// the NetBIOS domain the server claims to belong to (`None`: a stand-alone server).
    pub(crate) fn challenge(
        negotiate: &[u8],
        server_name: &str,
        target_domain: Option<&str>,
    ) -> Result<(ServerContext, Vec<u8>), Failure> {
        let client_flags = read_header(negotiate, NEGOTIATE)?;
        let server_challenge = random_challenge();
        let mut flags = NTLM | TARGET_INFO | (client_flags & ECHOED);
        flags |= if client_flags & UNICODE != 0 {
            UNICODE
        } else if client_flags & OEM != 0 {
            OEM
        } else {
            return Err(Failure::Handshake(
                "NEGOTIATE offers neither Unicode nor OEM strings".into(),
            ));
        };
        let computer = server_name.to_uppercase();
        let domain = target_domain.map_or_else(|| computer.clone(), str::to_uppercase);
        flags |= if target_domain.is_some() {
            TARGET_TYPE_DOMAIN
        } else {
            TARGET_TYPE_SERVER
        };
        let target_name = if flags & REQUEST_TARGET != 0 {
            encode(&domain, flags)
        } else {
            Vec::new()
        };
        let mut target_info = Vec::new();
        put_av(&mut target_info, AV_NB_DOMAIN_NAME, &utf16(&domain));
        put_av(&mut target_info, AV_NB_COMPUTER_NAME, &utf16(&computer));
        put_av(
            &mut target_info,
            AV_DNS_DOMAIN_NAME,
            &utf16(&domain.to_lowercase()),
        );
        put_av(
            &mut target_info,
            AV_DNS_COMPUTER_NAME,
            &utf16(&computer.to_lowercase()),
        );
        put_av(&mut target_info, AV_TIMESTAMP, &filetime_now().to_le_bytes());
        put_av(&mut target_info, AV_EOL, &[]);

        const HEADER_LEN: usize = 56;
        let mut msg = Vec::with_capacity(HEADER_LEN + target_name.len() + target_info.len());
        msg.extend_from_slice(SIGNATURE);
        msg.extend_from_slice(&CHALLENGE.to_le_bytes());
        put_fields(&mut msg, target_name.len(), HEADER_LEN);
        msg.extend_from_slice(&flags.to_le_bytes());
        msg.extend_from_slice(&server_challenge);
        msg.extend_from_slice(&[0; 8]); // reserved
        put_fields(&mut msg, target_info.len(), HEADER_LEN + target_name.len());
        msg.extend_from_slice(&OS_VERSION);
        msg.extend_from_slice(&target_name);
        msg.extend_from_slice(&target_info);
        let context = ServerContext {
            negotiate: negotiate.to_vec(),
            challenge: msg.clone(),
            server_challenge,
        };
        Ok((context, msg))
    }

    /// Verifies the client's AUTHENTICATE against `account`. `Ok` is the account's login name.
    pub(crate) fn authenticate(
        &self,
        msg: &[u8],
        account: &WindowsAccount,
        server_name: &str,
    ) -> Result<String, Failure> {
        read_header(msg, AUTHENTICATE)?;
        let flags = u32_at(msg, 60)?;
        let nt_response = field(msg, 20)?;
        let domain = decode(field(msg, 28)?, flags);
        let user = decode(field(msg, 36)?, flags);
        if user.is_empty() && nt_response.is_empty() {
            return Err(Failure::Anonymous);
        }
        let claimed = if domain.is_empty() {
            user.clone()
        } else {
            format!("{domain}\\{user}")
        };
        if nt_response.len() < NT_PROOF_LEN + BLOB_FIXED_LEN {
            // 24 bytes: an NTLMv1 (or NTLM2 session) response, which SQL Server's domain
            // controllers refuse under today's default policy (LmCompatibilityLevel 5).
            return Err(Failure::Handshake(format!(
                "an NTLMv1 response ({} bytes); only NTLMv2 is accepted",
                nt_response.len()
            )));
        }
        let (proof, blob) = nt_response.split_at(NT_PROOF_LEN);
        if blob[0] != 1 || blob[1] != 1 {
            return Err(Failure::Handshake(
                "the NTLMv2 response has an unknown version".into(),
            ));
        }
        if !account.is_named_by(&user, &domain, server_name) {
            return Err(Failure::UnknownUser { claimed });
        }

        let ntowf = ntowf_v2(&account.password, &user, &domain);
        let expected = nt_proof(&ntowf, &self.server_challenge, blob);
        if !same(&expected, proof) {
            return Err(Failure::WrongPassword { claimed });
        }

        // The right password. If the client signed the exchange, check the signature too: it
        // also proves nobody altered the NEGOTIATE, CHALLENGE or AUTHENTICATE on the way.
        if av_flags(&blob[BLOB_FIXED_LEN..]) & AV_FLAG_MIC != 0 {
            let mic = msg
                .get(MIC_AT..MIC_AT + 16)
                .ok_or_else(|| Failure::Handshake("AUTHENTICATE announces a MIC but has none".into()))?;
            let key_exchange_key = hmac_md5(&ntowf, &expected);
            let session_key = match field(msg, 52)? {
                encrypted if flags & KEY_EXCH != 0 && encrypted.len() == 16 => {
                    rc4(&key_exchange_key, encrypted)
                }
                _ => key_exchange_key.to_vec(),
            };
            let mut zeroed = msg.to_vec();
            zeroed[MIC_AT..MIC_AT + 16].fill(0);
            let computed = hmac_md5_parts(&session_key, &[&self.negotiate, &self.challenge, &zeroed]);
            if !same(&computed, mic) {
                return Err(Failure::Handshake(
                    "the AUTHENTICATE message's MIC does not match".into(),
                ));
            }
        }
        Ok(account.login_name(server_name))
    }
}

/// Checks the signature and message type; returns the NegotiateFlags at offset 12 (only
/// meaningful for NEGOTIATE).
fn read_header(msg: &[u8], ty: u32) -> Result<u32, Failure> {
    if !msg.starts_with(SIGNATURE) {
        return Err(Failure::Handshake(
            "not an NTLM message (SPNEGO and Kerberos are not supported)".into(),
        ));
    }
    let got = u32_at(msg, 8)?;
    if got != ty {
        return Err(Failure::Handshake(format!(
            "expected NTLM message type {ty}, got {got}"
        )));
    }
    u32_at(msg, 12)
}

fn u32_at(msg: &[u8], at: usize) -> Result<u32, Failure> {
    msg.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| Failure::Handshake("truncated NTLM message".into()))
}

/// The payload a Len / MaxLen / Offset field triple at `at` points to.
fn field(msg: &[u8], at: usize) -> Result<&[u8], Failure> {
    let b = msg
        .get(at..at + 8)
        .ok_or_else(|| Failure::Handshake("truncated NTLM message".into()))?;
    let len = usize::from(u16::from_le_bytes([b[0], b[1]]));
    let offset = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
    if len == 0 {
        return Ok(&[]);
    }
    msg.get(offset..offset.saturating_add(len))
        .ok_or_else(|| Failure::Handshake("an NTLM field points outside the message".into()))
}

fn put_fields(out: &mut Vec<u8>, len: usize, offset: usize) {
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&(offset as u32).to_le_bytes());
}

fn put_av(out: &mut Vec<u8>, id: u16, value: &[u8]) {
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
}

/// MsvAvFlags of an AV_PAIR list (0 when absent or malformed).
fn av_flags(mut pairs: &[u8]) -> u32 {
    while pairs.len() >= 4 {
        let id = u16::from_le_bytes([pairs[0], pairs[1]]);
        let len = usize::from(u16::from_le_bytes([pairs[2], pairs[3]]));
        let Some(value) = pairs.get(4..4 + len) else {
            return 0;
        };
        match id {
            AV_EOL => return 0,
            AV_FLAGS if len == 4 => return u32::from_le_bytes([value[0], value[1], value[2], value[3]]),
            _ => pairs = &pairs[4 + len..],
        }
    }
    0
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// A string in the character set the flags negotiated.
fn encode(s: &str, flags: u32) -> Vec<u8> {
    if flags & UNICODE != 0 {
        utf16(s)
    } else {
        s.chars().map(|c| u8::try_from(c).unwrap_or(b'?')).collect()
    }
}

fn decode(b: &[u8], flags: u32) -> String {
    if flags & UNICODE != 0 {
        crate::wire::login7::utf16le(b)
    } else {
        b.iter().map(|&c| char::from(c)).collect()
    }
}

/// NTOWFv2 (MS-NLMP 3.3.2), with the user and domain as the client spelled them: the client's
/// hash covers its own spelling, which Windows accepts whatever the case.
fn ntowf_v2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    let nt_hash: [u8; 16] = Md4::digest(utf16(password)).into();
    let mut identity = utf16(&user.to_uppercase());
    identity.extend_from_slice(&utf16(domain));
    hmac_md5(&nt_hash, &identity)
}

/// NTProofStr = HMAC-MD5(NTOWFv2, ServerChallenge ‖ blob).
fn nt_proof(ntowf: &[u8; 16], server_challenge: &[u8; 8], blob: &[u8]) -> [u8; 16] {
    hmac_md5_parts(ntowf, &[server_challenge, blob])
}

fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    hmac_md5_parts(key, &[data])
}

/// HMAC-MD5 (RFC 2104) over the concatenation of `parts`.
fn hmac_md5_parts(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..16].copy_from_slice(&Md5::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Md5::new();
    inner.update(k.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Md5::new();
    outer.update(k.map(|b| b ^ 0x5C));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// RC4 (for the exported session key under NTLMSSP_NEGOTIATE_KEY_EXCH).
fn rc4(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut s: [u8; 256] = std::array::from_fn(|i| i as u8);
    let mut j = 0u8;
    for i in 0..256 {
        j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
        s.swap(i, usize::from(j));
    }
    let (mut i, mut j) = (0u8, 0u8);
    data.iter()
        .map(|b| {
            i = i.wrapping_add(1);
            j = j.wrapping_add(s[usize::from(i)]);
            s.swap(usize::from(i), usize::from(j));
            b ^ s[usize::from(s[usize::from(i)].wrapping_add(s[usize::from(j)]))]
        })
        .collect()
}

/// Comparison whose time does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Eight bytes nobody can predict: SipHash under the process's random keys (seeded by the OS)
/// over a counter and the time. Enough for a test server's challenge; not a key generator.
fn random_challenge() -> [u8; 8] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one((n, nanos)).to_le_bytes()
}

fn filetime_now() -> u64 {
    let since_unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    FILETIME_UNIX_EPOCH + (since_unix.as_nanos() / 100) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn md4_md5_hmac_and_rc4_match_their_reference_vectors() {
        // RFC 1320 / RFC 1321.
        assert_eq!(hex(&Md4::digest(b"abc")), "a448017aaf21d8525fc10ae87aa6729d");
        assert_eq!(hex(&Md5::digest(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        // RFC 2202, test cases 2 and 6 (a key longer than the block).
        assert_eq!(
            hex(&hmac_md5(b"Jefe", b"what do ya want for nothing?")),
            "750c783e6ab0b503eaa86e310a5db738"
        );
        assert_eq!(
            hex(&hmac_md5(
                &[0xAA; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd"
        );
        assert_eq!(hex(&rc4(b"Key", b"Plaintext")), "bbf316e8d940af0ad3");
    }

    #[test]
    fn ntowf_v2_matches_ms_nlmp() {
        // MS-NLMP 4.2.4.1.1: User / Domain / Password.
        assert_eq!(
            hex(&ntowf_v2("Password", "User", "Domain")),
            "0c868a403bfd7a93a3001ef22ef02e3f"
        );
    }

    #[test]
    fn ntlmv2_proof_matches_ms_nlmp() {
        // MS-NLMP 4.2.4: server challenge 0123456789abcdef, client challenge aa×8, time 0,
        // AV pairs NbDomainName "Domain", NbComputerName "Server".
        let ntowf = ntowf_v2("Password", "User", "Domain");
        let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
        blob.extend_from_slice(&[0; 8]);
        blob.extend_from_slice(&[0xAA; 8]);
        blob.extend_from_slice(&[0; 4]);
        put_av(&mut blob, AV_NB_DOMAIN_NAME, &utf16("Domain"));
        put_av(&mut blob, AV_NB_COMPUTER_NAME, &utf16("Server"));
        put_av(&mut blob, AV_EOL, &[]);
        blob.extend_from_slice(&[0; 4]);
        let proof = nt_proof(&ntowf, &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef], &blob);
        assert_eq!(hex(&proof), "68cd0ab851e51c96aabc927bebef6a1c");
        assert_eq!(hex(&hmac_md5(&ntowf, &proof)), "8de40ccadbc14a82f15cb0ad0de95ca3");
    }

    #[test]
    fn the_challenge_answers_the_negotiate() {
        let mut negotiate = SIGNATURE.to_vec();
        negotiate.extend_from_slice(&NEGOTIATE.to_le_bytes());
        negotiate
            .extend_from_slice(&(UNICODE | OEM | REQUEST_TARGET | NTLM | KEY_EXCH | VERSION).to_le_bytes());
        negotiate.extend_from_slice(&[0; 16]);
        let (ctx, msg) = ServerContext::challenge(&negotiate, "FakeMssql", Some("corp")).unwrap();
        assert_eq!(read_header(&msg, CHALLENGE).unwrap(), u32_at(&msg, 12).unwrap());
        let flags = u32_at(&msg, 20).unwrap();
        assert_eq!(flags & (UNICODE | OEM), UNICODE);
        assert_ne!(flags & (KEY_EXCH | VERSION | TARGET_INFO | TARGET_TYPE_DOMAIN), 0);
        assert_eq!(decode(field(&msg, 12).unwrap(), UNICODE), "CORP");
        assert_eq!(&msg[24..32], &ctx.server_challenge);
        let info = field(&msg, 40).unwrap();
        assert!(info.ends_with(&[0, 0, 0, 0]), "AV pairs end with MsvAvEOL");
        // A second exchange gets another challenge.
        let (other, _) = ServerContext::challenge(&negotiate, "FakeMssql", None).unwrap();
        assert_ne!(ctx.server_challenge, other.server_challenge);
        assert!(matches!(
            ServerContext::challenge(b"\x60\x82garbage", "X", None),
            Err(Failure::Handshake(_))
        ));
    }

    /// An AUTHENTICATE as a client computes it, signed with a MIC (MsvAvFlags 0x2).
    fn signed_authenticate(ctx: &ServerContext, domain: &str, user: &str, password: &str) -> Vec<u8> {
        let ntowf = ntowf_v2(password, user, domain);
        let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
        blob.extend_from_slice(&filetime_now().to_le_bytes());
        blob.extend_from_slice(&[0x42; 8]);
        blob.extend_from_slice(&[0; 4]);
        put_av(&mut blob, AV_FLAGS, &AV_FLAG_MIC.to_le_bytes());
        put_av(&mut blob, AV_EOL, &[]);
        let proof = nt_proof(&ntowf, &ctx.server_challenge, &blob);
        let nt = [&proof[..], &blob].concat();
        let session_key = [0x55; 16];
        let encrypted = rc4(&hmac_md5(&ntowf, &proof), &session_key);
        let (domain, user) = (utf16(domain), utf16(user));
        let base = 88;
        let mut m = SIGNATURE.to_vec();
        m.extend_from_slice(&AUTHENTICATE.to_le_bytes());
        put_fields(&mut m, 0, base);
        put_fields(&mut m, nt.len(), base + domain.len() + user.len());
        put_fields(&mut m, domain.len(), base);
        put_fields(&mut m, user.len(), base + domain.len());
        put_fields(&mut m, 0, base);
        put_fields(&mut m, 16, base + domain.len() + user.len() + nt.len());
        m.extend_from_slice(&(UNICODE | NTLM | KEY_EXCH | TARGET_INFO).to_le_bytes());
        m.extend_from_slice(&[0; 24]); // version, MIC
        for part in [&domain[..], &user, &nt, &encrypted] {
            m.extend_from_slice(part);
        }
        let mic = hmac_md5_parts(&session_key, &[&ctx.negotiate, &ctx.challenge, &m]);
        m[MIC_AT..MIC_AT + 16].copy_from_slice(&mic);
        m
    }

    #[test]
    fn the_ntlmv2_response_and_the_mic_are_verified() {
        let mut negotiate = SIGNATURE.to_vec();
        negotiate.extend_from_slice(&NEGOTIATE.to_le_bytes());
        negotiate.extend_from_slice(&(UNICODE | NTLM | KEY_EXCH).to_le_bytes());
        negotiate.extend_from_slice(&[0; 16]);
        let (ctx, _) = ServerContext::challenge(&negotiate, "SRV", Some("CORP")).unwrap();
        let account = WindowsAccount::parse("CORP\\alice", "Secret1!".into());
        let good = signed_authenticate(&ctx, "corp", "Alice", "Secret1!");
        assert_eq!(
            ctx.authenticate(&good, &account, "SRV"),
            Ok("CORP\\alice".to_owned())
        );

        let wrong = signed_authenticate(&ctx, "CORP", "alice", "secret1!");
        let claimed = "CORP\\alice".to_owned();
        assert_eq!(
            ctx.authenticate(&wrong, &account, "SRV"),
            Err(Failure::WrongPassword { claimed })
        );
        let other = signed_authenticate(&ctx, "CORP", "bob", "Secret1!");
        let claimed = "CORP\\bob".to_owned();
        assert_eq!(
            ctx.authenticate(&other, &account, "SRV"),
            Err(Failure::UnknownUser { claimed })
        );

        // A changed MIC, session key or flag word: the proof still holds, the MIC does not.
        for at in [MIC_AT, good.len() - 1, 62] {
            let mut tampered = good.clone();
            tampered[at] ^= 0x01;
            assert!(
                matches!(
                    ctx.authenticate(&tampered, &account, "SRV"),
                    Err(Failure::Handshake(_))
                ),
                "byte {at} changed"
            );
        }
        // The same AUTHENTICATE does not log in to another exchange (another challenge).
        let (other_ctx, _) = ServerContext::challenge(&negotiate, "SRV", Some("CORP")).unwrap();
        assert!(matches!(
            other_ctx.authenticate(&good, &account, "SRV"),
            Err(Failure::WrongPassword { .. })
        ));
    }

    #[test]
    fn account_names_compare_like_windows() {
        let account = WindowsAccount::parse("CORP\\Alice", "pw".into());
        assert_eq!(account.login_name("SRV"), "CORP\\Alice");
        assert!(account.is_named_by("alice", "corp", "SRV"));
        assert!(!account.is_named_by("alice", "", "SRV"));
        assert!(!account.is_named_by("bob", "CORP", "SRV"));
        let local = WindowsAccount::parse("svc", "pw".into());
        assert_eq!(local.login_name("SRV"), "SRV\\svc");
        assert!(local.is_named_by("SVC", "", "SRV") && local.is_named_by("svc", "srv", "SRV"));
        assert!(!local.is_named_by("svc", "CORP", "SRV"));
    }
}
