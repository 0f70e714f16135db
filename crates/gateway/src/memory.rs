//! Gives back to the system what connections freed: all of an ended connection's memory, and what a new one's
//! handshake used (the HTTP upgrade, the TLS handshake) and freed once it settled. jemalloc keeps freed memory in two
//! places that stay resident: each thread's cache of freed objects (one cached object keeps its whole slab), and the
//! arenas' dirty pages, which it returns only gradually, as the allocator is used again, so never while the server
//! idles. After connections open or end, at most once per [`PERIOD`], every worker empties its cache when it next
//! parks ([`on_park`]) and every arena is purged, then purged again a period later for what the caches gave back.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use protocols::ConnectionRegistry;
use tokio_util::sync::CancellationToken;

/// How often the task looks for ended connections.
const PERIOD: Duration = Duration::from_secs(5);

/// Raised to ask every worker thread to empty its cache.
static FLUSH_REQUESTS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The last request this thread answered.
    static FLUSHED: Cell<u64> = const { Cell::new(0) };
}

/// Runs until `shutdown`: after every period in which a connection opened or ended, asks the workers to empty their
/// caches and purges the arenas, and purges them again one period later.
pub async fn give_back(connections: ConnectionRegistry, shutdown: CancellationToken) {
    let churn = || connections.opened() + connections.closed();
    let mut seen = churn();
    let mut again = false;
    let mut every = tokio::time::interval(PERIOD);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let now = churn();
        let changed = now != seen;
        seen = now;
        if changed {
            FLUSH_REQUESTS.fetch_add(1, Ordering::Relaxed);
        }
        if changed || again {
            // It walks every arena under its locks: off the async workers.
            let _ = tokio::task::spawn_blocking(purge).await;
        }
        again = changed;
    }
}

/// The runtime's `on_thread_park` hook: a worker about to wait empties its cache if asked to since it last did.
pub fn on_park() {
    let requested = FLUSH_REQUESTS.load(Ordering::Relaxed);
    if FLUSHED.get() != requested {
        FLUSHED.set(requested);
        control(c"thread.tcache.flush");
    }
}

/// Empties this thread's cache, then returns the unused dirty pages of every arena (`MALLCTL_ARENAS_ALL`).
fn purge() {
    control(c"thread.tcache.flush");
    control(c"arena.4096.purge");
}

/// Runs one jemalloc control that neither reads nor writes a value.
fn control(name: &std::ffi::CStr) {
    // SAFETY: `name` is NUL-terminated, and a control without a value takes null pointers and a zero length.
    let result = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if result != 0 {
        tracing::debug!(?name, result, "jemalloc: control failed");
    }
}
