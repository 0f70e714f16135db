//! How much a byte-stream connection reads next: large reads while data keeps coming, small ones once a read
//! left room unfilled (the socket was emptied), so an idle connection waits without pinning a large buffer.
//! Behind TLS the small reads are smaller still: they copy from the TLS library's decrypted buffer, which reads
//! the socket in its own size, so their size costs no system calls.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Read size after a read that emptied the socket.
const IDLE_READ: usize = 512;
/// Read size after a read that emptied the TLS library's buffer (a STOMP heart-beat or an MQTT PINGREQ fits).
const IDLE_READ_TLS: usize = 64;

/// The read size of one connection.
#[derive(Debug)]
pub struct ReadSize {
    /// Read size while data keeps coming.
    chunk: usize,
    /// Read size once a read left room unfilled.
    idle: usize,
    /// The last read filled all the room it was given, so more input is probably waiting.
    busy: bool,
}

impl ReadSize {
    /// Reads straight from a socket.
    pub fn new(chunk: usize) -> ReadSize {
        ReadSize {
            chunk,
            idle: IDLE_READ,
            busy: false,
        }
    }

    /// Reads from a TLS stream, which buffers what it decrypted.
    pub fn behind_tls(chunk: usize) -> ReadSize {
        ReadSize {
            idle: IDLE_READ_TLS,
            ..ReadSize::new(chunk)
        }
    }

    /// Reads from `stream`, appending to `buf`, with room for `chunk` bytes when the last read filled its room
    /// and for the idle size otherwise; `Ok(0)` at the end of input.
    pub async fn read<R: AsyncRead + Unpin>(
        &mut self,
        stream: &mut R,
        buf: &mut BytesMut,
    ) -> io::Result<usize> {
        let room = self.prepare(buf);
        let read = stream.read_buf(buf).await?;
        self.record(read, room);
        Ok(read)
    }

    /// Whether the last read filled its room.
    pub(super) fn busy(&self) -> bool {
        self.busy
    }

    /// Notes that a read given `room` bytes of room returned `read`.
    pub(super) fn record(&mut self, read: usize, room: usize) {
        self.busy = read == room;
    }

    /// Makes room in `buf` for the next read (an empty buffer grown by a burst is given back first when not
    /// busy). Returns the room made.
    pub(super) fn prepare(&self, buf: &mut BytesMut) -> usize {
        if !self.busy && buf.is_empty() && buf.capacity() > self.idle {
            *buf = BytesMut::new();
        }
        buf.reserve(if self.busy { self.chunk } else { self.idle });
        buf.capacity() - buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_until_a_read_fills_its_room_and_small_again_after_one_does_not() {
        let mut size = ReadSize::new(16 << 10);
        let mut buf = BytesMut::new();
        let burst = vec![7u8; 64 << 10];
        let first = size.read(&mut &burst[..], &mut buf).await.expect("read");
        assert!((IDLE_READ..16 << 10).contains(&first), "{first}");
        buf.clear();
        let second = size.read(&mut &burst[..], &mut buf).await.expect("read");
        assert!(second >= 16 << 10, "a busy connection reads {second}");
        buf.clear();
        size.read(&mut &b"0123456789"[..], &mut buf)
            .await
            .expect("read");
        buf.clear();
        let idle = size.read(&mut &burst[..], &mut buf).await.expect("read");
        assert!(idle < 16 << 10, "an idle connection reads {idle}");
    }

    #[tokio::test]
    async fn behind_tls_an_idle_read_is_a_few_bytes_and_a_busy_one_a_chunk() {
        let mut size = ReadSize::behind_tls(16 << 10);
        let mut buf = BytesMut::new();
        let burst = vec![7u8; 64 << 10];
        let first = size.read(&mut &burst[..], &mut buf).await.expect("read");
        assert!((1..=IDLE_READ_TLS).contains(&first), "{first}");
        buf.clear();
        let second = size.read(&mut &burst[..], &mut buf).await.expect("read");
        assert!(second >= 16 << 10, "a busy connection reads {second}");
    }
}
