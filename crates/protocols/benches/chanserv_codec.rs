//! chanserv's per-message path on the bench's workload (`PUB bench.room`, no `AUTH` line, compression off), per
//! payload size:
//!
//! - `decode-publish`: the request of a publish as gatewayctl sends it (one AstraNet DATA op holding the request
//!   frame, `u64 LE length` + `PUB bench.room\n<payload>`) read the way the link and the session read it: the op off
//!   the link's receive buffer ([`op::decode`]; the buffers are filled outside the measurement, 32 at a time), the
//!   frame by a new master stream's [`RequestReader`], the token split off ([`credentials::split_token`]) and the
//!   body parsed ([`selector::parse`]). The ops that open and close the request's stream (DIAL, ACK, FIN2) and the
//!   answer are not measured;
//! - `to-envelope`: the bus topic of the publish ([`bridge::publish_topic`]) and its [`bridge::to_envelope`], which
//!   takes the publish (copies of it are made outside the measurement);
//! - `encode-delivery`: a subscriber's delivery of that envelope on its topic's open source stream as the session
//!   and the driver make it: [`bridge::from_envelope`] into the source's [`Outbox`], [`Outbox::flush`] into the
//!   [`Link`] (one DATA op) and [`Link::poll_transmit`], the bytes the driver writes. The source's send credit is
//!   topped up with the client's REWIND op whenever it runs short of one message, as the client's reads return it.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

mod common;

use core_bus::{ConnectionId, Envelope, Origin, Protocol};
use protocols::chanserv::astranet::op;
use protocols::chanserv::astranet::{
    Addr, Event, HostId, Link, LinkConfig, Op, Opcode, StreamId, PORT_BASE, SERVICE_PORT, WINDOW,
};
use protocols::chanserv::bridge;
use protocols::chanserv::channel::{Outbox, RequestReader};
use protocols::chanserv::codec::frame::{self, Compression, FrameDecoder};
use protocols::chanserv::codec::{credentials, selector};
use protocols::chanserv::Config;

const SIZES: [usize; 2] = [16, 1024];

/// Inputs prepared per measured batch: few enough that they are in cache, as a buffer just read is.
const BATCH: BatchSize = BatchSize::NumIterations(32);

const GATEWAY: HostId = HostId(0x547C_9609_6AF7_F642);
const CLIENT: HostId = HostId(0x1122_3344_5566_7788);
/// The client's end of the request's (or the source's) stream.
const CLIENT_PORT: u32 = PORT_BASE + 7;

fn wire(ops: &[Op]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for op in ops {
        op.encode(&mut out);
    }
    out.to_vec()
}

/// The DATA op of a publish of `size` bytes to `bench.room`, as gatewayctl's chanserv client sends it.
fn publish_op(size: usize) -> Vec<u8> {
    let mut body = b"PUB bench.room\n".to_vec();
    body.resize(body.len() + size, b'x');
    let mut request = BytesMut::new();
    frame::encode(&body, &mut request).expect("a small request fits a frame");
    let data = Op::new(
        Opcode::Data,
        Addr::new(GATEWAY, SERVICE_PORT),
        Addr::new(CLIENT, CLIENT_PORT),
        request.freeze(),
    )
    .expect("a small request fits an op");
    wire(&[data])
}

/// The publish in the request op at the front of `buf`, read as the link and the session read it; `None` if it is
/// not one.
fn read_publish(buf: &mut BytesMut, frame_limit: u64) -> Option<selector::Publish> {
    let op = op::decode(buf).ok()??;
    let mut reader = RequestReader::new(FrameDecoder::new(frame_limit));
    let body = reader.push(op.payload()).ok()??;
    let (_token, body) = credentials::split_token(body);
    match selector::parse(body) {
        Ok(selector::Request::Publish(publish)) => Some(publish),
        _ => None,
    }
}

/// A server link past the handshake with one source stream the client has dialed and acknowledged, and the
/// client's REWIND op that returns a whole window of credit on it.
struct Source {
    link: Link,
    stream: StreamId,
    outbox: Outbox,
    rewind: Vec<u8>,
    now: Instant,
}

