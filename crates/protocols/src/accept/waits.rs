//! What a connection loop awaits in a `select!` arm that may have nothing to wait for: a deadline, a stalled
//! publish, a mailbox batch. Each pends forever when there is none, so its arm never fires.

use core_bus::{Closed, Delivery, Mailbox};
use tokio::time::Instant;

/// The wait of one stalled publish (its back-pressure handle's `ready`).
pub type Stall = futures::future::BoxFuture<'static, ()>;

/// Sleeps until `deadline`, or forever without one.
pub async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
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
