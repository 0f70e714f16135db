//! The process-wide budget of bytes held in unfinished frames (`[limits] max_unfinished_frame_bytes`): each
//! [`Watched`](super::Watched) socket counts what it read since its last finished frame. Once the sum over all
//! connections is over the cap, a connection whose unfinished frame is larger than [`SMALL_FRAME`] is refused
//! (closed); small frames always go through, so ordinary traffic continues while large uploads wait.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The default cap: 256 MiB.
pub const DEFAULT_CAP: usize = 256 << 20;
/// Unfinished frames up to this size are never refused.
pub const SMALL_FRAME: usize = 64 << 10;

static HELD: AtomicUsize = AtomicUsize::new(0);
static CAP: AtomicUsize = AtomicUsize::new(DEFAULT_CAP);

/// Sets the cap for the whole process (at start, from the config).
pub fn set_cap(bytes: usize) {
    CAP.store(bytes, Ordering::Relaxed);
}

/// The budget is exhausted and this connection's unfinished frame is large.
#[derive(Debug, thiserror::Error)]
#[error("unfinished frames over limits.max_unfinished_frame_bytes; large frame refused")]
pub struct Exhausted;

/// What one connection holds of the budget; released when its frame finishes or the connection ends.
#[derive(Default)]
pub(super) struct Held(usize);

impl Held {
    /// Counts `n` more bytes of the unfinished frame.
    pub(super) fn add(&mut self, n: usize) -> Result<(), Exhausted> {
        self.0 += n;
        let total = HELD.fetch_add(n, Ordering::Relaxed) + n;
        if total > CAP.load(Ordering::Relaxed) && self.0 > SMALL_FRAME {
            self.release();
            return Err(Exhausted);
        }
        Ok(())
    }

    pub(super) fn release(&mut self) {
        HELD.fetch_sub(std::mem::take(&mut self.0), Ordering::Relaxed);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}
