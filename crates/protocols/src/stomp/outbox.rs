//! [`Outbox`]: the frames a session has encoded and the connection has yet to write, in one
//! buffer, so that any number of them leave with one write. Frame boundaries are kept for
//! transports that send each frame as a message of its own (WebSocket).

use bytes::{Bytes, BytesMut};
use core_bus::Envelope;

use super::bridge::{from_envelope, Delivered};
use super::codec::frame::{Command, Frame, Version};
use super::codec::writer::{encode, Written};

/// After a write at least this large the connection is busy, and its buffer is kept for the
/// next frames; after a smaller one it is given back, so an idle connection holds none.
const BUSY_WRITE: usize = 4 << 10;
/// A buffer larger than this (after a big frame) is given back in any case.
const KEEP_CAPACITY: usize = 256 << 10;

/// Encoded frames waiting to be written.
#[derive(Debug, Default)]
pub struct Outbox {
    bytes: BytesMut,
    /// End offset in `bytes` of each frame, in order.
    ends: Vec<usize>,
}

impl Outbox {
    /// Appends `frame` encoded for `version`.
    pub fn push(&mut self, frame: &Frame, version: Version) {
        let written = encode(frame, version, &mut self.bytes);
        log_dropped(written, frame.command);
        self.ends.push(self.bytes.len());
    }

    /// Appends the MESSAGE frame for `envelope`, encoded for `version`.
    pub fn push_message(
        &mut self,
        delivered: &Delivered<'_>,
        envelope: &Envelope,
        version: Version,
    ) {
        let written = from_envelope(delivered, envelope, version, &mut self.bytes);
        log_dropped(written, Command::Message);
        self.ends.push(self.bytes.len());
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Every frame, back to back.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the frames out one by one, each as its own buffer.
    pub fn split_frames(&mut self) -> impl Iterator<Item = Bytes> + '_ {
        let mut start = 0;
        let ends = std::mem::take(&mut self.ends);
        let bytes = &mut self.bytes;
        ends.into_iter().map(move |end| {
            let frame = bytes.split_to(end - start).freeze();
            start = end;
            frame
        })
    }

    /// Forgets what was written; see [`BUSY_WRITE`] for when the buffers are kept.
    pub fn clear(&mut self) {
        if self.bytes.len() >= BUSY_WRITE && self.bytes.capacity() <= KEEP_CAPACITY {
            self.bytes.clear();
            self.ends.clear();
        } else {
            *self = Outbox::default();
        }
    }
}

fn log_dropped(written: Written, command: Command) {
    if written.dropped_headers > 0 {
        tracing::debug!(
            dropped = written.dropped_headers,
            %command,
            "stomp: headers the session version cannot carry were left out"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stomp::bridge::message::head;
    use core_bus::{ConnectionId, Origin, Protocol, Topic};

    #[test]
    fn frames_come_out_together_or_one_by_one() {
        let mut outbox = Outbox::default();
        assert!(outbox.is_empty());
        outbox.push(&Frame::receipt("a".into()), Version::V1_2);
        let origin = Origin {
            protocol: Protocol::Stomp,
            connection: ConnectionId(1),
        };
        let envelope = Envelope::new(Topic::from_dotted(b"t"), &b"x"[..], origin);
        let head = head("s", Version::V1_2);
        let delivered = Delivered {
            head: &head,
            destination: b"/topic/t",
            id_prefix: "1-",
            id_seq: 4,
            ack: false,
            redelivered: false,
        };
        outbox.push_message(&delivered, &envelope, Version::V1_2);
        let message = b"MESSAGE\nsubscription:s\ndestination:/topic/t\nmessage-id:1-4\n\
                        content-length:1\n\nx\0\n";
        assert_eq!(
            outbox.as_bytes(),
            [&b"RECEIPT\nreceipt-id:a\n\n\0\n"[..], &message[..]].concat()
        );
        let frames: Vec<Bytes> = outbox.split_frames().collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(&frames[1][..], &message[..]);
        outbox.clear();
        assert!(outbox.is_empty());
        assert!(outbox.as_bytes().is_empty());
    }
}
