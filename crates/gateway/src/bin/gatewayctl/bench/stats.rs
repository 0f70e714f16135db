//! What a benchmark payload carries (the send time, so the receiver can measure latency) and what a run adds
//! up to: counts, rates, loss and latency percentiles from an HDR histogram, as JSON and as a table.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use serde::Serialize;

/// Smallest payload: 8 bytes of send time, 4 of publisher index, 4 of kind.
pub const MIN_PAYLOAD: usize = 16;
const KIND_DATA: u32 = 0;
const KIND_PROBE: u32 = 1;

/// What a received payload is.
#[derive(Debug, PartialEq, Eq)]
pub enum Stamp {
    /// A measured message sent (or scheduled, in fixed-rate mode) `sent_ns` after the run's epoch.
    Data { sent_ns: u64 },
    /// A readiness probe sent `sent_ns` after the run's epoch; not counted.
    Probe { sent_ns: u64 },
}

/// A payload of `size` bytes (at least [`MIN_PAYLOAD`]) stamped with `sent_ns`.
pub fn stamp(size: usize, sent_ns: u64, publisher: u32, probe: bool) -> Bytes {
    let mut out = BytesMut::with_capacity(size.max(MIN_PAYLOAD));
    out.put_u64_le(sent_ns);
    out.put_u32_le(publisher);
    out.put_u32_le(if probe { KIND_PROBE } else { KIND_DATA });
    out.resize(size.max(MIN_PAYLOAD), b'x');
    out.freeze()
}

/// Reads a stamp; `None` for a payload that is not one of ours.
pub fn read(payload: &[u8]) -> Option<Stamp> {
    let sent_ns = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let kind = u32::from_le_bytes(payload.get(12..16)?.try_into().ok()?);
    match kind {
        KIND_DATA => Some(Stamp::Data { sent_ns }),
        KIND_PROBE => Some(Stamp::Probe { sent_ns }),
        _ => None,
    }
}

/// A latency histogram in nanoseconds (up to 1 h, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("constant, valid bounds")
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1_000.0;
        Latency {
            p50: us(histogram.value_at_quantile(0.50)),
            p90: us(histogram.value_at_quantile(0.90)),
            p99: us(histogram.value_at_quantile(0.99)),
            p99_9: us(histogram.value_at_quantile(0.999)),
            max: us(histogram.max()),
            mean: histogram.mean() / 1_000.0,
        }
    }
}

/// The outcome of one run against one server.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub server: String,
    pub pub_protocol: String,
    pub sub_protocol: String,
    pub publishers: usize,
    pub subscribers: usize,
    pub payload_bytes: usize,
    /// MQTT sides' QoS (0 wherever there is no MQTT side).
    pub qos: u8,
    /// Target total msg/s, or null in all-out mode.
    pub rate: Option<u64>,
    pub duration_secs: f64,
    pub sent: u64,
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub loss_ratio: f64,
    pub msgs_per_sec_out: f64,
    pub msgs_per_sec_in: f64,
    pub latency_us: Latency,
    /// `latency_us` counts only messages due at least this many seconds after sending started.
    pub latency_after_secs: f64,
    /// Connections that failed during the run (a subscriber closed as a slow consumer, …).
    pub errors: Vec<String>,
}

impl RunResult {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        server: String,
        pub_protocol: String,
        sub_protocol: String,
        shape: (usize, usize, usize, Option<u64>),
        elapsed: Duration,
        sent: u64,
        expected: u64,
        received: u64,
        histogram: &Histogram<u64>,
    ) -> RunResult {
        let (publishers, subscribers, payload_bytes, rate) = shape;
        let secs = elapsed.as_secs_f64().max(f64::EPSILON);
        let lost = expected.saturating_sub(received);
        RunResult {
            server,
            pub_protocol,
            sub_protocol,
            publishers,
            subscribers,
            payload_bytes,
            qos: 0,
            rate,
            duration_secs: secs,
            sent,
            expected,
            received,
            lost,
            loss_ratio: if expected == 0 {
                0.0
            } else {
                lost as f64 / expected as f64
            },
            msgs_per_sec_out: sent as f64 / secs,
            msgs_per_sec_in: received as f64 / secs,
            latency_us: Latency::of(histogram),
            latency_after_secs: 0.0,
            errors: Vec::new(),
        }
    }
}

/// gatewayd's figures divided by another server's.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub msgs_per_sec_out: f64,
    pub msgs_per_sec_in: f64,
    pub p99: f64,
}

impl Ratio {
    pub fn of(gateway: &RunResult, nats: &RunResult) -> Ratio {
        let div = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Ratio {
            msgs_per_sec_out: div(gateway.msgs_per_sec_out, nats.msgs_per_sec_out),
            msgs_per_sec_in: div(gateway.msgs_per_sec_in, nats.msgs_per_sec_in),
            p99: div(gateway.latency_us.p99, nats.latency_us.p99),
        }
    }
}

/// Prints the summary table of `runs` and gatewayd's ratio to each other server named in `ratios`.
pub fn print_table(runs: &[RunResult], ratios: &[(&str, Ratio)]) {
    println!(
        "{:<10} {:>5}→{:<16} {:>4}x{:<4} {:>6} {:>12} {:>12} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "server",
        "pub",
        "sub",
        "P",
        "S",
        "bytes",
        "out msg/s",
        "in msg/s",
        "lost",
        "loss%",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs"
    );
    for run in runs {
        println!(
            "{:<10} {:>5}→{:<16} {:>4}x{:<4} {:>6} {:>12.0} {:>12.0} {:>10} {:>8.3} {:>9.0} {:>9.0} {:>9.0} {:>9.0}",
            run.server,
            short(&run.pub_protocol),
            run.sub_protocol,
            run.publishers,
            run.subscribers,
            run.payload_bytes,
            run.msgs_per_sec_out,
            run.msgs_per_sec_in,
            run.lost,
            run.loss_ratio * 100.0,
            run.latency_us.p50,
            run.latency_us.p90,
            run.latency_us.p99,
            run.latency_us.p99_9,
        );
    }
    for (server, ratio) in ratios {
        println!(
            "gatewayd / {server}: out {:.2}x, in {:.2}x, p99 {:.2}x",
            ratio.msgs_per_sec_out, ratio.msgs_per_sec_in, ratio.p99
        );
    }
}

fn short(protocol: &str) -> &str {
    match protocol {
        "messageloop" => "mloop",
        "messageloop-json" => "mljs",
        "goomerang" => "goom",
        "chanserv" => "chans",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_read_back_and_foreign_payloads_are_not_ours() {
        let data = stamp(16, 12_345, 3, false);
        assert_eq!(data.len(), 16);
        assert_eq!(read(&data), Some(Stamp::Data { sent_ns: 12_345 }));
        assert_eq!(stamp(1024, 1, 0, false).len(), 1024);
        assert_eq!(
            read(&stamp(20, 9, 1, true)),
            Some(Stamp::Probe { sent_ns: 9 })
        );
        assert_eq!(read(b"short"), None);
        assert_eq!(read(b"0123456789abcdefgh"), None);
    }
}
