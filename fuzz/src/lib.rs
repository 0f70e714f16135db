//! Helpers shared by the fuzz targets: a fuzz input read as a byte stream that arrives in pieces.

/// Splits `data` into a chunk size (its first byte, 1..=256) and the stream, and yields the stream in chunks of
/// that size, so stream decoders also see every kind of split.
pub fn chunked(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let (size, stream) = match data.split_first() {
        Some((&first, rest)) => (usize::from(first) + 1, rest),
        None => (1, data),
    };
    stream.chunks(size)
}

/// The first byte as a selector among `n` variants and the rest of the input.
pub fn pick(data: &[u8], n: u8) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&first, rest)) => (first % n, rest),
        None => (0, data),
    }
}
