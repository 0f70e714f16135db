//! The registry of live connections the admin API lists, with per-listener connection limits, and the connection
//! metrics: `gatewayd_connections{protocol,listener}` (open now), `gatewayd_connections_accepted_total` and
//! `gatewayd_connections_refused_total{reason}` (at the listener's limit) with the same labels. Listener names are
//! fixed by the config (one per transport), so the label sets are bounded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use core_bus::{ConnectionId, Protocol};
use dashmap::DashMap;
use metrics::{counter, gauge, Gauge};
use serde::Serialize;

/// What the admin API shows about one connection.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionInfo {
    pub id: ConnectionId,
    pub protocol: Protocol,
    pub listener: String,
    pub peer: String,
    pub identity: String,
    pub since_ms: u64,
    pub subscriptions: usize,
}

/// One live connection as the registry keeps it: nothing in it is allocated but its identity (a connection's
/// [`ConnectionInfo`] is made when the admin API lists it).
struct Entry {
    protocol: Protocol,
    listener: &'static str,
    peer: SocketAddr,
    identity: Box<str>,
    since_ms: u64,
    subscriptions: usize,
}

/// All live connections of the process.
#[derive(Clone, Default)]
pub struct ConnectionRegistry {
    entries: Arc<DashMap<ConnectionId, Entry>>,
    per_listener: Arc<DashMap<&'static str, usize>>,
    /// Connections (and gRPC streams) registered since the process started.
    opened: Arc<AtomicU64>,
    /// Connections (and gRPC streams) ended since the process started.
    closed: Arc<AtomicU64>,
}

/// Refused because the listener is at its connection limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("listener at its limit of {0} connections")]
pub struct AtCapacity(pub usize);

/// One of a listener's `max_connections` places, taken at accept; dropping it frees the place.
pub struct Slot {
    registry: ConnectionRegistry,
    listener: &'static str,
}

/// Keeps a connection registered; dropping it unregisters and counts it in
/// `gatewayd_connections_closed_total{reason}` with its [`CloseCause`].
pub struct ConnectionGuard {
    registry: ConnectionRegistry,
    id: ConnectionId,
    /// `None` for a stream inside a connection that holds the slot (gRPC).
    _slot: Option<Slot>,
    /// The subscription count last recorded: the registry's entry is written only when it changes.
    subscriptions: AtomicUsize,
    open: Gauge,
    protocol: Protocol,
    listener: &'static str,
    /// A [`CloseCause`] as its discriminant; the first one recorded wins.
    cause: AtomicU8,
}

/// Why a connection ended, as `gatewayd_connections_closed_total{reason}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseCause {
    /// The client closed the connection or went away: what nothing else was recorded means.
    Client = 0,
    /// gatewayd is shutting down.
    Shutdown = 1,
    /// Its subscriber queue stayed over its bound (`bus.slow_consumer = "disconnect"`).
    SlowConsumer = 2,
    /// A deadline ran out: pre-auth, heart-beat or idle silence, an unfinished frame, a blocked write.
    Deadline = 3,
    /// The client broke the protocol or a limit and got the protocol's error.
    ProtocolError = 4,
}

impl CloseCause {
    const ALL: [CloseCause; 5] = [
        CloseCause::Client,
        CloseCause::Shutdown,
        CloseCause::SlowConsumer,
        CloseCause::Deadline,
        CloseCause::ProtocolError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseCause::Client => "client",
            CloseCause::Shutdown => "shutdown",
            CloseCause::SlowConsumer => "slow_consumer",
            CloseCause::Deadline => "deadline",
            CloseCause::ProtocolError => "protocol_error",
        }
    }
}

pub const CONNECTIONS: &str = "gatewayd_connections";
pub const CONNECTIONS_ACCEPTED: &str = "gatewayd_connections_accepted_total";
pub const CONNECTIONS_REFUSED: &str = "gatewayd_connections_refused_total";
pub const CONNECTIONS_CLOSED: &str = "gatewayd_connections_closed_total";

impl ConnectionRegistry {
    /// Registers a new connection on `listener`, unless that listener already has `max` connections.
    pub fn register(
        &self,
        protocol: Protocol,
        listener: &'static str,
        peer: SocketAddr,
        max: usize,
    ) -> Result<ConnectionGuard, AtCapacity> {
        let slot = self.reserve(protocol, listener, max)?;
        Ok(self.enter(protocol, listener, peer, Some(slot)))
    }

