//! chanserv frames (docs/protocols/chanserv.md, "Frames", "Compressed frames"): `u64 little-endian length L` + `L`
//! payload bytes, and the compressed form `L = 12 + C`, `"lz4!"`, `u64 LE uncompressed size U`, `C` bytes of raw
//! LZ4 block.
//!
//! Reading is incremental and checks the length against a cap before buffering anything for it. Writing never emits
//! upstream's empty 12-byte "compressed" frame: an item is compressed only when that makes its frame shorter, except
//! that an item longer than 12 bytes starting with `lz4!` is always compressed, because the Go frame-channel reader
//! would otherwise mistake it for a compressed frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::chanserv::astranet::Addr;

/// Size of the length prefix.
pub const LEN_PREFIX: usize = 8;

/// The Go reader's `FrameSizeLimit` (100 MiB): no frame gatewayd writes may be longer, and the most
/// `max_frame_bytes` may be.
pub const PEER_FRAME_LIMIT: u64 = 100 * 1024 * 1024;

/// gatewayd's default cap on frames it reads (request bodies, including `PUB` payloads): 4 MiB. A request body is a
/// few selectors and a published message has no reason to approach upstream's 100 MiB.
pub const DEFAULT_FRAME_LIMIT: u64 = 4 * 1024 * 1024;

/// A length prefix every Go reader refuses with `ErrWrongSize` before reading anything more (over both the
/// 100 MiB `FrameSizeLimit` and the older 50 GiB check): sent as the first master frame it makes `LookupAndPost`
/// return the error "wrong frame size", the one way to fail a request that the client reports.
pub const REFUSAL_PREFIX: [u8; LEN_PREFIX] = [0xff; LEN_PREFIX];

/// Marks a compressed frame.
pub const LZ4_MAGIC: [u8; 4] = *b"lz4!";

/// `"lz4!"` + the u64 uncompressed size.
const LZ4_HEADER: usize = 12;

/// Why bytes are not a frame, or a payload cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Upstream `ErrWrongSize` ("wrong frame size"): the length exceeds the cap. The stream cannot resynchronise.
    #[error("wrong frame size: {len} bytes exceeds the {limit}-byte limit")]
    TooLarge { len: u64, limit: u64 },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame: {have} of {need} bytes")]
    Truncated { have: usize, need: u64 },
    /// Upstream `ErrWrongUncompressedSize`: a compressed frame claims more than twice the frame cap.
    #[error("wrong uncompressed frame size: {len} bytes exceeds the {limit}-byte limit")]
    UncompressedTooLarge { len: u64, limit: u64 },
    /// The LZ4 block does not decode to the size its header claims.
    #[error("corrupt lz4 block: {0}")]
    Lz4(String),
}

/// Incremental frame reader with a length cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoder {
    limit: u64,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_FRAME_LIMIT)
    }
}

impl FrameDecoder {
    pub const fn new(limit: u64) -> FrameDecoder {
        FrameDecoder { limit }
    }

    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// Takes one frame's payload off the front of `buf`; `Ok(None)` until it is all there. Nothing is reserved for
    /// the announced length: the buffer grows only with bytes that actually arrive.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(len) = read_len(buf) else {
            return Ok(None);
        };
        if len > self.limit {
            return Err(FrameError::TooLarge {
                len,
                limit: self.limit,
            });
        }
        // `len` ≤ limit, so it fits in memory terms the caller chose; still convert without truncating.
        let Ok(total) = usize::try_from(len).map(|l| l.saturating_add(LEN_PREFIX)) else {
            return Err(FrameError::TooLarge {
                len,
                limit: self.limit,
            });
        };
        if buf.len() < total {
            return Ok(None);
        }
        buf.advance(LEN_PREFIX);
        Ok(Some(buf.split_to(total - LEN_PREFIX).freeze()))
    }

    /// Like [`FrameDecoder::decode`] once the stream has ended: a partial frame is [`FrameError::Truncated`].
    pub fn decode_eof(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() => Ok(None),
            None => Err(FrameError::Truncated {
                have: buf.len(),
                need: read_len(buf).map_or(LEN_PREFIX as u64, |len| {
                    len.saturating_add(LEN_PREFIX as u64)
                }),
            }),
        }
    }
}

fn read_len(buf: &[u8]) -> Option<u64> {
    let prefix: [u8; LEN_PREFIX] = buf.get(..LEN_PREFIX)?.try_into().ok()?;
    Some(u64::from_le_bytes(prefix))
}

