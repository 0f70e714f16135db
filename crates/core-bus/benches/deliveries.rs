//! Deliveries per second through the bus: fanout to 1, 16 and 256 subscribers (exact and wildcard) and an
//! anycast group with credit. Each iteration publishes a batch and drains every subscriber on the same thread.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use core_bus::config::GroupPolicy;
use core_bus::{Bus, ConnectionId, Credit, Envelope, Mailbox, Origin, Pattern, Protocol, Topic};

const BATCH: usize = 256;

fn origin() -> Origin {
    Origin {
        protocol: Protocol::Internal,
        connection: ConnectionId::next(),
    }
}

fn drain_all(mailboxes: &mut [Mailbox], scratch: &mut Vec<core_bus::Delivery>) {
    for m in mailboxes.iter_mut() {
        while m.try_recv_batch(scratch, 1024).unwrap_or(0) > 0 {
            scratch.clear();
        }
    }
}

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    for (subscribers, pattern) in [
        (1, "bench.t"),
        (16, "bench.t"),
        (256, "bench.t"),
        (16, "bench.*"),
        (16, "#"),
    ] {
        let bus = Bus::new(Default::default());
        let mut mailboxes: Vec<Mailbox> = (0..subscribers)
            .map(|_| {
                let mut m = bus.mailbox(origin());
                m.subscribe(Pattern::parse(pattern).unwrap()).unwrap();
                m
            })
            .collect();
        let template = Envelope::new(
            Topic::parse("bench.t").unwrap(),
            &b"0123456789abcdef"[..],
            origin(),
        );
        let mut scratch = Vec::with_capacity(1024);
        group.throughput(Throughput::Elements((BATCH * subscribers) as u64));
        group.bench_function(BenchmarkId::new(pattern, subscribers), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    bus.publish(template.clone());
                }
                drain_all(&mut mailboxes, &mut scratch);
            })
        });
    }
    group.finish();
}

fn anycast(c: &mut Criterion) {
    let mut group = c.benchmark_group("anycast");
    let bus = Bus::new(Default::default());
    let topic = Topic::parse("bench.q").unwrap();
    let mut members: Vec<Mailbox> = (0..4)
        .map(|_| {
            let mut m = bus.mailbox(origin());
            m.join_group(&topic, Credit::Window(BATCH as u32), GroupPolicy::QUEUE)
                .unwrap();
            m
        })
        .collect();
    let template = Envelope::new(topic, &b"0123456789abcdef"[..], origin());
    let mut scratch = Vec::with_capacity(1024);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("4 members, credit + ack", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                bus.publish(template.clone());
            }
            for m in members.iter_mut() {
                while m.try_recv_batch(&mut scratch, 1024).unwrap_or(0) > 0 {
                    for d in scratch.drain(..) {
                        if let Some(ack) = d.ack {
                            ack.ack();
                        }
                    }
                }
            }
        })
    });
    group.finish();
}

/// Peers measured in the same run, so results can be reported as ratios: tokio's broadcast channel and one
/// bounded tokio mpsc queue per subscriber, 16 subscribers, same batch shape.
fn peers(c: &mut Criterion) {
    let mut group = c.benchmark_group("peers");
    let subscribers = 16;
    let template = Envelope::new(
        Topic::parse("bench.t").unwrap(),
        &b"0123456789abcdef"[..],
        origin(),
    );
    group.throughput(Throughput::Elements((BATCH * subscribers) as u64));

    let (sender, _) = tokio::sync::broadcast::channel::<std::sync::Arc<Envelope>>(BATCH * 2);
    let mut receivers: Vec<_> = (0..subscribers).map(|_| sender.subscribe()).collect();
    group.bench_function(BenchmarkId::new("tokio-broadcast", subscribers), |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let _ = sender.send(std::sync::Arc::new(template.clone()));
            }
            for r in receivers.iter_mut() {
                while r.try_recv().is_ok() {}
            }
        })
    });

    let queues: Vec<_> = (0..subscribers)
        .map(|_| tokio::sync::mpsc::channel::<std::sync::Arc<Envelope>>(BATCH * 2))
        .collect();
    let (senders, mut receivers): (Vec<_>, Vec<_>) = queues.into_iter().unzip();
    group.bench_function(
        BenchmarkId::new("tokio-mpsc-per-subscriber", subscribers),
        |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    let message = std::sync::Arc::new(template.clone());
                    for s in &senders {
                        let _ = s.try_send(message.clone());
                    }
                }
                for r in receivers.iter_mut() {
                    while r.try_recv().is_ok() {}
                }
            })
        },
    );
    group.finish();
}

criterion_group!(benches, fanout, anycast, peers);
criterion_main!(benches);
