//! Loom over real QUIC and HTTP/3 sockets against the gatewayd binary: keyed load balancing with exactly-once
//! delivery, stop-and-wait acks, auth and hello refusals, framing limits, multi-MiB messages, messages over
//! `max_message_bytes` cut through to a Loom consumer (and not to other protocols), shutdown, and an independent
//! aioquic client.

mod support;

#[path = "support/loom_client.rs"]
mod loom_client;
#[path = "support/pki.rs"]
mod pki;
#[path = "support/python.rs"]
mod python;
#[path = "support/stomp_client.rs"]
mod stomp_client;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use loom_client::*;
use pki::{client_certificate, copy, test_ca};
use stomp_client::{frames, Peer};
use support::*;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);
/// How long a test watches for something that must not happen.
const QUIET: Duration = Duration::from_millis(300);
const REJECT_DELAY_MS: u64 = 200;

fn config(extra: &str) -> String {
    format!(
        "{}[loom]\nenabled = true\naddress = \"127.0.0.1:0\"\nreject_delay_ms = {REJECT_DELAY_MS}\n{extra}",
        base_config()
    )
}

fn start(extra: &str) -> (Gatewayd, SocketAddr, Runtime) {
    let gateway = Gatewayd::start(&config(extra));
    let addr = gateway.listener("loom.quic");
    let addr = SocketAddr::from(([127, 0, 0, 1], addr.port()));
    (gateway, addr, multi_thread_runtime(2))
}

/// Opens an anonymous producer stream (`p`) on `client` into `room`.
async fn producer_into(client: &Client, room: &str) -> Stream {
    client
        .open(&hello(PRODUCER, b"p", room.as_bytes(), b""))
        .await
}

/// Opens an anonymous consumer stream (`c`) on `client` in `room` and waits until the room has that one member.
fn sole_consumer(gateway: &Gatewayd, rt: &Runtime, client: &Client, room: &str) -> Stream {
    let consumer = rt.block_on(client.open(&hello(CONSUMER, b"c", room.as_bytes(), b"")));
    wait_members(gateway, room, 1);
    consumer
}

/// A producer hello into `room` followed by the header of a message (key `k`) declaring `limit + 1` bytes.
fn declaring_over(room: &str, limit: u64) -> Vec<u8> {
    let mut declared = hello(PRODUCER, b"p", room.as_bytes(), b"");
    declared.extend_from_slice(&[0x01, b'k']);
    uvarint(limit + 1, &mut declared);
    declared.push(0x00);
    declared
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The next whole message on `consumer`, within [`WAIT`].
async fn next_msg(consumer: &mut Stream, what: &str) -> Msg {
    within(what, consumer.next()).await.unwrap().unwrap()
}

/// Asserts that nothing arrives on `consumer` for [`QUIET`]; `what` names what would have been wrong.
async fn assert_silent(consumer: &mut Stream, what: &str) {
    assert!(timeout(QUIET, consumer.next()).await.is_err(), "{what}");
}

/// `gatewayd_loom_streamed_messages_total` for cut-through messages with `outcome`.
fn streamed(gateway: &Gatewayd, outcome: &str) -> f64 {
    gateway.metric(
        "gatewayd_loom_streamed_messages_total",
        &[("outcome", outcome)],
    )
}

/// Consumers that ack every message and report (consumer index, message).
async fn acking_consumers(
    addr: SocketAddr,
    transport: Transport,
    room: &str,
    n: usize,
) -> (Vec<Client>, mpsc::UnboundedReceiver<(usize, Msg)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut clients = Vec::new();
    for index in 0..n {
        let client = Client::connect(addr, transport).await;
        let mut stream = client
            .open(&hello(
                CONSUMER,
                format!("c{index}").as_bytes(),
                room.as_bytes(),
                b"",
            ))
            .await;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = stream.next().await {
                if stream.write(&ack(msg.id)).await.is_err() || tx.send((index, msg)).is_err() {
                    break;
                }
            }
        });
        clients.push(client);
    }
    (clients, rx)
}

