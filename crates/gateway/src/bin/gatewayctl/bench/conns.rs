//! `gatewayctl bench conns`: opens K idle connections (handshake done, nothing subscribed) and reports how much
//! gatewayd's resident memory grew per connection. The RSS comes from `/proc/<pid>/status` (`--pid`, gatewayd
//! on this machine) or from the admin API's `/api/process`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use clients::goomerang::GoomerangClient;
use clients::messageloop::{self, MessageLoopClient};
use clients::{Client, Credentials, Protocol};
use futures::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use protocols::messageloop::pb::messageloop::client::v2 as g2;

use crate::admin::Admin;
use crate::credentials::CredentialArgs;

/// Connections opened at the same time.
const CONCURRENCY: usize = 64;
/// Time given to gatewayd to settle before the connections open.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Args)]
pub struct ConnsArgs {
    /// Protocol of the connections.
    #[arg(long, default_value = "stomp")]
    protocol: Protocol,
    /// STOMP only: connect over WebSocket (`stomp.ws`, subprotocol `v12.stomp`) instead of TCP.
    #[arg(long)]
    ws: bool,
    /// MessageLoop only: open G2 gRPC streams (`messageloop.grpc`, one HTTP/2 connection each) instead of
    /// WebSocket connections.
    #[arg(long)]
    grpc: bool,
    /// STOMP and MQTT: connect to the TLS listener (`stomp.tls`, `mqtt.tls`) instead of the TCP one.
    /// MessageLoop and Goomerang: WebSocket over TLS (`wss://`) on their listener, which must have `tls` set.
    #[arg(long)]
    tls: bool,
    /// Listener `host:port`; by default from the admin API.
    #[arg(long)]
    address: Option<String>,
    /// Number of connections.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Seconds the open connections are left idle before gatewayd's RSS is read. gatewayd gives back what their
    /// handshakes freed within one period of its memory task (5 s) after they open, and once more a period later,
    /// so the default reads the idle state; a small value is for tests that only need the connections.
    #[arg(long, default_value_t = 11)]
    idle_secs: u64,
    /// gatewayd's pid (its RSS is read from /proc); without it, from the admin API's `/api/process`.
    #[arg(long)]
    pid: Option<u32>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    credentials: CredentialArgs,
}

#[derive(Serialize)]
struct ConnsResult {
    protocol: String,
    transport: &'static str,
    connections: usize,
    rss_before_bytes: u64,
    rss_after_bytes: u64,
    bytes_per_connection: f64,
}

/// An open connection, held until the measurement is done.
enum Idle {
    Client(Box<Client>),
    StompWs(Box<StompWs>),
    /// A STOMP or MQTT connection over TLS.
    Tls(Box<TlsStream<TcpStream>>),
    /// The request side (kept open) and the response side of a gRPC stream.
    Grpc(
        tokio::sync::mpsc::Sender<g2::InboundMessage>,
        Box<tonic::Streaming<g2::OutboundMessage>>,
    ),
}

type StompWs = tokio_tungstenite::WebSocketStream<TcpStream>;

