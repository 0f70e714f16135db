//! Loom's per-message path on the bench's workload (room `bench.room`, the body in one chunk), per payload size:
//!
//! - `decode-publish`: the producer session's [`MessageAssembler::decode`] of one message as gatewayctl writes it
//!   (key = a counter in decimal, declared size = the body's, msg id 0, one chunk, EOM) into a whole
//!   [`ProducedMessage`], taken off a read buffer that holds the next message behind it, as a producer's pipelined
//!   writes arrive (the buffers are filled outside the measurement, 32 at a time; the assembler is the stream's,
//!   kept between messages);
//! - `to-envelope`: [`bridge::to_envelope`] of that message on the room's topic, which takes the message (copies of
//!   it are made outside the measurement);
//! - `encode-delivery`: what the consumer session and the driver make of that envelope for a consumer: the room's
//!   next msg id ([`MsgIds::next`]), the Loom message ([`bridge::from_envelope`]) and its
//!   [`segments`](Delivery::segments), the buffers the driver writes.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

mod common;

use core_bus::{ConnectionId, Origin, Protocol, Topic};
use protocols::loom::bridge;
use protocols::loom::session::MsgIds;
use protocols::loom::{
    Assembled, Config, ConsumerKey, Delivery, MessageAssembler, MessageDecoder, MessageEvent,
    ProducedMessage,
};

const SIZES: [usize; 2] = [16, 1024];

/// Inputs prepared per measured batch: few enough that they are in cache, as a buffer just read is.
const BATCH: BatchSize = BatchSize::NumIterations(32);

/// A message of `size` bytes as gatewayctl's Loom producer writes it: its keys are a counter in decimal.
fn message(size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    Delivery {
        key: ConsumerKey::derive(&Bytes::new(), 1),
        declared_size: size as u64,
        msg_id: 0,
        body: Bytes::from(vec![b'x'; size]),
    }
    .encode(&mut out);
    out
}

fn codec(c: &mut Criterion) {
    let limits = Config::default().limits.codec();
    let origin = Origin {
        protocol: Protocol::Loom,
        connection: ConnectionId::next(),
    };
    let topic = Topic::from_dotted(b"bench.room");
    let ids = MsgIds::default();
    let mut group = c.benchmark_group("loom");
    for size in SIZES {
        group.throughput(Throughput::Elements(1));
        let message = message(size);
        // The read buffer: this message and the next one.
        let read = [message.as_slice(), message.as_slice()].concat();
        let mut assembler = MessageAssembler::new(&limits);
        let produced = match assembler.decode(&mut BytesMut::from(&read[..])) {
            Ok(Some(Assembled::Message(produced))) => produced,
            other => panic!("the message does not decode: {other:?}"),
        };
        assert!(
            produced.key == b"1"[..]
                && produced.declared_size == size as u64
                && produced.body.len() == size
        );
        group.bench_function(BenchmarkId::new("decode-publish", size), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&read[..]),
                |buf| match assembler.decode(buf) {
                    Ok(Some(Assembled::Message(produced))) => produced.body.len(),
                    _ => 0,
                },
                BATCH,
            )
        });

        let to_envelope =
            |produced: ProducedMessage| bridge::to_envelope(topic.clone(), produced, origin);
        let envelope = to_envelope(produced.clone());
        assert!(envelope.payload.len() == size && envelope.key.as_deref() == Some(&b"1"[..]));
        group.bench_function(BenchmarkId::new("to-envelope", size), |b| {
            b.iter_batched(
                || produced.clone(),
                |produced| to_envelope(produced).payload.len(),
                BATCH,
            )
        });

        let deliver = || bridge::from_envelope(&envelope, ids.next(&topic)).segments();
        let mut written = BytesMut::new();
        for segment in deliver() {
            written.extend_from_slice(&segment);
        }
        // A consumer stream carries messages in the layout a producer stream does.
        let mut decoder = MessageDecoder::new(&limits);
        let mut events = Vec::new();
        while let Ok(Some(event)) = decoder.decode(&mut written) {
            events.push(event);
        }
        assert!(
            matches!(
                &events[..],
                [MessageEvent::Start(header), MessageEvent::Chunk(body), MessageEvent::End]
                    if header.key == b"1"[..]
                        && header.declared_size == size as u64
                        && header.msg_id > 0
                        && body.len() == size
            ) && written.is_empty()
        );
        group.bench_function(BenchmarkId::new("encode-delivery", size), |b| {
            b.iter(|| deliver().iter().map(Bytes::len).sum::<usize>())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = codec
}
criterion_main!(benches);