fn keyed_messages_are_delivered_once_with_key_affinity(transport: Transport) {
    let (gateway, addr, rt) = start("");
    let room = format!("orders.{transport:?}");
    let (_consumers, mut delivered) = rt.block_on(acking_consumers(addr, transport, &room, 3));
    wait_members(&gateway, &room, 3);
    const N: usize = 90;
    let got = rt.block_on(async {
        let producer = Client::connect(addr, transport).await;
        let mut stream = producer_into(&producer, &room).await;
        for i in 0..N {
            let key = format!("key-{}", i % 15);
            stream
                .write(&message(key.as_bytes(), format!("body-{i}").as_bytes(), 3))
                .await
                .unwrap();
        }
        stream.finish().await;
        if transport == Transport::H3 {
            assert_eq!(within("producer status", stream.status()).await, Some(200));
        }
        let mut got = Vec::new();
        while got.len() < N {
            got.push(within("deliveries", delivered.recv()).await.unwrap());
        }
        assert!(
            timeout(QUIET, delivered.recv()).await.is_err(),
            "a message was delivered twice"
        );
        got
    });
    let bodies: BTreeSet<Vec<u8>> = got.iter().map(|(_, m)| m.body.clone()).collect();
    let expected: BTreeSet<Vec<u8>> = (0..N).map(|i| format!("body-{i}").into_bytes()).collect();
    assert_eq!(bodies, expected, "every message exactly once");
    let ids: BTreeSet<u64> = got.iter().map(|(_, m)| m.id).collect();
    assert_eq!(
        ids,
        (1..=N as u64).collect(),
        "server-assigned per-room ids from 1"
    );
    let mut owner: HashMap<Vec<u8>, usize> = HashMap::new();
    for (consumer, msg) in &got {
        assert_eq!(msg.declared_size, msg.body.len() as u64);
        let first = *owner.entry(msg.key.clone()).or_insert(*consumer);
        assert_eq!(
            first,
            *consumer,
            "key {:?} moved",
            String::from_utf8_lossy(&msg.key)
        );
    }
    let used: BTreeSet<usize> = owner.values().copied().collect();
    assert!(used.len() > 1, "15 keys all hashed to one of 3 consumers");
}

#[test]
fn quic_keyed_messages_are_delivered_once_with_key_affinity() {
    keyed_messages_are_delivered_once_with_key_affinity(Transport::Quic);
}

#[test]
fn h3_keyed_messages_are_delivered_once_with_key_affinity() {
    keyed_messages_are_delivered_once_with_key_affinity(Transport::H3);
}

fn acks_gate_delivery(transport: Transport) {
    let (gateway, addr, rt) = start("");
    let room = format!("gate.{transport:?}");
    let client = rt.block_on(Client::connect(addr, transport));
    let mut consumer = sole_consumer(&gateway, &rt, &client, &room);
    rt.block_on(async {
        let producer = Client::connect(addr, transport).await;
        let mut stream = producer_into(&producer, &room).await;
        for i in 1..=3 {
            stream
                .write(&message(b"k", format!("m{i}").as_bytes(), 64))
                .await
                .unwrap();
        }
        stream.finish().await;
        let first = next_msg(&mut consumer, "first message").await;
        assert_eq!((first.id, first.body.as_slice()), (1, &b"m1"[..]));
        assert_silent(&mut consumer, "second message before the ack").await;
        // An ack for another id and a frame of another type release nothing.
        consumer.write(&ack(7)).await.unwrap();
        consumer.write(&[0x02, 0x01]).await.unwrap();
        assert_silent(&mut consumer, "released by a wrong ack").await;
        consumer.write(&ack(1)).await.unwrap();
        let second = next_msg(&mut consumer, "second message").await;
        assert_eq!((second.id, second.body.as_slice()), (2, &b"m2"[..]));
        consumer.write(&ack(2)).await.unwrap();
        let third = next_msg(&mut consumer, "third message").await;
        assert_eq!(third.id, 3);
    });
}

#[test]
fn quic_acks_gate_delivery() {
    acks_gate_delivery(Transport::Quic);
}

#[test]
fn h3_acks_gate_delivery() {
    acks_gate_delivery(Transport::H3);
}

fn group_stat(gateway: &Gatewayd, topic: &str, stat: &str) -> u64 {
    let topics = gateway.get_json("/api/topics");
    topics
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["topic"] == topic)
        .and_then(|t| t["group"][stat].as_u64())
        .unwrap_or(0)
}

