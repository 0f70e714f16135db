//! Consumer→server frames: exactly two uvarints each, `frame_type` then a value. Type 1 is an ack whose value
//! is the msg id being acknowledged; upstream reads and ignores every other type (docs/protocols/loom.md, "Acks").

use bytes::{Buf, BufMut, BytesMut};

use super::varint::{self, VarintError};

/// `frame_type` of an ack.
pub const FRAME_ACK: u64 = 1;

/// One frame from a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerFrame {
    /// The consumer finished message `msg_id`.
    Ack { msg_id: u64 },
    /// Any other frame type; to be ignored (upstream skips these silently).
    Unknown { frame_type: u64, value: u64 },
}

impl ConsumerFrame {
    /// The next frame from the front of `src`; consumes nothing and returns `Ok(None)` until both uvarints
    /// are buffered.
    pub fn decode(src: &mut BytesMut) -> Result<Option<Self>, VarintError> {
        let Some((frame_type, first)) = varint::decode(src)? else {
            return Ok(None);
        };
        let Some((value, second)) = varint::decode(src.get(first..).unwrap_or_default())? else {
            return Ok(None);
        };
        src.advance(first + second);
        Ok(Some(match frame_type {
            FRAME_ACK => Self::Ack { msg_id: value },
            _ => Self::Unknown { frame_type, value },
        }))
    }

    /// Appends the wire form.
    pub fn encode(&self, dst: &mut impl BufMut) {
        let (frame_type, value) = match *self {
            Self::Ack { msg_id } => (FRAME_ACK, msg_id),
            Self::Unknown { frame_type, value } => (frame_type, value),
        };
        varint::encode(frame_type, dst);
        varint::encode(value, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(frame: ConsumerFrame) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(&mut out);
        out
    }

    #[test]
    fn reference_ack_vectors() {
        assert_eq!(encoded(ConsumerFrame::Ack { msg_id: 7 }), [0x01, 0x07]);
        assert_eq!(
            encoded(ConsumerFrame::Ack { msg_id: 300 }),
            [0x01, 0xac, 0x02]
        );
        let mut src = BytesMut::from(&[0x01, 0x07, 0x01, 0xac, 0x02][..]);
        assert_eq!(
            ConsumerFrame::decode(&mut src),
            Ok(Some(ConsumerFrame::Ack { msg_id: 7 }))
        );
        assert_eq!(
            ConsumerFrame::decode(&mut src),
            Ok(Some(ConsumerFrame::Ack { msg_id: 300 }))
        );
        assert!(src.is_empty());
    }

    #[test]
    fn other_types_are_two_uvarints_too() {
        let mut src = BytesMut::from(&[0x02, 0xac, 0x02, 0x01, 0x01][..]);
        assert_eq!(
            ConsumerFrame::decode(&mut src),
            Ok(Some(ConsumerFrame::Unknown {
                frame_type: 2,
                value: 300
            }))
        );
        assert_eq!(
            ConsumerFrame::decode(&mut src),
            Ok(Some(ConsumerFrame::Ack { msg_id: 1 }))
        );
    }

    #[test]
    fn partial_frame_consumes_nothing() {
        for bytes in [&[][..], &[0x01], &[0x01, 0xac]] {
            let mut src = BytesMut::from(bytes);
            assert_eq!(ConsumerFrame::decode(&mut src), Ok(None));
            assert_eq!(src.len(), bytes.len());
        }
    }

    #[test]
    fn corrupt_varints_rejected() {
        let mut src = BytesMut::from(&[0xff; 10][..]);
        assert!(ConsumerFrame::decode(&mut src).is_err());
        let mut src = BytesMut::from(&[0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(ConsumerFrame::decode(&mut src), Err(VarintError::TooLarge));
    }
}
