//! The shared accept path over real sockets: handshakes run side by side, partial input that is never finished is
//! cut by the pre-auth or idle-frame deadline, subscribers that stop reading are cut by the write deadline, and
//! over-limit input gets the protocol's own refusal. Deadlines are configured short so the tests run fast.

#[path = "support/loom_client.rs"]
mod loom_client;
#[path = "support/messageloop_client.rs"]
mod messageloop_client;
#[path = "support/stomp_client.rs"]
mod stomp_client;
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use messageloop_client::{grpc, Ws};
use stomp_client::{frames, Frame, Peer};
use support::*;

const JSON: &[&str] = &["messageloop+json"];
/// Deadlines that cut quickly: 300 ms for pre-auth, unfinished frames and blocked writes.
const SHORT: &str = "deadlines = { pre_auth_ms = 300, idle_frame_ms = 300, write_ms = 300 }\n";
/// [`SHORT`] but for pre-auth, which gives a client that logs in as it should (the tests of what comes after)
/// all the time a loaded machine may take, and is past [`WAIT`], so that it never does another deadline's cut.
const AFTER_LOGIN: &str =
    "deadlines = { pre_auth_ms = 60000, idle_frame_ms = 300, write_ms = 300 }\n";
/// Longest a test waits for the server to cut a connection.
const WAIT: Duration = Duration::from_secs(10);

/// gatewayd with the base configuration followed by `extra`.
fn start(extra: &str) -> Gatewayd {
    Gatewayd::start(&format!("{}{extra}", base_config()))
}

/// Whether the server closes `stream` within [`WAIT`] (bytes it sends before closing are skipped).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A raw WebSocket upgrade of `path` on `addr`; returns the socket once the 101 response is read.
fn upgraded(addr: SocketAddr, path: &str, subprotocol: Option<&str>) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let protocol = subprotocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .expect("upgrade request");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).expect("upgrade response"), 1);
        response.push(byte[0]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    stream
}

/// The header of a masked binary frame from a client declaring `len` payload bytes.
fn frame_header(len: u64) -> Vec<u8> {
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    header
}

#[test]
fn messageloop_ws_upgrade_never_finished_is_cut() {
    let gateway = start(&format!(
        "[messageloop]\n{SHORT}[messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n"
    ));
    let mut stream = TcpStream::connect(gateway.listener("messageloop.ws")).expect("connect");
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    assert!(
        closed_by_server(&mut stream),
        "half an upgrade request held the connection open"
    );
}

#[test]
fn messageloop_grpc_without_preface_is_cut() {
    let gateway = start(&format!(
        "[messageloop]\n{SHORT}[messageloop.grpc]\nenabled = true\naddress = \"127.0.0.1:0\"\n"
    ));
    let mut stream = TcpStream::connect(gateway.listener("messageloop.grpc")).expect("connect");
    stream.write_all(b"PRI * HTTP/2.0\r\n").expect("write");
    assert!(
        closed_by_server(&mut stream),
        "half a preface held the connection open"
    );
}

#[test]
fn grpc_tls_handshakes_do_not_wait_for_a_silent_client() {
    let gateway = start(
        "[messageloop]\ndeadlines = { pre_auth_ms = 60000 }\n[messageloop.grpc]\nenabled = true\n\
         address = \"127.0.0.1:0\"\ntls = { self_signed = true }\n",
    );
    let addr = gateway.listener("messageloop.grpc");
    let _silent = TcpStream::connect(addr).expect("connect");
    // A TLS handshake while the silent client holds its own: it finishes well before the silent one's deadline.
    let mut tls = messageloop_client::trusting_tls_client();
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp)
            .expect("TLS handshake while another client is silent");
    }
}

#[test]
fn stomp_frame_left_unfinished_after_login_is_cut() {
    let gateway = start(&format!(
        "[stomp]\n{AFTER_LOGIN}[stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n"
    ));
    let mut peer = Peer::connect(gateway.listener("stomp.tcp"));
    peer.send_raw(b"SEND\ndestination:/topic/a\ncontent-length:1000\n\nabc");
    peer.expect_closed(WAIT);
}

#[test]
fn stomp_login_must_finish_within_the_pre_auth_deadline() {
    let gateway = start(&format!(
        "[stomp]\n{SHORT}[stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n"
    ));
    let mut peer = Peer::open(gateway.listener("stomp.tcp"));
    peer.send_raw(b"CONNECT\naccept-version:1.2\n");
    peer.expect_closed(WAIT);
}