#[test]
fn full_room_stops_reading_the_producer() {
    let (gateway, addr, rt) = start(
        "[[bus.groups]]\ntopics = \"bp.>\"\nno_member = \"discard\"\noverflow = \"block\"\n\
         max_messages = 2\nmax_bytes = 67108864\n",
    );
    let room = "bp.r";
    let client = rt.block_on(Client::connect(addr, Transport::Quic));
    let mut consumer = sole_consumer(&gateway, &rt, &client, room);
    const N: usize = 40;
    let producer = rt.block_on(async {
        let producer = Client::connect(addr, Transport::Quic).await;
        let mut stream = producer_into(&producer, room).await;
        tokio::spawn(async move {
            for i in 0..N {
                let body = format!("m{i}").into_bytes();
                if stream.write(&message(b"k", &body, 64)).await.is_err() {
                    break;
                }
            }
            stream.finish().await;
            stream.stopped().await
        });
        producer
    });
    // One message in flight, the room's buffer full (two plus the one that filled it), the rest unread.
    gateway.wait_for("/api/topics", "a full room", |_| {
        group_stat(&gateway, room, "retained") >= 2
    });
    std::thread::sleep(QUIET);
    assert_eq!(group_stat(&gateway, room, "unacked"), 1);
    assert!(group_stat(&gateway, room, "retained") <= 3);
    rt.block_on(async {
        for i in 0..N {
            let msg = next_msg(&mut consumer, "delivery").await;
            assert_eq!(msg.body, format!("m{i}").into_bytes(), "order of one key");
            consumer.write(&ack(msg.id)).await.unwrap();
        }
    });
    drop(producer);
}

const AUTH: &str = "[loom.auth]\nrequired = true\n[[loom.auth.tokens]]\ntoken = \"good\"\n\
    identity = { name = \"svc\", publish = [\"ok.>\"], subscribe = [\"ok.>\"] }\n";

/// Raw QUIC refusal: a zero-byte FIN on the server's half and STOP_SENDING with `code` on ours.
async fn assert_quic_refused(client: &Client, first: &[u8], code: u64) {
    let mut stream = client.open(first).await;
    assert_eq!(
        within("refusal FIN", stream.read_to_end()).await,
        Ok(Vec::new())
    );
    assert_eq!(within("STOP_SENDING", stream.stopped()).await, Some(code));
}

async fn h3_status(client: &Client, method: &str, path: &str, body: &[u8]) -> Option<u16> {
    let mut stream = client.request(method, path, body).await;
    stream.finish().await;
    within("h3 status", stream.status()).await
}

#[test]
fn auth_denial() {
    let (gateway, addr, rt) = start(AUTH);
    let quic = rt.block_on(async {
        let quic = Client::connect(addr, Transport::Quic).await;
        for (role, room, token) in [
            (PRODUCER, "ok.r", "bad"),
            (PRODUCER, "ok.r", ""),
            (PRODUCER, "no.r", "good"),
            (CONSUMER, "no.r", "good"),
        ] {
            let started = Instant::now();
            assert_quic_refused(
                &quic,
                &hello(role, b"x", room.as_bytes(), token.as_bytes()),
                1,
            )
            .await;
            if role == CONSUMER {
                assert!(started.elapsed() >= Duration::from_millis(REJECT_DELAY_MS));
            }
        }
        let h3 = Client::connect(addr, Transport::H3).await;
        for (role, room, token) in [(PRODUCER, "ok.r", "bad"), (CONSUMER, "ok.r", "")] {
            let hello = hello(role, b"x", room.as_bytes(), token.as_bytes());
            assert_eq!(h3_status(&h3, "POST", "/stream", &hello).await, Some(401));
        }
        quic
    });
    // The same connection still serves an authorized consumer.
    let mut consumer = rt.block_on(quic.open(&hello(CONSUMER, b"c", b"ok.r", b"good")));
    wait_members(&gateway, "ok.r", 1);
    rt.block_on(async {
        let h3 = Client::connect(addr, Transport::H3).await;
        let mut producer = h3.open(&hello(PRODUCER, b"p", b"ok.r", b"good")).await;
        producer
            .write(&message(b"k", b"allowed", 64))
            .await
            .unwrap();
        producer.finish().await;
        assert_eq!(within("status", producer.status()).await, Some(200));
        let msg = next_msg(&mut consumer, "delivery").await;
        assert_eq!(msg.body, b"allowed");
    });
    let connections = gateway.get_json("/api/connections");
    let names = sorted_identities(&connections);
    assert!(names.contains(&"svc"), "{connections}");
}

