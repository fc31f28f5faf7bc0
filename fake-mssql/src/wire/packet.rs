//! Packet framing (MS-TDS 2.2.3): reading client messages, cutting server messages into
//! packets of the negotiated size.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Packet header size.
pub(crate) const HEADER_LEN: usize = 8;

/// Packet types (MS-TDS 2.2.3.1.1).
pub(crate) const PKT_SQL_BATCH: u8 = 0x01;
pub(crate) const PKT_RPC: u8 = 0x03;
pub(crate) const PKT_REPLY: u8 = 0x04;
pub(crate) const PKT_ATTENTION: u8 = 0x06;
pub(crate) const PKT_TRANSACTION: u8 = 0x0E;
pub(crate) const PKT_LOGIN7: u8 = 0x10;
/// SSPI message: the client's next authentication token (Windows logins).
#[cfg_attr(not(feature = "windows-auth"), allow(dead_code))]
pub(crate) const PKT_SSPI: u8 = 0x11;
pub(crate) const PKT_PRELOGIN: u8 = 0x12;

/// Client packet types we recognise (batch, pre-7 login, RPC, attention, bulk load,
/// transaction manager, LOGIN7, SSPI, PRELOGIN).
const KNOWN_PACKET_TYPES: [u8; 9] = [0x01, 0x02, 0x03, 0x06, 0x07, 0x0E, 0x10, 0x11, 0x12];

/// Packet status bits.
pub(crate) const STATUS_NORMAL: u8 = 0x00;
pub(crate) const STATUS_EOM: u8 = 0x01;

/// Packet sizes a server may negotiate (tiberius rejects anything outside).
pub(crate) const MIN_PACKET_SIZE: usize = 512;
pub(crate) const MAX_PACKET_SIZE: usize = 32_767;
pub(crate) const DEFAULT_PACKET_SIZE: usize = 4096;

/// Largest client message we accept (a request, not a result).
const MAX_MESSAGE_LEN: usize = 16 * 1024 * 1024;

pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
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
    buf: Vec<u8>,
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
            buf: Vec::with_capacity(256 * 1024 + 2 * MAX_PACKET_SIZE),
            packet_size: packet_size.clamp(MIN_PACKET_SIZE, MAX_PACKET_SIZE),
            start: 0,
            packet_id: 1,
            spid,
            open: false,
        }
    }

    /// Bytes buffered and not yet written.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes in the packet being filled (header included; 0 when none is open): what
    /// [`write_full_packets`](Self::write_full_packets) has to move to the buffer's start.
    pub(crate) fn open_len(&self) -> usize {
        if self.open { self.buf.len() - self.start } else { 0 }
    }

    fn open_packet(&mut self) {
        self.start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER_LEN]);
        self.open = true;
    }

    fn close_packet(&mut self, status: u8) {
        self.close_packet_at(self.buf.len(), status);
    }

    /// Closes the packet being filled so that it ends at `end`.
    fn close_packet_at(&mut self, end: usize, status: u8) {
        let len = end - self.start;
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

    /// Lets `write` append message bytes straight into the buffer (no copy through a scratch
    /// buffer: rows are encoded in place), then cuts packets where they overflowed.
    pub(crate) fn put_with<R>(&mut self, write: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        if !self.open {
            self.open_packet();
        }
        let result = write(&mut self.buf);
        while self.buf.len() - self.start > self.packet_size {
            let boundary = self.start + self.packet_size;
            self.close_packet_at(boundary, STATUS_NORMAL);
            // The next packet's header goes at the boundary; only the overflow moves.
            self.buf.splice(boundary..boundary, [0u8; HEADER_LEN]);
            self.start = boundary;
            self.open = true;
        }
        result
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
    async fn bytes_written_in_place_are_cut_into_packets_like_put() {
        for packet_size in [512usize, 4096, 32_767] {
            let (mut a, mut b) = (
                PacketWriter::new(packet_size, 7),
                PacketWriter::new(packet_size, 7),
            );
            let (mut sink_a, mut sink_b) = (Vec::new(), Vec::new());
            for i in 0..3_000usize {
                let row: Vec<u8> = (0..(i * 53) % 2_000).map(|x| (x ^ i) as u8).collect();
                a.put(&row);
                b.put_with(|buf| buf.extend_from_slice(&row));
                if a.buffered() > 50_000 {
                    a.write_full_packets(&mut sink_a).await.unwrap();
                    b.write_full_packets(&mut sink_b).await.unwrap();
                }
            }
            a.end_message(&mut sink_a).await.unwrap();
            b.end_message(&mut sink_b).await.unwrap();
            assert_eq!(sink_a, sink_b, "packet size {packet_size}");
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
}
