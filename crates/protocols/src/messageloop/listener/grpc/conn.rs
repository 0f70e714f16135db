//! One accepted gRPC connection before hyper takes it: its listener slot taken, the TLS handshake and the HTTP/2
//! preface read under the pre-auth deadline, and the socket (read ahead, its writes watched) that gives hyper the
//! preface back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use core_bus::Protocol;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::either::Either;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::{Shared, NAME};
use crate::accept::{self, Accepted, ReadAhead, Watched};
use crate::Slot;

/// What the accept path needs to hand connections to [`serve`](super::serve).
pub(super) struct Accepting {
    pub(super) shared: Arc<Shared>,
    pub(super) tls: Option<Arc<tokio_rustls::TlsAcceptor>>,
    /// Connections whose TLS handshake and HTTP/2 preface are done, to be served.
    pub(super) ready: mpsc::Sender<Conn>,
}

impl Accepting {
    /// Takes one of the listener's connection slots at accept, or refuses the socket.
    pub(super) fn admit(&self, accepted: Accepted) -> Option<impl Future<Output = ()>> {
        let settings = self.shared.settings.load_full();
        let slot = match self.shared.services.connections.reserve(
            Protocol::MessageLoop,
            NAME,
            settings.limits.max_connections,
        ) {
            Ok(slot) => slot,
            Err(full) => {
                tracing::debug!(peer = %accepted.peer, listener = NAME, "{full}");
                return None;
            }
        };
        let (tls, ready) = (self.tls.clone(), self.ready.clone());
        let shutdown = self.shared.services.shutdown.clone();
        Some(async move {
            let peer = accepted.peer;
            let info = TcpConnectInfo {
                local_addr: accepted.stream.local_addr().ok(),
                remote_addr: Some(peer),
            };
            let deadline = accepted.pre_auth_deadline;
            let io = match tls {
                None => Either::Left(accepted.stream),
                Some(acceptor) => {
                    match accept::handshake(
                        NAME,
                        acceptor.accept(accepted.stream),
                        deadline,
                        &shutdown,
                    )
                    .await
                    {
                        Ok(stream) => Either::Right(Box::new(stream)),
                        Err(error) => {
                            tracing::debug!(%peer, %error, listener = NAME, "TLS handshake");
                            return;
                        }
                    }
                }
            };
            let mut io = Watched::writes_only(ReadAhead::new(io, READ_AHEAD), &settings.deadlines);
            if let Err(error) =
                accept::handshake(NAME, read_preface(&mut io), deadline, &shutdown).await
            {
                tracing::debug!(%peer, %error, listener = NAME, "HTTP/2 preface");
                return;
            }
            let conn = Conn {
                io,
                replay: PREFACE.len(),
                info,
                _slot: slot,
            };
            let _ = ready.send(conn).await;
        })
    }
}

/// How much a busy connection reads per system call. h2 reads into a buffer of 8 KiB, which makes a publisher's
/// turn (and so the batch its subscribers write) about 8 messages of 1 KiB; read ahead, a turn takes what one
/// 64 KiB read brought.
const READ_AHEAD: usize = 64 << 10;

/// The first bytes of every HTTP/2 connection (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the client's connection preface: a client that does not send it is not an HTTP/2 client.
async fn read_preface(io: &mut Watched<ReadAhead<Io>>) -> std::io::Result<()> {
    let mut preface = [0u8; PREFACE.len()];
    io.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not an HTTP/2 connection preface",
        ));
    }
    Ok(())
}

/// The accepted socket: TCP, or TLS on it (boxed: it is large, and most connections are plain).
type Io = Either<TcpStream, Box<tokio_rustls::server::TlsStream<TcpStream>>>;

/// One accepted connection with its addresses for `Request::remote_addr`. It holds its listener slot until hyper
/// drops it.
pub(super) struct Conn {
    io: Watched<ReadAhead<Io>>,
    /// How many bytes of [`PREFACE`], read by the accept path, are still to be given to hyper.
    replay: usize,
    info: TcpConnectInfo,
    _slot: Slot,
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.replay > 0 {
            let start = PREFACE.len() - this.replay;
            let n = this.replay.min(buf.remaining());
            buf.put_slice(&PREFACE[start..start + n]);
            this.replay -= n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    /// hyper writes a DATA frame's header and its payload in one call when the connection takes vectored writes;
    /// otherwise it copies payloads of up to 1 KiB and writes larger ones on their own.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