#[test]
fn bad_hellos_are_refused() {
    let (_gateway, addr, rt) = start("");
    let long_name = vec![b'n'; 129];
    let bad: Vec<Vec<u8>> = vec![
        b"XOOM\x04P\x00\x00\x00".to_vec(),
        b"LOOM\x03P\x00\x00\x00".to_vec(),
        b"LOOM\x04X\x00\x00\x00".to_vec(),
        hello(PRODUCER, &long_name, b"r", b""),
        hello(CONSUMER, b"c", &[b'r'; 129], b""),
        b"LOOM\x04C\x01".to_vec(),
    ];
    rt.block_on(async {
        let quic = Client::connect(addr, Transport::Quic).await;
        for first in &bad {
            let mut stream = quic.open(first).await;
            stream.finish().await;
            assert_eq!(
                within("refusal FIN", stream.read_to_end()).await,
                Ok(Vec::new())
            );
        }
        for first in &bad[..5] {
            assert_quic_refused(&quic, first, 1).await;
        }
        let h3 = Client::connect(addr, Transport::H3).await;
        for first in &bad {
            assert_eq!(h3_status(&h3, "POST", "/stream", first).await, Some(400));
        }
        let hello = hello(CONSUMER, b"c", b"r", b"");
        assert_eq!(h3_status(&h3, "GET", "/stream", &[]).await, Some(405));
        assert_eq!(h3_status(&h3, "PUT", "/stream", &hello).await, Some(405));
        assert_eq!(h3_status(&h3, "POST", "/other", &hello).await, Some(404));
        // Legacy ALPN `loom` (Loom-go v1.0.0) is served too.
        let (_endpoint, legacy) = connect_alpn(addr, b"loom").await;
        let (mut send, mut recv) = legacy.open_bi().await.unwrap();
        send.write_all(b"XOOM").await.unwrap();
        assert_eq!(
            within("legacy FIN", recv.read_to_end(16)).await.unwrap(),
            Vec::<u8>::new()
        );
    });
}

#[test]
fn oversized_fields_and_messages() {
    // Cut-through off (both limits equal): the whole-message limit alone.
    let (gateway, addr, rt) =
        start("[loom.limits]\nmax_message_bytes = 1048576\nmax_streamed_message_bytes = 1048576\n");
    let room = "big.r";
    let client = rt.block_on(Client::connect(addr, Transport::Quic));
    let mut consumer = sole_consumer(&gateway, &rt, &client, room);
    let long_key = message(&[b'k'; 257], b"x", 64);
    let mut long_chunk = vec![0x01, b'k', 0x00, 0x00];
    uvarint(65537, &mut long_chunk);
    long_chunk.extend(vec![0u8; 65537]);
    long_chunk.push(0);
    rt.block_on(async {
        let quic = Client::connect(addr, Transport::Quic).await;
        let h3 = Client::connect(addr, Transport::H3).await;
        for bad in [&long_key, &long_chunk] {
            let mut first = hello(PRODUCER, b"p", room.as_bytes(), b"");
            first.extend_from_slice(bad);
            assert_quic_refused(&quic, &first, 2).await;
            assert_eq!(h3_status(&h3, "POST", "/stream", &first).await, Some(400));
        }
        // A stream that ends inside a message is a protocol error too (never a truncated delivery).
        let mut first = hello(PRODUCER, b"p", room.as_bytes(), b"");
        first.extend_from_slice(&message(b"k", b"cut", 64)[..5]);
        assert_eq!(h3_status(&h3, "POST", "/stream", &first).await, Some(400));
        // Over max_message_bytes: the producer's stream is reset with QUIC_TOO_LARGE (HTTP/3: 413) as soon as
        // the body passes the limit, and nothing is delivered.
        let mut producer = producer_into(&quic, room).await;
        let body = vec![7u8; (1 << 20) + 1];
        let _ = producer.write(&message(b"k", &body, 65536)).await;
        assert_eq!(within("STOP_SENDING", producer.stopped()).await, Some(3));
        // Declared over the limit: refused at the header, before any body byte.
        let declared = declaring_over(room, 1 << 20);
        assert_eq!(
            h3_status(&h3, "POST", "/stream", &declared).await,
            Some(413)
        );
        // A new stream goes on.
        let mut producer = producer_into(&quic, room).await;
        producer.write(&message(b"k", b"small", 64)).await.unwrap();
        producer.finish().await;
        let msg = next_msg(&mut consumer, "delivery").await;
        assert_eq!((msg.id, msg.body.as_slice()), (1, &b"small"[..]));
    });
    assert!(dropped(&gateway, "too_large", "loom") >= 1.0);
}

