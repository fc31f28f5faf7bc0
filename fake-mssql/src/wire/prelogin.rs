//! PRELOGIN (MS-TDS 2.2.6.5): the client's options and the server's answer.

use std::io;

use super::packet::invalid;

/// PRELOGIN option tokens.
const OPT_VERSION: u8 = 0x00;
const OPT_ENCRYPTION: u8 = 0x01;
const OPT_INSTOPT: u8 = 0x02;
const OPT_THREADID: u8 = 0x03;
const OPT_MARS: u8 = 0x04;
const OPT_FEDAUTHREQUIRED: u8 = 0x06;
const OPT_TERMINATOR: u8 = 0xFF;

/// `ENCRYPTION` values (the low bits; 0x80 is the client-certificate flag).
pub(crate) const ENCRYPT_OFF: u8 = 0x00;
pub(crate) const ENCRYPT_ON: u8 = 0x01;
pub(crate) const ENCRYPT_NOT_SUP: u8 = 0x02;
pub(crate) const ENCRYPT_REQ: u8 = 0x03;

/// What the client said in its PRELOGIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prelogin {
    /// `ENCRYPT_*`, client-certificate bit cleared.
    pub(crate) encryption: u8,
    /// The instance the client names (empty: any).
    pub(crate) instance: String,
    /// The client will authenticate with a federated (Entra ID) token.
    pub(crate) fedauth_required: bool,
}

pub(crate) fn parse(payload: &[u8]) -> io::Result<Prelogin> {
    let mut pos = 0;
    let mut out = Prelogin {
        encryption: ENCRYPT_NOT_SUP,
        instance: String::new(),
        fedauth_required: false,
    };
    loop {
        let token = *payload
            .get(pos)
            .ok_or_else(|| invalid("PRELOGIN option table is not terminated"))?;
        if token == OPT_TERMINATOR {
            break;
        }
        let entry = payload
            .get(pos + 1..pos + 5)
            .ok_or_else(|| invalid("truncated PRELOGIN option"))?;
        let offset = usize::from(u16::from_be_bytes([entry[0], entry[1]]));
        let length = usize::from(u16::from_be_bytes([entry[2], entry[3]]));
        let data = payload
            .get(offset..offset + length)
            .ok_or_else(|| invalid("PRELOGIN option out of range"))?;
        match token {
            OPT_ENCRYPTION if !data.is_empty() => out.encryption = data[0] & 0x0F,
            OPT_INSTOPT => {
                let text = data.split(|b| *b == 0).next().unwrap_or_default();
                out.instance = String::from_utf8_lossy(text).into_owned();
            }
            OPT_FEDAUTHREQUIRED if !data.is_empty() => out.fedauth_required = data[0] == 1,
            _ => {}
        }
        pos += 5;
    }
    Ok(out)
}

/// The server's answer: its version, the chosen encryption, whether the instance matched,
/// MARS off, and FEDAUTHREQUIRED when the client sent it.
pub(crate) fn response(version: [u8; 4], encryption: u8, instance_mismatch: bool, fedauth: bool) -> Vec<u8> {
    let version_data = [version[0], version[1], version[2], version[3], 0, 0];
    let encryption_data = [encryption];
    let instopt = [u8::from(instance_mismatch)];
    let mut options: Vec<(u8, &[u8])> = vec![
        (OPT_VERSION, &version_data),
        (OPT_ENCRYPTION, &encryption_data),
        (OPT_INSTOPT, &instopt),
        (OPT_THREADID, &[]),
        (OPT_MARS, &[0]),
    ];
    if fedauth {
        options.push((OPT_FEDAUTHREQUIRED, &[1]));
    }
    let mut out = Vec::with_capacity(64);
    let mut offset = options.len() * 5 + 1;
    for (token, data) in &options {
        out.push(*token);
        out.extend_from_slice(&(offset as u16).to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        offset += data.len();
    }
    out.push(OPT_TERMINATOR);
    for (_, data) in &options {
        out.extend_from_slice(data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = response([16, 0, 0x10, 0x27], ENCRYPT_ON, false, true);
        let p = parse(&r).unwrap();
        assert_eq!(p.encryption, ENCRYPT_ON);
        assert!(p.fedauth_required);
        assert_eq!(p.instance, "");
    }
}
