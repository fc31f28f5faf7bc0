//! The certificate a SQL Server presents, fetched over a connection of our own.
//!
//! tiberius says only *that* it rejected a certificate; [`fetch_server_certificate`] opens
//! a second connection, asks for encryption in PRELOGIN (`ENCRYPT_ON`) and runs a TLS
//! handshake whose verifier records the chain and accepts it — inside PRELOGIN packets
//! for TDS 7.x, TLS from the first byte with ALPN `tds/8.0` for TDS 8.0 (`strict`). It
//! sends nothing after the handshake (no login) and closes. The end-entity certificate is
//! read with a small DER walk: subject and issuer, the subjectAltName's DNS names and IP
//! addresses, the validity.
//!
//! The handshake is driven through rustls's sans-IO `ClientConnection` (no tokio-rustls):
//! a probe only needs the records to and fro, and the loop stays readable with the
//! PRELOGIN framing done in place.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::connect;

/// The ALPN protocol id of TDS 8.0 (`Encrypt=strict`).
const ALPN_TDS_8: &[u8] = b"tds/8.0";
/// PRELOGIN packet type, which also carries the TDS 7.x TLS handshake.
const PKT_PRELOGIN: u8 = 0x12;
/// Payload per PRELOGIN packet when wrapping TLS records (the 4,096-byte default packet).
const MAX_PAYLOAD: usize = 4096 - 8;

/// Why the server's certificate could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server did not show a certificate within the time given.
    #[error("no certificate within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The server answered PRELOGIN that it has no TLS (its encryption is off).
    #[error("the server has no TLS (PRELOGIN encryption NOT_SUP)")]
    NoTls,
    /// The TLS handshake failed before the server presented a certificate.
    #[error("the TLS handshake failed before the server presented a certificate: {0}")]
    Tls(#[from] rustls::Error),
    /// The server spoke something else than TDS.
    #[error("{0}")]
    Protocol(String),
    /// The certificate is not X.509 DER we can read.
    #[error("the server's certificate could not be read: {0}")]
    Malformed(String),
}

/// The end-entity certificate a server presented, as read from its DER.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerCertificate {
    /// Subject, attributes in certificate order: `CN=localhost, O=fake-mssql`.
    pub subject: String,
    /// Issuer, written like the subject.
    pub issuer: String,
    /// The subjectAltName's DNS names and IP addresses, as text, in certificate order —
    /// the names TLS clients check the host against (the CN is not one of them).
    pub dns_names: Vec<String>,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// Issuer and subject are the same name (no CA vouches for it).
    pub self_signed: bool,
    /// The certificate itself (DER).
    pub der: Vec<u8>,
}

impl fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("dns_names", &self.dns_names)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("self_signed", &self.self_signed)
            .field("der_len", &self.der.len())
            .finish()
    }
}

/// `subject CN=…; issuer …; valid for a, b; expires 2027-05-01`.
impl fmt::Display for ServerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subject {}; ", self.subject)?;
        if self.self_signed {
            write!(f, "issuer the same — self-signed; ")?;
        } else {
            write!(f, "issuer {}; ", self.issuer)?;
        }
        if self.dns_names.is_empty() {
            write!(f, "valid for no host name (no subjectAltName); ")?;
        } else {
            write!(f, "valid for {}; ", self.dns_names.join(", "))?;
        }
        let now = Utc::now();
        if self.not_before > now {
            write!(
                f,
                "not valid before {}; ",
                self.not_before.format("%Y-%m-%d %H:%M UTC")
            )?;
        }
        if self.not_after < now {
            write!(f, "expired {}", self.not_after.format("%Y-%m-%d"))
        } else {
            write!(f, "expires {}", self.not_after.format("%Y-%m-%d"))
        }
    }
}

impl ServerCertificate {
    /// Reads an X.509 certificate (DER).
    pub fn from_der(der: &[u8]) -> Result<Self, FetchError> {
        parse(der).map_err(|e| FetchError::Malformed(e.0))
    }

    /// The certificate as PEM text, what `Server Certificate=PATH` reads for a self-signed
    /// certificate.
    pub fn pem(&self) -> String {
        let b64 = base64(&self.der);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }

    /// Whether `name` (a host name or an IP address) is one the certificate is valid for,
    /// by the subjectAltName rules TLS clients apply (`*.example.com` covers one label).
    pub fn is_valid_for(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return self
                .dns_names
                .iter()
                .any(|n| n.parse::<IpAddr>().is_ok_and(|n| n == ip));
        }
        self.dns_names.iter().any(|pattern| {
            let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
            match pattern.strip_prefix("*.") {
                Some(suffix) => name
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => pattern == name,
            }
        })
    }
}

