//! The WebSocket accept helper every WebSocket listener uses: the client socket under its deadlines and read
//! ahead of tungstenite while busy ([`watched`]), path check, subprotocol choice, size limits, a small read
//! buffer, and write coalescing in tungstenite's own lazily grown buffer (`feed` many messages, then one `flush`
//! writes them with one syscall), so idle connections stay cheap; and [`text`], tungstenite's shared text over a
//! checked slice of a frame.

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::WebSocketStream;

use crate::accept::{Deadlines, ReadAhead, Watched};

/// How much a WebSocket connection reads per system call while input keeps coming (tungstenite itself reads
/// [`WsAcceptOptions::read_buffer_bytes`] at a time, from this read-ahead).
const READ_AHEAD_BYTES: usize = 16 << 10;

/// A client socket ready for [`accept`]: under the connection's `deadlines`, and read [`READ_AHEAD_BYTES`] at a
/// time while busy, so that a burst of messages costs tungstenite's small buffer one read system call, not one per
/// buffer.
pub fn watched<S>(stream: S, deadlines: &Deadlines) -> Watched<ReadAhead<S>> {
    Watched::new(ReadAhead::new(stream, READ_AHEAD_BYTES), deadlines)
}

/// `bytes` as WebSocket text sharing their buffer, if they are UTF-8 (checked as [`core_bus::text::utf8`] checks,
/// ASCII a word at a time): the names a protobuf frame carries, read in place.
pub fn text(bytes: Bytes) -> Option<Utf8Bytes> {
    core_bus::text::utf8(&bytes)?;
    // SAFETY: checked as UTF-8 on the line above.
    Some(unsafe { Utf8Bytes::from_bytes_unchecked(bytes) })
}

/// tungstenite's read buffer on every WebSocket listener ([`WsAcceptOptions::read_buffer_bytes`]): small, since an
/// idle connection keeps it.
pub const READ_BUFFER_BYTES: usize = 256;

/// What a listener accepts.
#[derive(Debug, Clone)]
pub struct WsAcceptOptions {
    /// Accepted request paths (exact match, query string ignored).
    pub paths: Vec<String>,
    /// Largest message and frame accepted from the client.
    pub max_message_bytes: usize,
    /// tungstenite's read buffer per connection, kept while idle. Bursts are read from the socket
    /// [`READ_AHEAD_BYTES`] at a time ([`watched`]) or by the TLS library in its own size, so tungstenite's reads
    /// are copies from those buffers, never system calls, and a frame longer than this buffer is still read whole.
    pub read_buffer_bytes: usize,
    /// Fed messages are written once this many bytes wait, or on `flush`; the buffer grows only when written to.
    pub write_coalesce_bytes: usize,
}

impl Default for WsAcceptOptions {
    fn default() -> Self {
        WsAcceptOptions {
            paths: vec!["/ws".into()],
            max_message_bytes: 64 << 10,
            read_buffer_bytes: READ_BUFFER_BYTES,
            write_coalesce_bytes: 64 << 10,
        }
    }
}

/// The result of a successful upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub path: String,
    /// The subprotocol the server chose, if any.
    pub subprotocol: Option<String>,
    /// Every subprotocol the client offered, in its order.
    pub offered: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WsAcceptError {
    #[error("websocket handshake: {0}")]
    Handshake(#[from] tokio_tungstenite::tungstenite::Error),
}

/// Sends a close (`frame`, or none) and reads until the client's close, both within
/// [`crate::accept::LINGER`], so what was written before is not lost to a reset.
pub async fn close_and_linger<S>(ws: &mut WebSocketStream<S>, frame: Option<CloseFrame>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(crate::accept::LINGER, async {
        let _ = ws.close(frame).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// The tungstenite config for `options`.
pub fn websocket_config(options: &WsAcceptOptions) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(options.read_buffer_bytes)
        .write_buffer_size(options.write_coalesce_bytes)
        .max_message_size(Some(options.max_message_bytes))
        .max_frame_size(Some(options.max_message_bytes))
}

fn reject(status: StatusCode) -> ErrorResponse {
    let mut response = ErrorResponse::new(None);
    *response.status_mut() = status;
    response
}

/// Performs the HTTP upgrade. `choose` picks a subprotocol from those the client offered (or none); a request
/// for another path gets 404.
pub async fn accept<S>(
    stream: S,
    options: &WsAcceptOptions,
    choose: impl FnOnce(&[String]) -> Option<String> + Unpin,
) -> Result<(WebSocketStream<S>, Accepted), WsAcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (ws, accepted, ()) = accept_authorized(stream, options, choose, |_| Ok(())).await?;
    Ok((ws, accepted))
}

/// [`accept`], with `authorize` deciding from the upgrade request (its headers, its query) who the client is:
/// an `Err` status (such as 401) is the response instead of the upgrade.
pub async fn accept_authorized<S, T>(
    stream: S,
    options: &WsAcceptOptions,
    choose: impl FnOnce(&[String]) -> Option<String> + Unpin,
    authorize: impl FnOnce(&Request) -> Result<T, StatusCode> + Unpin,
) -> Result<(WebSocketStream<S>, Accepted, T), WsAcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut accepted = None;
    let mut authorized = None;
    // The callback's signature is tungstenite's; its error type is the HTTP response it sends.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        let path = request.uri().path().to_owned();
        if !options.paths.contains(&path) {
            return Err(reject(StatusCode::NOT_FOUND));
        }
        authorized = Some(authorize(request).map_err(reject)?);
        let offered: Vec<String> = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        let subprotocol = choose(&offered);
        if let Some(chosen) = &subprotocol {
            let value =
                HeaderValue::from_str(chosen).map_err(|_| reject(StatusCode::BAD_REQUEST))?;
            response
                .headers_mut()
                .insert("sec-websocket-protocol", value);
        }
        accepted = Some(Accepted {
            path,
            subprotocol,
            offered,
        });
        Ok(response)
    };
    // Boxed: the handshake's buffers and state live on the heap only while it runs, instead of enlarging
    // every connection task for its whole life.
    let ws = Box::pin(tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(websocket_config(options)),
    ))
    .await?;
    let accepted = accepted.unwrap_or(Accepted {
        path: String::new(),
        subprotocol: None,
        offered: Vec::new(),
    });
    // The callback ran (the upgrade succeeded), so `authorized` is set.
    let authorized = authorized.ok_or(WsAcceptError::Handshake(
        tokio_tungstenite::tungstenite::Error::ConnectionClosed,
    ))?;
    Ok((ws, accepted, authorized))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::text;

    #[test]
    fn text_is_the_utf8_part_of_a_frame() {
        let frame = Bytes::from_static(b"\x0a\x07orders.\x12\x05z\xc3\xbc.a\x1a\x02\xff\xfe");
        assert_eq!(text(frame.slice(2..9)).as_deref(), Some("orders."));
        assert_eq!(text(frame.slice(11..16)).as_deref(), Some("zü.a"));
        assert_eq!(text(frame.slice(18..)), None);
        assert_eq!(
            text(frame.slice(11..13)),
            None,
            "half of a two-byte character"
        );
    }
}
