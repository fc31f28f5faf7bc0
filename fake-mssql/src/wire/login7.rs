//! LOGIN7 (MS-TDS 2.2.6.4): who the client is and how it authenticates.

use std::io;

use super::packet::invalid;

/// LOGIN7's fixed part.
const FIXED_LEN: usize = 94;
/// OptionFlags2 `fIntSecurity`: Windows (SSPI) authentication.
const INTEGRATED_SECURITY: u8 = 0x80;
/// OptionFlags3 `fExtension`: a FeatureExt block follows.
const EXTENSION: u8 = 0x10;
/// FeatureExt ids.
const FEATURE_FEDAUTH: u8 = 0x02;
const FEATURE_UTF8_SUPPORT: u8 = 0x0A;
const FEATURE_TERMINATOR: u8 = 0xFF;
/// FEDAUTH library: a security token the client already has.
const FEDAUTH_SECURITY_TOKEN: u8 = 0x01;

/// The parts of LOGIN7 the server uses.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Login7 {
    pub(crate) tds_version: u32,
    pub(crate) packet_size: u32,
    pub(crate) hostname: String,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) app_name: String,
    pub(crate) server_name: String,
    pub(crate) library: String,
    pub(crate) language: String,
    pub(crate) database: String,
    /// Windows authentication requested (`fIntSecurity`); the first SSPI token follows.
    pub(crate) integrated_security: bool,
    pub(crate) sspi: Vec<u8>,
    /// A FEDAUTH security token (Entra ID access token), when the client sent one.
    pub(crate) fedauth_token: Option<String>,
    /// FEDAUTH was requested with a library other than a security token.
    pub(crate) fedauth_other_library: Option<u8>,
    /// The client announced UTF8_SUPPORT.
    pub(crate) utf8_support: bool,
}

impl std::fmt::Debug for Login7 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login7")
            .field("tds_version", &format_args!("{:#010x}", self.tds_version))
            .field("packet_size", &self.packet_size)
            .field("hostname", &self.hostname)
            .field("user", &self.user)
            .field("app_name", &self.app_name)
            .field("server_name", &self.server_name)
            .field("library", &self.library)
            .field("database", &self.database)
            .field("integrated_security", &self.integrated_security)
            .field("fedauth", &self.fedauth_token.is_some())
            .field("utf8_support", &self.utf8_support)
            .finish_non_exhaustive()
    }
}

fn u16_le(b: &[u8], at: usize) -> io::Result<u16> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| invalid("truncated LOGIN7"))
}

fn u32_le(b: &[u8], at: usize) -> io::Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| invalid("truncated LOGIN7"))
}

pub(crate) fn utf16le(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// Undoes LOGIN7's password scrambling: each byte had its nibbles swapped, then XOR 0xA5.
fn unscramble(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|b| (b ^ 0xA5).rotate_left(4)).collect()
}

pub(crate) fn parse(p: &[u8]) -> io::Result<Login7> {
    if p.len() < FIXED_LEN {
        return Err(invalid(format!("LOGIN7 is too short ({} bytes)", p.len())));
    }
    let raw_at = |table_pos: usize, unit: usize| -> io::Result<&[u8]> {
        let offset = usize::from(u16_le(p, table_pos)?);
        let len = usize::from(u16_le(p, table_pos + 2)?) * unit;
        p.get(offset..offset + len)
            .ok_or_else(|| invalid("LOGIN7 field out of range"))
    };
    let string_at = |table_pos: usize| -> io::Result<String> { Ok(utf16le(raw_at(table_pos, 2)?)) };
    let option_flags2 = p[25];
    let option_flags3 = p[27];
    let mut login = Login7 {
        tds_version: u32_le(p, 4)?,
        packet_size: u32_le(p, 8)?,
        hostname: string_at(36)?,
        user: string_at(40)?,
        password: utf16le(&unscramble(raw_at(44, 2)?)),
        app_name: string_at(48)?,
        server_name: string_at(52)?,
        library: string_at(60)?,
        language: string_at(64)?,
        database: string_at(68)?,
        integrated_security: option_flags2 & INTEGRATED_SECURITY != 0,
        sspi: Vec::new(),
        fedauth_token: None,
        fedauth_other_library: None,
        utf8_support: false,
    };
    if login.integrated_security {
        let offset = usize::from(u16_le(p, 78)?);
        let mut len = usize::from(u16_le(p, 80)?);
        if len == 0xFFFF {
            len = u32_le(p, 90)? as usize;
        }
        login.sspi = p
            .get(offset..offset + len)
            .ok_or_else(|| invalid("LOGIN7 SSPI data out of range"))?
            .to_vec();
    }
    if option_flags3 & EXTENSION != 0 {
        let at = usize::from(u16_le(p, 56)?);
        let features = u32_le(p, at)? as usize;
        parse_features(p, features, &mut login)?;
    }
    Ok(login)
}

fn parse_features(p: &[u8], mut pos: usize, login: &mut Login7) -> io::Result<()> {
    loop {
        let id = *p
            .get(pos)
            .ok_or_else(|| invalid("FeatureExt is not terminated"))?;
        if id == FEATURE_TERMINATOR {
            return Ok(());
        }
        let len = u32_le(p, pos + 1)? as usize;
        let data = p
            .get(pos + 5..pos + 5 + len)
            .ok_or_else(|| invalid("FeatureExt data out of range"))?;
        match id {
            FEATURE_FEDAUTH if !data.is_empty() => {
                let library = data[0] >> 1;
                if library == FEDAUTH_SECURITY_TOKEN {
                    let token_len = u32_le(data, 1)? as usize;
                    let token = data
                        .get(5..5 + token_len)
                        .ok_or_else(|| invalid("FEDAUTH token out of range"))?;
                    login.fedauth_token = Some(utf16le(token));
                } else {
                    login.fedauth_other_library = Some(library);
                }
            }
            FEATURE_UTF8_SUPPORT => login.utf8_support = true,
            _ => {}
        }
        pos += 5 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unscrambles_passwords() {
        // "a" is 0x61 0x00 in UTF-16LE; scrambled: swap nibbles (0x16, 0x00), XOR 0xA5 → 0xB3, 0xA5.
        assert_eq!(utf16le(&unscramble(&[0xB3, 0xA5])), "a");
    }
}
