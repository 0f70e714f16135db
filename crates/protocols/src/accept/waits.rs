//! What a connection loop awaits in a `select!` arm that may have nothing to wait for: a deadline, a stalled
//! publish, a mailbox batch. Each pends forever when there is none, so its arm never fires.

use core_bus::{Closed, Delivery, Mailbox};
use tokio::time::Instant;

/// The wait of one stalled publish (its back-pressure handle's `ready`).
pub type Stall = futures::future::BoxFuture<'static, ()>;

/// Sleeps until `deadline`, or forever without one. Made afresh at each turn of a connection loop on purpose: a
/// timer kept across turns was measured three times and gave no gain the first time and a worse fan-out p99 the
/// other two (docs/benchmarks.md, "Tried and not kept: an index").
pub async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The earlier of two optional deadlines: one timer for both (a sleep is 112 bytes of the connection task for
/// its whole life), whose arm then tells which one came.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Waits until the stalled publish has room, or forever when nothing is stalled.
pub async fn room(stall: Option<&mut Stall>) {
    match stall {
        Some(stall) => stall.await,
        None => std::future::pending().await,
    }
}

/// Receives the next batch of up to `max` deliveries into `batch`, or waits forever without a mailbox.
pub async fn next_batch(
    mailbox: Option<&mut Mailbox>,
    batch: &mut Vec<Delivery>,
    max: usize,
) -> Result<usize, Closed> {
    match mailbox {
        Some(mailbox) => mailbox.recv_batch(batch, max).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn earliest_of_two_deadlines_is_the_first_one_given() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        assert_eq!(earliest(Some(now), Some(later)), Some(now));
        assert_eq!(earliest(Some(later), Some(now)), Some(now));
        assert_eq!(earliest(None, Some(later)), Some(later));
        assert_eq!(earliest(Some(later), None), Some(later));
        assert_eq!(earliest(None, None), None);
    }
}