fn large_message_streams_in_chunks(transport: Transport) {
    let (gateway, addr, rt) = start("");
    let room = format!("large.{transport:?}");
    let client = rt.block_on(Client::connect(addr, transport));
    let mut consumer = sole_consumer(&gateway, &rt, &client, &room);
    let body: Vec<u8> = (0..(5u32 << 20) + 12345).map(|i| (i % 251) as u8).collect();
    rt.block_on(async {
        let producer = Client::connect(addr, transport).await;
        let mut stream = producer_into(&producer, &room).await;
        let bytes = message(b"big", &body, 40_000);
        for part in bytes.chunks(100_000) {
            within("producer write", stream.write(part)).await.unwrap();
        }
        stream.finish().await;
        let msg = next_msg(&mut consumer, "large delivery").await;
        assert_eq!(msg.key, b"big");
        assert_eq!(msg.declared_size, body.len() as u64);
        assert!(msg.largest_chunk <= 65536);
        assert!(msg.body == body, "body differs");
    });
}

#[test]
fn quic_large_message_streams_in_chunks() {
    large_message_streams_in_chunks(Transport::Quic);
}

#[test]
fn h3_large_message_streams_in_chunks() {
    large_message_streams_in_chunks(Transport::H3);
}

/// A consumer stream reset by gatewayd: RESET_STREAM code 5 (raw QUIC) or `H3_INTERNAL_ERROR` (HTTP/3); never
/// a whole message, nor an end of stream, clean or inside the message.
fn assert_reset(got: Result<Option<Msg>, String>) {
    match got {
        Err(error) => assert!(
            error == "stream reset by peer: error 5" || error == "Remote reset: H3_INTERNAL_ERROR",
            "{error}"
        ),
        Ok(msg) => panic!("the consumer got {:?}", msg.map(|m| m.body.len())),
    }
}

/// Over `max_message_bytes` the message is cut through to the room's Loom consumer: the consumer has the header
/// and the first MiB while the producer holds back the rest, then the whole body arrives byte for byte, in chunks
/// a Loom consumer accepts, and stop-and-wait goes on with the next message.
fn large_messages_are_cut_through(transport: Transport, extra: &str, size: u32) {
    let (gateway, addr, rt) = start(extra);
    let room = format!("huge.{transport:?}");
    let client = rt.block_on(Client::connect(addr, transport));
    let mut consumer = sole_consumer(&gateway, &rt, &client, &room);
    let body: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    let bytes = message(b"big", &body, 65536);
    let (head, tail) = bytes.split_at(4 << 20);
    let (head, tail) = (head.to_vec(), tail.to_vec());
    rt.block_on(async {
        let producer = Client::connect(addr, transport).await;
        let mut stream = producer_into(&producer, &room).await;
        let (go, held_back) = tokio::sync::oneshot::channel::<()>();
        let sending = tokio::spawn(async move {
            stream.write(&head).await.unwrap();
            held_back.await.unwrap();
            for part in tail.chunks(1 << 20) {
                stream.write(part).await.unwrap();
            }
            stream.write(&message(b"big", b"after", 64)).await.unwrap();
            stream.finish().await;
            stream
        });
        within(
            "the first MiB before the producer sent the rest",
            consumer.received(1 << 20),
        )
        .await
        .unwrap();
        assert!(!sending.is_finished());
        go.send(()).unwrap();
        let msg = next_msg(&mut consumer, "cut-through delivery").await;
        assert_eq!((msg.id, msg.key.as_slice()), (1, &b"big"[..]));
        assert_eq!(msg.declared_size, u64::from(size));
        assert!(msg.largest_chunk <= 65536);
        assert_eq!(msg.body.len(), body.len());
        assert!(msg.body == body, "body differs");
        // Stop-and-wait: the next message only after the ack.
        assert_silent(&mut consumer, "a message before the ack").await;
        consumer.write(&ack(msg.id)).await.unwrap();
        let next = next_msg(&mut consumer, "next delivery").await;
        assert_eq!((next.id, next.body.as_slice()), (2, &b"after"[..]));
        drop(within("producer", sending).await.unwrap());
        drop(producer);
    });
    assert_eq!(streamed(&gateway, "delivered"), 1.0);
}