/// Fetches the certificate the SQL Server at `addr` (`host:port`, `[v6]:port`, or a host
/// alone for port 1433) presents, within `timeout`: PRELOGIN with `ENCRYPT_ON`, then the
/// TLS handshake inside PRELOGIN packets (TDS 7.x) — or, with `strict`, TLS from the first
/// byte with ALPN `tds/8.0` (TDS 8.0). The certificate is recorded, not checked; nothing is
/// sent after the handshake.
pub async fn fetch_server_certificate(
    addr: &str,
    strict: bool,
    timeout: Duration,
) -> Result<ServerCertificate, FetchError> {
    let (host, port) = split_host_port(addr);
    tokio::time::timeout(timeout, async {
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        tcp.set_nodelay(true)?;
        fetch_over(tcp, &host, strict).await
    })
    .await
    .unwrap_or(Err(FetchError::Timeout(timeout)))
}

/// [`fetch_server_certificate`] over a fresh connection; `host` is sent as SNI. Not bounded
/// in time: the caller is.
pub(crate) async fn fetch_over(
    mut tcp: TcpStream,
    host: &str,
    strict: bool,
) -> Result<ServerCertificate, FetchError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(RecordingVerifier {
        chain: Mutex::new(None),
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    if strict {
        config.alpn_protocols = vec![ALPN_TDS_8.to_vec()];
    }
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
        .map(|n| n.to_owned())
        .or_else(|_| tcp.peer_addr().map(|a| ServerName::IpAddress(a.ip().into())))?;
    let mut tls = ClientConnection::new(Arc::new(config), name)?;

    let outcome = async {
        // TDS 7.x: ask for encryption first; TDS 8.0 starts with TLS.
        if !strict && connect::prelogin(&mut tcp, connect::ENCRYPT_ON).await? == connect::ENCRYPT_NOT_SUP {
            return Err(FetchError::NoTls);
        }
        handshake(&mut tls, &mut tcp, !strict).await
    }
    .await;
    let _ = tcp.shutdown().await;
    let chain = recorder.chain.lock().unwrap_or_else(|e| e.into_inner()).take();
    match (chain, outcome) {
        // A handshake that failed after the certificate (a signature, an alert) still
        // showed it.
        (Some(chain), outcome) => {
            if let Err(e) = outcome {
                tracing::debug!(error = %e, "the TLS handshake failed after the certificate");
            }
            let leaf = chain
                .first()
                .ok_or_else(|| FetchError::Malformed("an empty chain".into()))?;
            ServerCertificate::from_der(leaf)
        }
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Err(FetchError::Protocol(
            "the TLS handshake ended without a server certificate".into(),
        )),
    }
}

/// Drives the client handshake to its end. With `wrapped` (TDS 7.x) every flight goes out
/// in PRELOGIN packets, and the server's come in them (a bare TLS record is accepted too).
async fn handshake(tls: &mut ClientConnection, tcp: &mut TcpStream, wrapped: bool) -> Result<(), FetchError> {
    let mut read_wrapped = wrapped;
    let mut packet_id: u8 = 1;
    let mut buf = vec![0u8; 16 * 1024];
    let closed = || {
        FetchError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection during the TLS handshake",
        ))
    };
    loop {
        if tls.wants_write() {
            let mut records = Vec::new();
            while tls.wants_write() {
                tls.write_tls(&mut records)?;
            }
            let out = if wrapped {
                prelogin_packets(&records, &mut packet_id)
            } else {
                records
            };
            tcp.write_all(&out).await?;
        }
        if !tls.is_handshaking() {
            return Ok(());
        }
        let data = if read_wrapped {
            let mut header = [0u8; 8];
            tcp.read_exact(&mut header).await.map_err(|_| closed())?;
            if (0x14..=0x17).contains(&header[0]) {
                // A TLS record outside PRELOGIN: the server stopped wrapping.
                read_wrapped = false;
                header.to_vec()
            } else if header[0] != PKT_PRELOGIN {
                return Err(FetchError::Protocol(format!(
                    "expected a PRELOGIN packet carrying TLS, got packet type {:#04x}",
                    header[0]
                )));
            } else {
                let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
                let mut payload = vec![0u8; len.saturating_sub(8)];
                tcp.read_exact(&mut payload).await.map_err(|_| closed())?;
                payload
            }
        } else {
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                return Err(closed());
            }
            buf[..n].to_vec()
        };
        let mut rest = &data[..];
        while !rest.is_empty() {
            tls.read_tls(&mut rest)?;
            tls.process_new_packets()?;
        }
    }
}

