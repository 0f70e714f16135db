//! Server→consumer message encoder. Real consumers refuse keys over 256 bytes and chunks over 65536 bytes
//! (`Loom-go:loom/consumer.go`), so a [`Delivery`] carries a [`ConsumerKey`] and its body is always cut into
//! chunks of at most [`CONSUMER_MAX_CHUNK_BYTES`]. Upstream re-emits the producer's chunk boundaries; gatewayd
//! stores whole bodies and re-chunks them, which consumers cannot tell apart. A message cut through is written
//! in three steps: its [`DeliveryHeader`], [`chunks`] of body as they arrive, then [`EOM`].

use bytes::{BufMut, Bytes, BytesMut};

use super::varint;
use crate::loom::key::ConsumerKey;

/// Largest chunk ever written to a consumer.
pub const CONSUMER_MAX_CHUNK_BYTES: usize = 64 << 10;

/// The end-of-message marker: a zero chunk length.
pub const EOM: &[u8] = &[0];

/// The front of a message whose body follows in pieces (cut-through).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryHeader {
    pub key: ConsumerKey,
    /// The producer's announced size (0 = unknown), passed on as upstream does.
    pub declared_size: u64,
    /// Server-assigned, as in [`Delivery::msg_id`].
    pub msg_id: u64,
}

impl DeliveryHeader {
    /// Key, declared size and msg id.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        encode_header(
            self.key.as_bytes(),
            self.declared_size,
            self.msg_id,
            &mut out,
        );
        out.freeze()
    }
}

/// `body` (non-empty or not) as consumer chunks of at most [`CONSUMER_MAX_CHUNK_BYTES`]: length prefixes
/// interleaved with zero-copy slices of `body`.
pub fn chunks(body: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(2 * body.len().div_ceil(CONSUMER_MAX_CHUNK_BYTES));
    let mut framing = BytesMut::new();
    push_chunks(&mut framing, body, &mut out);
    out
}

/// Appends `body`'s chunks to `out`, each length prefix after whatever `framing` already holds.
fn push_chunks(framing: &mut BytesMut, body: &Bytes, out: &mut Vec<Bytes>) {
    let mut at = 0;
    while at < body.len() {
        let end = body.len().min(at + CONSUMER_MAX_CHUNK_BYTES);
        varint::encode((end - at) as u64, framing);
        out.push(framing.split().freeze());
        out.push(body.slice(at..end));
        at = end;
    }
}

fn encode_header(key: &[u8], declared_size: u64, msg_id: u64, dst: &mut impl BufMut) {
    varint::encode(key.len() as u64, dst);
    dst.put_slice(key);
    varint::encode(declared_size, dst);
    varint::encode(msg_id, dst);
}

/// One message for a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub key: ConsumerKey,
    /// Announced body size; informational for the consumer. gatewayd knows the whole body, so
    /// `body.len()` is the natural value; a Loom producer's own `declared_size` may be passed through instead.
    pub declared_size: u64,
    /// Server-assigned, per room, starting at 1. Keep it ≤ 2^50: larger ids are refused by Loom's readers.
    pub msg_id: u64,
    pub body: Bytes,
}

