//! The chanserv side of a stream (docs/protocols/chanserv.md, "Requests and sources"): [`RequestReader`] takes the
//! one request frame a client writes on its master stream, and [`Outbox`] holds encoded frames (source
//! announcements on the master, items on a frame channel) until the stream's send credit lets them go.
//!
//! A Go writer sends the length prefix and the body as two DATA ops; the outbox coalesces them, which is legal
//! because the reader sees a byte stream (docs/protocols/chanserv.md, "Examples").

use bytes::{Buf, Bytes, BytesMut};

use super::astranet::{Addr, Link, StreamError, StreamId};
use super::codec::frame::{self, Compression, FrameDecoder, FrameError};

/// Reads the request body: the first frame of a master stream. The Go client writes nothing after it, so anything
/// that follows is ignored.
#[derive(Debug)]
pub struct RequestReader {
    decoder: FrameDecoder,
    buf: BytesMut,
    done: bool,
}

impl RequestReader {
    pub fn new(decoder: FrameDecoder) -> RequestReader {
        RequestReader {
            decoder,
            buf: BytesMut::new(),
            done: false,
        }
    }

    /// Stream bytes in; the request body once its frame is complete (exactly once).
    pub fn push(&mut self, data: &[u8]) -> Result<Option<Bytes>, FrameError> {
        if self.done {
            return Ok(None);
        }
        self.buf.extend_from_slice(data);
        let body = self.decoder.decode(&mut self.buf)?;
        if body.is_some() {
            self.done = true;
            self.buf = BytesMut::new();
        }
        Ok(body)
    }

    /// The stream ended. `Err(Truncated)` if it ended inside the request frame; `Ok(())` if the request was read
    /// or the client sent nothing at all.
    pub fn eof(&mut self) -> Result<(), FrameError> {
        if self.done {
            return Ok(());
        }
        self.decoder.decode_eof(&mut self.buf).map(|_| ())
    }
}

/// Encoded frames waiting for a stream's send credit.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: BytesMut,
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox::default()
    }

    /// Queues a plain frame.
    pub fn push_frame(&mut self, payload: &[u8]) -> Result<(), FrameError> {
        frame::encode(payload, &mut self.buf)
    }

    /// Queues [`frame::REFUSAL_PREFIX`]: the Go client fails its `LookupAndPost` with "wrong frame size".
    pub fn push_refusal(&mut self) {
        self.buf.extend_from_slice(&frame::REFUSAL_PREFIX);
    }

    /// Queues a source announcement (header frame + address frame) on a master stream.
    pub fn push_source(&mut self, header: &[u8], addr: Addr) -> Result<(), FrameError> {
        frame::encode_source(header, addr, &mut self.buf)
    }

    /// Queues one item on a frame channel, compressed per [`frame::encode_item`].
    pub fn push_item(&mut self, item: &[u8], compression: Compression) -> Result<(), FrameError> {
        frame::encode_item(item, compression, &mut self.buf)
    }

    /// Bytes not yet handed to the link.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Hands the link as many pending bytes as the stream's credit allows; returns how many. Call again on
    /// [`crate::chanserv::astranet::Event::Writable`].
    pub fn flush(&mut self, link: &mut Link, stream: StreamId) -> Result<usize, StreamError> {
        let mut sent = 0;
        while !self.buf.is_empty() {
            let n = link.send(stream, &self.buf)?;
            if n == 0 {
                break;
            }
            self.buf.advance(n);
            sent += n;
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_reader_returns_the_first_frame_once() {
        let mut reader = RequestReader::new(FrameDecoder::default());
        assert_eq!(reader.push(&[8, 0, 0, 0]), Ok(None));
        assert_eq!(reader.push(&[0, 0, 0, 0, b'h', b'e']), Ok(None));
        assert_eq!(
            reader.push(b"llo-cs"),
            Ok(Some(Bytes::from_static(b"hello-cs")))
        );
        assert_eq!(reader.push(&[1, 0, 0, 0, 0, 0, 0, 0, b'x']), Ok(None));
        assert_eq!(reader.eof(), Ok(()));
    }

    #[test]
    fn request_reader_reports_truncation_and_oversize() {
        let mut reader = RequestReader::new(FrameDecoder::default());
        assert_eq!(
            reader.eof(),
            Ok(()),
            "no request at all is not a truncated one"
        );
        reader.push(&[3, 0, 0, 0, 0, 0, 0, 0, b'a']).unwrap();
        assert_eq!(
            reader.eof(),
            Err(FrameError::Truncated { have: 9, need: 11 })
        );
        let mut reader = RequestReader::new(FrameDecoder::new(2));
        assert_eq!(
            reader.push(&[3, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::TooLarge { len: 3, limit: 2 })
        );
    }
}