    /// Takes one of `listener`'s `max` places for a connection just accepted.
    pub fn reserve(
        &self,
        protocol: Protocol,
        listener: &'static str,
        max: usize,
    ) -> Result<Slot, AtCapacity> {
        let mut count = self.per_listener.entry(listener).or_insert(0);
        if *count >= max {
            counter!(CONNECTIONS_REFUSED, "protocol" => protocol.as_str(), "listener" => listener,
                "reason" => "at_capacity")
            .increment(1);
            return Err(AtCapacity(max));
        }
        *count += 1;
        counter!(CONNECTIONS_ACCEPTED, "protocol" => protocol.as_str(), "listener" => listener)
            .increment(1);
        Ok(Slot {
            registry: self.clone(),
            listener,
        })
    }

    /// Registers a stream of a connection that already holds its listener's slot (a gRPC stream).
    pub fn register_stream(
        &self,
        protocol: Protocol,
        listener: &'static str,
        peer: SocketAddr,
    ) -> ConnectionGuard {
        self.enter(protocol, listener, peer, None)
    }

    fn enter(
        &self,
        protocol: Protocol,
        listener: &'static str,
        peer: SocketAddr,
        slot: Option<Slot>,
    ) -> ConnectionGuard {
        let open = gauge!(CONNECTIONS, "protocol" => protocol.as_str(), "listener" => listener);
        open.increment(1.0);
        let id = ConnectionId::next();
        self.opened.fetch_add(1, Ordering::Relaxed);
        let since_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.entries.insert(
            id,
            Entry {
                protocol,
                listener,
                peer,
                identity: Box::default(),
                since_ms,
                subscriptions: 0,
            },
        );
        ConnectionGuard {
            registry: self.clone(),
            id,
            _slot: slot,
            subscriptions: AtomicUsize::new(0),
            open,
            protocol,
            listener,
            cause: AtomicU8::new(CloseCause::Client as u8),
        }
    }

    pub fn list(&self) -> Vec<ConnectionInfo> {
        let mut all: Vec<ConnectionInfo> = self
            .entries
            .iter()
            .map(|e| ConnectionInfo {
                id: *e.key(),
                protocol: e.protocol,
                listener: e.listener.to_owned(),
                peer: e.peer.to_string(),
                identity: e.identity.to_string(),
                since_ms: e.since_ms,
                subscriptions: e.subscriptions,
            })
            .collect();
        all.sort_by_key(|c| c.id);
        all
    }

    pub fn count(&self) -> usize {
        self.entries.len()
    }

    /// How many connections (and gRPC streams) have been registered since the process started.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// How many connections (and gRPC streams) have ended since the process started.
    pub fn closed(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }
}

impl ConnectionGuard {
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Records who the connection authenticated as.
    pub fn set_identity(&self, identity: &str) {
        if let Some(mut entry) = self.registry.entries.get_mut(&self.id) {
            entry.identity = identity.into();
        }
    }

    /// Records the connection's current number of subscriptions.
    pub fn set_subscriptions(&self, n: usize) {
        if self.subscriptions.swap(n, Ordering::Relaxed) != n {
            if let Some(mut entry) = self.registry.entries.get_mut(&self.id) {
                entry.subscriptions = n;
            }
        }
    }

    /// Records why the connection is ending; the first cause recorded is the one counted.
    pub fn closing(&self, cause: CloseCause) {
        let _ = self.cause.compare_exchange(
            CloseCause::Client as u8,
            cause as u8,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let cause = self.cause.load(Ordering::Relaxed);
        let cause = CloseCause::ALL
            .into_iter()
            .find(|c| *c as u8 == cause)
            .unwrap_or(CloseCause::Client);
        counter!(CONNECTIONS_CLOSED, "protocol" => self.protocol.as_str(), "listener" => self.listener,
            "reason" => cause.as_str())
        .increment(1);
        self.open.decrement(1.0);
        self.registry.entries.remove(&self.id);
        self.registry.closed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(mut count) = self.registry.per_listener.get_mut(self.listener) {
            *count = count.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_and_unregister() {
        let registry = ConnectionRegistry::default();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let a = registry
            .register(Protocol::Stomp, "stomp.tcp", peer, 1)
            .unwrap();
        assert_eq!(
            registry
                .register(Protocol::Stomp, "stomp.tcp", peer, 1)
                .err(),
            Some(AtCapacity(1))
        );
        a.set_identity("alice");
        a.set_subscriptions(3);
        let listed = registry.list();
        assert_eq!(
            (
                listed[0].listener.as_str(),
                listed[0].peer.as_str(),
                listed[0].identity.as_str(),
                listed[0].subscriptions
            ),
            ("stomp.tcp", "127.0.0.1:1", "alice", 3)
        );
        drop(a);
        assert_eq!(registry.count(), 0);
        // The refused registration took no place and counts as neither.
        assert_eq!((registry.opened(), registry.closed()), (1, 1));
        let b = registry.register(Protocol::Stomp, "stomp.tcp", peer, 1);
        assert!(b.is_ok());
        assert_eq!((registry.opened(), registry.closed()), (2, 1));
    }
}