#[test]
fn goomerang_frame_left_unfinished_is_cut() {
    let gateway = start(&format!(
        "[goomerang]\nenabled = true\naddress = \"127.0.0.1:0\"\n{AFTER_LOGIN}"
    ));
    let mut stream = upgraded(gateway.listener("goomerang.ws"), "/ws", None);
    let mut partial = frame_header(100);
    partial.extend_from_slice(&[0u8; 10]);
    stream.write_all(&partial).expect("write");
    assert!(
        closed_by_server(&mut stream),
        "an unfinished frame held the connection open"
    );
}

#[test]
fn stomp_ws_message_over_the_limit_gets_close_1009_from_its_header() {
    let gateway = start("[stomp.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n");
    let mut stream = upgraded(gateway.listener("stomp.ws"), "/ws", Some("v12.stomp"));
    // Only the header of a 2 MiB frame (the limit is 1 MiB).
    stream.write_all(&frame_header(2 << 20)).expect("write");
    let mut close = [0u8; 4];
    stream.read_exact(&mut close).expect("a close frame");
    assert_eq!(close[0], 0x88, "close opcode");
    assert_eq!(u16::from_be_bytes([close[2], close[3]]), 1009);
}

/// How many connections `/api/conns` lists on `listener`.
fn connections(gateway: &Gatewayd, listener: &str) -> usize {
    gateway
        .get_json("/api/connections")
        .as_array()
        .map_or(0, |all| {
            all.iter().filter(|c| c["listener"] == listener).count()
        })
}

/// Polls `/api/connections` until no connection is left on `listener`.
fn wait_stalled_subscriber_cut(gateway: &Gatewayd, listener: &str) {
    gateway.wait_for(
        "/api/connections",
        "the stalled subscriber to be cut",
        |all| {
            all.as_array()
                .is_some_and(|all| all.iter().all(|c| c["listener"] != listener))
        },
    );
}

/// Publishes `count` STOMP messages of 32 KiB to `/topic/<topic>`: more than socket buffers and HTTP/2 windows
/// hold, less than the bus's slow-consumer limit.
fn flood(stomp: SocketAddr, topic: &str, count: usize) {
    let mut publisher = Peer::connect(stomp);
    let body = vec![b'x'; 32 << 10];
    let send = Frame::new("SEND")
        .header("destination", &format!("/topic/{topic}"))
        .body(&body);
    let bytes = send.to_bytes();
    for _ in 0..count {
        publisher.send_raw(&bytes);
    }
    let receipt = frames::send_string(&format!("/topic/{topic}.done"), "").header("receipt", "r");
    publisher.send(&receipt);
}

#[test]
fn messageloop_ws_subscriber_that_stops_reading_is_cut() {
    let gateway = start(&format!(
        "[stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n[messageloop]\n{AFTER_LOGIN}\
         [messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n"
    ));
    let mut ws = Ws::connect(gateway.listener("messageloop.ws"), JSON);
    ws.handshake("2.0.0", "");
    ws.subscribe("s", &["flood"]);
    assert_eq!(connections(&gateway, "messageloop.ws"), 1);
    // The subscriber reads nothing more.
    flood(gateway.listener("stomp.tcp"), "flood", 800);
    wait_stalled_subscriber_cut(&gateway, "messageloop.ws");
    drop(ws);
}

#[test]
fn messageloop_grpc_subscriber_that_stops_reading_is_cut() {
    let gateway = start(&format!(
        "[stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n[messageloop]\n{AFTER_LOGIN}\
         [messageloop.grpc]\nenabled = true\naddress = \"127.0.0.1:0\"\n"
    ));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let address = gateway.listener("messageloop.grpc");
    let mut stream = runtime.block_on(grpc::connected_g2(address));
    runtime.block_on(async {
        stream.send(grpc::g2_subscribe("s", "flood")).await;
        stream.next().await.expect("subscribe ack");
    });
    // The stream is no longer read.
    flood(gateway.listener("stomp.tcp"), "flood", 800);
    wait_stalled_subscriber_cut(&gateway, "messageloop.grpc");
    drop(stream);
}

#[test]
fn messageloop_grpc_message_over_the_limit_ends_with_resource_exhausted() {
    let gateway = start(
        "[messageloop]\nlimits = { max_message_size = 1024 }\n[messageloop.grpc]\nenabled = true\n\
         address = \"127.0.0.1:0\"\n",
    );
    let addr = gateway.listener("messageloop.grpc");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        use grpc::g2::inbound_message::Envelope as In;
        let mut stream = grpc::open_g2(addr).await;
        stream
            .send(grpc::g2_inbound(
                "c",
                In::Connect(grpc::g2::Connect {
                    version: "2.0.0".into(),
                    token: "x".repeat(4096),
                    ..Default::default()
                }),
            ))
            .await;
        let ended = tokio::time::timeout(WAIT, stream.rx.message())
            .await
            .expect("the stream ends in time");
        let status = ended.expect_err("a non-OK status");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    });
}