impl Delivery {
    /// Exact number of bytes [`Delivery::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let key = self.key.as_bytes().len();
        let chunks: usize = self
            .body
            .chunks(CONSUMER_MAX_CHUNK_BYTES)
            .map(|c| varint::encoded_len(c.len() as u64) + c.len())
            .sum();
        varint::encoded_len(key as u64)
            + key
            + varint::encoded_len(self.declared_size)
            + varint::encoded_len(self.msg_id)
            + chunks
            + 1
    }

    /// Appends header, chunks and EOM into one buffer (copies the body).
    pub fn encode(&self, dst: &mut impl BufMut) {
        self.encode_header(dst);
        for chunk in self.body.chunks(CONSUMER_MAX_CHUNK_BYTES) {
            varint::encode(chunk.len() as u64, dst);
            dst.put_slice(chunk);
        }
        dst.put_slice(EOM);
    }

    /// The same bytes as [`Delivery::encode`], as a list for vectored writes (e.g. quinn's
    /// `write_all_chunks`): small framing buffers interleaved with zero-copy slices of the body.
    pub fn segments(&self) -> Vec<Bytes> {
        let mut out =
            Vec::with_capacity(2 * self.body.len().div_ceil(CONSUMER_MAX_CHUNK_BYTES) + 1);
        let mut framing = BytesMut::new();
        self.encode_header(&mut framing);
        push_chunks(&mut framing, &self.body, &mut out);
        framing.put_slice(EOM);
        out.push(framing.freeze());
        out
    }

    fn encode_header(&self, dst: &mut impl BufMut) {
        encode_header(self.key.as_bytes(), self.declared_size, self.msg_id, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(key: &'static [u8], declared_size: u64, msg_id: u64, body: Bytes) -> Delivery {
        Delivery {
            key: ConsumerKey::new(Bytes::from_static(key)).unwrap(),
            declared_size,
            msg_id,
            body,
        }
    }

    fn encoded(d: &Delivery) -> Vec<u8> {
        let mut out = Vec::new();
        d.encode(&mut out);
        assert_eq!(out.len(), d.encoded_len());
        let joined: Vec<u8> = d.segments().iter().flatten().copied().collect();
        assert_eq!(joined, out);
        out
    }

    #[test]
    fn reference_message_vector() {
        let d = delivery(b"k", 5, 7, Bytes::from_static(b"hello"));
        assert_eq!(
            encoded(&d),
            [0x01, 0x6b, 0x05, 0x07, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x00]
        );
        assert_eq!(d.segments().len(), 3);
    }

    #[test]
    fn empty_body_is_header_and_eom() {
        let d = delivery(b"k", 0, 1, Bytes::new());
        assert_eq!(encoded(&d), [0x01, 0x6b, 0x00, 0x01, 0x00]);
        assert_eq!(d.segments().len(), 1);
    }

    #[test]
    fn body_split_into_max_chunks() {
        let body = Bytes::from(vec![0x5a; 2 * 65536 + 1]);
        let d = delivery(b"k", body.len() as u64, 300, body);
        let out = encoded(&d);
        // Header: key `k`, declared 131073 (`81 80 08`), id 300 (`ac 02`), then the test vectors' prefix `80 80 04`.
        assert_eq!(
            &out[..10],
            &[0x01, 0x6b, 0x81, 0x80, 0x08, 0xac, 0x02, 0x80, 0x80, 0x04]
        );
        let second = 10 + 65536;
        assert_eq!(&out[second..second + 3], &[0x80, 0x80, 0x04]);
        let third = second + 3 + 65536;
        assert_eq!(&out[third..], &[0x01, 0x5a, 0x00]);
    }

    #[test]
    fn pieces_join_to_the_whole_encoding() {
        let body = Bytes::from(vec![0x33; 2 * 65536 + 7]);
        let whole = delivery(b"k", 9, 4, body.clone());
        let header = DeliveryHeader {
            key: whole.key.clone(),
            declared_size: 9,
            msg_id: 4,
        };
        let mut pieced = header.encode().to_vec();
        for part in [body.slice(..10), body.slice(10..)] {
            for segment in chunks(&part) {
                pieced.extend_from_slice(&segment);
            }
        }
        pieced.extend_from_slice(EOM);
        // Other chunk boundaries than the whole message's, the same message for a consumer.
        let mut expected = header.encode().to_vec();
        for part in [body.slice(..10), body.slice(10..65546), body.slice(65546..)] {
            varint::encode(part.len() as u64, &mut expected);
            expected.extend_from_slice(&part);
        }
        expected.extend_from_slice(EOM);
        assert_eq!(pieced, expected);
        assert!(chunks(&Bytes::new()).is_empty());
        assert_eq!(
            &encoded(&whole)[..header.encode().len()],
            &header.encode()[..]
        );
    }

    #[test]
    fn segments_borrow_the_body() {
        let body = Bytes::from(vec![1u8; 65536 + 10]);
        let d = delivery(b"k", 0, 1, body.clone());
        let segs = d.segments();
        assert_eq!(segs.len(), 5);
        assert_eq!(segs[1].as_ptr(), body.as_ptr());
        assert_eq!(segs[3].len(), 10);
    }
}
