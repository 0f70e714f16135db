//! MessageLoop JSON's direct readers on the bench's workload, per payload size: gatewayd's read of a G2 publish as
//! gatewayctl sends it ([`publish_json::publish`]) and the client's read of the publication and the publish ack
//! gatewayd sends for it ([`publication_read::read`]).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

mod common;

use protocols::messageloop::codec::{publication_read, publish_json};
use protocols::messageloop::message::{Message, Outbound, OutboundBody, Payload, Position};
use protocols::messageloop::{Encoding, Frame, Generation, GenerationSetting, WsCodec};

const SIZES: [usize; 2] = [16, 1024];

/// A UUID's length of text, as gatewayd's ids and epochs are.
const UUID: &str = "9055de02-8dd7-4e14-a9f0-ca0f95485190";

fn readers(c: &mut Criterion) {
    let codec = WsCodec::new(Encoding::Json, GenerationSetting::Fixed(Generation::G2));
    let mut group = c.benchmark_group("messageloop-json");
    for size in SIZES {
        let payload = vec![b'x'; size];
        group.throughput(Throughput::Elements(1));
        let publish = publish_json::write("17", "bench.room", "", &payload);
        assert!(publish_json::publish(&publish).is_some());
        group.bench_with_input(
            BenchmarkId::new("read-publish", size),
            &publish,
            |b, publish| b.iter(|| publish_json::publish(publish)),
        );
        let message = Message {
            id: UUID.to_owned(),
            channel: "bench.room".to_owned(),
            position: Position {
                stream_epoch: UUID.to_owned(),
                offset: Some(0),
            },
            payload: Payload::binary("", Bytes::from(payload)),
            headers: Vec::new(),
            replay: false,
        };
        let outbound = Outbound {
            id: UUID.to_owned(),
            time_ms: 1_796_569_260_284,
            body: OutboundBody::Publication(vec![message]),
        };
        let Ok(Frame::Text(publication)) = codec.encode(&outbound) else {
            panic!("a G2 JSON codec writes text");
        };
        assert!(publication_read::read(&publication).is_some());
        group.bench_with_input(
            BenchmarkId::new("read-publication", size),
            &publication,
            |b, publication| b.iter(|| publication_read::read(publication)),
        );
    }
    let ack = Outbound {
        id: UUID.to_owned(),
        time_ms: 1_796_569_260_284,
        body: OutboundBody::PublishAck(Position {
            stream_epoch: UUID.to_owned(),
            offset: None,
        }),
    };
    let Ok(Frame::Text(ack)) = codec.encode(&ack) else {
        panic!("a G2 JSON codec writes text");
    };
    assert!(publication_read::read(&ack).is_some());
    group.bench_with_input(BenchmarkId::new("read-publish-ack", 0), &ack, |b, ack| {
        b.iter(|| publication_read::read(ack))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = readers
}
criterion_main!(benches);
