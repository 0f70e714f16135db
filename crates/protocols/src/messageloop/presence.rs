//! The in-process presence table (docs/protocols/messageloop.md, "Presence"): who is subscribed, exactly and not
//! ephemerally, to which channel. One table is shared by all MessageLoop listeners of the process; join/leave
//! events travel over the bus on `$messageloop.presence.<channel>` so members learn about each other. In cluster
//! mode the table also shares its members through the bus ([`Bus::share_presence`], keyed by the presence topic)
//! and its snapshots include the members other nodes reported ([`Bus::remote_presence`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use core_bus::presence::PresenceChange;
use core_bus::{Bus, Headers};
use parking_lot::Mutex;

use super::channel;
use super::message::{PresenceAction, PresenceEvent, PresenceInfo, PresenceSnapshot};

/// Most members listed in one snapshot (upstream `presenceSnapshot`).
pub const SNAPSHOT_LIMIT: usize = 256;

/// Channel → session id → member. Clones share the table.
#[derive(Clone, Default)]
pub struct PresenceTable {
    channels: Arc<Mutex<HashMap<String, BTreeMap<String, PresenceInfo>>>>,
    /// Set in the daemon: members are shared with, and read from, other nodes through the bus.
    bus: Option<Bus>,
}

impl fmt::Debug for PresenceTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresenceTable")
            .field("channels", &self.channels)
            .field("shared", &self.bus.is_some())
            .finish()
    }
}

impl PresenceTable {
    /// A table that shares its members through `bus` (cluster-wide when the bus has a cluster backend).
    pub fn shared(bus: Bus) -> PresenceTable {
        PresenceTable {
            channels: Arc::default(),
            bus: Some(bus),
        }
    }

    /// Adds a member; false when it was already present.
    pub fn join(&self, channel: &str, info: PresenceInfo) -> bool {
        let data = self.bus.as_ref().map(|_| info_to_bytes(&info));
        let session_id = info.session_id.clone();
        let added = self
            .channels
            .lock()
            .entry(channel.to_owned())
            .or_default()
            .insert(session_id.clone(), info)
            .is_none();
        if let (true, Some(bus), Some(data)) = (added, &self.bus, data) {
            bus.share_presence(PresenceChange {
                topic: channel::presence_topic(channel),
                member: session_id,
                data: Some(data),
            });
        }
        added
    }

    /// Removes a member and returns it.
    pub fn leave(&self, channel: &str, session_id: &str) -> Option<PresenceInfo> {
        let info = {
            let mut channels = self.channels.lock();
            let members = channels.get_mut(channel)?;
            let info = members.remove(session_id);
            if members.is_empty() {
                channels.remove(channel);
            }
            info
        };
        if let (Some(_), Some(bus)) = (&info, &self.bus) {
            bus.share_presence(PresenceChange {
                topic: channel::presence_topic(channel),
                member: session_id.to_owned(),
                data: None,
            });
        }
        info
    }

    /// The members of `channel` on this node and, in cluster mode, on the others (at most
    /// [`SNAPSHOT_LIMIT`], oldest session ids first).
    pub fn snapshot(&self, channel: &str) -> PresenceSnapshot {
        let mut members = self
            .channels
            .lock()
            .get(channel)
            .cloned()
            .unwrap_or_default();
        if let Some(bus) = &self.bus {
            for (session_id, data) in bus.remote_presence(&channel::presence_topic(channel)) {
                if let Some(info) = info_from_bytes(&data) {
                    members.entry(session_id).or_insert(info);
                }
            }
        }
        let occupancy = members.len();
        PresenceSnapshot {
            channel: channel.to_owned(),
            clients: members.into_values().take(SNAPSHOT_LIMIT).collect(),
            truncated: occupancy > SNAPSHOT_LIMIT,
            occupancy: i32::try_from(occupancy).unwrap_or(i32::MAX),
        }
    }
}

/// A member as shared with other nodes: JSON of the presence fields.
fn info_to_bytes(info: &PresenceInfo) -> Bytes {
    Bytes::from(
        serde_json::json!({
            SESSION_ID: info.session_id,
            USER_ID: info.user_id,
            CLIENT_ID: info.client_id,
            CONNECTED_AT: info.connected_at_ms,
        })
        .to_string(),
    )
}

fn info_from_bytes(data: &[u8]) -> Option<PresenceInfo> {
    let value: serde_json::Value = serde_json::from_slice(data).ok()?;
    let text = |name: &str| value[name].as_str().map(str::to_owned);
    Some(PresenceInfo {
        session_id: text(SESSION_ID)?,
        user_id: text(USER_ID).unwrap_or_default(),
        client_id: text(CLIENT_ID).unwrap_or_default(),
        connected_at_ms: value[CONNECTED_AT].as_i64().unwrap_or(0),
    })
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
    fn a_shared_table_includes_members_other_nodes_reported() {
        let bus = Bus::new(Default::default());
        let table = PresenceTable::shared(bus.clone());
        assert!(table.join("room", info("s2")));
        bus.presence_from_cluster(PresenceChange {
            topic: channel::presence_topic("room"),
            member: "s1".into(),
            data: Some(info_to_bytes(&info("s1"))),
        });
        bus.presence_from_cluster(PresenceChange {
            topic: channel::presence_topic("room"),
            member: "bad".into(),
            data: Some(Bytes::from_static(b"not json")),
        });
        let snapshot = table.snapshot("room");
        assert_eq!(snapshot.occupancy, 2);
        assert_eq!(snapshot.clients, [info("s1"), info("s2")]);
        assert_eq!(table.snapshot("other").occupancy, 0);
        assert_eq!(info_from_bytes(&info_to_bytes(&info("x"))), Some(info("x")));
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
