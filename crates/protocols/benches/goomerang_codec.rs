//! Goomerang's codec on the bench's workload: [`decode`] of a publish as gatewayctl sends it (no headers, message
//! kind `gatewayctl.Raw`) and [`encode_delivery`] of what its subscriber gets, per payload size.

use std::time::SystemTime;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

mod common;

use protocols::goomerang::{
    decode, encode_delivery, encode_publish, Command, Delivery, FrameHeaders, Limits,
};

const SIZES: [usize; 2] = [16, 1024];

fn codec(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("goomerang");
    for size in SIZES {
        let payload = vec![b'x'; size];
        group.throughput(Throughput::Elements(1));
        let frame = encode_publish(
            "bench.room",
            "gatewayctl.Raw",
            &payload,
            &FrameHeaders::new(),
            SystemTime::now(),
        );
        assert!(matches!(
            decode(frame.clone(), &limits),
            Ok(Command::Publish { message, .. }) if message.len() == size
        ));
        group.bench_with_input(
            BenchmarkId::new("decode-publish", size),
            &frame,
            |b, frame| b.iter(|| decode(frame.clone(), &limits)),
        );
        let delivery = Delivery {
            kind: "gatewayctl.Raw".to_owned(),
            payload: Bytes::from(payload),
            headers: FrameHeaders::new(),
        };
        let creation = SystemTime::now();
        group.bench_with_input(
            BenchmarkId::new("encode-delivery", size),
            &delivery,
            |b, delivery| b.iter(|| encode_delivery(delivery, creation).len()),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = codec
}
criterion_main!(benches);
