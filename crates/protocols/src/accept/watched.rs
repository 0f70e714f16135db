//! [`Watched`]: a client socket with the idle-frame and write deadlines. Once bytes of a frame arrive, the
//! connection has `idle_frame` to finish it (the driver says so with [`Watched::frame_finished`]); a write the
//! client does not take for `write` fails. Either way the socket reports `TimedOut` and the driver ends the
//! connection, so neither a half-sent frame nor a subscriber that stopped reading holds memory or a slot.
//!
//! What the unfinished frame holds counts against the process-wide [budget](super::budget).
//!
//! A frame counts as started when a read returns bytes while no frame was pending; a driver that cannot tell
//! whether its decoder holds the start of a next frame says it does not, which leaves at most the rest of that
//! one read unwatched.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant, Sleep};

use super::budget::Held;
use super::Deadlines;

/// Whether a clock runs, and since when.
#[derive(Clone, Copy)]
enum Since {
    Stopped,
    /// Started, but not yet read: a frame that a busy connection finishes from bytes already received never
    /// waits, so it never needs the time (a clock reading per message was 1.5 % of gatewayd under Goomerang).
    Started,
    /// Read at the first wait after the start, a moment after the bytes that started it.
    At(Instant),
}

/// One deadline that runs while something is pending.
struct Clock {
    /// `None`: the clock never runs out.
    limit: Option<Duration>,
    since: Since,
    /// Made the first time the clock must wake the task, then reset: idle sockets keep none.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Clock {
    fn new(limit: Option<Duration>) -> Clock {
        Clock {
            limit,
            since: Since::Stopped,
            timer: None,
        }
    }

    fn start(&mut self) {
        if let Since::Stopped = self.since {
            self.since = Since::Started;
        }
    }

    fn stop(&mut self) {
        self.since = Since::Stopped;
    }

    /// Whether the clock has run out; if not, `cx` is woken when it does. Called when the socket has to wait.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(limit) = self.limit else {
            return false;
        };
        let since = match self.since {
            Since::Stopped => return false,
            Since::Started => {
                let now = Instant::now();
                self.since = Since::At(now);
                now
            }
            Since::At(since) => since,
        };
        let deadline = since + limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

/// A socket under the idle-frame and write deadlines.
pub struct Watched<S> {
    inner: S,
    frame: Clock,
    write: Clock,
    /// The bytes of the unfinished frame, counted against the process-wide budget; `None` when frames are not
    /// watched.
    held: Option<Held>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, deadlines: &Deadlines) -> Watched<S> {
        Watched {
            inner,
            frame: Clock::new(Some(deadlines.idle_frame())),
            write: Clock::new(Some(deadlines.write())),
            held: Some(Held::default()),
        }
    }

    /// Only the write deadline, for a driver that cannot tell where frames end (hyper's HTTP/2, which bounds
    /// unfinished frames with its keep-alive ping instead).
    pub fn writes_only(inner: S, deadlines: &Deadlines) -> Watched<S> {
        Watched {
            inner,
            frame: Clock::new(None),
            write: Clock::new(Some(deadlines.write())),
            held: None,
        }
    }

    /// The driver finished at least one frame; `unfinished_left` says its decoder already holds the start of
    /// another, whose clock starts now.
    pub fn frame_finished(&mut self, unfinished_left: bool) {
        self.frame.since = if unfinished_left {
            Since::Started
        } else {
            Since::Stopped
        };
        if let Some(held) = &mut self.held {
            held.release();
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if read > 0 {
                    this.frame.start();
                    if let Some(Err(exhausted)) = this.held.as_mut().map(|held| held.add(read)) {
                        return Poll::Ready(Err(io::Error::other(exhausted)));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.frame.poll_expired(cx) => Poll::Ready(Err(timed_out(
                "frame not finished before the idle-frame deadline",
            ))),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    /// Runs one write step: the write clock runs while the client does not take bytes.
    fn step<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Pending => {
                self.write.start();
                if self.write.poll_expired(cx) {
                    Poll::Ready(Err(timed_out(
                        "client did not read before the write deadline",
                    )))
                } else {
                    Poll::Pending
                }
            }
            ready => {
                self.write.stop();
                ready
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .step(cx, |inner, cx| inner.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .step(cx, |inner, cx| inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().step(cx, |inner, cx| inner.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().step(cx, |inner, cx| inner.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn deadlines() -> Deadlines {
        Deadlines {
            pre_auth_ms: 1_000,
            idle_frame_ms: 100,
            write_ms: 100,
        }
    }

    #[tokio::test]
    async fn an_unfinished_frame_times_out_and_a_finished_one_does_not() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut watched = Watched::new(server, &deadlines());
        let mut buf = [0u8; 8];
        client.write_all(b"ab").await.unwrap();
        assert_eq!(watched.read(&mut buf).await.unwrap(), 2);
        watched.frame_finished(false);
        // Nothing pending: silence is not an unfinished frame.
        let idle = tokio::time::timeout(Duration::from_millis(300), watched.read(&mut buf)).await;
        assert!(idle.is_err());
        client.write_all(b"c").await.unwrap();
        assert_eq!(watched.read(&mut buf).await.unwrap(), 1);
        let error = watched.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_write_the_client_does_not_take_times_out() {
        let (_client, server) = tokio::io::duplex(8);
        let mut watched = Watched::new(server, &deadlines());
        let error = watched.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
