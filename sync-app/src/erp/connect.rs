//! Addresses and TCP: name resolution in `IP Address Preference` order, one address after
//! the other (or all at once with `MultiSubnetFailover=True`), all within `Connect
//! Timeout`; and a PRELOGIN probe that asks the server what encryption it offers.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures::future::select_ok;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::SourceError;
use super::ado::IpPreference;

/// PRELOGIN `ENCRYPTION` answers (MS-TDS 2.2.6.5).
pub(crate) const ENCRYPT_NOT_SUP: u8 = 2;
/// The server forces encryption.
pub(crate) const ENCRYPT_REQ: u8 = 3;

fn host_port(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

async fn until<T>(
    deadline: Option<Instant>,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d.into(), fut)
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "Connect Timeout reached"))),
        None => fut.await,
    }
}

fn waited(deadline: Option<Instant>, started: Instant) -> String {
    match deadline {
        Some(d) => format!(
            "no answer within {} s (Connect Timeout)",
            d.saturating_duration_since(started).as_secs_f64().round()
        ),
        None => "no answer".into(),
    }
}

/// The host's addresses, in the preferred order (an IP address is itself).
pub(crate) async fn resolve(
    host: &str,
    preference: IpPreference,
    deadline: Option<Instant>,
) -> Result<Vec<IpAddr>, SourceError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let started = Instant::now();
    let found = until(deadline, async {
        Ok(tokio::net::lookup_host((host, 0)).await?.collect::<Vec<_>>())
    })
    .await
    .map_err(|e| SourceError::Unreachable {
        addr: host.to_string(),
        reason: if e.kind() == io::ErrorKind::TimedOut {
            format!("the name could not be resolved: {}", waited(deadline, started))
        } else {
            format!("the name could not be resolved: {e}")
        },
    })?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for a in found {
        if !ips.contains(&a.ip()) {
            ips.push(a.ip());
        }
    }
    match preference {
        IpPreference::Ipv4First => ips.sort_by_key(|ip| ip.is_ipv6()),
        IpPreference::Ipv6First => ips.sort_by_key(|ip| ip.is_ipv4()),
        IpPreference::PlatformDefault => {}
    }
    if ips.is_empty() {
        return Err(SourceError::Unreachable {
            addr: host.to_string(),
            reason: "the name resolves to no address".into(),
        });
    }
    Ok(ips)
}

async fn one(ip: IpAddr, port: u16, deadline: Option<Instant>) -> io::Result<TcpStream> {
    let tcp = until(deadline, TcpStream::connect((ip, port))).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// A TCP connection to one of `ips`: with `parallel` (MultiSubnetFailover) to all at once,
/// keeping the first that answers; otherwise one after the other.
pub(crate) async fn tcp(
    ips: &[IpAddr],
    port: u16,
    parallel: bool,
    deadline: Option<Instant>,
) -> Result<TcpStream, SourceError> {
    let started = Instant::now();
    let label = || {
        ips.iter()
            .map(|ip| host_port(*ip, port))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let describe = |e: &io::Error| {
        if e.kind() == io::ErrorKind::TimedOut {
            waited(deadline, started)
        } else {
            e.to_string()
        }
    };
    if parallel && ips.len() > 1 {
        let attempts = ips.iter().map(|ip| Box::pin(one(*ip, port, deadline)));
        return match select_ok(attempts).await {
            Ok((tcp, _rest)) => Ok(tcp), // the others are dropped, i.e. abandoned
            Err(e) => Err(SourceError::Unreachable {
                addr: label(),
                reason: format!("no address answered (MultiSubnetFailover): {}", describe(&e)),
            }),
        };
    }
    let mut reasons = Vec::new();
    for ip in ips {
        match one(*ip, port, deadline).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => {
                let timed_out = e.kind() == io::ErrorKind::TimedOut;
                reasons.push(format!("{}: {}", host_port(*ip, port), describe(&e)));
                if timed_out {
                    break;
                }
            }
        }
    }
    Err(SourceError::Unreachable {
        addr: label(),
        reason: reasons.join("; "),
    })
}

/// PRELOGIN `ENCRYPTION` request: encryption for the login only.
pub(crate) const ENCRYPT_OFF: u8 = 0;
/// PRELOGIN `ENCRYPTION` request: encryption for everything.
pub(crate) const ENCRYPT_ON: u8 = 1;

/// Sends a PRELOGIN asking for no encryption (`OFF`) and returns the server's answer
/// (`OFF` 0, `ON` 1, `NOT_SUP` 2, `REQ` 3), then closes the connection.
pub(crate) async fn prelogin_encryption(mut tcp: TcpStream, deadline: Option<Instant>) -> io::Result<u8> {
    // The probe is short: give it at most 5 s of the Connect Timeout.
    let cap = Instant::now() + Duration::from_secs(5);
    let deadline = Some(deadline.map_or(cap, |d| d.min(cap)));
    until(deadline, prelogin(&mut tcp, ENCRYPT_OFF)).await
}

/// One PRELOGIN exchange on a fresh connection: asks for `encryption` and returns the
/// server's `ENCRYPTION` answer. The connection stays open (a TLS handshake may follow).
pub(crate) async fn prelogin(tcp: &mut TcpStream, encryption: u8) -> io::Result<u8> {
    // Options: VERSION (6 bytes) and ENCRYPTION (1 byte), then the terminator.
    let mut payload = vec![0x00, 0, 11, 0, 6, 0x01, 0, 17, 0, 1, 0xFF];
    payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // client version
    payload.push(encryption);
    let total = (8 + payload.len()) as u16;
    let mut packet = vec![0x12, 0x01, (total >> 8) as u8, total as u8, 0, 0, 1, 0];
    packet.extend_from_slice(&payload);
    tcp.write_all(&packet).await?;
    let mut header = [0u8; 8];
    tcp.read_exact(&mut header).await?;
    let len = u16::from_be_bytes([header[2], header[3]]) as usize;
    let mut body = vec![0u8; len.saturating_sub(8)];
    tcp.read_exact(&mut body).await?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed PRELOGIN answer");
    let mut i = 0;
    while i + 5 <= body.len() && body[i] != 0xFF {
        let (token, offset) = (body[i], u16::from_be_bytes([body[i + 1], body[i + 2]]) as usize);
        if token == 0x01 {
            return body.get(offset).copied().ok_or_else(bad);
        }
        i += 5;
    }
    Err(bad())
}
