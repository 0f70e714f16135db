//! Client ids across connections, shared by every MQTT listener of the process: which connection holds each
//! client id now (a second CONNECT with the same id takes it over and the first is told 0x8E), and the sessions
//! kept for clients that left with a session expiry (3.1.1 clean session 0, 5.0 Session Expiry Interval > 0).
//! A kept session holds its mailbox, so its subscriptions stay on the bus and messages queue for the client
//! (within the bus's queue bounds) until it returns or the session expires.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use core_bus::ConnectionId;
use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::session::outgoing::Outgoing;
use super::session::subscribe::Subscriptions;
use super::session::{Connected, EarlierConnections};
use core_bus::Mailbox;

/// What a returning client gets back.
pub struct SavedSession {
    pub(crate) mailbox: Mailbox,
    pub(crate) subscriptions: Subscriptions,
    pub(crate) outgoing: Outgoing,
    pub(crate) awaiting_release: BTreeSet<u16>,
    pub(crate) earlier_connections: EarlierConnections,
}

impl SavedSession {
    pub(crate) fn from_connected(connected: Connected) -> SavedSession {
        SavedSession {
            mailbox: connected.mailbox,
            subscriptions: connected.subscriptions,
            outgoing: connected.outgoing,
            awaiting_release: connected.awaiting_release,
            earlier_connections: connected.earlier_connections,
        }
    }
}

struct Kept {
    session: SavedSession,
    until: Instant,
}

/// The connection holding a client id.
pub struct Holder {
    pub connection: ConnectionId,
    /// Cancelled to tell it another connection took the client id over.
    pub kick: CancellationToken,
    /// Cancelled by the connection once it has ended.
    pub released: CancellationToken,
}

struct Inner {
    saved: HashMap<String, Kept>,
    live: HashMap<String, Holder>,
    max_saved: usize,
}

/// The store; clones share it.
#[derive(Clone)]
pub struct SessionStore {
    inner: Arc<Mutex<Inner>>,
}

impl SessionStore {
    pub fn new(max_saved: usize) -> SessionStore {
        SessionStore {
            inner: Arc::new(Mutex::new(Inner {
                saved: HashMap::new(),
                live: HashMap::new(),
                max_saved,
            })),
        }
    }

    pub fn set_max_saved(&self, max_saved: usize) {
        self.inner.lock().max_saved = max_saved;
    }

    /// Makes `holder` the holder of `client_id`. A previous holder is kicked, and its `released` token is
    /// returned: it is cancelled once that connection has ended (and kept its session, if it has one).
    pub fn claim(&self, client_id: &str, holder: Holder) -> Option<CancellationToken> {
        let previous = self.inner.lock().live.insert(client_id.to_owned(), holder);
        previous.map(|old| {
            old.kick.cancel();
            old.released
        })
    }

    /// `connection` no longer holds `client_id` (if it still did).
    pub fn release(&self, client_id: &str, connection: ConnectionId) {
        let mut inner = self.inner.lock();
        if inner
            .live
            .get(client_id)
            .is_some_and(|h| h.connection == connection)
        {
            inner.live.remove(client_id);
        }
    }

    /// Whether some connection holds `client_id` now.
    pub fn is_live(&self, client_id: &str) -> bool {
        self.inner.lock().live.contains_key(client_id)
    }

    /// Keeps `session` for `expiry`; refused (dropped, false) when `max_stored_sessions` are kept already.
    pub fn save(&self, client_id: String, session: SavedSession, expiry: Duration) -> bool {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        inner.saved.retain(|_, kept| kept.until > now);
        if inner.saved.len() >= inner.max_saved && !inner.saved.contains_key(&client_id) {
            tracing::warn!(client_id, "mqtt: session store full, session not kept");
            return false;
        }
        inner.saved.insert(
            client_id,
            Kept {
                session,
                until: now + expiry,
            },
        );
        true
    }

    /// The kept session of `client_id`, unless it expired; it is no longer kept.
    pub fn take(&self, client_id: &str) -> Option<SavedSession> {
        let kept = self.inner.lock().saved.remove(client_id)?;
        (kept.until > Instant::now()).then_some(kept.session)
    }

    /// Drops the sessions whose expiry passed (their subscriptions leave the bus).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.inner.lock().saved.retain(|_, kept| kept.until > now);
    }
}