#[test]
fn quic_forty_mib_are_cut_through_under_the_default_limits() {
    large_messages_are_cut_through(Transport::Quic, "", 40 << 20);
}

#[test]
fn h3_large_messages_are_cut_through() {
    large_messages_are_cut_through(
        Transport::H3,
        "[loom.limits]\nmax_message_bytes = 1048576\n",
        6 << 20,
    );
}

/// The consumer stream of a cut-through message that cannot be finished (over the limit, producer reset or
/// silent) is reset, never ended as if the message were whole; the producer is told with STOP_SENDING (3: too
/// large, also for a room without a Loom consumer; 4: the consumer went away).
#[test]
fn failed_cut_through_resets_the_consumer_and_tells_the_producer() {
    let (gateway, addr, rt) = start(
        "[loom.limits]\nmax_message_bytes = 1048576\nmax_streamed_message_bytes = 4194304\n\
         [loom.deadlines]\nidle_frame_ms = 1000\n",
    );
    let room = "cut.r";
    let quic = rt.block_on(Client::connect(addr, Transport::Quic));
    rt.block_on(async {
        // No Loom consumer in the room: refused like a message over the limit.
        let mut producer = producer_into(&quic, room).await;
        let _ = producer
            .write(&message(b"k", &vec![1u8; 2 << 20], 65536))
            .await;
        assert_eq!(within("STOP_SENDING", producer.stopped()).await, Some(3));
    });
    // The body, its size not announced, grows past max_streamed_message_bytes after it was cut through.
    let mut consumer = sole_consumer(&gateway, &rt, &quic, room);
    rt.block_on(async {
        let mut producer = producer_into(&quic, room).await;
        let bytes = message_declaring(b"k", 0, &vec![2u8; 5 << 20], 65536);
        let (stopped, got) = tokio::join!(
            async {
                let _ = producer.write(&bytes).await;
                within("STOP_SENDING", producer.stopped()).await
            },
            within("consumer reset", consumer.next())
        );
        assert_eq!(stopped, Some(3));
        assert_reset(got);
    });
    // The producer resets its stream in the middle of a message. (A reset consumer stream left the room before
    // its reset was sent.)
    let mut consumer = sole_consumer(&gateway, &rt, &quic, room);
    rt.block_on(async {
        let mut producer = producer_into(&quic, room).await;
        let bytes = message(b"k", &vec![3u8; 3 << 20], 65536);
        producer.write(&bytes[..3 << 19]).await.unwrap();
        within("the first bytes", consumer.received(1 << 19))
            .await
            .unwrap();
        producer.reset(0);
        assert_reset(within("consumer reset", consumer.next()).await);
    });
    // The producer goes silent in the middle of a message for idle_frame_ms: the consumer's stream is reset, and
    // the producer's next bytes find the consumer gone (STOP_SENDING 4).
    let mut consumer = sole_consumer(&gateway, &rt, &quic, room);
    rt.block_on(async {
        let mut producer = producer_into(&quic, room).await;
        let bytes = message(b"k", &vec![4u8; 3 << 20], 65536);
        producer.write(&bytes[..3 << 19]).await.unwrap();
        assert_reset(within("consumer reset", consumer.next()).await);
        let _ = producer.write(&bytes[3 << 19..]).await;
        assert_eq!(within("STOP_SENDING", producer.stopped()).await, Some(4));
    });
    // Declared over max_streamed_message_bytes: refused at the header; the consumer gets only what follows.
    let mut consumer = sole_consumer(&gateway, &rt, &quic, room);
    rt.block_on(async {
        let mut producer = quic.open(&declaring_over(room, 4 << 20)).await;
        assert_eq!(within("STOP_SENDING", producer.stopped()).await, Some(3));
        let mut producer = producer_into(&quic, room).await;
        producer.write(&message(b"k", b"small", 64)).await.unwrap();
        producer.finish().await;
        let msg = next_msg(&mut consumer, "delivery").await;
        assert_eq!(msg.body, b"small");
    });
    assert_eq!(streamed(&gateway, "failed"), 3.0);
    assert_eq!(dropped(&gateway, "too_large", "loom"), 3.0);
}

