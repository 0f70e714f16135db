//! [`ReadAhead`]: a socket that reads ahead of a reader with a small buffer of its own (tungstenite's, a few KiB).
//! While each read fills the room it was given, more input is waiting, so the socket is read a [`ReadSize`]
//! chunk at a time into a buffer of this type's and the reader is served from it: one system call for many
//! messages. Once a read leaves room unfilled the buffer is given back and reads go straight into the
//! reader's buffer again, so an idle connection holds nothing here.
//!
//! In gatewayd it sits under [`Watched`](super::Watched), which sees the bytes as the reader takes them, so its
//! frame clock and budget count what the reader holds; what waits here is at most one chunk per connection.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::read_size::ReadSize;

/// A byte stream whose reads are batched while input keeps coming.
pub struct ReadAhead<S> {
    inner: S,
    /// Read, not yet taken by the reader; empty and without capacity unless a burst is being served.
    ahead: BytesMut,
    size: ReadSize,
}

impl<S> ReadAhead<S> {
    /// Reads of `chunk` bytes while input keeps coming.
    pub fn new(inner: S, chunk: usize) -> ReadAhead<S> {
        ReadAhead {
            inner,
            ahead: BytesMut::new(),
            size: ReadSize::new(chunk),
        }
    }

    /// Moves what waits in `ahead` into `out`, giving the buffer back once it is drained.
    fn serve(&mut self, out: &mut ReadBuf<'_>) {
        let n = self.ahead.len().min(out.remaining());
        out.put_slice(&self.ahead[..n]);
        self.ahead.advance(n);
        if self.ahead.is_empty() {
            self.ahead = BytesMut::new();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ahead.is_empty() && !this.size.busy() {
            // Quiet connection: straight into the reader's buffer; a read that fills it marks the socket busy.
            let room = out.remaining();
            let before = out.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
            this.size.record(out.filled().len() - before, room);
            return Poll::Ready(Ok(()));
        }
        if this.ahead.is_empty() {
            let room = this.size.prepare(&mut this.ahead);
            let read = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.ahead
            ))?;
            this.size.record(read, room);
        }
        this.serve(out);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A reader with a small buffer gets every byte in order whether the socket is busy or quiet, and a drained
    /// burst leaves nothing held.
    #[tokio::test]
    async fn serves_bursts_from_one_chunk_and_holds_nothing_once_quiet() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut reader = ReadAhead::new(server, 16 << 10);
        let burst: Vec<u8> = (0..64 << 10).map(|i| (i % 251) as u8).collect();
        client.write_all(&burst).await.expect("write");
        let mut got = Vec::new();
        let mut small = [0u8; 2048];
        let mut served_ahead = false;
        while got.len() < burst.len() {
            let n = reader.read(&mut small).await.expect("read");
            assert!(n > 0);
            got.extend_from_slice(&small[..n]);
            served_ahead |= !reader.ahead.is_empty();
        }
        assert_eq!(got, burst);
        assert!(served_ahead, "a busy socket is read a chunk at a time");
        client.write_all(b"tail").await.expect("write");
        let n = reader.read(&mut small).await.expect("read");
        assert_eq!(&small[..n], b"tail");
        assert_eq!(
            reader.ahead.capacity(),
            0,
            "a quiet connection holds no read-ahead"
        );
        drop(client);
        assert_eq!(reader.read(&mut small).await.expect("end"), 0);
    }
}
