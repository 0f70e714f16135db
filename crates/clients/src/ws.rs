//! The WebSocket dial shared by the MessageLoop and Goomerang clients: TCP with `TCP_NODELAY`, TLS on it when
//! given a connector, the upgrade to `ws://<address><path>` (or `wss://`) offering an optional subprotocol and
//! bearer token (the answer must select the subprotocol offered), the split into a sink and a stream, and the
//! stream read in batches. The WebSocket itself is tokio-websockets (its frames read from a buffer that grows
//! without being zeroed, no waker proxy between the runtime and the codec; docs/benchmarks.md, session 38).

use futures::stream::{SplitSink, SplitStream};
use futures::{FutureExt, StreamExt};
use http::{header, HeaderValue};
use rustls::pki_types::ServerName;
use tokio::io::BufWriter;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;
use tokio_websockets::{ClientBuilder, Message as WsMessage, WebSocketStream};

use super::{resolve, Batches, ClientError, Event, HANDSHAKE_TIMEOUT};

/// The socket under a client's WebSocket: TCP, or TLS on TCP (boxed: it is large, and most clients are plain),
/// its writes gathered in a buffer: tokio-websockets hands over a frame's header and payload as two slices, so a
/// flush of many small frames would otherwise be a vectored write of twice as many pieces.
pub type Socket = BufWriter<Either<TcpStream, Box<TlsStream<TcpStream>>>>;
pub type Sink = SplitSink<WebSocketStream<Socket>, WsMessage>;
pub type Stream = SplitStream<WebSocketStream<Socket>>;
pub type WsError = tokio_websockets::Error;

/// Most WebSocket messages one wake-up of a reader takes.
const BATCH: usize = 256;

/// The next messages of `stream`: waits for one, then takes those already received without waiting (up to
/// [`BATCH`]), so a busy reader hands its inbox one batch per wake-up. Empty once the stream has ended.
async fn next_batch(stream: &mut Stream) -> Vec<Result<WsMessage, WsError>> {
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
    events: fn(Vec<Result<WsMessage, WsError>>) -> Vec<Event>,
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
        None => (Either::Left(tcp), "ws"),
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
    let uri = format!("{scheme}://{address}{path}");
    let mut request = ClientBuilder::new()
        .uri(&uri)
        .map_err(|error| ClientError::Address(format!("{uri}: {error}")))?;
    if let Some(subprotocol) = subprotocol {
        let value = HeaderValue::from_str(subprotocol)
            .map_err(|_| ClientError::Protocol(format!("bad subprotocol {subprotocol:?}")))?;
        request = request.add_header(header::SEC_WEBSOCKET_PROTOCOL, value)?;
    }
    if let Some(token) = bearer {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            ClientError::Credentials("the token is not a valid header value".into())
        })?;
        request = request.add_header(header::AUTHORIZATION, value)?;
    }
    let socket = BufWriter::new(socket);
    let (ws, response) = tokio::time::timeout(HANDSHAKE_TIMEOUT, request.connect_on(socket))
        .await
        .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))??;
    let selected = response.headers().get(header::SEC_WEBSOCKET_PROTOCOL);
    if selected.map(HeaderValue::as_bytes) != subprotocol.map(str::as_bytes) {
        return Err(ClientError::Protocol(format!(
            "the server selected subprotocol {selected:?}, not {subprotocol:?}"
        )));
    }
    Ok(ws.split())
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    use super::*;

    /// A WebSocket server on loopback (tungstenite, another implementation) that takes one upgrade and answers
    /// it selecting `selected`, or no subprotocol.
    async fn server(selected: Option<&'static str>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            // The callback's type is tungstenite's, large error and all.
            #[allow(clippy::result_large_err)]
            let answer = move |_: &Request, mut response: Response| {
                if let Some(selected) = selected {
                    response.headers_mut().insert(
                        header::SEC_WEBSOCKET_PROTOCOL,
                        HeaderValue::from_static(selected),
                    );
                }
                Ok(response)
            };
            if let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, answer).await {
                // Held open until the client goes, so an accepted dial is not raced by a close.
                while let Some(Ok(_)) = ws.next().await {}
            }
        });
        address
    }

    #[tokio::test]
    async fn an_answer_that_selects_another_subprotocol_or_none_is_refused() {
        let cases = [
            (Some("messageloop+json"), Some("messageloop+proto")),
            (Some("messageloop+json"), None),
            (None, Some("messageloop")),
        ];
        for (offered, selected) in cases {
            let address = server(selected).await;
            let dialed = dial(&address, "/ws", offered, None, None).await;
            assert!(
                matches!(dialed, Err(ClientError::Protocol(_))),
                "offered {offered:?}, selected {selected:?}: {:?}",
                dialed.err()
            );
        }
    }

    #[tokio::test]
    async fn an_answer_that_selects_the_subprotocol_offered_is_taken() {
        for offered in [Some("messageloop+json"), None] {
            let address = server(offered).await;
            let dialed = dial(&address, "/ws", offered, None, None).await;
            assert!(dialed.is_ok(), "{offered:?}: {:?}", dialed.err());
        }
    }
}
