//! The end of a byte-stream connection: shut the write side, then read and discard until the peer closes too,
//! for at most [`LINGER`], so the last bytes written are not lost to a reset.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

/// How long a closing connection waits for the peer to finish.
pub const LINGER: Duration = Duration::from_secs(1);

/// Shuts `stream`'s write side and drains it until the peer closes, for at most [`LINGER`].
pub async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let _ = timeout(LINGER, async {
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
