//! What the codec benchmarks share: criterion's settings, short enough for the two-core machine they run on.

use criterion::Criterion;

pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(2))
}
