//! The WebSocket dial shared by the MessageLoop and Goomerang clients: TCP with `TCP_NODELAY` (read ahead of
//! tungstenite's small buffer, as gatewayd's listeners read), TLS on it when given a connector, the upgrade to
//! `ws://<address><path>` (or `wss://`) offering an optional subprotocol and bearer token, the split into a
//! sink and a stream, and the stream read in batches.

use futures::stream::{SplitSink, SplitStream};
use futures::{FutureExt, StreamExt};
use protocols::accept::ReadAhead;
use protocols::ws::read_ahead;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::WebSocketStream;
use tokio_util::either::Either;

use super::{resolve, Batches, ClientError, Event, HANDSHAKE_TIMEOUT};

/// The socket under a client's WebSocket: TCP read ahead, or TLS on TCP (boxed: it is large, and most clients
/// are plain).
pub type Socket = Either<ReadAhead<TcpStream>, Box<TlsStream<TcpStream>>>;
pub type Sink = SplitSink<WebSocketStream<Socket>, WsMessage>;
pub type Stream = SplitStream<WebSocketStream<Socket>>;

/// Most WebSocket messages one wake-up of a reader takes.
const BATCH: usize = 256;

/// Bytes one tungstenite read asks for. tungstenite zero-fills that much of its buffer before every read, and a
/// reader woken for one small message reads twice (the message, then the read that finds nothing more), so a
/// large size costs two large memsets per message a mostly idle subscriber receives: at 16 KiB that was 13 % of
/// this process's CPU with 10,000 subscribers. Its reads come from [`read_ahead`]'s buffer while the socket is
/// busy, or from rustls's, so a small size costs copies, not system calls; a frame longer than it is still read
/// whole.
const READ_BUFFER: usize = 256;

/// The next messages of `stream`: waits for one, then takes those already received without waiting (up to
/// [`BATCH`]), so a busy reader hands its inbox one batch per wake-up. Empty once the stream has ended.
async fn next_batch(stream: &mut Stream) -> Vec<Result<WsMessage, tungstenite::Error>> {
    let mut batch = Vec::new();
    if let Some(first) = stream.next().await {
        batch.push(first);
        while batch.len() < BATCH {
            match stream.next().now_or_never() {
                Some(Some(next)) => batch.push(next),
                _ => break,
            }
        }
    }
    batch
}

/// What `stream` brings, a batch of events per [`next_batch`] as `events` makes them of its messages; ends with the
/// stream.
pub fn batches(
    stream: Stream,
    events: fn(Vec<Result<WsMessage, tungstenite::Error>>) -> Vec<Event>,
) -> Batches {
    Box::pin(futures::stream::unfold(
        stream,
        move |mut stream| async move {
            let batch = next_batch(&mut stream).await;
            (!batch.is_empty()).then(|| (events(batch), stream))
        },
    ))
}

/// Opens `ws://<address><path>`, or `wss://` over `tls`, offering `subprotocol` and sending
/// `Authorization: Bearer <bearer>` when given.
pub async fn dial(
    address: &str,
    path: &str,
    subprotocol: Option<&str>,
    bearer: Option<&str>,
    tls: Option<&TlsConnector>,
) -> Result<(Sink, Stream), ClientError> {
    let addr = resolve(address).await?;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (socket, scheme) = match tls {
        None => (Either::Left(read_ahead(tcp)), "ws"),
        Some(connector) => {
            let host = address
                .rsplit_once(':')
                .map_or(address, |(host, _)| host)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = ServerName::try_from(host.to_owned())
                .map_err(|_| ClientError::Protocol(format!("bad server name {host:?}")))?;
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
                .await
                .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))??;
            (Either::Right(Box::new(tls)), "wss")
        }
    };
    let mut request = format!("{scheme}://{address}{path}").into_client_request()?;
    if let Some(subprotocol) = subprotocol {
        let value = HeaderValue::from_str(subprotocol)
            .map_err(|_| ClientError::Protocol(format!("bad subprotocol {subprotocol:?}")))?;
        request
            .headers_mut()
            .insert("sec-websocket-protocol", value);
    }
    if let Some(token) = bearer {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            ClientError::Credentials("the token is not a valid header value".into())
        })?;
        request.headers_mut().insert("authorization", value);
    }
    let (ws, _) = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::client_async_with_config(
            request,
            socket,
            Some(WebSocketConfig::default().read_buffer_size(READ_BUFFER)),
        ),
    )
    .await
    .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))??;
    Ok(ws.split())
}
