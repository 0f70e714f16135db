//! MQTT's per-message path on the bench's workload (QoS 0 PUBLISH to `bench/room`, no properties), per payload size
//! and protocol level (5.0 as gatewayctl speaks it, and 3.1.1):
//!
//! - `decode-publish-<level>`: the session's [`decode`] of the PUBLISH, taken off a read buffer that holds the next
//!   PUBLISH behind it, as a publisher's pipelined reads do (the buffers are filled outside the measurement, 32 at a
//!   time);
//! - `to-envelope`: what the session does with it before the bus: the topic name read ([`topic_from_mqtt`]) and
//!   [`to_envelope`] (the same for both levels: a 3.1.1 publish is lifted into the 5.0 model without properties);
//! - `encode-delivery-<level>`: a QoS 0 subscriber's delivery of that envelope as the session writes it:
//!   [`to_publish`] (with the 5.0 property mapping for a 5.0 subscriber), [`encode`] into a packet buffer of its
//!   own and the copy into the connection's output buffer (kept between messages). No outbound topic alias: the
//!   bench's subscriber does not offer any.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

mod common;

use core_bus::{ConnectionId, Envelope, Origin, Protocol};
use mqttbytes::{v4, v5, QoS};
use protocols::mqtt::bridge::{to_envelope, to_publish};
use protocols::mqtt::codec::{decode, encode, Inbound, Outbound, Version};
use protocols::mqtt::names::topic_from_mqtt;
use protocols::mqtt::Config;

const SIZES: [usize; 2] = [16, 1024];

/// Inputs prepared per measured batch: few enough that they are in cache, as a buffer just read is.
const BATCH: BatchSize = BatchSize::NumIterations(32);

const TOPIC: &str = "bench/room";

const LEVELS: [(&str, Version); 2] = [("v5", Version::V5), ("v311", Version::V311)];

/// A QoS 0 PUBLISH to [`TOPIC`] with `size` bytes of payload, as a client of `version` writes it.
fn publish_packet(version: Version, size: usize) -> Vec<u8> {
    let payload = Bytes::from(vec![b'x'; size]);
    let mut out = BytesMut::new();
    match version {
        Version::V5 => v5::Publish::from_bytes(TOPIC, QoS::AtMostOnce, payload).write(&mut out),
        Version::V311 => v4::Publish::from_bytes(TOPIC, QoS::AtMostOnce, payload).write(&mut out),
    }
    .expect("a small PUBLISH encodes");
    out.to_vec()
}

/// Appends what the session writes for `envelope` to a QoS 0 subscriber of `version` (`send_publish` and
/// `write_publish`, without an alias) to `out`; its length, 0 if nothing was written.
fn deliver(envelope: &Envelope, version: Version, out: &mut BytesMut) -> usize {
    let Some(mut publish) = to_publish(envelope, QoS::AtMostOnce, version == Version::V5) else {
        return 0;
    };
    publish.retain = false;
    let mut packet = BytesMut::new();
    if encode(&Outbound::Publish(publish), version, &mut packet).is_err() {
        return 0;
    }
    out.extend_from_slice(&packet);
    out.len()
}

fn codec(c: &mut Criterion) {
    let max_packet_size = Config::default().max_packet_size;
    let origin = Origin {
        protocol: Protocol::Mqtt,
        connection: ConnectionId::next(),
    };
    let mut group = c.benchmark_group("mqtt");
    for size in SIZES {
        group.throughput(Throughput::Elements(1));
        let mut decoded = None;
        for (level, version) in LEVELS {
            let packet = publish_packet(version, size);
            // The read buffer: this PUBLISH and the next one.
            let read = [packet.as_slice(), packet.as_slice()].concat();
            let publish = match decode(
                &mut BytesMut::from(&read[..]),
                Some(version),
                max_packet_size,
            ) {
                Ok(Some(Inbound::Publish(publish))) => publish,
                other => panic!("the PUBLISH does not decode: {other:?}"),
            };
            assert!(
                publish.topic == TOPIC
                    && publish.qos == QoS::AtMostOnce
                    && publish.payload.len() == size
            );
            group.bench_function(
                BenchmarkId::new(format!("decode-publish-{level}"), size),
                |b| {
                    b.iter_batched_ref(
                        || BytesMut::from(&read[..]),
                        |buf| match decode(buf, Some(version), max_packet_size) {
                            Ok(Some(Inbound::Publish(publish))) => publish.payload.len(),
                            _ => 0,
                        },
                        BATCH,
                    )
                },
            );
            if version == Version::V5 {
                decoded = Some(publish);
            }
        }

        let publish = decoded.expect("the 5.0 PUBLISH was decoded");
        let publish_envelope = || {
            topic_from_mqtt(&publish.topic)
                .ok()
                .and_then(|topic| to_envelope(&publish, topic, origin).ok())
        };
        let envelope = publish_envelope().expect("the PUBLISH makes an envelope");
        assert!(envelope.payload.len() == size && envelope.topic.as_str() == "bench.room");
        group.bench_function(BenchmarkId::new("to-envelope", size), |b| {
            b.iter(publish_envelope)
        });

        for (level, version) in LEVELS {
            let mut out = BytesMut::new();
            assert!(deliver(&envelope, version, &mut out) > size);
            let delivered = decode(&mut out.clone(), Some(version), max_packet_size);
            assert!(matches!(
                delivered,
                Ok(Some(Inbound::Publish(publish)))
                    if publish.topic == TOPIC
                        && publish.qos == QoS::AtMostOnce
                        && publish.properties.is_none()
                        && publish.payload.len() == size
            ));
            group.bench_function(
                BenchmarkId::new(format!("encode-delivery-{level}"), size),
                |b| {
                    b.iter(|| {
                        out.clear();
                        deliver(&envelope, version, &mut out)
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = codec
}
criterion_main!(benches);