#[test]
fn messageloop_grpc_message_that_does_not_decode_ends_with_invalid_argument() {
    let gateway = start("[messageloop.grpc]\nenabled = true\naddress = \"127.0.0.1:0\"\n");
    let addr = gateway.listener("messageloop.grpc");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut stream = grpc::open_g2_raw(addr).await;
        // `InboundMessage.id` is a string; these bytes are not UTF-8.
        stream.send(vec![0xff, 0xfe, 0xfd]).await;
        let ended = tokio::time::timeout(WAIT, stream.rx.message())
            .await
            .expect("the stream ends in time");
        let status = ended.expect_err("a non-OK status");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    });
    // The listener still serves the next client.
    runtime.block_on(async {
        let mut stream = grpc::connected_g2(addr).await;
        stream.send(grpc::g2_subscribe("s", "after")).await;
        stream.next().await.expect("subscribe ack");
    });
}

#[test]
fn loom_hello_never_finished_is_cut() {
    let gateway = start(&format!(
        "[loom]\nenabled = true\naddress = \"127.0.0.1:0\"\n{SHORT}"
    ));
    let addr = SocketAddr::from(([127, 0, 0, 1], gateway.listener("loom.quic").port()));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = loom_client::Client::connect(addr, loom_client::Transport::Quic).await;
        let hello = loom_client::hello(1, b"p", b"room", b"");
        let mut stream = client.open(&hello[..4]).await;
        let ended = tokio::time::timeout(WAIT, stream.read_to_end()).await;
        assert!(ended.is_ok(), "half a hello held the stream open");
    });
}

#[test]
fn unfinished_frames_over_the_process_budget_are_refused() {
    let gateway = start("[limits]\nmax_unfinished_frame_bytes = 1048576\n[stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n");
    let stomp = gateway.listener("stomp.tcp");
    let declared = 700 << 10;
    let head = format!("SEND\ndestination:/topic/big\nreceipt:done\ncontent-length:{declared}\n\n");
    let sent = 600 << 10;
    let mut peers = [Peer::connect(stomp), Peer::connect(stomp)];
    // Two large frames, each under the budget, both together over it.
    for peer in &mut peers {
        let mut start = head.clone().into_bytes();
        start.resize(head.len() + sent, b'x');
        let _ = peer.try_send_raw(&start);
    }
    // Neither frame can finish before one of them is refused.
    let deadline = Instant::now() + WAIT;
    let refused = loop {
        let closed = (0..peers.len()).find(|&i| {
            peers[i].receive(Duration::from_millis(50)) == stomp_client::Received::Closed
        });
        if let Some(refused) = closed {
            break refused;
        }
        assert!(Instant::now() < deadline, "no large frame was refused");
    };
    let survivor = &mut peers[1 - refused];
    let mut rest = vec![b'x'; declared - sent];
    rest.push(0);
    survivor.send_raw(&rest);
    let receipt = survivor.expect_frame(WAIT);
    assert_eq!(
        receipt.command, "RECEIPT",
        "the other frame finishes: {receipt:?}"
    );
}

/// Sets gatewayd's soft open-file limit with `prlimit`.
fn limit_files(gateway: &Gatewayd, files: usize) {
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", gateway.pid()))
        .arg(format!("--nofile={files}:"))
        .status()
        .expect("prlimit");
    assert!(status.success());
}

#[test]
fn out_of_file_descriptors_backs_off_instead_of_spinning() {
    let gateway = start(
        "[chanserv]\nenabled = true\naddress = \"127.0.0.1:0\"\n[messageloop.ws]\nenabled = true\n\
         address = \"127.0.0.1:0\"\n",
    );
    let listeners = [
        gateway.listener("chanserv.tcp"),
        gateway.listener("messageloop.ws"),
    ];
    let open = std::fs::read_dir(format!("/proc/{}/fd", gateway.pid()))
        .expect("fd list")
        .count();
    limit_files(&gateway, open);
    // Waiting in the backlog: every accept() now fails with EMFILE.
    let _waiting: Vec<TcpStream> = listeners
        .iter()
        .map(|&addr| TcpStream::connect(addr).expect("connect"))
        .collect();
    let failing_by = Instant::now() + Duration::from_secs(10);
    while gateway.logged("accept failed") == 0 {
        assert!(Instant::now() < failing_by, "accept() did not fail");
        std::thread::sleep(Duration::from_millis(10));
    }
    // From the first failure, a window in which a listener that retries at once fails thousands of times; one
    // that backs off (10 ms, doubling to 1 s) a handful.
    let first = gateway.logged("accept failed");
    std::thread::sleep(Duration::from_millis(500));
    let failures = gateway.logged("accept failed") - first;
    limit_files(&gateway, open + 100);
    assert!(
        failures < 100,
        "{failures} accept failures in half a second"
    );
}

