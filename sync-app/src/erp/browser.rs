//! A SQL Server Browser client (MC-SQLR): asks UDP 1434 on the server's host which TCP
//! port a named instance listens on (`CLNT_UCAST_INST`: 0x04 + instance name; the answer
//! is `SVR_RESP`: 0x05, a length, and `ServerName;…;InstanceName;…;tcp;PORT;;`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures::future::select_ok;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// The SQL Server Browser's port.
pub const SQL_BROWSER_PORT: u16 = 1434;

const CLNT_UCAST_INST: u8 = 0x04;
const SVR_RESP: u8 = 0x05;
/// UDP may lose a datagram: ask again this often until the deadline.
const RESEND_EVERY: Duration = Duration::from_millis(1000);

/// The request for one instance.
pub fn request(instance: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(instance.len() + 2);
    out.push(CLNT_UCAST_INST);
    out.extend_from_slice(instance.as_bytes());
    out.push(0);
    out
}

/// The TCP port of `instance` in a browser's answer, if it announces one.
pub fn parse_response(response: &[u8], instance: &str) -> Option<u16> {
    let (&kind, rest) = response.split_first()?;
    if kind != SVR_RESP || rest.len() < 2 {
        return None;
    }
    let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
    let data = rest.get(2..2 + len).unwrap_or(&rest[2..]);
    let text = String::from_utf8_lossy(data);
    // Several instances are separated by `;;`; each is `key;value;key;value…`.
    for record in text.split(";;") {
        let fields: Vec<&str> = record.split(';').collect();
        let value = |key: &str| {
            fields
                .chunks(2)
                .find(|kv| kv.len() == 2 && kv[0].eq_ignore_ascii_case(key))
                .map(|kv| kv[1])
        };
        // A record without the instance's name is another instance's (or malformed).
        let name_matches = value("InstanceName").is_some_and(|n| n.eq_ignore_ascii_case(instance));
        if !name_matches {
            continue;
        }
        if let Some(port) = value("tcp").and_then(|p| p.trim().parse::<u16>().ok()) {
            return Some(port);
        }
    }
    None
}

async fn ask(ip: IpAddr, browser_port: u16, instance: &str, deadline: Instant) -> io::Result<u16> {
    let local: SocketAddr = match ip {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    // Connected: only the browser's own answers are read, and an ICMP "port unreachable"
    // comes back as ConnectionRefused instead of a silent wait.
    socket.connect((ip, browser_port)).await?;
    let req = request(instance);
    let mut buf = vec![0u8; 4096];
    loop {
        socket.send(&req).await?;
        let wait = (Instant::now() + RESEND_EVERY).min(deadline);
        loop {
            match tokio::time::timeout_at(wait, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(e),
                Ok(Ok(n)) => match parse_response(&buf[..n], instance) {
                    Some(port) => return Ok(port),
                    None => continue, // not for us, or no TCP listener announced
                },
            }
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer"));
        }
    }
}

/// Asks the browser on every address of the host at once; the first answer wins.
pub async fn resolve(
    ips: &[IpAddr],
    browser_port: u16,
    instance: &str,
    deadline: Instant,
) -> io::Result<u16> {
    if ips.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no address"));
    }
    let asks = ips
        .iter()
        .map(|ip| Box::pin(ask(*ip, browser_port, instance, deadline)));
    select_ok(asks).await.map(|(port, _)| port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_port_of_the_instance() {
        let data = b"ServerName;ERP01;InstanceName;SQLEXPRESS;IsClustered;No;Version;16.0;tcp;50123;;";
        let mut resp = vec![SVR_RESP];
        resp.extend_from_slice(&(data.len() as u16).to_le_bytes());
        resp.extend_from_slice(data);
        assert_eq!(parse_response(&resp, "sqlexpress"), Some(50123));
        assert_eq!(parse_response(&resp, "OTHER"), None);
        assert_eq!(parse_response(&resp[..5], "sqlexpress"), None);
        assert_eq!(parse_response(b"\x04abc", "x"), None);
        let np = b"ServerName;S;InstanceName;I;IsClustered;No;Version;16.0;np;\\\\S\\pipe\\sql;;";
        let mut resp = vec![SVR_RESP];
        resp.extend_from_slice(&(np.len() as u16).to_le_bytes());
        resp.extend_from_slice(np);
        assert_eq!(parse_response(&resp, "I"), None, "no tcp listener");
        assert_eq!(request("A"), vec![4, b'A', 0]);
    }
}
