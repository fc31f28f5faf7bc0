//! A SQL Server Browser (MC-SQLR): answers UDP requests for a named instance with its TCP
//! port, as SQL Browser does on UDP 1434 for clients connecting to `host\INSTANCE`.

use tokio::net::UdpSocket;
use tracing::debug;

/// CLNT_BCAST_EX, CLNT_UCAST_EX (all instances) and CLNT_UCAST_INST (one instance).
const CLNT_BCAST_EX: u8 = 0x02;
const CLNT_UCAST_EX: u8 = 0x03;
const CLNT_UCAST_INST: u8 = 0x04;
/// SVR_RESP.
const SVR_RESP: u8 = 0x05;

/// The instance the browser announces.
#[derive(Debug, Clone)]
pub(crate) struct InstanceReply {
    pub(crate) server: String,
    pub(crate) instance: String,
    pub(crate) port: u16,
}

/// The answer to one browser request, or `None` when SQL Browser stays silent (an unknown
/// instance, a malformed request).
pub(crate) fn answer(request: &[u8], reply: &InstanceReply) -> Option<Vec<u8>> {
    let (&kind, rest) = request.split_first()?;
    match kind {
        CLNT_BCAST_EX | CLNT_UCAST_EX => {}
        CLNT_UCAST_INST => {
            let name = rest.split(|b| *b == 0).next().unwrap_or_default();
            let name = String::from_utf8_lossy(name);
            if !name.eq_ignore_ascii_case(&reply.instance) {
                return None;
            }
        }
        _ => return None,
    }
    let data = format!(
        "ServerName;{};InstanceName;{};IsClustered;No;Version;16.0.4165.4;tcp;{};;",
        reply.server, reply.instance, reply.port
    );
    let mut out = Vec::with_capacity(3 + data.len());
    out.push(SVR_RESP);
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.extend_from_slice(data.as_bytes());
    Some(out)
}

/// Answers requests until the task is aborted.
pub(crate) async fn serve(socket: UdpSocket, reply: InstanceReply) {
    let mut buf = [0u8; 1024];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        match answer(&buf[..n], &reply) {
            Some(response) => {
                debug!(%peer, instance = %reply.instance, "SQL Browser request answered");
                let _ = socket.send_to(&response, peer).await;
            }
            None => debug!(%peer, "SQL Browser request ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> InstanceReply {
        InstanceReply {
            server: "ERP01".into(),
            instance: "SQLEXPRESS".into(),
            port: 50123,
        }
    }

    #[test]
    fn answers_its_own_instance_only() {
        let mut req = vec![CLNT_UCAST_INST];
        req.extend_from_slice(b"sqlexpress\0");
        let a = answer(&req, &reply()).unwrap();
        assert_eq!(a[0], SVR_RESP);
        assert_eq!(usize::from(u16::from_le_bytes([a[1], a[2]])), a.len() - 3);
        let text = std::str::from_utf8(&a[3..]).unwrap();
        assert!(text.contains("InstanceName;SQLEXPRESS;"), "{text}");
        assert!(text.contains(";tcp;50123;"), "{text}");
        let mut other = vec![CLNT_UCAST_INST];
        other.extend_from_slice(b"OTHER\0");
        assert!(answer(&other, &reply()).is_none());
        assert!(answer(&[CLNT_UCAST_EX], &reply()).is_some());
        assert!(answer(&[], &reply()).is_none());
        assert!(answer(&[0x42], &reply()).is_none());
    }
}