pub async fn run(admin: &Admin, args: ConnsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.grpc || args.protocol == Protocol::MessageLoop,
        "--grpc is for --protocol messageloop"
    );
    anyhow::ensure!(
        !args.tls
            || matches!(args.protocol, Protocol::Stomp | Protocol::Mqtt) && !args.ws
            || args.protocol == Protocol::Goomerang
            || args.protocol == Protocol::MessageLoop && !args.grpc,
        "--tls is for --protocol stomp or mqtt without --ws, messageloop without --grpc, or goomerang"
    );
    let listener = if args.ws && args.protocol == Protocol::Stomp {
        "stomp.ws"
    } else if args.grpc {
        "messageloop.grpc"
    } else if args.tls && matches!(args.protocol, Protocol::Stomp | Protocol::Mqtt) {
        match args.protocol {
            Protocol::Mqtt => "mqtt.tls",
            _ => "stomp.tls",
        }
    } else {
        args.protocol.listener()
    };
    let address = admin
        .listener_address(listener, args.address.as_deref())
        .await
        .context(format!("no address for {listener}: give --address"))?;
    let credentials = args.credentials.credentials();
    let tls = TlsConnector::from(Arc::new(clients::tls::trust_any(rustls::DEFAULT_VERSIONS)?));
    tokio::time::sleep(SETTLE).await;
    let before = rss(admin, args.pid).await?;
    let mut open: Vec<Idle> = Vec::with_capacity(args.count);
    while open.len() < args.count {
        let batch = CONCURRENCY.min(args.count - open.len());
        let dials = (0..batch).map(|_| dial(&args, &address, &credentials, &tls));
        for idle in futures::future::join_all(dials).await {
            open.push(idle.with_context(|| format!("connection {} to {address}", open.len() + 1))?);
        }
    }
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let after = rss(admin, args.pid).await?;
    let result = ConnsResult {
        protocol: args.protocol.to_string(),
        transport: if args.grpc {
            "grpc"
        } else if args.tls && matches!(args.protocol, Protocol::MessageLoop | Protocol::Goomerang) {
            "websocket+tls"
        } else if args.tls {
            "tls"
        } else if args.ws || matches!(args.protocol, Protocol::MessageLoop | Protocol::Goomerang) {
            "websocket"
        } else if args.protocol == Protocol::Loom {
            "quic"
        } else {
            "tcp"
        },
        connections: open.len(),
        rss_before_bytes: before,
        rss_after_bytes: after,
        bytes_per_connection: after.saturating_sub(before) as f64 / open.len().max(1) as f64,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "{} idle {} {} connections: RSS {:.1} MiB → {:.1} MiB, {:.0} bytes ({:.2} KiB) per connection",
            result.connections,
            result.protocol,
            result.transport,
            before as f64 / 1_048_576.0,
            after as f64 / 1_048_576.0,
            result.bytes_per_connection,
            result.bytes_per_connection / 1024.0
        );
    }
    let closes = open.into_iter().map(|idle| async move {
        match idle {
            Idle::Client(client) => drop(client.close().await),
            Idle::StompWs(mut ws) => drop(SinkExt::close(&mut ws).await),
            Idle::Tls(mut tls) => drop(tls.shutdown().await),
            Idle::Grpc(requests, responses) => drop((requests, responses)),
        }
    });
    futures::stream::iter(closes)
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    Ok(())
}

async fn dial(
    args: &ConnsArgs,
    address: &str,
    credentials: &Credentials,
    tls: &TlsConnector,
) -> anyhow::Result<Idle> {
    let (protocol, ws) = (args.protocol, args.ws);
    if args.grpc {
        return grpc(address, credentials).await;
    }
    if args.tls {
        return Ok(match protocol {
            Protocol::MessageLoop => {
                let encoding = messageloop::Encoding::Protobuf;
                let client = MessageLoopClient::connect(address, credentials, encoding, Some(tls));
                Idle::Client(Box::new(Client::MessageLoop(client.await?)))
            }
            Protocol::Goomerang => {
                let client = GoomerangClient::connect(address, credentials, Some(tls));
                Idle::Client(Box::new(Client::Goomerang(client.await?)))
            }
            _ => Idle::Tls(Box::new(
                over_tls(protocol, address, credentials, tls).await?,
            )),
        });
    }
    if ws && protocol == Protocol::Stomp {
        return Ok(Idle::StompWs(Box::new(
            stomp_ws(address, credentials).await?,
        )));
    }
    Ok(Idle::Client(Box::new(
        Client::connect(protocol, address, credentials).await?,
    )))
}

