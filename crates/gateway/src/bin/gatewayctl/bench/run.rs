//! One benchmark run against one server: connect the subscribers, probe until each of them receives and the
//! probes queued for them are drained, publish for the duration (fixed-rate or all-out), drain, and add up counts
//! and latencies.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::side::{Endpoint, Publisher, Subscriber};
use super::stats::{self, RunResult, Stamp};

/// How long subscribers may take to receive their first probe, and then the last.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often probes go out while waiting.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// Draining ends when nothing arrived for this long…
const DRAIN_IDLE: Duration = Duration::from_secs(2);
/// …or after this long in any case.
const DRAIN_MAX: Duration = Duration::from_secs(15);
/// All-out publishers look at the clock once per this many messages.
const CLOCK_EVERY: u64 = 64;
/// Latency histograms a run's subscribers share (subscriber `i` records into `i % HISTOGRAMS`). One histogram
/// is over 300 KiB; one each for 10,000 subscribers made every record a cache miss.
const HISTOGRAMS: usize = 16;
/// Latencies a subscriber holds before it records them into its shared histogram.
const RECORD_EVERY: usize = 64;

pub struct Shape {
    pub publishers: usize,
    pub subscribers: usize,
    pub size: usize,
    pub rate: Option<u64>,
    pub duration: Duration,
    pub topic: String,
    pub progress: bool,
    /// Latency is recorded only for messages due at least this long after sending starts (0: all of them).
    pub latency_after: Duration,
}

/// Counters shared by the tasks of one run.
struct Shared {
    epoch: Instant,
    sent: AtomicU64,
    received: AtomicU64,
    ready: AtomicUsize,
    /// Subscribers that received the last probe, the one sent at `last_probe_ns`.
    settled: AtomicUsize,
    /// Nanoseconds after `epoch` when the last probe was stamped (`u64::MAX` until then).
    last_probe_ns: AtomicU64,
    /// Nanoseconds after `epoch` of the latest data message received.
    last_received_ns: AtomicU64,
    /// Nanoseconds after `epoch` when the last publisher had written its last message.
    sending_done_ns: AtomicU64,
    /// Nanoseconds after `epoch` from which a message's send time puts it in the latency histogram.
    measure_from_ns: AtomicU64,
    /// Latencies in nanoseconds, [`HISTOGRAMS`] of them.
    histograms: Vec<Mutex<Histogram<u64>>>,
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

pub async fn run(
    server: &str,
    publishers: &Endpoint,
    subscribers: &Endpoint,
    shape: &Shape,
) -> anyhow::Result<RunResult> {
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        ready: AtomicUsize::new(0),
        settled: AtomicUsize::new(0),
        last_probe_ns: AtomicU64::new(u64::MAX),
        last_received_ns: AtomicU64::new(0),
        sending_done_ns: AtomicU64::new(0),
        measure_from_ns: AtomicU64::new(0),
        histograms: (0..HISTOGRAMS)
            .map(|_| Mutex::new(stats::histogram()))
            .collect(),
        errors: Mutex::new(Vec::new()),
    });
    let stop = CancellationToken::new();
    let mut sub_tasks = Vec::with_capacity(shape.subscribers);
    // Each subscriber stops when its sender is dropped. A subscriber waits for the next message and its stop at
    // once every time, and a one-shot channel of its own is an atomic look, where every subscriber polling one
    // token's future would take the token's lock.
    let mut sub_stops = Vec::with_capacity(shape.subscribers);
    for index in 0..shape.subscribers {
        let subscriber = subscribers.subscriber(&shape.topic).await?;
        let latencies = Latencies::new(shared.clone(), index % HISTOGRAMS);
        let (stop_tx, stop_rx) = oneshot::channel();
        sub_stops.push(stop_tx);
        sub_tasks.push(tokio::spawn(receive(subscriber, latencies, stop_rx)));
    }
    let mut conns = Vec::with_capacity(shape.publishers);
    for _ in 0..shape.publishers {
        conns.push(publishers.publisher().await?);
    }
    probe(&mut conns[0], shape, subscribers.is_fanout(), &shared).await?;

    let start = Instant::now();
    let deadline = start + shape.duration;
    let start_ns = shared.now_ns();
    let latency_after = u64::try_from(shape.latency_after.as_nanos()).unwrap_or(u64::MAX);
    shared
        .measure_from_ns
        .store(start_ns.saturating_add(latency_after), Ordering::Release);
    let progress = shape
        .progress
        .then(|| tokio::spawn(show_progress(shared.clone(), start, stop.clone())));
    let per_publisher = shape.rate.map(|rate| rate as f64 / shape.publishers as f64);
    let pub_tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(index, publisher)| {
            let task = Publish {
                publisher,
                index: u32::try_from(index).unwrap_or(u32::MAX),
                topic: shape.topic.clone(),
                size: shape.size,
                shared: shared.clone(),
                start,
                deadline,
            };
            tokio::spawn(task.run(per_publisher))
        })
        .collect();
    for task in pub_tasks {
        task.await.context("publisher task")??;
    }
    let sent = shared.sent.load(Ordering::Relaxed);
    let send_elapsed = Duration::from_nanos(
        shared
            .sending_done_ns
            .load(Ordering::Relaxed)
            .saturating_sub(start_ns),
    );
    let expected = match (shape.subscribers, subscribers.is_fanout()) {
        (0, _) => 0,
        (m, true) => sent * m as u64,
        (_, false) => sent,
    };
    drain(&shared, expected).await;
    stop.cancel();
    drop(sub_stops);
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    for task in sub_tasks {
        task.await.context("subscriber task")?;
    }
    let mut histogram = stats::histogram();
    for part in &shared.histograms {
        histogram
            .add(&*part.lock())
            .context("merging latency histograms")?;
    }
    let received = shared.received.load(Ordering::Relaxed);
    let receive_elapsed = Duration::from_nanos(
        shared
            .last_received_ns
            .load(Ordering::Relaxed)
            .saturating_sub(start_ns),
    );
    let mut result = RunResult::new(
        server.to_owned(),
        publishers.name(),
        subscribers.name(),
        (shape.publishers, shape.subscribers, shape.size, shape.rate),
        send_elapsed,
        sent,
        expected,
        received,
        &histogram,
    );
    if received > 0 && !receive_elapsed.is_zero() {
        result.msgs_per_sec_in = received as f64 / receive_elapsed.as_secs_f64();
    }
    result.latency_after_secs = shape.latency_after.as_secs_f64();
    result.errors = std::mem::take(&mut *shared.errors.lock());
    Ok(result)
}