/// Appends a plain frame: the request body, a source header, a source address, or an uncompressed item.
pub fn encode(payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
    let len = check_len(payload.len())?;
    dst.reserve(LEN_PREFIX + payload.len());
    dst.put_u64_le(len);
    dst.put_slice(payload);
    Ok(())
}

/// Appends a source announcement on the master stream: the header frame, then the address frame
/// `"<host>:<port>"` (docs/protocols/chanserv.md, "Requests and sources", step 2).
pub fn encode_source(header: &[u8], addr: Addr, dst: &mut BytesMut) -> Result<(), FrameError> {
    encode(header, dst)?;
    encode(addr.to_string().as_bytes(), dst)
}

/// Whether items on a frame channel are compressed when that helps (`ServerUseCompression`, default off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Off,
    Lz4,
}

/// Appends one item of a frame channel (docs/protocols/chanserv.md, "Compressed frames"). Compressed only when
/// `compression` is on and the frame gets shorter, or when the item would otherwise be misread as compressed
/// (longer than 12 bytes and starting with `lz4!`).
pub fn encode_item(
    item: &[u8],
    compression: Compression,
    dst: &mut BytesMut,
) -> Result<(), FrameError> {
    check_len(item.len())?;
    let ambiguous = item.len() > LZ4_HEADER && item.starts_with(&LZ4_MAGIC);
    if ambiguous || (compression == Compression::Lz4 && item.len() > LZ4_HEADER) {
        let block = lz4_flex::block::compress(item);
        let framed = LZ4_HEADER + block.len();
        if ambiguous || (!block.is_empty() && framed < item.len()) {
            let len = check_len(framed)?;
            dst.reserve(LEN_PREFIX + framed);
            dst.put_u64_le(len);
            dst.put_slice(&LZ4_MAGIC);
            dst.put_u64_le(item.len() as u64);
            dst.put_slice(&block);
            return Ok(());
        }
    }
    encode(item, dst)
}

/// What a frame-channel reader makes of one frame's payload (the Go client's rule, for gatewayd as a client and for
/// tests): longer than 12 bytes and starting with `lz4!` means compressed, anything else is the item as is. The
/// uncompressed size may be at most twice `limit`.
pub fn decode_item(frame: Bytes, limit: u64) -> Result<Bytes, FrameError> {
    if frame.len() <= LZ4_HEADER || !frame.starts_with(&LZ4_MAGIC) {
        return Ok(frame);
    }
    let Some(size) = frame.get(4..LZ4_HEADER).and_then(read_len) else {
        return Ok(frame);
    };
    let max = limit.saturating_mul(2);
    let too_large = FrameError::UncompressedTooLarge {
        len: size,
        limit: max,
    };
    if size > max {
        return Err(too_large);
    }
    let size = usize::try_from(size).map_err(|_| too_large)?;
    let block = frame.get(LZ4_HEADER..).unwrap_or_default();
    let item =
        lz4_flex::block::decompress(block, size).map_err(|e| FrameError::Lz4(e.to_string()))?;
    if item.len() != size {
        return Err(FrameError::Lz4(format!(
            "decoded {} bytes, header says {size}",
            item.len()
        )));
    }
    Ok(Bytes::from(item))
}

