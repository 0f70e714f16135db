//! The high- and low-water marks of one bounded buffer (a subscriber's queue, an anycast group's retention
//! buffer): since when it has been over its bound, whether one more message stalls its publisher or meets its
//! policy, and when it has drained enough to wake stalled publishers (`docs/flow-control.md`).

use std::time::{Duration, Instant};

/// How long one buffer has been over its bound.
#[derive(Debug, Default)]
pub(crate) struct Level {
    over_since: Option<Instant>,
}

/// Whether a buffer at its bound takes one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Take it and stall the publisher: the buffer is over its bound, within the stall bound.
    Stall,
    /// Over its bound for longer than the stall bound: the buffer's policy applies.
    Expired,
    /// At twice its bound: the policy applies whatever the time.
    Hard,
}

impl Level {
    /// A message arrives while the buffer is at its bound; `hard` says it is at twice its bound.
    pub(crate) fn admit(&mut self, hard: bool, max_stall: Duration) -> Admit {
        let now = Instant::now();
        let since = *self.over_since.get_or_insert(now);
        if hard {
            Admit::Hard
        } else if now.duration_since(since) >= max_stall {
            Admit::Expired
        } else {
            Admit::Stall
        }
    }

    /// The buffer is at or below its low-water mark: true when it was over its bound (wake stalled publishers).
    pub(crate) fn drained(&mut self) -> bool {
        self.over_since.take().is_some()
    }

    pub(crate) fn is_over(&self) -> bool {
        self.over_since.is_some()
    }

    pub(crate) fn over_since(&self) -> Option<Instant> {
        self.over_since
    }
}

/// True at or below half of both bounds.
pub(crate) fn below_low_water(
    len: usize,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
) -> bool {
    len <= max_messages / 2 && bytes <= max_bytes / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_stalls_then_expires_and_hard_limit_wins() {
        let mut level = Level::default();
        assert!(!level.is_over());
        assert_eq!(level.admit(false, Duration::from_secs(60)), Admit::Stall);
        assert!(level.is_over());
        assert_eq!(level.admit(true, Duration::from_secs(60)), Admit::Hard);
        assert_eq!(level.admit(false, Duration::ZERO), Admit::Expired);
        assert!(level.drained());
        assert!(!level.drained());
    }

    #[test]
    fn low_water_is_half_of_both_bounds() {
        assert!(below_low_water(4, 0, 8, 100));
        assert!(!below_low_water(5, 0, 8, 100));
        assert!(!below_low_water(1, 51, 8, 100));
    }
}
