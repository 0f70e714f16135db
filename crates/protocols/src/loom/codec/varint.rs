//! Loom's uvarint: Go `encoding/binary` Uvarint (unsigned LEB128, least-significant group first, at most 10
//! bytes, the 10th byte only 0 or 1), plus the server's rule that any value above 2^50 is corruption.
//! Not the QUIC varint. Readers accept non-minimal encodings; [`encode`] always writes the minimal form.

use bytes::BufMut;

/// Longest valid encoding of a u64.
pub const MAX_LEN: usize = 10;

/// Largest value a reader accepts (`Loom:internal/protocol/protocol.go` `readUvarint`).
pub const MAX_VALUE: u64 = 1 << 50;

/// A uvarint that can never decode to an acceptable value, however many bytes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VarintError {
    /// More than 10 bytes, or a 10th byte above 1: does not fit a u64.
    #[error("protocol: uvarint overflows 64 bits")]
    Overflow,
    /// Fits a u64 but exceeds 2^50.
    #[error("protocol: uvarint value above 2^50")]
    TooLarge,
}

/// Decodes one uvarint from the start of `buf`.
///
/// `Ok(Some((value, len)))` when complete, `Ok(None)` when `buf` ends inside the varint (need more bytes),
/// `Err` as soon as the bytes seen already make the value unacceptable.
pub fn decode(buf: &[u8]) -> Result<Option<(u64, usize)>, VarintError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().take(MAX_LEN).enumerate() {
        if i == MAX_LEN - 1 && byte > 1 {
            return Err(VarintError::Overflow);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        // Later bytes only add higher bits, so a partial value already above the limit can never come back under.
        if value > MAX_VALUE {
            return Err(VarintError::TooLarge);
        }
        if byte < 0x80 {
            return Ok(Some((value, i + 1)));
        }
    }
    // The loop returns at the latest on the 10th byte, so falling out means fewer than 10 bytes were available.
    Ok(None)
}

/// Appends the minimal encoding of `value`.
pub fn encode(mut value: u64, dst: &mut impl BufMut) {
    while value >= 0x80 {
        dst.put_u8((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    dst.put_u8(value as u8);
}

/// Length in bytes of the minimal encoding of `value`.
pub const fn encoded_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode(v, &mut out);
        out
    }

    #[test]
    fn reference_vectors() {
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(7), [0x07]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(65536), [0x80, 0x80, 0x04]);
        assert_eq!(decode(&[0xac, 0x02]), Ok(Some((300, 2))));
        assert_eq!(decode(&[0x80, 0x80, 0x04, 0xff]), Ok(Some((65536, 3))));
    }

    #[test]
    fn accepts_non_minimal() {
        assert_eq!(decode(&[0x80, 0x00]), Ok(Some((0, 2))));
        assert_eq!(decode(&[0x87, 0x80, 0x80, 0x00]), Ok(Some((7, 4))));
    }

    #[test]
    fn need_more_versus_error() {
        assert_eq!(decode(&[]), Ok(None));
        assert_eq!(decode(&[0x80]), Ok(None));
        assert_eq!(decode(&[0x80; 9]), Ok(None));
        // Tenth byte may only be 0 or 1.
        let mut ten = [0x80; 10];
        ten[9] = 0x02;
        assert_eq!(decode(&ten), Err(VarintError::Overflow));
        assert_eq!(decode(&[0x80; 10]), Err(VarintError::Overflow));
        ten[9] = 0x00;
        assert_eq!(decode(&ten), Ok(Some((0, 10))));
    }

    #[test]
    fn guard_at_two_to_the_fifty() {
        assert_eq!(decode(&enc(MAX_VALUE)), Ok(Some((MAX_VALUE, 8))));
        assert_eq!(decode(&enc(MAX_VALUE + 1)), Err(VarintError::TooLarge));
        assert_eq!(decode(&enc(u64::MAX)), Err(VarintError::TooLarge));
        // Rejected before the varint is complete: seven 0xff groups are already 2^49-1, an eighth exceeds 2^50.
        assert_eq!(decode(&[0xff; 8]), Err(VarintError::TooLarge));
        assert_eq!(decode(&[0xff; 7]), Ok(None));
    }

    proptest! {
        #[test]
        fn round_trip(v in 0..=MAX_VALUE, extra in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut bytes = enc(v);
            prop_assert_eq!(bytes.len(), encoded_len(v));
            let len = bytes.len();
            bytes.extend_from_slice(&extra);
            prop_assert_eq!(decode(&bytes), Ok(Some((v, len))));
            for cut in 0..len {
                prop_assert_eq!(decode(&bytes[..cut]), Ok(None));
            }
        }

        #[test]
        fn non_minimal_padding_decodes_same(v in 0..=MAX_VALUE, pad in 0usize..3) {
            let mut bytes = enc(v);
            prop_assume!(bytes.len() + pad < MAX_LEN);
            let last = bytes.len() - 1;
            bytes[last] |= 0x80;
            bytes.extend(std::iter::repeat_n(0x80, pad));
            bytes.push(0x00);
            prop_assert_eq!(decode(&bytes), Ok(Some((v, bytes.len()))));
        }

        #[test]
        fn above_guard_rejected(v in (MAX_VALUE + 1)..=u64::MAX) {
            prop_assert_eq!(decode(&enc(v)), Err(VarintError::TooLarge));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok(Some((v, len))) = decode(&bytes) {
                prop_assert!(v <= MAX_VALUE);
                prop_assert!((1..=MAX_LEN).contains(&len));
            }
        }
    }
}