impl Source {
    fn open() -> Source {
        let now = Instant::now();
        let mut link = Link::new(LinkConfig::new(GATEWAY), None, now);
        let handshake = Op::new(
            Opcode::Handshake,
            Addr::default(),
            Addr::new(CLIENT, 0),
            Bytes::from_static(br#"{"RAddr":"127.0.0.1:40000"}"#),
        )
        .expect("a handshake fits an op");
        link.handle_input(&wire(&[handshake]), now);
        let port = link
            .bind_once(now + Duration::from_secs(3_600))
            .expect("a source port")
            .port;
        let (source, client) = (Addr::new(GATEWAY, port), Addr::new(CLIENT, CLIENT_PORT));
        let dial = Op::empty(Opcode::Dial, source, client);
        let ack = Op::empty(Opcode::Ack, source, client);
        link.handle_input(&wire(&[dial, ack]), now);
        let stream = std::iter::from_fn(|| link.poll_event())
            .find_map(|event| match event {
                Event::Accepted { stream, .. } => Some(stream),
                _ => None,
            })
            .expect("the source is dialed");
        while link.poll_event().is_some() {}
        while link.poll_transmit(now).is_some() {}
        assert_eq!(link.send_capacity(stream).ok(), Some(WINDOW as usize));
        Source {
            link,
            stream,
            outbox: Outbox::new(),
            rewind: wire(&[Op::with_u32(Opcode::Rewind, source, client, WINDOW)]),
            now,
        }
    }

    /// The bytes the driver writes for `envelope`'s delivery, of a message framed in `framed` bytes.
    fn deliver(&mut self, envelope: &Envelope, framed: usize) -> Option<Bytes> {
        if self.link.send_capacity(self.stream).unwrap_or(0) < framed {
            self.link.handle_input(&self.rewind, self.now);
            while self.link.poll_event().is_some() {}
        }
        bridge::from_envelope(envelope, Compression::Off, &mut self.outbox).ok()?;
        self.outbox.flush(&mut self.link, self.stream).ok()?;
        self.link.poll_transmit(self.now)
    }
}

fn codec(c: &mut Criterion) {
    let frame_limit = Config::default().max_frame_bytes;
    let origin = Origin {
        protocol: Protocol::Chanserv,
        connection: ConnectionId::next(),
    };
    let mut group = c.benchmark_group("chanserv");
    for size in SIZES {
        group.throughput(Throughput::Elements(1));
        let request = publish_op(size);
        let publish = read_publish(&mut BytesMut::from(&request[..]), frame_limit)
            .expect("the request is a publish");
        assert!(publish.topic == "bench.room" && publish.payload.len() == size);
        group.bench_function(BenchmarkId::new("decode-publish", size), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&request[..]),
                |buf| read_publish(buf, frame_limit).map_or(0, |publish| publish.payload.len()),
                BATCH,
            )
        });

        let to_envelope = |publish: selector::Publish| {
            let topic = bridge::publish_topic(&publish).ok()?;
            Some(bridge::to_envelope(topic, publish, origin))
        };
        let envelope = to_envelope(publish.clone()).expect("the publish makes an envelope");
        assert!(envelope.payload.len() == size && envelope.topic.as_str() == "bench.room");
        group.bench_function(BenchmarkId::new("to-envelope", size), |b| {
            b.iter_batched(
                || publish.clone(),
                |publish| to_envelope(publish).map_or(0, |envelope| envelope.payload.len()),
                BATCH,
            )
        });

        let mut source = Source::open();
        let framed = frame::LEN_PREFIX + size;
        let sent = source
            .deliver(&envelope, framed)
            .expect("the delivery is written");
        let mut sent = BytesMut::from(&sent[..]);
        let data = op::decode(&mut sent)
            .ok()
            .flatten()
            .expect("the delivery is an op");
        let item = FrameDecoder::new(frame_limit)
            .decode(&mut BytesMut::from(&data.payload()[..]))
            .ok()
            .flatten()
            .expect("the op holds a frame");
        assert!(
            data.opcode == Opcode::Data
                && sent.is_empty()
                && data.payload().len() == framed
                && frame::decode_item(item, frame_limit).is_ok_and(|item| item.len() == size)
        );
        group.bench_function(BenchmarkId::new("encode-delivery", size), |b| {
            b.iter(|| {
                source
                    .deliver(&envelope, framed)
                    .map_or(0, |bytes| bytes.len())
            })
        });
        // Every delivery left whole: none waited in the outbox for credit.
        assert!(source.outbox.is_empty() && !source.link.is_closed());
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = codec
}
criterion_main!(benches);