fn check_len(len: usize) -> Result<u64, FrameError> {
    let len = len as u64;
    if len > PEER_FRAME_LIMIT {
        return Err(FrameError::TooLarge {
            len,
            limit: PEER_FRAME_LIMIT,
        });
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chanserv::astranet::HostId;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: String = s.split(|c: char| c.is_whitespace() || c == '|').collect();
        (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
            .collect()
    }

    fn item(payload: &[u8], compression: Compression) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode_item(payload, compression, &mut buf).unwrap();
        buf.to_vec()
    }

    fn decode_frames(bytes: &[u8], decoder: FrameDecoder) -> Result<Vec<Bytes>, FrameError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(frame) = decoder.decode_eof(&mut buf)? {
            out.push(frame);
        }
        Ok(out)
    }

    #[test]
    fn example_d_request_frame() {
        let bytes = hex("05 00 00 00 00 00 00 00 68 65 6c 6c 6f");
        assert_eq!(
            decode_frames(&bytes, FrameDecoder::default()).unwrap(),
            vec![Bytes::from_static(b"hello")]
        );
        let mut buf = BytesMut::new();
        encode(b"hello", &mut buf).unwrap();
        assert_eq!(buf.to_vec(), bytes);
    }

    #[test]
    fn example_e_source_announcement() {
        let bytes = hex("00 00 00 00 00 00 00 00
             14 00 00 00 00 00 00 00 56 48 79 57 43 57 72 33 39 6b 49 3a 31 36 37 37 37 32 31 39");
        let mut buf = BytesMut::new();
        encode_source(
            b"",
            Addr::new(HostId(0x547C_9609_6AF7_F642), 16_777_219),
            &mut buf,
        )
        .unwrap();
        assert_eq!(buf.to_vec(), bytes);
        assert_eq!(
            decode_frames(&bytes, FrameDecoder::default()).unwrap(),
            vec![Bytes::new(), Bytes::from_static(b"VHyWCWr39kI:16777219")]
        );
    }

    #[test]
    fn example_f_compressed_64_a() {
        let upstream = hex(
            "20 00 00 00 00 00 00 00 | 6c 7a 34 21 | 40 00 00 00 00 00 00 00 |
             4f 61 61 61 61 01 00 1e b0 61 61 61 61 61 61 61 61 61 61 61",
        );
        let payload = [b'a'; 64];
        // Upstream's bytes (docs/protocols/chanserv.md, "Examples", F) decode to the item.
        let frames = decode_frames(&upstream, FrameDecoder::default()).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(
            decode_item(frames[0].clone(), DEFAULT_FRAME_LIMIT).unwrap(),
            &payload[..]
        );
        // lz4_flex picks a different (shorter) valid block than pierrec/lz4, so ours matches upstream's framing
        // (`L = 12 + C`, magic, `U = 64`) and decodes to the same item.
        let ours = item(&payload, Compression::Lz4);
        assert_eq!(ours[..8], ((ours.len() - 8) as u64).to_le_bytes());
        assert_eq!(ours[8..20], upstream[8..20]);
        assert!(ours.len() <= upstream.len());
        let frame = decode_frames(&ours, FrameDecoder::default())
            .unwrap()
            .remove(0);
        assert_eq!(
            decode_item(frame, DEFAULT_FRAME_LIMIT).unwrap(),
            &payload[..]
        );
    }

    #[test]
    fn example_f_incompressible_payload_goes_uncompressed() {
        let payload = b"0123456789abcdefXYZ";
        let ours = item(payload, Compression::Lz4);
        assert_eq!(
            ours,
            hex("13 00 00 00 00 00 00 00 30 31 32 33 34 35 36 37 38 39 61 62 63 64 65 66 58 59 5a")
        );
        // Upstream's defective 12-byte frame is passed through raw by a reader, as the Go client does.
        let upstream = hex("0c 00 00 00 00 00 00 00 6c 7a 34 21 13 00 00 00 00 00 00 00");
        let frame = decode_frames(&upstream, FrameDecoder::default())
            .unwrap()
            .remove(0);
        assert_eq!(
            decode_item(frame.clone(), DEFAULT_FRAME_LIMIT).unwrap(),
            frame
        );
        assert_eq!(frame.len(), 12);
    }

    #[test]
    fn never_emits_the_empty_block() {
        for len in 0..=64 {
            let payload: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let bytes = item(&payload, Compression::Lz4);
            if bytes.get(8..12) == Some(&LZ4_MAGIC[..]) {
                assert!(
                    bytes.len() > LEN_PREFIX + LZ4_HEADER,
                    "empty block for len {len}"
                );
            }
            let frame = decode_frames(&bytes, FrameDecoder::default())
                .unwrap()
                .remove(0);
            assert_eq!(decode_item(frame, DEFAULT_FRAME_LIMIT).unwrap(), payload);
        }
    }

    #[test]
    fn ambiguous_items_are_always_compressed() {
        let payload = b"lz4!\x05\0\0\0\0\0\0\0 and then some";
        for compression in [Compression::Off, Compression::Lz4] {
            let bytes = item(payload, compression);
            assert_eq!(&bytes[8..12], b"lz4!");
            assert_eq!(&bytes[12..20], &(payload.len() as u64).to_le_bytes());
            let frame = decode_frames(&bytes, FrameDecoder::default())
                .unwrap()
                .remove(0);
            assert_eq!(
                decode_item(frame, DEFAULT_FRAME_LIMIT).unwrap(),
                &payload[..]
            );
        }
        // Twelve bytes or fewer are never read as compressed, so they go as they are.
        assert_eq!(
            item(b"lz4!abcdefgh", Compression::Off)[8..],
            b"lz4!abcdefgh"[..]
        );
    }

    #[test]
    fn oversized_frame_is_rejected_before_buffering() {
        let decoder = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&17u64.to_le_bytes()[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::TooLarge { len: 17, limit: 16 })
        );
        let mut buf = BytesMut::from(&u64::MAX.to_le_bytes()[..]);
        assert_eq!(
            FrameDecoder::new(u64::MAX).decode(&mut buf),
            Ok(None),
            "a huge legal length waits for bytes, it does not allocate"
        );
        assert!(buf.capacity() < 1024);
        let mut buf = BytesMut::new();
        assert_eq!(
            encode(&vec![0; PEER_FRAME_LIMIT as usize + 1], &mut buf),
            Err(FrameError::TooLarge {
                len: PEER_FRAME_LIMIT + 1,
                limit: PEER_FRAME_LIMIT
            })
        );
    }

    #[test]
    fn truncated_frame_is_an_error_at_eof() {
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::from(&[5, 0, 0][..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(
            decoder.decode_eof(&mut buf),
            Err(FrameError::Truncated { have: 3, need: 8 })
        );
        let mut buf = BytesMut::from(&[5, 0, 0, 0, 0, 0, 0, 0, b'h'][..]);
        assert_eq!(
            decoder.decode_eof(&mut buf),
            Err(FrameError::Truncated { have: 9, need: 13 })
        );
    }

    #[test]
    fn compressed_frame_limits_and_corruption() {
        let mut frame = b"lz4!".to_vec();
        frame.extend(1000u64.to_le_bytes());
        frame.push(0x00);
        assert_eq!(
            decode_item(Bytes::from(frame.clone()), 100),
            Err(FrameError::UncompressedTooLarge {
                len: 1000,
                limit: 200
            })
        );
        assert!(matches!(
            decode_item(Bytes::from(frame), 1000),
            Err(FrameError::Lz4(_))
        ));
        // A valid block that decodes to fewer bytes than claimed.
        let mut frame = b"lz4!".to_vec();
        frame.extend(10u64.to_le_bytes());
        frame.extend(lz4_flex::block::compress(b"abc"));
        assert!(matches!(
            decode_item(Bytes::from(frame), 1000),
            Err(FrameError::Lz4(_))
        ));
    }

    proptest! {
        #[test]
        fn round_trip(items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..6),
                      lz4 in any::<bool>(), repeat in any::<bool>()) {
            let compression = if lz4 { Compression::Lz4 } else { Compression::Off };
            let items: Vec<Vec<u8>> = items
                .into_iter()
                .map(|i| if repeat { i.iter().cycle().take(i.len() * 8).copied().collect() } else { i })
                .collect();
            let mut buf = BytesMut::new();
            for i in &items {
                encode_item(i, compression, &mut buf).unwrap();
            }
            let frames = decode_frames(&buf, FrameDecoder::default()).unwrap();
            let decoded: Vec<Vec<u8>> =
                frames.into_iter().map(|f| decode_item(f, DEFAULT_FRAME_LIMIT).unwrap().to_vec()).collect();
            prop_assert_eq!(decoded, items);
        }

        #[test]
        fn split_at_every_boundary_decodes_the_same(items in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..4)) {
            let mut bytes = BytesMut::new();
            for i in &items {
                encode(i, &mut bytes).unwrap();
            }
            let decoder = FrameDecoder::default();
            for cut in 0..=bytes.len() {
                let mut buf = BytesMut::from(&bytes[..cut]);
                let mut out = Vec::new();
                while let Some(f) = decoder.decode(&mut buf).unwrap() {
                    out.push(f.to_vec());
                }
                buf.extend_from_slice(&bytes[cut..]);
                while let Some(f) = decoder.decode(&mut buf).unwrap() {
                    out.push(f.to_vec());
                }
                prop_assert!(buf.is_empty());
                prop_assert_eq!(&out, &items);
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), limit in 0u64..1000) {
            if let Ok(frames) = decode_frames(&bytes, FrameDecoder::new(limit)) {
                for f in frames {
                    let _ = decode_item(f, limit);
                }
            }
            let mut item = b"lz4!".to_vec();
            item.extend(&bytes);
            let _ = decode_item(Bytes::from(item), limit);
        }
    }
}
