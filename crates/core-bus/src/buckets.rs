//! Fixed-bucket histograms kept as atomic counters and written out in the Prometheus text format, for the two
//! histograms recorded once per message (`gatewayd_message_size_bytes`, `gatewayd_delivery_latency_seconds`).
//! The exporter's own histograms keep every sample until they are folded into buckets, with an epoch pin per
//! sample and an allocation per 64; at a sample per publish and per delivery that cost gatewayd 15–40 % of its
//! throughput. Here a sample is two relaxed atomic additions. A series' count and sum double as counters
//! (`gatewayd_messages_in_total` and `gatewayd_message_bytes_in_total` are the size histogram's).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// One labelled series: counts per bucket (the last one is `+Inf`) and the sum, in integer units.
pub(crate) struct Buckets {
    bounds: &'static [u64],
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Buckets {
    pub(crate) fn new(bounds: &'static [u64]) -> Buckets {
        Buckets {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts `value` in the first bucket whose bound is at least `value` (`+Inf` past the last).
    pub(crate) fn record(&self, value: u64) {
        self.record_n(value, 1);
    }

    /// How many values were counted.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The sum of the values counted, in integer units.
    pub(crate) fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }

    /// Counts `value` `n` times.
    pub(crate) fn record_n(&self, value: u64, n: u64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.counts[bucket].fetch_add(n, Ordering::Relaxed);
        self.sum
            .fetch_add(value.saturating_mul(n), Ordering::Relaxed);
    }
}

/// A histogram's name, and how its integer units become the exported ones (bounds and sum are divided by
/// `per_unit`: 1,000,000 for microseconds exported as seconds).
pub(crate) struct Family {
    pub name: &'static str,
    pub per_unit: f64,
}

impl Family {
    /// Appends the family: its `# TYPE` line, then for each series (with its labels, written `a="x",b="y"`) the
    /// cumulative buckets, the sum and the count, as the exporter writes its own histograms.
    pub(crate) fn render<'a>(
        &self,
        out: &mut String,
        series: impl IntoIterator<Item = (String, &'a Buckets)>,
    ) {
        let name = self.name;
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (labels, buckets) in series {
            let mut cumulative = 0u64;
            for (index, count) in buckets.counts.iter().enumerate() {
                cumulative += count.load(Ordering::Relaxed);
                match buckets.bounds.get(index) {
                    Some(&bound) => {
                        let le = bound as f64 / self.per_unit;
                        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
                    }
                    None => {
                        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
                    }
                }
            }
            let sum = buckets.sum() as f64 / self.per_unit;
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_cumulative_and_scaled() {
        static BOUNDS: [u64; 3] = [500, 1_000, 2_500];
        let series = Buckets::new(&BOUNDS);
        for value in [0, 500, 501, 2_501] {
            series.record(value);
        }
        series.record_n(1_000, 1);
        series.record_n(9_000, 1);
        series.record_n(7, 0);
        let mut out = String::new();
        let family = Family {
            name: "x_seconds",
            per_unit: 1_000_000.0,
        };
        family.render(&mut out, [("a=\"b\"".to_owned(), &series)]);
        assert_eq!(
            out,
            "# TYPE x_seconds histogram\n\
             x_seconds_bucket{a=\"b\",le=\"0.0005\"} 2\n\
             x_seconds_bucket{a=\"b\",le=\"0.001\"} 4\n\
             x_seconds_bucket{a=\"b\",le=\"0.0025\"} 4\n\
             x_seconds_bucket{a=\"b\",le=\"+Inf\"} 6\n\
             x_seconds_sum{a=\"b\"} 0.013502\n\
             x_seconds_count{a=\"b\"} 6\n\n"
        );
    }
}
