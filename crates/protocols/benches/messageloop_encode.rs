//! MessageLoop's delivery encode path, from a bus envelope to the WebSocket frame a subscriber gets: the delivered
//! message built from the envelope (through the listeners' shared [`Deliveries`]) and encoded in the subscriber's
//! wire form. `encode`: one subscriber per message (nothing to share), per form and payload; `fanout`: one message
//! to 100 subscribers of one form.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

mod common;

use core_bus::{Bus, ConnectionId, Envelope, MessageId, Origin, Protocol, Topic};
use protocols::messageloop::bridge::deliveries::Deliveries;
use protocols::messageloop::bridge::from_envelope;
use protocols::messageloop::message::{Outbound, OutboundBody};
use protocols::messageloop::session::uuid4;
use protocols::messageloop::{Encoding, Generation, GenerationSetting, WsCodec};

const FANOUT: usize = 100;

fn forms() -> [(&'static str, WsCodec); 4] {
    let fixed = |encoding, generation| WsCodec::new(encoding, GenerationSetting::Fixed(generation));
    [
        ("json-g2", fixed(Encoding::Json, Generation::G2)),
        ("protobuf-g2", fixed(Encoding::Protobuf, Generation::G2)),
        ("json-g1", fixed(Encoding::Json, Generation::G1)),
        ("json-g0", fixed(Encoding::Json, Generation::G0)),
    ]
}

/// An envelope of `size` bytes: text, or a JSON object.
fn envelope(json: bool, size: usize) -> Envelope {
    let origin = Origin {
        protocol: Protocol::Internal,
        connection: ConnectionId::next(),
    };
    let (payload, content_type) = if json {
        let filler = "x".repeat(size.saturating_sub(12));
        (format!(r#"{{"data":"{filler}"}}"#), "application/json")
    } else {
        ("x".repeat(size), "text/plain")
    };
    let mut envelope = Envelope::new(
        Topic::parse("bench.room").unwrap(),
        Bytes::from(payload),
        origin,
    );
    envelope.content_type = Some(content_type.to_owned().into());
    envelope
}

/// One subscriber's frame of `envelope`.
fn deliver(deliveries: &Deliveries, bus: &Bus, codec: &WsCodec, envelope: &Envelope) -> usize {
    let publication =
        deliveries.get_or_build(envelope, || from_envelope(envelope, false, bus, "epoch"));
    let outbound = Outbound {
        id: uuid4(),
        time_ms: 1_763_800_000_000,
        body: OutboundBody::Delivered(publication),
    };
    match codec.encode(&outbound) {
        Ok(protocols::messageloop::Frame::Text(text)) => text.len(),
        Ok(protocols::messageloop::Frame::Binary(bytes)) => bytes.len(),
        Err(err) => panic!("{err}"),
    }
}

fn encode(c: &mut Criterion) {
    let bus = Bus::new(Default::default());
    let deliveries = Deliveries::default();
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    for (form, codec) in forms() {
        for (payload, json, size) in [
            ("text", false, 16),
            ("json", true, 16),
            ("json", true, 1024),
        ] {
            let mut envelope = envelope(json, size);
            group.bench_function(BenchmarkId::new(form, format!("{payload}-{size}")), |b| {
                b.iter(|| {
                    envelope.id = MessageId::next();
                    deliver(&deliveries, &bus, &codec, &envelope)
                })
            });
        }
    }
    group.finish();
}

fn fanout(c: &mut Criterion) {
    let bus = Bus::new(Default::default());
    let deliveries = Deliveries::default();
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(FANOUT as u64));
    for (form, codec) in forms() {
        let mut envelope = envelope(true, 100);
        group.bench_function(BenchmarkId::new(form, FANOUT), |b| {
            b.iter(|| {
                envelope.id = MessageId::next();
                (0..FANOUT)
                    .map(|_| deliver(&deliveries, &bus, &codec, &envelope))
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = encode, fanout
}
criterion_main!(benches);
