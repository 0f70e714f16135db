//! STOMP's per-message path on the bench's workload (a 1.2 session, the destination the only header beside
//! `content-length`), per payload size:
//!
//! - `decode-publish`: [`Decoder::decode`] of a SEND as gatewayctl sends it
//!   (`SEND\ndestination:/topic/bench.room\ncontent-length:N\n\n<N bytes>\0`), taken off a read buffer that holds the
//!   next SEND behind it, as a publisher's pipelined reads do (the buffers are filled outside the measurement, 32 at
//!   a time);
//! - `to-envelope`: [`to_envelope`] of that frame, on the topic the session resolved (and keeps) for its destination;
//! - `encode-delivery`: the MESSAGE a `/topic/bench.room` subscriber with `ack:auto` gets for that envelope, written
//!   by [`from_envelope`] from the subscription's [`head`] into an output buffer that is kept between messages, as
//!   the session's outbox keeps it on a busy connection.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

mod common;

use core_bus::{ConnectionId, Origin, Protocol};
use protocols::names::topic_from_name;
use protocols::stomp::bridge::message::head;
use protocols::stomp::bridge::{from_envelope, named, to_envelope, Delivered};
use protocols::stomp::{Command, Decoded, Decoder, Limits, Version};

const SIZES: [usize; 2] = [16, 1024];

/// Inputs prepared per measured batch: few enough that they are in cache, as a buffer just read is.
const BATCH: BatchSize = BatchSize::NumIterations(32);

/// The publish timestamp the session would take from its clock.
const NOW_MS: u64 = 1_763_800_000_000;

/// A SEND to `/topic/bench.room` with `size` bytes of body, as gatewayctl's STOMP client writes it.
fn send(size: usize) -> Vec<u8> {
    let mut frame =
        format!("SEND\ndestination:/topic/bench.room\ncontent-length:{size}\n\n").into_bytes();
    frame.resize(frame.len() + size, b'x');
    frame.push(0);
    frame
}

fn codec(c: &mut Criterion) {
    let origin = Origin {
        protocol: Protocol::Stomp,
        connection: ConnectionId::next(),
    };
    let topic = topic_from_name(b"bench.room");
    let subscription = head("sub-1", Version::V1_2);
    let destination = named("/topic/", &topic);
    let id_prefix = format!("{}-", ConnectionId::next());
    let mut group = c.benchmark_group("stomp");
    for size in SIZES {
        group.throughput(Throughput::Elements(1));
        let frame = send(size);
        // The read buffer: this SEND and the next one.
        let read = [frame.as_slice(), frame.as_slice()].concat();
        let mut decoder = v1_2_decoder();
        let decoded = match decoder.decode(&mut BytesMut::from(&read[..])) {
            Ok(Some(Decoded::Frame(frame))) => frame,
            other => panic!("the SEND does not decode: {other:?}"),
        };
        assert!(decoded.command == Command::Send && decoded.body.len() == size);
        group.bench_function(BenchmarkId::new("decode-publish", size), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&read[..]),
                |buf| match decoder.decode(buf) {
                    Ok(Some(Decoded::Frame(frame))) => frame.body.len(),
                    _ => 0,
                },
                BATCH,
            )
        });

        let envelope = to_envelope(&decoded, topic.clone(), None, origin, NOW_MS);
        assert!(envelope.payload.len() == size && envelope.topic == topic);
        group.bench_function(BenchmarkId::new("to-envelope", size), |b| {
            b.iter(|| to_envelope(&decoded, topic.clone(), None, origin, NOW_MS))
        });

        let mut out = BytesMut::new();
        let mut seq = 0u64;
        let delivered = |id_seq| Delivered {
            head: &subscription,
            destination: &destination,
            id_prefix: &id_prefix,
            id_seq,
            ack: false,
            redelivered: false,
        };
        let written = from_envelope(&delivered(seq), &envelope, Version::V1_2, &mut out);
        let message = v1_2_decoder().decode(&mut out.clone());
        assert!(matches!(
            message,
            Ok(Some(Decoded::Frame(frame)))
                if written.dropped_headers == 0
                    && frame.command == Command::Message
                    && frame.header("destination") == Some(&b"/topic/bench.room"[..])
                    && frame.body.len() == size
        ));
        group.bench_function(BenchmarkId::new("encode-delivery", size), |b| {
            b.iter(|| {
                seq += 1;
                out.clear();
                let written = from_envelope(&delivered(seq), &envelope, Version::V1_2, &mut out);
                (out.len(), written.dropped_headers)
            })
        });
    }
    group.finish();
}

/// A decoder past CONNECT of a 1.2 session, with the default limits.
fn v1_2_decoder() -> Decoder {
    let mut decoder = Decoder::new(Limits::default());
    decoder.set_version(Version::V1_2);
    decoder
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = codec
}
criterion_main!(benches);
