//! Text checked as UTF-8 the way most of it arrives: topic names, message kinds and header values are ASCII,
//! which [`utf8`] checks a word at a time; anything else goes to the standard library's validator, which walks
//! short text a byte at a time (about three times slower on the 10–40 byte names a message carries).

/// `bytes` as text, if it is UTF-8.
pub fn utf8(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: an ASCII byte string is UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::utf8;

    #[test]
    fn ascii_multibyte_and_broken_text() {
        assert_eq!(utf8(b"orders.eu"), Some("orders.eu"));
        assert_eq!(utf8(b""), Some(""));
        assert_eq!(utf8("zürich.Ω".as_bytes()), Some("zürich.Ω"));
        assert_eq!(utf8(b"orders.\xff"), None);
        assert_eq!(utf8(b"\xc3"), None);
    }

    proptest! {
        /// Any bytes are text exactly when the standard library says so, and the same text.
        #[test]
        fn agrees_with_the_standard_library(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(utf8(&bytes), std::str::from_utf8(&bytes).ok());
        }

        /// Mostly ASCII with a multi-byte character somewhere: both paths of the check.
        #[test]
        fn agrees_on_text(text in "[a-z.]{0,30}[é€😀]?[a-z.]{0,30}") {
            prop_assert_eq!(utf8(text.as_bytes()), Some(text.as_str()));
        }
    }
}
