//! The chanserv server timeouts (docs/protocols/chanserv.md, "Timeouts"; upstream `ServerServingTimeout`,
//! `ServerSourcingTimeout`, `ServerChanAcceptTimeout`, `ServerMasterReadTimeout`, `ServerMasterWriteTimeout`,
//! `ServerFrameWriteTimeout`): the `[chanserv.timeouts]` section, and the deadlines of one stream as pure state over
//! `Instant`s.
//!
//! Every timeout but `accept_secs` defaults to 0, upstream's "none". What each one ends:
//! - `serving`: a master (its whole request) or a frame channel (its source), that long after it opened;
//! - `sourcing`: a subscribe request's master when no new source was announced for that long (its open sources
//!   keep delivering; new topics are no longer announced);
//! - `master_read`: a master whose request frame has not fully arrived that long after it opened;
//! - `master_write` / `frame_write`: a master / frame channel whose pending bytes made no progress (no send
//!   credit) for that long;
//! - `accept` (30 s): an announced source nobody dialed.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// `[chanserv.timeouts]`, in whole seconds; 0 means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsConfig {
    pub serving_secs: u64,
    pub sourcing_secs: u64,
    pub accept_secs: u64,
    pub master_read_secs: u64,
    pub master_write_secs: u64,
    pub frame_write_secs: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            serving_secs: 0,
            sourcing_secs: 0,
            accept_secs: 30,
            master_read_secs: 0,
            master_write_secs: 0,
            frame_write_secs: 0,
        }
    }
}

/// The timeouts as durations; `None` is no timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub serving: Option<Duration>,
    pub sourcing: Option<Duration>,
    pub accept: Duration,
    pub master_read: Option<Duration>,
    pub master_write: Option<Duration>,
    pub frame_write: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::from(TimeoutsConfig::default())
    }
}

impl From<TimeoutsConfig> for Timeouts {
    fn from(config: TimeoutsConfig) -> Timeouts {
        let some = |secs: u64| (secs > 0).then(|| Duration::from_secs(secs));
        Timeouts {
            serving: some(config.serving_secs),
            sourcing: some(config.sourcing_secs),
            accept: Duration::from_secs(config.accept_secs),
            master_read: some(config.master_read_secs),
            master_write: some(config.master_write_secs),
            frame_write: some(config.frame_write_secs),
        }
    }
}

impl Timeouts {
    /// Whether any per-stream deadline is set (the accept timeout is the link's).
    pub fn any(&self) -> bool {
        self.serving.is_some()
            || self.sourcing.is_some()
            || self.master_read.is_some()
            || self.master_write.is_some()
            || self.frame_write.is_some()
    }
}

/// Which deadline of a stream passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    Serving,
    Sourcing,
    MasterRead,
    Write,
}

impl Expired {
    pub fn as_str(self) -> &'static str {
        match self {
            Expired::Serving => "serving",
            Expired::Sourcing => "sourcing",
            Expired::MasterRead => "master read",
            Expired::Write => "write",
        }
    }
}

fn after(now: Instant, timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| now.checked_add(t))
}

/// The deadlines of one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamDeadlines {
    serving: Option<Instant>,
    sourcing: Option<Instant>,
    read: Option<Instant>,
    /// How long pending bytes may wait without progress.
    write_timeout: Option<Duration>,
    /// Since when pending bytes have made no progress.
    stalled_since: Option<Instant>,
}

impl StreamDeadlines {
    /// A master opened at `now`: serving, request read, and announcement writes.
    pub fn master(timeouts: &Timeouts, now: Instant) -> StreamDeadlines {
        StreamDeadlines {
            serving: after(now, timeouts.serving),
            read: after(now, timeouts.master_read),
            write_timeout: timeouts.master_write,
            ..StreamDeadlines::default()
        }
    }

    /// A frame channel dialed at `now`: serving and item writes.
    pub fn channel(timeouts: &Timeouts, now: Instant) -> StreamDeadlines {
        StreamDeadlines {
            serving: after(now, timeouts.serving),
            write_timeout: timeouts.frame_write,
            ..StreamDeadlines::default()
        }
    }

    /// The request frame arrived.
    pub fn request_read(&mut self) {
        self.read = None;
    }

    /// A subscribe request announced a source (or started) at `now`: the sourcing gap starts again.
    pub fn sourced(&mut self, timeouts: &Timeouts, now: Instant) {
        self.sourcing = after(now, timeouts.sourcing);
    }

    /// No more sourcing deadline (the master no longer announces).
    pub fn stop_sourcing(&mut self) {
        self.sourcing = None;
    }

    /// After a flush at `now`: whether bytes are still pending and whether some were sent.
    pub fn flushed(&mut self, pending: bool, progressed: bool, now: Instant) {
        self.stalled_since = match (pending, progressed, self.stalled_since) {
            (false, _, _) => None,
            (true, true, _) | (true, false, None) => Some(now),
            (true, false, since) => since,
        };
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        let write = self
            .stalled_since
            .zip(self.write_timeout)
            .and_then(|(since, t)| since.checked_add(t));
        [self.serving, self.sourcing, self.read, write]
            .into_iter()
            .flatten()
            .min()
    }

    /// The deadline that passed by `now`, if any.
    pub fn expired(&self, now: Instant) -> Option<Expired> {
        let passed = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        let write = self
            .stalled_since
            .zip(self.write_timeout)
            .and_then(|(since, t)| since.checked_add(t));
        if passed(self.serving) {
            Some(Expired::Serving)
        } else if passed(self.read) {
            Some(Expired::MasterRead)
        } else if passed(write) {
            Some(Expired::Write)
        } else if passed(self.sourcing) {
            Some(Expired::Sourcing)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn defaults_are_upstreams() {
        let t = Timeouts::default();
        assert_eq!(t.accept, secs(30));
        assert!(!t.any());
        let config: TimeoutsConfig = toml::from_str("serving_secs = 5").unwrap();
        assert_eq!(Timeouts::from(config).serving, Some(secs(5)));
        assert!(toml::from_str::<TimeoutsConfig>("serving = 5").is_err());
    }

    #[test]
    fn master_deadlines() {
        let now = Instant::now();
        let t = Timeouts::from(TimeoutsConfig {
            serving_secs: 100,
            sourcing_secs: 20,
            master_read_secs: 5,
            master_write_secs: 10,
            ..TimeoutsConfig::default()
        });
        let mut d = StreamDeadlines::master(&t, now);
        assert_eq!(d.next(), Some(now + secs(5)));
        assert_eq!(d.expired(now + secs(5)), Some(Expired::MasterRead));
        d.request_read();
        d.sourced(&t, now + secs(1));
        assert_eq!(d.next(), Some(now + secs(21)));
        d.flushed(true, false, now + secs(2));
        assert_eq!(d.next(), Some(now + secs(12)));
        d.flushed(true, true, now + secs(3));
        assert_eq!(d.expired(now + secs(12)), None);
        assert_eq!(d.expired(now + secs(13)), Some(Expired::Write));
        d.flushed(false, true, now + secs(4));
        assert_eq!(d.expired(now + secs(21)), Some(Expired::Sourcing));
        d.stop_sourcing();
        assert_eq!(d.next(), Some(now + secs(100)));
        assert_eq!(d.expired(now + secs(100)), Some(Expired::Serving));
    }

    #[test]
    fn no_timeouts_no_deadlines() {
        let now = Instant::now();
        let t = Timeouts::default();
        let mut d = StreamDeadlines::channel(&t, now);
        d.flushed(true, false, now);
        assert_eq!(d.next(), None);
        assert_eq!(d.expired(now + secs(1_000_000)), None);
    }
}
