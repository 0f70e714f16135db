//! Keys sent to Loom consumers. Real consumers reject keys longer than 256 bytes (`Loom-go:loom/consumer.go`
//! `maxKey`) and the protocol forbids empty ones, so gatewayd only ever writes a [`ConsumerKey`]: a key that is
//! 1..=256 bytes by construction.
//!
//! [`ConsumerKey::derive`] turns any bus-side key into one:
//! - 1..=256 bytes: used as is (a Loom producer's key therefore reaches Loom consumers unchanged);
//! - longer: the lowercase hex SHA-256 of the key (64 bytes), so equal long keys still map to equal keys and
//!   keep their partition affinity;
//! - empty: the message id in decimal, so key-less messages spread over consumers.

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Longest key a consumer accepts.
pub const MAX_KEY_BYTES: usize = 256;

/// Why bytes cannot be sent as a consumer key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("empty key")]
    Empty,
    #[error("key is {0} bytes, consumers accept at most 256")]
    TooLong(usize),
}

/// A key of 1..=256 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumerKey(Bytes);

impl ConsumerKey {
    /// Wraps `key` if it is 1..=256 bytes.
    pub fn new(key: Bytes) -> Result<Self, KeyError> {
        match key.len() {
            0 => Err(KeyError::Empty),
            n if n > MAX_KEY_BYTES => Err(KeyError::TooLong(n)),
            _ => Ok(Self(key)),
        }
    }

    /// The consumer key for a bus message with key `key` (possibly empty) and id `msg_id` (see module docs).
    pub fn derive(key: &Bytes, msg_id: u64) -> Self {
        if key.is_empty() {
            return Self(Bytes::from(msg_id.to_string()));
        }
        if key.len() <= MAX_KEY_BYTES {
            return Self(key.clone());
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::digest(key);
        let mut hex = Vec::with_capacity(2 * digest.len());
        for byte in digest {
            hex.push(HEX[usize::from(byte >> 4)]);
            hex.push(HEX[usize::from(byte & 0x0f)]);
        }
        Self(Bytes::from(hex))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<ConsumerKey> for Bytes {
    fn from(key: ConsumerKey) -> Self {
        key.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn new_enforces_bounds() {
        assert_eq!(ConsumerKey::new(Bytes::new()), Err(KeyError::Empty));
        assert!(ConsumerKey::new(Bytes::from_static(b"k")).is_ok());
        assert!(ConsumerKey::new(Bytes::from(vec![0; 256])).is_ok());
        assert_eq!(
            ConsumerKey::new(Bytes::from(vec![0; 257])),
            Err(KeyError::TooLong(257))
        );
    }

    #[test]
    fn derive_short_key_unchanged() {
        let key = Bytes::from(vec![7; 256]);
        assert_eq!(ConsumerKey::derive(&key, 9).as_bytes(), &key[..]);
        assert_eq!(
            ConsumerKey::derive(&Bytes::from_static(b"k"), 9).as_bytes(),
            b"k"
        );
    }

    #[test]
    fn derive_empty_key_is_decimal_id() {
        assert_eq!(ConsumerKey::derive(&Bytes::new(), 300).as_bytes(), b"300");
        assert_eq!(ConsumerKey::derive(&Bytes::new(), 0).as_bytes(), b"0");
    }

    #[test]
    fn derive_long_key_is_sha256_hex() {
        // `head -c 257 /dev/zero | tr '\0' a | sha256sum`
        let key = Bytes::from(vec![b'a'; 257]);
        assert_eq!(
            ConsumerKey::derive(&key, 1).as_bytes(),
            b"e8d95cc2b4bc198c54b40bd214df958afb65f5e73d2c2eafe0593cf5c635c1f0"
        );
        // Same long key → same consumer key whatever the id; different long keys → different keys.
        let zeros = ConsumerKey::derive(&Bytes::from(vec![0u8; 300]), 1);
        assert_eq!(zeros, ConsumerKey::derive(&Bytes::from(vec![0u8; 300]), 2));
        assert_ne!(zeros, ConsumerKey::derive(&Bytes::from(vec![1u8; 300]), 1));
    }

    proptest! {
        #[test]
        fn derive_always_valid(key in proptest::collection::vec(any::<u8>(), 0..600), id in any::<u64>()) {
            let k = ConsumerKey::derive(&Bytes::from(key), id);
            prop_assert!((1..=MAX_KEY_BYTES).contains(&k.as_bytes().len()));
            prop_assert_eq!(ConsumerKey::new(Bytes::from(k.clone())), Ok(k));
        }
    }
}