/// Over HTTP/3 alike: the producer of a body past `max_streamed_message_bytes` gets 413, and the consumer's
/// response body, which had begun the message, is reset instead of ending.
#[test]
fn h3_failed_cut_through_resets_the_consumer_response() {
    let (gateway, addr, rt) =
        start("[loom.limits]\nmax_message_bytes = 1048576\nmax_streamed_message_bytes = 2097152\n");
    let room = "cut.h3";
    let h3 = rt.block_on(Client::connect(addr, Transport::H3));
    let mut consumer = rt.block_on(h3.open(&hello(CONSUMER, b"c", room.as_bytes(), b"")));
    let h3_producer = rt.block_on(Client::connect(addr, Transport::H3));
    wait_members(&gateway, room, 1);
    rt.block_on(async {
        let mut producer = producer_into(&h3_producer, room).await;
        let bytes = message_declaring(b"k", 0, &vec![5u8; 3 << 20], 65536);
        let (status, got) = tokio::join!(
            async {
                if producer.write(&bytes).await.is_ok() {
                    producer.finish().await;
                }
                within("producer status", producer.status()).await
            },
            within("consumer reset", consumer.next())
        );
        assert_eq!(status, Some(413));
        assert_reset(got);
    });
}

/// Other protocols get Loom messages up to `max_message_bytes` only: a STOMP subscriber of the room's topic does
/// not get a cut-through message, and that is counted as its `too_large` drop.
#[test]
fn other_protocols_do_not_get_cut_through_messages() {
    let (gateway, addr, rt) = start(
        "[loom.limits]\nmax_message_bytes = 1048576\n[stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n",
    );
    let room = "mixed.r";
    let mut stomp = Peer::connect(gateway.listener("stomp.tcp"));
    stomp.send(&frames::subscribe("/topic/mixed.r", "auto", "s1"));
    wait_fanout(&gateway, room, 1);
    let client = rt.block_on(Client::connect(addr, Transport::Quic));
    let mut consumer = sole_consumer(&gateway, &rt, &client, room);
    let body = vec![9u8; 2 << 20];
    rt.block_on(async {
        let mut producer = producer_into(&client, room).await;
        let mut bytes = message(b"k", &body, 65536);
        bytes.extend(message(b"k", b"after", 64));
        let (written, got) = tokio::join!(producer.write(&bytes), async {
            let msg = next_msg(&mut consumer, "cut-through delivery").await;
            consumer.write(&ack(msg.id)).await.unwrap();
            msg
        });
        written.unwrap();
        producer.finish().await;
        assert!(got.body == body, "body differs");
        let after = next_msg(&mut consumer, "delivery").await;
        assert_eq!(after.body, b"after");
    });
    // The STOMP subscriber's first message is the one after: the cut-through one never reached it.
    let frame = stomp.expect_frame(WAIT);
    assert_eq!(
        (frame.command.as_str(), frame.body.as_slice()),
        ("MESSAGE", &b"after"[..])
    );
    assert_eq!(dropped(&gateway, "too_large", "stomp"), 1.0);
}

#[test]
fn shutdown_closes_connections_with_an_application_code() {
    let (gateway, addr, rt) = start("");
    let client = rt.block_on(Client::connect(addr, Transport::Quic));
    let _consumer = rt.block_on(client.open(&hello(CONSUMER, b"c", b"bye", b"")));
    wait_members(&gateway, "bye", 1);
    let status = gateway.terminate(Duration::from_secs(6));
    assert_eq!(status.code(), Some(0));
    let closed = rt.block_on(within("close", client.conn.closed()));
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(u64::from(close.error_code), 0);
        }
        other => panic!("expected an application close, got {other:?}"),
    }
}

#[test]
fn aioquic_producer_and_consumer() {
    let (gateway, addr, _rt) = start(
        "[loom.auth]\nrequired = true\n[[loom.auth.tokens]]\ntoken = \"t\"\nidentity = { name = \"vectors\" }\n",
    );
    python::pytest(
        "test_loom.py",
        &[
            ("GATEWAYD_LOOM", addr.to_string()),
            ("GATEWAYD_ADMIN", gateway.admin.to_string()),
        ],
    );
}

