//! The in-process presence table (reference §3.8): who is subscribed, exactly and not ephemerally, to which
//! channel. One table is shared by all MessageLoop listeners of the process; join/leave events travel over
//! the bus on `$messageloop.presence.<channel>` so members learn about each other. Presence across a
//! cluster is not tracked yet.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use core_bus::Headers;
use parking_lot::Mutex;

use super::message::{PresenceAction, PresenceEvent, PresenceInfo, PresenceSnapshot};

/// Most members listed in one snapshot (upstream `presenceSnapshot`).
pub const SNAPSHOT_LIMIT: usize = 256;

/// Channel → session id → member. Clones share the table.
#[derive(Debug, Clone, Default)]
pub struct PresenceTable {
    channels: Arc<Mutex<HashMap<String, BTreeMap<String, PresenceInfo>>>>,
}

impl PresenceTable {
    /// Adds a member; false when it was already present.
    pub fn join(&self, channel: &str, info: PresenceInfo) -> bool {
        self.channels
            .lock()
            .entry(channel.to_owned())
            .or_default()
            .insert(info.session_id.clone(), info)
            .is_none()
    }

    /// Removes a member and returns it.
    pub fn leave(&self, channel: &str, session_id: &str) -> Option<PresenceInfo> {
        let mut channels = self.channels.lock();
        let members = channels.get_mut(channel)?;
        let info = members.remove(session_id);
        if members.is_empty() {
            channels.remove(channel);
        }
        info
    }

    /// The members of `channel` (at most [`SNAPSHOT_LIMIT`], oldest session ids first).
    pub fn snapshot(&self, channel: &str) -> PresenceSnapshot {
        let channels = self.channels.lock();
        let members = channels.get(channel);
        let occupancy = members.map_or(0, BTreeMap::len);
        PresenceSnapshot {
            channel: channel.to_owned(),
            clients: members
                .map(|m| m.values().take(SNAPSHOT_LIMIT).cloned().collect())
                .unwrap_or_default(),
            truncated: occupancy > SNAPSHOT_LIMIT,
            occupancy: i32::try_from(occupancy).unwrap_or(i32::MAX),
        }
    }
}

const ACTION: &str = "action";
const SESSION_ID: &str = "session_id";
const USER_ID: &str = "user_id";
const CLIENT_ID: &str = "client_id";
const CONNECTED_AT: &str = "connected_at";

/// The bus headers of a join/leave event.
pub fn event_headers(action: PresenceAction, info: &PresenceInfo) -> Headers {
    let mut headers = Headers::new();
    headers.push(ACTION, Bytes::from_static(action.as_str().as_bytes()));
    headers.push(SESSION_ID, info.session_id.clone());
    headers.push(USER_ID, info.user_id.clone());
    headers.push(CLIENT_ID, info.client_id.clone());
    headers.push(CONNECTED_AT, info.connected_at_ms.to_string());
    headers
}

/// Reads a join/leave event back from its bus headers.
pub fn event_from_headers(channel: &str, headers: &Headers) -> Option<PresenceEvent> {
    let action = match headers.get_str(ACTION)? {
        "join" => PresenceAction::Join,
        "leave" => PresenceAction::Leave,
        _ => return None,
    };
    let text = |name| headers.get_str(name).unwrap_or("").to_owned();
    Some(PresenceEvent {
        channel: channel.to_owned(),
        action,
        info: PresenceInfo {
            session_id: text(SESSION_ID),
            user_id: text(USER_ID),
            client_id: text(CLIENT_ID),
            connected_at_ms: headers
                .get_str(CONNECTED_AT)
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
        },
        generation: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(session: &str) -> PresenceInfo {
        PresenceInfo {
            session_id: session.into(),
            user_id: "u".into(),
            client_id: "c".into(),
            connected_at_ms: 7,
        }
    }

    #[test]
    fn join_leave_snapshot() {
        let table = PresenceTable::default();
        assert!(table.join("a", info("s1")));
        assert!(!table.join("a", info("s1")));
        assert!(table.join("a", info("s2")));
        let snapshot = table.snapshot("a");
        assert_eq!(snapshot.occupancy, 2);
        assert_eq!(snapshot.clients[0].session_id, "s1");
        assert_eq!(table.leave("a", "s1"), Some(info("s1")));
        assert_eq!(table.leave("a", "s1"), None);
        assert_eq!(table.snapshot("a").occupancy, 1);
        assert_eq!(table.snapshot("b").clients, Vec::new());
    }

    #[test]
    fn events_round_trip_through_headers() {
        let headers = event_headers(PresenceAction::Leave, &info("s9"));
        let event = event_from_headers("room", &headers).unwrap();
        assert_eq!(event.action, PresenceAction::Leave);
        assert_eq!(event.info, info("s9"));
        assert!(event_from_headers("room", &Headers::new()).is_none());
    }
}
