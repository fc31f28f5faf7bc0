//! TLS as SQL Server does it: a certificate (given or self-signed), the rustls server
//! configuration, and the framing that carries the TLS handshake inside PRELOGIN packets.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::wire::packet::{HEADER_LEN, PKT_PRELOGIN, STATUS_EOM, STATUS_NORMAL};

/// The ALPN protocol id of TDS 8.0 (strict encryption).
pub(crate) const ALPN_TDS_8: &[u8] = b"tds/8.0";

/// Why a certificate could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// Reading a PEM file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The PEM text holds no certificate or no private key.
    #[error("{0}")]
    Pem(String),
    /// Generating the self-signed certificate failed.
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("the certificate or key is not usable: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server's certificate chain and private key.
pub struct Identity {
    cert_pem: String,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("certificates", &self.certs.len())
            .finish_non_exhaustive()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            cert_pem: self.cert_pem.clone(),
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// A new self-signed certificate (ECDSA P-256) with subject `CN=<first name>` for
    /// `localhost`, `127.0.0.1`, `::1`, this machine's host name and `extra_names`.
    pub fn self_signed(extra_names: &[String]) -> Result<Identity, CertificateError> {
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        if let Ok(host) = gethostname::gethostname().into_string()
            && !host.is_empty()
            && !names.contains(&host)
        {
            names.push(host);
        }
        for name in extra_names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let mut params = rcgen::CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "fake-mssql");
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Identity::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// A certificate chain and its private key, both PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Identity, CertificateError> {
        let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertificateError::Pem(format!("bad certificate PEM: {e}")))?;
        if certs.is_empty() {
            return Err(CertificateError::Pem("no certificate in the PEM text".into()));
        }
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(|e| CertificateError::Pem(format!("bad key PEM: {e}")))?
            .ok_or_else(|| CertificateError::Pem("no private key in the PEM text".into()))?;
        Ok(Identity {
            cert_pem: cert_pem.to_owned(),
            certs,
            key,
        })
    }

    /// Reads a PEM certificate chain and a PEM private key from files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Identity, CertificateError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| CertificateError::Read {
                path: path.display().to_string(),
                source,
            })
        };
        Identity::from_pem(&read(cert)?, &read(key)?)
    }

    /// The certificate chain as PEM (what a client trusts, e.g. `Server Certificate=`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// rustls configuration for TDS 7.x (TLS inside PRELOGIN) or, with `strict`, TDS 8.0.
    pub(crate) fn server_config(&self, strict: bool) -> Result<Arc<ServerConfig>, CertificateError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // SQL Server offers TLS 1.3 only with TDS 8.0; inside PRELOGIN it speaks TLS 1.2
        // (FreeTDS with GnuTLS breaks on 1.3 there).
        let versions: &[&rustls::SupportedProtocolVersion] = if strict {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS12]
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_single_cert(self.certs.clone(), self.key.clone_key())?;
        // Tickets would be written after the handshake, when a login-only client has
        // already gone back to plaintext.
        config.send_tls13_tickets = 0;
        if strict {
            config.alpn_protocols = vec![ALPN_TDS_8.to_vec()];
        }
        Ok(Arc::new(config))
    }
}

/// Carries TLS records inside PRELOGIN packets during the handshake (MS-TDS 3.3.5.2), and
/// passes them through unwrapped afterwards.
#[derive(Debug)]
pub(crate) struct PreloginFramed<S> {
    inner: S,
    wrapping: bool,
    /// Whether the client still wraps what it sends.
    read_wrapped: bool,
    /// Bytes of a bare TLS record read while looking for a packet header.
    unread: Vec<u8>,
    header: [u8; HEADER_LEN],
    header_filled: usize,
    /// Payload bytes left in the packet being read.
    remaining: usize,
    /// Payload written by TLS, framed on flush.
    pending: Vec<u8>,
    /// Framed bytes being written to `inner`.
    out: Vec<u8>,
    out_pos: usize,
    packet_id: u8,
}

impl<S> PreloginFramed<S> {
    pub(crate) fn new(inner: S) -> Self {
        PreloginFramed {
            inner,
            wrapping: true,
            read_wrapped: true,
            unread: Vec::new(),
            header: [0; HEADER_LEN],
            header_filled: 0,
            remaining: 0,
            pending: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            packet_id: 1,
        }
    }

    /// The handshake is over: from now on TLS records travel unwrapped.
    pub(crate) fn handshake_complete(&mut self) {
        self.wrapping = false;
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PreloginFramed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.drain(..n);
            return Poll::Ready(Ok(()));
        }
        if !this.wrapping || !this.read_wrapped {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        while this.remaining == 0 {
            let mut header = ReadBuf::new(&mut this.header[this.header_filled..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut header))?;
            let n = header.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(())); // EOF
            }
            this.header_filled += n;
            if (0x14..=0x17).contains(&this.header[0]) {
                // A bare TLS record: the client stopped wrapping before its last handshake
                // flight (tiberius sends its TLS 1.3 Finished unwrapped). Pass through.
                this.read_wrapped = false;
                let filled = std::mem::take(&mut this.header_filled);
                let n = filled.min(buf.remaining());
                buf.put_slice(&this.header[..n]);
                this.unread = this.header[n..filled].to_vec();
                return Poll::Ready(Ok(()));
            }
            if this.header_filled == HEADER_LEN {
                this.header_filled = 0;
                if this.header[0] != PKT_PRELOGIN {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "expected a PRELOGIN packet carrying TLS, got packet type {:#04x}",
                            this.header[0]
                        ),
                    )));
                }
                let len = usize::from(u16::from_be_bytes([this.header[2], this.header[3]]));
                this.remaining = len.saturating_sub(HEADER_LEN);
            }
        }
        let mut tmp = [0u8; 4096];
        let want = this.remaining.min(buf.remaining()).min(tmp.len());
        let mut chunk = ReadBuf::new(&mut tmp[..want]);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
        let n = chunk.filled().len();
        if n == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a PRELOGIN packet",
            )));
        }
        this.remaining -= n;
        buf.put_slice(chunk.filled());
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PreloginFramed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !this.wrapping {
            ready!(this.poll_drain(cx))?;
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.pending.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.pending.is_empty() && this.out_pos == this.out.len() {
            this.out.clear();
            this.out_pos = 0;
            const MAX_PAYLOAD: usize = 4096 - HEADER_LEN;
            let chunks = this.pending.len().div_ceil(MAX_PAYLOAD);
            for (i, chunk) in this.pending.chunks(MAX_PAYLOAD).enumerate() {
                let status = if i + 1 == chunks {
                    STATUS_EOM
                } else {
                    STATUS_NORMAL
                };
                let len = (chunk.len() + HEADER_LEN) as u16;
                this.out.push(PKT_PRELOGIN);
                this.out.push(status);
                this.out.extend_from_slice(&len.to_be_bytes());
                this.out.extend_from_slice(&[0, 0, this.packet_id, 0]);
                this.packet_id = this.packet_id.wrapping_add(1);
                this.out.extend_from_slice(chunk);
            }
            this.pending.clear();
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncWrite + Unpin> PreloginFramed<S> {
    /// Writes what is left of `out`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        Poll::Ready(Ok(()))
    }
}