#[test]
fn reload_applies_new_tokens_to_new_streams_and_keeps_open_ones() {
    let (gateway, addr, rt) = start(AUTH);
    let quic = rt.block_on(Client::connect(addr, Transport::Quic));
    let mut consumer = rt.block_on(quic.open(&hello(CONSUMER, b"c", b"ok.r", b"good")));
    wait_members(&gateway, "ok.r", 1);

    let reload = |address: &str| -> serde_json::Value {
        let text = config(
            "[loom.auth]\nrequired = true\n[[loom.auth.tokens]]\ntoken = \"fresh\"\n\
             identity = { name = \"svc2\", publish = [\"ok.>\"], subscribe = [\"ok.>\"] }\n",
        )
        .replace(
            "address = \"127.0.0.1:0\"\nreject",
            &format!("address = \"{address}\"\nreject"),
        );
        gateway.rewrite_and_reload(&text)
    };
    let report = reload("127.0.0.1:0");
    assert_reload(&report, &["loom.quic"], &[]);
    assert!(report["error"].is_null(), "{report}");

    let fresh = rt.block_on(async {
        // The old token opens no new stream, on the open connection or a new one.
        assert_quic_refused(&quic, &hello(PRODUCER, b"p", b"ok.r", b"good"), 1).await;
        let fresh = Client::connect(addr, Transport::Quic).await;
        assert_quic_refused(&fresh, &hello(PRODUCER, b"p", b"ok.r", b"good"), 1).await;
        // The new one does, and the consumer opened before the reload still receives.
        let mut producer = fresh.open(&hello(PRODUCER, b"p", b"ok.r", b"fresh")).await;
        producer
            .write(&message(b"k", b"after reload", 64))
            .await
            .unwrap();
        let msg = next_msg(&mut consumer, "delivery").await;
        assert_eq!(msg.body, b"after reload");
        producer.finish().await;
        fresh
    });
    let connections = gateway.get_json("/api/connections");
    let names = sorted_identities(&connections);
    assert!(names.contains(&"svc2"), "{connections}");

    let report = reload("127.0.0.1:1");
    assert_reload(&report, &["loom.quic"], &["loom.address"]);
    drop((quic, fresh));
}

#[test]
fn client_certificates_name_the_identity_alone_or_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca(dir.path());
    let listed = client_certificate(&ca, "billing-cn", &["billing.example"]);
    let stranger = client_certificate(&ca, "someone", &["someone.example"]);
    let (gateway, addr, rt) = start(&format!(
        "tls = {{ self_signed = true, client_ca_file = {:?} }}\n{AUTH}\
         [[loom.auth.certificates]]\ncommon_name = \"billing.example\"\n\
         identity = {{ name = \"billing\", publish = [\"ok.>\"], subscribe = [\"ok.>\"] }}\n",
        dir.path().join("ca.pem").display().to_string()
    ));
    rt.block_on(async {
        // A certificate no entry names: every stream refused, even with a good token (QUIC and HTTP/3).
        let quic = Client::connect_as(addr, Transport::Quic, Some(stranger)).await;
        assert_quic_refused(&quic, &hello(PRODUCER, b"x", b"ok.r", b""), 1).await;
        assert_quic_refused(&quic, &hello(PRODUCER, b"x", b"ok.r", b"good"), 1).await;
        // The listed certificate (by its subject alternative name) alone, outside its ACL, and with a bad
        // token beside it.
        let quic = Client::connect_as(addr, Transport::Quic, Some(copy(&listed))).await;
        assert_quic_refused(&quic, &hello(PRODUCER, b"x", b"no.r", b""), 1).await;
        assert_quic_refused(&quic, &hello(PRODUCER, b"x", b"ok.r", b"bad"), 1).await;
        let h3 = Client::connect_as(addr, Transport::H3, Some(copy(&listed))).await;
        let refused = hello(PRODUCER, b"x", b"no.r", b"");
        assert_eq!(h3_status(&h3, "POST", "/stream", &refused).await, Some(401));
    });
    let quic = rt.block_on(Client::connect_as(
        addr,
        Transport::Quic,
        Some(copy(&listed)),
    ));
    let mut consumer = sole_consumer(&gateway, &rt, &quic, "ok.r");
    rt.block_on(async {
        // Certificate and a good token together (loomd's `both`), over HTTP/3.
        let h3 = Client::connect_as(addr, Transport::H3, Some(listed)).await;
        let mut producer = h3.open(&hello(PRODUCER, b"p", b"ok.r", b"good")).await;
        producer.write(&message(b"k", b"mtls", 64)).await.unwrap();
        producer.finish().await;
        assert_eq!(within("status", producer.status()).await, Some(200));
        let msg = next_msg(&mut consumer, "delivery").await;
        assert_eq!(msg.body, b"mtls");
    });
    let connections = gateway.get_json("/api/connections");
    let names = sorted_identities(&connections);
    assert!(names.contains(&"billing"), "{connections}");
}