/// Opens `count` WebSocket connections to `/ws` on `addr` that read until gatewayd closes them, then go.
fn websocket_clients(
    runtime: &tokio::runtime::Runtime,
    addr: SocketAddr,
    subprotocol: Option<&str>,
    count: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    (0..count)
        .map(|_| {
            let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
            if let Some(protocol) = subprotocol {
                request
                    .headers_mut()
                    .insert("sec-websocket-protocol", protocol.parse().unwrap());
            }
            runtime.spawn(async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(request)
                    .await
                    .expect("upgrade");
                while let Some(Ok(_)) = ws.next().await {}
            })
        })
        .collect()
}

/// Opens `count` TCP connections to `addr` that send `hello`, then read until gatewayd closes them.
fn tcp_clients(
    runtime: &tokio::runtime::Runtime,
    addr: SocketAddr,
    hello: &'static [u8],
    count: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    (0..count)
        .map(|_| {
            runtime.spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                stream.write_all(hello).await.expect("hello");
                let mut sink = [0u8; 4096];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            })
        })
        .collect()
}

#[test]
fn shutdown_ends_once_the_clients_told_to_go_have_gone() {
    let gateway = Gatewayd::start(
        "[admin]\naddress = \"127.0.0.1:0\"\n[shutdown]\ndrain_timeout_secs = 30\n\
         [stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [stomp.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [goomerang]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [chanserv]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [messageloop.grpc]\nenabled = true\naddress = \"127.0.0.1:0\"\n",
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let per_listener = 50;
    let tcp = |name, hello| tcp_clients(&runtime, gateway.listener(name), hello, per_listener);
    let ws = |name, protocol| {
        websocket_clients(&runtime, gateway.listener(name), protocol, per_listener)
    };
    let clients: Vec<_> = [
        tcp("stomp.tcp", b"CONNECT\naccept-version:1.2\n\n\0"),
        tcp("chanserv.tcp", b""),
        ws("stomp.ws", Some("v12.stomp")),
        ws("messageloop.ws", Some("messageloop+json")),
        ws("goomerang.ws", None),
    ]
    .into_iter()
    .flatten()
    .collect();
    wait_connection_count(&gateway, 5 * per_listener);
    // The drain timeout is 30 s; clients that leave when told let gatewayd exit long before.
    let status = gateway.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    runtime.block_on(futures::future::join_all(clients));
}

/// The `tr` (timer) field of the `/proc/net/tcp` line whose local port is `local` and remote port `remote`: 2 is
/// the keep-alive timer, 0 none.
fn tcp_timer(local: u16, remote: u16) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = |address: &str| u16::from_str_radix(address.rsplit(':').next()?, 16).ok();
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (l, r, timer) = (fields.get(1)?, fields.get(2)?, fields.get(5)?);
        (port(l)? == local && port(r)? == remote)
            .then(|| timer.split(':').next()?.parse().ok())
            .flatten()
    })
}

#[test]
fn every_tcp_listener_turns_keep_alive_on() {
    let gateway = start(
        "[stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [messageloop.grpc]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [chanserv]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [goomerang]\nenabled = true\naddress = \"127.0.0.1:0\"\n",
    );
    for name in [
        "stomp.tcp",
        "messageloop.ws",
        "messageloop.grpc",
        "chanserv.tcp",
        "goomerang.ws",
    ] {
        let listener = gateway.listener(name);
        let client = TcpStream::connect(listener).expect("connect");
        let mine = client.local_addr().expect("local address").port();
        // The client's own socket has no keep-alive: the reading tells the two apart.
        assert_eq!(
            tcp_timer(mine, listener.port()),
            Some(0),
            "{name}: client side"
        );
        let deadline = Instant::now() + WAIT;
        let server_side = loop {
            match tcp_timer(listener.port(), mine) {
                Some(2) => break Some(2),
                other if Instant::now() > deadline => break other,
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        assert_eq!(
            server_side,
            Some(2),
            "{name}: server side has no keep-alive timer"
        );
    }
}