/// STOMP over WebSocket: upgrade offering `v12.stomp`, CONNECT (with `login`/`passcode` when given), wait for
/// CONNECTED.
async fn stomp_ws(address: &str, credentials: &Credentials) -> anyhow::Result<StompWs> {
    let addr = clients::resolve(address).await?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!("ws://{address}/ws").into_client_request()?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("v12.stomp"),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await?;
    let connect = clients::stomp_connect::connect_frame(credentials)?;
    ws.send(WsMessage::text(connect)).await?;
    let answer = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .context("no CONNECTED within 10 s")?
        .context("closed before CONNECTED")??;
    let text = answer.into_data();
    anyhow::ensure!(
        text.starts_with(b"CONNECTED"),
        "expected CONNECTED, got {:?}",
        String::from_utf8_lossy(&text)
    );
    Ok(ws)
}

/// STOMP or MQTT over TLS: the TLS handshake, then CONNECT, then wait for an accepting CONNECTED or CONNACK.
async fn over_tls(
    protocol: Protocol,
    address: &str,
    credentials: &Credentials,
    tls: &TlsConnector,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(clients::resolve(address).await?).await?;
    let mut stream = tls.connect(ServerName::try_from("localhost")?, tcp).await?;
    let connect = match protocol {
        Protocol::Mqtt => clients::mqtt::connect_packet(credentials)?.to_vec(),
        _ => clients::stomp_connect::connect_frame(credentials)?.into_bytes(),
    };
    stream.write_all(&connect).await?;
    stream.flush().await?;
    let mut answer = Vec::new();
    let complete = |answer: &[u8]| match protocol {
        // CONNACK: type, remaining length, flags, reason code.
        Protocol::Mqtt => answer.len() >= 4,
        _ => answer.contains(&0),
    };
    let read = async {
        while !complete(&answer) {
            anyhow::ensure!(
                stream.read_buf(&mut answer).await? > 0,
                "closed before the answer to CONNECT"
            );
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .context("no answer to CONNECT within 10 s")??;
    let accepted = match protocol {
        Protocol::Mqtt => answer[0] == 0x20 && answer[3] == 0,
        _ => answer.starts_with(b"CONNECTED"),
    };
    anyhow::ensure!(
        accepted,
        "CONNECT refused: {:?}",
        String::from_utf8_lossy(&answer)
    );
    Ok(stream)
}

/// A MessageLoop G2 gRPC stream on its own HTTP/2 connection: Connect, wait for the reply.
async fn grpc(address: &str, credentials: &Credentials) -> anyhow::Result<Idle> {
    use g2::inbound_message::Envelope;
    let mut client = g2::message_loop_service_client::MessageLoopServiceClient::connect(format!(
        "http://{address}"
    ))
    .await?;
    let (requests, rx) = tokio::sync::mpsc::channel(1);
    let outbound =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let connect = g2::InboundMessage {
        id: "connect".into(),
        time: 0,
        envelope: Some(Envelope::Connect(g2::Connect {
            version: "2.0.0".into(),
            token: credentials.token.clone().unwrap_or_default(),
            ..Default::default()
        })),
    };
    requests.send(connect).await?;
    let mut responses = client.message_loop(outbound).await?.into_inner();
    tokio::time::timeout(Duration::from_secs(10), responses.message())
        .await
        .context("no reply to Connect within 10 s")??
        .context("stream ended before the reply to Connect")?;
    Ok(Idle::Grpc(requests, Box::new(responses)))
}

/// gatewayd's resident set size in bytes.
async fn rss(admin: &Admin, pid: Option<u32>) -> anyhow::Result<u64> {
    match pid {
        Some(pid) => {
            let status = tokio::fs::read_to_string(format!("/proc/{pid}/status"))
                .await
                .with_context(|| format!("reading /proc/{pid}/status"))?;
            vm_rss(&status).context("no VmRSS line")
        }
        None => Ok(admin.process().await?.1),
    }
}

/// The `VmRSS:` line of `/proc/<pid>/status`, in bytes.
pub fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tgatewayd\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(super::vm_rss(status), Some(12345 * 1024));
        assert_eq!(super::vm_rss("Name: x\n"), None);
    }
}