/// TLS records framed as one PRELOGIN message (MS-TDS 3.3.5.2).
fn prelogin_packets(records: &[u8], packet_id: &mut u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() + 8 * (records.len() / MAX_PAYLOAD + 1));
    let chunks = records.len().div_ceil(MAX_PAYLOAD);
    for (i, chunk) in records.chunks(MAX_PAYLOAD).enumerate() {
        let status = u8::from(i + 1 == chunks); // EOM on the last
        let len = (chunk.len() + 8) as u16;
        out.extend_from_slice(&[PKT_PRELOGIN, status]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[0, 0, *packet_id, 0]);
        *packet_id = packet_id.wrapping_add(1);
        out.extend_from_slice(chunk);
    }
    out
}

fn split_host_port(addr: &str) -> (String, u16) {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return (sa.ip().to_string(), sa.port());
    }
    if let Ok(ip) = addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return (ip.to_string(), 1433);
    }
    match addr.rsplit_once([':', ',']) {
        Some((host, port)) if port.trim().parse::<u16>().is_ok() => {
            (host.trim().to_string(), port.trim().parse().unwrap_or(1433))
        }
        _ => (addr.trim().to_string(), 1433),
    }
}

/// Records the chain and accepts it; handshake signatures are still checked (they prove
/// the server holds the certificate's key).
#[derive(Debug)]
struct RecordingVerifier {
    chain: Mutex<Option<Vec<Vec<u8>>>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref().to_vec())
            .collect();
        *self.chain.lock().unwrap_or_else(|e| e.into_inner()) = Some(chain);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------- a small DER walk

#[derive(Debug)]
struct Malformed(String);

fn malformed(what: &str) -> Malformed {
    Malformed(what.to_string())
}

/// One TLV: (tag, contents, what follows).
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), Malformed> {
    let (&tag, rest) = input.split_first().ok_or_else(|| malformed("truncated"))?;
    if tag & 0x1F == 0x1F {
        return Err(malformed("a multi-byte tag"));
    }
    let (&first, rest) = rest.split_first().ok_or_else(|| malformed("truncated length"))?;
    let (len, rest) = match first {
        0..=0x7F => (usize::from(first), rest),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7F);
            if rest.len() < n {
                return Err(malformed("truncated length"));
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        }
        _ => return Err(malformed("an indefinite or oversized length")),
    };
    if rest.len() < len {
        return Err(malformed("truncated contents"));
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// The next TLV, which must have `tag`.
fn expect<'a>(input: &'a [u8], tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), Malformed> {
    let (got, contents, rest) = tlv(input)?;
    if got != tag {
        return Err(Malformed(format!(
            "expected {what} (tag {tag:#04x}), got tag {got:#04x}"
        )));
    }
    Ok((contents, rest))
}

fn parse(der: &[u8]) -> Result<ServerCertificate, Malformed> {
    let (cert, _) = expect(der, 0x30, "Certificate")?;
    let (tbs, _) = expect(cert, 0x30, "TBSCertificate")?;
    let mut r = tbs;
    let (tag, _, rest) = tlv(r)?;
    if tag == 0xA0 {
        r = rest; // version
    }
    let (_, r) = expect(r, 0x02, "serialNumber")?;
    let (_, r) = expect(r, 0x30, "signature AlgorithmIdentifier")?;
    let (issuer, r) = expect(r, 0x30, "issuer Name")?;
    let (validity, r) = expect(r, 0x30, "validity")?;
    let (subject, r) = expect(r, 0x30, "subject Name")?;
    let (_, mut r) = expect(r, 0x30, "subjectPublicKeyInfo")?;
    let (not_before, validity) = time(validity)?;
    let (not_after, _) = time(validity)?;
    let mut dns_names = Vec::new();
    while !r.is_empty() {
        let (tag, contents, rest) = tlv(r)?;
        r = rest;
        if tag != 0xA3 {
            continue; // issuerUniqueID, subjectUniqueID
        }
        let (mut exts, _) = expect(contents, 0x30, "Extensions")?;
        while !exts.is_empty() {
            let (ext, rest) = expect(exts, 0x30, "Extension")?;
            exts = rest;
            let (oid, ext) = expect(ext, 0x06, "extnID")?;
            if oid != [0x55, 0x1D, 0x11] {
                continue; // only subjectAltName
            }
            let (tag, _, after) = tlv(ext)?;
            let ext = if tag == 0x01 { after } else { ext }; // critical
            let (value, _) = expect(ext, 0x04, "extnValue")?;
            let (mut names, _) = expect(value, 0x30, "GeneralNames")?;
            while !names.is_empty() {
                let (tag, name, rest) = tlv(names)?;
                names = rest;
                match tag {
                    0x82 => dns_names.push(String::from_utf8_lossy(name).into_owned()),
                    0x87 => match name.len() {
                        4 => dns_names
                            .push(IpAddr::from(<[u8; 4]>::try_from(name).unwrap_or_default()).to_string()),
                        16 => dns_names
                            .push(IpAddr::from(<[u8; 16]>::try_from(name).unwrap_or_default()).to_string()),
                        _ => {} // a name constraint's address/mask, not a name
                    },
                    _ => {} // e-mail, URI, directory name…
                }
            }
        }
    }
    Ok(ServerCertificate {
        subject: name(subject)?,
        issuer: name(issuer)?,
        dns_names,
        not_before,
        not_after,
        self_signed: subject == issuer,
        der: der.to_vec(),
    })
}