/// Sends probes from one publisher until every subscriber has received one. Fan-out subscribers then get one
/// last probe, and measuring starts once every one of them has it: with many subscribers the probes queue up
/// faster than they are delivered, and that backlog is not part of the measured load.
async fn probe(
    publisher: &mut Publisher,
    shape: &Shape,
    fanout: bool,
    shared: &Shared,
) -> anyhow::Result<()> {
    let until = Instant::now() + READY_TIMEOUT;
    while shared.ready.load(Ordering::Acquire) < shape.subscribers {
        ensure_within(until, "a probe", &shared.ready, shape, shared)?;
        let payload = stats::stamp(shape.size, shared.now_ns(), 0, true);
        publisher.publish(&shape.topic, payload).await?;
        publisher.flush().await?;
        tokio::time::sleep(PROBE_EVERY).await;
    }
    if !fanout {
        return Ok(());
    }
    let last = shared.now_ns();
    shared.last_probe_ns.store(last, Ordering::Release);
    publisher
        .publish(&shape.topic, stats::stamp(shape.size, last, 0, true))
        .await?;
    publisher.flush().await?;
    while shared.settled.load(Ordering::Acquire) < shape.subscribers {
        ensure_within(until, "the last probe", &shared.settled, shape, shared)?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Fails once `until` has passed with fewer than every subscriber counted in `count`, or once a subscriber
/// failed.
fn ensure_within(
    until: Instant,
    what: &str,
    count: &AtomicUsize,
    shape: &Shape,
    shared: &Shared,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        Instant::now() < until,
        "only {} of {} subscribers received {what} within {READY_TIMEOUT:?}",
        count.load(Ordering::Acquire),
        shape.subscribers
    );
    if let Some(error) = shared.errors.lock().first() {
        anyhow::bail!("a subscriber failed: {error}");
    }
    Ok(())
}

struct Publish {
    publisher: Publisher,
    index: u32,
    topic: String,
    size: usize,
    shared: Arc<Shared>,
    start: Instant,
    deadline: Instant,
}

impl Publish {
    async fn run(mut self, rate: Option<f64>) -> anyhow::Result<()> {
        match rate {
            Some(rate) => self.fixed_rate(rate).await?,
            None => self.all_out().await?,
        }
        self.publisher.flush().await?;
        self.shared
            .sending_done_ns
            .fetch_max(self.shared.now_ns(), Ordering::Relaxed);
        self.publisher.close().await
    }

    /// Message `i` is due at `start + i / rate`; everything due is sent, then the publisher sleeps until the
    /// next one. The stamp is the due time, so time spent blocked counts as latency.
    async fn fixed_rate(&mut self, rate: f64) -> anyhow::Result<()> {
        let interval = Duration::from_secs_f64(1.0 / rate.max(f64::MIN_POSITIVE));
        let start_ns = u64::try_from((self.start - self.shared.epoch).as_nanos()).unwrap_or(0);
        let mut i: u32 = 0;
        loop {
            let due = self.start + interval * i;
            if due >= self.deadline {
                return Ok(());
            }
            if due > Instant::now() {
                self.publisher.flush().await?;
                tokio::time::sleep_until(due).await;
            }
            let due_ns = start_ns + u64::try_from((interval * i).as_nanos()).unwrap_or(u64::MAX);
            let payload = stats::stamp(self.size, due_ns, self.index, false);
            self.publisher.publish(&self.topic, payload).await?;
            self.shared.sent.fetch_add(1, Ordering::Relaxed);
            i = i
                .checked_add(1)
                .context("too many messages for one publisher")?;
        }
    }

    async fn all_out(&mut self) -> anyhow::Result<()> {
        let mut sent: u64 = 0;
        loop {
            if sent.is_multiple_of(CLOCK_EVERY) && Instant::now() >= self.deadline {
                return Ok(());
            }
            let payload = stats::stamp(self.size, self.shared.now_ns(), self.index, false);
            self.publisher.publish(&self.topic, payload).await?;
            self.shared.sent.fetch_add(1, Ordering::Relaxed);
            sent += 1;
        }
    }
}

/// One subscriber's latencies on their way to its shared histogram, [`RECORD_EVERY`] at a time.
struct Latencies {
    shared: Arc<Shared>,
    histogram: usize,
    pending: Vec<u64>,
}

impl Latencies {
    fn new(shared: Arc<Shared>, histogram: usize) -> Latencies {
        Latencies {
            shared,
            histogram,
            pending: Vec::with_capacity(RECORD_EVERY),
        }
    }

    fn record(&mut self, nanos: u64) {
        self.pending.push(nanos);
        if self.pending.len() >= RECORD_EVERY {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let mut histogram = self.shared.histograms[self.histogram].lock();
        for nanos in self.pending.drain(..) {
            histogram.saturating_record(nanos);
        }
    }
}

/// Counts what one subscriber receives until `stop`'s sender is dropped, and records its latencies.
async fn receive(
    mut subscriber: Subscriber,
    mut latencies: Latencies,
    mut stop: oneshot::Receiver<()>,
) {
    let shared = latencies.shared.clone();
    let (mut ready, mut settled) = (false, false);
    loop {
        let payload = tokio::select! {
            _ = &mut stop => break,
            payload = subscriber.next() => payload,
        };
        match payload {
            Ok(payload) => match stats::read(&payload) {
                Some(Stamp::Probe { sent_ns }) => {
                    if !ready {
                        ready = true;
                        shared.ready.fetch_add(1, Ordering::AcqRel);
                    }
                    if !settled && sent_ns >= shared.last_probe_ns.load(Ordering::Acquire) {
                        settled = true;
                        shared.settled.fetch_add(1, Ordering::AcqRel);
                    }
                }
                Some(Stamp::Data { sent_ns }) => {
                    let now = shared.now_ns();
                    if sent_ns >= shared.measure_from_ns.load(Ordering::Acquire) {
                        latencies.record(now.saturating_sub(sent_ns).max(1));
                    }
                    shared.received.fetch_add(1, Ordering::Relaxed);
                    shared.last_received_ns.fetch_max(now, Ordering::Relaxed);
                }
                _ => {}
            },
            Err(error) => {
                shared.errors.lock().push(format!("subscriber: {error:#}"));
                break;
            }
        }
    }
    latencies.flush();
    subscriber.close().await;
}

/// Waits until `expected` messages arrived, or nothing arrived for [`DRAIN_IDLE`], or [`DRAIN_MAX`].
async fn drain(shared: &Shared, expected: u64) {
    let until = Instant::now() + DRAIN_MAX;
    let mut last = shared.received.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while last < expected && Instant::now() < until && last_change.elapsed() < DRAIN_IDLE {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = shared.received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
}

/// Rewrites one terminal line each second with the current rates.
async fn show_progress(shared: Arc<Shared>, start: Instant, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut sent, mut received) = (0, 0);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now_sent = shared.sent.load(Ordering::Relaxed);
        let now_received = shared.received.load(Ordering::Relaxed);
        print!(
            "\r\x1b[K{:>5.1}s  out {:>10} msg/s  in {:>10} msg/s  sent {:>11}  received {:>11}",
            start.elapsed().as_secs_f64(),
            now_sent - sent,
            now_received.saturating_sub(received),
            now_sent,
            now_received
        );
        let _ = std::io::stdout().flush();
        (sent, received) = (now_sent, now_received);
    }
    print!("\r\x1b[K");
    let _ = std::io::stdout().flush();
}