/// UTCTime or GeneralizedTime (DER: `YYMMDDHHMMSSZ`, `YYYYMMDDHHMMSSZ`).
fn time(input: &[u8]) -> Result<(DateTime<Utc>, &[u8]), Malformed> {
    let (tag, contents, rest) = tlv(input)?;
    let text = std::str::from_utf8(contents).map_err(|_| malformed("a time that is not text"))?;
    let digits = text
        .strip_suffix('Z')
        .ok_or_else(|| malformed("a time not in UTC"))?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("a bad validity time"));
    }
    let (year, md) = match tag {
        0x17 if digits.len() == 12 => {
            let yy: i32 = digits[..2].parse().map_err(|_| malformed("a bad UTCTime"))?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        0x18 if digits.len() == 14 => (
            digits[..4]
                .parse()
                .map_err(|_| malformed("a bad GeneralizedTime"))?,
            &digits[4..],
        ),
        _ => {
            return Err(malformed(
                "a validity time that is not UTCTime or GeneralizedTime",
            ));
        }
    };
    // Ten ASCII digits: MMDDHHMMSS.
    let field = |i: usize| md[i..i + 2].parse::<u32>().unwrap_or(99);
    let at = NaiveDate::from_ymd_opt(year, field(0), field(2))
        .and_then(|d| d.and_hms_opt(field(4), field(6), field(8).min(59)))
        .ok_or_else(|| malformed("an impossible validity time"))?;
    Ok((at.and_utc(), rest))
}

/// A Name as `CN=…, O=…` in certificate order (a multi-valued RDN joined with `+`).
fn name(mut rdns: &[u8]) -> Result<String, Malformed> {
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let (mut set, rest) = expect(rdns, 0x31, "RelativeDistinguishedName")?;
        rdns = rest;
        let mut rdn = Vec::new();
        while !set.is_empty() {
            let (atv, rest) = expect(set, 0x30, "AttributeTypeAndValue")?;
            set = rest;
            let (oid, atv) = expect(atv, 0x06, "attribute type")?;
            let (tag, value, _) = tlv(atv)?;
            let Some(value) = string(tag, value) else {
                continue; // not a string (rare): leave it out
            };
            rdn.push(format!("{}={value}", attribute(oid)));
        }
        if !rdn.is_empty() {
            parts.push(rdn.join("+"));
        }
    }
    Ok(parts.join(", "))
}

fn attribute(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x09] => "STREET".into(),
        [0x55, 0x04, 0x0A] => "O".into(),
        [0x55, 0x04, 0x0B] => "OU".into(),
        [0x55, 0x04, 0x05] => "SERIALNUMBER".into(),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xF2, 0x2C, 0x64, 0x01, 0x19] => "DC".into(),
        [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01] => "E".into(),
        other => dotted(other),
    }
}

/// An OBJECT IDENTIFIER in dotted form.
fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7F);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    let text: Vec<String> = arcs.iter().map(u64::to_string).collect();
    format!("OID.{}", text.join("."))
}

/// A directory string's text.
fn string(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, VisibleString, NumericString
        0x0C | 0x13 | 0x16 | 0x1A | 0x12 => Some(String::from_utf8_lossy(value).into_owned()),
        // TeletexString: in practice Latin-1
        0x14 => Some(value.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE
        0x1E => Some(String::from_utf16_lossy(
            &value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect::<Vec<_>>(),
        )),
        // UniversalString: UTF-32BE
        0x1C => Some(
            value
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{FFFD}'))
                .collect(),
        ),
        _ => None,
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3F) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(names: &[&str], dn: &[(rcgen::DnType, &str)]) -> rcgen::CertificateParams {
        let mut p =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (ty, value) in dn {
            p.distinguished_name.push(ty.clone(), *value);
        }
        p
    }

    #[test]
    fn reads_subject_issuer_names_and_validity_of_a_ca_signed_certificate() {
        let mut ca = params(
            &[],
            &[
                (rcgen::DnType::CommonName, "Root"),
                (rcgen::DnType::OrganizationName, "Acme"),
            ],
        );
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
        let mut leaf = params(
            &["db.acme.test", "*.erp.acme.test", "10.0.0.7", "fe80::1"],
            &[
                (rcgen::DnType::CountryName, "DE"),
                (rcgen::DnType::CommonName, "Grüße DB"),
                (rcgen::DnType::OrganizationalUnitName, "IT"),
            ],
        );
        leaf.not_before = rcgen::date_time_ymd(2024, 2, 29);
        leaf.not_after = rcgen::date_time_ymd(2051, 1, 2); // GeneralizedTime from 2050 on
        let cert = leaf
            .signed_by(&rcgen::KeyPair::generate().unwrap(), &*ca)
            .unwrap();
        let c = ServerCertificate::from_der(cert.der()).unwrap();
        assert_eq!(c.subject, "C=DE, CN=Grüße DB, OU=IT");
        assert_eq!(c.issuer, "CN=Root, O=Acme");
        assert!(!c.self_signed);
        assert_eq!(
            c.dns_names,
            ["db.acme.test", "*.erp.acme.test", "10.0.0.7", "fe80::1"]
        );
        assert_eq!(c.not_before.to_rfc3339(), "2024-02-29T00:00:00+00:00");
        assert_eq!(c.not_after.to_rfc3339(), "2051-01-02T00:00:00+00:00");
        assert!(c.is_valid_for("DB.acme.test."));
        assert!(c.is_valid_for("x.erp.acme.test"));
        assert!(!c.is_valid_for("x.y.erp.acme.test"));
        assert!(!c.is_valid_for("erp.acme.test"));
        assert!(c.is_valid_for("10.0.0.7"));
        assert!(c.is_valid_for("[fe80::1]"));
        assert!(!c.is_valid_for("10.0.0.8"));
        assert_eq!(c.pem(), cert.pem().replace("\r\n", "\n"));
        let shown = c.to_string();
        assert!(
            shown.contains("issuer CN=Root, O=Acme; valid for db.acme.test, *.erp.acme.test"),
            "{shown}"
        );
        assert!(shown.ends_with("expires 2051-01-02"), "{shown}");

        let root = ServerCertificate::from_der(ca.der()).unwrap();
        assert!(root.self_signed);
        assert!(root.dns_names.is_empty());
        assert!(
            root.to_string()
                .contains("issuer the same — self-signed; valid for no host name"),
            "{root}"
        );
    }

    #[test]
    fn expired_and_unknown_attributes() {
        let mut p = params(
            &["old.test"],
            &[(rcgen::DnType::CustomDnType(vec![2, 5, 4, 97]), "VATDE-1")],
        );
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
        let cert = p.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
        let c = ServerCertificate::from_der(cert.der()).unwrap();
        assert_eq!(c.subject, "OID.2.5.4.97=VATDE-1");
        assert!(c.to_string().ends_with("expired 2002-01-01"), "{c}");
    }

    #[test]
    fn malformed_der_is_an_error_not_a_panic() {
        let cert = params(&["x.test"], &[(rcgen::DnType::CommonName, "x")])
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let der = cert.der().to_vec();
        for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
            assert!(ServerCertificate::from_der(&der[..cut]).is_err(), "cut at {cut}");
        }
        assert!(ServerCertificate::from_der(b"not a certificate").is_err());
        // Every single-byte corruption either parses or errors; none panics.
        for i in 0..der.len() {
            let mut bad = der.clone();
            bad[i] ^= 0xFF;
            let _ = ServerCertificate::from_der(&bad);
        }
    }

    #[test]
    fn base64_and_addresses() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(
            split_host_port("db.example.com:1500"),
            ("db.example.com".into(), 1500)
        );
        assert_eq!(
            split_host_port("db.example.com,1500"),
            ("db.example.com".into(), 1500)
        );
        assert_eq!(split_host_port("db.example.com"), ("db.example.com".into(), 1433));
        assert_eq!(split_host_port("[::1]:1500"), ("::1".into(), 1500));
        assert_eq!(split_host_port("::1"), ("::1".into(), 1433));
        assert_eq!(split_host_port("127.0.0.1:9"), ("127.0.0.1".into(), 9));
    }
}
